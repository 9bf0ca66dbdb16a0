package testsvc

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// SoftHSMSOPIN is the security officer PIN of every token InitToken makes.
const SoftHSMSOPIN = "12345678"

// softhsmModules are where Debian and Ubuntu put the SoftHSM2 library.
var softhsmModules = []string{"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"}

// SoftHSM is a SoftHSM2 whose tokens live in a folder of the test's own,
// selected by SOFTHSM2_CONF. The variable is not set in this process: give
// Env() to every process that must see the tokens.
type SoftHSM struct {
	tb     testing.TB
	Dir    string
	Conf   string // the SOFTHSM2_CONF file
	Module string // the PKCS#11 library
	pins   map[string]string
	n      int
}

// NewSoftHSM makes an empty SoftHSM2 token folder and its configuration.
func NewSoftHSM(tb testing.TB) *SoftHSM {
	tb.Helper()
	for tool, pkg := range map[string]string{"softhsm2-util": "softhsm2", "pkcs11-tool": "opensc"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Fatalf("%s is missing: install the Debian package %s (`apt-get install %s`)", tool, pkg, pkg)
		}
	}
	h := &SoftHSM{tb: tb, Dir: tb.TempDir(), pins: map[string]string{}}
	for _, m := range softhsmModules {
		if _, err := os.Stat(m); err == nil {
			h.Module = m
			break
		}
	}
	if h.Module == "" {
		tb.Fatalf("libsofthsm2.so is in none of %v: install the Debian package softhsm2", softhsmModules)
	}
	if err := os.Mkdir(filepath.Join(h.Dir, "tokens"), 0o700); err != nil {
		tb.Fatal(err)
	}
	h.Conf = filepath.Join(h.Dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n", h.Dir)
	if err := os.WriteFile(h.Conf, []byte(body), 0o600); err != nil {
		tb.Fatal(err)
	}
	return h
}

// Env is the SOFTHSM2_CONF=... entry for a process's environment.
func (h *SoftHSM) Env() string { return "SOFTHSM2_CONF=" + h.Conf }

func (h *SoftHSM) run(name string, args ...string) {
	h.tb.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), h.Env())
	if out, err := cmd.CombinedOutput(); err != nil {
		h.tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func (h *SoftHSM) file(data []byte) string {
	h.tb.Helper()
	h.n++
	p := filepath.Join(h.Dir, fmt.Sprintf("object-%d", h.n))
	if err := os.WriteFile(p, data, 0o600); err != nil {
		h.tb.Fatal(err)
	}
	return p
}

func (h *SoftHSM) pin(token string) string {
	h.tb.Helper()
	pin, ok := h.pins[token]
	if !ok {
		h.tb.Fatalf("no token %q: call InitToken first", token)
	}
	return pin
}

// InitToken initialises a token in a free slot with the user PIN given.
func (h *SoftHSM) InitToken(label, pin string) {
	h.tb.Helper()
	h.run("softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", SoftHSMSOPIN, "--pin", pin)
	h.pins[label] = pin
}

// ImportKeyPair imports a private key and its public key with
// softhsm2-util, under the label and hex id given.
func (h *SoftHSM) ImportKeyPair(token, label, id string, key crypto.Signer) {
	h.tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		h.tb.Fatal(err)
	}
	p := h.file(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	h.run("softhsm2-util", "--import", p, "--token", token, "--label", label, "--id", id, "--pin", h.pin(token))
}

// ImportCert writes a certificate (DER) object with pkcs11-tool, under the
// label and hex id given (the id of its key pair, if any).
func (h *SoftHSM) ImportCert(token, label, id string, der []byte) {
	h.tb.Helper()
	p := h.file(der)
	h.run("pkcs11-tool", "--module", h.Module, "--token-label", token, "--login", "--pin", h.pin(token),
		"--write-object", p, "--type", "cert", "--id", id, "--label", label)
}
