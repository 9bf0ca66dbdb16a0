// Package runner is what `emsign-bot run` does once activated: it keeps
// the bot's configuration (ETag), runs scans on its schedule and when a job
// says so, spools every finding on disk before it is sent, and uploads the
// spool in order, deleting a record only once the control plane has
// acknowledged it. The control plane being down, refusing the bot, or the
// bot restarting lose nothing; a bot killed during a scan closes that scan
// (incomplete, saying so) when it starts again (see openScan).
package runner

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/emsign/bot/agent/client"
	"github.com/emsign/bot/agent/export"
	"github.com/emsign/bot/agent/rotate"
	"github.com/emsign/bot/agent/scan"
	"github.com/emsign/bot/agent/spool"
	"github.com/emsign/bot/protocol"
)

// Defaults of Config.
const (
	DefaultPollWait     = 30 * time.Second
	DefaultBatchSize    = 500
	DefaultBatchAge     = 2 * time.Second
	DefaultRefusedDelay = 5 * time.Minute
	DefaultConfigEvery  = 15 * time.Minute
	// DefaultRotationWorkers is the default of Config.RotationWorkers.
	DefaultRotationWorkers = 4
)

// Config configures a Runner.
type Config struct {
	Client *client.Client
	Spool  *spool.Spool
	Logger *slog.Logger
	// Clock drives the schedule; nil means the system clock.
	Clock Clock
	// Backoff spaces retries of failed calls; zero means 1s doubling to 1m.
	Backoff client.Backoff
	// RefusedDelay is the wait between attempts while the control plane
	// refuses the bot (401/403).
	RefusedDelay time.Duration
	// PollWait is the long poll's wait.
	PollWait time.Duration
	// ConfigEvery refetches the configuration (cheap with the ETag) even
	// without a config_changed job.
	ConfigEvery time.Duration
	// BatchSize and BatchAge bound a findings batch.
	BatchSize int
	BatchAge  time.Duration
	// NewRegistry builds the connectors of a scan; nil means
	// scan.NewRegistry.
	NewRegistry func(scan.SourceOptions) (scan.Registry, error)
	// NewID names scheduled scans; nil means a random UUID.
	NewID func() string
	// ExportDir, when set, also writes every scan the runner completes as
	// a signed bundle ExportDir/<scan>.emsbundle (see agent/export), signed
	// by ExportIdentity, for a control plane reached only by removable
	// media. The upload is unchanged: a bot with no path out fills its
	// spool until it is full, and then refuses new scans.
	ExportDir      string
	ExportIdentity export.Identity
	// Rotator runs rotation jobs (JobRotate); nil fails them with
	// "rotation is not set up on this bot".
	Rotator *rotate.Rotator
	// RotationWorkers bounds the rotations running at once
	// (DefaultRotationWorkers when zero). Rotations run beside the loop:
	// one waiting for its CA holds up no scan and no other job.
	RotationWorkers int
}

// Runner is the bot's service loop.
type Runner struct {
	c    Config
	log  *slog.Logger
	mu   sync.Mutex // guards cfg and etag
	cfg  *protocol.BotConfig
	etag string
	// jobsMu guards done and rotating: rotations end on their own
	// goroutines.
	jobsMu sync.Mutex
	// done remembers recent job IDs, so a job delivered twice runs once.
	done map[string]bool
	// rotating holds the rotation jobs running: one delivered again
	// meanwhile is ignored.
	rotating map[string]bool
	// rotationSlots bounds the rotations running at once; rotations
	// counts them all, for Run to wait on at the end.
	rotationSlots chan struct{}
	rotations     sync.WaitGroup
	// markMu makes appending a scan's record and moving the open-scan
	// marker on one step for the uploader, which removes records under it.
	markMu sync.Mutex
}

// New checks the configuration and fills in defaults.
func New(c Config) (*Runner, error) {
	if c.Client == nil {
		return nil, errors.New("runner: no client")
	}
	if c.Spool == nil {
		return nil, errors.New("runner: no spool")
	}
	if c.PollWait < 0 || c.BatchSize < 0 || c.BatchAge < 0 || c.RefusedDelay < 0 || c.ConfigEvery < 0 || c.RotationWorkers < 0 {
		return nil, errors.New("runner: negative setting")
	}
	if c.ExportDir != "" && (c.ExportIdentity.BotID == "" || c.ExportIdentity.Account == "" ||
		len(c.ExportIdentity.CertDER) == 0 || c.ExportIdentity.Signer == nil) {
		return nil, errors.New("runner: an export directory needs the bot's identity")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = SystemClock{}
	}
	if c.Backoff.Min == 0 && c.Backoff.Max == 0 {
		c.Backoff = client.DefaultBackoff()
	}
	if c.RefusedDelay == 0 {
		c.RefusedDelay = DefaultRefusedDelay
	}
	if c.PollWait == 0 {
		c.PollWait = DefaultPollWait
	}
	if c.ConfigEvery == 0 {
		c.ConfigEvery = DefaultConfigEvery
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchAge == 0 {
		c.BatchAge = DefaultBatchAge
	}
	if c.NewRegistry == nil {
		c.NewRegistry = scan.NewRegistry
	}
	if c.NewID == nil {
		c.NewID = NewUUID
	}
	if c.RotationWorkers == 0 {
		c.RotationWorkers = DefaultRotationWorkers
	}
	return &Runner{c: c, log: c.Logger, done: map[string]bool{}, rotating: map[string]bool{},
		rotationSlots: make(chan struct{}, c.RotationWorkers)}, nil
}

// Run runs until ctx ends (SIGTERM): a running scan is stopped, what it
// found stays in the spool for the next start. It returns nil then.
func (r *Runner) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.recoverOpenScans()
	r.log.Info("bot running", "spool_records", r.c.Spool.Len(), "spool_bytes", r.c.Spool.Size())
	var wg sync.WaitGroup
	jobs := make(chan protocol.Job)
	wg.Go(func() { r.upload(ctx) })
	wg.Go(func() { r.poll(ctx, jobs) })
	r.loop(ctx, jobs)
	cancel()
	// A rotation stopped here still rolls back what it changed and spools
	// its result, sent at the next start.
	r.rotations.Wait()
	wg.Wait()
	r.log.Info("bot stopped", "spool_records", r.c.Spool.Len())
	return nil
}

// loop owns the configuration and runs the scans, one at a time.
func (r *Runner) loop(ctx context.Context, jobs <-chan protocol.Job) {
	clock := r.c.Clock
	configDue := clock.Now() // fetch at once
	configFails := 0
	var next time.Time // next scheduled scan; zero: none
	schedule := func() {
		next = time.Time{}
		cfg := r.config()
		if cfg == nil {
			return
		}
		n, ok, err := cfg.Schedule.Next(clock.Now())
		switch {
		case err != nil:
			r.log.Error("the schedule from the control plane is not valid; no scheduled scans", "error", err)
		case ok:
			next = n
			r.log.Info("next scheduled scan", "at", n.Format(time.RFC3339), "schedule", cfg.Schedule.Kind)
		default:
			r.log.Info("scans on demand only")
		}
	}
	for {
		now := clock.Now()
		if !now.Before(configDue) {
			changed, err := r.fetchConfig(ctx)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				configFails++
				delay := r.retryDelay(err, configFails-1)
				r.logCallError("fetch configuration", err, delay)
				configDue = now.Add(delay)
			default:
				configFails = 0
				configDue = now.Add(r.c.ConfigEvery)
				if changed {
					schedule()
				}
			}
		}
		if !next.IsZero() && !now.Before(next) {
			if cfg := r.config(); cfg != nil {
				id := r.c.NewID()
				if err := r.runScan(ctx, *cfg, id, "", "schedule"); err != nil {
					r.log.Error("scheduled scan failed", "scan", id, "error", err)
				}
			}
			if ctx.Err() != nil {
				return
			}
			schedule()
			continue
		}
		// Wake for what comes first; at least every minute, so that a
		// clock jump (suspend, NTP) is noticed.
		wait := configDue.Sub(now)
		if !next.IsZero() {
			wait = min(wait, next.Sub(now))
		}
		wait = max(min(wait, time.Minute), 0)
		select {
		case <-ctx.Done():
			return
		case j := <-jobs:
			before := r.version()
			r.handleJob(ctx, j)
			if r.version() != before {
				schedule()
				configDue = clock.Now().Add(r.c.ConfigEvery)
			}
		case <-clock.After(wait):
		}
	}
}

func (r *Runner) config() *protocol.BotConfig {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg
}

func (r *Runner) version() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.etag
}

// fetchConfig gets the configuration; changed says it is new.
func (r *Runner) fetchConfig(ctx context.Context) (changed bool, err error) {
	r.mu.Lock()
	etag := r.etag
	r.mu.Unlock()
	cfg, newETag, notModified, err := r.c.Client.Config(ctx, etag)
	if err != nil {
		return false, err
	}
	if notModified {
		r.log.Debug("configuration unchanged", "version", etag)
		return false, nil
	}
	if err := cfg.Schedule.Validate(); err != nil {
		r.log.Error("the control plane's schedule is not valid; scans on demand only", "error", err)
	}
	r.mu.Lock()
	r.cfg, r.etag = &cfg, newETag
	r.mu.Unlock()
	// Targets are not logged here: they may hold secrets; each is logged
	// redacted when it is scanned.
	r.log.Info("configuration", "version", cfg.Version, "status", cfg.Status, "targets", len(cfg.Targets),
		"schedule", cfg.Schedule.Kind, "threads", cfg.Threads, "max_runtime", time.Duration(cfg.MaxRuntime).String())
	return true, nil
}

// retryDelay is the wait before another attempt after err.
func (r *Runner) retryDelay(err error, attempt int) time.Duration {
	if client.IsUnauthorized(err) {
		return r.c.RefusedDelay
	}
	return r.c.Backoff.Delay(attempt)
}

func (r *Runner) logCallError(what string, err error, retry time.Duration) {
	if client.IsUnauthorized(err) {
		r.log.Error("the control plane refuses this bot: it was suspended or deactivated, or its token was regenerated (activate it again with a new token); retrying slowly",
			"call", what, "error", err, "retry_in", retry.Round(time.Second).String())
		return
	}
	r.log.Warn("call to the control plane failed; retrying", "call", what, "error", err, "retry_in", retry.Round(time.Millisecond).String())
}

// poll long-polls for jobs and hands them to the loop.
func (r *Runner) poll(ctx context.Context, out chan<- protocol.Job) {
	fails := 0
	for ctx.Err() == nil {
		jobs, err := r.c.Client.Jobs(ctx, r.c.PollWait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			delay := r.retryDelay(err, fails)
			fails++
			r.logCallError("poll jobs", err, delay)
			if client.Sleep(ctx, delay) != nil {
				return
			}
			continue
		}
		fails = 0
		for _, j := range jobs {
			select {
			case out <- j:
			case <-ctx.Done():
				return
			}
		}
	}
}

// handleJob runs a job and spools its result (sent after what the job
// spooled before it).
func (r *Runner) handleJob(ctx context.Context, j protocol.Job) {
	if !spool.ValidID(j.ID) {
		r.log.Error("ignoring a job with an unusable id", "job", fmt.Sprintf("%q", j.ID), "kind", j.Kind)
		return
	}
	if r.seen(j.ID) {
		r.log.Info("job already handled", "job", j.ID)
		return
	}
	r.log.Info("job", "job", j.ID, "kind", j.Kind, "scan", j.ScanID)
	if j.Kind == protocol.JobRotate {
		r.startRotation(ctx, j)
		return
	}
	var err error
	switch j.Kind {
	case protocol.JobScan:
		id := j.ScanID
		if id == "" {
			id = j.ID
		}
		if !spool.ValidID(id) {
			err = fmt.Errorf("scan id %q is not usable", id)
			break
		}
		if r.config() == nil {
			if _, ferr := r.fetchConfig(ctx); ferr != nil {
				err = fmt.Errorf("no configuration from the control plane yet: %w", ferr)
				break
			}
		}
		err = r.runScan(ctx, *r.config(), id, j.ID, "job")
	case protocol.JobConfigChanged:
		_, err = r.fetchConfig(ctx)
	default:
		err = fmt.Errorf("this bot does not know jobs of kind %q", j.Kind)
	}
	res := protocol.JobResult{Status: "done"}
	if err != nil {
		res = protocol.JobResult{Status: "failed", Error: err.Error()}
		r.log.Error("job failed", "job", j.ID, "kind", j.Kind, "error", err)
	}
	body, _ := json.Marshal(res)
	if aerr := r.spoolJobResult(j.ID, j.Kind == protocol.JobScan, body); aerr != nil {
		r.log.Error("cannot spool a job's result", "job", j.ID, "error", aerr)
		return
	}
	r.markDone(j.ID)
}

// seen says whether job was handled already or is running.
func (r *Runner) seen(job string) bool {
	r.jobsMu.Lock()
	defer r.jobsMu.Unlock()
	return r.done[job] || r.rotating[job]
}

// markDone remembers a job whose result is spooled.
func (r *Runner) markDone(job string) {
	r.jobsMu.Lock()
	defer r.jobsMu.Unlock()
	if len(r.done) > 1000 {
		clear(r.done)
	}
	r.done[job] = true
}

// runScan runs one scan into the spool: start, batches, completion. It
// returns an error when the scan could not run or its findings could not
// all be spooled; a scan stopped by its max runtime is not an error (its
// completion says Complete=false and why). job is the job that asked for
// the scan, if one did.
func (r *Runner) runScan(ctx context.Context, cfg protocol.BotConfig, id, job, trigger string) error {
	if err := r.c.Spool.Room(); err != nil {
		return fmt.Errorf("scan refused: %w", err)
	}
	clock := r.c.Clock
	var targets []protocol.Target
	var bad []string
	for i, raw := range cfg.Targets {
		t, err := protocol.ParseTarget(raw)
		if err != nil {
			// The error names the target with its secrets redacted.
			r.log.Error("target from the control plane cannot be read; skipped", "index", i, "error", err)
			bad = append(bad, err.Error())
			continue
		}
		targets = append(targets, t)
	}
	started := clock.Now().UTC()
	start, _ := json.Marshal(protocol.ScanStart{ScanID: id, Trigger: trigger, Started: started, Targets: len(cfg.Targets)})
	open := &openScan{Scan: id, Job: job}
	if err := r.spoolScanRecord(open, spool.Record{Kind: spool.KindScanStart, Scan: id, Body: start}); err != nil {
		return fmt.Errorf("scan refused: %w", err)
	}
	reg, err := r.c.NewRegistry(scan.SourceOptions{Threads: cfg.Threads, Logger: r.log, Now: clock.Now})
	if err != nil {
		// Close what was opened, then say why.
		r.complete(open, protocol.ScanComplete{Finished: clock.Now().UTC(), Stopped: "the bot could not start its connectors"})
		return fmt.Errorf("connectors: %w", err)
	}
	sctx := ctx
	if cfg.MaxRuntime > 0 {
		d := time.Duration(cfg.MaxRuntime)
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeoutCause(ctx, d, fmt.Errorf("max runtime of %s reached", d))
		defer cancel()
	}
	r.log.Info("scan started", "scan", id, "trigger", trigger, "targets", len(targets))
	sink := newBatcher(func(rec spool.Record) error { return r.spoolScanRecord(open, rec) }, id, r.c.BatchSize, r.c.BatchAge)
	var scanSink scan.Sink = sink
	exp := r.startExport(id)
	if exp != nil {
		scanSink = exportSink{Sink: sink, x: exp}
	}
	sum, runErr := scan.Runner{Registry: reg, Logger: r.log, Now: clock.Now}.Run(sctx, targets, scanSink)
	batches, flushErr := sink.Close()
	c := protocol.ScanComplete{
		Finished:     clock.Now().UTC(),
		Batches:      batches,
		Certificates: sum.Certificates,
		Errors:       sum.Errors + len(bad),
	}
	var failed error
	switch {
	case runErr != nil || flushErr != nil:
		failed = errors.Join(runErr, flushErr)
		c.Stopped = "the scan could not keep its findings: " + failed.Error()
	case ctx.Err() != nil:
		c.Stopped = "the bot was stopped during the scan"
		failed = errors.New(c.Stopped)
	case sum.Stopped != nil:
		c.Stopped = sum.Stopped.Error()
	case len(bad) > 0:
		// Locations of an unreadable target must not be closed.
		c.Stopped = fmt.Sprintf("%d target(s) could not be read", len(bad))
	default:
		c.Complete = true
	}
	r.complete(open, c)
	if exp != nil {
		// Whatever the spool kept, the bundle has every finding; it says
		// how the scan ended, as the completion does.
		exp.finish(started, len(cfg.Targets), c)
	}
	r.log.Info("scan finished", "scan", id, "complete", c.Complete, "stopped", c.Stopped,
		"certificates", c.Certificates, "errors", c.Errors, "batches", c.Batches, "elapsed", sum.Elapsed.Round(time.Millisecond).String())
	return failed
}

func (r *Runner) complete(o *openScan, c protocol.ScanComplete) {
	body, _ := json.Marshal(c)
	if err := r.spoolScanRecord(o, spool.Record{Kind: spool.KindScanComplete, Scan: o.Scan, Body: body}); err != nil {
		// The marker stays: the next start closes the scan.
		r.log.Error("cannot spool a scan's completion", "scan", o.Scan, "error", err)
	}
}

// upload sends the spool in order, forever: a record is removed only once
// the control plane acknowledged it.
func (r *Runner) upload(ctx context.Context) {
	fails := 0
	for ctx.Err() == nil {
		e, ok, err := r.c.Spool.Oldest()
		if err != nil {
			r.log.Error("spool", "error", err)
			if client.Sleep(ctx, r.c.Backoff.Delay(fails)) != nil {
				return
			}
			fails++
			continue
		}
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-r.c.Spool.Notify():
			}
			continue
		}
		err = r.send(ctx, e)
		switch {
		case err == nil:
			fails = 0
			r.markMu.Lock() // see openScan
			err := r.c.Spool.Remove(e)
			r.markMu.Unlock()
			if err != nil {
				r.log.Error("spool", "error", err)
			}
		case ctx.Err() != nil:
			return
		case client.IsPermanent(err):
			// Resending cannot help; set it aside so the rest moves.
			r.log.Error("the control plane rejected a spooled record; kept aside in the spool's corrupt folder, not resent",
				"record", e.Name, "error", err)
			r.markMu.Lock()
			err := r.c.Spool.Reject(e)
			r.markMu.Unlock()
			if err != nil {
				r.log.Error("spool", "error", err)
			}
		default:
			delay := r.retryDelay(err, fails)
			fails++
			r.logCallError("upload "+e.Kind, err, delay)
			if client.Sleep(ctx, delay) != nil {
				return
			}
		}
	}
}

func (r *Runner) send(ctx context.Context, e spool.Entry) error {
	switch e.Kind {
	case spool.KindScanStart:
		return r.c.Client.StartScan(ctx, e.Body)
	case spool.KindFindings:
		ack, err := r.c.Client.PostFindings(ctx, e.Scan, e.Body)
		if err != nil {
			return err
		}
		if ack.Seq != e.Seq {
			return fmt.Errorf("the control plane acknowledged batch %d of scan %s, not %d", ack.Seq, e.Scan, e.Seq)
		}
		if ack.Duplicate {
			r.log.Debug("batch was already received", "scan", e.Scan, "seq", e.Seq)
		}
		return nil
	case spool.KindScanComplete:
		return r.c.Client.CompleteScan(ctx, e.Scan, e.Body)
	case spool.KindJobResult:
		return r.c.Client.ReportJob(ctx, e.Scan, e.Body)
	}
	return fmt.Errorf("unknown record kind %q", e.Kind)
}

// NewUUID returns a random (version 4) UUID.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
