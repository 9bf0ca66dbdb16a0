package web

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/auth"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/seal"
	"github.com/emsign/bot/controlplane/store"
	"golang.org/x/crypto/argon2"
)

// authClock is a clock the test moves.
type authClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *authClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *authClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// authEnv is a dashboard on a real SQLite store and real ops, served over
// TLS (the cookies are Secure) on 127.0.0.1.
type authEnv struct {
	t       *testing.T
	st      *store.SQL
	ops     *ops.Ops
	srv     *httptest.Server
	clock   *authClock
	account string
}

const authTestPassword = "correct horse battery staple"

func newAuthEnv(t *testing.T) *authEnv {
	t.Helper()
	ctx := context.Background()
	clock := &authClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "cp.db"), store.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key := make([]byte, seal.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	sl, err := seal.New(key)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	o, err := ops.New(ops.Config{Store: st, Sealer: sl, Logger: log, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{Store: st, Ops: o, Logger: log, Now: clock.Now, Sealer: sl})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(w.Handler())
	t.Cleanup(srv.Close)
	acct, err := st.CreateAccount(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	return &authEnv{t: t, st: st, ops: o, srv: srv, clock: clock, account: acct.ID}
}

// user adds a user with authTestPassword.
func (e *authEnv) user(email, role string) store.User {
	e.t.Helper()
	u := store.User{ID: "u-" + strings.Split(email, "@")[0], Account: e.account, Email: email, Name: "Test " + role, Role: role,
		Password: authCheapHash(e.t, authTestPassword)}
	if err := e.st.CreateUser(context.Background(), u); err != nil {
		e.t.Fatal(err)
	}
	return u
}

// authCheapHash is an argon2id PHC string with the least parameters
// auth.VerifyPassword accepts (it reads them from the string): logins in
// tests then take milliseconds, not half a second each.
func authCheapHash(t *testing.T, password string) string {
	t.Helper()
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		t.Fatal(err)
	}
	sum := argon2.IDKey([]byte(password), salt, 1, 8*1024, 1, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=1,p=1$%s$%s", argon2.Version, 8*1024, b64.EncodeToString(salt), b64.EncodeToString(sum))
}

// authBrowser is a client with its own cookies that does not follow
// redirects (the tests look at each answer).
type authBrowser struct {
	e  *authEnv
	c  *http.Client
	jr *cookiejar.Jar
}

func (e *authEnv) browser() *authBrowser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	c := *e.srv.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &authBrowser{e: e, c: &c, jr: jar}
}

type authAnswer struct {
	status int
	header http.Header
	body   string
}

func (a authAnswer) location() string { return a.header.Get("Location") }

func (b *authBrowser) do(req *http.Request) authAnswer {
	b.e.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return authAnswer{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

func (b *authBrowser) get(path string) authAnswer {
	b.e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.e.srv.URL+path, nil)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return b.do(req)
}

func (b *authBrowser) post(path string, f url.Values) authAnswer {
	b.e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.e.srv.URL+path, strings.NewReader(f.Encode()))
	if err != nil {
		b.e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var (
	authCSRFField  = regexp.MustCompile(`name="csrf" value="([^"]*)"`)
	authTOTPSecret = regexp.MustCompile(`<code id="totp-secret">([A-Z2-7]+)</code>`)
	authTOTPQR     = regexp.MustCompile(`<img id="totp-qr" src="data:image/png;base64,([A-Za-z0-9+/=]|&#43;)+"`)
	authErrorTitle = regexp.MustCompile(`<h1 id="error-title">`)
	authLoginErr   = regexp.MustCompile(`<p class="error" role="alert" id="login-error">([^<]*)</p>`)
)

// csrf is the first CSRF token in a page.
func authCSRF(t *testing.T, body string) string {
	t.Helper()
	m := authCSRFField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf field in %.300s", body)
	}
	return html.UnescapeString(m[1])
}

// tryLogin posts the login form (after getting it, for its CSRF cookie).
func (b *authBrowser) tryLogin(email, password, next string) authAnswer {
	b.e.t.Helper()
	page := b.get("/login")
	if page.status != http.StatusOK {
		b.e.t.Fatalf("GET /login: %d", page.status)
	}
	return b.post("/login", url.Values{"csrf": {authCSRF(b.e.t, page.body)}, "email": {email}, "password": {password},
		"next": {next}})
}

// login logs in and expects to land on want.
func (b *authBrowser) login(email, want string) {
	b.e.t.Helper()
	a := b.tryLogin(email, authTestPassword, "")
	if a.status != http.StatusSeeOther || a.location() != want {
		b.e.t.Fatalf("login %s: %d to %q, want 303 to %q; %s", email, a.status, a.location(), want, authLoginMessage(a.body))
	}
}

// postForm gets page, then posts its form with the page's CSRF token.
func (b *authBrowser) postForm(page, action string, f url.Values) authAnswer {
	b.e.t.Helper()
	p := b.get(page)
	if p.status != http.StatusOK {
		b.e.t.Fatalf("GET %s: %d", page, p.status)
	}
	f.Set("csrf", authCSRF(b.e.t, p.body))
	return b.post(action, f)
}

func authLoginMessage(body string) string {
	if m := authLoginErr.FindStringSubmatch(body); m != nil {
		return html.UnescapeString(m[1])
	}
	return ""
}

func (b *authBrowser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.e.srv.URL)
	for _, c := range b.jr.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// audited lists the account's audit actions, newest first.
func (e *authEnv) audited() []store.AuditEntry {
	e.t.Helper()
	entries, _, err := e.st.Audit(context.Background(), e.account, store.AuditFilter{Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	return entries
}

func authHasAudit(entries []store.AuditEntry, action, actor string) bool {
	for _, en := range entries {
		if en.Action == action && en.Actor == actor {
			return true
		}
	}
	return false
}

func TestLoginSuccessCookieAndHeaders(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	b := e.browser()

	page := b.get("/login")
	if page.status != http.StatusOK || !strings.Contains(page.body, `id="login"`) {
		t.Fatalf("login page: %d", page.status)
	}
	if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	if strings.Contains(page.body, "<script>") || strings.Contains(page.body, `style="`) {
		t.Error("inline script or style in the login page")
	}
	a := b.post("/login", url.Values{"csrf": {authCSRF(t, page.body)}, "email": {"ANA@example.com "}, "password": {authTestPassword}})
	if a.status != http.StatusSeeOther || a.location() != "/" {
		t.Fatalf("login: %d to %q: %s", a.status, a.location(), authLoginMessage(a.body))
	}
	var set string
	for _, c := range a.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, SessionCookie+"=") {
			set = c
		}
	}
	for _, want := range []string{"HttpOnly", "Secure", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(set, want) {
			t.Errorf("session cookie %q lacks %s", set, want)
		}
	}
	if !strings.HasPrefix(SessionCookie, "__Host-") || strings.Contains(strings.ToLower(set), "domain=") {
		t.Errorf("session cookie %q: want __Host- and no Domain", set)
	}
	// The store keeps the hash only.
	c := b.cookie(SessionCookie)
	sess, err := e.st.Session(context.Background(), hashToken(c.Value))
	if err != nil || sess.Stage != store.SessionOK || sess.UserID != "u-ana" {
		t.Fatalf("session %+v, %v", sess, err)
	}
	acct := b.get("/account")
	if acct.status != http.StatusOK || !strings.Contains(acct.body, "ana@example.com") {
		t.Fatalf("account: %d", acct.status)
	}
	if acct.header.Get("Content-Security-Policy") == "" || acct.header.Get("Cache-Control") != "no-store" {
		t.Errorf("account headers %v", acct.header)
	}
	if !authHasAudit(e.audited(), "user.login", "ana@example.com") {
		t.Error("no user.login audit entry")
	}
	// The login page of someone logged in goes home.
	if a := b.get("/login"); a.status != http.StatusSeeOther || a.location() != "/" {
		t.Errorf("login page when logged in: %d to %q", a.status, a.location())
	}
}

func TestLoginRefusedSameMessage(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	off := e.user("bo@example.com", "basic_user")
	disabled := true
	if _, err := e.st.UpdateUser(context.Background(), e.account, off.ID, store.UserPatch{Disabled: &disabled}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, email, password string
	}{
		{"wrong password", "ana@example.com", "not the password at all"},
		{"unknown email", "nobody@example.com", authTestPassword},
		{"disabled user", "bo@example.com", authTestPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := e.browser()
			a := b.tryLogin(tt.email, tt.password, "")
			if a.status != http.StatusUnauthorized || authLoginMessage(a.body) != msgLoginWrong {
				t.Fatalf("%d %q, want 401 %q", a.status, authLoginMessage(a.body), msgLoginWrong)
			}
			if b.cookie(SessionCookie) != nil {
				t.Fatal("a session cookie after a refused login")
			}
			if strings.Contains(a.body, tt.password) {
				t.Fatal("the password is in the page")
			}
		})
	}
	entries := e.audited()
	if !authHasAudit(entries, "user.login_failed", "ana@example.com") || !authHasAudit(entries, "user.login_failed", "bo@example.com") {
		t.Errorf("failed logins not audited: %+v", entries)
	}
	for _, en := range entries {
		if strings.Contains(en.Detail, authTestPassword) || strings.Contains(en.Detail, "not the password") {
			t.Errorf("password in the audit log: %+v", en)
		}
	}
}

func TestLoginLockout(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	b := e.browser()
	for i := 1; i <= maxLoginFailures; i++ {
		a := b.tryLogin("ana@example.com", "wrong password number x", "")
		want := msgLoginWrong
		if i == maxLoginFailures {
			want = msgLoginLocked
		}
		if got := authLoginMessage(a.body); got != want {
			t.Fatalf("failure %d: %q, want %q", i, got, want)
		}
	}
	// Locked: even the right password is refused.
	if a := b.tryLogin("ana@example.com", authTestPassword, ""); a.status != http.StatusTooManyRequests || authLoginMessage(a.body) != msgLoginLocked {
		t.Fatalf("while locked: %d %q", a.status, authLoginMessage(a.body))
	}
	e.clock.Add(lockoutFor - time.Minute)
	if a := b.tryLogin("ana@example.com", authTestPassword, ""); authLoginMessage(a.body) != msgLoginLocked {
		t.Fatalf("still locked: %d %q", a.status, authLoginMessage(a.body))
	}
	e.clock.Add(2 * time.Minute)
	b.login("ana@example.com", "/")
	// The success cleared the count: a new failure is only a failure.
	b2 := e.browser()
	if a := b2.tryLogin("ana@example.com", "wrong again, once", ""); authLoginMessage(a.body) != msgLoginWrong {
		t.Fatalf("after success: %q", authLoginMessage(a.body))
	}
}

func TestLoginCSRF(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	tests := []struct {
		name   string
		prep   func(b *authBrowser) (url.Values, http.Header)
		status int
	}{
		{"no token", func(b *authBrowser) (url.Values, http.Header) {
			b.get("/login")
			return url.Values{}, nil
		}, http.StatusForbidden},
		{"wrong token", func(b *authBrowser) (url.Values, http.Header) {
			b.get("/login")
			return url.Values{"csrf": {strings.Repeat("A", 43)}}, nil
		}, http.StatusForbidden},
		{"no cookie", func(b *authBrowser) (url.Values, http.Header) {
			p := b.e.browser().get("/login") // another browser's token
			return url.Values{"csrf": {authCSRF(b.e.t, p.body)}}, nil
		}, http.StatusForbidden},
		{"other origin", func(b *authBrowser) (url.Values, http.Header) {
			p := b.get("/login")
			return url.Values{"csrf": {authCSRF(b.e.t, p.body)}}, http.Header{"Origin": {"https://evil.example"}}
		}, http.StatusForbidden},
		{"right token", func(b *authBrowser) (url.Values, http.Header) {
			p := b.get("/login")
			return url.Values{"csrf": {authCSRF(b.e.t, p.body)}}, nil
		}, http.StatusSeeOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := e.browser()
			f, h := tt.prep(b)
			f.Set("email", "ana@example.com")
			f.Set("password", authTestPassword)
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/login", strings.NewReader(f.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for k, v := range h {
				req.Header[k] = v
			}
			a := b.do(req)
			if a.status != tt.status {
				t.Fatalf("%d, want %d: %s", a.status, tt.status, authLoginMessage(a.body))
			}
			if tt.status != http.StatusSeeOther && b.cookie(SessionCookie) != nil {
				t.Fatal("session made despite the CSRF failure")
			}
		})
	}
}

func TestLoginNext(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	tests := []struct{ next, want string }{
		{"/certificates?q=web", "/certificates?q=web"},
		{"/bots/b1/settings", "/bots/b1/settings"},
		{"", "/"},
		{"//evil.example/x", "/"},
		{"/\\evil.example", "/"},
		{"https://evil.example/", "/"},
		{"/\t/evil.example", "/"},
		{"javascript:alert(1)", "/"},
		{"/login", "/"},
	}
	for _, tt := range tests {
		t.Run(tt.next, func(t *testing.T) {
			b := e.browser()
			a := b.tryLogin("ana@example.com", authTestPassword, tt.next)
			if a.status != http.StatusSeeOther || a.location() != tt.want {
				t.Fatalf("%d to %q, want %q", a.status, a.location(), tt.want)
			}
		})
	}
	// A page asked for without a session sends to login with next.
	b := e.browser()
	if a := b.get("/account?x=1"); a.status != http.StatusSeeOther || a.location() != "/login?next="+url.QueryEscape("/account?x=1") {
		t.Fatalf("no session: %d to %q", a.status, a.location())
	}
}

func TestSessionCSRF(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	b := e.browser()
	b.login("ana@example.com", "/")
	good := authCSRF(t, b.get("/settings").body)
	tests := []struct {
		name   string
		token  string
		origin string
		status int
	}{
		{"no token", "", "", http.StatusForbidden},
		{"wrong token", strings.Repeat("x", len(good)), "", http.StatusForbidden},
		{"other origin", good, "https://evil.example", http.StatusForbidden},
		{"right token", good, "", http.StatusSeeOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := url.Values{"require_totp": {"on"}}
			if tt.token != "" {
				f.Set("csrf", tt.token)
			}
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/settings", strings.NewReader(f.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			a := b.do(req)
			if a.status != tt.status {
				t.Fatalf("%d, want %d", a.status, tt.status)
			}
			if tt.status == http.StatusForbidden && !authErrorTitle.MatchString(a.body) {
				t.Fatal("refusal without h1#error-title")
			}
			acct, err := e.st.Account(context.Background(), e.account)
			if err != nil {
				t.Fatal(err)
			}
			if acct.RequireTOTP != (tt.status == http.StatusSeeOther) {
				t.Fatalf("require_totp %v after %d", acct.RequireTOTP, a.status)
			}
		})
	}
}

// enrol runs the enrolment from the page at path and returns the secret;
// the code typed is the one of now.
func (b *authBrowser) enrol(path string) (string, authAnswer) {
	t := b.e.t
	t.Helper()
	p := b.get(path)
	if p.status != http.StatusOK {
		t.Fatalf("GET %s: %d", path, p.status)
	}
	m := authTOTPSecret.FindStringSubmatch(p.body)
	if m == nil || !authTOTPQR.MatchString(p.body) {
		t.Fatalf("enrolment page without secret or QR code: %.2000s", p.body)
	}
	// The page shown again keeps the same pending secret.
	if again := authTOTPSecret.FindStringSubmatch(b.get(path).body); again == nil || again[1] != m[1] {
		t.Fatalf("pending secret changed on reload")
	}
	code, err := auth.TOTPCode(m[1], auth.TOTPStep(b.e.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return m[1], b.post("/account/totp", url.Values{"csrf": {authCSRF(t, p.body)}, "code": {code}})
}

func TestTOTPEnrolLoginAndReplay(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	b := e.browser()
	b.login("ana@example.com", "/")

	// A wrong code does not enrol.
	p := b.get("/account/totp")
	if a := b.post("/account/totp", url.Values{"csrf": {authCSRF(t, p.body)}, "code": {"000000"}}); a.status != http.StatusBadRequest {
		t.Fatalf("wrong enrolment code: %d", a.status)
	}
	secret, a := b.enrol("/account/totp")
	if a.status != http.StatusSeeOther || a.location() != "/account" {
		t.Fatalf("enrol: %d to %q", a.status, a.location())
	}
	u, err := e.st.UserByEmail(context.Background(), "ana@example.com")
	if err != nil || len(u.TOTPSealed) == 0 || strings.Contains(string(u.TOTPSealed), secret) {
		t.Fatalf("secret not stored sealed: %v", err)
	}
	if !authHasAudit(e.audited(), "user.totp_enrol", "ana@example.com") {
		t.Error("enrolment not audited")
	}
	if acct := b.get("/account"); !strings.Contains(acct.body, "On.") {
		t.Error("account page does not show two-factor on")
	}

	// The code used to enrol cannot log in.
	b2 := e.browser()
	b2.login("ana@example.com", "/login/totp")
	if a := b2.get("/"); a.status != http.StatusSeeOther || a.location() != "/login/totp" {
		t.Fatalf("page before the code: %d to %q", a.status, a.location())
	}
	enrolCode, _ := auth.TOTPCode(secret, auth.TOTPStep(e.clock.Now()))
	if a := b2.postForm("/login/totp", "/login/totp", url.Values{"code": {enrolCode}}); !strings.Contains(html.UnescapeString(a.body), msgCodeReused) {
		t.Fatalf("enrolment code reused: %d", a.status)
	}
	if a := b2.postForm("/login/totp", "/login/totp", url.Values{"code": {"123456"}}); a.status != http.StatusUnauthorized ||
		!strings.Contains(a.body, msgCodeWrong) {
		t.Fatalf("wrong code: %d", a.status)
	}
	e.clock.Add(auth.TOTPPeriod * time.Second)
	code, _ := auth.TOTPCode(secret, auth.TOTPStep(e.clock.Now()))
	if a := b2.postForm("/login/totp", "/login/totp", url.Values{"code": {code}}); a.status != http.StatusSeeOther || a.location() != "/" {
		t.Fatalf("right code: %d to %q", a.status, a.location())
	}
	if a := b2.get("/account"); a.status != http.StatusOK {
		t.Fatalf("after the code: %d", a.status)
	}

	// The same code again, in another login: refused.
	b3 := e.browser()
	b3.login("ana@example.com", "/login/totp")
	a = b3.postForm("/login/totp", "/login/totp", url.Values{"code": {code}})
	if a.status != http.StatusUnauthorized || !strings.Contains(html.UnescapeString(a.body), msgCodeReused) {
		t.Fatalf("replayed code: %d", a.status)
	}
	if a := b3.get("/account"); a.status != http.StatusSeeOther {
		t.Fatalf("replayed code logged in: %d", a.status)
	}
	if !authHasAudit(e.audited(), "user.login", "ana@example.com") {
		t.Error("no login audited")
	}
}

func TestTOTPWrongCodesEndSession(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	b := e.browser()
	b.login("ana@example.com", "/")
	b.enrol("/account/totp")

	b2 := e.browser()
	b2.login("ana@example.com", "/login/totp")
	cookie := b2.cookie(SessionCookie).Value
	var a authAnswer
	for i := 1; i <= maxLoginFailures; i++ {
		a = b2.postForm("/login/totp", "/login/totp", url.Values{"code": {"999999"}})
	}
	if a.status != http.StatusSeeOther || a.location() != "/login" {
		t.Fatalf("after %d wrong codes: %d to %q", maxLoginFailures, a.status, a.location())
	}
	if _, err := e.st.Session(context.Background(), hashToken(cookie)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("session still there: %v", err)
	}
	// And a new login meets the lockout.
	if a := e.browser().tryLogin("ana@example.com", authTestPassword, ""); authLoginMessage(a.body) != msgLoginLocked {
		t.Fatalf("after wrong codes: %q", authLoginMessage(a.body))
	}
}

func TestRequireTOTPForcesEnrolment(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	e.user("bo@example.com", "basic_user")
	admin := e.browser()
	admin.login("ana@example.com", "/")
	if a := admin.postForm("/settings", "/settings", url.Values{"require_totp": {"on"}}); a.status != http.StatusSeeOther {
		t.Fatalf("settings: %d", a.status)
	}
	if s := admin.get("/settings"); !strings.Contains(s.body, "checked") {
		t.Error("setting not shown as on")
	}

	b := e.browser()
	b.login("bo@example.com", "/account/totp")
	for _, path := range []string{"/", "/certificates", "/account", "/login/totp"} {
		if a := b.get(path); a.status != http.StatusSeeOther || a.location() != "/account/totp" {
			t.Errorf("%s before enrolment: %d to %q", path, a.status, a.location())
		}
	}
	_, a := b.enrol("/account/totp")
	if a.status != http.StatusSeeOther || a.location() != "/" {
		t.Fatalf("forced enrolment: %d to %q", a.status, a.location())
	}
	if a := b.get("/account"); a.status != http.StatusOK {
		t.Fatalf("after enrolment: %d", a.status)
	}
	// With next kept through enrolment.
	e.user("cy@example.com", "basic_user")
	c := e.browser()
	a = c.tryLogin("cy@example.com", authTestPassword, "/account?tab=1")
	if a.status != http.StatusSeeOther || a.location() != "/account/totp?next="+url.QueryEscape("/account?tab=1") {
		t.Fatalf("login with next: %d to %q", a.status, a.location())
	}
	p := c.get(a.location())
	m := authTOTPSecret.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatal("no secret")
	}
	code, _ := auth.TOTPCode(m[1], auth.TOTPStep(e.clock.Now()))
	a = c.post("/account/totp", url.Values{"csrf": {authCSRF(t, p.body)}, "code": {code}, "next": {"/account?tab=1"}})
	if a.status != http.StatusSeeOther || a.location() != "/account?tab=1" {
		t.Fatalf("enrolment with next: %d to %q", a.status, a.location())
	}
}

func TestRolesRefused(t *testing.T) {
	e := newAuthEnv(t)
	e.user("bo@example.com", "basic_user")
	b := e.browser()
	b.login("bo@example.com", "/")
	for _, path := range []string{"/users", "/audit", "/apikeys", "/settings"} {
		a := b.get(path)
		if a.status != http.StatusForbidden || !authErrorTitle.MatchString(a.body) {
			t.Errorf("basic user GET %s: %d", path, a.status)
		}
	}
	good := authCSRF(t, b.get("/account").body)
	for _, path := range []string{"/users", "/apikeys", "/settings", "/users/u-bo/role"} {
		a := b.post(path, url.Values{"csrf": {good}, "role": {"administrator"}, "email": {"x@example.com"},
			"password": {"a long enough password"}})
		if a.status != http.StatusForbidden {
			t.Errorf("basic user POST %s: %d", path, a.status)
		}
	}
	if u, _ := e.st.UserByEmail(context.Background(), "bo@example.com"); u.Role != "basic_user" {
		t.Errorf("role changed to %s", u.Role)
	}
}

func TestLogoutEndsSession(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	b := e.browser()
	b.login("ana@example.com", "/")
	old := b.cookie(SessionCookie).Value
	a := b.postForm("/account", "/logout", url.Values{})
	if a.status != http.StatusSeeOther || a.location() != "/login" {
		t.Fatalf("logout: %d to %q", a.status, a.location())
	}
	if _, err := e.st.Session(context.Background(), hashToken(old)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("session kept: %v", err)
	}
	// The old cookie, sent again by hand, no longer works.
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/account", nil)
	req.AddCookie(&http.Cookie{Name: SessionCookie, Value: old})
	if a := e.browser().do(req); a.status != http.StatusSeeOther || !strings.HasPrefix(a.location(), "/login") {
		t.Fatalf("old cookie: %d to %q", a.status, a.location())
	}
	entries := e.audited()
	if !authHasAudit(entries, "user.login", "ana@example.com") || !authHasAudit(entries, "user.logout", "ana@example.com") {
		t.Fatalf("login/logout not audited: %+v", entries)
	}
	for _, en := range entries {
		if en.Remote != "127.0.0.1" || en.ActorKind != ops.ActorUser {
			t.Errorf("entry %+v: want remote 127.0.0.1, kind user", en)
		}
	}
}

func TestSessionExpiry(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	b := e.browser()
	b.login("ana@example.com", "/")
	e.clock.Add(29 * time.Minute)
	if a := b.get("/account"); a.status != http.StatusOK {
		t.Fatalf("after 29 minutes: %d", a.status)
	}
	e.clock.Add(31 * time.Minute)
	if a := b.get("/account"); a.status != http.StatusSeeOther {
		t.Fatalf("after 31 idle minutes: %d", a.status)
	}
	// A session waiting for its code ends sooner than a full one.
	b2 := e.browser()
	b2.login("ana@example.com", "/")
	b2.enrol("/account/totp")
	b3 := e.browser()
	b3.login("ana@example.com", "/login/totp")
	for range 2 {
		e.clock.Add(pendingSessionMax/2 + time.Second)
		b3.get("/login/totp") // not idle
	}
	if a := b3.get("/login/totp"); a.status != http.StatusSeeOther || !strings.HasPrefix(a.location(), "/login?") {
		t.Fatalf("pending session after %v: %d to %q", pendingSessionMax, a.status, a.location())
	}
}

func TestChangePassword(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	b := e.browser()
	b.login("ana@example.com", "/")
	other := e.browser()
	other.login("ana@example.com", "/")
	const newPassword = "a brand new passphrase"
	tests := []struct {
		name                  string
		current, next, repeat string
	}{
		{"wrong current", "wrong current password", newPassword, newPassword},
		{"confirm differs", authTestPassword, newPassword, newPassword + "x"},
		{"too short", authTestPassword, "short", "short"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := b.postForm("/account", "/account/password", url.Values{"current": {tt.current}, "new": {tt.next}, "confirm": {tt.repeat}})
			if a.status != http.StatusBadRequest || !strings.Contains(a.body, `id="password-error"`) {
				t.Fatalf("%d", a.status)
			}
			if strings.Contains(a.body, tt.current) || strings.Contains(a.body, tt.next) {
				t.Fatal("a password put back into the page")
			}
		})
	}
	a := b.postForm("/account", "/account/password", url.Values{"current": {authTestPassword}, "new": {newPassword}, "confirm": {newPassword}})
	if a.status != http.StatusSeeOther || a.location() != "/login" {
		t.Fatalf("change: %d to %q", a.status, a.location())
	}
	for _, br := range []*authBrowser{b, other} {
		if a := br.get("/account"); a.status != http.StatusSeeOther {
			t.Fatalf("a session survived the password change: %d", a.status)
		}
	}
	if a := e.browser().tryLogin("ana@example.com", authTestPassword, ""); a.status != http.StatusUnauthorized {
		t.Fatalf("old password: %d", a.status)
	}
	if a := e.browser().tryLogin("ana@example.com", newPassword, ""); a.status != http.StatusSeeOther {
		t.Fatalf("new password: %d", a.status)
	}
}
