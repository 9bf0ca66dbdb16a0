package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/emsign/bot/agent/client"
	"github.com/emsign/bot/agent/netpath"
	"github.com/emsign/bot/agent/state"
)

type configureFlags struct {
	state, url, proxy, via string
	listen                 int
}

func newConfigureCommand(stdout io.Writer) *cobra.Command {
	var f configureFlags
	cmd := &cobra.Command{
		Use:   "configure [--url URL] [--proxy URL] [--via HOST:PORT] [--listen PORT]",
		Short: "Change how an activated bot reaches its control plane, without a new activation",
		Long: `Change the network settings of an activated bot: the control plane's URL,
the HTTP proxy (--proxy "" removes it), the connector bot to relay through
(--via "" removes it) and the port to relay other bots on (--listen 0 stops
relaying). Only the flags given change; the settings file is replaced
atomically. Restart the service to apply.`,
		Example: `  emsign-bot configure --proxy http://user:password@proxy.example:3128
  emsign-bot configure --via 10.0.0.9:7443 --proxy ""`,
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
	return cmd
}

func runConfigure(_ context.Context, f configureFlags, setURL, setProxy, setVia, setListen bool, stdout io.Writer) error {
	if !setURL && !setProxy && !setVia && !setListen {
		return usageError{errors.New("nothing to change: give --url, --proxy, --via or --listen")}
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
	_, err = fmt.Fprintf(stdout, "configured: %s, path %s%s%s (restart the service to apply)\n", s.URL, np.Describe(), proxy, listen)
	return err
}
