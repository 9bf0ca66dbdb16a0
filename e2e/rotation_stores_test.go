package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/internal/testsvc"
)

// Issue 8, tests: a Java keystore made by keytool and a certificate on a
// PKCS#11 token, both rotated through the control plane by the local CA:
// keytool lists the rotated entry; the token's new key was made inside
// SoftHSM2 and never leaves it (P3, P8).
func TestRotationKeystoreAndToken(t *testing.T) {
	if testing.Short() {
		t.Skip("runs both programs, keytool and SoftHSM2")
	}
	const (
		ksPass = "changeit-e2e-7731"
		label  = "web-hsm"
		pin    = "4412-pin"
	)
	// A Tomcat keystore, as keytool makes it.
	ksDir := t.TempDir()
	ks := filepath.Join(ksDir, "tomcat.jks")
	if out, err := exec.Command("keytool", "-genkeypair", "-alias", "tomcat", "-keyalg", "EC", "-groupname", "secp256r1",
		"-dname", "CN=app.example.test", "-ext", "SAN=dns:app.example.test", "-validity", "30",
		"-keystore", ks, "-storetype", "JKS", "-storepass", ksPass, "-keypass", ksPass).CombinedOutput(); err != nil {
		t.Fatalf("keytool -genkeypair: %v\n%s", err, out)
	}
	// A token holding a web server's key and certificate.
	h := testsvc.NewSoftHSM(t)
	h.InitToken(label, pin)
	hsmKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "hsm.example.test"}, DNSNames: []string{"hsm.example.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(20 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, hsmKey.Public(), hsmKey)
	if err != nil {
		t.Fatal(err)
	}
	h.ImportKeyPair(label, "web", "01", hsmKey)
	h.ImportCert(label, "web", "01", der)

	env := startRotationEnvWith(t, rotationOptions{
		Targets: []string{
			"jks://" + ks + "?password=" + ksPass,
			fmt.Sprintf("pkcs11:token=%s?module-path=%s&pin-value=%s", label, h.Module, pin),
		},
		BotEnv: []string{h.Env()},
	})
	cp := env.cp
	env.scan()
	jksFP := keytoolFingerprint(t, ks, ksPass, "tomcat")
	location := func(fp, source string) string {
		t.Helper()
		var view struct {
			Locations []struct {
				URI    string `json:"uri"`
				Source string `json:"source"`
			} `json:"locations"`
		}
		cp.api("GET", "/certificates/"+fp, nil, &view)
		for _, l := range view.Locations {
			if l.Source == source {
				return l.URI
			}
		}
		t.Fatalf("certificate %s has no %s location: %+v\n%s", fp, source, view.Locations, env.logs())
		return ""
	}

	// Templates: the local CA with software keys; the local CA with keys
	// made in the token.
	var local, inToken, profile struct {
		ID string `json:"id"`
	}
	if code := cp.api("POST", "/provisioning-templates", map[string]any{"name": "Private", "default": true,
		"key_pair": "new", "keystore_password_type": "random", "ca_connector": "local"}, &local); code != http.StatusCreated {
		t.Fatalf("POST provisioning-templates: %d", code)
	}
	if code := cp.api("POST", "/key-profiles", map[string]any{"name": "Web HSM", "kind": "pkcs11",
		"module_path": h.Module, "token_label": label, "pin": pin}, &profile); code != http.StatusCreated {
		t.Fatalf("POST key-profiles: %d", code)
	}
	if code := cp.api("POST", "/provisioning-templates", map[string]any{"name": "Private, key in the HSM", "default": false,
		"key_pair": "new", "keystore_password_type": "random", "ca_connector": "local", "key_profile_id": profile.ID}, &inToken); code != http.StatusCreated {
		t.Fatalf("POST provisioning-templates (HSM): %d", code)
	}

	// ---- The JKS entry: keytool lists the new certificate under tomcat.
	var order orderView
	if code := cp.api("POST", "/certificates/"+jksFP+"/rotate", map[string]any{"location": location(jksFP, "jks")}, &order); code != http.StatusAccepted {
		t.Fatalf("POST rotate (jks): %d %s\n%s", code, order, env.logs())
	}
	order = waitOrder(t, cp, order.ID, 2*time.Minute, env.logs)
	if order.Status != "rotated" {
		t.Fatalf("the JKS rotation ended %s:\n%s\n%s", order.Status, order, env.logs())
	}
	if got := keytoolFingerprint(t, ks, ksPass, "tomcat"); got != order.NewFingerprint {
		t.Errorf("keytool lists tomcat as %s, want the new certificate %s", got, order.NewFingerprint)
	}

	// ---- The token: a key made inside it, the certificate written beside.
	hsmFP := fingerprint(der)
	if code := cp.api("POST", "/certificates/"+hsmFP+"/rotate", map[string]any{"location": location(hsmFP, "pkcs11"),
		"template_id": inToken.ID}, &order); code != http.StatusAccepted {
		t.Fatalf("POST rotate (pkcs11): %d %s\n%s", code, order, env.logs())
	}
	order = waitOrder(t, cp, order.ID, 2*time.Minute, env.logs)
	if order.Status != "rotated" {
		t.Fatalf("the token rotation ended %s:\n%s\n%s", order.Status, order, env.logs())
	}
	order.hasSteps(t, "key", "csr", "issued", "write")
	if !strings.Contains(order.String(), "key on the token") {
		t.Errorf("the key step does not say the key was made in the token:\n%s", order)
	}
	// The recheck scan finds the new certificate on the token, with its key.
	waitLocations(t, cp, order.NewFingerprint, 1, time.Minute, env.logs)
	if loc := location(order.NewFingerprint, "pkcs11"); !strings.HasPrefix(loc, "pkcs11:") {
		t.Errorf("the new certificate's token location is %q", loc)
	}
	// pkcs11-tool: the new private key was generated on the token and
	// cannot be extracted.
	tool := exec.Command("pkcs11-tool", "--module", h.Module, "--token-label", label, "--login", "--pin", pin,
		"--list-objects", "--type", "privkey")
	tool.Env = append(os.Environ(), h.Env())
	out, err := tool.CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool --list-objects: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "Private Key Object"); n != 2 {
		t.Errorf("the token holds %d private keys, want the old and the new one:\n%s", n, out)
	}
	if !strings.Contains(string(out), "never extractable, local") {
		t.Errorf("no private key on the token was made there and never extractable:\n%s", out)
	}
}

// keytoolFingerprint is the SHA-256 (lowercase hex) of the certificate
// keytool lists under alias.
func keytoolFingerprint(t *testing.T, ks, pass, alias string) string {
	t.Helper()
	out, err := exec.Command("keytool", "-list", "-v", "-keystore", ks, "-storepass", pass, "-alias", alias).CombinedOutput()
	if err != nil {
		t.Fatalf("keytool -list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "SHA256:"); ok {
			return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(v), ":", ""))
		}
	}
	t.Fatalf("keytool -list shows no SHA256 fingerprint:\n%s", out)
	return ""
}
