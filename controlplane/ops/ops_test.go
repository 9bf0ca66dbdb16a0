package ops_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/auth"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/seal"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// Secrets the tests hand over; none may reach the audit log.
const (
	targetSecret  = "s3cretTargetPw"
	targetSecret2 = "hunter2Hunter2"
	userPassword  = "correct horse battery"
	userPassword2 = "staple of the horse 2"
)

type env struct {
	t       *testing.T
	ctx     context.Context
	st      store.Store
	o       *ops.Ops
	account string
	now     time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "cp.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sealer, err := seal.New(bytes.Repeat([]byte{7}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	o, err := ops.New(ops.Config{Store: st, Sealer: sealer, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	a, err := st.CreateAccount(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetBotLimit(ctx, a.ID, 1000); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ctx: ctx, st: st, o: o, account: a.ID, now: now}
}

// cli is the command line's actor: an administrator.
func (e *env) cli() ops.Actor {
	return ops.Actor{Account: e.account, Kind: ops.ActorCLI, ID: "root", Name: "root", Role: rbac.Administrator}
}

// key is an API key's actor of the role.
func (e *env) key(r rbac.Role) ops.Actor {
	return ops.Actor{Account: e.account, Kind: ops.ActorAPIKey, ID: "k-" + string(r), Name: "k-" + string(r), Role: r,
		Remote: "192.0.2.7"}
}

// user creates a user of the role and returns them as an actor.
func (e *env) user(email string, r rbac.Role) ops.Actor {
	e.t.Helper()
	u, err := e.o.CreateUser(e.ctx, e.cli(), email, "", string(r), userPassword)
	if err != nil {
		e.t.Fatal(err)
	}
	return ops.Actor{Account: e.account, Kind: ops.ActorUser, ID: u.ID, Name: u.Email, Role: r, Remote: "198.51.100.9"}
}

func (e *env) bot(name string) string {
	e.t.Helper()
	id, _, err := e.o.CreateBot(e.ctx, e.cli(), name, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *env) audit() []store.AuditEntry {
	e.t.Helper()
	entries, _, err := e.st.Audit(e.ctx, e.account, store.AuditFilter{Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	return entries
}

func (e *env) last() store.AuditEntry {
	e.t.Helper()
	entries := e.audit()
	if len(entries) == 0 {
		e.t.Fatal("audit log empty")
	}
	return entries[0]
}

func TestPermissions(t *testing.T) {
	e := newEnv(t)
	victim := e.user("victim@example.com", rbac.BasicUser)
	calls := []struct {
		action string
		perm   rbac.Permission
		call   func(a ops.Actor, bot string) error
	}{
		{"bot.create", rbac.ManageBots, func(a ops.Actor, _ string) error { _, _, err := e.o.CreateBot(e.ctx, a, "b", ""); return err }},
		{"bot.update", rbac.ManageBots, func(a ops.Actor, bot string) error {
			n := "renamed"
			_, err := e.o.UpdateBot(e.ctx, a, bot, store.BotPatch{Name: &n})
			return err
		}},
		{"bot.token", rbac.ManageBots, func(a ops.Actor, bot string) error { _, err := e.o.RegenerateToken(e.ctx, a, bot); return err }},
		{"bot.scan", rbac.ManageBots, func(a ops.Actor, bot string) error { _, err := e.o.RunScan(e.ctx, a, bot); return err }},
		{"bot.suspend", rbac.ManageBots, func(a ops.Actor, bot string) error {
			return e.o.SetBotStatus(e.ctx, a, bot, protocol.BotSuspended)
		}},
		{"targets.view", rbac.ViewBots, func(a ops.Actor, bot string) error { _, err := e.o.Targets(e.ctx, a, bot); return err }},
		{"targets.update", rbac.ManageBots, func(a ops.Actor, bot string) error {
			_, err := e.o.SetTargets(e.ctx, a, bot, ops.TargetSettings{Targets: []string{"tls://h:443"}})
			return err
		}},
		{"targets.add", rbac.ManageBots, func(a ops.Actor, bot string) error {
			_, err := e.o.AddTargets(e.ctx, a, bot, []string{"tls://g:443"})
			return err
		}},
		{"targets.remove", rbac.ManageBots, func(a ops.Actor, bot string) error {
			_, err := e.o.RemoveTargets(e.ctx, a, bot, []int{0})
			return err
		}},
		{"targets.schedule", rbac.ManageBots, func(a ops.Actor, bot string) error {
			_, err := e.o.SetSchedule(e.ctx, a, bot, protocol.Schedule{Kind: protocol.ScheduleOnDemand}, 2, time.Hour)
			return err
		}},
		{"targets.import", rbac.ManageBots, func(a ops.Actor, bot string) error {
			_, err := e.o.ImportTargets(e.ctx, a, bot, bot)
			return err
		}},
		{"user.create", rbac.ManageUsers, func(a ops.Actor, _ string) error {
			_, err := e.o.CreateUser(e.ctx, a, "new-"+string(a.Role)+"@example.com", "", "basic_user", userPassword)
			return err
		}},
		{"user.role", rbac.ManageUsers, func(a ops.Actor, _ string) error {
			return e.o.SetUserRole(e.ctx, a, victim.ID, "basic_user")
		}},
		{"user.disable", rbac.ManageUsers, func(a ops.Actor, _ string) error { return e.o.SetUserDisabled(e.ctx, a, victim.ID, true) }},
		{"user.totp_reset", rbac.ManageUsers, func(a ops.Actor, _ string) error { return e.o.ResetUserTOTP(e.ctx, a, victim.ID) }},
		{"apikey.create", rbac.ManageUsers, func(a ops.Actor, _ string) error {
			_, err := e.o.CreateAPIKey(e.ctx, a, "basic_user")
			return err
		}},
		{"account.require_totp", rbac.ManageAccount, func(a ops.Actor, _ string) error { return e.o.SetRequireTOTP(e.ctx, a, false) }},
	}
	for _, c := range calls {
		for _, r := range rbac.Roles() {
			t.Run(c.action+"/"+string(r), func(t *testing.T) {
				bot := e.bot("for " + c.action)
				a := e.key(r)
				err := c.call(a, bot)
				if rbac.Can(r, c.perm) {
					if errors.Is(err, ops.ErrForbidden) {
						t.Fatalf("refused: %v", err)
					}
					return
				}
				if !errors.Is(err, ops.ErrForbidden) || !strings.Contains(err.Error(), string(c.perm)) {
					t.Fatalf("err %v, want forbidden naming %s", err, c.perm)
				}
				got := e.last()
				if got.Action != ops.ActionDenied || !strings.HasPrefix(got.Detail, c.action+":") || got.Actor != a.Name ||
					got.ActorKind != ops.ActorAPIKey || got.Remote != a.Remote {
					t.Fatalf("denial audited as %+v", got)
				}
			})
		}
	}
}

func TestAuditEntries(t *testing.T) {
	e := newEnv(t)
	admin := e.user("admin@example.com", rbac.Administrator)
	var secrets []string // every secret handed out or in
	secrets = append(secrets, targetSecret, targetSecret2, userPassword, userPassword2)

	bot, token, err := e.o.CreateBot(e.ctx, admin, "web", "dmz")
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, token)
	other := e.bot("other")
	steps := []struct {
		action, object string
		detail         []string // substrings the detail holds
		do             func() error
	}{
		{"targets.update", bot, []string{"targets: 2 (file, tls)", "schedule daily"}, func() error {
			_, err := e.o.SetTargets(e.ctx, admin, bot, ops.TargetSettings{
				Targets:  []string{"file:///etc/ssl?password=" + targetSecret, "tls://10.0.0.1:443"},
				Schedule: protocol.Schedule{Kind: protocol.ScheduleDaily, Time: "02:00"}})
			return err
		}},
		{"targets.add", bot, []string{"added 1", "targets: 3 (file, tls, jks)"}, func() error {
			_, err := e.o.AddTargets(e.ctx, admin, bot, []string{"jks:///opt/app.jks?password=" + targetSecret2})
			return err
		}},
		{"targets.remove", bot, []string{"removed 1", "targets: 2 (tls, jks)"}, func() error {
			_, err := e.o.RemoveTargets(e.ctx, admin, bot, []int{0})
			return err
		}},
		{"targets.schedule", bot, []string{"schedule weekly at 03:00 on sun", "threads 8"}, func() error {
			_, err := e.o.SetSchedule(e.ctx, admin, bot, protocol.Schedule{Kind: protocol.ScheduleWeekly, Time: "03:00", Weekday: "sun"},
				8, time.Hour)
			return err
		}},
		{"targets.import", other, []string{"from bot " + bot, "added 2"}, func() error {
			_, err := e.o.ImportTargets(e.ctx, admin, other, bot)
			return err
		}},
		{"bot.update", bot, []string{`name "web-1"`}, func() error {
			n := "web-1"
			_, err := e.o.UpdateBot(e.ctx, admin, bot, store.BotPatch{Name: &n})
			return err
		}},
		{"bot.token", bot, []string{"certificate revoked"}, func() error {
			tok, err := e.o.RegenerateToken(e.ctx, admin, bot)
			secrets = append(secrets, tok)
			return err
		}},
		{"bot.scan", bot, []string{"scan "}, func() error { _, err := e.o.RunScan(e.ctx, admin, bot); return err }},
		{"bot.suspend", bot, []string{"suspended"}, func() error { return e.o.SetBotStatus(e.ctx, admin, bot, protocol.BotSuspended) }},
		{"bot.deactivate", bot, []string{"inactive"}, func() error { return e.o.SetBotStatus(e.ctx, admin, bot, protocol.BotInactive) }},
		{"user.create", "", []string{"bob@example.com", "role basic_user"}, func() error {
			_, err := e.o.CreateUser(e.ctx, admin, "Bob@Example.com", "Bob", "basic_user", userPassword2)
			return err
		}},
		{"apikey.create", "", []string{"role manager"}, func() error {
			k, err := e.o.CreateAPIKey(e.ctx, admin, "manager")
			secrets = append(secrets, k)
			return err
		}},
		{"account.require_totp", e.account, []string{"required"}, func() error { return e.o.SetRequireTOTP(e.ctx, admin, true) }},
		{"user.password", admin.ID, []string{"admin@example.com"}, func() error {
			return e.o.ChangePassword(e.ctx, admin, userPassword, userPassword2+"!")
		}},
		{"user.totp_enrol", admin.ID, []string{"admin@example.com"}, func() error {
			secrets = append(secrets, "JBSWY3DPEHPK3PXP")
			return e.o.EnrolTOTP(e.ctx, admin, "JBSWY3DPEHPK3PXP")
		}},
		{"user.login", admin.ID, []string{"password and code"}, func() error {
			return e.o.Record(e.ctx, admin, "user.login", admin.ID, "password and code")
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.action, err)
		}
		got := e.last()
		if got.Action != s.action || got.Account != e.account || got.ActorKind != ops.ActorUser || got.Actor != "admin@example.com" ||
			got.Remote != admin.Remote || !got.At.Equal(e.now) {
			t.Errorf("%s audited as %+v", s.action, got)
		}
		if s.object != "" && got.Object != s.object {
			t.Errorf("%s: object %q, want %q", s.action, got.Object, s.object)
		}
		for _, d := range s.detail {
			if !strings.Contains(got.Detail, d) {
				t.Errorf("%s: detail %q lacks %q", s.action, got.Detail, d)
			}
		}
	}
	// Bob's role change names both roles.
	users, err := e.st.Users(e.ctx, e.account)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(users, func(u store.User) bool { return u.Email == "bob@example.com" })
	if err := e.o.SetUserRole(e.ctx, admin, users[i].ID, "manager"); err != nil {
		t.Fatal(err)
	}
	if got := e.last(); got.Action != "user.role" || !strings.Contains(got.Detail, "role basic_user → manager") {
		t.Errorf("role change audited as %+v", got)
	}
	for _, en := range e.audit() {
		for _, s := range secrets {
			if strings.Contains(en.Detail, s) || strings.Contains(en.Object, s) {
				t.Errorf("audit entry %+v holds a secret", en)
			}
		}
		for _, word := range []string{"password=", "file:///", "jks:///"} {
			if strings.Contains(en.Detail, word) {
				t.Errorf("audit entry %+v shows a target URI", en)
			}
		}
	}
}

func TestTargetsKeepSecrets(t *testing.T) {
	e := newEnv(t)
	a := e.key(rbac.DiscoveryUser)
	bot, other := e.bot("a"), e.bot("b")
	sealed := func(id string) []string {
		t.Helper()
		b, err := e.st.Bot(e.ctx, e.account, id)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b.Targets.Sealed, []byte(targetSecret)) || bytes.Contains(b.Targets.Sealed, []byte(targetSecret2)) {
			t.Fatal("targets stored in clear")
		}
		raw, err := e.o.OpenTargets(b)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	check := func(step string, ts ops.TargetSettings, err error, id string, want ...string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		for _, shown := range ts.Targets {
			if strings.Contains(shown, targetSecret) || strings.Contains(shown, targetSecret2) {
				t.Fatalf("%s: secret shown in %q", step, shown)
			}
		}
		raw := sealed(id)
		joined := strings.Join(raw, " ")
		for _, w := range want {
			if !strings.Contains(joined, w) {
				t.Fatalf("%s: stored targets %q lack %q", step, raw, w)
			}
		}
		read, err := e.o.Targets(e.ctx, a, id)
		if err != nil || !slices.Equal(read.Targets, ts.Targets) || len(raw) != len(ts.Targets) {
			t.Fatalf("%s: Targets %v (%v), want %v", step, read.Targets, err, ts.Targets)
		}
	}
	fileT := "file:///etc/ssl?password=" + targetSecret
	jksT := "jks:///opt/app.jks?password=" + targetSecret2
	ts, err := e.o.SetTargets(e.ctx, a, bot, ops.TargetSettings{Targets: []string{fileT, "tls://10.0.0.1:443"}})
	check("set", ts, err, bot, targetSecret)
	ts, err = e.o.AddTargets(e.ctx, a, bot, []string{jksT, fileT})
	check("add", ts, err, bot, targetSecret, targetSecret2)
	if len(ts.Targets) != 3 {
		t.Fatalf("add doubled a target: %v", ts.Targets)
	}
	ts, err = e.o.SetSchedule(e.ctx, a, bot, protocol.Schedule{Kind: protocol.ScheduleDaily, Time: "01:00"}, 4, time.Hour)
	check("schedule", ts, err, bot, targetSecret, targetSecret2)
	if ts.Schedule.Kind != protocol.ScheduleDaily || ts.Threads != 4 || time.Duration(ts.MaxRuntime) != time.Hour {
		t.Fatalf("schedule %+v", ts)
	}
	ts, err = e.o.ImportTargets(e.ctx, a, other, bot)
	check("import", ts, err, other, targetSecret, targetSecret2)
	ts, err = e.o.RemoveTargets(e.ctx, a, bot, []int{0})
	check("remove", ts, err, bot, targetSecret2)
	if strings.Contains(strings.Join(sealed(bot), " "), targetSecret) || len(ts.Targets) != 2 {
		t.Fatalf("remove kept the target: %v", ts.Targets)
	}
	// The schedule survived the target changes.
	if ts.Schedule.Kind != protocol.ScheduleDaily || ts.Threads != 4 {
		t.Fatalf("schedule lost: %+v", ts)
	}

	// Bad input names the field, and never shows the secret.
	bad := []struct {
		field string
		do    func() error
	}{
		{"targets[1]", func() error {
			_, err := e.o.SetTargets(e.ctx, a, bot, ops.TargetSettings{Targets: []string{"tls://h:443", "gopher://x?password=" + targetSecret}})
			return err
		}},
		{"schedule.time", func() error {
			_, err := e.o.SetSchedule(e.ctx, a, bot, protocol.Schedule{Kind: protocol.ScheduleDaily, Time: "25:00"}, 0, 0)
			return err
		}},
		{"threads", func() error {
			_, err := e.o.SetSchedule(e.ctx, a, bot, protocol.Schedule{}, -1, 0)
			return err
		}},
		{"targets", func() error { _, err := e.o.RemoveTargets(e.ctx, a, bot, []int{7}); return err }},
		{"targets", func() error { _, err := e.o.AddTargets(e.ctx, a, bot, []string{" "}); return err }},
		{"from_bot", func() error { _, err := e.o.ImportTargets(e.ctx, a, bot, ""); return err }},
	}
	for _, b := range bad {
		err := b.do()
		var ie *ops.InvalidError
		if !errors.As(err, &ie) || ie.Field != b.field || strings.Contains(err.Error(), targetSecret) {
			t.Errorf("err %v, want an InvalidError on %s without the secret", err, b.field)
		}
	}
	if _, err := e.o.ImportTargets(e.ctx, a, bot, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("import from an unknown bot: %v", err)
	}
}

func TestLastAdministrator(t *testing.T) {
	e := newEnv(t)
	ann := e.user("ann@example.com", rbac.Administrator)
	bob := e.user("bob@example.com", rbac.Administrator)
	invalid := func(step string, err error, field string) {
		t.Helper()
		var ie *ops.InvalidError
		if !errors.As(err, &ie) || ie.Field != field {
			t.Fatalf("%s: err %v, want invalid %s", step, err, field)
		}
	}
	invalid("disable self", e.o.SetUserDisabled(e.ctx, ann, ann.ID, true), "user")
	invalid("demote self", e.o.SetUserRole(e.ctx, ann, ann.ID, "manager"), "role")
	if err := e.o.SetUserDisabled(e.ctx, ann, bob.ID, true); err != nil {
		t.Fatal(err)
	}
	// Ann is now the only enabled administrator.
	invalid("demote the last", e.o.SetUserRole(e.ctx, e.cli(), ann.ID, "manager"), "role")
	invalid("disable the last", e.o.SetUserDisabled(e.ctx, e.cli(), ann.ID, true), "user")
	if err := e.o.SetUserDisabled(e.ctx, ann, bob.ID, false); err != nil {
		t.Fatal(err)
	}
	if got := e.last(); got.Action != "user.enable" || got.Object != bob.ID {
		t.Fatalf("enable audited as %+v", got)
	}
	if err := e.o.SetUserRole(e.ctx, e.cli(), ann.ID, "manager"); err != nil {
		t.Fatalf("demote with another administrator: %v", err)
	}
}

func TestCanGrant(t *testing.T) {
	e := newEnv(t)
	admin := e.user("admin@example.com", rbac.Administrator)
	mgr := e.user("mgr@example.com", rbac.Manager)
	fin := e.user("fin@example.com", rbac.FinanceManager)
	tests := []struct {
		name string
		do   func() error
		ok   bool
	}{
		{"manager creates manager", func() error {
			_, err := e.o.CreateUser(e.ctx, mgr, "m2@example.com", "", "manager", userPassword)
			return err
		}, true},
		{"manager creates administrator", func() error {
			_, err := e.o.CreateUser(e.ctx, mgr, "a2@example.com", "", "administrator", userPassword)
			return err
		}, false},
		{"finance manager creates discovery user", func() error {
			_, err := e.o.CreateUser(e.ctx, fin, "d2@example.com", "", "discovery_user", userPassword)
			return err
		}, false},
		{"finance manager creates basic user", func() error {
			_, err := e.o.CreateUser(e.ctx, fin, "b2@example.com", "", "basic_user", userPassword)
			return err
		}, true},
		{"manager raises self", func() error { return e.o.SetUserRole(e.ctx, mgr, mgr.ID, "administrator") }, false},
		{"manager demotes administrator", func() error { return e.o.SetUserRole(e.ctx, mgr, admin.ID, "basic_user") }, false},
		{"manager disables administrator", func() error { return e.o.SetUserDisabled(e.ctx, mgr, admin.ID, true) }, false},
		{"manager resets administrator's totp", func() error { return e.o.ResetUserTOTP(e.ctx, mgr, admin.ID) }, false},
		{"manager makes an administrator key", func() error { _, err := e.o.CreateAPIKey(e.ctx, mgr, "administrator"); return err }, false},
		{"manager makes a manager key", func() error { _, err := e.o.CreateAPIKey(e.ctx, mgr, "manager"); return err }, true},
		{"manager changes finance manager to standard user", func() error {
			return e.o.SetUserRole(e.ctx, mgr, fin.ID, "standard_user")
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if tt.ok != (err == nil) || (!tt.ok && !errors.Is(err, ops.ErrForbidden)) {
				t.Fatalf("err %v, want ok %v", err, tt.ok)
			}
			if !tt.ok {
				if got := e.last(); got.Action != ops.ActionDenied {
					t.Fatalf("refusal audited as %+v", got)
				}
			}
		})
	}
}

func TestUsers(t *testing.T) {
	e := newEnv(t)
	admin := e.user("admin@example.com", rbac.Administrator)
	bad := []struct {
		name, email, role, password, field string
	}{
		{"bad email", "not an address", "basic_user", userPassword, "email"},
		{"display name", "Ann <ann@example.com>", "basic_user", userPassword, "email"},
		{"duplicate", "ADMIN@example.com", "basic_user", userPassword, "email"},
		{"short password", "c@example.com", "basic_user", "short", "password"},
		{"bad role", "c@example.com", "king", userPassword, "role"},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			_, err := e.o.CreateUser(e.ctx, admin, b.email, "", b.role, b.password)
			var ie *ops.InvalidError
			if !errors.As(err, &ie) || ie.Field != b.field {
				t.Fatalf("err %v, want invalid %s", err, b.field)
			}
		})
	}

	bob := e.user("bob@example.com", rbac.BasicUser)
	session := func(user string) []byte {
		id := []byte("session-of-" + user)
		if err := e.st.CreateSession(e.ctx, store.Session{IDHash: id, UserID: user, Account: e.account, Stage: store.SessionOK,
			CSRF: "x", CreatedAt: e.now, LastSeen: e.now, Expires: e.now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	ended := func(step string, id []byte) {
		t.Helper()
		if _, err := e.st.Session(e.ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: session still there (%v)", step, err)
		}
	}
	// Password change: the current one is checked; sessions end.
	s := session(bob.ID)
	var ie *ops.InvalidError
	if err := e.o.ChangePassword(e.ctx, bob, "wrong password!", userPassword2); !errors.As(err, &ie) || ie.Field != "current" {
		t.Fatalf("wrong current password: %v", err)
	}
	if err := e.o.ChangePassword(e.ctx, bob, userPassword, "short"); !errors.As(err, &ie) || ie.Field != "new" {
		t.Fatalf("short new password: %v", err)
	}
	if err := e.o.ChangePassword(e.ctx, bob, userPassword, userPassword2); err != nil {
		t.Fatal(err)
	}
	ended("password", s)
	u, err := e.st.User(e.ctx, e.account, bob.ID)
	if err != nil || auth.VerifyPassword(u.Password, userPassword2) != nil {
		t.Fatalf("new password not set (%v)", err)
	}
	if err := e.o.ChangePassword(e.ctx, e.key(rbac.Administrator), userPassword2, userPassword); !errors.Is(err, ops.ErrForbidden) {
		t.Fatalf("an API key changed a password: %v", err)
	}

	// TOTP: sealed, bound to the user.
	const secret = "JBSWY3DPEHPK3PXP"
	if err := e.o.EnrolTOTP(e.ctx, bob, secret); err != nil {
		t.Fatal(err)
	}
	u, _ = e.st.User(e.ctx, e.account, bob.ID)
	if len(u.TOTPSealed) == 0 || bytes.Contains(u.TOTPSealed, []byte(secret)) {
		t.Fatal("totp secret not sealed")
	}
	if got, err := e.o.TOTPSecret(e.ctx, u); err != nil || got != secret {
		t.Fatalf("TOTPSecret %q, %v", got, err)
	}
	moved := u
	moved.ID = admin.ID
	if _, err := e.o.TOTPSecret(e.ctx, moved); err == nil {
		t.Fatal("a sealed secret opened for another user")
	}

	// Role change, disabling and TOTP reset end the user's sessions.
	for _, step := range []struct {
		name string
		do   func() error
	}{
		{"totp reset", func() error { return e.o.ResetUserTOTP(e.ctx, admin, bob.ID) }},
		{"role", func() error { return e.o.SetUserRole(e.ctx, admin, bob.ID, "standard_user") }},
		{"disable", func() error { return e.o.SetUserDisabled(e.ctx, admin, bob.ID, true) }},
	} {
		s := session(bob.ID)
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		ended(step.name, s)
	}
	u, _ = e.st.User(e.ctx, e.account, bob.ID)
	if !u.Disabled || u.Role != "standard_user" || len(u.TOTPSealed) != 0 {
		t.Fatalf("user %+v", u)
	}

	// API keys: revoked by ID, audited.
	key, err := e.o.CreateAPIKey(e.ctx, admin, "basic_user")
	if err != nil {
		t.Fatal(err)
	}
	id := e.last().Object
	if id == "" || !strings.Contains(key, id) {
		t.Fatalf("key %q audited as %q", key, id)
	}
	if err := e.o.RevokeAPIKey(e.ctx, admin, id); err != nil {
		t.Fatal(err)
	}
	if got := e.last(); got.Action != "apikey.revoke" || got.Object != id {
		t.Fatalf("revoke audited as %+v", got)
	}
	if err := e.o.RevokeAPIKey(e.ctx, admin, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoked twice: %v", err)
	}
}
