package batches_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/batches"
	"github.com/emsign/bot/controlplane/internal/testcert"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// fixture is an account on a real SQLite store with two bots: active
// (activated) and asleep (deactivated), each holding certificates in PEM
// files also served over TLS.
type fixture struct {
	st             *store.SQL
	account        string
	active, asleep string
}

const distrusted = "Distrusted Intermediate CA"

// newFixture stores n certificates issued by the distrusted intermediate
// on the active bot (file and tls locations), 2 on the asleep bot, and 1
// of another issuer on the active bot.
func newFixture(t testing.TB, n int) fixture {
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
	if err := st.SetBotLimit(ctx, a.ID, 5); err != nil {
		t.Fatal(err)
	}
	f := fixture{st: st, account: a.ID}
	var tokens [2]string
	for i, p := range []*string{&f.active, &f.asleep} {
		if *p, tokens[i], err = admin.CreateBot(ctx, st, a.ID, fmt.Sprintf("bot-%d", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.ActivateBot(ctx, a.ID, f.active, admin.Hash(tokens[0]), store.Activation{Hostname: "web", CertSerial: "01",
		Capability: 2}); err != nil {
		t.Fatal(err)
	}
	g := testcert.NewGenerator(t)
	var onActive, onAsleep []protocol.Finding
	add := func(to *[]protocol.Finding, der []byte, i int, host string) {
		now := time.Now()
		*to = append(*to,
			protocol.Finding{Location: mustLoc(fmt.Sprintf("file:///etc/ssl/site-%03d.pem#0", i)), Source: "file", Format: "pem",
				Chain: [][]byte{der}, SeenAt: now},
			protocol.Finding{Location: mustLoc(fmt.Sprintf("tls://%s:%d", host, 8000+i)), Source: "tls", Format: "tls",
				Chain: [][]byte{der}, SeenAt: now})
	}
	for i := range n {
		add(&onActive, g.New(t, testcert.Options{CN: fmt.Sprintf("site-%d.example.com", i), Issuer: distrusted}), i, "10.0.0.1")
	}
	add(&onActive, g.New(t, testcert.Options{CN: "good.example.com", Issuer: "Good CA"}), 900, "10.0.0.1")
	for i := range 2 {
		add(&onAsleep, g.New(t, testcert.Options{CN: fmt.Sprintf("old-%d.example.com", i), Issuer: distrusted}), i, "10.0.0.2")
	}
	for _, s := range []struct {
		bot string
		fs  []protocol.Finding
	}{{f.active, onActive}, {f.asleep, onAsleep}} {
		scan := admin.NewID()
		if err := st.StartScan(ctx, a.ID, s.bot, protocol.ScanStart{ScanID: scan, Trigger: "schedule"}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Ingest(ctx, a.ID, s.bot, scan, protocol.FindingsBatch{Seq: 1, Findings: s.fs}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SetBotStatus(ctx, a.ID, f.asleep, protocol.BotInactive); err != nil {
		t.Fatal(err)
	}
	return f
}

func mustLoc(s string) protocol.Location {
	l, err := protocol.ParseLocation(s)
	if err != nil {
		panic(err)
	}
	return l
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (f fixture) planner(t testing.TB) *batches.Planner {
	t.Helper()
	p, err := batches.NewPlanner(batches.PlannerConfig{Store: f.st, NewID: admin.NewID})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (f fixture) plan(t testing.TB, wave, maxFailures int) (store.Batch, []store.BatchItem) {
	t.Helper()
	b, items, err := f.planner(t).Plan(context.Background(), f.account, batches.PlanRequest{Name: "distrust",
		Filter: store.CertificateFilter{Issuer: distrusted}, FilterJSON: `{"issuer":"` + distrusted + `"}`,
		Action: protocol.ActionRotate, WaveSize: wave, MaxFailures: maxFailures, CreatedBy: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	return b, items
}

// P9: the dry run lists the deployable locations of the matching
// certificates, in waves, and skips those of a bot that is not active.
func TestPlan(t *testing.T) {
	f := newFixture(t, 5)
	tests := []struct {
		name        string
		filter      store.CertificateFilter
		wave        int
		wantItems   int
		wantSkipped int
		wantWaves   int
	}{
		{"by issuer", store.CertificateFilter{Issuer: distrusted}, 2, 7, 2, 4},
		{"by issuer, one bot", store.CertificateFilter{Issuer: "distrusted", BotID: f.active}, 10, 5, 0, 1},
		{"by location", store.CertificateFilter{Location: "site-001"}, 10, 2, 1, 1},
		{"tls only: nothing to write", store.CertificateFilter{Source: "tls"}, 10, 0, 0, 0},
		{"other issuer", store.CertificateFilter{Issuer: "Good CA"}, 1, 1, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, items, err := f.planner(t).Plan(context.Background(), f.account, batches.PlanRequest{Name: tt.name,
				Filter: tt.filter, FilterJSON: "{}", Action: protocol.ActionRotate, WaveSize: tt.wave})
			if err != nil {
				t.Fatal(err)
			}
			if b.Status != store.BatchPlanned || b.Counts.Total != tt.wantItems || b.Counts.Skipped != tt.wantSkipped {
				t.Fatalf("batch %+v", b)
			}
			stored, err := f.st.BatchItems(context.Background(), f.account, b.ID, 1000, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(stored) != tt.wantItems {
				t.Fatalf("%d stored items, want %d", len(stored), tt.wantItems)
			}
			waves := map[int]int{}
			for i, it := range stored {
				if it != items[i] {
					t.Errorf("stored %+v, planned %+v", it, items[i])
				}
				if it.Seq != i+1 || it.Wave != i/tt.wave+1 {
					t.Errorf("item %d: seq %d wave %d", i, it.Seq, it.Wave)
				}
				if !strings.HasPrefix(it.Location, "file:///") {
					t.Errorf("item %d at %s: only files are written", i, it.Location)
				}
				waves[it.Wave]++
				skip := it.BotID == f.asleep
				if skip != (it.State == store.ItemSkipped) || (skip && !strings.Contains(it.Error, "inactive")) {
					t.Errorf("item %+v", it)
				}
				// Orderable first, then by bot and location.
				if i > 0 && stored[i-1].BotID == it.BotID && stored[i-1].Location >= it.Location {
					t.Errorf("items %d and %d out of order", i-1, i)
				}
			}
			if len(waves) != tt.wantWaves {
				t.Errorf("%d waves, want %d", len(waves), tt.wantWaves)
			}
			got, err := f.st.Batch(context.Background(), f.account, b.ID)
			if err != nil || got.Counts != b.Counts {
				t.Errorf("stored batch %+v (%v), planned counts %+v", got, err, b.Counts)
			}
		})
	}
}

func TestPlanRefuses(t *testing.T) {
	f := newFixture(t, 1)
	p := f.planner(t)
	for _, req := range []batches.PlanRequest{
		{Name: "x", Action: protocol.ActionRotate, WaveSize: 0},
		{Name: "x", Action: protocol.ActionRotate, WaveSize: batches.MaxWaveSize + 1},
		{Name: "x", Action: protocol.ActionRenew, WaveSize: 1},
	} {
		if _, _, err := p.Plan(context.Background(), f.account, req); err == nil {
			t.Errorf("%+v planned", req)
		}
	}
}

// fakeRotator makes orders through the store, as the ordering service
// does, and watches how many are under way at once.
type fakeRotator struct {
	st      *store.SQL
	mu      sync.Mutex
	calls   map[string]int // by bot and location
	open    map[string]bool
	maxOpen int
	fail    func(req batches.RotateRequest) error
	batchID string
}

func newFakeRotator(st *store.SQL) *fakeRotator {
	return &fakeRotator{st: st, calls: map[string]int{}, open: map[string]bool{}}
}

func (r *fakeRotator) Rotate(ctx context.Context, account string, req batches.RotateRequest) (store.Order, error) {
	if r.fail != nil {
		if err := r.fail(req); err != nil {
			return store.Order{}, err
		}
	}
	o := store.Order{ID: admin.NewID(), Account: account, BotID: req.BotID, Action: req.Action, Fingerprint: req.Fingerprint,
		Location: req.Location, TemplateID: req.TemplateID, BatchID: req.BatchID, CreatedBy: req.CreatedBy}
	if err := r.st.CreateOrder(ctx, o, nil); err != nil {
		return store.Order{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[req.BotID+" "+req.Location]++
	r.open[o.ID] = true
	r.maxOpen = max(r.maxOpen, len(r.open))
	return r.st.Order(ctx, account, o.ID)
}

// finish ends every open order: failed when fail says so, else rotated.
func (r *fakeRotator) finish(t testing.TB, account string, fail func(o store.Order) bool) int {
	t.Helper()
	r.mu.Lock()
	ids := make([]string, 0, len(r.open))
	for id := range r.open {
		ids = append(ids, id)
	}
	r.open = map[string]bool{}
	r.mu.Unlock()
	for _, id := range ids {
		o, err := r.st.Order(context.Background(), account, id)
		if err != nil {
			t.Fatal(err)
		}
		status, msg := store.OrderRotated, "verified"
		p := store.OrderPatch{}
		if fail != nil && fail(o) {
			status, msg = store.OrderFailed, "reload failed: exit status 1"
			p.Error = &msg
		}
		p.Status = &status
		if _, err := r.st.TransitionOrder(context.Background(), account, id, nil, p,
			store.OrderEvent{Status: status, Time: time.Now(), OK: status == store.OrderRotated, Message: msg}); err != nil {
			t.Fatal(err)
		}
	}
	return len(ids)
}

func (r *fakeRotator) openCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.open)
}

func newRunner(t testing.TB, st batches.RunStore, rot batches.Rotator) *batches.Runner {
	t.Helper()
	r, err := batches.NewRunner(batches.RunnerConfig{Store: st, Rotator: rot, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func pass(t testing.TB, r *batches.Runner) {
	t.Helper()
	if err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func batchOf(t testing.TB, f fixture, id string) store.Batch {
	t.Helper()
	b, err := f.st.Batch(context.Background(), f.account, id)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func start(t testing.TB, f fixture, id string) {
	t.Helper()
	if err := f.st.SetBatchStatus(context.Background(), f.account, id, []string{store.BatchPlanned}, store.BatchRunning,
		time.Now()); err != nil {
		t.Fatal(err)
	}
}

// P9: waves of WaveSize, one after the other, to the end.
func TestRunWaves(t *testing.T) {
	f := newFixture(t, 7)
	b, _ := f.plan(t, 3, 0)
	rot := newFakeRotator(f.st)
	r := newRunner(t, f.st, rot)

	pass(t, r) // planned: nothing happens
	if rot.openCount() != 0 {
		t.Fatal("a planned batch was ordered")
	}
	start(t, f, b.ID)
	var wantWaves = []int{3, 3, 1}
	for w, want := range wantWaves {
		pass(t, r)
		pass(t, r) // the wave under way: no more
		if got := rot.openCount(); got != want {
			t.Fatalf("wave %d: %d orders under way, want %d", w+1, got, want)
		}
		if c := batchOf(t, f, b.ID).Counts; c.Ordered != want {
			t.Fatalf("wave %d: counts %+v", w+1, c)
		}
		rot.finish(t, f.account, nil)
	}
	pass(t, r)
	got := batchOf(t, f, b.ID)
	if got.Status != store.BatchDone || got.Counts.Done != 7 || got.Counts.Skipped != 2 || got.FinishedAt == nil {
		t.Fatalf("batch %+v", got)
	}
	if rot.maxOpen != 3 {
		t.Errorf("at most %d orders at once, want 3", rot.maxOpen)
	}
	for k, n := range rot.calls {
		if n != 1 {
			t.Errorf("%s ordered %d times", k, n)
		}
	}

	rep, err := batches.BuildReport(context.Background(), f.st, f.account, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Waves) != 3 || rep.Waves[0].Done != 3 || rep.Waves[0].Finished == nil || rep.Waves[2].Skipped != 2 ||
		len(rep.Failures) != 0 || len(rep.Items) != 9 {
		t.Fatalf("report %+v", rep)
	}
	var buf bytes.Buffer
	if err := rep.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 10 || strings.Join(rows[0], ",") != strings.Join(batches.CSVHeader, ",") || rows[1][5] != store.ItemDone ||
		rows[1][6] == "" || rows[9][5] != store.ItemSkipped {
		t.Fatalf("CSV %q", rows)
	}
}

// P9: stop lets the orders under way finish and skips the rest;
// MaxFailures stops a batch by itself; a failed Rotate fails its item.
func TestRunStops(t *testing.T) {
	tests := []struct {
		name        string
		maxFailures int
		stopAfter   int // waves; 0: never pressed
		rotateFails bool
		failOrders  bool
		wantStatus  string
		wantCounts  store.BatchCounts
	}{
		{"stop pressed", 0, 1, false, false, store.BatchStopped,
			store.BatchCounts{Total: 8, Done: 2, Skipped: 6}},
		{"max failures", 3, 0, false, true, store.BatchStopped,
			store.BatchCounts{Total: 8, Failed: 4, Skipped: 4}},
		{"rotate refused", 0, 0, true, false, store.BatchDone,
			store.BatchCounts{Total: 8, Failed: 6, Skipped: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 6)
			b, _ := f.plan(t, 2, tt.maxFailures)
			rot := newFakeRotator(f.st)
			if tt.rotateFails {
				rot.fail = func(batches.RotateRequest) error { return fmt.Errorf("template_id: no provisioning template") }
			}
			r := newRunner(t, f.st, rot)
			start(t, f, b.ID)
			for wave := 1; wave <= 10; wave++ {
				pass(t, r)
				if tt.stopAfter == wave {
					if err := f.st.SetBatchStatus(context.Background(), f.account, b.ID, []string{store.BatchRunning},
						store.BatchStopping, time.Now()); err != nil {
						t.Fatal(err)
					}
					pass(t, r)
					if got := batchOf(t, f, b.ID); got.Status != store.BatchStopping {
						t.Fatalf("with orders under way: %s", got.Status)
					}
				}
				rot.finish(t, f.account, func(store.Order) bool { return tt.failOrders })
			}
			pass(t, r)
			got := batchOf(t, f, b.ID)
			if got.Status != tt.wantStatus || got.Counts != tt.wantCounts {
				t.Fatalf("batch %s %+v, want %s %+v", got.Status, got.Counts, tt.wantStatus, tt.wantCounts)
			}
			failed, err := f.st.BatchItemsInState(context.Background(), b.ID, store.ItemFailed, 100, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range failed {
				if it.Error == "" {
					t.Errorf("failed item without its error: %+v", it)
				}
			}
		})
	}
}

// P9, issue 11: two runners racing over 50 locations order each exactly
// once, and never more than a wave at a time.
func TestRunnersRace(t *testing.T) {
	f := newFixture(t, 50)
	b, _ := f.plan(t, 7, 0)
	rot := newFakeRotator(f.st)
	runners := []*batches.Runner{newRunner(t, f.st, rot), newRunner(t, f.st, rot)}
	start(t, f, b.ID)
	for round := 0; round < 40 && batchOf(t, f, b.ID).Status == store.BatchRunning; round++ {
		var wg sync.WaitGroup
		for _, r := range runners {
			wg.Go(func() {
				for range 3 {
					if err := r.Pass(context.Background()); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		if n := rot.openCount(); n > 7 {
			t.Fatalf("%d orders under way, wave size 7", n)
		}
		rot.finish(t, f.account, nil)
	}
	got := batchOf(t, f, b.ID)
	if got.Status != store.BatchDone || got.Counts.Done != 50 {
		t.Fatalf("batch %s %+v", got.Status, got.Counts)
	}
	if len(rot.calls) != 50 || rot.maxOpen > 7 {
		t.Fatalf("%d locations ordered, at most %d at once", len(rot.calls), rot.maxOpen)
	}
	for k, n := range rot.calls {
		if n != 1 {
			t.Errorf("%s ordered %d times", k, n)
		}
	}
}

// Run wakes on Wake and ends with its context.
func TestRunLoop(t *testing.T) {
	f := newFixture(t, 2)
	b, _ := f.plan(t, 5, 0)
	rot := newFakeRotator(f.st)
	r, err := batches.NewRunner(batches.RunnerConfig{Store: f.st, Rotator: rot, Logger: quiet(), Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	start(t, f, b.ID)
	r.Wake()
	deadline := time.Now().Add(5 * time.Second)
	for rot.openCount() != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		r.Wake()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rot.openCount() != 2 {
		t.Fatalf("%d orders after Wake", rot.openCount())
	}
}

// Issue 11: a wave claimed by a replica that died before ordering is taken
// up once the claim is stale: an order it made is adopted, the other
// items are ordered again, none twice.
func TestStaleClaim(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 3)
	b, _ := f.plan(t, 3, 0)
	start(t, f, b.ID)
	dead := fmt.Sprintf("claim:dead:%d", time.Now().Add(-time.Hour).UnixNano())
	claimed, err := f.st.ClaimBatchWave(ctx, b.ID, 1, dead)
	if err != nil || len(claimed) != 3 {
		t.Fatalf("claimed %v (%v)", claimed, err)
	}
	rot := newFakeRotator(f.st)
	// The dead replica made the first item's order before it died.
	first := claimed[0]
	made, err := rot.Rotate(ctx, f.account, batches.RotateRequest{Fingerprint: first.Fingerprint, Location: first.Location,
		BotID: first.BotID, Action: protocol.ActionRotate, BatchID: b.ID})
	if err != nil {
		t.Fatal(err)
	}
	r := newRunner(t, f.st, rot)
	pass(t, r)
	pass(t, r)
	if rot.openCount() != 3 {
		t.Fatalf("%d orders under way, want 3", rot.openCount())
	}
	items, err := f.st.BatchItems(ctx, f.account, b.ID, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if items[0].OrderID != made.ID || items[0].State != store.ItemOrdered {
		t.Fatalf("first item %+v: the order made was not adopted", items[0])
	}
	for _, it := range items[:3] {
		if batches.IsClaim(it.OrderID) || it.OrderID == "" {
			t.Errorf("item %+v still claimed", it)
		}
	}
	for k, n := range rot.calls {
		if n != 1 {
			t.Errorf("%s ordered %d times", k, n)
		}
	}
}
