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
	"time"

	"github.com/spf13/cobra"

	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/pki"
	"github.com/emsign/bot/controlplane/seal"
	"github.com/emsign/bot/controlplane/server"
	"github.com/emsign/bot/controlplane/web"
)

// secretKeyFile is the AES-256 key that seals target secrets.
const secretKeyFile = "secret.key"

func newServeCommand(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	var f storeFlags
	var listen string
	var names []string
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
				envKey: getenv(seal.EnvKey)})
		},
	}
	f.add(c)
	c.Flags().StringVar(&listen, "listen", ":8443", "address to listen on (HOST:PORT; port 0 picks a free one)")
	c.Flags().StringSliceVar(&names, "name", nil, "extra DNS name or IP address for the server certificate (repeatable)")
	return c
}

type serveOptions struct {
	flags  *storeFlags
	listen string
	names  []string
	stdout io.Writer
	log    *slog.Logger
	envKey string
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
	// One Ops for the user API and the dashboard: they share the
	// notifier that wakes the bots' long polls.
	op, err := ops.New(ops.Config{Store: st, Sealer: sealer, Logger: o.log})
	if err != nil {
		return err
	}
	dash, err := web.New(web.Config{Store: st, Ops: op, Logger: o.log, Sealer: sealer, CACertPEM: ca.PEM()})
	if err != nil {
		return err
	}
	srv, err := server.New(server.Config{Store: st, CA: ca, Sealer: sealer, Logger: o.log, Ops: op, Dashboard: dash.Handler()})
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
	errc := make(chan error, 1)
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
