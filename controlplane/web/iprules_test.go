package web

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

var ipRulesErr = regexp.MustCompile(`<p class="error" role="alert" id="ip-rules-error">([^<]*)</p>`)

// cliRule adds a rule as the command line does (no lockout check).
func (e *authEnv) cliRule(userID, start, end string) store.IPRule {
	e.t.Helper()
	a := ops.Actor{Account: e.account, Kind: ops.ActorCLI, ID: "root", Name: "root", Role: rbac.Administrator}
	r, err := e.ops.CreateIPRule(context.Background(), a, userID, start, end, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *authEnv) ipRules() []store.IPRule {
	e.t.Helper()
	rules, err := e.st.IPRules(context.Background(), e.account)
	if err != nil {
		e.t.Fatal(err)
	}
	return rules
}

func TestIPRuleRefusesLogin(t *testing.T) {
	e := newAuthEnv(t)
	alice := e.user("alice@example.com", "basic_user")
	e.user("bob@example.com", "basic_user")
	// Alice may work from 10.0.0.0/24 only; the test client is 127.0.0.1.
	e.cliRule(alice.ID, "10.0.0.0", "10.0.0.255")

	b := e.browser()
	a := b.tryLogin("alice@example.com", authTestPassword, "")
	if a.status != http.StatusForbidden ||
		authLoginMessage(a.body) != "Access from your address (127.0.0.1) is not allowed for this account." {
		t.Fatalf("alice: %d %q", a.status, authLoginMessage(a.body))
	}
	if c := b.cookie(SessionCookie); c != nil {
		t.Fatalf("session cookie set: %v", c)
	}
	var refused *store.AuditEntry
	for _, en := range e.audited() {
		if en.Action == "user.login_refused" {
			refused = &en
			break
		}
		if en.Action == "user.login" && en.Actor == "alice@example.com" {
			t.Fatalf("refused login audited as a login: %+v", en)
		}
	}
	if refused == nil || refused.Actor != "alice@example.com" || refused.Remote != "127.0.0.1" ||
		!strings.Contains(refused.Detail, "127.0.0.1") {
		t.Fatalf("refusal audit: %+v", refused)
	}
	// A wrong password still reads as a wrong password: the restriction
	// tells nothing to who lacks it.
	if a := e.browser().tryLogin("alice@example.com", "wrong password here", ""); a.status != http.StatusUnauthorized {
		t.Fatalf("alice, wrong password: %d", a.status)
	}
	e.browser().login("bob@example.com", "/")

	// Once the rule also allows 127.0.0.1, alice gets in.
	e.cliRule(alice.ID, "127.0.0.1", "127.0.0.1")
	e.browser().login("alice@example.com", "/")
}

func TestIPRuleEndsSessionAccess(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	b := e.browser()
	b.login("ana@example.com", "/")
	csrf := authCSRF(t, b.get("/account").body)
	r := e.cliRule("", "10.0.0.0", "10.0.0.255")
	for _, path := range []string{"/", "/account", "/settings/ip-rules"} {
		a := b.get(path)
		if a.status != http.StatusForbidden || !authErrorTitle.MatchString(a.body) ||
			!strings.Contains(html.UnescapeString(a.body), "Access from your address (127.0.0.1) is not allowed") {
			t.Fatalf("GET %s: %d", path, a.status)
		}
	}
	// Nor can the session undo the rule.
	if a := b.post("/settings/ip-rules/"+strconv.FormatInt(r.ID, 10)+"/disable", url.Values{"csrf": {csrf}}); a.status != http.StatusForbidden {
		t.Fatalf("disable from a refused address: %d", a.status)
	}
	if !e.ipRules()[0].Enabled {
		t.Fatal("rule disabled")
	}
	// Logging out still works.
	if a := b.post("/logout", url.Values{"csrf": {csrf}}); a.status != http.StatusSeeOther || a.location() != "/login" {
		t.Fatalf("logout: %d to %q", a.status, a.location())
	}
}

func TestIPRulesPage(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	bob := e.user("bob@example.com", "basic_user")
	b := e.browser()
	b.login("ana@example.com", "/")
	if a := b.get("/settings"); a.status != http.StatusOK || !strings.Contains(a.body, `href="/settings/ip-rules"`) {
		t.Fatalf("settings page: %d, no link to the IP rules", a.status)
	}
	page := b.get("/settings/ip-rules")
	if page.status != http.StatusOK || !strings.Contains(page.body, `<table id="ip-rules">`) ||
		!strings.Contains(page.body, `id="new-ip-rule"`) || !strings.Contains(page.body, `<option value="u-bob">bob@example.com</option>`) {
		t.Fatalf("page: %d %.2000s", page.status, page.body)
	}

	create := func(f url.Values) authAnswer { return b.postForm("/settings/ip-rules", "/settings/ip-rules", f) }
	// Bad input and a rule that would lock ana out are refused with the
	// form again.
	bad := []struct {
		name string
		f    url.Values
		want string
	}{
		{"bad start", url.Values{"start_ip": {"10.0.0"}, "end_ip": {"10.0.0.9"}}, "Start address: not an IP address"},
		{"reversed", url.Values{"start_ip": {"10.0.0.9"}, "end_ip": {"10.0.0.1"}}, "End address: 10.0.0.1 comes before"},
		{"unknown user", url.Values{"user_id": {"nobody"}, "start_ip": {"10.0.0.1"}, "end_ip": {"10.0.0.9"}}, "User: no such user"},
		{"self lockout", url.Values{"start_ip": {"10.0.0.0"}, "end_ip": {"10.0.0.255"}}, "Rule: this rule would lock you out: your address 127.0.0.1 is not in it"},
	}
	for _, tt := range bad {
		a := create(tt.f)
		m := ipRulesErr.FindStringSubmatch(a.body)
		if a.status != http.StatusBadRequest || m == nil || !strings.HasPrefix(html.UnescapeString(m[1]), tt.want) {
			t.Fatalf("%s: %d %v", tt.name, a.status, m)
		}
		if !strings.Contains(a.body, `value="`+tt.f.Get("start_ip")+`"`) {
			t.Fatalf("%s: form values not kept", tt.name)
		}
	}
	if len(e.ipRules()) != 0 {
		t.Fatalf("rules stored: %+v", e.ipRules())
	}

	if a := create(url.Values{"start_ip": {"127.0.0.0"}, "end_ip": {"127.0.0.255"}, "description": {"loopback <lab>"}}); a.status != http.StatusSeeOther {
		t.Fatalf("create: %d %v", a.status, ipRulesErr.FindStringSubmatch(a.body))
	}
	if a := create(url.Values{"user_id": {bob.ID}, "start_ip": {"2001:db8::"}, "end_ip": {"2001:db8::ff"}}); a.status != http.StatusSeeOther {
		t.Fatalf("create for bob: %d %v", a.status, ipRulesErr.FindStringSubmatch(a.body))
	}
	rules := e.ipRules()
	if len(rules) != 2 || rules[0].UserID != "" || rules[0].Description != "loopback <lab>" || rules[0].CreatedBy != "ana@example.com" ||
		rules[1].UserID != bob.ID || !rules[1].Enabled {
		t.Fatalf("rules: %+v", rules)
	}
	page = b.get("/settings/ip-rules")
	for _, want := range []string{"All users", "<code>127.0.0.255</code>", "loopback &lt;lab&gt;", "bob@example.com</th>",
		"<code>2001:db8::ff</code>", `action="/settings/ip-rules/1/disable"`} {
		if !strings.Contains(page.body, want) {
			t.Fatalf("page lacks %q", want)
		}
	}
	// Bob's rules are his own and the one for all users: 127.0.0.1 is in
	// the latter.
	e.browser().login("bob@example.com", "/")

	id0, id1 := strconv.FormatInt(rules[0].ID, 10), strconv.FormatInt(rules[1].ID, 10)
	steps := []struct {
		action string
		status int
		audit  string
	}{
		{"/settings/ip-rules/" + id1 + "/disable", http.StatusSeeOther, "ip_rule.disable"},
		{"/settings/ip-rules/" + id1 + "/enable", http.StatusSeeOther, "ip_rule.enable"},
		{"/settings/ip-rules/" + id1 + "/delete", http.StatusSeeOther, "ip_rule.delete"},
		{"/settings/ip-rules/" + id1 + "/delete", http.StatusNotFound, ""},
		{"/settings/ip-rules/x/delete", http.StatusNotFound, ""},
		{"/settings/ip-rules/" + id0 + "/disable", http.StatusSeeOther, "ip_rule.disable"},
	}
	for _, s := range steps {
		a := b.postForm("/settings/ip-rules", s.action, url.Values{})
		if a.status != s.status {
			t.Fatalf("%s: %d, want %d", s.action, a.status, s.status)
		}
		if s.audit != "" {
			if en := e.audited()[0]; en.Action != s.audit || en.Actor != "ana@example.com" {
				t.Fatalf("%s: audit %+v", s.action, en)
			}
		}
	}
	rules = e.ipRules()
	if len(rules) != 1 || rules[0].Enabled {
		t.Fatalf("after: %+v", rules)
	}
	if a := b.postForm("/settings/ip-rules", "/settings/ip-rules/"+id0+"/enable", url.Values{}); a.status != http.StatusSeeOther {
		t.Fatalf("enable: %d", a.status)
	}
	// With another rule for all users, the loopback rule is what lets ana
	// in: it may be neither disabled nor deleted; the other rule may.
	other := e.cliRule("", "10.0.0.0", "10.0.0.255")
	for _, action := range []string{"disable", "delete"} {
		a := b.postForm("/settings/ip-rules", "/settings/ip-rules/"+id0+"/"+action, url.Values{})
		if m := ipRulesErr.FindStringSubmatch(a.body); a.status != http.StatusBadRequest || m == nil ||
			!strings.Contains(m[1], "would lock you out") {
			t.Fatalf("%s own access: %d %v", action, a.status, m)
		}
	}
	if a := b.postForm("/settings/ip-rules", "/settings/ip-rules/"+strconv.FormatInt(other.ID, 10)+"/delete", url.Values{}); a.status != http.StatusSeeOther {
		t.Fatalf("delete the other rule: %d", a.status)
	}
	if rules := e.ipRules(); len(rules) != 1 || !rules[0].Enabled {
		t.Fatalf("at the end: %+v", rules)
	}
}

func TestIPRulesPageRefused(t *testing.T) {
	e := newAuthEnv(t)
	e.user("bo@example.com", "basic_user")
	e.user("mo@example.com", "manager")
	r := e.cliRule("", "127.0.0.1", "127.0.0.1")
	for _, email := range []string{"bo@example.com", "mo@example.com"} {
		b := e.browser()
		b.login(email, "/")
		if a := b.get("/settings/ip-rules"); a.status != http.StatusForbidden || !authErrorTitle.MatchString(a.body) {
			t.Errorf("%s GET: %d", email, a.status)
		}
		csrf := authCSRF(t, b.get("/account").body)
		id := strconv.FormatInt(r.ID, 10)
		for _, path := range []string{"/settings/ip-rules", "/settings/ip-rules/" + id + "/disable", "/settings/ip-rules/" + id + "/delete"} {
			a := b.post(path, url.Values{"csrf": {csrf}, "start_ip": {"10.0.0.1"}, "end_ip": {"10.0.0.1"}})
			if a.status != http.StatusForbidden {
				t.Errorf("%s POST %s: %d", email, path, a.status)
			}
		}
	}
	if rules := e.ipRules(); len(rules) != 1 || !rules[0].Enabled {
		t.Fatalf("rules changed: %+v", rules)
	}
}
