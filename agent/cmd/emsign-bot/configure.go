package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/emsign/bot/agent/client"
	"github.com/emsign/bot/agent/netpath"
	"github.com/emsign/bot/agent/state"
)

type configureFlags struct {
	state, url, proxy, via string
	listen                 int
	allowReload            []string
	clearAllowedReload     bool
}

func newConfigureCommand(stdout io.Writer) *cobra.Command {
	var f configureFlags
	cmd := &cobra.Command{
		Use:   "configure [--url URL] [--proxy URL] [--via HOST:PORT] [--listen PORT] [--allow-reload \"CMD ARGS\"]... [--clear-allowed-reload]",
		Short: "Change how an activated bot reaches its control plane, without a new activation",
		Long: `Change the network settings of an activated bot: the control plane's URL,
the HTTP proxy (--proxy "" removes it), the connector bot to relay through
(--via "" removes it) and the port to relay other bots on (--listen 0 stops
relaying). Only the flags given change; the settings file is replaced
atomically. Restart the service to apply.

A rotation runs a reload command after it replaces a certificate only when
this bot allows that exact command: --allow-reload adds one (the program
and its arguments as one string, split on spaces, run without a shell;
repeat the flag for more), --clear-allowed-reload removes them all first.`,
		Example: `  emsign-bot configure --proxy http://user:password@proxy.example:3128
  emsign-bot configure --via 10.0.0.9:7443 --proxy ""
  emsign-bot configure --allow-reload "systemctl reload nginx" --allow-reload "/usr/sbin/nginx -s reload"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fl := cmd.Flags()
			return runConfigure(cmd.Context(), f, fl.Changed("url"), fl.Changed("proxy"), fl.Changed("via"), fl.Changed("listen"), stdout)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.state, "state", state.DefaultDir(), "state directory (written by activate)")
	fl.StringVar(&f.url, "url", "", "the control plane's https URL")
	fl.StringVar(&f.proxy, "proxy", "", `HTTP proxy, http://[user:password@]host:port; "" for none`)
	fl.StringVar(&f.via, "via", "", `connector bot to relay through, HOST:PORT; "" for none`)
	fl.IntVar(&f.listen, "listen", 0, "port to accept relayed bots on; 0 for none")
	fl.StringArrayVar(&f.allowReload, "allow-reload", nil, `allow a rotation to run this reload command, "PROGRAM ARGS" (repeatable; adds)`)
	fl.BoolVar(&f.clearAllowedReload, "clear-allowed-reload", false, "remove every allowed reload command (before --allow-reload adds)")
	return cmd
}

func runConfigure(_ context.Context, f configureFlags, setURL, setProxy, setVia, setListen bool, stdout io.Writer) error {
	if !setURL && !setProxy && !setVia && !setListen && len(f.allowReload) == 0 && !f.clearAllowedReload {
		return usageError{errors.New("nothing to change: give --url, --proxy, --via, --listen, --allow-reload or --clear-allowed-reload")}
	}
	var allow []string
	for _, a := range f.allowReload {
		cmd := strings.Join(strings.Fields(a), " ")
		if cmd == "" {
			return usageError{errors.New("--allow-reload: the command is empty")}
		}
		allow = append(allow, cmd)
	}
	if setURL {
		if _, err := client.ParseURL(f.url); err != nil {
			return usageError{fmt.Errorf("--url: %w", err)}
		}
	}
	if setProxy {
		// The proxy URL may hold a password: never echoed.
		if err := netpath.ValidateProxy(f.proxy); err != nil {
			return usageError{fmt.Errorf("--proxy: %w", err)}
		}
	}
	if setVia {
		if err := netpath.ValidateVia(f.via); err != nil {
			return usageError{fmt.Errorf("--via: %w", err)}
		}
	}
	if setListen && (f.listen < 0 || f.listen > 65535) {
		return usageError{fmt.Errorf("--listen: %d is not a TCP port", f.listen)}
	}
	s, err := state.LoadSettings(f.state)
	if err != nil {
		return err
	}
	if setURL {
		s.URL = f.url
	}
	if setProxy {
		s.Proxy = f.proxy
	}
	if setVia {
		s.Via = f.via
	}
	if setListen {
		s.Listen = f.listen
	}
	if f.clearAllowedReload {
		s.AllowedReload = nil
	}
	for _, a := range allow {
		if !slices.Contains(s.AllowedReload, a) {
			s.AllowedReload = append(s.AllowedReload, a)
		}
	}
	if err := state.SaveSettings(f.state, s); err != nil {
		return err
	}
	np, err := netpath.New(netpath.Settings{URL: s.URL, Proxy: s.Proxy, Via: s.Via})
	if err != nil {
		return err
	}
	proxy := ""
	if s.Proxy != "" {
		proxy = " proxy " + netpath.Redact(s.Proxy)
	}
	listen := ""
	if s.Listen > 0 {
		listen = fmt.Sprintf("; relaying on port %d", s.Listen)
	}
	reload := "; no reload command allowed"
	if len(s.AllowedReload) > 0 {
		reload = fmt.Sprintf("; reload commands allowed: %q", s.AllowedReload)
	}
	_, err = fmt.Fprintf(stdout, "configured: %s, path %s%s%s%s (restart the service to apply)\n", s.URL, np.Describe(), proxy, listen, reload)
	return err
}
