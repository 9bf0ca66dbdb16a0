package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/auth"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/seal"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// btPasswordHash is every test user's password hash, made once: argon2id
// is slow by design.
var btPasswordHash = sync.OnceValues(func() (string, error) { return auth.HashPassword("correct horse battery staple") })

const btCA = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"

// btHost is the Host the browser used: the activation command names it.
const btHost = "cp.example.com:8443"

// btEnv is a dashboard over a real SQLite store, sealer and ops, with an
// account and users logged in by role.
type btEnv struct {
	t       *testing.T
	st      *store.SQL
	ops     *ops.Ops
	h       http.Handler
	account string
	hash    string // one argon2id hash for every user: hashing is slow
}

// btUser is a logged-in user: the session cookie and its CSRF token.
type btUser struct {
	role, cookie, csrf string
	actor              ops.Actor
}

func newBTEnv(t *testing.T, caPEM []byte) *btEnv {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "cp.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key := make([]byte, seal.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.New(key)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	o, err := ops.New(ops.Config{Store: st, Sealer: sealer, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Store: st, Ops: o, Logger: log, CACertPEM: caPEM})
	if err != nil {
		t.Fatal(err)
	}
	acct, err := st.CreateAccount(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetBotLimit(ctx, acct.ID, 10); err != nil {
		t.Fatal(err)
	}
	hash, err := btPasswordHash()
	if err != nil {
		t.Fatal(err)
	}
	return &btEnv{t: t, st: st, ops: o, h: s.Handler(), account: acct.ID, hash: hash}
}

func btRandom(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// login makes a user of role in the env's account (or another) and a
// session for it.
func (e *btEnv) login(role string) btUser { return e.loginIn(e.account, role) }

func (e *btEnv) loginIn(account, role string) btUser {
	e.t.Helper()
	ctx := context.Background()
	u := store.User{ID: btRandom(e.t), Account: account, Email: btRandom(e.t)[:8] + "@example.com", Name: role, Role: role,
		Password: e.hash}
	if err := e.st.CreateUser(ctx, u); err != nil {
		e.t.Fatal(err)
	}
	tok, csrf := btRandom(e.t), btRandom(e.t)
	now := time.Now()
	if err := e.st.CreateSession(ctx, store.Session{IDHash: hashToken(tok), UserID: u.ID, Account: account,
		Stage: store.SessionOK, CSRF: csrf, CreatedAt: now, LastSeen: now, Expires: now.Add(time.Hour)}); err != nil {
		e.t.Fatal(err)
	}
	return btUser{role: role, cookie: tok, csrf: csrf,
		actor: ops.Actor{Account: account, Kind: ops.ActorUser, ID: u.ID, Name: u.Email, Role: "administrator"}}
}

func (e *btEnv) do(u btUser, method, path string, form url.Values) *httptest.ResponseRecorder {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, path, body)
	r.Host = btHost
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if u.cookie != "" {
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: u.cookie})
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

func (e *btEnv) get(u btUser, path string) *httptest.ResponseRecorder {
	return e.do(u, http.MethodGet, path, nil)
}

// post sends form with the user's CSRF token (unless form sets csrf).
func (e *btEnv) post(u btUser, path string, form url.Values) *httptest.ResponseRecorder {
	e.t.Helper()
	f := url.Values{}
	for k, v := range form {
		f[k] = v
	}
	if _, ok := f["csrf"]; !ok {
		f.Set("csrf", u.csrf)
	}
	return e.do(u, http.MethodPost, path, f)
}

// bot creates a bot through ops, as an administrator.
func (e *btEnv) bot(name string) string {
	e.t.Helper()
	id, _, err := e.ops.CreateBot(context.Background(), e.admin(), name, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *btEnv) admin() ops.Actor {
	return ops.Actor{Account: e.account, Kind: ops.ActorCLI, ID: "test", Name: "test", Role: "administrator"}
}

func (e *btEnv) targets(id string) ops.TargetSettings {
	e.t.Helper()
	ts, err := e.ops.Targets(context.Background(), e.admin(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return ts
}

func btWant(t *testing.T, w *httptest.ResponseRecorder, status int, contains ...string) string {
	t.Helper()
	body := w.Body.String()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body:\n%s", w.Code, status, btMain(body))
	}
	for _, c := range contains {
		if !strings.Contains(body, c) {
			t.Errorf("body lacks %q:\n%s", c, btMain(body))
		}
	}
	return body
}

// btMain is the page's main element, for readable failures.
func btMain(body string) string {
	if i := strings.Index(body, "<main"); i >= 0 {
		body = body[i:]
	}
	if len(body) > 4000 {
		body = body[:4000]
	}
	return body
}

var btTokenRE = regexp.MustCompile(`<code id="bot-token">([^<]+)</code>`)

func TestBotCreateShowsTokenOnce(t *testing.T) {
	e := newBTEnv(t, []byte(btCA))
	admin1 := e.login("administrator")

	w := e.post(admin1, "/bots/new", url.Values{"name": {"web-1"}, "group": {"dmz"}})
	body := btWant(t, w, http.StatusOK, `id="activation-command"`, `id="activation-command-windows"`, `data-copy="activation-command"`,
		`href="/bots/ca.pem"`)
	m := btTokenRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no code#bot-token")
	}
	token := m[1]
	for _, want := range []string{
		"emsign-bot activate --state /var/lib/emsign-bot --account " + e.account + " --token " + token +
			" --url https://" + btHost + " --ca-file ca.pem",
		html.EscapeString(`emsign-bot.exe activate --state "C:\ProgramData\emSign Bot" --account ` + e.account + " --token " + token +
			" --url https://" + btHost + " --ca-file ca.pem"),
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no activation command %q", want)
		}
	}
	// The token is the bot's, and travels in no cookie or URL.
	holder, _, ok, err := admin.FindTokenHolder(context.Background(), e.st, e.account, token)
	if err != nil || !ok || holder.Name != "web-1" || holder.Group != "dmz" {
		t.Fatalf("token holder %+v %v %v", holder, ok, err)
	}
	if loc := w.Header().Get("Location"); loc != "" {
		t.Errorf("redirected to %s", loc)
	}
	for _, c := range w.Result().Cookies() {
		if strings.Contains(c.Value, token) {
			t.Errorf("token in cookie %s", c.Name)
		}
	}
	// Shown once: no other page has it.
	for _, p := range []string{"/bots", "/bots/" + holder.ID, "/bots/" + holder.ID + "/settings"} {
		if b := btWant(t, e.get(admin1, p), http.StatusOK); strings.Contains(b, token) {
			t.Errorf("%s shows the token", p)
		}
	}
	list := btWant(t, e.get(admin1, "/bots"), http.StatusOK, `id="bots"`, `id="new-bot"`, "web-1", "dmz", "Activation Pending",
		"status-activation_pending", "1 of 10")
	_ = list
}

func TestBotCreateRefused(t *testing.T) {
	tests := []struct {
		name   string
		limit  int
		form   url.Values
		status int
		want   string
	}{
		{"empty name", 10, url.Values{"name": {"  "}}, http.StatusBadRequest, "name: required"},
		{"long group", 10, url.Values{"name": {"x"}, "group": {strings.Repeat("g", 201)}}, http.StatusBadRequest, "group:"},
		{"limit reached", 1, url.Values{"name": {"second"}}, http.StatusConflict, "bot limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newBTEnv(t, nil)
			a := e.login("administrator")
			e.bot("first")
			if err := e.st.SetBotLimit(context.Background(), e.account, tc.limit); err != nil {
				t.Fatal(err)
			}
			body := btWant(t, e.post(a, "/bots/new", tc.form), tc.status, tc.want, `role="alert"`)
			if strings.Contains(body, `id="bot-token"`) {
				t.Error("a token is shown")
			}
		})
	}
	t.Run("limit reached: no form", func(t *testing.T) {
		e := newBTEnv(t, nil)
		a := e.login("administrator")
		e.bot("first")
		if err := e.st.SetBotLimit(context.Background(), e.account, 1); err != nil {
			t.Fatal(err)
		}
		body := btWant(t, e.get(a, "/bots/new"), http.StatusOK, `id="bot-limit-reached"`)
		if strings.Contains(body, `<form method="post" action="/bots/new"`) {
			t.Error("the form is offered")
		}
		btWant(t, e.get(a, "/bots"), http.StatusOK, "bot limit is reached")
	})
}

func TestBotsCA(t *testing.T) {
	e := newBTEnv(t, []byte(btCA))
	u := e.login("standard_user")
	w := e.get(u, "/bots/ca.pem")
	btWant(t, w, http.StatusOK, btCA)
	if ct := w.Header().Get("Content-Type"); ct != "application/x-pem-file" {
		t.Errorf("content type %q", ct)
	}
	if cd := w.Header().Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") {
		t.Errorf("disposition %q", cd)
	}

	e2 := newBTEnv(t, nil)
	btWant(t, e2.get(e2.login("administrator"), "/bots/ca.pem"), http.StatusNotFound)
	// Without a CA the command has no --ca-file.
	body := btWant(t, e2.post(e2.login("administrator"), "/bots/new", url.Values{"name": {"x"}}), http.StatusOK)
	if strings.Contains(body, "--ca-file") || strings.Contains(body, "/bots/ca.pem") {
		t.Error("offers a CA it does not have")
	}
}

func TestBotSettingsSecretsNeverShown(t *testing.T) {
	e := newBTEnv(t, nil)
	a := e.login("administrator")
	id := e.bot("web")
	const pw = "S3cret p&w=1#x?y%z+/;"
	w := e.post(a, "/bots/"+id+"/targets/add", url.Values{"kind": {"jks"}, "jks_path": {"/opt/app/keystore.jks"}, "jks_password": {pw}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("add: %d\n%s", w.Code, btMain(w.Body.String()))
	}
	if loc := w.Header().Get("Location"); loc != "/bots/"+id+"/settings" {
		t.Errorf("redirect to %q", loc)
	}
	body := btWant(t, e.get(a, "/bots/"+id+"/settings"), http.StatusOK, `id="targets"`, "jks:///opt/app/keystore.jks?password=REDACTED",
		`id="add-target"`, `autocomplete="new-password"`)
	btNoSecret(t, body, pw, "S3cret")

	// A target the parser refuses: 400, the message, the non-secret
	// fields again, never the password.
	w = e.post(a, "/bots/"+id+"/targets/add", url.Values{"kind": {"ssh"}, "ssh_host": {"web9.example.com"}, "ssh_user": {"deploy"},
		"ssh_password": {pw}})
	body = btWant(t, w, http.StatusBadRequest, `id="add-target-error"`, "Target:", "host key", `value="web9.example.com"`)
	btNoSecret(t, body, pw, "S3cret")
	// A field the form itself refuses names it.
	btWant(t, e.post(a, "/bots/"+id+"/targets/add", url.Values{"kind": {"tls"}, "tls_hosts": {"a?b"}}), http.StatusBadRequest,
		"Hosts (TLS endpoints):")
	btWant(t, e.post(a, "/bots/"+id+"/targets/add", url.Values{"kind": {"uri"}, "uri": {"gopher://x?password=" + pw}}),
		http.StatusBadRequest, "unknown scheme")

	// Nor does the audit log hold it.
	entries, _, err := e.st.Audit(context.Background(), e.account, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if strings.Contains(en.Detail, "S3cret") || strings.Contains(en.Object, "S3cret") {
			t.Errorf("audit %s holds the password", en.Action)
		}
	}
	if got := e.targets(id).Targets; len(got) != 1 {
		t.Errorf("targets %q", got)
	}
}

// btNoSecret fails if body holds the secret in any form a page could
// write it: as is, HTML-escaped, URL-escaped, or its first word.
func btNoSecret(t *testing.T, body, secret, word string) {
	t.Helper()
	for _, form := range []string{secret, html.EscapeString(secret), url.QueryEscape(secret), escapeTargetValue(secret), word} {
		if strings.Contains(body, form) {
			t.Errorf("page holds the secret as %q", form)
		}
	}
}

func TestBotSettingsChanges(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		form   url.Values
		path   string // after /bots/{id}/
		status int
		want   string // in the page for a 400
		check  func(t *testing.T, e *btEnv, id string)
	}{
		{name: "schedule weekly in a zone", path: "schedule", status: http.StatusSeeOther,
			form: url.Values{"kind": {"weekly"}, "time": {"02:30"}, "weekday": {"mon"}, "timezone": {"Asia/Kolkata"},
				"threads": {"8"}, "max_runtime": {"2h"}},
			check: func(t *testing.T, e *btEnv, id string) {
				ts := e.targets(id)
				want := protocol.Schedule{Kind: "weekly", Time: "02:30", Weekday: "mon", Timezone: "Asia/Kolkata"}
				if ts.Schedule != want || ts.Threads != 8 || time.Duration(ts.MaxRuntime) != 2*time.Hour {
					t.Errorf("settings %+v", ts)
				}
				b, _ := e.st.Bot(ctx, e.account, id)
				v, _ := admin.ViewBot(ctx, e.st, b, time.Now())
				if v.NextScan == nil {
					t.Error("no next scan")
				}
			}},
		{name: "schedule daily drops the weekday", path: "schedule", status: http.StatusSeeOther,
			form: url.Values{"kind": {"daily"}, "time": {"23:05"}, "weekday": {"mon"}, "threads": {"0"}, "max_runtime": {"0"}},
			check: func(t *testing.T, e *btEnv, id string) {
				if s := e.targets(id).Schedule; s != (protocol.Schedule{Kind: "daily", Time: "23:05"}) {
					t.Errorf("schedule %+v", s)
				}
			}},
		{name: "schedule bad zone", path: "schedule", status: http.StatusBadRequest, want: "timezone",
			form: url.Values{"kind": {"daily"}, "time": {"02:00"}, "timezone": {"Mars/Olympus"}}},
		{name: "schedule zone as a path", path: "schedule", status: http.StatusBadRequest, want: "timezone",
			form: url.Values{"kind": {"daily"}, "time": {"02:00"}, "timezone": {"/etc/passwd"}}},
		{name: "schedule bad time", path: "schedule", status: http.StatusBadRequest, want: "time:",
			form: url.Values{"kind": {"daily"}, "time": {"25:00"}}},
		{name: "schedule weekly without a day", path: "schedule", status: http.StatusBadRequest, want: "weekday",
			form: url.Values{"kind": {"weekly"}, "time": {"02:00"}}},
		{name: "schedule too many threads", path: "schedule", status: http.StatusBadRequest, want: "threads",
			form: url.Values{"kind": {"on_demand"}, "threads": {"5000"}}},
		{name: "schedule bad runtime", path: "schedule", status: http.StatusBadRequest, want: "max_runtime",
			form: url.Values{"kind": {"on_demand"}, "max_runtime": {"soon"}}},
		{name: "tags", path: "tags", status: http.StatusSeeOther,
			form: url.Values{"tag_name": {"env", "", "owner", ""}, "tag_value": {"prod", "", "web team", ""},
				"tag_remarks": {"", "", "pager 42", ""}},
			check: func(t *testing.T, e *btEnv, id string) {
				b, _ := e.st.Bot(ctx, e.account, id)
				want := []store.Tag{{Name: "env", Value: "prod"}, {Name: "owner", Value: "web team", Remarks: "pager 42"}}
				if len(b.Tags) != 2 || b.Tags[0] != want[0] || b.Tags[1] != want[1] {
					t.Errorf("tags %+v", b.Tags)
				}
			}},
		{name: "tag without a name", path: "tags", status: http.StatusBadRequest, want: "tags[0].name",
			form: url.Values{"tag_name": {""}, "tag_value": {"orphan"}, "tag_remarks": {""}}},
		{name: "details", path: "details", status: http.StatusSeeOther, form: url.Values{"name": {"web-renamed"}, "group": {"g2"}},
			check: func(t *testing.T, e *btEnv, id string) {
				b, _ := e.st.Bot(ctx, e.account, id)
				if b.Name != "web-renamed" || b.Group != "g2" {
					t.Errorf("bot %s %s", b.Name, b.Group)
				}
			}},
		{name: "details empty name", path: "details", status: http.StatusBadRequest, want: "name: required",
			form: url.Values{"name": {""}, "group": {"g2"}}},
		{name: "remove", path: "targets/remove", status: http.StatusSeeOther, form: url.Values{"remove": {"0", "2"}},
			check: func(t *testing.T, e *btEnv, id string) {
				if got := e.targets(id).Targets; len(got) != 1 || got[0] != "tls://b.example.com" {
					t.Errorf("targets %q", got)
				}
			}},
		{name: "remove nothing ticked", path: "targets/remove", status: http.StatusBadRequest, want: "remove", form: url.Values{}},
		{name: "remove out of range", path: "targets/remove", status: http.StatusBadRequest, form: url.Values{"remove": {"7"}}},
		{name: "import", path: "targets/import", status: http.StatusSeeOther, form: url.Values{"from_bot": {"OTHER"}},
			check: func(t *testing.T, e *btEnv, id string) {
				got := e.targets(id).Targets
				if len(got) != 4 || got[3] != "file:///etc/ssl" {
					t.Errorf("targets %q", got)
				}
			}},
		{name: "import unknown bot", path: "targets/import", status: http.StatusBadRequest, want: "from_bot",
			form: url.Values{"from_bot": {"no-such-bot"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newBTEnv(t, nil)
			a := e.login("administrator")
			id, other := e.bot("web"), e.bot("other")
			if _, err := e.ops.AddTargets(ctx, e.admin(), id, []string{"tls://a.example.com", "tls://b.example.com", "tls://c.example.com"}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.ops.AddTargets(ctx, e.admin(), other, []string{"tls://a.example.com", "file:///etc/ssl"}); err != nil {
				t.Fatal(err)
			}
			form := url.Values{}
			for k, v := range tc.form {
				for _, x := range v {
					form.Add(k, strings.ReplaceAll(x, "OTHER", other))
				}
			}
			w := e.post(a, "/bots/"+id+"/"+tc.path, form)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d\n%s", w.Code, tc.status, btMain(w.Body.String()))
			}
			if tc.status == http.StatusSeeOther {
				if loc := w.Header().Get("Location"); loc != "/bots/"+id+"/settings" {
					t.Errorf("redirect to %q", loc)
				}
			} else {
				btWant(t, w, tc.status, `class="error" role="alert"`, tc.want, `id="schedule"`)
			}
			if tc.check != nil {
				tc.check(t, e, id)
			}
		})
	}
}

func TestBotActions(t *testing.T) {
	ctx := context.Background()
	e := newBTEnv(t, []byte(btCA))
	a := e.login("administrator")
	id := e.bot("web")

	body := btWant(t, e.get(a, "/bots/"+id), http.StatusOK, `id="run-scan"`, `id="suspend"`, `id="deactivate"`, `id="regenerate-token"`,
		`data-confirm=`, `name="csrf" value="`+a.csrf+`"`, "Activation Pending", `id="no-scans"`)
	if strings.Contains(body, "disabled") {
		t.Error("an action is disabled for a pending bot")
	}

	// Run scan: a job is queued and the scan listed.
	w := e.post(a, "/bots/"+id+"/scan", nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/bots/"+id {
		t.Fatalf("scan: %d %s", w.Code, w.Header().Get("Location"))
	}
	jobs, err := e.st.TakeJobs(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var scanID string
	for _, j := range jobs {
		if j.ScanID != "" {
			scanID = j.ScanID
		}
	}
	if scanID == "" {
		t.Fatalf("no scan job in %+v", jobs)
	}
	// A scan with errors shows them in a <details>.
	if err := e.st.StartScan(ctx, e.account, id, protocol.ScanStart{ScanID: scanID, Trigger: "user", Targets: 1}); err != nil {
		t.Fatal(err)
	}
	loc, err := protocol.ParseLocation("tls://down.example.com:443")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Ingest(ctx, e.account, id, scanID, protocol.FindingsBatch{Seq: 1, Findings: []protocol.Finding{
		{Location: loc, Source: "tls", Error: "connection <refused>", SeenAt: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.CompleteScan(ctx, e.account, id, scanID, protocol.ScanComplete{Finished: time.Now(), Batches: 1, Errors: 1,
		Complete: true}); err != nil {
		t.Fatal(err)
	}
	btWant(t, e.get(a, "/bots/"+id), http.StatusOK, `id="scans"`, `data-scan="`+scanID+`"`, "<details",
		"tls://down.example.com:443", "connection &lt;refused&gt;", "complete")

	// Regenerate: a new token, shown once with the command.
	body = btWant(t, e.post(a, "/bots/"+id+"/token", nil), http.StatusOK, `id="bot-token"`, `id="activation-command"`, "New token for web")
	tok := btTokenRE.FindStringSubmatch(body)[1]
	if h, _, ok, _ := admin.FindTokenHolder(ctx, e.st, e.account, tok); !ok || h.ID != id {
		t.Error("the new token is not the bot's")
	}

	// Suspend: no scanning; the button says so.
	if w := e.post(a, "/bots/"+id+"/suspend", nil); w.Code != http.StatusSeeOther {
		t.Fatalf("suspend: %d", w.Code)
	}
	if b, _ := e.st.Bot(ctx, e.account, id); b.Status != protocol.BotSuspended {
		t.Fatalf("status %s", b.Status)
	}
	btWant(t, e.get(a, "/bots/"+id), http.StatusOK, "Suspended", "status-suspended", "cannot scan")
	btWant(t, e.post(a, "/bots/"+id+"/scan", nil), http.StatusConflict, "cannot scan")

	// Deactivate: nothing more is allowed.
	if w := e.post(a, "/bots/"+id+"/deactivate", nil); w.Code != http.StatusSeeOther {
		t.Fatalf("deactivate: %d", w.Code)
	}
	if b, _ := e.st.Bot(ctx, e.account, id); b.Status != protocol.BotInactive {
		t.Fatalf("status %s", b.Status)
	}
	body = btWant(t, e.get(a, "/bots/"+id), http.StatusOK, "Inactive", "status-inactive")
	if n := strings.Count(body, " disabled>"); n != 4 {
		t.Errorf("%d disabled buttons, want 4", n)
	}
	btWant(t, e.post(a, "/bots/"+id+"/token", nil), http.StatusConflict)
	btWant(t, e.post(a, "/bots/"+id+"/scan", nil), http.StatusConflict)
}

func TestBotsRoles(t *testing.T) {
	e := newBTEnv(t, []byte(btCA))
	id := e.bot("web")
	if _, err := e.ops.AddTargets(context.Background(), e.admin(), id, []string{"tls://a.example.com"}); err != nil {
		t.Fatal(err)
	}
	admin1, std, basic := e.login("administrator"), e.login("standard_user"), e.login("basic_user")
	manager, discovery := e.login("manager"), e.login("discovery_user")
	otherAcct, err := e.st.CreateAccount(context.Background(), "Other")
	if err != nil {
		t.Fatal(err)
	}
	stranger := e.loginIn(otherAcct.ID, "administrator")

	tests := []struct {
		name   string
		user   btUser
		method string
		path   string
		form   url.Values
		status int
		absent []string // ids the page must not have
	}{
		{"standard sees the list", std, "GET", "/bots", nil, 200, []string{`id="new-bot"`}},
		{"standard sees a bot", std, "GET", "/bots/" + id, nil, 200, []string{`id="run-scan"`, `id="suspend"`, `id="deactivate"`, `id="regenerate-token"`}},
		{"standard sees settings read-only", std, "GET", "/bots/" + id + "/settings", nil, 200,
			[]string{`id="add-target"`, `id="remove-targets"`, `id="schedule"`, `id="import-targets"`, `id="tags"`, `id="bot-details"`, `name="remove"`}},
		{"standard may not create", std, "POST", "/bots/new", url.Values{"name": {"x"}}, 403, nil},
		{"standard may not open the form", std, "GET", "/bots/new", nil, 403, nil},
		{"standard may not scan", std, "POST", "/bots/" + id + "/scan", url.Values{}, 403, nil},
		{"standard may not add", std, "POST", "/bots/" + id + "/targets/add", url.Values{"kind": {"certstore"}}, 403, nil},
		{"basic may not list", basic, "GET", "/bots", nil, 403, nil},
		{"basic may not view", basic, "GET", "/bots/" + id + "/settings", nil, 403, nil},
		{"manager may create", manager, "GET", "/bots/new", nil, 200, nil},
		{"discovery user may scan", discovery, "POST", "/bots/" + id + "/scan", url.Values{}, 303, nil},
		{"no csrf", admin1, "POST", "/bots/" + id + "/scan", url.Values{"csrf": {""}}, 403, nil},
		{"wrong csrf", admin1, "POST", "/bots/new", url.Values{"csrf": {std.csrf}, "name": {"x"}}, 403, nil},
		{"no such bot", admin1, "GET", "/bots/no-such-bot", nil, 404, nil},
		{"no such bot's settings", admin1, "GET", "/bots/no-such-bot/settings", nil, 404, nil},
		{"another account's bot", stranger, "GET", "/bots/" + id, nil, 404, nil},
		{"another account's bot: scan", stranger, "POST", "/bots/" + id + "/scan", url.Values{}, 404, nil},
		{"another account's bot: settings", stranger, "GET", "/bots/" + id + "/settings", nil, 404, nil},
		{"not logged in", btUser{}, "GET", "/bots", nil, 303, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var w *httptest.ResponseRecorder
			if tc.method == "GET" {
				w = e.get(tc.user, tc.path)
			} else {
				w = e.post(tc.user, tc.path, tc.form)
			}
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d\n%s", w.Code, tc.status, btMain(w.Body.String()))
			}
			if tc.status == 403 && !strings.Contains(w.Body.String(), `id="error-title"`) {
				t.Error("no h1#error-title")
			}
			for _, a := range tc.absent {
				if strings.Contains(w.Body.String(), a) {
					t.Errorf("page has %s", a)
				}
			}
		})
	}
	// Nothing changed for the refused ones.
	if got := e.targets(id).Targets; len(got) != 1 {
		t.Errorf("targets %q", got)
	}
	// The read-only settings still show the targets.
	btWant(t, e.get(std, "/bots/"+id+"/settings"), 200, `id="targets"`, "tls://a.example.com", `id="read-only"`)
}

func TestBotActivationCommandHost(t *testing.T) {
	tests := []struct{ host, want string }{
		{"cp.example.com:8443", "--url https://cp.example.com:8443 "},
		{"[2001:db8::1]:8443", "--url https://[2001:db8::1]:8443 "},
		{"evil.example.com;rm -rf /", "--url https://CONTROL-PLANE-HOST "},
		{"a$(id)", "--url https://CONTROL-PLANE-HOST "},
	}
	s := &Server{caPEM: []byte(btCA)}
	v := &Viewer{User: store.User{Account: "1234567890"}}
	for _, tc := range tests {
		r := httptest.NewRequest(http.MethodPost, "/bots/new", nil)
		r.Host = tc.host
		d := s.botCreated(r, v, "id", "name", "tok", false)
		for _, cmd := range []string{d.Command, d.WindowsCommand} {
			if !strings.Contains(cmd, tc.want) || !strings.Contains(cmd, "--account 1234567890 --token tok") {
				t.Errorf("host %q: %s", tc.host, cmd)
			}
		}
	}
}
