package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/store"
)

func TestUsers(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	a := newFixture(t, st, 1)
	b := newFixture(t, st, 1)
	u := store.User{ID: admin.NewID(), Account: a.account, Email: "  Alice@Example.COM ", Name: "Alice", Role: "administrator", Password: "$argon2id$x"}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	other := store.User{ID: admin.NewID(), Account: b.account, Email: "bob@example.com", Role: "basic_user", Password: "$argon2id$y"}
	if err := st.CreateUser(ctx, other); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		do      func() error
		wantErr error
	}{
		{"email taken, other case", func() error {
			return st.CreateUser(ctx, store.User{ID: admin.NewID(), Account: b.account, Email: "ALICE@example.com", Role: "x", Password: "p"})
		}, store.ErrConflict},
		{"unknown account", func() error {
			return st.CreateUser(ctx, store.User{ID: admin.NewID(), Account: "0000000000", Email: "c@example.com", Role: "x", Password: "p"})
		}, store.ErrNotFound},
		{"another account's user", func() error { _, err := st.User(ctx, a.account, other.ID); return err }, store.ErrNotFound},
		{"update another account's user", func() error {
			n := "x"
			_, err := st.UpdateUser(ctx, a.account, other.ID, store.UserPatch{Name: &n})
			return err
		}, store.ErrNotFound},
		{"unknown email", func() error { _, err := st.UserByEmail(ctx, "nobody@example.com"); return err }, store.ErrNotFound},
		{"login of unknown user", func() error { _, err := st.RecordLogin(ctx, "nope", true, time.Now(), time.Time{}); return err }, store.ErrNotFound},
		{"totp of unknown user", func() error { return st.UseTOTPStep(ctx, "nope", 1) }, store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}

	got, err := st.UserByEmail(ctx, "ALICE@example.com ")
	if err != nil || got.ID != u.ID || got.Email != "alice@example.com" || got.Account != a.account {
		t.Fatalf("by email: %+v, %v", got, err)
	}
	list, err := st.Users(ctx, a.account)
	if err != nil || len(list) != 1 || list[0].ID != u.ID {
		t.Fatalf("users: %+v, %v", list, err)
	}

	// Patch: role, password, TOTP (which restarts the step), disabling.
	role, pw, sealed, off := "manager", "$argon2id$new", []byte("sealed"), true
	if err := st.UseTOTPStep(ctx, u.ID, 5); err != nil {
		t.Fatal(err)
	}
	got, err = st.UpdateUser(ctx, a.account, u.ID, store.UserPatch{Role: &role, Password: &pw, TOTPSealed: &sealed, Disabled: &off})
	if err != nil || got.Role != role || got.Password != pw || string(got.TOTPSealed) != "sealed" || !got.Disabled || got.TOTPLastStep != 0 {
		t.Fatalf("update: %+v, %v", got, err)
	}
	var none []byte
	if got, err = st.UpdateUser(ctx, a.account, u.ID, store.UserPatch{TOTPSealed: &none}); err != nil || got.TOTPSealed != nil {
		t.Fatalf("remove totp: %+v, %v", got, err)
	}
}

func TestTOTPReplay(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	a := newFixture(t, st, 1)
	id := admin.NewID()
	if err := st.CreateUser(ctx, store.User{ID: id, Account: a.account, Email: "a@example.com", Role: "x", Password: "p"}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		step    int64
		wantErr error
	}{{100, nil}, {100, store.ErrConflict}, {99, store.ErrConflict}, {101, nil}, {101, store.ErrConflict}} {
		if err := st.UseTOTPStep(ctx, id, tt.step); !errors.Is(err, tt.wantErr) {
			t.Fatalf("step %d: got %v, want %v", tt.step, err, tt.wantErr)
		}
	}
}

func TestLoginLock(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	a := newFixture(t, st, 1)
	id := admin.NewID()
	if err := st.CreateUser(ctx, store.User{ID: id, Account: a.account, Email: "a@example.com", Role: "x", Password: "p"}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	lock := at.Add(15 * time.Minute)
	steps := []struct {
		ok       bool
		lock     time.Time
		failed   int
		locked   *time.Time
		lastSeen bool
	}{
		{false, time.Time{}, 1, nil, false},
		{false, time.Time{}, 2, nil, false},
		{false, lock, 3, &lock, false},
		{false, time.Time{}, 4, &lock, false}, // a lock set stays
		{true, time.Time{}, 0, nil, true},
	}
	for i, s := range steps {
		u, err := st.RecordLogin(ctx, id, s.ok, at, s.lock)
		if err != nil {
			t.Fatal(err)
		}
		if u.FailedLogins != s.failed || (u.LockedUntil == nil) != (s.locked == nil) ||
			(s.locked != nil && !u.LockedUntil.Equal(*s.locked)) || (u.LastLogin != nil) != s.lastSeen {
			t.Fatalf("step %d: %+v", i, u)
		}
	}
}

func TestSessions(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	a := newFixture(t, st, 1)
	b := newFixture(t, st, 1)
	uid, other := admin.NewID(), admin.NewID()
	for _, u := range []store.User{
		{ID: uid, Account: a.account, Email: "a@example.com", Role: "x", Password: "p"},
		{ID: other, Account: b.account, Email: "b@example.com", Role: "x", Password: "p"},
	} {
		if err := st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	s := store.Session{IDHash: admin.Hash("s1"), UserID: uid, Account: a.account, Stage: store.SessionTOTP, CSRF: "c",
		Remote: "10.0.0.1", UserAgent: "ua", CreatedAt: now, LastSeen: now, Expires: now.Add(time.Hour)}
	if err := st.CreateSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	// A session for a user of another account is refused.
	if err := st.CreateSession(ctx, store.Session{IDHash: admin.Hash("x"), UserID: other, Account: a.account, Stage: "ok"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("cross-account session: %v", err)
	}
	got, err := st.Session(ctx, s.IDHash)
	if err != nil || got.UserID != uid || got.Account != a.account || got.Stage != store.SessionTOTP || !got.Expires.Equal(s.Expires) || got.CSRF != "c" {
		t.Fatalf("session: %+v, %v", got, err)
	}
	later := now.Add(time.Minute)
	if err := st.UpdateSession(ctx, s.IDHash, store.SessionOK, later, time.Time{}); err != nil {
		t.Fatal(err)
	}
	got, _ = st.Session(ctx, s.IDHash)
	if got.Stage != store.SessionOK || !got.LastSeen.Equal(later) || !got.Expires.Equal(s.Expires) {
		t.Fatalf("updated: %+v", got)
	}
	if err := st.UpdateSession(ctx, admin.Hash("nope"), store.SessionOK, later, time.Time{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update unknown: %v", err)
	}
	if err := st.DeleteSession(ctx, s.IDHash); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Session(ctx, s.IDHash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	for _, h := range []string{"s2", "s3"} {
		s.IDHash = admin.Hash(h)
		if err := st.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.DeleteUserSessions(ctx, uid); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Session(ctx, admin.Hash("s2")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after delete user sessions: %v", err)
	}
}

func TestAPIKeysAndSettings(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	a := newFixture(t, st, 1)
	b := newFixture(t, st, 1)
	for _, k := range []store.APIKey{{ID: "ka", Account: a.account, Role: "administrator", Hash: []byte("h")}, {ID: "kb", Account: b.account, Role: "x", Hash: []byte("h")}} {
		if err := st.CreateAPIKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := st.APIKeys(ctx, a.account)
	if err != nil || len(keys) != 1 || keys[0].ID != "ka" {
		t.Fatalf("keys: %+v, %v", keys, err)
	}
	if err := st.RevokeAPIKey(ctx, a.account, "kb"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoke another account's key: %v", err)
	}
	if err := st.RevokeAPIKey(ctx, a.account, "ka"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.APIKey(ctx, "ka"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoked key: %v", err)
	}
	if err := st.SetRequireTOTP(ctx, a.account, true); err != nil {
		t.Fatal(err)
	}
	if acc, err := st.Account(ctx, a.account); err != nil || !acc.RequireTOTP {
		t.Fatalf("require totp: %+v, %v", acc, err)
	}
	if acc, _ := st.Account(ctx, b.account); acc.RequireTOTP {
		t.Fatal("require totp leaked to another account")
	}
	if err := st.SetRequireTOTP(ctx, "0000000000", true); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown account: %v", err)
	}
}

func TestAudit(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	a := newFixture(t, st, 1)
	b := newFixture(t, st, 1)
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for i, e := range []store.AuditEntry{
		{Account: a.account, ActorKind: "user", Actor: "alice@example.com", Action: "bot.create", Object: "b1"},
		{Account: a.account, ActorKind: "apikey", Actor: "k1", Action: "targets.update", Object: "b1"},
		{Account: b.account, ActorKind: "user", Actor: "bob@example.com", Action: "bot.create", Object: "b9"},
		{Account: a.account, ActorKind: "user", Actor: "alice@example.com", Action: "bot.suspend", Object: "b2"},
		{Account: a.account, ActorKind: "cli", Actor: "root", Action: "user.create", Object: "u1"},
	} {
		e.At = at.Add(time.Duration(i) * time.Minute)
		if err := st.AppendAudit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	actions := func(es []store.AuditEntry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Action)
		}
		return out
	}
	tests := []struct {
		name string
		f    store.AuditFilter
		want []string
	}{
		{"all, newest first", store.AuditFilter{}, []string{"user.create", "bot.suspend", "targets.update", "bot.create"}},
		{"action prefix", store.AuditFilter{Action: "bot."}, []string{"bot.suspend", "bot.create"}},
		{"actor", store.AuditFilter{Actor: "k1"}, []string{"targets.update"}},
		{"object", store.AuditFilter{Object: "b1"}, []string{"targets.update", "bot.create"}},
		{"nothing", store.AuditFilter{Actor: "bob@example.com"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es, _, err := st.Audit(ctx, a.account, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := actions(es); len(got) != len(tt.want) || (len(got) > 0 && !equal(got, tt.want)) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	// Paging by the cursor.
	var all []string
	f := store.AuditFilter{Limit: 3}
	for {
		es, next, err := st.Audit(ctx, a.account, f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, actions(es)...)
		if next == 0 {
			break
		}
		f.Before = next
	}
	if !equal(all, []string{"user.create", "bot.suspend", "targets.update", "bot.create"}) {
		t.Fatalf("pages: %v", all)
	}
	es, _, _ := st.Audit(ctx, a.account, store.AuditFilter{Limit: 1})
	if e := es[0]; e.ActorKind != "cli" || e.Actor != "root" || e.Object != "u1" || !e.At.Equal(at.Add(4*time.Minute)) || e.ID == 0 {
		t.Fatalf("entry: %+v", e)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
