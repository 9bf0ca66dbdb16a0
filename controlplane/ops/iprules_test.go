package ops_test

import (
	"errors"
	"strconv"
	"testing"

	"github.com/emsign/bot/controlplane/iprules"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

func TestIPRulesPermission(t *testing.T) {
	e := newEnv(t)
	r, err := e.o.CreateIPRule(e.ctx, e.cli(), "", "10.0.0.0", "10.0.0.255", "office")
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range rbac.Roles() {
		a := e.key(role)
		a.Remote = "10.0.0.7"
		t.Run(string(role), func(t *testing.T) {
			want := rbac.Can(role, rbac.ManageAccount)
			checks := map[string]error{}
			_, checks["create"] = e.o.CreateIPRule(e.ctx, a, "", "10.0.0.0", "10.0.1.255", "")
			checks["disable"] = e.o.SetIPRuleEnabled(e.ctx, a, r.ID, false)
			checks["enable"] = e.o.SetIPRuleEnabled(e.ctx, a, r.ID, true)
			for what, err := range checks {
				if want && err != nil {
					t.Errorf("%s: %v", what, err)
				}
				if !want && !errors.Is(err, ops.ErrForbidden) {
					t.Errorf("%s: got %v, want forbidden", what, err)
				}
			}
			if !want && e.last().Action != ops.ActionDenied {
				t.Errorf("refusal not audited: %+v", e.last())
			}
		})
	}
	if err := e.o.DeleteIPRule(e.ctx, e.key(rbac.Manager), r.ID); !errors.Is(err, ops.ErrForbidden) {
		t.Fatalf("manager deletes: %v", err)
	}
}

func TestIPRulesAudit(t *testing.T) {
	e := newEnv(t)
	admin := e.user("admin@example.com", rbac.Administrator)
	admin.Remote = "10.0.0.9"
	bob := e.user("bob@example.com", rbac.BasicUser)
	all, err := e.o.CreateIPRule(e.ctx, admin, "", " 10.0.0.0 ", "10.0.0.255", " office ")
	if err != nil {
		t.Fatal(err)
	}
	if all.StartIP != "10.0.0.0" || all.Description != "office" || !all.Enabled || all.CreatedBy != "admin@example.com" {
		t.Fatalf("rule: %+v", all)
	}
	own, err := e.o.CreateIPRule(e.ctx, admin, bob.ID, "2001:db8::", "2001:db8::ff", "")
	if err != nil {
		t.Fatal(err)
	}
	id := strconv.FormatInt(all.ID, 10)
	steps := []struct {
		do     func() error
		action string
		object string
		detail string
	}{
		{func() error { return nil }, "ip_rule.create", strconv.FormatInt(own.ID, 10), "2001:db8:: – 2001:db8::ff for bob@example.com"},
		{func() error { return e.o.SetIPRuleEnabled(e.ctx, admin, own.ID, false) }, "ip_rule.disable", strconv.FormatInt(own.ID, 10), "2001:db8:: – 2001:db8::ff for bob@example.com"},
		{func() error { return e.o.SetIPRuleEnabled(e.ctx, admin, all.ID, false) }, "ip_rule.disable", id, "10.0.0.0 – 10.0.0.255 for all users (office)"},
		{func() error { return e.o.SetIPRuleEnabled(e.ctx, admin, all.ID, true) }, "ip_rule.enable", id, "10.0.0.0 – 10.0.0.255 for all users (office)"},
		{func() error { return e.o.DeleteIPRule(e.ctx, admin, own.ID) }, "ip_rule.delete", strconv.FormatInt(own.ID, 10), "2001:db8:: – 2001:db8::ff for bob@example.com"},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.action, err)
		}
		l := e.last()
		if l.Action != s.action || l.Object != s.object || l.Detail != s.detail || l.Actor != "admin@example.com" ||
			l.Remote != "10.0.0.9" {
			t.Fatalf("audit: %+v, want %s %s %q", l, s.action, s.object, s.detail)
		}
	}
	rules, err := e.st.IPRules(e.ctx, e.account)
	if err != nil || len(rules) != 1 || rules[0].ID != all.ID || !rules[0].Enabled {
		t.Fatalf("rules: %+v, %v", rules, err)
	}
	if err := e.o.DeleteIPRule(e.ctx, admin, own.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestIPRulesInvalid(t *testing.T) {
	e := newEnv(t)
	other := newEnv(t)
	stranger := other.user("stranger@example.com", rbac.BasicUser)
	long := make([]byte, ops.MaxIPRuleDescription+1)
	for i := range long {
		long[i] = 'x'
	}
	tests := []struct {
		name, user, start, end, desc string
		field                        string
	}{
		{"bad start", "", "10.0.0", "10.0.0.1", "", "start_ip"},
		{"mixed families", "", "10.0.0.1", "2001:db8::1", "", "end_ip"},
		{"reversed", "", "10.0.0.9", "10.0.0.1", "", "end_ip"},
		{"user of another account", stranger.ID, "10.0.0.1", "10.0.0.9", "", "user_id"},
		{"description too long", "", "10.0.0.1", "10.0.0.9", string(long), "description"},
		{"description with newline", "", "10.0.0.1", "10.0.0.9", "a\nb", "description"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.o.CreateIPRule(e.ctx, e.cli(), tt.user, tt.start, tt.end, tt.desc)
			var inv *ops.InvalidError
			if !errors.As(err, &inv) || inv.Field != tt.field {
				t.Fatalf("got %v, want invalid %s", err, tt.field)
			}
		})
	}
}

func TestIPRulesSelfLockout(t *testing.T) {
	e := newEnv(t)
	admin := e.user("admin@example.com", rbac.Administrator)
	admin.Remote = "203.0.113.9"
	key := e.key(rbac.Administrator)
	key.Remote = "203.0.113.9"

	// Rules that leave the admin out are refused, for the admin and for an
	// API key (held to the rules for all users) alike.
	_, err := e.o.CreateIPRule(e.ctx, admin, "", "10.0.0.0", "10.0.0.255", "")
	var inv *ops.InvalidError
	if !errors.As(err, &inv) || inv.Msg != "this rule would lock you out: your address 203.0.113.9 is not in it" {
		t.Fatalf("admin: %v", err)
	}
	if _, err := e.o.CreateIPRule(e.ctx, admin, admin.ID, "10.0.0.0", "10.0.0.255", ""); !errors.As(err, &inv) {
		t.Fatalf("admin's own rule: %v", err)
	}
	if _, err := e.o.CreateIPRule(e.ctx, key, "", "10.0.0.0", "10.0.0.255", ""); !errors.As(err, &inv) {
		t.Fatalf("key: %v", err)
	}
	// A rule for another user does not concern the admin; neither does a
	// user's rule an API key.
	bob := e.user("bob@example.com", rbac.BasicUser)
	if _, err := e.o.CreateIPRule(e.ctx, admin, bob.ID, "10.0.0.0", "10.0.0.255", ""); err != nil {
		t.Fatal(err)
	}
	// The command line may (it repairs a locked-out account).
	office, err := e.o.CreateIPRule(e.ctx, e.cli(), "", "10.0.0.0", "10.0.0.255", "")
	if err != nil {
		t.Fatal(err)
	}
	// A rule that puts the admin back in is accepted...
	home, err := e.o.CreateIPRule(e.ctx, admin, admin.ID, "203.0.113.0", "203.0.113.255", "home")
	if err != nil {
		t.Fatal(err)
	}
	// ...and may then not be disabled or deleted.
	err = e.o.SetIPRuleEnabled(e.ctx, admin, home.ID, false)
	if !errors.As(err, &inv) || inv.Msg != "this change would lock you out: your address 203.0.113.9 would no longer be allowed" {
		t.Fatalf("disable own rule: %v", err)
	}
	if err := e.o.DeleteIPRule(e.ctx, admin, home.ID); !errors.As(err, &inv) {
		t.Fatalf("delete own rule: %v", err)
	}
	// Disabling or deleting the rule that excluded the admin is fine.
	if err := e.o.SetIPRuleEnabled(e.ctx, admin, office.ID, false); err != nil {
		t.Fatal(err)
	}
	if err := e.o.DeleteIPRule(e.ctx, admin, office.ID); err != nil {
		t.Fatal(err)
	}
	rules, err := e.st.IPRules(e.ctx, e.account)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 2 || !rules[1].Enabled || rules[1].ID != home.ID {
		t.Fatalf("rules: %+v", rules)
	}
	if !iprules.Allowed(rules, admin.ID, admin.Remote) {
		t.Fatal("admin locked out after all")
	}
	for _, en := range e.audit() {
		if en.Action == "ip_rule.create" && en.Object == "" {
			t.Fatalf("create without object: %+v", en)
		}
	}
}
