package schedules_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/batches"
	"github.com/emsign/bot/controlplane/internal/testcert"
	"github.com/emsign/bot/controlplane/schedules"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

type fixture struct {
	st      *store.SQL
	account string
	bot     string
	// soon expires in 10 days, later in 200.
	soon, later string
}

func newFixture(t testing.TB, now time.Time) fixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "cp.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a, err := st.CreateAccount(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	bot, _, err := admin.CreateBot(ctx, st, a.ID, "web", "")
	if err != nil {
		t.Fatal(err)
	}
	g := testcert.NewGenerator(t)
	soon := g.New(t, testcert.Options{CN: "soon.example.com", NotAfter: now.Add(10 * 24 * time.Hour)})
	later := g.New(t, testcert.Options{CN: "later.example.com", NotAfter: now.Add(200 * 24 * time.Hour)})
	scan := admin.NewID()
	if err := st.StartScan(ctx, a.ID, bot, protocol.ScanStart{ScanID: scan, Trigger: "schedule"}); err != nil {
		t.Fatal(err)
	}
	var fs []protocol.Finding
	for i, der := range [][]byte{soon, later} {
		l, _ := protocol.ParseLocation(fmt.Sprintf("file:///etc/ssl/%d.pem#0", i))
		fs = append(fs, protocol.Finding{Location: l, Source: "file", Format: "pem", Chain: [][]byte{der}, SeenAt: now})
	}
	if _, err := st.Ingest(ctx, a.ID, bot, scan, protocol.FindingsBatch{Seq: 1, Findings: fs}); err != nil {
		t.Fatal(err)
	}
	certs, _, err := st.Certificates(ctx, a.ID, store.CertificateFilter{Sort: store.SortNotAfter})
	if err != nil || len(certs) != 2 {
		t.Fatalf("certificates %v %v", certs, err)
	}
	return fixture{st: st, account: a.ID, bot: bot, soon: certs[0].Fingerprint, later: certs[1].Fingerprint}
}

// rotator counts the rotations asked for, by fingerprint.
type rotator struct {
	mu    sync.Mutex
	calls map[string][]batches.RotateRequest
	err   error
}

func (r *rotator) Rotate(_ context.Context, _ string, req batches.RotateRequest) (store.Order, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[string][]batches.RotateRequest{}
	}
	r.calls[req.Fingerprint] = append(r.calls[req.Fingerprint], req)
	if r.err != nil {
		return store.Order{}, r.err
	}
	return store.Order{ID: fmt.Sprintf("order-%d", len(r.calls[req.Fingerprint]))}, nil
}

func (r *rotator) count(fp string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls[fp])
}

// scanner counts the scans queued, by bot.
type scanner struct {
	mu    sync.Mutex
	scans map[string]int
}

func (s *scanner) ScheduledScan(_ context.Context, _, botID, _ string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.scans == nil {
		s.scans = map[string]int{}
	}
	s.scans[botID]++
	return "scan", nil
}

func newRunner(t testing.TB, st schedules.Store, rot batches.Rotator, sc schedules.Scanner, now func() time.Time) *schedules.Runner {
	t.Helper()
	r, err := schedules.New(schedules.Config{Store: st, Rotator: rot, Scanner: sc,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func schedule(t testing.TB, f fixture, s store.Schedule) store.Schedule {
	t.Helper()
	s.ID, s.Account, s.Status, s.CreatedBy = admin.NewID(), f.account, store.SchedulePending, "alice@example.com"
	if err := f.st.CreateSchedule(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return s
}

func scheduleOf(t testing.TB, f fixture, id string) store.Schedule {
	t.Helper()
	ss, err := f.st.Schedules(context.Background(), f.account)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("schedule %s not found", id)
	return store.Schedule{}
}

// P6: each action at its time, once, with two runners racing.
func TestOneShotRace(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	tests := []struct {
		action     string
		wantAction string // the rotation asked for; "" for a scan
	}{
		{store.ScheduleRotate, protocol.ActionRotate},
		{store.ScheduleInitiate, protocol.ActionRotate},
		{store.ScheduleRenewal, protocol.ActionRenew},
		{store.ScheduleOrder, protocol.ActionRenew},
		{store.ScheduleRecheck, ""},
	}
	for _, tt := range tests {
		t.Run(tt.action, func(t *testing.T) {
			f := newFixture(t, now)
			clock := now
			var mu sync.Mutex
			nowFn := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
			s := schedule(t, f, store.Schedule{Action: tt.action, Fingerprint: f.later, At: now.Add(time.Hour)})
			rot, sc := &rotator{}, &scanner{}
			runners := []*schedules.Runner{newRunner(t, f.st, rot, sc, nowFn), newRunner(t, f.st, rot, sc, nowFn)}

			if n, err := runners[0].Pass(context.Background()); err != nil || n != 0 {
				t.Fatalf("before its time: fired %d (%v)", n, err)
			}
			mu.Lock()
			clock = now.Add(time.Hour)
			mu.Unlock()
			var wg sync.WaitGroup
			fired := make([]int, len(runners))
			for i, r := range runners {
				wg.Go(func() {
					for range 5 {
						n, err := r.Pass(context.Background())
						if err != nil {
							t.Error(err)
						}
						fired[i] += n
					}
				})
			}
			wg.Wait()
			if fired[0]+fired[1] != 1 {
				t.Fatalf("fired %v times, want once", fired)
			}
			got := scheduleOf(t, f, s.ID)
			if got.Status != store.ScheduleFired || got.LastFired == nil || got.LastError != "" {
				t.Fatalf("schedule %+v", got)
			}
			if tt.wantAction == "" {
				if sc.scans[f.bot] != 1 || rot.count(f.later) != 0 {
					t.Fatalf("scans %v, rotations %v", sc.scans, rot.calls)
				}
				return
			}
			if rot.count(f.later) != 1 || rot.calls[f.later][0].Action != tt.wantAction || got.LastOrderID != "order-1" {
				t.Fatalf("rotations %+v, schedule %+v", rot.calls, got)
			}
		})
	}
}

// P6: auto-renew fires for a certificate within N days of expiry, once;
// not for one further away; a failed firing is kept with its error.
func TestAutoRenew(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	f := newFixture(t, now)
	soon := schedule(t, f, store.Schedule{Action: store.ScheduleRenewal, Fingerprint: f.soon, AutoRenewDays: 30})
	later := schedule(t, f, store.Schedule{Action: store.ScheduleRenewal, Fingerprint: f.later, AutoRenewDays: 30})
	rot := &rotator{}
	clock := now
	r := newRunner(t, f.st, rot, &scanner{}, func() time.Time { return clock })
	for range 3 {
		if _, err := r.Pass(context.Background()); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(time.Hour)
	}
	if rot.count(f.soon) != 1 || rot.count(f.later) != 0 {
		t.Fatalf("rotations %v", rot.calls)
	}
	if got := scheduleOf(t, f, soon.ID); got.Status != store.SchedulePending || got.LastOrderID != "order-1" || got.LastFired == nil {
		t.Fatalf("auto-renew schedule %+v", got)
	}
	// 171 days on, the later one is within 30 days: it fires, once.
	clock = now.Add(171 * 24 * time.Hour)
	rot.err = errors.New("template_id: no provisioning template")
	if _, err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rot.count(f.later) != 1 || rot.count(f.soon) != 1 {
		t.Fatalf("rotations %v", rot.calls)
	}
	if got := scheduleOf(t, f, later.ID); got.LastError == "" || got.LastOrderID != "" {
		t.Fatalf("failed firing recorded as %+v", got)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, cfg := range []schedules.Config{{}, {Rotator: &rotator{}, Scanner: &scanner{}}} {
		if _, err := schedules.New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
