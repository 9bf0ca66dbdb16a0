package activation

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/emsign/bot/agent/client"
	"github.com/emsign/bot/agent/internal/fakecp"
	"github.com/emsign/bot/agent/relay"
	"github.com/emsign/bot/agent/state"
	"github.com/emsign/bot/protocol"
)

const (
	account = "1234567890"
	token   = "0b7c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3"
)

func options(t *testing.T, cp *fakecp.Server) Options {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, cp.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	// A real relay to the fake control plane: the activation goes via it
	// (the proxy is stored, and unused while a relay is set).
	u, err := url.Parse(cp.URL)
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{Listen: "127.0.0.1:0", Upstream: u.Host})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return Options{
		Dir: filepath.Join(t.TempDir(), "state"), Account: account, Token: protocol.NewSecret(token),
		URL: cp.URL, CAFile: caFile, Proxy: "http://user:proxypass@proxy.example:3128", Via: r.Addr().String(), Listen: 7443,
		Version:  "1.2.3",
		Hostname: func() (string, error) { return "bot-host", nil },
		IPs:      func() ([]string, error) { return []string{"10.1.2.3"}, nil },
	}
}

func TestActivateWritesPrivateStateWithoutToken(t *testing.T) {
	cp := fakecp.New(t)
	cp.AddToken(account, token)
	o := options(t, cp)
	s, err := Activate(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if s.BotID == "" || s.Account != account || s.URL != cp.URL || s.Via != o.Via || s.Listen != 7443 || s.Proxy != o.Proxy {
		t.Errorf("settings %+v", s)
	}
	cp.Do(func(cp *fakecp.Server) {
		if len(cp.Activations) != 1 {
			t.Fatalf("%d activation requests", len(cp.Activations))
		}
		req := cp.Activations[0]
		if req.Hostname != "bot-host" || req.OS != runtime.GOOS || req.Arch != runtime.GOARCH || req.Version != "1.2.3" ||
			req.Capability != protocol.CapabilityVersion || len(req.IPs) != 1 || req.Path != "via "+o.Via {
			t.Errorf("activation request %+v", req)
		}
	})

	// Directory 0700, files 0600, and the token is in none of them.
	st, err := os.Stat(o.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode %v, want 0700", st.Mode().Perm())
	}
	entries, err := os.ReadDir(o.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
		raw, err := os.ReadFile(filepath.Join(o.Dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(strings.ToLower(string(raw)), token) {
			t.Errorf("the token is written in %s", e.Name())
		}
	}
	if got, want := strings.Join(names, " "), "bot.crt bot.key ca.pem settings.json"; got != want {
		t.Errorf("state files %q, want %q", got, want)
	}

	// The state loads and its mTLS works against the control plane.
	loaded, err := state.Load(o.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Settings.BotID != s.BotID {
		t.Errorf("loaded bot id %q, want %q", loaded.Settings.BotID, s.BotID)
	}
	c, err := client.New(client.Config{URL: cp.URL, TLS: loaded.TLSConfig(), Version: "1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := c.Config(context.Background(), ""); err != nil {
		t.Errorf("mTLS call with the saved state: %v", err)
	}

	// The token was consumed: a second activation is refused, and says so.
	_, err = Activate(context.Background(), o)
	var refused *client.RefusedError
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "activation refused") {
		t.Errorf("second activation: %v, want activation refused", err)
	}
	if strings.Contains(err.Error(), token) {
		t.Error("the token is in an error message")
	}
}

func TestActivateErrors(t *testing.T) {
	cp := fakecp.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "https://" + ln.Addr().String()
	ln.Close()
	tests := []struct {
		name   string
		modify func(*Options)
		field  string // a *FieldError for this flag
		want   string
	}{
		{"short account", func(o *Options) { o.Account = "123" }, "account", "exactly 10 digits"},
		{"letters in account", func(o *Options) { o.Account = "12345abcde" }, "account", "exactly 10 digits"},
		{"no token", func(o *Options) { o.Token = protocol.Secret{} }, "token", "no bot token"},
		{"token not a UUID", func(o *Options) { o.Token = protocol.NewSecret("hunter2") }, "token", "UUID"},
		{"http url", func(o *Options) { o.URL = "http://cp.example" }, "url", "https://"},
		{"no url", func(o *Options) { o.URL = "" }, "url", "no control plane URL"},
		{"bad via", func(o *Options) { o.Via = "host" }, "via", "HOST:PORT"},
		{"bad listen", func(o *Options) { o.Listen = 70000 }, "listen", "not a TCP port"},
		{"bad proxy", func(o *Options) { o.Proxy = "ftp://x:secretpw@h" }, "proxy", "proxy URL"},
		{"missing ca file", func(o *Options) { o.CAFile = "/nonexistent/ca.pem" }, "ca-file", "nonexistent"},
		{"unreachable", func(o *Options) { o.URL = deadURL; o.Via = "" }, "", "cannot reach the control plane at " + deadURL},
		{"relay unreachable", func(o *Options) { o.Via = strings.TrimPrefix(deadURL, "https://") }, "", "relay " + strings.TrimPrefix(deadURL, "https://")},
		{"untrusted server", func(o *Options) { o.CAFile = "" }, "", "--ca-file"},
		{"wrong token", func(o *Options) { o.Token = protocol.NewSecret("00000000-0000-0000-0000-000000000000") }, "", "activation refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := options(t, cp)
			tc.modify(&o)
			_, err := Activate(context.Background(), o)
			if err == nil {
				t.Fatal("no error")
			}
			var fe *FieldError
			if tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field) {
				t.Errorf("error %v does not name --%s", err, tc.field)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			for _, secret := range []string{token, "hunter2", "secretpw"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows a secret", err)
				}
			}
			if _, err := os.Stat(filepath.Join(o.Dir, state.SettingsFile)); err == nil {
				t.Error("a failed activation wrote settings")
			}
		})
	}
}
