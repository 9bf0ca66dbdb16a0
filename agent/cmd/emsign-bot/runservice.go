package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/emsign/bot/agent/client"
	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/agent/export"
	"github.com/emsign/bot/agent/netpath"
	"github.com/emsign/bot/agent/relay"
	"github.com/emsign/bot/agent/rotate"
	"github.com/emsign/bot/agent/runner"
	"github.com/emsign/bot/agent/spool"
	"github.com/emsign/bot/agent/state"
	"github.com/emsign/bot/protocol"

	// The schedule's time zones must resolve on Windows, which has no
	// zone database.
	_ "time/tzdata"
)

type runFlags struct {
	state     string
	spoolMax  string
	exportDir string
	verbose   bool
}

func newRunCommand(stderr io.Writer) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run as the service: scan on schedule and on request, report to the control plane",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runService(cmd.Context(), f, stderr)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.state, "state", state.DefaultDir(), "state directory (written by activate)")
	fl.StringVar(&f.spoolMax, "spool-max", "1GiB", "cap on findings kept for an unreachable control plane; over it new scans are refused")
	fl.StringVar(&f.exportDir, "export-dir", "", "also write every scan as a signed bundle `DIR`/<scan-id>.emsbundle, for a control plane\n"+
		"reached only by removable media (import with emsign-cp import); the upload is unchanged, so a bot\n"+
		"with no path out fills its spool up to --spool-max and then refuses new scans")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "log debug detail")
	return cmd
}

func runService(ctx context.Context, f runFlags, stderr io.Writer) error {
	maxBytes, err := protocol.ParseSize(f.spoolMax)
	if err != nil || maxBytes == 0 {
		return usageError{fmt.Errorf("--spool-max: %q is not a size such as 512MiB or 1GiB", f.spoolMax)}
	}
	level := slog.LevelInfo
	if f.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	st, err := state.Load(f.state)
	if err != nil {
		return err
	}
	log = log.With("bot_id", st.Settings.BotID)
	np, err := netpath.New(netpath.Settings{URL: st.Settings.URL, Proxy: st.Settings.Proxy, Via: st.Settings.Via})
	if err != nil {
		return fmt.Errorf("state %s: %w", f.state, err)
	}
	c, err := client.New(client.Config{URL: st.Settings.URL, TLS: st.TLSConfig(), Version: version, Logger: log,
		Dial: np.DialContext, Path: np.Describe()})
	if err != nil {
		return err
	}
	defer c.Close()
	var relayDone chan error
	if st.Settings.Listen > 0 {
		upstream, err := netpath.Upstream(st.Settings.URL)
		if err != nil {
			return err
		}
		rl, err := relay.New(relay.Config{
			Listen: fmt.Sprintf(":%d", st.Settings.Listen), Upstream: upstream,
			Dial: np.DialContext, Logger: log,
		})
		if err != nil {
			return err
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		relayDone = make(chan error, 1)
		go func() { relayDone <- rl.Serve(ctx) }()
		defer func() {
			cancel()
			if err := <-relayDone; err != nil {
				log.Error("relay", "err", err)
			}
		}()
	}
	sp, err := spool.Open(st.SpoolPath(), spool.Options{MaxBytes: maxBytes, Logger: log})
	if err != nil {
		return err
	}
	rot, err := rotate.New(rotate.Config{
		Client:   c,
		StateDir: st.Dir,
		Env: deploy.Env{
			BackupDir:   filepath.Join(st.Dir, "backups"),
			AllowReload: rotate.AllowReload(st.Settings.AllowedReload),
		},
		Targets:  deployTargets(),
		KeyMaker: tokenKeys(log),
		Logger:   log,
	})
	if err != nil {
		return err
	}
	rc := runner.Config{Client: c, Spool: sp, Logger: log, Clock: runner.SystemClock{}, Rotator: rot}
	if f.exportDir != "" {
		if err := os.MkdirAll(f.exportDir, 0o700); err != nil {
			return fmt.Errorf("--export-dir: %w", err)
		}
		id, err := export.FromState(st)
		if err != nil {
			return err
		}
		rc.ExportDir, rc.ExportIdentity = f.exportDir, id
	}
	r, err := runner.New(rc)
	if err != nil {
		return err
	}
	log.Info("starting", "url", st.Settings.URL, "version", version, "time", time.Now().Format(time.RFC3339),
		"path", np.Describe(), "proxy", np.ProxyRedacted(), "listen", st.Settings.Listen, "export_dir", f.exportDir,
		"rotation_kinds", rot.Kinds(), "allowed_reload", len(st.Settings.AllowedReload))
	return r.Run(ctx)
}
