package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/csv"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"github.com/smallstep/pkcs7"

	"github.com/emsign/bot/internal/testsvc"
)

// xssCN is the common name of a certificate the bot finds: a page that
// puts it in the HTML unescaped runs it.
const xssCN = `<script>alert(1)</script>`

// Issue 7, done when: a new user logs in, sees the dashboard with true
// numbers and charts, finds a certificate by part of its SAN, opens it,
// downloads it in each format, creates and configures a bot, and reads the
// audit trail of what they did. In Chromium, with a screenshot of each
// page; two-factor login, roles refused a page and an API route, a
// <script> CN shown as text, the keyboard on the login page.
func TestDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both programs and drives the dashboard in Chromium")
	}
	began := time.Now()
	mark := func(what string) { t.Logf("%5.1f s: %s", time.Since(began).Seconds(), what) }
	cpBin, botBin := binaries(t)
	mark("built")
	data, state, secrets := t.TempDir(), t.TempDir(), t.TempDir()

	const (
		adminEmail = "admin@example.test"
		adminPass  = "admin-e2e-passphrase-7731"
		basicEmail = "basic@example.test"
		basicPass  = "basic-e2e-passphrase-4410"
		jksPass    = "jks-e2e-secret-9902"
	)
	account := runJSON(t, cpBin, "account", "create", "--data", data, "--name", "Example Corp")["account"].(string)
	for _, u := range []struct{ email, role, pass string }{
		{adminEmail, "administrator", adminPass},
		{basicEmail, "basic_user", basicPass},
	} {
		pf := filepath.Join(secrets, u.role+".pass")
		if err := os.WriteFile(pf, []byte(u.pass+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(cpBin, "user", "create", "--data", data, "--account", account,
			"--email", u.email, "--role", u.role, "--password-file", pf).CombinedOutput()
		if err != nil {
			t.Fatalf("emsign-cp user create --role %s: %v\n%s", u.role, err, out)
		}
	}
	adminKey := runJSON(t, cpBin, "apikey", "create", "--data", data, "--account", account, "--role", "administrator")["api_key"].(string)
	basicKey := runJSON(t, cpBin, "apikey", "create", "--data", data, "--account", account, "--role", "basic_user")["api_key"].(string)

	cp := &controlPlane{t: t, bin: cpBin, data: data, listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), apiKey: adminKey}
	cp.start()
	mark("control plane up")
	caPEM, err := os.ReadFile(filepath.Join(data, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)

	// What the bot will find: two TLS servers, one whose CN is a script.
	xssLeaf, xssPort := tlsServer(t, xssCN, "api.shop-frontend.example.test", "www.shop-frontend.example.test")
	_, plainPort := tlsServer(t, "billing.example.test", "billing.example.test")
	xssFP := fingerprint(xssLeaf.Raw)

	b := testsvc.StartChromium(t, testsvc.BrowserConfig{TrustAddr: cp.listen, TrustRoots: roots})
	u := newBrowserUI(t, b, "https://"+cp.listen)
	mark("chromium up")
	defer func() {
		if t.Failed() {
			t.Logf("chromium's log:\n%s", tail(b.Log()))
			t.Logf("control plane's log:\n%s", tail(cp.log.String()))
		}
	}()

	// ---- Keyboard: Tab reaches email, password, the button; Enter submits.
	if code := u.open("/"); code != http.StatusOK {
		u.errorf("GET / without a session: %d, want the login page (200 after the redirect)", code)
	}
	if p := u.path(); !strings.HasPrefix(p, "/login") {
		u.fatalf("GET / without a session shows %s, want /login", p)
	}
	u.must("form#login")
	u.shot("login")
	jsValue[bool](u, `(document.activeElement && document.activeElement.blur(), true)`)
	var order []string
	for range 12 {
		u.key("\t")
		el := u.activeElement()
		order = append(order, el)
		if el == "login-email" || el == "email" {
			break
		}
	}
	if last := order[len(order)-1]; last != "login-email" && last != "email" {
		u.fatalf("Tab never reached the email field: focus went %v", order)
	}
	u.key(adminEmail)
	u.key("\t")
	if el := u.activeElement(); el != "login-password" && el != "password" {
		u.errorf("Tab after email focused %q, want the password field", el)
	}
	u.key(adminPass)
	u.key("\t")
	if el := u.activeElement(); !strings.HasPrefix(el, "button") && jsValue[string](u, `document.activeElement.type`) != "submit" {
		u.errorf("Tab after password focused %q, want the submit button", el)
	}
	// Back to the password field and Enter: the form submits.
	jsValue[bool](u, `(document.querySelector("form#login [name=password]").focus(), true)`)
	if code := u.keyNavigate("\r"); code != http.StatusOK {
		u.fatalf("log in with Enter: status %d", code)
	}
	if p := u.path(); p != "/" {
		u.fatalf("after logging in the admin is on %s, want the dashboard /", p)
	}

	// ---- Dashboard before any scan.
	u.must(`[data-stat="certificates.discovered"]`)
	if got := u.text(`[data-stat="certificates.discovered"]`); got != "0" {
		u.errorf("certificates discovered before any scan: %q, want 0", got)
	}
	u.shot("dashboard-empty")

	// ---- My Bots: create a bot; the token and command are shown once.
	if code := u.open("/bots"); code != http.StatusOK {
		u.fatalf("GET /bots: %d", code)
	}
	u.must("table#bots")
	u.shot("bots-empty")
	u.must("a#new-bot")
	if code := u.open(u.attr("a#new-bot", "href")); code != http.StatusOK {
		u.fatalf("GET new bot: %d", code)
	}
	u.shot("bot-new")
	if code := u.submit("form#new-bot", map[string]string{"name": "edge-web", "group": "web"}); code != http.StatusOK {
		u.fatalf("create a bot: status %d", code)
	}
	token, command := u.text("code#bot-token"), u.text("code#activation-command")
	if token == "" || !strings.Contains(command, token) || !strings.Contains(command, account) {
		u.errorf("the activation command %q does not carry the token %q and the account %s", command, token, account)
	}
	botPage := u.attr("a#bot-page", "href")
	botID := strings.TrimPrefix(botPage, "/bots/")
	u.shot("bot-created")
	pagesBefore := u.seen.Len() // the token is on the pages up to here, by design

	if out, err := exec.Command(botBin, "activate", "--state", state, "--account", account, "--token", token,
		"--url", "https://"+cp.listen, "--ca-file", filepath.Join(data, "ca.pem")).CombinedOutput(); err != nil {
		t.Fatalf("activate with the token from the page: %v: %s", err, out)
	}
	runLog := &bytes.Buffer{}
	run := exec.Command(botBin, "run", "--state", state)
	run.Stdout, run.Stderr = runLog, runLog
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = run.Process.Kill(); _ = run.Wait() }()

	// ---- The bot's settings: a TLS target on both servers, and a Java
	// keystore target (an empty folder) with a password that no page shows.
	if code := u.open(botPage + "/settings"); code != http.StatusOK {
		u.fatalf("GET %s/settings: %d", botPage, code)
	}
	u.shot("bot-settings-empty")
	code := u.submit("form#add-target", map[string]string{"kind": "tls", "tls_hosts": "127.0.0.1",
		"tls_ports": fmt.Sprintf("%d,%d", xssPort, plainPort)})
	if code != http.StatusOK || u.has("#add-target-error") {
		u.fatalf("add the TLS target: status %d", code)
	}
	code = u.submit("form#add-target", map[string]string{"kind": "jks", "jks_path": t.TempDir(), "jks_password": jksPass})
	if code != http.StatusOK || u.has("#add-target-error") {
		u.fatalf("add the keystore target: status %d", code)
	}
	if u.count("table#targets tbody tr[data-target]") != 2 {
		u.errorf("the settings page lists %d targets, want 2", u.count("table#targets tbody tr[data-target]"))
	}
	if strings.Contains(u.html(), jksPass) {
		u.errorf("the settings page shows the keystore password")
	}
	u.shot("bot-settings-targets")

	// ---- Run a scan from the bot's page and wait for it.
	if code := u.open(botPage); code != http.StatusOK {
		u.fatalf("GET %s: %d", botPage, code)
	}
	if code := u.submit("form#run-scan", nil); code != http.StatusOK {
		u.fatalf("run scan: status %d", code)
	}
	u.shot("bot-scan-queued")
	mark("scan requested")
	waitAnyScanFinished(t, cp, botID, runLog)
	mark("scan finished")
	if code := u.open(botPage); code != http.StatusOK {
		u.fatalf("GET %s: %d", botPage, code)
	}
	if u.count("table#scans tr[data-scan]") < 1 {
		u.errorf("the bot's page lists no scan after one finished")
	}
	u.shot("bot-scanned")

	// ---- Dashboard: the true numbers and the four charts.
	if code := u.open("/"); code != http.StatusOK {
		u.fatalf("GET /: %d", code)
	}
	for stat, want := range map[string]string{"certificates.discovered": "2", "endpoints.protected": "2"} {
		if got := u.text(`[data-stat="` + stat + `"]`); got != want {
			u.errorf("dashboard %s: %q, want %s", stat, got, want)
		}
	}
	for _, chart := range []string{"svg#chart-expiring", "svg#chart-issuer", "svg#chart-key", "svg#chart-source"} {
		if !u.has(chart) {
			u.errorf("the dashboard has no %s", chart)
		} else if !u.has(chart + " title") {
			u.errorf("%s has no <title>", chart)
		}
	}
	u.shot("dashboard-scanned")

	// ---- Certificates: find the one by part of its SAN.
	if code := u.open("/certificates"); code != http.StatusOK {
		u.fatalf("GET /certificates: %d", code)
	}
	if n := u.count("table#certificates tr[data-fingerprint]"); n != 2 {
		u.errorf("the certificates page lists %d rows, want 2", n)
	}
	u.shot("certificates")
	if code := u.submit("form#search", map[string]string{"q": "shop-frontend"}); code != http.StatusOK {
		u.fatalf("search: status %d", code)
	}
	if n := u.count("table#certificates tr[data-fingerprint]"); n != 1 {
		u.fatalf("searching shop-frontend lists %d rows, want 1", n)
	}
	if fp := u.attr("table#certificates tr[data-fingerprint]", "data-fingerprint"); !sameFingerprint(fp, xssFP) {
		u.errorf("the row found is %s, want %s", fp, xssFP)
	}
	// The CN is text: the link's text is the CN itself, no dialog opened,
	// and no script element came with the data.
	if got := u.text("table#certificates a.cert-link"); got != xssCN {
		u.errorf("the CN cell reads %q, want %q", got, xssCN)
	}
	u.checkNoInjectedScript()
	u.shot("certificates-search")

	// The CSV export of this search has the row.
	csvData, csvName := u.download("a#export-csv")
	if !strings.HasSuffix(csvName, ".csv") {
		u.errorf("the CSV export is named %q", csvName)
	}
	checkCSV(t, csvData, xssCN, xssFP)

	// ---- The certificate's page and its downloads.
	if code := u.open(u.attr("table#certificates a.cert-link", "href")); code != http.StatusOK {
		u.fatalf("open the certificate: %d", code)
	}
	u.must("dl#cert-details")
	if loc := fmt.Sprintf("127.0.0.1:%d", xssPort); !strings.Contains(u.text("table#cert-locations"), loc) {
		u.errorf("the certificate's locations do not name %s", loc)
	}
	if got := u.text("h1"); got != xssCN {
		u.errorf("the certificate's h1 reads %q, want %q", got, xssCN)
	}
	u.checkNoInjectedScript()
	u.shot("certificate")
	for _, format := range []string{"pem", "der", "p7b"} {
		file, name := u.download("a#download-" + format)
		der, err := certFromDownload(format, file)
		if err != nil {
			u.errorf("download %s (%s): %v", format, name, err)
			continue
		}
		if fingerprint(der) != xssFP {
			u.errorf("the %s download holds %s, want %s", format, fingerprint(der), xssFP)
		}
	}

	mark("certificates done")

	// ---- Two-factor: enrol, log out, log in with a code.
	if code := u.open("/account/totp"); code != http.StatusOK {
		u.fatalf("GET /account/totp: %d", code)
	}
	u.must("img#totp-qr")
	if src := u.attr("img#totp-qr", "src"); !strings.HasPrefix(src, "data:image/png;base64,") {
		u.errorf("the QR code is %.40q, want a PNG data: URI", src)
	}
	adminTOTP := u.text("code#totp-secret")
	u.shot("totp-enrol")
	now := time.Now()
	enrolCode, err := totp.GenerateCode(adminTOTP, now)
	if err != nil {
		t.Fatalf("TOTP code from the page's secret: %v", err)
	}
	if code := u.submit("form:has(input[name=code])", map[string]string{"code": enrolCode}); code != http.StatusOK {
		u.fatalf("enrol: status %d", code)
	}
	if strings.Contains(u.html(), adminTOTP) {
		u.errorf("the page after enrolment still shows the TOTP secret")
	}
	u.logout()
	u.loginForm(adminEmail, adminPass)
	if p := u.path(); !strings.HasPrefix(p, "/login/totp") {
		u.fatalf("after the password, an enrolled admin is on %s, want /login/totp", p)
	}
	u.must("form#totp")
	u.shot("login-totp")
	// A later step than the enrolment's: a code is never accepted twice.
	next := now.Add(30 * time.Second)
	right, _ := totp.GenerateCode(adminTOTP, next)
	wrong := wrongTOTP(adminTOTP, now)
	if code := u.submit("form#totp", map[string]string{"code": wrong}); code == http.StatusOK && !u.has("form#totp") {
		u.fatalf("a wrong code logged in (status %d, now on %s)", code, u.path())
	}
	u.must("form#totp")
	u.shot("login-totp-wrong")
	if code := u.submit("form#totp", map[string]string{"code": right}); code != http.StatusOK {
		u.fatalf("the right code: status %d", code)
	}
	if p := u.path(); p != "/" {
		u.fatalf("after the right code the admin is on %s, want /", p)
	}

	// ---- The account requires two-factor login.
	if code := u.open("/settings"); code != http.StatusOK {
		u.fatalf("GET /settings: %d", code)
	}
	if code := u.submit("form#account-settings", map[string]string{"require_totp": "on"}); code != http.StatusOK {
		u.fatalf("save require_totp: status %d", code)
	}
	if !jsValue[bool](u, `!!document.querySelector("form#account-settings [name=require_totp]") && document.querySelector("form#account-settings [name=require_totp]").checked`) {
		u.errorf("require_totp is not ticked after saving it")
	}
	u.shot("settings-require-totp")

	// ---- Audit: what the admin did, by whom, from where (before logging
	// out: another login would need a third code, 30 s later).
	if code := u.open("/audit"); code != http.StatusOK {
		u.fatalf("GET /audit: %d", code)
	}
	u.must("table#audit")
	rows := jsValue[[][]string](u, `[...document.querySelectorAll("table#audit tbody tr")].map(tr => [...tr.cells].map(td => td.textContent.trim()))`)
	for _, action := range []string{"user.login", "bot.create", "targets.add|targets.update", "bot.scan",
		"user.totp_enrol", "account.require_totp", "certificate.download"} {
		found := false
		for _, r := range rows {
			if len(r) < 6 {
				continue
			}
			if slices.Contains(strings.Split(action, "|"), r[2]) && strings.Contains(r[1], adminEmail) && r[5] == "127.0.0.1" {
				found = true
				break
			}
		}
		if !found {
			u.errorf("the audit log has no %s by %s from 127.0.0.1", action, adminEmail)
		}
	}
	u.shot("audit")

	u.logout()

	mark("admin done")

	// ---- The basic user must enrol before any other page.
	u.loginForm(basicEmail, basicPass)
	if p := u.path(); !strings.HasPrefix(p, "/account/totp") {
		u.fatalf("a basic user without two-factor, on an account that requires it, is on %s after the password, want /account/totp", p)
	}
	u.shot("basic-forced-enrol")
	for _, p := range []string{"/", "/certificates", "/account"} {
		u.open(p)
		if got := u.path(); !strings.HasPrefix(got, "/account/totp") {
			u.errorf("before enrolling, the basic user reached %s (asked %s)", got, p)
		}
	}
	basicTOTP := u.text("code#totp-secret")
	basicCode, _ := totp.GenerateCode(basicTOTP, time.Now())
	if code := u.submit("form:has(input[name=code])", map[string]string{"code": basicCode}); code != http.StatusOK {
		u.fatalf("basic user's enrolment: status %d", code)
	}
	if p := u.path(); strings.HasPrefix(p, "/account/totp") || strings.HasPrefix(p, "/login") {
		u.fatalf("after enrolling the basic user is on %s", p)
	}

	// ---- Roles: the basic user is refused the bots and the audit log.
	for _, p := range []string{"/bots", "/audit"} {
		code := u.open(p)
		if code != http.StatusForbidden {
			u.errorf("basic user GET %s: %d, want 403", p, code)
		}
		if !u.has("h1#error-title") || !strings.Contains(u.text("h1#error-title"), "403") {
			u.errorf("basic user GET %s: no h1#error-title saying 403", p)
		}
		u.shot("basic-refused-" + strings.TrimPrefix(p, "/"))
	}
	if code := u.open("/certificates"); code != http.StatusOK {
		u.errorf("basic user GET /certificates: %d, want 200", code)
	}
	u.shot("basic-certificates")
	u.logout()

	// An API key of the basic_user role: the same rules on the API.
	var answers bytes.Buffer
	apiCall := func(method, path, body string) int {
		req, _ := http.NewRequest(method, "https://"+cp.listen+"/api/v1"+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+basicKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := cp.client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answers.Write(b)
		return resp.StatusCode
	}
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/bots", `{"name":"not-allowed"}`, http.StatusForbidden},
		{"GET", "/bots", "", http.StatusForbidden},
		{"GET", "/certificates", "", http.StatusOK},
	} {
		if got := apiCall(c.method, c.path, c.body); got != c.want {
			t.Errorf("basic_user API key %s /api/v1%s: %d, want %d", c.method, c.path, got, c.want)
		}
	}

	// ---- Secrets: nowhere in clear, except the token on the page that
	// shows it once.
	var listed map[string]any
	cp.api("GET", "/bots/"+botID+"/targets", nil, &listed)
	tb, _ := json.Marshal(listed)
	answers.Write(tb)
	answers.Write(u.seen.Bytes()[pagesBefore:])
	assertNoSecrets(t, data, answers.Bytes(), map[string]string{"control plane's log": cp.log.String(), "bot's log": runLog.String()},
		adminPass, basicPass, token, jksPass)
	if bytes.Contains(u.seen.Bytes()[:pagesBefore], []byte(adminPass)) {
		t.Error("a page shows the admin's password")
	}

	mark("done")
	if d := time.Since(began); d > 60*time.Second {
		t.Logf("the dashboard test took %s, more than its 60 s budget", d.Round(time.Second))
	}
}

// loginForm logs in with the form (the session then needs its second
// factor or not).
func (u *browserUI) loginForm(email, password string) {
	u.t.Helper()
	u.open("/login")
	u.must("form#login")
	if code := u.submit("form#login", map[string]string{"email": email, "password": password}); code != http.StatusOK {
		u.fatalf("log in as %s: status %d", email, code)
	}
	if u.has("#login-error") {
		u.fatalf("log in as %s refused: %s", email, u.text("#login-error"))
	}
}

// logout presses the Log out button.
func (u *browserUI) logout() {
	u.t.Helper()
	if code := u.submit("form[action='/logout']", nil); code != http.StatusOK {
		u.fatalf("log out: status %d", code)
	}
	if code := u.open("/"); code != http.StatusOK || !strings.HasPrefix(u.path(), "/login") {
		u.fatalf("after logging out, GET / shows %s (%d), want the login page", u.path(), code)
	}
}

// checkNoInjectedScript: the only scripts are the dashboard's own file.
func (u *browserUI) checkNoInjectedScript() {
	u.t.Helper()
	bad := jsValue[[]string](u, `[...document.scripts].filter(s => !s.src || new URL(s.src).pathname !== "/static/app.js").map(s => s.outerHTML)`)
	if len(bad) > 0 {
		u.errorf("the page has script elements it does not ship: %v", bad)
	}
	u.checkAlerts()
}

// tlsServer serves a certificate for cn and sans, issued by a CA of its
// own (the chain sent is the leaf alone: the bot finds one certificate
// per server), on 127.0.0.1 until the test ends.
func tlsServer(t *testing.T, cn string, sans ...string) (*x509.Certificate, int) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "E2E Test CA", Organization: []string{"Example Test CA"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: sans,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(20 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	return leaf, ln.Addr().(*net.TCPAddr).Port
}

// waitAnyScanFinished waits until a scan of the bot has finished complete
// (the scan was started from the page, so its ID is not known).
func waitAnyScanFinished(t *testing.T, cp *controlPlane, botID string, runLog *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var scans struct {
			Scans []map[string]any `json:"scans"`
		}
		cp.api("GET", "/bots/"+botID+"/scans", nil, &scans)
		for _, sc := range scans.Scans {
			if sc["finished"] != nil {
				if sc["complete"] != true {
					t.Fatalf("the scan finished incomplete: %v\nbot log:\n%s", sc, tail(runLog.String()))
				}
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no scan of bot %s finished in 30 s\nbot log:\n%s", botID, tail(runLog.String()))
}

// sameFingerprint compares SHA-256 fingerprints written in hex, with or
// without colons, in either case.
func sameFingerprint(a, b string) bool {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, ":", "")) }
	return norm(a) == norm(b)
}

// certFromDownload parses a downloaded certificate and returns its DER.
func certFromDownload(format string, file []byte) ([]byte, error) {
	switch format {
	case "pem":
		block, rest := pem.Decode(file)
		if block == nil || block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("no CERTIFICATE PEM block in %.60q", file)
		}
		if len(bytes.TrimSpace(rest)) > 0 {
			return nil, fmt.Errorf("more than one PEM block")
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return nil, err
		}
		return block.Bytes, nil
	case "der":
		c, err := x509.ParseCertificate(file)
		if err != nil {
			return nil, err
		}
		return c.Raw, nil
	case "p7b":
		// A .p7b may be DER or PEM ("PKCS7").
		if block, _ := pem.Decode(file); block != nil {
			file = block.Bytes
		}
		p7, err := pkcs7.Parse(file)
		if err != nil {
			return nil, fmt.Errorf("pkcs7: %w", err)
		}
		if len(p7.Certificates) == 0 {
			return nil, fmt.Errorf("the PKCS#7 holds no certificate")
		}
		return p7.Certificates[0].Raw, nil
	}
	return nil, fmt.Errorf("unknown format %s", format)
}

// checkCSV: the export has a header and a row with the CN and the
// fingerprint.
func checkCSV(t *testing.T, file []byte, cn, fp string) {
	t.Helper()
	records, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(file, []byte("\xef\xbb\xbf")))).ReadAll()
	if err != nil {
		t.Errorf("the CSV export does not parse: %v\n%.300s", err, file)
		return
	}
	if len(records) < 2 {
		t.Errorf("the CSV export has %d records, want a header and a row", len(records))
		return
	}
	for _, r := range records[1:] {
		hasCN, hasFP := false, false
		for _, cell := range r {
			hasCN = hasCN || cell == cn || cell == "'"+cn
			hasFP = hasFP || sameFingerprint(cell, fp)
		}
		if hasCN && hasFP {
			if len(records) != 2 {
				t.Errorf("the CSV export of a search with one match has %d rows", len(records)-1)
			}
			return
		}
	}
	t.Errorf("the CSV export has no row with CN %q and fingerprint %s:\n%.500s", cn, fp, file)
}

// wrongTOTP is a six-digit code that is valid at no step near now.
func wrongTOTP(secret string, now time.Time) string {
	valid := map[string]bool{}
	for d := -2; d <= 3; d++ {
		c, _ := totp.GenerateCode(secret, now.Add(time.Duration(d)*30*time.Second))
		valid[c] = true
	}
	for _, c := range []string{"000000", "111111", "222222", "333333"} {
		if !valid[c] {
			return c
		}
	}
	return "444444"
}
