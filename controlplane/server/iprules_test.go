package server_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/store"
)

// An API key is held to the account's IP rules for all users; the test
// client calls from 127.0.0.1.
func TestAPIKeyIPRules(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	account, key := e.account(10)
	other, otherKey := e.account(10)
	u := store.User{ID: admin.NewID(), Account: account, Email: "ana@example.com", Role: "administrator", Password: "$argon2id$x"}
	if err := e.st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	rule := func(acct, user, start, end string) store.IPRule {
		r, err := e.st.CreateIPRule(ctx, store.IPRule{Account: acct, UserID: user, StartIP: start, EndIP: end, Enabled: true})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// A user's rule does not hold API keys; another account's rule does
	// not hold this account.
	rule(account, u.ID, "10.0.0.0", "10.0.0.255")
	rule(other, "", "10.0.0.0", "10.0.0.255")
	e.want(e.user("GET", "/bots", key, nil), http.StatusOK)

	all := rule(account, "", "10.0.0.0", "10.0.0.255")
	r := e.user("GET", "/bots", key, nil)
	e.want(r, http.StatusForbidden)
	if got := r.errorText(t); got != "access from 127.0.0.1 is not allowed for this account" {
		t.Fatalf("error %q", got)
	}
	// Refused before the role is looked at, and for changes too.
	e.want(e.user("POST", "/bots", key, map[string]string{"name": "web"}), http.StatusForbidden)
	entries, _, err := e.st.Audit(ctx, account, store.AuditFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[1].Action != ops.ActionDenied || entries[1].Remote != "127.0.0.1" ||
		entries[1].ActorKind != ops.ActorAPIKey || entries[1].Actor != admin.APIKeyID(key) ||
		entries[1].Detail != "GET /api/v1/bots: access from 127.0.0.1 is not allowed for this account" {
		t.Fatalf("audit: %+v", entries)
	}
	if bots, _ := e.st.Bots(ctx, account); len(bots) != 0 {
		t.Fatalf("bot created: %+v", bots)
	}
	e.want(e.user("GET", "/bots", otherKey, nil), http.StatusForbidden)

	// Disabled, the rule holds nobody; a rule allowing 127.0.0.1 lets the
	// key in as well.
	if err := e.st.SetIPRuleEnabled(ctx, account, all.ID, false); err != nil {
		t.Fatal(err)
	}
	e.want(e.user("GET", "/bots", key, nil), http.StatusOK)
	rule(other, "", "127.0.0.1", "127.0.0.1")
	e.want(e.user("GET", "/bots", otherKey, nil), http.StatusOK)
}
