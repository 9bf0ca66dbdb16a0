package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/internal/testcert"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// fakeClock is the store's clock in these tests, moved by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func openClock(t testing.TB, o store.Options) (*store.SQL, *fakeClock) {
	t.Helper()
	c := &fakeClock{t: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}
	o.Now = c.Now
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "cp.db"), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, c
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func rotateOrder(f fixture, id string) store.Order {
	return store.Order{ID: id, Account: f.account, BotID: f.bot, Action: protocol.ActionRotate, Location: "tls://a:443",
		Connector: "local", CreatedBy: "alice@example.com"}
}

func rotateJob(id string) *store.Job {
	return &store.Job{ID: id, Payload: []byte("sealed rotation " + id)}
}

func ptr[T any](v T) *T { return &v }

// B9, D7: an order and its rotate job are made together; the job carries
// its sealed payload and order to the bot.
func TestCreateOrder(t *testing.T) {
	ctx := context.Background()
	st, _ := openClock(t, store.Options{})
	f := newFixture(t, st, 1)
	other := newFixture(t, st, 1)

	tests := []struct {
		name    string
		o       store.Order
		job     *store.Job
		wantErr error // nil: success; errAny: some error
	}{
		{"with job", rotateOrder(f, "o1"), rotateJob("j1"), nil},
		{"without job", store.Order{ID: "o2", Account: f.account, Action: "order"}, nil, nil},
		{"duplicate id", rotateOrder(f, "o1"), rotateJob("j9"), store.ErrConflict},
		{"another account's bot", store.Order{ID: "o3", Account: f.account, BotID: other.bot, Action: "rotate"}, nil, store.ErrNotFound},
		{"unknown account", store.Order{ID: "o4", Account: "0000000000", Action: "order"}, nil, store.ErrNotFound},
		{"no id", store.Order{Account: f.account, Action: "order"}, nil, errAny},
		{"no action", store.Order{ID: "o5", Account: f.account}, nil, errAny},
		{"job without bot", store.Order{ID: "o6", Account: f.account, Action: "rotate"}, rotateJob("j6"), errAny},
		{"job id mismatch", func() store.Order { o := rotateOrder(f, "o7"); o.JobID = "jx"; return o }(), rotateJob("j7"), errAny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := st.CreateOrder(ctx, tc.o, tc.job)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("create: %v", err)
			case tc.wantErr == errAny && err == nil, tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("create: %v, want %v", err, tc.wantErr)
			}
		})
	}

	o, err := st.Order(ctx, f.account, "o1")
	if err != nil {
		t.Fatal(err)
	}
	if o.Status != store.OrderInitiated || o.JobID != "j1" || o.BotID != f.bot || o.CreatedBy != "alice@example.com" ||
		o.OrderingSince != nil || o.CreatedAt.IsZero() || !o.UpdatedAt.Equal(o.CreatedAt) {
		t.Errorf("order: %+v", o)
	}
	if got, err := st.OrderForBot(ctx, f.bot, "o1"); err != nil || got.ID != "o1" {
		t.Errorf("order for its bot: %+v, %v", got, err)
	}
	for _, c := range []struct {
		name string
		err  error
	}{
		{"another account", func() error { _, err := st.Order(ctx, other.account, "o1"); return err }()},
		{"another bot", func() error { _, err := st.OrderForBot(ctx, other.bot, "o1"); return err }()},
		{"no bot", func() error { _, err := st.OrderForBot(ctx, "", "o2"); return err }()},
		{"events of another account", func() error { _, err := st.OrderEvents(ctx, other.account, "o1"); return err }()},
	} {
		if !errors.Is(c.err, store.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", c.name, c.err)
		}
	}
	evs, err := st.OrderEvents(ctx, f.account, "o1")
	if err != nil || len(evs) != 1 || evs[0].Seq != 1 || evs[0].Status != store.OrderInitiated || !evs[0].OK {
		t.Errorf("first event: %+v, %v", evs, err)
	}

	jobs, err := st.TakeJobs(ctx, f.bot)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("jobs: %+v, %v", jobs, err)
	}
	j := jobs[0]
	if j.ID != "j1" || j.Kind != protocol.JobRotate || j.OrderID != "o1" || j.Account != f.account ||
		!bytes.Equal(j.Payload, []byte("sealed rotation j1")) {
		t.Errorf("job: %+v", j)
	}
	// A failed create left no job behind (o1 twice, o7).
	if jobs, _ := st.TakeJobs(ctx, f.bot); len(jobs) != 0 {
		t.Errorf("jobs of failed creates: %+v", jobs)
	}
}

// errAny stands for "some error" in tables.
var errAny = errors.New("any error")

// Jobs are idempotent: however many deliveries of one job post their CSR
// at once, exactly one orders from the CA; a replica that died while
// ordering is taken over once its claim is stale.
func TestClaimOrdering(t *testing.T) {
	ctx := context.Background()
	st, clock := openClock(t, store.Options{})
	f := newFixture(t, st, 1)
	if err := st.CreateOrder(ctx, rotateOrder(f, "o1"), rotateJob("j1")); err != nil {
		t.Fatal(err)
	}
	now := clock.Now()

	const n = 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	claims := 0
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, claimed, err := st.ClaimOrdering(ctx, f.bot, "o1", fmt.Sprintf("csr %d", i), now, now.Add(-5*time.Minute))
			if err != nil {
				t.Errorf("claim %d: %v", i, err)
				return
			}
			if o.Status != store.OrderOrdering || o.OrderingSince == nil || !o.OrderingSince.Equal(now) {
				t.Errorf("claim %d: order %+v", i, o)
			}
			if claimed {
				mu.Lock()
				claims++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if claims != 1 {
		t.Fatalf("%d of %d concurrent claims won, want exactly 1", claims, n)
	}

	later := now.Add(10 * time.Minute)
	steps := []struct {
		name        string
		bot         string
		staleBefore time.Time
		claimed     bool
		wantErr     error
	}{
		{"held, not stale", f.bot, now, false, nil},                   // ordering_since == staleBefore: not before it
		{"stale: taken over", f.bot, now.Add(time.Second), true, nil}, // the replica that held it died
		{"another bot", "other-bot", later, false, store.ErrNotFound},
		{"no bot", "", later, false, store.ErrNotFound},
	}
	for _, s := range steps {
		o, claimed, err := st.ClaimOrdering(ctx, s.bot, "o1", "csr again", later, s.staleBefore)
		if !errors.Is(err, s.wantErr) || (s.wantErr == nil && err != nil) {
			t.Fatalf("%s: %v, want %v", s.name, err, s.wantErr)
		}
		if claimed != s.claimed {
			t.Errorf("%s: claimed %v, want %v", s.name, claimed, s.claimed)
		}
		if claimed && (o.CSRPEM != "csr again" || !o.OrderingSince.Equal(later)) {
			t.Errorf("%s: order %+v", s.name, o)
		}
	}

	// Once issued, a claim is refused with the order as it is: the
	// caller answers with its certificate.
	if _, err := st.TransitionOrder(ctx, f.account, "o1", []string{store.OrderOrdering},
		store.OrderPatch{Status: ptr(store.OrderIssued), CertPEM: ptr("CERT")}, store.OrderEvent{OK: true, Message: "issued"}); err != nil {
		t.Fatal(err)
	}
	o, claimed, err := st.ClaimOrdering(ctx, f.bot, "o1", "csr", later.Add(time.Hour), later.Add(time.Hour))
	if err != nil || claimed || o.Status != store.OrderIssued || o.CertPEM != "CERT" || o.OrderingSince != nil {
		t.Errorf("claim of an issued order: %+v, %v, %v", o, claimed, err)
	}
	evs, err := st.OrderEvents(ctx, f.account, "o1")
	if err != nil {
		t.Fatal(err)
	}
	// created, ordering, ordering again (takeover), issued.
	var statuses []string
	for i, ev := range evs {
		if ev.Seq != i+1 {
			t.Errorf("event %d has seq %d", i, ev.Seq)
		}
		statuses = append(statuses, ev.Status)
	}
	if want := []string{"initiated", "ordering", "ordering", "issued"}; fmt.Sprint(statuses) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", statuses, want)
	}
}

// S5: status changes happen only from the statuses named; each appends to
// the history in sequence.
func TestTransitionOrder(t *testing.T) {
	ctx := context.Background()
	st, clock := openClock(t, store.Options{})
	f := newFixture(t, st, 1)
	other := newFixture(t, st, 1)
	if err := st.CreateOrder(ctx, rotateOrder(f, "o1"), nil); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		account string
		from    []string
		patch   store.OrderPatch
		wantErr error
		status  string
	}{
		{"from the wrong status", f.account, []string{store.OrderIssued}, store.OrderPatch{Status: ptr(store.OrderDeployed)}, store.ErrConflict, store.OrderInitiated},
		{"another account", other.account, nil, store.OrderPatch{Status: ptr(store.OrderCanceled)}, store.ErrNotFound, store.OrderInitiated},
		{"to ordering", f.account, []string{store.OrderInitiated}, store.OrderPatch{Status: ptr(store.OrderOrdering), CSRPEM: ptr("CSR")}, nil, store.OrderOrdering},
		{"issued", f.account, []string{store.OrderOrdering}, store.OrderPatch{Status: ptr(store.OrderIssued), CertPEM: ptr("C"),
			ChainPEM: ptr("CH"), NewFingerprint: ptr("ab12"), CAOrderID: ptr("ca-1")}, nil, store.OrderIssued},
		{"fields only, any status", f.account, nil, store.OrderPatch{Outcome: ptr("rotated"), Remarks: ptr("r")}, nil, store.OrderIssued},
		{"rotated", f.account, []string{store.OrderIssued, store.OrderDeployed}, store.OrderPatch{Status: ptr(store.OrderRotated)}, nil, store.OrderRotated},
		{"empty status", f.account, nil, store.OrderPatch{Status: ptr("")}, errAny, store.OrderRotated},
	}
	wantEvents := 1
	for _, s := range steps {
		clock.Add(time.Second)
		o, err := st.TransitionOrder(ctx, s.account, "o1", s.from, s.patch, store.OrderEvent{Message: s.name, OK: true})
		switch {
		case s.wantErr == nil && err != nil:
			t.Fatalf("%s: %v", s.name, err)
		case s.wantErr == errAny && err == nil, s.wantErr != nil && s.wantErr != errAny && !errors.Is(err, s.wantErr):
			t.Fatalf("%s: %v, want %v", s.name, err, s.wantErr)
		}
		if err == nil {
			wantEvents++
			if !o.UpdatedAt.Equal(clock.Now()) || o.Status != s.status {
				t.Errorf("%s: order %+v", s.name, o)
			}
		}
		cur, err := st.Order(ctx, f.account, "o1")
		if err != nil {
			t.Fatal(err)
		}
		if cur.Status != s.status || (cur.OrderingSince != nil) != (s.status == store.OrderOrdering) {
			t.Errorf("%s: status %s (ordering since %v), want %s", s.name, cur.Status, cur.OrderingSince, s.status)
		}
	}
	o, _ := st.Order(ctx, f.account, "o1")
	if o.CSRPEM != "CSR" || o.CertPEM != "C" || o.ChainPEM != "CH" || o.NewFingerprint != "ab12" || o.CAOrderID != "ca-1" ||
		o.Outcome != "rotated" || o.Remarks != "r" {
		t.Errorf("patched fields: %+v", o)
	}

	// The bot's steps, then the history in order.
	if err := st.AddOrderEvents(ctx, f.account, "o1", []store.OrderEvent{
		{Step: "deploy", OK: true, Message: "written"}, {Step: "verify", OK: false, Message: "old certificate served"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddOrderEvents(ctx, other.account, "o1", []store.OrderEvent{{Step: "x"}}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("events into another account's order: %v", err)
	}
	evs, err := st.OrderEvents(ctx, f.account, "o1")
	if err != nil || len(evs) != wantEvents+2 {
		t.Fatalf("events: %d, %v; want %d", len(evs), err, wantEvents+2)
	}
	for i, ev := range evs {
		if ev.Seq != i+1 || ev.OrderID != "o1" || ev.Time.IsZero() {
			t.Errorf("event %d: %+v", i, ev)
		}
	}
	if last := evs[len(evs)-1]; last.Step != "verify" || last.OK || last.Status != store.OrderRotated {
		t.Errorf("last event: %+v", last)
	}
	if ev := evs[1]; ev.Message != "to ordering" || ev.Status != store.OrderOrdering {
		t.Errorf("transition event: %+v", ev)
	}
}

// Appends racing on one order number their events without a gap or a
// duplicate.
func TestOrderEventsConcurrent(t *testing.T) {
	ctx := context.Background()
	st, _ := openClock(t, store.Options{})
	f := newFixture(t, st, 1)
	if err := st.CreateOrder(ctx, rotateOrder(f, "o1"), nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := st.AddOrderEvents(ctx, f.account, "o1", []store.OrderEvent{{Step: "s", Message: fmt.Sprint(i)},
				{Step: "t"}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	evs, err := st.OrderEvents(ctx, f.account, "o1")
	if err != nil || len(evs) != 21 {
		t.Fatalf("events: %d, %v", len(evs), err)
	}
	for i, ev := range evs {
		if ev.Seq != i+1 {
			t.Fatalf("event %d has seq %d", i, ev.Seq)
		}
	}
}

func TestOrdersFilterAndCounts(t *testing.T) {
	ctx := context.Background()
	st, clock := openClock(t, store.Options{})
	f := newFixture(t, st, 1)
	other := newFixture(t, st, 1)
	mk := func(id, fp, batch string, bot bool, status string) {
		t.Helper()
		o := store.Order{ID: id, Account: f.account, Action: protocol.ActionRotate, Fingerprint: fp, BatchID: batch}
		if bot {
			o.BotID = f.bot
		}
		clock.Add(time.Second)
		if err := st.CreateOrder(ctx, o, nil); err != nil {
			t.Fatal(err)
		}
		if status != store.OrderInitiated {
			if _, err := st.TransitionOrder(ctx, f.account, id, nil, store.OrderPatch{Status: &status, NewFingerprint: ptr("new-" + id)},
				store.OrderEvent{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("a", "fp1", "b1", true, store.OrderDeployed)
	mk("b", "fp1", "", false, store.OrderFailed)
	mk("c", "fp2", "b1", true, store.OrderInitiated)
	mk("d", "new-a", "", true, store.OrderIssued) // replaces the certificate order a issued
	if err := st.CreateOrder(ctx, store.Order{ID: "x", Account: other.account, Action: "order", Fingerprint: "fp1"}, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    store.OrderFilter
		want []string
	}{
		{"all, newest first", store.OrderFilter{}, []string{"d", "c", "b", "a"}},
		{"replaced certificate", store.OrderFilter{Fingerprint: "fp1"}, []string{"b", "a"}},
		{"replaced or issued", store.OrderFilter{Fingerprint: "new-a"}, []string{"d", "a"}},
		{"batch", store.OrderFilter{BatchID: "b1"}, []string{"c", "a"}},
		{"bot", store.OrderFilter{BotID: f.bot}, []string{"d", "c", "a"}},
		{"status", store.OrderFilter{Status: store.OrderFailed}, []string{"b"}},
		{"two filters", store.OrderFilter{BatchID: "b1", Status: store.OrderInitiated}, []string{"c"}},
		{"page", store.OrderFilter{Limit: 2, Offset: 1}, []string{"c", "b"}},
		{"nothing", store.OrderFilter{Fingerprint: "none"}, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.Orders(ctx, f.account, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			ids := []string{}
			for _, o := range got {
				ids = append(ids, o.ID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tc.want) {
				t.Errorf("orders %v, want %v", ids, tc.want)
			}
		})
	}
	counts, err := st.OrderCounts(ctx, f.account)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"deployed": 1, "failed": 1, "initiated": 1, "issued": 1}; fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("counts %v, want %v", counts, want)
	}
	if c, err := st.OrderCounts(ctx, "0000000000"); err != nil || len(c) != 0 {
		t.Errorf("counts of an unknown account: %v, %v", c, err)
	}
}

// At-least-once rotations: a rotate job not finished RedeliverAfter after
// its delivery is handed over again; scans and config changes are not.
func TestRotateJobRedelivered(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		after time.Duration // Options.RedeliverAfter
		wait  time.Duration // the redelivery time in effect
	}{
		{"default", 0, store.RedeliverAfter},
		{"option", time.Minute, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, clock := openClock(t, store.Options{RedeliverAfter: tc.after})
			f := newFixture(t, st, 1)
			if err := st.CreateOrder(ctx, rotateOrder(f, "o1"), rotateJob("j1")); err != nil {
				t.Fatal(err)
			}
			if err := st.CreateOrder(ctx, rotateOrder(f, "o2"), rotateJob("j2")); err != nil {
				t.Fatal(err)
			}
			if err := st.QueueScan(ctx, f.account, f.bot, "scan1", "js"); err != nil {
				t.Fatal(err)
			}
			steps := []struct {
				name    string
				advance time.Duration
				finish  string // a job to finish first
				want    []string
			}{
				{"first delivery", 0, "", []string{"j1", "j2", "js"}},
				{"nothing new", 0, "", nil},
				{"just before the redelivery time", tc.wait - time.Second, "", nil},
				{"redelivered", time.Second, "j2", []string{"j1"}}, // j2 finished: never again
				{"not again at once", tc.wait / 2, "", nil},
				{"again later", tc.wait, "", []string{"j1"}},
				{"finished", 2 * tc.wait, "j1", nil},
			}
			for _, s := range steps {
				clock.Add(s.advance)
				if s.finish != "" {
					if err := st.FinishJob(ctx, f.bot, s.finish, store.JobDone, ""); err != nil {
						t.Fatal(err)
					}
				}
				jobs, err := st.TakeJobs(ctx, f.bot)
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, j := range jobs {
					ids = append(ids, j.ID)
					if j.Kind == protocol.JobRotate && len(j.Payload) == 0 {
						t.Errorf("%s: job %s without its payload", s.name, j.ID)
					}
				}
				if fmt.Sprint(ids) != fmt.Sprint(s.want) {
					t.Errorf("%s: jobs %v, want %v", s.name, ids, s.want)
				}
			}
		})
	}
}

// P7: an account has one local CA, whichever replica creates it first.
func TestLocalCA(t *testing.T) {
	ctx := context.Background()
	st, _ := openClock(t, store.Options{})
	f := newFixture(t, st, 1)
	other := newFixture(t, st, 1)
	if _, err := st.LocalCA(ctx, f.account); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("before: %v", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, conflicts := 0, 0
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := st.CreateLocalCA(ctx, store.LocalCA{Account: f.account, CertPEM: fmt.Sprint("CA ", i), KeySealed: []byte{byte(i), 1}})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, store.ErrConflict):
				conflicts++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if won != 1 || conflicts != 9 {
		t.Fatalf("%d created, %d conflicts; want 1 and 9", won, conflicts)
	}
	c, err := st.LocalCA(ctx, f.account)
	if err != nil || c.Account != f.account || c.CertPEM == "" || len(c.KeySealed) != 2 || c.CreatedAt.IsZero() {
		t.Errorf("local ca: %+v, %v", c, err)
	}
	if _, err := st.LocalCA(ctx, other.account); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another account sees it: %v", err)
	}
	for _, bad := range []store.LocalCA{{CertPEM: "c", KeySealed: []byte{1}}, {Account: other.account, KeySealed: []byte{1}},
		{Account: other.account, CertPEM: "c"}} {
		if err := st.CreateLocalCA(ctx, bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

// P9: a mass replacement's plan, waves, counts and status changes.
func TestBatches(t *testing.T) {
	ctx := context.Background()
	st, clock := openClock(t, store.Options{})
	f := newFixture(t, st, 1)
	other := newFixture(t, st, 1)
	items := make([]store.BatchItem, 5)
	for i := range items {
		items[i] = store.BatchItem{Fingerprint: fmt.Sprint("fp", i), Location: fmt.Sprintf("tls://h%d:443", i), BotID: f.bot}
	}
	b := store.Batch{ID: "b1", Account: f.account, Name: "distrusted", Filter: `{"issuer":"Bad CA"}`, Action: protocol.ActionRotate,
		WaveSize: 2, MaxFailures: 1, CreatedBy: "alice"}
	if err := st.CreateBatch(ctx, b, items); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Second)
	if err := st.CreateBatch(ctx, store.Batch{ID: "b2", Account: f.account, Action: protocol.ActionRekey, WaveSize: 10}, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		b    store.Batch
		want error
	}{
		{"duplicate", b, store.ErrConflict},
		{"wave size 0", store.Batch{ID: "b3", Account: f.account, Action: "rotate"}, errAny},
		{"no action", store.Batch{ID: "b3", Account: f.account, WaveSize: 1}, errAny},
		{"unknown account", store.Batch{ID: "b3", Account: "0000000000", Action: "rotate", WaveSize: 1}, store.ErrNotFound},
	} {
		err := st.CreateBatch(ctx, c.b, items)
		if err == nil || (c.want != errAny && !errors.Is(err, c.want)) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}

	got, err := st.BatchItems(ctx, f.account, "b1", 0, 0)
	if err != nil || len(got) != 5 {
		t.Fatalf("items: %+v, %v", got, err)
	}
	for i, it := range got {
		if it.Seq != i+1 || it.Wave != i/2+1 || it.State != store.ItemPending || it.Fingerprint != items[i].Fingerprint || it.BatchID != "b1" {
			t.Errorf("item %d: %+v", i, it)
		}
	}
	if page, err := st.BatchItems(ctx, f.account, "b1", 2, 3); err != nil || len(page) != 2 || page[0].Seq != 4 {
		t.Errorf("page: %+v, %v", page, err)
	}
	if _, err := st.BatchItems(ctx, other.account, "b1", 0, 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another account's items: %v", err)
	}

	// Status changes (table): from the statuses named only, with stamps.
	var start time.Time // the first start
	steps := []struct {
		name     string
		account  string
		from     []string
		to       string
		wantErr  error
		status   string
		started  bool
		finished bool
	}{
		{"stop a planned one as if running", f.account, []string{store.BatchRunning}, store.BatchStopping, store.ErrConflict, store.BatchPlanned, false, false},
		{"start", f.account, []string{store.BatchPlanned}, store.BatchRunning, nil, store.BatchRunning, true, false},
		{"start again", f.account, []string{store.BatchPlanned}, store.BatchRunning, store.ErrConflict, store.BatchRunning, true, false},
		{"another account", other.account, nil, store.BatchStopped, store.ErrNotFound, store.BatchRunning, true, false},
		{"unknown status", f.account, nil, "paused", errAny, store.BatchRunning, true, false},
		{"stop pressed", f.account, []string{store.BatchRunning}, store.BatchStopping, nil, store.BatchStopping, true, false},
		{"stopped", f.account, []string{store.BatchStopping}, store.BatchStopped, nil, store.BatchStopped, true, true},
	}
	for _, s := range steps {
		err := st.SetBatchStatus(ctx, s.account, "b1", s.from, s.to, clock.Now())
		if (s.wantErr == nil) != (err == nil) || (s.wantErr != nil && s.wantErr != errAny && !errors.Is(err, s.wantErr)) {
			t.Fatalf("%s: %v, want %v", s.name, err, s.wantErr)
		}
		got, err := st.Batch(ctx, f.account, "b1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != s.status || (got.StartedAt != nil) != s.started || (got.FinishedAt != nil) != s.finished {
			t.Errorf("%s: %+v", s.name, got)
		}
		if s.name == "start" {
			start = clock.Now()
			// Running batches include it, from every account.
			if rb, _ := st.RunningBatches(ctx); len(rb) != 1 || rb[0].ID != "b1" {
				t.Errorf("running batches: %+v", rb)
			}
		}
		if got.StartedAt != nil && !got.StartedAt.Equal(start) {
			t.Errorf("%s: started at %v, want %v (the first start)", s.name, got.StartedAt, start)
		}
		clock.Add(time.Minute)
	}

	// Item states and the counts.
	for _, c := range []struct {
		seq          int
		order, state string
	}{{1, "o1", store.ItemOrdered}, {2, "o2", store.ItemOrdered}, {1, "", store.ItemDone}, {2, "", store.ItemFailed}, {5, "", store.ItemSkipped}} {
		if err := st.SetBatchItem(ctx, "b1", c.seq, c.order, c.state, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SetBatchItem(ctx, "b1", 9, "", store.ItemDone, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown item: %v", err)
	}
	if err := st.SetBatchItem(ctx, "b1", 1, "", "finished", ""); err == nil {
		t.Error("unknown state accepted")
	}
	got1, err := st.Batch(ctx, f.account, "b1")
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.BatchCounts{Total: 5, Pending: 2, Done: 1, Failed: 1, Skipped: 1}); got1.Counts != want {
		t.Errorf("counts %+v, want %+v", got1.Counts, want)
	}
	if it, _ := st.BatchItems(ctx, f.account, "b1", 1, 0); it[0].OrderID != "o1" || it[0].State != store.ItemDone {
		t.Errorf("item 1 lost its order: %+v", it[0])
	}
	all, err := st.Batches(ctx, f.account)
	if err != nil || len(all) != 2 || all[0].ID != "b2" || all[1].Counts.Total != 5 || all[0].Counts.Total != 0 {
		t.Errorf("batches: %+v, %v", all, err)
	}
	if all, _ := st.Batches(ctx, other.account); len(all) != 0 {
		t.Errorf("another account's batches: %+v", all)
	}
	if _, err := st.Batch(ctx, other.account, "b1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another account's batch: %v", err)
	}
	if rb, err := st.RunningBatches(ctx); err != nil || len(rb) != 0 {
		t.Errorf("running batches after stop: %+v, %v", rb, err)
	}
}

// P6: schedules fall due, fire once however many replicas try, and
// auto-renew fires once per certificate.
func TestSchedules(t *testing.T) {
	ctx := context.Background()
	st, clock := openClock(t, store.Options{})
	f := newFixture(t, st, 1)
	other := newFixture(t, st, 1)
	now := clock.Now()
	day := 24 * time.Hour
	g := testcert.NewGenerator(t)
	soon := g.New(t, testcert.Options{CN: "soon", NotAfter: now.Add(10 * day)})
	later := g.New(t, testcert.Options{CN: "later", NotAfter: now.Add(200 * day)})
	f.startScan(t, "s1")
	if _, err := st.Ingest(ctx, f.account, f.bot, "s1", protocol.FindingsBatch{Seq: 1, Findings: []protocol.Finding{
		finding(soon, "tls://a:443"), finding(later, "tls://b:443")}}); err != nil {
		t.Fatal(err)
	}
	fpSoon, fpLater := fingerprint(soon), fingerprint(later)

	create := []store.Schedule{
		{ID: "once", Account: f.account, Action: store.ScheduleRotate, Fingerprint: fpSoon, At: now.Add(time.Hour)},
		{ID: "future", Account: f.account, Action: store.ScheduleRecheck, Location: "tls://a:443", At: now.Add(365 * day)},
		{ID: "renew30", Account: f.account, Action: store.ScheduleRenewal, Fingerprint: fpSoon, AutoRenewDays: 30},
		{ID: "renew5", Account: f.account, Action: store.ScheduleRenewal, Fingerprint: fpSoon, AutoRenewDays: 5},
		{ID: "renew-later", Account: f.account, Action: store.ScheduleRenewal, Fingerprint: fpLater, AutoRenewDays: 30},
		// Another account's schedule on a certificate it does not have.
		{ID: "other", Account: other.account, Action: store.ScheduleRenewal, Fingerprint: fpSoon, AutoRenewDays: 30},
	}
	for _, sc := range create {
		if err := st.CreateSchedule(ctx, sc); err != nil {
			t.Fatalf("create %s: %v", sc.ID, err)
		}
	}
	for _, bad := range []store.Schedule{
		create[0], // duplicate
		{ID: "x", Account: f.account, Action: "reboot", At: now},
		{ID: "x", Account: f.account, Action: store.ScheduleRotate},
		{ID: "x", Account: f.account, Action: store.ScheduleRenewal, AutoRenewDays: 3},
		{ID: "x", Account: f.account, Action: store.ScheduleRenewal, AutoRenewDays: -1, At: now},
		{ID: "x", Account: "0000000000", Action: store.ScheduleRotate, At: now},
	} {
		if err := st.CreateSchedule(ctx, bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
	due := func() []string {
		t.Helper()
		ss, err := st.DueSchedules(ctx, clock.Now(), 0)
		if err != nil {
			t.Fatal(err)
		}
		ids := []string{}
		for _, s := range ss {
			ids = append(ids, s.ID)
		}
		return ids
	}
	// fireAll fires id from 20 goroutines at once and counts who won.
	fireAll := func(id, order, errText string) int {
		t.Helper()
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fired, err := st.FireSchedule(ctx, id, clock.Now(), order, errText)
				if err != nil {
					t.Error(err)
				}
				if fired {
					mu.Lock()
					won++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return won
	}

	steps := []struct {
		name    string
		advance time.Duration
		do      func()
		want    []string
	}{
		{"now: only the auto-renew within 30 days", 0, nil, []string{"renew30"}},
		{"the one-shot's time", time.Hour, nil, []string{"once", "renew30"}},
		{"both fired by 20 replicas", 0, func() {
			if n := fireAll("once", "order-once", ""); n != 1 {
				t.Errorf("one-shot fired %d times", n)
			}
			if n := fireAll("renew30", "order-renew", ""); n != 1 {
				t.Errorf("auto-renew fired %d times", n)
			}
		}, []string{}},
		{"within 5 days", 6 * day, nil, []string{"renew5"}},
		{"a firing that made no order is retried later", 0, func() {
			if n := fireAll("renew5", "", "bot offline"); n == 0 {
				t.Error("failed firing not recorded")
			}
		}, []string{}},
		{"retry", store.AutoRenewRetry, nil, []string{"renew5"}},
		{"renewed: moved to the new certificate", 0, func() {
			if fired, err := st.FireSchedule(ctx, "renew5", clock.Now(), "order-5", ""); err != nil || !fired {
				t.Fatalf("fire: %v, %v", fired, err)
			}
			if n, err := st.MoveSchedules(ctx, f.account, fpSoon, fpLater); err != nil || n != 2 {
				t.Fatalf("move: %d, %v", n, err)
			}
		}, []string{}},
		{"the new certificate nears expiry (within 30 days, not 5)", 175 * day, nil, []string{"renew-later", "renew30"}},
		{"canceled", 0, func() {
			for _, id := range []string{"future", "renew30", "renew5", "renew-later"} {
				if err := st.CancelSchedule(ctx, f.account, id); err != nil {
					t.Fatal(err)
				}
			}
		}, []string{}},
	}
	for _, s := range steps {
		clock.Add(s.advance)
		if s.do != nil {
			s.do()
		}
		if got := due(); fmt.Sprint(got) != fmt.Sprint(s.want) {
			t.Errorf("%s: due %v, want %v", s.name, got, s.want)
		}
	}
	for _, c := range []struct {
		name    string
		account string
		id      string
		want    error
	}{
		{"again", f.account, "renew5", nil},
		{"fired", f.account, "once", store.ErrConflict},
		{"another account's", other.account, "once", store.ErrNotFound},
	} {
		if err := st.CancelSchedule(ctx, c.account, c.id); !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("cancel %s: %v, want %v", c.name, err, c.want)
		}
	}
	if fired, err := st.FireSchedule(ctx, "renew5", clock.Now(), "o", ""); err != nil || fired {
		t.Errorf("fire a canceled schedule: %v, %v", fired, err)
	}
	if _, err := st.FireSchedule(ctx, "nope", clock.Now(), "o", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("fire unknown: %v", err)
	}
	list, err := st.Schedules(ctx, f.account)
	if err != nil || len(list) != 5 {
		t.Fatalf("schedules: %+v, %v", list, err)
	}
	byID := map[string]store.Schedule{}
	for _, s := range list {
		byID[s.ID] = s
	}
	if s := byID["once"]; s.Status != store.ScheduleFired || s.LastOrderID != "order-once" || s.LastFired == nil {
		t.Errorf("one-shot: %+v", s)
	}
	if s := byID["renew5"]; s.Status != store.ScheduleCanceled || s.LastOrderID != "order-5" || s.LastError != "" ||
		s.Fingerprint != fpLater || !s.At.IsZero() {
		t.Errorf("auto-renew: %+v", s)
	}
	if err := st.UpdateScheduleFingerprint(ctx, "renew5", fpSoon); err != nil {
		t.Error(err)
	}
	if err := st.UpdateScheduleFingerprint(ctx, "nope", fpSoon); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update unknown: %v", err)
	}
	if list, _ := st.Schedules(ctx, other.account); len(list) != 1 {
		t.Errorf("another account's schedules: %+v", list)
	}
}

// S4, S5: orders move the dashboard's provisioning counts.
func TestDashboardOrders(t *testing.T) {
	ctx := context.Background()
	st, clock := openClock(t, store.Options{})
	f := newFixture(t, st, 1)
	other := newFixture(t, st, 1)
	g := testcert.NewGenerator(t)
	var ders [][]byte
	var fs []protocol.Finding
	for i := range 4 {
		der := g.New(t, testcert.Options{CN: fmt.Sprint("c", i)})
		ders = append(ders, der)
		fs = append(fs, finding(der, fmt.Sprintf("tls://h%d:443", i)))
	}
	f.startScan(t, "s1")
	if _, err := st.Ingest(ctx, f.account, f.bot, "s1", protocol.FindingsBatch{Seq: 1, Findings: fs}); err != nil {
		t.Fatal(err)
	}
	d, err := st.Dashboard(ctx, f.account, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.CertificateCounts{Discovered: 4, NotConfigured: 4}); d.Certificates != want || d.Keys.Rotated != 0 || d.Templates.CSRs != 0 {
		t.Fatalf("before any order: %+v", d.Certificates)
	}

	// Orders on c0 (twice), c1, c2; c3 none. newFP: c3's fingerprint
	// stands for a certificate an order issued.
	type step struct {
		id, fp, status, csr, newFP string
	}
	for _, s := range []step{
		{"o1", fingerprint(ders[0]), store.OrderRotated, "CSR", fingerprint(ders[3])},
		{"o2", fingerprint(ders[0]), store.OrderFailed, "CSR", ""},
		{"o3", fingerprint(ders[1]), store.OrderOrdering, "CSR", ""},
		{"o4", fingerprint(ders[2]), store.OrderRekeyed, "CSR", ""},
		{"o5", "", store.OrderInitiated, "", ""},
		{"o6", "gone-certificate", store.OrderIssued, "CSR", ""},
		{"o7", "", store.OrderRevoked, "", ""},
		{"o8", "", store.OrderSuspended, "", ""},
		{"o9", "", store.OrderDeployed, "", ""},
	} {
		if err := st.CreateOrder(ctx, store.Order{ID: s.id, Account: f.account, Action: "rotate", Fingerprint: s.fp}, nil); err != nil {
			t.Fatal(err)
		}
		if s.status != store.OrderInitiated {
			p := store.OrderPatch{Status: &s.status, NewFingerprint: &s.newFP, CSRPEM: &s.csr}
			if _, err := st.TransitionOrder(ctx, f.account, s.id, nil, p, store.OrderEvent{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Another account's orders change nothing.
	if err := st.CreateOrder(ctx, store.Order{ID: "x", Account: other.account, Action: "rotate", Fingerprint: fingerprint(ders[3])}, nil); err != nil {
		t.Fatal(err)
	}
	d, err = st.Dashboard(ctx, f.account, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := store.CertificateCounts{Discovered: 4, Configured: 4, NotConfigured: 0, Initiated: 2, Issued: 1, Deployed: 3,
		Revoked: 1, Rotated: 1, Rekeyed: 1, Suspended: 1}
	if d.Certificates != want {
		t.Errorf("certificates:\n got %+v\nwant %+v", d.Certificates, want)
	}
	if d.Keys.Rotated != 2 || d.Templates.CSRs != 5 || d.Templates.Keystores != 0 {
		t.Errorf("keys rotated %d (want 2), CSRs %d (want 5), keystores %d (want 0)", d.Keys.Rotated, d.Templates.CSRs, d.Templates.Keystores)
	}
	if d, _ := st.Dashboard(ctx, other.account, clock.Now()); d.Certificates.Initiated != 1 || d.Certificates.Configured != 0 {
		t.Errorf("other account: %+v", d.Certificates)
	}
}

// The store's share of one rotation (P9: 10,000 locations in under 15
// minutes): the order and its job, delivery, the claim, issued, the bot's
// steps, rotated.
func BenchmarkOrderLifecycle(b *testing.B) {
	ctx := context.Background()
	st, clock := openClock(b, store.Options{})
	f := newFixture(b, st, 1)
	csr, cert := strings.Repeat("C", 1000), strings.Repeat("P", 2000)
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprint("o", i)
		if err := st.CreateOrder(ctx, rotateOrder(f, id), rotateJob("j"+id)); err != nil {
			b.Fatal(err)
		}
		if _, err := st.TakeJobs(ctx, f.bot); err != nil {
			b.Fatal(err)
		}
		now := clock.Now()
		if _, ok, err := st.ClaimOrdering(ctx, f.bot, id, csr, now, now.Add(-5*time.Minute)); err != nil || !ok {
			b.Fatal(ok, err)
		}
		if _, err := st.TransitionOrder(ctx, f.account, id, []string{store.OrderOrdering},
			store.OrderPatch{Status: ptr(store.OrderIssued), CertPEM: &cert, NewFingerprint: ptr("n" + id)}, store.OrderEvent{OK: true}); err != nil {
			b.Fatal(err)
		}
		if err := st.AddOrderEvents(ctx, f.account, id, []store.OrderEvent{{Step: "deploy", OK: true}, {Step: "verify", OK: true}}); err != nil {
			b.Fatal(err)
		}
		if _, err := st.TransitionOrder(ctx, f.account, id, []string{store.OrderIssued},
			store.OrderPatch{Status: ptr(store.OrderRotated)}, store.OrderEvent{OK: true}); err != nil {
			b.Fatal(err)
		}
		if err := st.FinishJob(ctx, f.bot, "j"+id, store.JobDone, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// The dashboard's order counts (S4, S5) over 10,000 orders of a mass
// replacement, each with its CSR and certificate.
func BenchmarkDashboardOrders10k(b *testing.B) {
	ctx := context.Background()
	st, clock := openClock(b, store.Options{})
	f := newFixture(b, st, 1)
	csr, cert := strings.Repeat("C", 1000), strings.Repeat("P", 2000)
	db := st.DB()
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	now := clock.Now().UnixMicro()
	statuses := []string{store.OrderRotated, store.OrderRekeyed, store.OrderFailed, store.OrderInitiated, store.OrderIssued}
	for i := range 10_000 {
		if _, err := tx.Exec(`INSERT INTO orders (id, account_id, bot_id, action, fingerprint, status, csr_pem, cert_pem,
			new_fingerprint, created_at, updated_at) VALUES (?, ?, ?, 'rotate', ?, ?, ?, ?, ?, ?, ?)`,
			fmt.Sprint("o", i), f.account, f.bot, fmt.Sprint("old", i), statuses[i%len(statuses)], csr, cert, fmt.Sprint("new", i),
			now, now); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		d, err := st.Dashboard(ctx, f.account, clock.Now())
		if err != nil || d.Templates.CSRs != 10_000 {
			b.Fatal(d.Templates, err)
		}
	}
}
