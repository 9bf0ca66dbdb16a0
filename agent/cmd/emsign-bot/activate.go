package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/emsign/bot/agent/activation"
	"github.com/emsign/bot/agent/state"
	"github.com/emsign/bot/protocol"
)

type activateFlags struct {
	state, account, token, url, caFile, proxy, via string
	listen                                         int
	verbose                                        bool
}

func newActivateCommand(stdout, stderr io.Writer) *cobra.Command {
	var f activateFlags
	cmd := &cobra.Command{
		Use:   "activate --account N --token T --url URL",
		Short: "Activate this bot against a control plane (once, with the bot's one-time token)",
		Long: `Activate this bot against a control plane.

The bot makes a private key that never leaves this machine, sends a
certificate request with the 10-digit account number and the one-time bot
token (a UUID), and keeps the certificate it gets back in the state
directory (readable by the service account only). The token is used once
and written nowhere.`,
		Example: `  emsign-bot activate --account 1234567890 --token f8368fea-d5da-4502-a39b-43e6752f3b5e \
      --url https://cp.example.com:8443 --ca-file ca.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runActivate(cmd.Context(), f, stdout, stderr)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.state, "state", state.DefaultDir(), "state directory")
	fl.StringVar(&f.account, "account", "", "the 10-digit account number (required)")
	fl.StringVar(&f.token, "token", "", "the bot's one-time token, a UUID (required)")
	fl.StringVar(&f.url, "url", "", "the control plane's https URL (required)")
	fl.StringVar(&f.caFile, "ca-file", "", "PEM file of the CA to trust for the control plane (its ca.pem); default: the system's roots")
	fl.StringVar(&f.proxy, "proxy", "", "HTTP proxy to reach the control plane through, http://[user:password@]host:port (CONNECT; kept in the state directory, 0600); default: HTTPS_PROXY/NO_PROXY")
	fl.StringVar(&f.via, "via", "", "connector bot to reach the control plane through, HOST:PORT (its relay forwards bytes only: TLS runs end to end)")
	fl.IntVar(&f.listen, "listen", 0, "port on which emsign-bot run relays other bots (--via) to this bot's control plane; 0 for none")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "log what activation does on stderr")
	return cmd
}

func runActivate(ctx context.Context, f activateFlags, stdout, stderr io.Writer) error {
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelDebug
	}
	o := activation.Options{
		Dir: f.state, Account: f.account, Token: protocol.NewSecret(f.token), URL: f.url,
		CAFile: f.caFile, Proxy: f.proxy, Via: f.via, Listen: f.listen,
		Version: version,
		Logger:  slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
		Now:     time.Now,
	}
	if err := o.Validate(); err != nil {
		return usageError{err}
	}
	s, err := activation.Activate(ctx, o)
	var fe *activation.FieldError
	if errors.As(err, &fe) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "activated: bot %s of account %s; state in %s\n", s.BotID, s.Account, f.state)
	return err
}
