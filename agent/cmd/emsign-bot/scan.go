package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/emsign/bot/agent/export"
	"github.com/emsign/bot/agent/output"
	"github.com/emsign/bot/agent/scan"
	"github.com/emsign/bot/agent/state"
	"github.com/emsign/bot/connectors"
	"github.com/emsign/bot/protocol"
)

type scanFlags struct {
	format     string
	threads    int
	timeout    time.Duration
	maxRuntime time.Duration
	passwords  []string
	pq         bool
	verbose    bool
	progress   string
	export     string
	state      string
}

func newScanCommand(stdout, stderr io.Writer) *cobra.Command {
	var f scanFlags
	cmd := &cobra.Command{
		Use:   "scan TARGET...",
		Short: "Find the certificates the targets hold and print them (no control plane needed)",
		Long: `Find the certificates the targets hold and print them.

Targets:
  tls://HOSTS:PORTS[?sni=NAME]   HOSTS: names, addresses, [IPv6], ranges a-b, CIDR blocks, comma-separated
                                 PORTS: 443, 443,8443, 1-899 or a mix (default 443)
  file:///PATH                   every certificate and keystore under PATH, found by content
  jks:///PATH                    Java keystores (JKS, JCEKS, PKCS#12) under PATH
  certstore://                   the operating system's certificate stores
  certstore://LocalMachine/My    one store

Secrets in targets: password=VALUE, password=env:NAME or password=file:/path (repeatable).`,
		Example: `  emsign-bot scan tls://10.20.0.0/16:443,8443,636 file:///etc jks:///opt --password changeit
  emsign-bot scan --format json tls://www.example.com | jq .not_after`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runScan(cmd.Context(), f, args, stdout, stderr)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.format, "format", "o", output.FormatTable, "output format: table, json (JSON Lines) or csv")
	fl.IntVar(&f.threads, "threads", 0, fmt.Sprintf("endpoints probed at once (default %d)", 512))
	fl.DurationVar(&f.timeout, "timeout", 0, "deadline for each network step: TCP connect and TLS handshake (default 3s connect, 5s handshake)")
	fl.DurationVar(&f.maxRuntime, "max-runtime", 0, "stop the whole scan after this long and print what was found (0: no limit)")
	fl.StringArrayVar(&f.passwords, "password", nil, "a keystore password to try on every keystore (repeatable; VALUE, env:NAME or file:/path)")
	fl.BoolVar(&f.pq, "pq", false, "offer the post-quantum X25519MLKEM768 key exchange, to see which servers choose it (slower)")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "log what the scan does on stderr")
	fl.StringVar(&f.progress, "progress", "auto", "progress line on stderr: auto (when stderr is a terminal), always or never")
	fl.StringVar(&f.export, "export", "", "also write the findings to FILE as a bundle signed with the bot's key, for emsign-cp import (needs an activated bot's --state)")
	fl.StringVar(&f.state, "state", state.DefaultDir(), "state directory of the activated bot whose key signs the --export bundle")
	return cmd
}

func runScan(ctx context.Context, f scanFlags, args []string, stdout, stderr io.Writer) error {
	// Everything the user typed is checked before anything is scanned.
	targets := make([]protocol.Target, 0, len(args))
	var bad []string
	for _, a := range args {
		t, err := protocol.ParseTarget(a)
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		targets = append(targets, t)
	}
	if len(bad) > 0 {
		return usageError{errors.New(strings.Join(bad, "\n  "))}
	}
	var passwords []protocol.Secret
	for _, p := range f.passwords {
		s, err := protocol.ResolveSecret(p)
		if err != nil {
			return usageError{fmt.Errorf("--password: %w", err)}
		}
		passwords = append(passwords, s)
	}
	if f.threads < 0 || f.timeout < 0 || f.maxRuntime < 0 {
		return usageError{errors.New("--threads, --timeout and --max-runtime must not be negative")}
	}
	out, err := output.New(f.format, stdout, time.Now)
	if err != nil {
		return usageError{fmt.Errorf("--format: %w", err)}
	}
	showProgress, err := wantProgress(f.progress, stderr)
	if err != nil {
		return usageError{err}
	}

	var exp *export.Exporter
	if f.export != "" {
		st, err := state.Load(f.state)
		if err != nil {
			return fmt.Errorf("--export: %w", err)
		}
		id, err := export.FromState(st)
		if err != nil {
			return err
		}
		if exp, err = export.New(f.export, id); err != nil {
			return err
		}
		defer exp.Abort()
	}

	tuneGC()

	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	progress := &connectors.Progress{}
	reg, err := scan.NewRegistry(scan.SourceOptions{
		Threads:     f.threads,
		Timeout:     f.timeout,
		Passwords:   passwords,
		PostQuantum: f.pq,
		Progress:    progress,
		Logger:      log,
		Now:         time.Now,
	})
	if err != nil {
		return err
	}

	if f.maxRuntime > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, f.maxRuntime, fmt.Errorf("max runtime of %s reached", f.maxRuntime))
		defer cancel()
	}
	var sink output.Writer = out
	if exp != nil {
		sink = teeWriter{out: out, exp: exp}
	}
	counted := &countingSink{w: sink}
	started := time.Now()
	var stopProgress func()
	if showProgress {
		stopProgress = startProgress(stderr, progress, counted)
	}
	sum, err := scan.Runner{Registry: reg, Logger: log, Now: time.Now}.Run(ctx, targets, counted)
	if stopProgress != nil {
		stopProgress()
	}
	if cerr := out.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write output: %w", cerr)
	}
	if err != nil {
		return err
	}
	if exp != nil {
		es := export.Summary{Started: started, Finished: time.Now(), Targets: sum.Targets, Complete: sum.Stopped == nil}
		if sum.Stopped != nil {
			es.Stopped = sum.Stopped.Error()
		}
		hdr, err := exp.Finish(es)
		if err != nil {
			return err
		}
		if showProgress || f.verbose {
			fmt.Fprintf(stderr, "exported %d findings to %s (scan %s)\n", hdr.Count, f.export, hdr.ScanID)
		}
	}
	if sum.Stopped != nil {
		fmt.Fprintf(stderr, "emsign-bot: scan stopped early (%v); what was found so far is printed\n", sum.Stopped)
	}
	if showProgress || f.verbose {
		fmt.Fprintf(stderr, "%d certificates, %d errors, %d targets in %s\n", sum.Certificates, sum.Errors, sum.Targets, sum.Elapsed.Round(time.Millisecond))
	}
	return nil
}

func wantProgress(mode string, stderr io.Writer) (bool, error) {
	switch mode {
	case "always":
		return true, nil
	case "never":
		return false, nil
	case "auto":
		f, ok := stderr.(*os.File)
		if !ok {
			return false, nil
		}
		st, err := f.Stat()
		return err == nil && st.Mode()&os.ModeCharDevice != 0, nil
	default:
		return false, fmt.Errorf("--progress: %q is not auto, always or never", mode)
	}
}

// countingSink counts findings for the progress line as they pass.
type countingSink struct {
	mu     sync.Mutex
	w      output.Writer
	found  int
	errors int
}

func (c *countingSink) Write(f protocol.Finding) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(f.Chain) > 0 {
		c.found++
	}
	if f.Error != "" {
		c.errors++
	}
	return c.w.Write(f)
}

func (c *countingSink) counts() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.found, c.errors
}

// startProgress redraws one status line on stderr until stopped.
func startProgress(w io.Writer, p *connectors.Progress, c *countingSink) (stop func()) {
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	draw := func() {
		found, errs := c.counts()
		fmt.Fprintf(w, "\r\033[Kprobed %d, open %d, certificates %d, errors %d, %s", p.Probed.Load(), p.Open.Load(), found, errs, time.Since(start).Round(time.Second))
	}
	wg.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				draw()
			case <-done:
				draw()
				fmt.Fprintln(w)
				return
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// tuneGC trades memory for CPU: a scan allocates fast (every handshake) but
// keeps little alive, so collecting at 4x the live heap instead of 2x saves
// CPU for handshakes, and the soft limit keeps a large scan bounded. A GOGC
// or GOMEMLIMIT the user set wins.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(512 << 20)
	}
}

// teeWriter prints a finding and adds it to the export bundle.
type teeWriter struct {
	out output.Writer
	exp *export.Exporter
}

func (t teeWriter) Write(f protocol.Finding) error {
	if err := t.exp.Write(f); err != nil {
		return err
	}
	return t.out.Write(f)
}

func (t teeWriter) Close() error { return t.out.Close() }
