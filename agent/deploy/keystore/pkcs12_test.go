package keystore

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gopkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/agent/keygen"
	"github.com/emsign/bot/protocol"
)

// opensslCerts runs openssl pkcs12 -info -nokeys and returns the
// certificates it prints, in order, and its output.
func opensslCerts(t *testing.T, path, pass string, extra ...string) ([]*x509.Certificate, string) {
	t.Helper()
	args := append([]string{"pkcs12", "-info", "-nokeys", "-in", path, "-passin", "pass:" + pass}, extra...)
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl pkcs12 -info: %v\n%s", err, out)
	}
	var certs []*x509.Certificate
	for rest := out; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	return certs, string(out)
}

// TestPKCS12DeployOpenSSL (P8): files made by openssl pkcs12 -export (the
// default AES encoding and -legacy) are rewritten with the new key and
// chain under the same password; openssl and keytool read the result, the
// friendlyName (Java's alias) is kept.
func TestPKCS12DeployOpenSSL(t *testing.T) {
	t.Parallel() // keytool starts a JVM per call
	need(t, "openssl", "keytool")
	ca := newPKI(t)
	for _, tc := range []struct {
		name, file string
		spec       protocol.DeploySpec
		pws        []string
		oldArgs    []string
	}{
		{"openssl default", "server.p12", protocol.DeploySpec{KeystorePassword: protocol.NewTransitSecret("changeit")}, nil, nil},
		{"openssl -legacy, alias named", "server-legacy.p12", protocol.DeploySpec{Alias: "tomcat"}, []string{"x", "changeit"}, []string{"-legacy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := fixture(t, tc.file)
			old, _ := os.ReadFile(path)
			oldCerts, _ := opensslCerts(t, path, "changeit", tc.oldArgs...)
			spec := tc.spec
			spec.Kind, spec.KeystorePath = protocol.DeployPKCS12, path
			d, err := NewDeployer(spec, env(t, tc.pws...))
			if err != nil {
				t.Fatal(err)
			}
			m := ca.material(t, "p12.example.com", keygen.ECDSAP256)
			res, err := d.Deploy(context.Background(), m, nil)
			if err != nil || res.Outcome != deploy.OutcomeDeployed {
				t.Fatalf("deploy: %v (%s)", err, stepNames(res))
			}
			if res.OldFingerprint != fpOf(oldCerts[0]) {
				t.Errorf("old fingerprint %s, want %s", res.OldFingerprint, fpOf(oldCerts[0]))
			}
			certs, out := opensslCerts(t, path, "changeit")
			if len(certs) != 2 || fpOf(certs[0]) != fpOf(m.Certificate) || fpOf(certs[1]) != fpOf(ca.inter) {
				t.Fatalf("openssl shows %d certificates:\n%s", len(certs), out)
			}
			if !strings.Contains(out, "friendlyName: tomcat") {
				t.Errorf("friendlyName not kept:\n%s", out)
			}
			if got := keytoolList(t, path, "PKCS12", "changeit"); got["tomcat"] != [2]string{fpOf(m.Certificate), "PrivateKeyEntry"} {
				t.Errorf("keytool lists %v", got)
			}
			// The key in the file is the new one.
			data, _ := os.ReadFile(path)
			key, _, _, err := gopkcs12.DecodeChain(data, "changeit")
			if signer, ok := key.(crypto.Signer); err != nil || !ok || !deploy.KeyMatches(m.Certificate, signer) {
				t.Errorf("decode: %v", err)
			}
			// OpenSSL and Java both decrypt the new key (PBES2 from youmark/pkcs8).
			keyOut, err := exec.Command("openssl", "pkcs12", "-in", path, "-nocerts", "-nodes", "-passin", "pass:changeit").CombinedOutput()
			if err != nil {
				t.Fatalf("openssl pkcs12 -nocerts: %v\n%s", err, keyOut)
			}
			if k, err := keygen.ParsePEM(keyOut); err != nil || !deploy.KeyMatches(m.Certificate, k) {
				t.Errorf("openssl's key: %v", err)
			}
			jksCopy := filepath.Join(t.TempDir(), "copy.jks")
			if out, err := exec.Command("keytool", "-importkeystore", "-noprompt", "-srckeystore", path, "-srcstoretype", "PKCS12",
				"-srcstorepass", "changeit", "-destkeystore", jksCopy, "-deststoretype", "JKS", "-deststorepass", "changeit").CombinedOutput(); err != nil {
				t.Errorf("keytool -importkeystore (Java decrypts the key): %v\n%s", err, out)
			}
			checkBackup(t, res.BackupDir, path, old)
			if res2, err := d.Deploy(context.Background(), m, nil); err != nil || res2.Outcome != deploy.OutcomeAlreadyDeployed {
				t.Errorf("second deploy: %v", err)
			}
		})
	}
}

// TestPKCS12Refusals: wrong password and alias are refused before writing.
func TestPKCS12Refusals(t *testing.T) {
	ca := newPKI(t)
	for _, tc := range []struct {
		name string
		spec protocol.DeploySpec
		pws  []string
		want string
	}{
		{"wrong password", protocol.DeploySpec{KeystorePassword: protocol.NewTransitSecret("nope")}, nil, "keystore_password does not open"},
		{"no known password", protocol.DeploySpec{}, []string{"a", "b"}, "no known password opens"},
		{"other alias", protocol.DeploySpec{Alias: "jetty"}, []string{"changeit"}, `its key is "tomcat"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := fixture(t, "server.p12")
			old, _ := os.ReadFile(path)
			spec := tc.spec
			spec.Kind, spec.KeystorePath = protocol.DeployPKCS12, path
			d, err := NewPKCS12Deployer(spec, env(t, tc.pws...))
			if err != nil {
				t.Fatal(err)
			}
			_, err = d.Deploy(context.Background(), ca.material(t, "p12.example.com", keygen.ECDSAP256), nil)
			if !errors.Is(err, deploy.ErrRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if now, _ := os.ReadFile(path); !bytes.Equal(now, old) {
				t.Error("file changed")
			}
		})
	}
}

// TestEncodePKCS12RoundTrip: what encodePKCS12 writes go-pkcs12 reads back
// with the same password (its MAC check is an independent PKCS#12 KDF),
// and OpenSSL verifies it; friendlyName and localKeyId are on the leaf.
func TestEncodePKCS12RoundTrip(t *testing.T) {
	ca := newPKI(t)
	for _, tc := range []struct {
		name, pw, friendly string
		alg                keygen.Algorithm
	}{
		{"ecdsa", "changeit", "tomcat", keygen.ECDSAP256},
		{"rsa, no name", "S0me-random-Pass", "", keygen.RSA2048},
		{"empty password", "", "jetty", keygen.ECDSAP384},
		{"non-ASCII password and name", "pässwörd", "sérveur", keygen.ECDSAP256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := ca.material(t, "rt.example.com", tc.alg)
			data, err := encodePKCS12(m.Key, m.Certificate, m.Chain, tc.pw, tc.friendly)
			if err != nil {
				t.Fatal(err)
			}
			key, leaf, cas, err := gopkcs12.DecodeChain(data, tc.pw)
			if err != nil {
				t.Fatal(err)
			}
			if signer, ok := key.(crypto.Signer); !ok || !deploy.KeyMatches(m.Certificate, signer) || !leaf.Equal(m.Certificate) || len(cas) != 1 {
				t.Errorf("decoded key/leaf/chain differ (%d CAs)", len(cas))
			}
			if _, _, _, err := gopkcs12.DecodeChain(data, tc.pw+"x"); err == nil {
				t.Error("a wrong password opens it")
			}
			// go-pkcs12's ToPEM reads no plain keyBag (the empty password's):
			// openssl checks the name below.
			if got := friendlyName(data, tc.pw, leaf); got != tc.friendly && tc.pw != "" {
				t.Errorf("friendlyName %q, want %q", got, tc.friendly)
			}
			if testing.Short() {
				return
			}
			p := t.TempDir() + "/rt.p12"
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			certs, out := opensslCerts(t, p, tc.pw)
			if len(certs) != 2 || !certs[0].Equal(m.Certificate) {
				t.Errorf("openssl reads %d certificates", len(certs))
			}
			if tc.friendly != "" && tc.pw == "" && !strings.Contains(out, "friendlyName: "+tc.friendly) {
				t.Errorf("openssl shows no friendlyName:\n%s", out)
			}
		})
	}
}
