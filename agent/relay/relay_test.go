package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emsign/bot/agent/activation"
	"github.com/emsign/bot/agent/client"
	"github.com/emsign/bot/agent/internal/fakecp"
	"github.com/emsign/bot/agent/netpath"
	"github.com/emsign/bot/agent/relay"
	"github.com/emsign/bot/agent/state"
	"github.com/emsign/bot/internal/testlog"
	"github.com/emsign/bot/protocol"
)

const (
	account = "1234567890"
	token   = "0b7c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3"
)

func upstreamOf(t *testing.T, cp *fakecp.Server) string {
	t.Helper()
	u, err := url.Parse(cp.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// startRelay runs a relay until the test ends.
func startRelay(t *testing.T, cfg relay.Config) *relay.Relay {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	r, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return r
}

// recorder keeps every byte a relay forwards.
type recorder struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	dial []string
}

func (rec *recorder) Dial(next func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		rec.mu.Lock()
		rec.dial = append(rec.dial, addr)
		rec.mu.Unlock()
		c, err := next(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &recConn{Conn: c, rec: rec}, nil
	}
}

func (rec *recorder) Contains(s string) bool {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return bytes.Contains(rec.buf.Bytes(), []byte(s))
}

func (rec *recorder) Len() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.buf.Len()
}

type recConn struct {
	net.Conn
	rec *recorder
}

func (c *recConn) Write(p []byte) (int, error) {
	c.rec.mu.Lock()
	c.rec.buf.Write(p)
	c.rec.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *recConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.rec.mu.Lock()
	c.rec.buf.Write(p[:n])
	c.rec.mu.Unlock()
	return n, err
}

func direct(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// activateVia activates a bot through the relay at via and returns its
// mTLS client, dialing the same way.
func activateVia(t *testing.T, cp *fakecp.Server, via string) *client.Client {
	t.Helper()
	cp.AddToken(account, token)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, cp.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "state")
	s, err := activation.Activate(context.Background(), activation.Options{
		Dir: dir, Account: account, Token: protocol.NewSecret(token), URL: cp.URL, CAFile: caFile, Via: via, Version: "1.0.0",
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	np, err := netpath.New(netpath.Settings{URL: s.URL, Proxy: s.Proxy, Via: s.Via})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{URL: s.URL, TLS: st.TLSConfig(), Version: "1.0.0", Dial: np.DialContext, Path: np.Describe(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

const marker = "MARKER-plaintext-7f3a9c"

// upload starts a scan and posts one batch whose bodies hold marker.
func upload(ctx context.Context, c *client.Client, scan string, seq int64) error {
	start := json.RawMessage(fmt.Sprintf(`{"scan_id":%q,"trigger":"job","started":"2026-01-01T00:00:00Z","targets":1,"note":%q}`, scan, marker))
	if err := c.StartScan(ctx, start); err != nil {
		return err
	}
	_, err := c.PostFindings(ctx, scan, json.RawMessage(fmt.Sprintf(`{"seq":%d,"findings":[],"note":%q}`, seq, marker)))
	return err
}

func TestViaRelayIsTLSEndToEnd(t *testing.T) {
	cp := fakecp.New(t)
	rec := &recorder{}
	r := startRelay(t, relay.Config{Upstream: upstreamOf(t, cp), Dial: rec.Dial(direct)})
	c := activateVia(t, cp, r.Addr().String())
	if err := upload(context.Background(), c, "scan-1", 1); err != nil {
		t.Fatal(err)
	}
	cp.Do(func(cp *fakecp.Server) {
		if len(cp.Activations) != 1 || cp.Activations[0].Path != "via "+r.Addr().String() {
			t.Errorf("activations %+v", cp.Activations)
		}
		if _, ok := cp.Batches[fakecp.Key{Scan: "scan-1", Seq: 1}]; !ok {
			t.Error("the batch did not arrive")
		}
		seen := false
		for _, b := range cp.RawBodies {
			seen = seen || bytes.Contains(b, []byte(marker))
		}
		if !seen {
			t.Error("the control plane never saw the marker")
		}
	})
	if rec.Len() < 1000 {
		t.Fatalf("the relay forwarded only %d bytes", rec.Len())
	}
	if rec.Contains(marker) || rec.Contains(protocol.PathFindings[:10]) {
		t.Error("the relay saw plaintext")
	}
	for _, a := range rec.dial {
		if a != upstreamOf(t, cp) {
			t.Errorf("the relay dialed %s", a)
		}
	}
}

func TestRelayChain(t *testing.T) {
	cp := fakecp.New(t)
	// C: nearest to the control plane; B relays via C; the bot via B.
	c := startRelay(t, relay.Config{Upstream: upstreamOf(t, cp)})
	npB, err := netpath.New(netpath.Settings{URL: cp.URL, Via: c.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	b := startRelay(t, relay.Config{Upstream: upstreamOf(t, cp), Dial: npB.DialContext})
	bot := activateVia(t, cp, b.Addr().String())
	if err := upload(context.Background(), bot, "scan-chain", 1); err != nil {
		t.Fatal(err)
	}
	if _, gapless := cp.FindingsOf("scan-chain"); !gapless {
		t.Error("batches missing")
	}
}

func TestRelayRestartLosesNothing(t *testing.T) {
	cp := fakecp.New(t)
	first, err := relay.New(relay.Config{Listen: "127.0.0.1:0", Upstream: upstreamOf(t, cp)})
	if err != nil {
		t.Fatal(err)
	}
	addr := first.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Serve(ctx) }()
	bot := activateVia(t, cp, addr)
	if err := upload(context.Background(), bot, "scan-r", 1); err != nil {
		t.Fatal(err)
	}
	// The relay stops (graceful stop closes the open tunnels).
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_, err = bot.PostFindings(context.Background(), "scan-r", protocol.FindingsBatch{Seq: 2})
	var ue *client.UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("with the relay down: %v, want unreachable (the runner keeps it spooled)", err)
	}
	// It comes back on the same port: the batch goes through.
	startRelay(t, relay.Config{Listen: addr, Upstream: upstreamOf(t, cp)})
	if _, err := bot.PostFindings(context.Background(), "scan-r", protocol.FindingsBatch{Seq: 2}); err != nil {
		t.Fatal(err)
	}
	if fs, gapless := cp.FindingsOf("scan-r"); !gapless {
		t.Errorf("findings %v not gapless", fs)
	}
}

func TestRelayUpstreamDownThenBack(t *testing.T) {
	cp := fakecp.New(t)
	r := startRelay(t, relay.Config{Upstream: upstreamOf(t, cp)})
	bot := activateVia(t, cp, r.Addr().String())
	cp.Do(func(cp *fakecp.Server) { cp.Down = true })
	if err := upload(context.Background(), bot, "scan-d", 1); err == nil {
		t.Fatal("upload with the control plane down succeeded")
	}
	cp.Do(func(cp *fakecp.Server) { cp.Down = false })
	if err := upload(context.Background(), bot, "scan-d", 1); err != nil {
		t.Fatal(err)
	}
}

// echoServer is a plain TCP upstream that echoes.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func TestRelayRefusesBeyondItsTunnelLimit(t *testing.T) {
	var logs testlog.Buffer
	r := startRelay(t, relay.Config{Upstream: echoServer(t), MaxTunnels: 2, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	var open []net.Conn
	for i := range 2 {
		c, err := net.Dial("tcp", r.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A round trip proves the tunnel is up (and holds its slot).
		fmt.Fprintf(c, "ping%d", i)
		buf := make([]byte, 5)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != fmt.Sprintf("ping%d", i) {
			t.Fatalf("tunnel %d: %q %v", i, buf, err)
		}
		open = append(open, c)
	}
	extra, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(extra, "hello")
	if n, err := extra.Read(make([]byte, 5)); err == nil || n > 0 {
		t.Errorf("the third tunnel was served (%d bytes, %v)", n, err)
	}
	if !strings.Contains(logs.String(), "at the limit") {
		t.Errorf("no log of the refusal: %s", logs.String())
	}
	// A slot freed is a slot usable again.
	open[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", r.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(c, "again")
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 5)
		_, err = io.ReadFull(c, buf)
		c.Close()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a freed slot is not reused")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "tunnel closed") || !strings.Contains(logs.String(), "bytes_up=5") {
		t.Errorf("tunnels not logged on close: %s", logs.String())
	}
}

func TestRelayOnlyDialsItsUpstream(t *testing.T) {
	up := echoServer(t)
	rec := &recorder{}
	r := startRelay(t, relay.Config{Upstream: up, Dial: rec.Dial(direct)})
	for _, req := range []string{
		"CONNECT example.com:22 HTTP/1.1\r\nHost: example.com:22\r\n\r\n",
		"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
		"\x05\x01\x00",
	} {
		c, err := net.Dial("tcp", r.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, req)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, len(req))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != req {
			t.Errorf("not piped byte for byte: %q %v", buf, err)
		}
		c.Close()
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.dial) != 3 {
		t.Errorf("dials %v", rec.dial)
	}
	for _, a := range rec.dial {
		if a != up {
			t.Errorf("the relay dialed %s, not its upstream %s", a, up)
		}
	}
}

func TestRelayIdleTimeout(t *testing.T) {
	r := startRelay(t, relay.Config{Upstream: echoServer(t), IdleTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read on an idle tunnel succeeded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("idle tunnel closed after %v", d)
	}
}
