package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/store"
)

func TestIPRules(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	a, err := st.CreateAccount(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.CreateAccount(ctx, "Other")
	if err != nil {
		t.Fatal(err)
	}
	alice := store.User{ID: admin.NewID(), Account: a.ID, Email: "alice@example.com", Role: "administrator", Password: "$argon2id$x"}
	bob := store.User{ID: admin.NewID(), Account: b.ID, Email: "bob@example.com", Role: "administrator", Password: "$argon2id$y"}
	for _, u := range []store.User{alice, bob} {
		if err := st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	all, err := st.CreateIPRule(ctx, store.IPRule{Account: a.ID, StartIP: "10.0.0.0", EndIP: "10.0.0.255",
		Description: "office", Enabled: true, CreatedAt: at, CreatedBy: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	own, err := st.CreateIPRule(ctx, store.IPRule{Account: a.ID, UserID: alice.ID, StartIP: "2001:db8::", EndIP: "2001:db8::ffff"})
	if err != nil {
		t.Fatal(err)
	}
	otherRule, err := st.CreateIPRule(ctx, store.IPRule{Account: b.ID, StartIP: "192.0.2.1", EndIP: "192.0.2.1", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if all.ID == 0 || own.ID == 0 || all.ID == own.ID {
		t.Fatalf("IDs %d, %d", all.ID, own.ID)
	}

	errTests := []struct {
		name    string
		do      func() error
		wantErr error
	}{
		{"unknown account", func() error {
			_, err := st.CreateIPRule(ctx, store.IPRule{Account: "0000000000", StartIP: "10.0.0.1", EndIP: "10.0.0.1"})
			return err
		}, store.ErrNotFound},
		{"user of another account", func() error {
			_, err := st.CreateIPRule(ctx, store.IPRule{Account: a.ID, UserID: bob.ID, StartIP: "10.0.0.1", EndIP: "10.0.0.1"})
			return err
		}, store.ErrNotFound},
		{"enable another account's rule", func() error { return st.SetIPRuleEnabled(ctx, a.ID, otherRule.ID, false) }, store.ErrNotFound},
		{"delete another account's rule", func() error { return st.DeleteIPRule(ctx, a.ID, otherRule.ID) }, store.ErrNotFound},
		{"enable unknown rule", func() error { return st.SetIPRuleEnabled(ctx, a.ID, 999, true) }, store.ErrNotFound},
		{"delete unknown rule", func() error { return st.DeleteIPRule(ctx, a.ID, 999) }, store.ErrNotFound},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
	if _, err := st.CreateIPRule(ctx, store.IPRule{Account: a.ID, StartIP: "10.0.0.1"}); err == nil {
		t.Fatal("rule without an end stored")
	}

	list, err := st.IPRules(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0] != all || list[1].ID != own.ID || list[1].UserID != alice.ID || list[1].Enabled {
		t.Fatalf("rules: %+v, want %+v and %+v", list, all, own)
	}
	if !list[0].CreatedAt.Equal(at.Truncate(time.Microsecond)) {
		t.Fatalf("created at %v", list[0].CreatedAt)
	}

	if err := st.SetIPRuleEnabled(ctx, a.ID, own.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := st.SetIPRuleEnabled(ctx, a.ID, all.ID, false); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteIPRule(ctx, a.ID, all.ID); err != nil {
		t.Fatal(err)
	}
	list, err = st.IPRules(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != own.ID || !list[0].Enabled {
		t.Fatalf("after changes: %+v", list)
	}
	list, err = st.IPRules(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != otherRule.ID || !list[0].Enabled {
		t.Fatalf("other account's rules: %+v", list)
	}
	if list, err := st.IPRules(ctx, "0000000000"); err != nil || len(list) != 0 {
		t.Fatalf("unknown account: %+v, %v", list, err)
	}
}
