package keystore

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/internal/testpki"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/agent/keygen"
	"github.com/emsign/bot/protocol"
)

// pki is a root and an intermediate that issue test leaves.
type pki struct {
	inter    *x509.Certificate
	interKey crypto.Signer
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := testpki.New(t)
	return &pki{inter: p.Inter, interKey: p.InterKey}
}

// material issues a leaf for a new key of alg, with the intermediate as chain.
func (p *pki) material(t *testing.T, cn string, alg keygen.Algorithm) deploy.Material {
	t.Helper()
	key, err := keygen.Generate(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	c := mustCert(t, &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, p.inter, key.Public(), p.interKey)
	return deploy.Material{Certificate: c, Chain: []*x509.Certificate{p.inter}, Key: key}
}

func mustCert(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	return testpki.Cert(t, tmpl, parent, pub, signer)
}

// fixture copies testdata/name into a fresh folder (mode 0640) and returns
// its path.
func fixture(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("%v (run testdata/gen.sh)", err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o640); err != nil {
		t.Fatal(err)
	}
	return p
}

// env is a deploy.Env with a backup folder of the test's, allowing every
// reload unless allow says otherwise.
func env(t *testing.T, passwords ...string) deploy.Env {
	t.Helper()
	e := deploy.Env{BackupDir: filepath.Join(t.TempDir(), "backups"), AllowReload: func([]string) error { return nil }}
	for _, p := range passwords {
		e.KeystorePasswords = append(e.KeystorePasswords, protocol.NewSecret(p))
	}
	return e
}

// need fails the test when a tool is missing, and skips it under -short.
func need(t *testing.T, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: needs " + strings.Join(tools, ", "))
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: install a JRE (keytool) and openssl", tool)
		}
	}
}

// keytoolList runs keytool -list -v and returns, by alias, the SHA-256
// fingerprint of each entry's first certificate (lowercase hex, no
// colons) and the entry type line.
func keytoolList(t *testing.T, path, storetype, pass string) map[string][2]string {
	t.Helper()
	out, err := exec.Command("keytool", "-list", "-v", "-keystore", path, "-storetype", storetype, "-storepass", pass).CombinedOutput()
	if err != nil {
		t.Fatalf("keytool -list: %v\n%s", err, out)
	}
	got := map[string][2]string{}
	for _, block := range strings.Split(string(out), "Alias name: ")[1:] {
		alias, rest, _ := strings.Cut(block, "\n")
		var fp, typ string
		for _, line := range strings.Split(rest, "\n") {
			line = strings.TrimSpace(line)
			if v, ok := strings.CutPrefix(line, "SHA256: "); ok && fp == "" {
				fp = strings.ToLower(strings.ReplaceAll(v, ":", ""))
			}
			if v, ok := strings.CutPrefix(line, "Entry type: "); ok {
				typ = v
			}
		}
		got[strings.TrimSpace(alias)] = [2]string{fp, typ}
	}
	return got
}

func fpOf(c *x509.Certificate) string { return deploy.Fingerprint(c) }

// stepNames lists a result's step names and OKs, for comparisons.
func stepNames(res *deploy.Result) string {
	var parts []string
	for _, s := range res.Steps {
		n := s.Name
		if !s.OK {
			n += "!"
		}
		parts = append(parts, n)
	}
	return strings.Join(parts, ",")
}
