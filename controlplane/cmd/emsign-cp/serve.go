package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/emsign/bot/controlplane/batches"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/ordering"
	"github.com/emsign/bot/controlplane/pki"
	"github.com/emsign/bot/controlplane/schedules"
	"github.com/emsign/bot/controlplane/seal"
	"github.com/emsign/bot/controlplane/server"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/controlplane/web"
)

// secretKeyFile is the AES-256 key that seals target secrets.
const secretKeyFile = "secret.key"

func newServeCommand(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	var f storeFlags
	var listen string
	var names []string
	var caConfig, publicURL string
	c := &cobra.Command{
		Use:   "serve [--data DIR] [--listen ADDR] [--db URL]",
		Short: "Run the control plane (HTTPS): the bot API /bot/v1, the user API /api/v1 and the dashboard",
		Long: `Run the control plane over HTTPS. On first start it creates, in the data
directory, its CA (ca.pem: give it to bots to trust), the key that seals
target secrets (secret.key, mode 0600; or set ` + seal.EnvKey + ` to its
base64 for replicas) and the SQLite database. When it listens, it prints
one JSON line: {"listening":"HOST:PORT","ca":"DIR/ca.pem"}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewJSONHandler(stderr, nil))
			return serve(cmd.Context(), serveOptions{flags: &f, listen: listen, names: names, stdout: stdout, log: log,
				envKey: getenv(seal.EnvKey), caConfig: caConfig, publicURL: publicURL})
		},
	}
	f.add(c)
	c.Flags().StringVar(&listen, "listen", ":8443", "address to listen on (HOST:PORT; port 0 picks a free one)")
	c.Flags().StringSliceVar(&names, "name", nil, "extra DNS name or IP address for the server certificate (repeatable)")
	c.Flags().StringVar(&caConfig, "ca-config", "", "CA connector file (JSON: ACME and DigiCert connectors; see controlplane/ordering/README.md); the local CA needs none")
	c.Flags().StringVar(&publicURL, "public-url", "", "the control plane's URL as relying parties reach it (https://cp.example.com): the local CA's CRL, OCSP and issuer URLs in its certificates; empty leaves them out")
	return c
}

type serveOptions struct {
	flags  *storeFlags
	listen string
	names  []string
	stdout io.Writer
	log    *slog.Logger
	envKey string
	// caConfig is the CA connector file ("" for the local CA only);
	// publicURL the control plane's URL for the local CA's URLs.
	caConfig  string
	publicURL string
}

func serve(ctx context.Context, o serveOptions) error {
	host, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		return usageError{fmt.Errorf("--listen %q: want HOST:PORT", o.listen)}
	}
	st, err := o.flags.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	ca, err := pki.LoadOrCreate(o.flags.data, time.Now())
	if err != nil {
		return err
	}
	key, err := seal.LoadKey(filepath.Join(o.flags.data, secretKeyFile), o.envKey)
	if err != nil {
		return err
	}
	sealer, err := seal.New(key)
	if err != nil {
		return err
	}
	hosts := append([]string{host}, o.names...)
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	cert, err := ca.ServerCertificate(hosts, time.Now())
	if err != nil {
		return err
	}
	reg := &ordering.Registry{}
	if o.caConfig != "" {
		if reg, err = ordering.LoadRegistry(o.caConfig, o.log); err != nil {
			return usageError{err}
		}
	}
	// One notifier wakes the bots' long polls for every job queued, by the
	// ordering service as by ops; one Ops for the user API and the
	// dashboard.
	notifier := ops.NewNotifier()
	// The batch runner is made after the ordering service it drives; a
	// finished rotation wakes it through this hook once it is set.
	var wakeBatches atomic.Pointer[func()]
	ord, err := ordering.New(ordering.Config{Store: st, Sealer: sealer, Wake: notifier.Notify, Registry: reg,
		PublicURL: o.publicURL, Logger: o.log, Finished: func() {
			if w := wakeBatches.Load(); w != nil {
				(*w)()
			}
		}})
	if err != nil {
		return usageError{err}
	}
	op, err := ops.New(ops.Config{Store: st, Sealer: sealer, Logger: o.log, Notifier: notifier, Ordering: ord})
	if err != nil {
		return err
	}
	// Mass replacements (P9) and schedules (P6) run in this process, on
	// top of the ordering service. *store.SQL has what they need beyond
	// store.Store.
	runners, wake, err := backgroundRunners(st, op, o.log)
	if err != nil {
		return err
	}
	if wake != nil {
		wakeBatches.Store(&wake)
	}
	dash, err := web.New(web.Config{Store: st, Ops: op, Logger: o.log, Sealer: sealer, CACertPEM: ca.PEM()})
	if err != nil {
		return err
	}
	srv, err := server.New(server.Config{Store: st, CA: ca, Sealer: sealer, Logger: o.log, Ops: op, Dashboard: dash.Handler(),
		Ordering: ord})
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		TLSConfig:         srv.TLSConfig(cert),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(o.log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	o.log.Info("listening", "addr", ln.Addr().String(), "data", o.flags.data)
	if err := printJSON(o.stdout, map[string]string{"listening": ln.Addr().String(), "ca": filepath.Join(o.flags.data, pki.CertFile)}); err != nil {
		ln.Close()
		return err
	}
	errc := make(chan error, 1+len(reg.HTTP01()))
	// HTTP-01 answers of the ACME connectors, plain HTTP where the CA
	// looks for them.
	for _, h := range reg.HTTP01() {
		hln, err := net.Listen("tcp", h.Addr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("acme connector %s: http01_listen %s: %w", h.Connector, h.Addr, err)
		}
		hsrv := &http.Server{Handler: h.Handler, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(o.log.Handler(), slog.LevelWarn)}
		defer hsrv.Close()
		o.log.Info("serving HTTP-01 answers", "connector", h.Connector, "addr", hln.Addr().String())
		go func() {
			if err := hsrv.Serve(hln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http-01 listener %s: %w", h.Addr, err)
			}
		}()
	}
	rctx, stopRunners := context.WithCancel(ctx)
	defer stopRunners()
	for _, run := range runners {
		go func() {
			if err := run(rctx); err != nil && rctx.Err() == nil {
				o.log.Error("background runner stopped", "err", err)
			}
		}()
	}
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	o.log.Info("shutting down")
	srv.Close() // ends long polls
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	o.log.Info("stopped")
	return nil
}

// backgroundRunners makes the batch runner (P9) and the scheduler (P6),
// when the store has what they need, and gives ops the batch runner's
// wake-up.
func backgroundRunners(st store.Store, op *ops.Ops, log *slog.Logger) (runs []func(context.Context) error, wakeBatches func(), err error) {
	if rs, ok := st.(batches.RunStore); ok {
		r, err := batches.NewRunner(batches.RunnerConfig{Store: rs, Rotator: op.BatchRotator(), Logger: log})
		if err != nil {
			return nil, nil, err
		}
		op.SetBatches(nil, r.Wake)
		wakeBatches = r.Wake
		runs = append(runs, r.Run)
	} else {
		log.Warn("the store cannot run mass replacements: batches stay planned")
	}
	if ss, ok := st.(schedules.Store); ok {
		r, err := schedules.New(schedules.Config{Store: ss, Rotator: op.BatchRotator(), Scanner: op, Logger: log})
		if err != nil {
			return nil, nil, err
		}
		runs = append(runs, r.Run)
	} else {
		log.Warn("the store cannot fire schedules")
	}
	return runs, wakeBatches, nil
}
