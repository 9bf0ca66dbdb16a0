package deploy

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/internal/testpki"

	"github.com/emsign/bot/agent/keygen"
)

// pki is a root and an intermediate issuing test leaves.
type pki struct {
	inter    *x509.Certificate
	interKey crypto.Signer
	chainPEM []byte
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := testpki.New(t)
	return &pki{inter: p.Inter, interKey: p.InterKey, chainPEM: certPEM(p.Inter)}
}

// leaf is an issued certificate with its key in the given PEM form.
type leaf struct {
	cert    *x509.Certificate
	certPEM []byte
	keyPEM  []byte
	fp      string
}

func (p *pki) issue(t *testing.T, cn string, lifetime time.Duration, alg keygen.Algorithm, format keygen.KeyFormat) leaf {
	t.Helper()
	key, err := keygen.Generate(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	c := mustCert(t, &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(lifetime),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, p.inter, key.Public(), p.interKey)
	kp, err := keygen.MarshalPEM(key, format)
	if err != nil {
		t.Fatal(err)
	}
	return leaf{cert: c, certPEM: certPEM(c), keyPEM: kp, fp: Fingerprint(c)}
}

func mustCert(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	return testpki.Cert(t, tmpl, parent, pub, signer)
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func writeFile(t *testing.T, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask
		t.Fatal(err)
	}
}

// snapshot is every file of a directory: content and mode.
type snapshot map[string]string

func snap(t *testing.T, dir string) snapshot {
	t.Helper()
	s := snapshot{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, _ := os.ReadFile(p)
		fi, _ := os.Stat(p)
		s[e.Name()] = fi.Mode().Perm().String() + "\n" + string(b)
	}
	return s
}

func (s snapshot) equal(o snapshot) bool {
	if len(s) != len(o) {
		return false
	}
	for k, v := range s {
		if o[k] != v {
			return false
		}
	}
	return true
}

// collect returns a report func and the steps it saw.
func collect() (func(Step), *[]Step) {
	var steps []Step
	return func(s Step) { steps = append(steps, s) }, &steps
}

func stepNames(steps []Step) string {
	var out []string
	for _, s := range steps {
		mark := "ok"
		if !s.OK {
			mark = "FAILED"
		}
		out = append(out, s.Name+":"+mark)
	}
	return strings.Join(out, " ")
}

// noKey fails when any key's PEM, or a line of its base64, appears in a
// step, the result or the error.
func noKey(t *testing.T, steps []Step, err error, keys ...[]byte) {
	t.Helper()
	var texts []string
	for _, s := range steps {
		texts = append(texts, s.Message)
	}
	if err != nil {
		texts = append(texts, err.Error())
	}
	for _, text := range texts {
		if strings.Contains(text, "PRIVATE KEY-----") {
			t.Errorf("a PEM key header in %q", text)
		}
		for _, k := range keys {
			b, _ := pem.Decode(k)
			enc := base64.StdEncoding.EncodeToString(b.Bytes)
			for i := 0; i+16 <= len(enc); i += 16 {
				if strings.Contains(text, enc[i:i+16]) {
					t.Fatalf("key material in %q", text)
				}
			}
		}
	}
}
