package e2e

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/internal/testsvc"
)

// bindDN is testsvc.RootDN percent-encoded for a target's query.
var bindDN = url.QueryEscape(testsvc.RootDN)

// issue makes a certificate for cn signed by parent (self-signed when
// parent is nil) and returns it with its key.
func issue(t *testing.T, cn string, key crypto.Signer, parent *x509.Certificate, parentKey crypto.Signer, ca bool) *x509.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn, Organization: []string{"Example"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour)}
	if ca {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
	} else {
		tmpl.DNSNames, tmpl.EmailAddresses = []string{cn + ".example.com"}, []string{cn + "@example.com"}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ldapFixture starts a slapd whose ou=pki holds users (one with two
// certificates, one in a sub-OU) and a CA, and whose ou=people holds one
// certificate outside ou=pki. It returns the server, the certificates
// expected below ou=pki by fingerprint, and the outside one's fingerprint.
func ldapFixture(t *testing.T, rootPW string) (*testsvc.Slapd, map[string]*x509.Certificate, string) {
	t.Helper()
	s := testsvc.StartSlapdWithPassword(t, rootPW)
	caKey := ecKey(t)
	ca := issue(t, "Directory Test CA", caKey, nil, nil, true)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	alice := issue(t, "alice", ecKey(t), ca, caKey, false)
	bob0 := issue(t, "bob", rsaKey, ca, caKey, false)
	bob1 := issue(t, "bob-smime", ecKey(t), ca, caKey, false)
	carol := issue(t, "carol", ecKey(t), ca, caKey, false)
	outside := issue(t, "mallory", ecKey(t), ca, caKey, false)

	pki := s.AddOU("pki", testsvc.Suffix)
	sub := s.AddOU("staff", pki)
	people := s.AddOU("people", testsvc.Suffix)
	s.AddUser("alice", pki, alice.Raw)
	s.AddUser("bob", pki, bob0.Raw, bob1.Raw)
	s.AddUser("dave", pki) // no certificate
	s.AddUser("carol", sub, carol.Raw)
	s.AddCA("Directory Test CA", pki, ca.Raw)
	s.AddUser("mallory", people, outside.Raw)

	want := map[string]*x509.Certificate{}
	for _, c := range []*x509.Certificate{ca, alice, bob0, bob1, carol} {
		want[fingerprint(c.Raw)] = c
	}
	return s, want, fingerprint(outside.Raw)
}

// hsmFixture makes a SoftHSM token holding two certificates: "web" with
// its key pair (same id 01) and "peer" alone (id 02). It returns the HSM
// and the certificates by fingerprint, with whether the key is there.
func hsmFixture(t *testing.T, label, pin string) (*testsvc.SoftHSM, map[string]*x509.Certificate, map[string]bool) {
	t.Helper()
	h := testsvc.NewSoftHSM(t)
	h.InitToken(label, pin)
	webKey := ecKey(t)
	web := issue(t, "hsm-web", webKey, nil, nil, false)
	peer := issue(t, "hsm-peer", ecKey(t), nil, nil, false)
	h.ImportKeyPair(label, "web", "01", webKey)
	h.ImportCert(label, "web", "01", web.Raw)
	h.ImportCert(label, "peer", "02", peer.Raw)
	return h, map[string]*x509.Certificate{fingerprint(web.Raw): web, fingerprint(peer.Raw): peer},
		map[string]bool{fingerprint(web.Raw): true, fingerprint(peer.Raw): false}
}

// scanJSON runs `emsign-bot scan --format json target` with extra
// environment and returns its JSON lines, stdout and stderr.
func scanJSON(t *testing.T, bot, target string, env ...string) ([]map[string]any, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bot, "scan", "--format", "json", "--progress", "never", target)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("emsign-bot scan: %v\nstdout:\n%s\nstderr:\n%s", err, tail(stdout.String()), tail(stderr.String()))
	}
	var lines []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(stdout.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("a line of output is not one JSON object: %q", sc.Text())
		}
		lines = append(lines, m)
	}
	return lines, stdout.String(), stderr.String()
}

// checkLines checks that each wanted certificate is on exactly one line,
// with every field of the record contract, and that no line is an error.
// chain, tls and error are omitted when empty (a certificate stored alone,
// found in no TLS handshake, without a problem), so they are checked for
// their type when present and error must be empty.
func checkLines(t *testing.T, lines []map[string]any, want map[string]*x509.Certificate, hasKey map[string]bool, source, locPrefix string) {
	t.Helper()
	seen := map[string]int{}
	for _, l := range lines {
		if e, _ := l["error"].(string); e != "" {
			t.Errorf("error line: %v", l)
			continue
		}
		fp, _ := l["fingerprint_sha256"].(string)
		if fp == "" {
			continue // a key object found on its own
		}
		seen[fp]++
		c, ok := want[fp]
		if !ok {
			continue
		}
		for _, f := range []string{"location", "source", "subject", "issuer", "serial", "not_before", "not_after", "key_algorithm", "signature_algorithm"} {
			if s, _ := l[f].(string); s == "" {
				t.Errorf("%s: field %s missing or empty: %v", c.Subject.CommonName, f, l)
			}
		}
		if loc, _ := l["location"].(string); !strings.HasPrefix(loc, locPrefix) {
			t.Errorf("%s: location %q, want a %s one", c.Subject.CommonName, loc, locPrefix)
		}
		if l["source"] != source {
			t.Errorf("%s: source %v, want %s", c.Subject.CommonName, l["source"], source)
		}
		if !strings.Contains(l["subject"].(string), "CN="+c.Subject.CommonName) {
			t.Errorf("subject %v, want CN=%s", l["subject"], c.Subject.CommonName)
		}
		if !strings.Contains(fmt.Sprint(l["issuer"]), "CN="+c.Issuer.CommonName) {
			t.Errorf("%s: issuer %v, want CN=%s", c.Subject.CommonName, l["issuer"], c.Issuer.CommonName)
		}
		if bits, _ := l["key_bits"].(float64); int(bits) != keyBits(c) {
			t.Errorf("%s: key_bits %v, want %d", c.Subject.CommonName, l["key_bits"], keyBits(c))
		}
		if hk, ok := l["has_private_key"].(bool); !ok || hk != hasKey[fp] {
			t.Errorf("%s: has_private_key %v, want %v", c.Subject.CommonName, l["has_private_key"], hasKey[fp])
		}
		sans, _ := l["sans"].([]any)
		if n := len(c.DNSNames) + len(c.EmailAddresses); len(sans) != n {
			t.Errorf("%s: sans %v, want %d names", c.Subject.CommonName, l["sans"], n)
		}
		if ch, ok := l["chain"]; ok {
			if _, isList := ch.([]any); !isList {
				t.Errorf("%s: chain %v is not a list", c.Subject.CommonName, ch)
			}
		}
		if tl, ok := l["tls"]; ok && tl != nil {
			t.Errorf("%s: tls %v on a stored certificate", c.Subject.CommonName, tl)
		}
	}
	for fp, c := range want {
		if seen[fp] != 1 {
			t.Errorf("%s (%s) is on %d lines, want 1", c.Subject.CommonName, fp, seen[fp])
		}
	}
}

func keyBits(c *x509.Certificate) int {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		return k.N.BitLen()
	case *ecdsa.PublicKey:
		return k.Curve.Params().BitSize
	}
	return 0
}

// Issue 4, done when: `emsign-bot scan --format json` finds every
// certificate below an LDAP base DN and every certificate in a PKCS#11
// token, each as its own JSON line with the record's fields.
func TestScanLDAPAndPKCS11Commands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the bot and runs slapd and SoftHSM2")
	}
	_, botBin := binaries(t)

	t.Run("ldap", func(t *testing.T) {
		const pw = "Ld4p-e2e_pw-Qx81"
		s, want, outside := ldapFixture(t, pw)
		target := fmt.Sprintf("ldap://%s/ou=pki,%s?bind_dn=%s&password=env:LDAP_PW", s.Addr(), testsvc.Suffix, bindDN)
		lines, stdout, stderr := scanJSON(t, botBin, target, "LDAP_PW="+pw)
		checkLines(t, lines, want, nil, "ldap", "ldap://"+s.Addr()+"/")
		for _, l := range lines {
			if l["fingerprint_sha256"] == outside {
				t.Errorf("the certificate outside ou=pki was found: %v", l)
			}
		}
		if len(lines) != len(want) {
			t.Errorf("%d lines, want %d:\n%s", len(lines), len(want), stdout)
		}
		if strings.Contains(stdout, pw) || strings.Contains(stderr, pw) {
			t.Error("the bind password is in the scan's output")
		}
	})

	t.Run("pkcs11", func(t *testing.T) {
		const label, pin = "e2e-token", "5173-pin"
		h, want, hasKey := hsmFixture(t, label, pin)
		target := fmt.Sprintf("pkcs11:token=%s?module-path=%s&pin-value=%s", label, h.Module, pin)
		lines, stdout, stderr := scanJSON(t, botBin, target, h.Env())
		checkLines(t, lines, want, hasKey, "pkcs11", "pkcs11:")
		if strings.Contains(stdout, pin) || strings.Contains(stderr, pin) {
			t.Error("the PIN is in the scan's output")
		}
	})
}

// Issue 4, tests: both target kinds set on a bot through the control plane
// end to end, with their secrets encrypted at rest.
func TestDirectoryAndHSMThroughControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs both programs with slapd and SoftHSM2")
	}
	const ldapPW, pin, label = "ldap-secret-e2e", "987654", "cp-e2e-token"
	cpBin, botBin := binaries(t)
	s, ldapWant, outside := ldapFixture(t, ldapPW)
	h, hsmWant, _ := hsmFixture(t, label, pin)

	cp, _, botID, state := activatedBot(t, cpBin, botBin, "pki-1")
	data := cp.data

	targets := map[string]any{
		"targets": []string{
			fmt.Sprintf("ldap://%s/ou=pki,%s?bind_dn=%s&password=%s", s.Addr(), testsvc.Suffix, bindDN, ldapPW),
			fmt.Sprintf("pkcs11:token=%s?module-path=%s&pin-value=%s", label, h.Module, pin),
		},
		"schedule": map[string]any{"kind": "on_demand"},
	}
	var put any
	if code := cp.api("PUT", "/bots/"+botID+"/targets", targets, &put); code != http.StatusOK {
		t.Fatalf("PUT targets: %d %v", code, put)
	}

	runLog := &bytes.Buffer{}
	run := exec.Command(botBin, "run", "--state", state)
	run.Env = append(os.Environ(), h.Env())
	run.Stdout, run.Stderr = runLog, runLog
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = run.Process.Kill(); _ = run.Wait() }()

	var scan map[string]any
	if code := cp.api("POST", "/bots/"+botID+"/scans", nil, &scan); code != http.StatusAccepted {
		t.Fatalf("POST scan: %d %v", code, scan)
	}
	waitScanFinished(t, cp, botID, scan["scan_id"].(string))

	got := listCertificates(t, cp)
	hasLoc := func(fp, prefix string) bool {
		for _, l := range got[fp] {
			if uri, _ := l.(map[string]any)["uri"].(string); strings.HasPrefix(uri, prefix) {
				return true
			}
		}
		return false
	}
	for fp, c := range ldapWant {
		if !hasLoc(fp, "ldap://"+s.Addr()+"/") {
			t.Errorf("%s from the directory is not listed with an ldap:// location: %v", c.Subject.CommonName, got[fp])
		}
	}
	for fp, c := range hsmWant {
		if !hasLoc(fp, "pkcs11:") {
			t.Errorf("%s from the HSM is not listed with a pkcs11: location: %v", c.Subject.CommonName, got[fp])
		}
	}
	if _, ok := got[outside]; ok {
		t.Error("the certificate outside ou=pki is listed")
	}
	if t.Failed() {
		t.Fatalf("bot log:\n%s", tail(runLog.String()))
	}

	// The secrets are in no API answer, no file of the control plane (the
	// SQLite WAL included: it is still running) and neither log.
	var answers bytes.Buffer
	for _, p := range []string{"/bots/" + botID + "/targets", "/bots/" + botID, "/bots/" + botID + "/scans", "/bots", "/certificates?limit=1000"} {
		var v any
		if code := cp.api("GET", p, nil, &v); code != http.StatusOK {
			t.Fatalf("GET %s: %d", p, code)
		}
		b, _ := json.Marshal(v)
		answers.Write(b)
	}
	b, _ := json.Marshal(put)
	answers.Write(b)
	var listed struct {
		Targets []string `json:"targets"`
	}
	cp.api("GET", "/bots/"+botID+"/targets", nil, &listed)
	if len(listed.Targets) != 2 || !strings.Contains(strings.Join(listed.Targets, " "), "REDACTED") {
		t.Errorf("GET targets: %v, want both targets with their secrets REDACTED", listed.Targets)
	}
	assertNoSecrets(t, data, answers.Bytes(), map[string]string{"control plane's log": cp.log.String(), "bot's log": runLog.String()}, ldapPW, pin)
}
