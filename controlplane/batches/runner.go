package batches

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/emsign/bot/controlplane/store"
)

// RotateRequest is one rotation a batch or a schedule asks for: the fields
// of the ordering service's request that they set.
type RotateRequest struct {
	Fingerprint string
	Location    string
	// BotID is the bot holding Location: one path (/etc/nginx/tls.pem)
	// may hold one certificate on several hosts.
	BotID      string
	Action     string
	TemplateID string
	BatchID    string
	CreatedBy  string
}

// Rotator orders one rotation (the ordering service, through an adapter
// the caller writes, so that this package does not import it).
type Rotator interface {
	Rotate(ctx context.Context, account string, req RotateRequest) (store.Order, error)
}

// RotatorFunc adapts a function to Rotator.
type RotatorFunc func(ctx context.Context, account string, req RotateRequest) (store.Order, error)

// Rotate calls f.
func (f RotatorFunc) Rotate(ctx context.Context, account string, req RotateRequest) (store.Order, error) {
	return f(ctx, account, req)
}

// RunStore is what the runner needs of the store: the contract's batch
// methods and the claim methods *store.SQL adds (batches_extra.go).
type RunStore interface {
	Batch(ctx context.Context, account, id string) (store.Batch, error)
	RunningBatches(ctx context.Context) ([]store.Batch, error)
	SetBatchStatus(ctx context.Context, account, id string, from []string, to string, now time.Time) error
	SetBatchItem(ctx context.Context, batchID string, seq int, orderID, state, errText string) error
	Order(ctx context.Context, account, id string) (store.Order, error)
	Orders(ctx context.Context, account string, f store.OrderFilter) ([]store.Order, error)
	BatchItemsInState(ctx context.Context, batchID, state string, limit, offset int) ([]store.BatchItem, error)
	ClaimBatchWave(ctx context.Context, batchID string, wave int, claim string) ([]store.BatchItem, error)
	ReleaseBatchItem(ctx context.Context, batchID string, seq int, claim string) (bool, error)
	SkipPendingBatchItems(ctx context.Context, batchID, reason string) (int, error)
}

// RunnerConfig is what a Runner needs.
type RunnerConfig struct {
	Store   RunStore
	Rotator Rotator
	Logger  *slog.Logger
	Now     func() time.Time // time.Now when nil
	// Interval between passes; 1 s when zero. Wake starts one at once.
	Interval time.Duration
	// ClaimStale is how old a claim without an order may get before it is
	// taken as left by a replica that died while ordering (the order is
	// adopted if it was made, else the item is pending again); 5 min when
	// zero.
	ClaimStale time.Duration
}

// Runner orders the waves of running batches.
type Runner struct {
	st         RunStore
	rot        Rotator
	log        *slog.Logger
	now        func() time.Time
	interval   time.Duration
	claimStale time.Duration
	id         string
	wake       chan struct{}
}

// NewRunner checks cfg.
func NewRunner(cfg RunnerConfig) (*Runner, error) {
	if cfg.Store == nil || cfg.Rotator == nil || cfg.Logger == nil {
		return nil, errors.New("batches: runner store, rotator and logger are required")
	}
	if cfg.Interval < 0 || cfg.ClaimStale < 0 {
		return nil, errors.New("batches: runner interval and claim stale must not be negative")
	}
	r := &Runner{st: cfg.Store, rot: cfg.Rotator, log: cfg.Logger, now: cfg.Now, interval: cfg.Interval,
		claimStale: cfg.ClaimStale, wake: make(chan struct{}, 1)}
	if r.now == nil {
		r.now = time.Now
	}
	if r.interval == 0 {
		r.interval = time.Second
	}
	if r.claimStale == 0 {
		r.claimStale = 5 * time.Minute
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	r.id = hex.EncodeToString(b[:])
	return r, nil
}

// Wake makes the runner pass at once (a batch started or stopped, an
// order finished). It never blocks.
func (r *Runner) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run passes over the running batches every Interval, or when woken,
// until ctx ends. A failing pass is logged and retried at the next one.
func (r *Runner) Run(ctx context.Context) error {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		if err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("batch runner pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.wake:
		}
	}
}

// Pass does one round over every running or stopping batch.
func (r *Runner) Pass(ctx context.Context) error {
	bs, err := r.st.RunningBatches(ctx)
	if err != nil {
		return fmt.Errorf("batches: running batches: %w", err)
	}
	var errs []error
	for _, b := range bs {
		if err := r.step(ctx, b); err != nil {
			errs = append(errs, fmt.Errorf("batches: batch %s: %w", b.ID, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// claimPrefix marks an item claimed by a runner before its order exists:
// "claim:<runner>:<unix nanoseconds>".
const claimPrefix = "claim:"

func (r *Runner) claimMark() string {
	return claimPrefix + r.id + ":" + strconv.FormatInt(r.now().UnixNano(), 10)
}

// IsClaim reports whether an item's OrderID is a claim marker (no order
// yet), which views show as no order.
func IsClaim(orderID string) bool { return strings.HasPrefix(orderID, claimPrefix) }

func claimTime(mark string) (time.Time, bool) {
	i := strings.LastIndexByte(mark, ':')
	if i < 0 {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(mark[i+1:], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, n), true
}

// step moves one batch on: follow its orders, then stop, finish or start
// the next wave.
func (r *Runner) step(ctx context.Context, b store.Batch) error {
	if err := r.refresh(ctx, b); err != nil {
		return err
	}
	cur, err := r.st.Batch(ctx, b.Account, b.ID)
	if err != nil {
		return err
	}
	c := cur.Counts
	now := r.now().UTC()
	if cur.Status == store.BatchRunning && cur.MaxFailures > 0 && c.Failed >= cur.MaxFailures {
		if err := r.setStatus(ctx, cur, store.BatchStopping, now); err != nil {
			return err
		}
		r.log.Warn("batch stopping: too many failures", "account", cur.Account, "batch", cur.ID, "failed", c.Failed,
			"max_failures", cur.MaxFailures)
		if _, err := r.st.SkipPendingBatchItems(ctx, cur.ID,
			fmt.Sprintf("stopped: %d failures reached max_failures %d", c.Failed, cur.MaxFailures)); err != nil {
			return err
		}
		cur.Status = store.BatchStopping
		c.Pending = 0
	}
	switch cur.Status {
	case store.BatchStopping:
		if c.Ordered > 0 {
			return nil
		}
		// Ops skipped the pending items when stop was pressed, naming who;
		// this covers a stop made another way.
		if _, err := r.st.SkipPendingBatchItems(ctx, cur.ID, "stopped"); err != nil {
			return err
		}
		if err := r.setStatus(ctx, cur, store.BatchStopped, now); err != nil {
			return err
		}
		r.log.Info("batch stopped", "account", cur.Account, "batch", cur.ID)
		return nil
	case store.BatchRunning:
		if c.Pending == 0 {
			if c.Ordered > 0 {
				return nil // the last wave is under way
			}
			if err := r.setStatus(ctx, cur, store.BatchDone, now); err != nil {
				return err
			}
			r.log.Info("batch done", "account", cur.Account, "batch", cur.ID, "done", c.Done, "failed", c.Failed,
				"skipped", c.Skipped)
			return nil
		}
		return r.startWave(ctx, cur, c.Ordered > 0)
	}
	return nil
}

// setStatus changes the batch's status; another runner having done it
// first (ErrConflict) is not an error.
func (r *Runner) setStatus(ctx context.Context, b store.Batch, to string, now time.Time) error {
	err := r.st.SetBatchStatus(ctx, b.Account, b.ID, []string{b.Status}, to, now)
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return err
	}
	return nil
}

// refresh brings the ordered items up to date with their orders.
func (r *Runner) refresh(ctx context.Context, b store.Batch) error {
	for offset := 0; ; {
		items, err := r.st.BatchItemsInState(ctx, b.ID, store.ItemOrdered, 500, offset)
		if err != nil {
			return err
		}
		for _, it := range items {
			changed, err := r.refreshItem(ctx, b, it)
			if err != nil {
				return err
			}
			if !changed {
				offset++ // still ordered: the next page starts after it
			}
		}
		if len(items) < 500 {
			return nil
		}
	}
}

// refreshItem reports whether the item left the ordered state.
func (r *Runner) refreshItem(ctx context.Context, b store.Batch, it store.BatchItem) (bool, error) {
	if IsClaim(it.OrderID) || it.OrderID == "" {
		return r.staleClaim(ctx, b, it)
	}
	o, err := r.st.Order(ctx, b.Account, it.OrderID)
	if errors.Is(err, store.ErrNotFound) {
		return true, r.st.SetBatchItem(ctx, b.ID, it.Seq, it.OrderID, store.ItemFailed, "order "+it.OrderID+" not found")
	}
	if err != nil {
		return false, err
	}
	switch o.Status {
	case store.OrderRotated, store.OrderRekeyed, store.OrderDeployed:
		return true, r.st.SetBatchItem(ctx, b.ID, it.Seq, o.ID, store.ItemDone, "")
	case store.OrderFailed, store.OrderRolledBack, store.OrderCanceled:
		msg := o.Error
		if msg == "" {
			msg = "order " + o.Status
		}
		return true, r.st.SetBatchItem(ctx, b.ID, it.Seq, o.ID, store.ItemFailed, msg)
	}
	return false, nil
}

// staleClaim handles an item claimed but without its order: in flight
// while the claim is fresh; once stale, the order is adopted if the
// claimer made it before it died, else the item is pending again.
func (r *Runner) staleClaim(ctx context.Context, b store.Batch, it store.BatchItem) (bool, error) {
	at, ok := claimTime(it.OrderID)
	if ok && r.now().Sub(at) < r.claimStale {
		return false, nil
	}
	for offset := 0; ; offset += 500 {
		os, err := r.st.Orders(ctx, b.Account, store.OrderFilter{BatchID: b.ID, Limit: 500, Offset: offset})
		if err != nil {
			return false, err
		}
		for _, o := range os {
			if o.Location == it.Location && o.Fingerprint == it.Fingerprint && o.BotID == it.BotID {
				r.log.Info("batch item: adopting the order of a claim left behind", "batch", b.ID, "seq", it.Seq, "order", o.ID)
				return false, r.st.SetBatchItem(ctx, b.ID, it.Seq, o.ID, store.ItemOrdered, "")
			}
		}
		if len(os) == 0 {
			break
		}
	}
	released, err := r.st.ReleaseBatchItem(ctx, b.ID, it.Seq, it.OrderID)
	if released {
		r.log.Warn("batch item: stale claim released", "batch", b.ID, "seq", it.Seq)
	}
	return released, err
}

// startWave orders the pending items of the lowest wave that has any.
// While orders are under way (busy) it only completes their wave (items
// of it left pending by a claim put back), never starts the next. The
// wave is claimed first in one store update: a runner that loses the race
// gets no items and leaves the wave to the one that won.
func (r *Runner) startWave(ctx context.Context, b store.Batch, busy bool) error {
	first, err := r.st.BatchItemsInState(ctx, b.ID, store.ItemPending, 1, 0)
	if err != nil || len(first) == 0 {
		return err
	}
	wave := first[0].Wave
	if busy {
		ordered, err := r.st.BatchItemsInState(ctx, b.ID, store.ItemOrdered, 1, 0)
		if err != nil || len(ordered) == 0 || ordered[0].Wave != wave {
			return err
		}
	}
	mark := r.claimMark()
	items, err := r.st.ClaimBatchWave(ctx, b.ID, wave, mark)
	if err != nil || len(items) == 0 {
		return err
	}
	r.log.Info("batch wave started", "account", b.Account, "batch", b.ID, "wave", wave, "items", len(items))
	for i, it := range items {
		o, err := r.rot.Rotate(ctx, b.Account, RotateRequest{Fingerprint: it.Fingerprint, Location: it.Location,
			BotID: it.BotID, Action: b.Action, TemplateID: b.TemplateID, BatchID: b.ID, CreatedBy: b.CreatedBy})
		if err != nil {
			if ctx.Err() != nil {
				// Shutting down: not the items' fault; another runner
				// takes them up.
				for _, left := range items[i:] {
					_, _ = r.st.ReleaseBatchItem(context.WithoutCancel(ctx), b.ID, left.Seq, mark)
				}
				return ctx.Err()
			}
			if err := r.st.SetBatchItem(ctx, b.ID, it.Seq, "", store.ItemFailed, err.Error()); err != nil {
				return err
			}
			continue
		}
		if err := r.st.SetBatchItem(ctx, b.ID, it.Seq, o.ID, store.ItemOrdered, ""); err != nil {
			return err
		}
	}
	return nil
}
