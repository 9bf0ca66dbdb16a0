package web

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

var (
	authAPIKey      = regexp.MustCompile(`<code id="api-key">([^<]+)</code>`)
	authRoleOptions = regexp.MustCompile(`(?s)<select id="nu-role" name="role">(.*?)</select>`)
	authOptionValue = regexp.MustCompile(`<option value="([a-z_]+)"`)
)

func TestUsersPage(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	b := e.browser()
	b.login("ana@example.com", "/")

	p := b.get("/users")
	if p.status != http.StatusOK || !strings.Contains(p.body, `<table id="users">`) || !strings.Contains(p.body, `id="new-user"`) {
		t.Fatalf("users page: %d", p.status)
	}
	a := b.postForm("/users", "/users", url.Values{"email": {"Cy@Example.com"}, "name": {"Cy <b>"}, "role": {"standard_user"},
		"password": {"first password for cy"}})
	if a.status != http.StatusSeeOther || a.location() != "/users" {
		t.Fatalf("create user: %d to %q: %s", a.status, a.location(), a.body)
	}
	p = b.get("/users")
	for _, want := range []string{"cy@example.com", "Cy &lt;b&gt;", "Standard User", "first password for cy"} {
		if got := strings.Contains(p.body, want); got != (want != "first password for cy") {
			t.Errorf("users page: contains %q = %v", want, got)
		}
	}
	if !authHasAudit(e.audited(), "user.create", "ana@example.com") {
		t.Error("user creation not audited")
	}
	// The new user logs in with the first password.
	e.browser().tryLogin("cy@example.com", "first password for cy", "")
	cy, err := e.st.UserByEmail(context.Background(), "cy@example.com")
	if err != nil || cy.LastLogin == nil {
		t.Fatalf("new user did not log in: %v", err)
	}

	// Bad input: the form again, 400, the message naming the field, the
	// password not put back.
	bad := []struct {
		name  string
		form  url.Values
		field string
	}{
		{"taken email", url.Values{"email": {"cy@example.com"}, "role": {"basic_user"}, "password": {"another password here"}}, "Email"},
		{"bad email", url.Values{"email": {"not an email"}, "role": {"basic_user"}, "password": {"another password here"}}, "Email"},
		{"short password", url.Values{"email": {"dee@example.com"}, "role": {"basic_user"}, "password": {"short"}}, "Password"},
		{"unknown role", url.Values{"email": {"dee@example.com"}, "role": {"root"}, "password": {"another password here"}}, "Role"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			a := b.postForm("/users", "/users", tt.form)
			if a.status != http.StatusBadRequest || !strings.Contains(a.body, `id="users-error">`+tt.field) {
				t.Fatalf("%d: %s", a.status, a.body)
			}
			if strings.Contains(a.body, tt.form.Get("password")) {
				t.Fatal("password put back into the page")
			}
		})
	}

	// Role change, disable, enable.
	actions := []struct {
		path  string
		form  url.Values
		check func(role string, disabled bool) bool
	}{
		{"/users/" + cy.ID + "/role", url.Values{"role": {"manager"}}, func(r string, _ bool) bool { return r == "manager" }},
		{"/users/" + cy.ID + "/disable", url.Values{}, func(_ string, d bool) bool { return d }},
		{"/users/" + cy.ID + "/enable", url.Values{}, func(_ string, d bool) bool { return !d }},
	}
	for _, ac := range actions {
		a := b.postForm("/users", ac.path, ac.form)
		if a.status != http.StatusSeeOther {
			t.Fatalf("%s: %d", ac.path, a.status)
		}
		u, err := e.st.User(context.Background(), e.account, cy.ID)
		if err != nil || !ac.check(u.Role, u.Disabled) {
			t.Fatalf("%s: user %+v, %v", ac.path, u, err)
		}
	}
	if a := b.postForm("/users", "/users/nobody/disable", url.Values{}); a.status != http.StatusNotFound {
		t.Errorf("unknown user: %d", a.status)
	}
}

func TestUsersGrantableRoles(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	e.user("fin@example.com", "finance_manager")
	b := e.browser()
	b.login("fin@example.com", "/")
	p := b.get("/users")
	m := authRoleOptions.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no role select: %d", p.status)
	}
	var roles []string
	for _, o := range authOptionValue.FindAllStringSubmatch(m[1], -1) {
		roles = append(roles, o[1])
	}
	// A Finance Manager may grant only roles within its own rights.
	if got := strings.Join(roles, ","); got != "finance_manager,basic_user" {
		t.Errorf("grantable roles %s", got)
	}
	// The administrator's row has no actions for them.
	if strings.Contains(p.body, "/users/u-ana/") {
		t.Error("actions offered on an administrator")
	}
	a := b.postForm("/users", "/users", url.Values{"email": {"x@example.com"}, "role": {"administrator"},
		"password": {"a long enough password"}})
	if a.status != http.StatusBadRequest {
		t.Fatalf("finance manager making an administrator: %d", a.status)
	}
	if _, err := e.st.UserByEmail(context.Background(), "x@example.com"); err == nil {
		t.Fatal("user made")
	}
}

func TestResetTOTP(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	bo := e.user("bo@example.com", "basic_user")
	b := e.browser()
	b.login("bo@example.com", "/")
	b.enrol("/account/totp")
	admin := e.browser()
	admin.login("ana@example.com", "/")
	if p := admin.get("/users"); !strings.Contains(p.body, "/users/"+bo.ID+"/reset-totp") {
		t.Fatal("no reset form for an enrolled user")
	}
	if a := admin.postForm("/users", "/users/"+bo.ID+"/reset-totp", url.Values{}); a.status != http.StatusSeeOther {
		t.Fatalf("reset: %d", a.status)
	}
	// Bo's session ended; the next login needs no code.
	if a := b.get("/account"); a.status != http.StatusSeeOther {
		t.Fatalf("session after reset: %d", a.status)
	}
	e.browser().login("bo@example.com", "/")
}

func TestAPIKeys(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	b := e.browser()
	b.login("ana@example.com", "/")
	p := b.get("/apikeys")
	if p.status != http.StatusOK || !strings.Contains(p.body, `<table id="apikeys">`) || !strings.Contains(p.body, `id="new-apikey"`) {
		t.Fatalf("apikeys page: %d", p.status)
	}
	a := b.postForm("/apikeys", "/apikeys", url.Values{"role": {"basic_user"}})
	m := authAPIKey.FindStringSubmatch(a.body)
	if a.status != http.StatusOK || m == nil || !strings.Contains(a.body, `data-copy="api-key"`) {
		t.Fatalf("created: %d", a.status)
	}
	key := html.UnescapeString(m[1])
	keys, err := e.st.APIKeys(context.Background(), e.account)
	if err != nil || len(keys) != 1 || keys[0].Role != "basic_user" {
		t.Fatalf("keys %+v, %v", keys, err)
	}
	id := keys[0].ID
	p = b.get("/apikeys")
	if !strings.Contains(p.body, id) || strings.Contains(p.body, key) {
		t.Fatal("list: want the ID, never the key")
	}
	for _, en := range e.audited() {
		if strings.Contains(en.Detail, key) || strings.Contains(en.Object, key) {
			t.Fatalf("key in the audit log: %+v", en)
		}
	}
	if a := b.postForm("/apikeys", "/apikeys", url.Values{"role": {"root"}}); a.status != http.StatusBadRequest {
		t.Errorf("unknown role: %d", a.status)
	}
	if a := b.postForm("/apikeys", "/apikeys/"+url.PathEscape(id)+"/revoke", url.Values{}); a.status != http.StatusSeeOther {
		t.Fatalf("revoke: %d", a.status)
	}
	if keys, _ := e.st.APIKeys(context.Background(), e.account); len(keys) != 0 {
		t.Fatalf("key not revoked: %+v", keys)
	}
	if !authHasAudit(e.audited(), "apikey.revoke", "ana@example.com") {
		t.Error("revocation not audited")
	}
}

func TestSettingsPage(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	e.user("max@example.com", "manager")
	b := e.browser()
	b.login("ana@example.com", "/")
	p := b.get("/settings")
	if p.status != http.StatusOK || !strings.Contains(p.body, `id="account-settings"`) || !strings.Contains(p.body, `name="require_totp"`) {
		t.Fatalf("settings: %d", p.status)
	}
	for _, on := range []bool{true, false} {
		f := url.Values{}
		if on {
			f.Set("require_totp", "on")
		}
		if a := b.postForm("/settings", "/settings", f); a.status != http.StatusSeeOther {
			t.Fatalf("save %v: %d", on, a.status)
		}
		acct, err := e.st.Account(context.Background(), e.account)
		if err != nil || acct.RequireTOTP != on {
			t.Fatalf("require_totp %v, want %v (%v)", acct.RequireTOTP, on, err)
		}
	}
	// A Manager manages users but not the account's settings.
	m := e.browser()
	m.login("max@example.com", "/")
	if a := m.get("/settings"); a.status != http.StatusForbidden {
		t.Fatalf("manager: %d", a.status)
	}
}
