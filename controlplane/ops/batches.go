package ops

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/batches"
	"github.com/emsign/bot/controlplane/ordering"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// Mass replacement (P9) and schedules (P6). Reads need orders.view,
// changes orders.manage.
//
//   PlanBatch(ctx, a, BatchRequest) (store.Batch, error)   // dry run: stored as planned
//   StartBatch(ctx, a, id) (store.Batch, error)            // planned → running
//   StopBatch(ctx, a, id) (store.Batch, error)             // running → stopping (pending items skipped); planned → stopped
//   Batches, Batch, BatchItems, BatchReport                 // reads
//   CreateSchedule(ctx, a, ScheduleRequest) (store.Schedule, error)
//   Schedules(ctx, a) ([]store.Schedule, error)
//   CancelSchedule(ctx, a, id) error
//   ScheduledScan(ctx, account, botID, scheduleID) (scanID, error) // for the scheduler: a recheck

// ActorSchedule is the actor kind of what a schedule does on its own.
const ActorSchedule = "schedule"

// SetBatches gives Ops the planner and the batch runner's Wake. Without
// it, Ops plans with the ordering service's Deployable (the batches
// package's own rule when ordering is off) and the runner notices a start
// or a stop within its interval.
func (o *Ops) SetBatches(p *batches.Planner, wake func()) {
	o.batchPlanner, o.batchWake = p, wake
}

// BatchRotator is the ordering service as the batch runner and the
// scheduler call it (batches.Rotator). Their orders are not audited one by
// one: the batch's plan and start are, and each order names the batch
// (BatchID) and who made it (CreatedBy).
func (o *Ops) BatchRotator() batches.Rotator {
	return batches.RotatorFunc(func(ctx context.Context, account string, r batches.RotateRequest) (store.Order, error) {
		if o.order == nil {
			return store.Order{}, ErrOrderingOff
		}
		return o.order.Rotate(ctx, account, ordering.RotateRequest{Fingerprint: r.Fingerprint, Location: r.Location, BotID: r.BotID,
			Action: r.Action, TemplateID: r.TemplateID, BatchID: r.BatchID, CreatedBy: r.CreatedBy})
	})
}

// BatchFilter is a certificate search as the certificates API takes it
// (the same query parameter names).
type BatchFilter struct {
	Q             string     `json:"q,omitempty"`
	Issuer        string     `json:"issuer,omitempty"`
	Source        string     `json:"source,omitempty"`
	Bot           string     `json:"bot,omitempty"`
	Location      string     `json:"location,omitempty"`
	Type          string     `json:"type,omitempty"`
	ExpiresBefore *time.Time `json:"expires_before,omitempty"`
	ExpiresAfter  *time.Time `json:"expires_after,omitempty"`
}

// CertificateFilter is the store's form of f.
func (f BatchFilter) CertificateFilter() store.CertificateFilter {
	cf := store.CertificateFilter{Q: f.Q, Issuer: f.Issuer, Source: f.Source, BotID: f.Bot, Location: f.Location, Type: f.Type}
	if f.ExpiresBefore != nil {
		cf.ExpiresBefore = *f.ExpiresBefore
	}
	if f.ExpiresAfter != nil {
		cf.ExpiresAfter = *f.ExpiresAfter
	}
	return cf
}

func (f BatchFilter) empty() bool {
	return f.Q == "" && f.Issuer == "" && f.Source == "" && f.Bot == "" && f.Location == "" && f.Type == "" &&
		f.ExpiresBefore == nil && f.ExpiresAfter == nil
}

// BatchRequest is a mass replacement to plan (P9).
type BatchRequest struct {
	Name   string      `json:"name"`
	Filter BatchFilter `json:"filter"`
	// TemplateID is the provisioning template ("" the account's default
	// when each order is made).
	TemplateID string `json:"template_id"`
	// Action is rotate (the default) or rekey.
	Action string `json:"action"`
	// WaveSize is how many orders run at once: 1..1000, 10 when 0.
	WaveSize int `json:"wave_size"`
	// MaxFailures stops the batch once this many orders failed (0 never).
	MaxFailures int `json:"max_failures"`
}

// PlanBatch stores a dry-run plan of every deployable location the filter
// matches (P9); nothing is ordered until StartBatch.
func (o *Ops) PlanBatch(ctx context.Context, a Actor, req BatchRequest) (store.Batch, error) {
	if err := o.allow(ctx, a, rbac.ManageOrders, "batch.plan", ""); err != nil {
		return store.Batch{}, err
	}
	req.Name = strings.TrimSpace(req.Name)
	switch {
	case req.Name == "":
		return store.Batch{}, invalid("name", "required")
	case len(req.Name) > maxNameLen:
		return store.Batch{}, invalid("name", "at most %d characters", maxNameLen)
	case req.Filter.empty():
		return store.Batch{}, invalid("filter", "empty: it would replace every certificate; give at least one of q, issuer, source, bot, location, type, expires_before, expires_after")
	case req.Filter.Type != "" && req.Filter.Type != "ca" && req.Filter.Type != "leaf":
		return store.Batch{}, invalid("filter.type", "want ca or leaf")
	case req.WaveSize < 0 || req.WaveSize > batches.MaxWaveSize:
		return store.Batch{}, invalid("wave_size", "want 1..%d (0 for %d)", batches.MaxWaveSize, batches.DefaultWaveSize)
	case req.MaxFailures < 0:
		return store.Batch{}, invalid("max_failures", "want 0 (never stop) or more")
	}
	if req.Action == "" {
		req.Action = protocol.ActionRotate
	}
	if req.Action != protocol.ActionRotate && req.Action != protocol.ActionRekey {
		return store.Batch{}, invalid("action", "want %s or %s", protocol.ActionRotate, protocol.ActionRekey)
	}
	if req.WaveSize == 0 {
		req.WaveSize = batches.DefaultWaveSize
	}
	if req.TemplateID != "" {
		t, err := o.st.ProvisioningTemplate(ctx, a.Account, req.TemplateID)
		if errors.Is(err, store.ErrNotFound) {
			return store.Batch{}, invalid("template_id", "no such provisioning template")
		}
		if err != nil {
			return store.Batch{}, err
		}
		if !t.Enabled {
			return store.Batch{}, invalid("template_id", "provisioning template %q is disabled", t.Name)
		}
	}
	fj, err := json.Marshal(req.Filter)
	if err != nil {
		return store.Batch{}, fmt.Errorf("batch filter: %w", err)
	}
	p := o.batchPlanner
	if p == nil {
		// *store.SQL has what a plan needs beyond store.Store.
		ps, ok := o.st.(batches.PlanStore)
		if !ok {
			return store.Batch{}, errors.New("batches: the store cannot plan batches")
		}
		cfg := batches.PlannerConfig{Store: ps, NewID: admin.NewID, Now: o.now}
		if o.order != nil {
			cfg.Deployable = o.order.Deployable
		}
		if p, err = batches.NewPlanner(cfg); err != nil {
			return store.Batch{}, err
		}
	}
	b, _, err := p.Plan(ctx, a.Account, batches.PlanRequest{Name: req.Name, Filter: req.Filter.CertificateFilter(),
		FilterJSON: string(fj), TemplateID: req.TemplateID, Action: req.Action, WaveSize: req.WaveSize,
		MaxFailures: req.MaxFailures, CreatedBy: a.Name})
	if errors.Is(err, batches.ErrTooMany) {
		return store.Batch{}, invalid("filter", "%s", batches.ErrTooMany.Error())
	}
	if err != nil {
		return store.Batch{}, err
	}
	o.audit(ctx, a, "batch.plan", b.ID, fmt.Sprintf("name %q, filter %s, action %s, wave size %d, max failures %d: %d locations, %d skipped",
		b.Name, fj, b.Action, b.WaveSize, b.MaxFailures, b.Counts.Total, b.Counts.Skipped))
	return b, nil
}

// StartBatch starts a planned batch: the runner orders its first wave.
func (o *Ops) StartBatch(ctx context.Context, a Actor, id string) (store.Batch, error) {
	if err := o.allow(ctx, a, rbac.ManageOrders, "batch.start", id); err != nil {
		return store.Batch{}, err
	}
	err := o.st.SetBatchStatus(ctx, a.Account, id, []string{store.BatchPlanned}, store.BatchRunning, o.now().UTC())
	if errors.Is(err, store.ErrConflict) {
		return store.Batch{}, o.batchConflict(ctx, a, id, "start", err)
	}
	if err != nil {
		return store.Batch{}, err
	}
	o.wakeBatches()
	o.audit(ctx, a, "batch.start", id, "started")
	return o.st.Batch(ctx, a.Account, id)
}

// StopBatch presses stop: no new wave starts, the pending items are
// skipped naming who stopped, and orders under way finish (stopping, then
// stopped). A planned batch is stopped at once.
func (o *Ops) StopBatch(ctx context.Context, a Actor, id string) (store.Batch, error) {
	if err := o.allow(ctx, a, rbac.ManageOrders, "batch.stop", id); err != nil {
		return store.Batch{}, err
	}
	b, err := o.st.Batch(ctx, a.Account, id)
	if err != nil {
		return store.Batch{}, err
	}
	to := store.BatchStopping
	if b.Status == store.BatchPlanned {
		to = store.BatchStopped
	}
	err = o.st.SetBatchStatus(ctx, a.Account, id, []string{store.BatchPlanned, store.BatchRunning}, to, o.now().UTC())
	if errors.Is(err, store.ErrConflict) {
		return store.Batch{}, o.batchConflict(ctx, a, id, "stop", err)
	}
	if err != nil {
		return store.Batch{}, err
	}
	skipped := 0
	if sk, ok := o.st.(interface {
		SkipPendingBatchItems(ctx context.Context, batchID, reason string) (int, error)
	}); ok {
		// The runner skips what is left too; doing it here names who.
		if skipped, err = sk.SkipPendingBatchItems(ctx, id, "stopped by "+a.Name); err != nil {
			return store.Batch{}, err
		}
	}
	o.wakeBatches()
	o.audit(ctx, a, "batch.stop", id, fmt.Sprintf("%s: %d pending locations skipped", to, skipped))
	return o.st.Batch(ctx, a.Account, id)
}

// batchConflict words a start or stop the batch's status refuses.
func (o *Ops) batchConflict(ctx context.Context, a Actor, id, verb string, err error) error {
	b, gerr := o.st.Batch(ctx, a.Account, id)
	if gerr != nil {
		return gerr
	}
	return fmt.Errorf("batch is %s: it cannot %s: %w", b.Status, verb, store.ErrConflict)
}

func (o *Ops) wakeBatches() {
	if o.batchWake != nil {
		o.batchWake()
	}
}

// Batches lists the account's batches.
func (o *Ops) Batches(ctx context.Context, a Actor) ([]store.Batch, error) {
	if err := o.allow(ctx, a, rbac.ViewOrders, "batch.list", ""); err != nil {
		return nil, err
	}
	return o.st.Batches(ctx, a.Account)
}

// Batch reads one batch with its counts.
func (o *Ops) Batch(ctx context.Context, a Actor, id string) (store.Batch, error) {
	if err := o.allow(ctx, a, rbac.ViewOrders, "batch.view", id); err != nil {
		return store.Batch{}, err
	}
	return o.st.Batch(ctx, a.Account, id)
}

// BatchItems lists a batch's items by Seq, in one state when state is
// not "". A claim marker (an order being made) reads as no order.
func (o *Ops) BatchItems(ctx context.Context, a Actor, id, state string, limit, offset int) ([]store.BatchItem, error) {
	if err := o.allow(ctx, a, rbac.ViewOrders, "batch.view", id); err != nil {
		return nil, err
	}
	states := []string{store.ItemPending, store.ItemOrdered, store.ItemDone, store.ItemFailed, store.ItemSkipped}
	if state != "" && !slices.Contains(states, state) {
		return nil, invalid("state", "want one of %s", strings.Join(states, ", "))
	}
	var items []store.BatchItem
	var err error
	if state == "" {
		items, err = o.st.BatchItems(ctx, a.Account, id, limit, offset)
	} else {
		byState, ok := o.st.(interface {
			BatchItemsInState(ctx context.Context, batchID, state string, limit, offset int) ([]store.BatchItem, error)
		})
		if !ok {
			return nil, errors.New("batch items: the store cannot filter by state")
		}
		if _, err := o.st.Batch(ctx, a.Account, id); err != nil {
			return nil, err // another account's batch is not found
		}
		items, err = byState.BatchItemsInState(ctx, id, state, limit, offset)
	}
	if err != nil {
		return nil, err
	}
	for i := range items {
		if batches.IsClaim(items[i].OrderID) {
			items[i].OrderID = ""
		}
	}
	return items, nil
}

// BatchReport is the batch's report (P9).
func (o *Ops) BatchReport(ctx context.Context, a Actor, id string) (batches.Report, error) {
	if err := o.allow(ctx, a, rbac.ViewOrders, "batch.view", id); err != nil {
		return batches.Report{}, err
	}
	return batches.BuildReport(ctx, o.st, a.Account, id)
}

// ScheduleRequest is an action planned on a certificate (P6).
type ScheduleRequest struct {
	// Action: initiate, order, rotate, renewal, recheck.
	Action      string `json:"action"`
	Fingerprint string `json:"fingerprint"`
	// Location is the location URI ("" the only deployable one; for a
	// recheck, every bot holding the certificate).
	Location   string `json:"location"`
	TemplateID string `json:"template_id"`
	// At is when a one-shot schedule fires; zero with AutoRenewDays.
	At time.Time `json:"at"`
	// AutoRenewDays fires the action whenever the certificate comes
	// within that many days of expiry (1..365), once per certificate.
	AutoRenewDays int `json:"auto_renew_days"`
}

// Limits of a schedule.
const maxAutoRenewDays = 365

// CreateSchedule plans an action (P6).
func (o *Ops) CreateSchedule(ctx context.Context, a Actor, req ScheduleRequest) (store.Schedule, error) {
	if err := o.allow(ctx, a, rbac.ManageOrders, "schedule.create", req.Fingerprint); err != nil {
		return store.Schedule{}, err
	}
	actions := []string{store.ScheduleInitiate, store.ScheduleOrder, store.ScheduleRotate, store.ScheduleRenewal,
		store.ScheduleRecheck}
	fp := strings.ToLower(strings.TrimSpace(req.Fingerprint))
	now := o.now().UTC()
	switch {
	case !slices.Contains(actions, req.Action):
		return store.Schedule{}, invalid("action", "want one of %s", strings.Join(actions, ", "))
	case !isFingerprint(fp):
		return store.Schedule{}, invalid("fingerprint", "want 64 hex digits (SHA-256)")
	case req.AutoRenewDays < 0 || req.AutoRenewDays > maxAutoRenewDays:
		return store.Schedule{}, invalid("auto_renew_days", "want 1..%d (0 for a one-shot schedule)", maxAutoRenewDays)
	case req.AutoRenewDays == 0 && req.At.IsZero():
		return store.Schedule{}, invalid("at", "required (an RFC 3339 time) unless auto_renew_days is set")
	case req.AutoRenewDays > 0 && !req.At.IsZero():
		return store.Schedule{}, invalid("at", "give either at or auto_renew_days, not both")
	case req.AutoRenewDays == 0 && req.At.Before(now.Add(-time.Minute)):
		return store.Schedule{}, invalid("at", "in the past")
	}
	c, err := o.st.Certificate(ctx, a.Account, fp)
	if errors.Is(err, store.ErrNotFound) {
		return store.Schedule{}, invalid("fingerprint", "no such certificate")
	}
	if err != nil {
		return store.Schedule{}, err
	}
	if req.Location != "" && !slices.ContainsFunc(c.Locations, func(l store.Location) bool { return l.URI == req.Location }) {
		return store.Schedule{}, invalid("location", "the certificate has no location %s", req.Location)
	}
	if req.TemplateID != "" {
		if _, err := o.st.ProvisioningTemplate(ctx, a.Account, req.TemplateID); errors.Is(err, store.ErrNotFound) {
			return store.Schedule{}, invalid("template_id", "no such provisioning template")
		} else if err != nil {
			return store.Schedule{}, err
		}
	}
	s := store.Schedule{ID: admin.NewID(), Account: a.Account, Action: req.Action, Fingerprint: fp, Location: req.Location,
		TemplateID: req.TemplateID, At: req.At.UTC(), AutoRenewDays: req.AutoRenewDays, Status: store.SchedulePending,
		CreatedBy: a.Name, CreatedAt: now}
	if req.AutoRenewDays > 0 {
		s.At = time.Time{}
	}
	if err := o.st.CreateSchedule(ctx, s); err != nil {
		return store.Schedule{}, err
	}
	when := "at " + s.At.Format(time.RFC3339)
	if s.AutoRenewDays > 0 {
		when = fmt.Sprintf("%d days before expiry", s.AutoRenewDays)
	}
	o.audit(ctx, a, "schedule.create", s.ID, fmt.Sprintf("%s of %s %s", s.Action, fp, when))
	return s, nil
}

// Schedules lists the account's schedules.
func (o *Ops) Schedules(ctx context.Context, a Actor) ([]store.Schedule, error) {
	if err := o.allow(ctx, a, rbac.ViewOrders, "schedule.list", ""); err != nil {
		return nil, err
	}
	return o.st.Schedules(ctx, a.Account)
}

// CancelSchedule cancels a pending schedule.
func (o *Ops) CancelSchedule(ctx context.Context, a Actor, id string) error {
	if err := o.allow(ctx, a, rbac.ManageOrders, "schedule.cancel", id); err != nil {
		return err
	}
	if err := o.st.CancelSchedule(ctx, a.Account, id); err != nil {
		return err
	}
	o.audit(ctx, a, "schedule.cancel", id, "canceled")
	return nil
}

// ScheduledScan queues a scan of a bot for a recheck schedule (P6) and
// wakes the bot, as RunScan does for a person; the audit entry names the
// schedule.
func (o *Ops) ScheduledScan(ctx context.Context, account, botID, scheduleID string) (string, error) {
	b, err := o.st.Bot(ctx, account, botID)
	if err != nil {
		return "", err
	}
	if b.Status != protocol.BotActive {
		return "", fmt.Errorf("bot is %s: it cannot scan: %w", b.Status, store.ErrConflict)
	}
	scanID := admin.NewID()
	if err := o.st.QueueScan(ctx, account, b.ID, scanID, admin.NewID()); err != nil {
		return "", err
	}
	o.notify.Notify(b.ID)
	o.audit(ctx, Actor{Account: account, Kind: ActorSchedule, ID: scheduleID, Name: "schedule " + scheduleID},
		"bot.scan", b.ID, "scan "+scanID+" (recheck)")
	return scanID, nil
}

func isFingerprint(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32
}
