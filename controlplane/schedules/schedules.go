// Package schedules runs planned actions on certificates (P6): Initiate,
// Order, Rotate, Renewal and Recheck at a date and time, and auto-renew a
// chosen number of days before expiry. Every control plane replica runs a
// Runner; the store's conditional updates make each firing happen once.
package schedules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/emsign/bot/controlplane/batches"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// Store is what the runner needs: DueSchedules, the certificate (recheck
// finds the bots holding it), and ClaimSchedule and SetScheduleResult,
// which *store.SQL adds (batches_extra.go). ClaimSchedule is taken before
// the action (store.FireSchedule records after it, which would let two
// replicas both order an auto-renewal).
type Store interface {
	DueSchedules(ctx context.Context, now time.Time, limit int) ([]store.Schedule, error)
	ClaimSchedule(ctx context.Context, id string, now time.Time) (bool, error)
	SetScheduleResult(ctx context.Context, id, orderID, errText string) error
	Certificate(ctx context.Context, account, fingerprint string) (store.Certificate, error)
}

// Scanner queues a scan of one bot and wakes it (ops.ScheduledScan): the
// same path as a person's "scan now", audited as the schedule.
type Scanner interface {
	ScheduledScan(ctx context.Context, account, botID, scheduleID string) (scanID string, err error)
}

// Config is what a Runner needs.
type Config struct {
	Store   Store
	Rotator batches.Rotator
	Scanner Scanner
	Logger  *slog.Logger
	Now     func() time.Time // time.Now when nil
	// Interval between passes; 30 s when zero.
	Interval time.Duration
	// Batch bounds the schedules fired in one pass; 100 when zero.
	Batch int
}

// Runner fires due schedules.
type Runner struct {
	st       Store
	rot      batches.Rotator
	scan     Scanner
	log      *slog.Logger
	now      func() time.Time
	interval time.Duration
	batch    int
}

// New checks cfg.
func New(cfg Config) (*Runner, error) {
	if cfg.Store == nil || cfg.Rotator == nil || cfg.Scanner == nil || cfg.Logger == nil {
		return nil, errors.New("schedules: store, rotator, scanner and logger are required")
	}
	if cfg.Interval < 0 || cfg.Batch < 0 {
		return nil, errors.New("schedules: interval and batch must not be negative")
	}
	r := &Runner{st: cfg.Store, rot: cfg.Rotator, scan: cfg.Scanner, log: cfg.Logger, now: cfg.Now,
		interval: cfg.Interval, batch: cfg.Batch}
	if r.now == nil {
		r.now = time.Now
	}
	if r.interval == 0 {
		r.interval = 30 * time.Second
	}
	if r.batch == 0 {
		r.batch = 100
	}
	return r, nil
}

// Run passes every Interval until ctx ends; a failing pass is logged and
// retried at the next.
func (r *Runner) Run(ctx context.Context) error {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		if _, err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("schedule pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Pass fires the schedules due now and returns how many this runner
// fired (another replica may have fired the rest).
func (r *Runner) Pass(ctx context.Context) (int, error) {
	now := r.now().UTC()
	due, err := r.st.DueSchedules(ctx, now, r.batch)
	if err != nil {
		return 0, fmt.Errorf("schedules: due: %w", err)
	}
	n := 0
	var errs []error
	for _, s := range due {
		fired, err := r.st.ClaimSchedule(ctx, s.ID, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("schedules: fire %s: %w", s.ID, err))
			continue
		}
		if !fired {
			continue
		}
		n++
		orderID, actErr := r.act(ctx, s)
		errText := ""
		if actErr != nil {
			errText = actErr.Error()
			r.log.Warn("schedule fired with an error", "account", s.Account, "schedule", s.ID, "action", s.Action,
				"err", actErr)
		} else {
			r.log.Info("schedule fired", "account", s.Account, "schedule", s.ID, "action", s.Action, "order", orderID)
		}
		if err := r.st.SetScheduleResult(context.WithoutCancel(ctx), s.ID, orderID, errText); err != nil {
			errs = append(errs, fmt.Errorf("schedules: result of %s: %w", s.ID, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return n, errors.Join(errs...)
}

// act does the schedule's action and returns the order made ("" for a
// recheck, which queues scans).
func (r *Runner) act(ctx context.Context, s store.Schedule) (string, error) {
	var action string
	switch s.Action {
	case store.ScheduleRotate, store.ScheduleInitiate:
		action = protocol.ActionRotate
	case store.ScheduleOrder, store.ScheduleRenewal:
		action = protocol.ActionRenew
	case store.ScheduleRecheck:
		return r.recheck(ctx, s)
	default:
		return "", fmt.Errorf("unknown action %q", s.Action)
	}
	o, err := r.rot.Rotate(ctx, s.Account, batches.RotateRequest{Fingerprint: s.Fingerprint, Location: s.Location,
		Action: action, TemplateID: s.TemplateID, CreatedBy: s.CreatedBy})
	if err != nil {
		return "", err
	}
	return o.ID, nil
}

// recheck scans again the bots holding the certificate (the one holding
// Location, when set).
func (r *Runner) recheck(ctx context.Context, s store.Schedule) (string, error) {
	c, err := r.st.Certificate(ctx, s.Account, s.Fingerprint)
	if err != nil {
		return "", fmt.Errorf("certificate %s: %w", s.Fingerprint, err)
	}
	seen := map[string]bool{}
	var errs []error
	for _, l := range c.Locations {
		if !l.Present || l.BotID == "" || seen[l.BotID] || (s.Location != "" && l.URI != s.Location) {
			continue
		}
		seen[l.BotID] = true
		if _, err := r.scan.ScheduledScan(ctx, s.Account, l.BotID, s.ID); err != nil {
			errs = append(errs, fmt.Errorf("bot %s: %w", l.BotID, err))
		}
	}
	if len(seen) == 0 {
		return "", errors.New("no bot holds the certificate there now")
	}
	return "", errors.Join(errs...)
}
