//go:build cgo

package pkcs11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/agent/keygen"
	"github.com/emsign/bot/internal/testsvc"
	"github.com/emsign/bot/protocol"
)

const rotPIN = "5931-rot"

// rotHSM is a SoftHSM2 with one fresh token "rot", seen by this process.
func rotHSM(t *testing.T) *testsvc.SoftHSM {
	t.Helper()
	if testing.Short() {
		t.Skip("SoftHSM2 tests are not short")
	}
	h := testsvc.NewSoftHSM(t)
	t.Setenv("SOFTHSM2_CONF", h.Conf)
	h.InitToken("rot", rotPIN)
	return h
}

func keySpec(h *testsvc.SoftHSM, label string) protocol.PKCS11Key {
	return protocol.PKCS11Key{Module: h.Module, TokenLabel: "rot", PIN: protocol.NewTransitSecret(rotPIN), Label: label}
}

func tokenTarget(h *testsvc.SoftHSM) string {
	return "pkcs11:token=rot?module-path=" + h.Module + "&pin-value=" + rotPIN
}

func closeSigner(t *testing.T, s crypto.Signer) {
	t.Helper()
	c, ok := s.(io.Closer)
	if !ok {
		t.Fatal("the signer is not an io.Closer")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// listObjects runs pkcs11-tool --list-objects and returns its output.
func listObjects(t *testing.T, h *testsvc.SoftHSM) string {
	t.Helper()
	cmd := exec.Command("pkcs11-tool", "--module", h.Module, "--token-label", "rot", "--login", "--pin", rotPIN, "--list-objects")
	cmd.Env = append(os.Environ(), h.Env())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool --list-objects: %v\n%s", err, out)
	}
	return string(out)
}

// TestMakeKeySignsCSR (P3, B9): a key pair generated inside SoftHSM2
// signs a CSR that Go verifies; the private key is sensitive and not
// extractable (pkcs11-tool and discovery say so); CKA_ID is the key
// identifier of the public key.
func TestMakeKeySignsCSR(t *testing.T) {
	h := rotHSM(t)
	km := NewKeyMaker(nil)
	for _, tc := range []struct {
		alg, label, sigAlg string
	}{
		{"ecdsa-p256", "ec256", ""},
		{"ecdsa-p384", "ec384", ""},
		{"rsa-2048", "rsa", ""},
		{"rsa-2048", "rsapss", "SHA256-RSAPSS"},
		{"rsa-3072", "rsa3072", "SHA384-RSA"},
	} {
		t.Run(tc.label, func(t *testing.T) {
			signer, ref, err := km.MakeKey(context.Background(), keySpec(h, tc.label), tc.alg)
			if err != nil {
				t.Fatal(err)
			}
			defer closeSigner(t, signer)
			if want, _ := keyID(signer.Public()); ref.Label != tc.label || ref.ID != hex.EncodeToString(want) {
				t.Errorf("ref %+v, want id %x", ref, want)
			}
			if got := keygen.AlgorithmOf(signer.Public()); string(got) != tc.alg {
				t.Errorf("public key is %s, want %s", got, tc.alg)
			}
			csr, err := keygen.CreateCSR(keygen.Template{CommonName: "hsm.example.com", DNSNames: []string{"hsm.example.com"}, SignatureAlgorithm: tc.sigAlg}, signer, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := csr.CheckSignature(); err != nil {
				t.Fatalf("CSR signature: %v", err)
			}
			if !csr.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(signer.Public()) {
				t.Error("the CSR's key is not the token's")
			}
		})
	}
	// pkcs11-tool sees the keys as generated on the token, never extractable.
	out := listObjects(t, h)
	if n := strings.Count(out, "Private Key Object"); n != 5 {
		t.Errorf("pkcs11-tool lists %d private keys, want 5:\n%s", n, out)
	}
	if n := strings.Count(out, "never extractable"); n != 5 {
		t.Errorf("pkcs11-tool shows %d never-extractable keys, want 5:\n%s", n, out)
	}
	// Discovery (connectors/pkcs11) reads the same flags.
	r := discover(t, context.Background(), tokenTarget(h)+"&objects=keys")
	if r.err != nil {
		t.Fatal(r.err)
	}
	privs := 0
	for _, k := range r.keys {
		if k.Class != "private" {
			continue
		}
		privs++
		if k.Extractable == nil || *k.Extractable || k.Sensitive == nil || !*k.Sensitive || k.Local == nil || !*k.Local {
			t.Errorf("key %s: extractable %v sensitive %v local %v", k.Label, k.Extractable, k.Sensitive, k.Local)
		}
	}
	if privs != 5 {
		t.Errorf("discovery lists %d private keys", privs)
	}
}

// TestMakeKeyRefusals: what cannot be made is refused before anything is
// generated, with the field named and the PIN never shown.
func TestMakeKeyRefusals(t *testing.T) {
	h := rotHSM(t)
	km := NewKeyMaker(nil)
	taken := keySpec(h, "taken")
	taken.ID = "0a0b"
	s, _, err := km.MakeKey(context.Background(), taken, "ecdsa-p256")
	if err != nil {
		t.Fatal(err)
	}
	closeSigner(t, s)
	wrongPIN := keySpec(h, "x")
	wrongPIN.PIN = protocol.NewTransitSecret("0000-wrong")
	otherToken := keySpec(h, "x")
	otherToken.TokenLabel = "nope"
	for _, tc := range []struct {
		name string
		spec protocol.PKCS11Key
		alg  string
		want string
	}{
		{"no label", keySpec(h, ""), "ecdsa-p256", "label is required"},
		{"ed25519", keySpec(h, "x"), "ed25519", `algorithm "ed25519"`},
		{"bad id", func() protocol.PKCS11Key { s := keySpec(h, "x"); s.ID = "zz"; return s }(), "ecdsa-p256", `id "zz" is not hex`},
		{"id taken", taken, "ecdsa-p256", "id 0a0b is taken"},
		{"no such token", otherToken, "ecdsa-p256", `no initialised token matches token=nope`},
		{"wrong PIN", wrongPIN, "ecdsa-p256", "wrong PIN (CKR_PIN_INCORRECT)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := km.MakeKey(context.Background(), tc.spec, tc.alg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "pkcs11: ") {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), rotPIN) || strings.Contains(err.Error(), "0000-wrong") {
				t.Errorf("error shows the PIN: %v", err)
			}
		})
	}
	if n := strings.Count(listObjects(t, h), "Private Key Object"); n != 1 {
		t.Errorf("%d private keys on the token, want only the first", n)
	}
}

// TestTokenRotation (P8, B9): a key made on the token, its certificate
// written as an object beside it, found by discovery paired with the key;
// a second rotation replaces the certificate object (backup kept), leaves
// the old key, and FindKey finds a key by label and id.
func TestTokenRotation(t *testing.T) {
	h := rotHSM(t)
	testKeys()
	ca := makeCert(t, "Rotation CA", caKey.Public(), nil, caKey, true)
	km := NewKeyMaker(nil)
	ctx := context.Background()
	backups := filepath.Join(t.TempDir(), "backups")
	env := deploy.Env{BackupDir: backups, AllowReload: func([]string) error { return nil }}
	d, err := NewDeployer(protocol.DeploySpec{Kind: protocol.DeployPKCS11, Target: tokenTarget(h)}, env)
	if err != nil {
		t.Fatal(err)
	}
	rotate := func(cn string) (*x509.Certificate, deploy.TokenKey, *deploy.Result) {
		t.Helper()
		signer, ref, err := km.MakeKey(ctx, keySpec(h, "web"), "ecdsa-p256")
		if err != nil {
			t.Fatal(err)
		}
		closeSigner(t, signer) // the deployer needs the module
		cert := makeCert(t, cn, signer.Public(), ca, caKey, false)
		res, err := d.Deploy(ctx, deploy.Material{Certificate: cert, Chain: []*x509.Certificate{ca}, KeyRef: &ref}, nil)
		if err != nil || res.Outcome != deploy.OutcomeDeployed {
			t.Fatalf("deploy: %v (%+v)", err, res)
		}
		return cert, ref, res
	}

	first, ref1, _ := rotate("first.example.com")
	r := discover(t, ctx, tokenTarget(h))
	var found []protocol.Finding
	for _, f := range r.findings {
		if len(f.Chain) > 0 {
			found = append(found, f)
		}
	}
	if len(found) != 1 || !bytes.Equal(found[0].Chain[0], first.Raw) || found[0].Key == nil || found[0].Key.ID != ref1.ID {
		t.Fatalf("discovery: %+v", r.findings)
	}
	// Already deployed: nothing written.
	if res, err := d.Deploy(ctx, deploy.Material{Certificate: first, KeyRef: &ref1}, nil); err != nil || res.Outcome != deploy.OutcomeAlreadyDeployed {
		t.Fatalf("second deploy: %v, %+v", err, res)
	}

	second, ref2, res := rotate("second.example.com")
	if ref2.ID == ref1.ID {
		t.Fatal("two keys got one id")
	}
	if res.OldFingerprint != deploy.Fingerprint(first) {
		t.Errorf("old fingerprint %s", res.OldFingerprint)
	}
	old, err := os.ReadFile(filepath.Join(res.BackupDir, "1-cert-"+ref1.ID+".der"))
	if err != nil || !bytes.Equal(old, first.Raw) {
		t.Errorf("backup: %v", err)
	}
	r = discover(t, ctx, tokenTarget(h)+"&objects=certs,keys")
	certs, privs := 0, 0
	for _, f := range r.findings {
		switch {
		case len(f.Chain) > 0:
			certs++
			if !bytes.Equal(f.Chain[0], second.Raw) || f.Key == nil || f.Key.ID != ref2.ID {
				t.Errorf("certificate finding %s: key %+v", f.Location, f.Key)
			}
		case f.Key != nil && f.Key.Class == "private":
			privs++
		}
	}
	if certs != 1 || privs != 2 {
		t.Errorf("after the second rotation: %d certificates (want 1), %d private keys (want 2: the old one is kept)", certs, privs)
	}

	// FindKey: the label alone is ambiguous now; label and id are not.
	if _, _, err := km.FindKey(ctx, keySpec(h, "web")); err == nil || !strings.Contains(err.Error(), "give the id") {
		t.Errorf("FindKey by label: %v", err)
	}
	spec := keySpec(h, "web")
	spec.ID = ref2.ID
	signer, ref, err := km.FindKey(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSigner(t, signer)
	if ref != ref2 || !signer.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(second.PublicKey) {
		t.Errorf("FindKey found %+v", ref)
	}
	if _, err := keygen.CreateCSR(keygen.Template{CommonName: "renew.example.com"}, signer, nil); err != nil {
		t.Errorf("renewal CSR: %v", err)
	}
}

// TestTokenDeployRollback (B9): a reload that fails removes the new
// certificate object and puts the old one back; a certificate for another
// key, a reload not allowed and a missing key are refused before writing.
func TestTokenDeployRollback(t *testing.T) {
	h := rotHSM(t)
	testKeys()
	ca := makeCert(t, "Rotation CA", caKey.Public(), nil, caKey, true)
	km := NewKeyMaker(nil)
	ctx := context.Background()
	mk := func() (*x509.Certificate, deploy.TokenKey) {
		signer, ref, err := km.MakeKey(ctx, keySpec(h, "app"), "ecdsa-p256")
		if err != nil {
			t.Fatal(err)
		}
		closeSigner(t, signer)
		return makeCert(t, "app.example.com", signer.Public(), ca, caKey, false), ref
	}
	oldCert, oldRef := mk()
	h.ImportCert("rot", "app", oldRef.ID, oldCert.Raw)
	newCert, newRef := mk()

	script := filepath.Join(t.TempDir(), "reload.sh")
	marker := script + ".ran"
	if err := os.WriteFile(script, []byte("#!/bin/sh\nif [ -e "+marker+" ]; then exit 0; fi\ntouch "+marker+"\necho broken >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := deploy.Env{BackupDir: filepath.Join(t.TempDir(), "b"), AllowReload: func(argv []string) error {
		if argv[0] == script {
			return nil
		}
		return errors.New("not allowed")
	}}
	spec := protocol.DeploySpec{Kind: protocol.DeployPKCS11, Target: tokenTarget(h), Reload: []string{script}}

	for _, tc := range []struct {
		name string
		spec protocol.DeploySpec
		m    deploy.Material
		want string
	}{
		{"certificate for another key", spec, deploy.Material{Certificate: oldCert, KeyRef: &newRef}, "is not for the key"},
		{"no such key", spec, deploy.Material{Certificate: newCert, KeyRef: &deploy.TokenKey{Label: "app", ID: "ffff"}}, "no private key"},
		{"reload not allowed", protocol.DeploySpec{Kind: protocol.DeployPKCS11, Target: tokenTarget(h), Reload: []string{"/bin/true"}},
			deploy.Material{Certificate: newCert, KeyRef: &newRef}, "not allowed"},
		{"software key", spec, deploy.Material{Certificate: newCert}, "no token key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := NewDeployer(tc.spec, env)
			if err != nil {
				t.Fatal(err)
			}
			res, err := d.Deploy(ctx, tc.m, nil)
			if !errors.Is(err, deploy.ErrRefused) || !strings.Contains(err.Error(), tc.want) || res.Outcome != deploy.OutcomeFailed {
				t.Fatalf("err %v, want refused with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), rotPIN) {
				t.Error("the error shows the PIN")
			}
		})
	}

	d, err := NewDeployer(spec, env)
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.Deploy(ctx, deploy.Material{Certificate: newCert, KeyRef: &newRef}, nil)
	if !errors.Is(err, deploy.ErrRolledBack) || res.Outcome != deploy.OutcomeRolledBack {
		t.Fatalf("err %v, outcome %s", err, res.Outcome)
	}
	var names []string
	for _, s := range res.Steps {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "prepare,backup,write,reload,rollback" {
		t.Errorf("steps %s", got)
	}
	r := discover(t, ctx, tokenTarget(h))
	var certs [][]byte
	for _, f := range r.findings {
		if len(f.Chain) > 0 {
			certs = append(certs, f.Chain[0])
		}
	}
	if len(certs) != 1 || !bytes.Equal(certs[0], oldCert.Raw) {
		t.Errorf("after rollback the token holds %d certificates, want only the old one", len(certs))
	}
}

// TestNewDeployerValidates: the constructor checks the target without I/O.
func TestNewDeployerValidates(t *testing.T) {
	env := deploy.Env{BackupDir: "/var/backups"}
	for _, tc := range []struct {
		name, target, want string
		env                deploy.Env
	}{
		{"no target", "", "target is required", env},
		{"not pkcs11", "tls://127.0.0.1:443", "not pkcs11", env},
		{"no PIN", "pkcs11:token=a?module-path=/x.so", "no PIN", env},
		{"no module", "pkcs11:token=a?pin-value=1", "module-path is required", env},
		{"relative backups", "pkcs11:token=a?module-path=/x.so&pin-value=1", "backup directory", deploy.Env{BackupDir: "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewDeployer(protocol.DeploySpec{Kind: protocol.DeployPKCS11, Target: tc.target}, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
}
