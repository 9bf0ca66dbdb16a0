package e2e

import (
	"crypto/x509"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/internal/testsvc"
)

// Issue 8, done when (the dashboard half): an Administrator rotates a
// discovered certificate from its page in Chromium: the order page shows
// the steps and ends rotated, the endpoint serves the new certificate
// issued by Pebble, and the dashboard's Rotated number moves (D7, S5).
func TestRotationFromDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("runs both programs, Pebble, openssl s_server and Chromium")
	}
	const (
		adminEmail = "admin@example.test"
		adminPass  = "admin-e2e-passphrase-5581"
	)
	oldCA := newIssuingCA(t, "Old Issuing CA")
	web := newSite(t, oldCA, "portal.example.test")
	env := startRotationEnv(t, nil, web)
	cp := env.cp
	pf := filepath.Join(t.TempDir(), "admin.pass")
	if err := os.WriteFile(pf, []byte(adminPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cpBin, _ := binaries(t)
	if out, err := exec.Command(cpBin, "user", "create", "--data", cp.data, "--account", env.account,
		"--email", adminEmail, "--role", "administrator", "--password-file", pf).CombinedOutput(); err != nil {
		t.Fatalf("user create: %v\n%s", err, out)
	}
	env.scan()
	if code := cp.api("POST", "/provisioning-templates", map[string]any{
		"name": "Public web (ACME)", "default": true, "key_pair": "new", "keystore_password_type": "random",
		"ca_connector": "acme", "ca_settings": "pebble",
	}, nil); code != http.StatusCreated {
		t.Fatalf("POST provisioning-templates: %d", code)
	}

	caPEM, err := os.ReadFile(filepath.Join(cp.data, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	b := testsvc.StartChromium(t, testsvc.BrowserConfig{TrustAddr: cp.listen, TrustRoots: roots})
	u := newBrowserUI(t, b, "https://"+cp.listen)
	defer func() {
		if t.Failed() {
			t.Logf("chromium's log:\n%s\n%s", tail(b.Log()), env.logs())
		}
	}()
	u.loginForm(adminEmail, adminPass)
	rotatedBefore := dashboardCount(u, "#count-rotated")

	fp := fingerprint(web.old.Raw)
	if code := u.open("/certificates/" + fp); code != http.StatusOK {
		u.fatalf("certificate page: %d", code)
	}
	u.must("form#rotate-form")
	// The location choice names the file, never the TLS endpoint (which
	// is verified, not written).
	loc := fileLocation(t, cp, web.old)
	value := jsValue[string](u, `(function(){ for (const o of document.querySelectorAll("#rotate-location option")) { if (o.value.endsWith("|`+loc+`") || o.value === "`+loc+`") return o.value; } return ""; })()`)
	if value == "" {
		u.fatalf("the rotate form offers no choice for %s: %s", loc, u.text("#rotate-location"))
	}
	if strings.Contains(u.text("#rotate-location"), "tls://") {
		u.errorf("the rotate form offers a TLS endpoint: %s", u.text("#rotate-location"))
	}
	u.shot("rotate-form")
	if code := u.submit("form#rotate-form", map[string]string{
		"location": value, "action": "rotate", "reload": strings.Join(web.reload, " "),
	}); code != http.StatusOK {
		u.fatalf("submit the rotate form: %d", code)
	}
	if u.has("#rotate-error") {
		u.fatalf("the rotation was refused: %s", u.text("#rotate-error"))
	}
	if !strings.HasPrefix(u.path(), "/orders/") {
		u.fatalf("after the rotate form the browser shows %s, want the order's page", u.path())
	}
	orderPath := u.path()
	u.shot("order-initiated")

	// The order page refreshes itself while the order runs; poll it as a
	// person watching would.
	deadline := time.Now().Add(2 * time.Minute)
	status := ""
	for {
		status = strings.TrimSpace(u.text("#order-status"))
		if status == "rotated" || status == "failed" || status == "rolled_back" {
			break
		}
		if time.Now().After(deadline) {
			u.fatalf("order still %q after 2 minutes", status)
		}
		time.Sleep(time.Second)
		u.open(orderPath)
	}
	u.shot("order-rotated")
	if status != "rotated" {
		u.fatalf("the order ended %s: %s", status, u.text("#order-events"))
	}
	events := u.text("#order-events")
	for _, step := range []string{"key", "csr", "issued", "backup", "write", "reload", "verify"} {
		if !strings.Contains(events, step) {
			u.errorf("the order's history lacks the %s step:\n%s", step, events)
		}
	}
	served := readCert(t, filepath.Join(web.dir, "cert.pem"))
	web.waitServes(t, fingerprint(served.Raw), 10*time.Second)
	if !strings.Contains(served.Issuer.CommonName, "Pebble") {
		u.errorf("the deployed certificate's issuer is %q, want Pebble's", served.Issuer)
	}
	u.open("/")
	if after := dashboardCount(u, "#count-rotated"); after != rotatedBefore+1 {
		u.errorf("the dashboard's Rotated number went from %d to %d, want +1", rotatedBefore, after)
	}
	u.shot("dashboard-after-rotation")
	u.checkNoInjectedScript()
}

// dashboardCount reads one of the dashboard's numbers (the page contract
// gives each an id holding the bare number).
func dashboardCount(u *browserUI, sel string) int {
	u.t.Helper()
	if !strings.HasPrefix(u.path(), "/") || u.path() != "/" {
		u.open("/")
	}
	n, err := strconv.Atoi(strings.TrimSpace(u.text(sel)))
	if err != nil {
		u.fatalf("dashboard %s holds %q, want a number", sel, u.text(sel))
	}
	return n
}
