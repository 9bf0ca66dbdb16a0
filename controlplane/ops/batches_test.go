package ops_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/internal/testcert"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

const badIssuer = "Distrusted Intermediate CA"

// activeBot makes an activated bot holding n certificates of badIssuer in
// PEM files, and returns it with their fingerprints.
func (e *env) activeBot(name string, n int) (string, []string) {
	e.t.Helper()
	id, token, err := admin.CreateBot(e.ctx, e.st, e.account, name, "")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.ActivateBot(e.ctx, e.account, id, admin.Hash(token), store.Activation{Hostname: name, CertSerial: "0" + name,
		Capability: 2}); err != nil {
		e.t.Fatal(err)
	}
	g := testcert.NewGenerator(e.t)
	var fs []protocol.Finding
	for i := range n {
		der := g.New(e.t, testcert.Options{CN: fmt.Sprintf("%s-%d.example.com", name, i), Issuer: badIssuer})
		l, err := protocol.ParseLocation(fmt.Sprintf("file:///etc/ssl/%s-%d.pem#0", name, i))
		if err != nil {
			e.t.Fatal(err)
		}
		fs = append(fs, protocol.Finding{Location: l, Source: "file", Format: "pem", Chain: [][]byte{der}, SeenAt: e.now})
	}
	scan := admin.NewID()
	if err := e.st.StartScan(e.ctx, e.account, id, protocol.ScanStart{ScanID: scan, Trigger: "schedule"}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.st.Ingest(e.ctx, e.account, id, scan, protocol.FindingsBatch{Seq: 1, Findings: fs}); err != nil {
		e.t.Fatal(err)
	}
	certs, _, err := e.st.Certificates(e.ctx, e.account, store.CertificateFilter{BotID: id})
	if err != nil {
		e.t.Fatal(err)
	}
	var fps []string
	for _, c := range certs {
		fps = append(fps, c.Fingerprint)
	}
	return id, fps
}

func TestBatchValidation(t *testing.T) {
	e := newEnv(t)
	e.activeBot("web", 3)
	good := func() ops.BatchRequest {
		return ops.BatchRequest{Name: "distrust", Filter: ops.BatchFilter{Issuer: badIssuer}, WaveSize: 2}
	}
	tests := []struct {
		name  string
		edit  func(*ops.BatchRequest)
		field string
	}{
		{"no name", func(r *ops.BatchRequest) { r.Name = "  " }, "name"},
		{"long name", func(r *ops.BatchRequest) { r.Name = strings.Repeat("x", 201) }, "name"},
		{"empty filter", func(r *ops.BatchRequest) { r.Filter = ops.BatchFilter{} }, "filter"},
		{"bad type", func(r *ops.BatchRequest) { r.Filter.Type = "root" }, "filter.type"},
		{"wave too big", func(r *ops.BatchRequest) { r.WaveSize = 1001 }, "wave_size"},
		{"negative wave", func(r *ops.BatchRequest) { r.WaveSize = -1 }, "wave_size"},
		{"negative failures", func(r *ops.BatchRequest) { r.MaxFailures = -1 }, "max_failures"},
		{"renew", func(r *ops.BatchRequest) { r.Action = protocol.ActionRenew }, "action"},
		{"unknown template", func(r *ops.BatchRequest) { r.TemplateID = "nope" }, "template_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := good()
			tt.edit(&req)
			if _, err := e.o.PlanBatch(e.ctx, e.cli(), req); !isInvalid(err, tt.field) {
				t.Fatalf("error %v, want one naming %s", err, tt.field)
			}
		})
	}
}

// P9 through ops: plan, start, stop; roles and audit entries.
func TestBatchLifecycle(t *testing.T) {
	e := newEnv(t)
	e.activeBot("web", 5)
	woken := 0
	e.o.SetBatches(nil, func() { woken++ })

	if _, err := e.o.PlanBatch(e.ctx, e.key(rbac.StandardUser), ops.BatchRequest{Name: "x", Filter: ops.BatchFilter{Issuer: "x"}}); !errors.Is(err, ops.ErrForbidden) {
		t.Fatalf("standard user planned: %v", err)
	}
	if l := e.last(); l.Action != ops.ActionDenied || !strings.Contains(l.Detail, "batch.plan") {
		t.Fatalf("refusal audited as %+v", l)
	}
	mgr := e.key(rbac.Manager)
	b, err := e.o.PlanBatch(e.ctx, mgr, ops.BatchRequest{Name: " distrust ", Filter: ops.BatchFilter{Issuer: "distrusted"}, WaveSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != "distrust" || b.Status != store.BatchPlanned || b.Action != protocol.ActionRotate || b.Counts.Pending != 5 ||
		b.CreatedBy != mgr.Name || !strings.Contains(b.Filter, `"issuer":"distrusted"`) {
		t.Fatalf("batch %+v", b)
	}
	if l := e.last(); l.Action != "batch.plan" || l.Object != b.ID || !strings.Contains(l.Detail, "5 locations") {
		t.Fatalf("plan audited as %+v", l)
	}
	// Reads: a finance manager sees it; another account does not.
	if got, err := e.o.Batch(e.ctx, e.key(rbac.FinanceManager), b.ID); err != nil || got.ID != b.ID {
		t.Fatalf("batch read %v", err)
	}
	if _, err := e.o.Batch(e.ctx, e.otherAccount(), b.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other account: %v", err)
	}
	if _, err := e.o.BatchItems(e.ctx, mgr, b.ID, "lost", 10, 0); !isInvalid(err, "state") {
		t.Fatalf("bad state: %v", err)
	}

	if _, err := e.o.StartBatch(e.ctx, e.key(rbac.BasicUser), b.ID); !errors.Is(err, ops.ErrForbidden) {
		t.Fatalf("basic user started: %v", err)
	}
	got, err := e.o.StartBatch(e.ctx, mgr, b.ID)
	if err != nil || got.Status != store.BatchRunning || woken != 1 {
		t.Fatalf("start: %+v %v, woken %d", got, err, woken)
	}
	if _, err := e.o.StartBatch(e.ctx, mgr, b.ID); !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "running") {
		t.Fatalf("second start: %v", err)
	}
	got, err = e.o.StopBatch(e.ctx, mgr, b.ID)
	if err != nil || got.Status != store.BatchStopping || got.Counts.Skipped != 5 || woken != 2 {
		t.Fatalf("stop: %+v %v", got, err)
	}
	items, err := e.o.BatchItems(e.ctx, mgr, b.ID, store.ItemSkipped, 10, 0)
	if err != nil || len(items) != 5 || items[0].Error != "stopped by "+mgr.Name {
		t.Fatalf("skipped items %+v %v", items, err)
	}
	if l := e.last(); l.Action != "batch.stop" || l.Object != b.ID || !strings.Contains(l.Detail, "5 pending") {
		t.Fatalf("stop audited as %+v", l)
	}
	if _, err := e.o.StopBatch(e.ctx, mgr, b.ID); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second stop: %v", err)
	}

	// A plan stopped before it starts is stopped at once.
	b2, err := e.o.PlanBatch(e.ctx, mgr, ops.BatchRequest{Name: "again", Filter: ops.BatchFilter{Q: "web-1"}})
	if err != nil || b2.WaveSize != 10 || b2.Counts.Total != 1 {
		t.Fatalf("second plan %+v %v", b2, err)
	}
	if got, err := e.o.StopBatch(e.ctx, mgr, b2.ID); err != nil || got.Status != store.BatchStopped || got.FinishedAt == nil {
		t.Fatalf("stop planned: %+v %v", got, err)
	}
	list, err := e.o.Batches(e.ctx, e.key(rbac.StandardUser))
	if err != nil || len(list) != 2 {
		t.Fatalf("batches %d %v", len(list), err)
	}
	rep, err := e.o.BatchReport(e.ctx, mgr, b.ID)
	if err != nil || len(rep.Items) != 5 || len(rep.Waves) != 3 {
		t.Fatalf("report %+v %v", rep, err)
	}
}

// P6 through ops: validation, create, list, cancel.
func TestSchedules(t *testing.T) {
	e := newEnv(t)
	_, fps := e.activeBot("web", 1)
	fp := fps[0]
	at := e.now.Add(24 * time.Hour)
	tests := []struct {
		name  string
		req   ops.ScheduleRequest
		field string
	}{
		{"no action", ops.ScheduleRequest{Fingerprint: fp, At: at}, "action"},
		{"bad action", ops.ScheduleRequest{Action: "revoke", Fingerprint: fp, At: at}, "action"},
		{"bad fingerprint", ops.ScheduleRequest{Action: "rotate", Fingerprint: "abc", At: at}, "fingerprint"},
		{"unknown certificate", ops.ScheduleRequest{Action: "rotate", Fingerprint: strings.Repeat("ab", 32), At: at}, "fingerprint"},
		{"no time", ops.ScheduleRequest{Action: "rotate", Fingerprint: fp}, "at"},
		{"past", ops.ScheduleRequest{Action: "rotate", Fingerprint: fp, At: e.now.Add(-time.Hour)}, "at"},
		{"both", ops.ScheduleRequest{Action: "renewal", Fingerprint: fp, At: at, AutoRenewDays: 30}, "at"},
		{"too many days", ops.ScheduleRequest{Action: "renewal", Fingerprint: fp, AutoRenewDays: 366}, "auto_renew_days"},
		{"unknown location", ops.ScheduleRequest{Action: "rotate", Fingerprint: fp, At: at, Location: "file:///nope"}, "location"},
		{"unknown template", ops.ScheduleRequest{Action: "rotate", Fingerprint: fp, At: at, TemplateID: "nope"}, "template_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := e.o.CreateSchedule(e.ctx, e.cli(), tt.req); !isInvalid(err, tt.field) {
				t.Fatalf("error %v, want one naming %s", err, tt.field)
			}
		})
	}
	if _, err := e.o.CreateSchedule(e.ctx, e.key(rbac.DiscoveryUser), ops.ScheduleRequest{Action: "rotate", Fingerprint: fp, At: at}); !errors.Is(err, ops.ErrForbidden) {
		t.Fatalf("discovery user scheduled: %v", err)
	}
	s, err := e.o.CreateSchedule(e.ctx, e.cli(), ops.ScheduleRequest{Action: "rotate", Fingerprint: strings.ToUpper(fp), At: at})
	if err != nil || s.Fingerprint != fp || s.Status != store.SchedulePending || !s.At.Equal(at) {
		t.Fatalf("schedule %+v %v", s, err)
	}
	if l := e.last(); l.Action != "schedule.create" || l.Object != s.ID || !strings.Contains(l.Detail, "rotate of "+fp) {
		t.Fatalf("audited as %+v", l)
	}
	auto, err := e.o.CreateSchedule(e.ctx, e.cli(), ops.ScheduleRequest{Action: "renewal", Fingerprint: fp, AutoRenewDays: 30})
	if err != nil || auto.AutoRenewDays != 30 || !auto.At.IsZero() {
		t.Fatalf("auto-renew %+v %v", auto, err)
	}
	if _, err := e.o.Schedules(e.ctx, e.key(rbac.BasicUser)); !errors.Is(err, ops.ErrForbidden) {
		t.Fatalf("basic user listed schedules: %v", err)
	}
	list, err := e.o.Schedules(e.ctx, e.key(rbac.StandardUser))
	if err != nil || len(list) != 2 {
		t.Fatalf("schedules %+v %v", list, err)
	}
	if err := e.o.CancelSchedule(e.ctx, e.cli(), s.ID); err != nil {
		t.Fatal(err)
	}
	if l := e.last(); l.Action != "schedule.cancel" || l.Object != s.ID {
		t.Fatalf("cancel audited as %+v", l)
	}
	if err := e.o.CancelSchedule(e.ctx, e.otherAccount(), auto.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other account canceled: %v", err)
	}
}

// P6 recheck: the scheduler's scan is queued, wakes the bot, and is
// audited as the schedule's.
func TestScheduledScan(t *testing.T) {
	e := newEnv(t)
	bot, _ := e.activeBot("web", 1)
	pending := e.bot("new")
	if _, err := e.o.ScheduledScan(e.ctx, e.account, pending, "s1"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("scan of a bot not active: %v", err)
	}
	ch, cancel := e.o.Notifier().Subscribe(bot)
	defer cancel()
	id, err := e.o.ScheduledScan(e.ctx, e.account, bot, "s1")
	if err != nil || id == "" {
		t.Fatalf("scan %q %v", id, err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("bot not woken")
	}
	if l := e.last(); l.Action != "bot.scan" || l.ActorKind != ops.ActorSchedule || l.Actor != "schedule s1" || l.Object != bot {
		t.Fatalf("audited as %+v", l)
	}
}
