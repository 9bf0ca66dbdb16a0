package runner

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emsign/bot/agent/activation"
	"github.com/emsign/bot/agent/client"
	"github.com/emsign/bot/agent/internal/fakecp"
	"github.com/emsign/bot/agent/spool"
	"github.com/emsign/bot/agent/state"
	"github.com/emsign/bot/internal/testlog"
	"github.com/emsign/bot/protocol"
)

// bot is an activated bot against a fake control plane.
type bot struct {
	t     *testing.T
	cp    *fakecp.Server
	dir   string
	logs  *testlog.Buffer
	clock Clock
	// tweak adjusts each runner's configuration.
	tweak func(*Config)
	// dial, if set, is the client's dialer (a relay or proxy path).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func newBot(t *testing.T) *bot {
	t.Helper()
	cp := fakecp.New(t)
	const account, token = "1234567890", "0b7c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3"
	cp.AddToken(account, token)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, cp.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := activation.Activate(context.Background(), activation.Options{
		Dir: dir, Account: account, Token: protocol.NewSecret(token), URL: cp.URL, CAFile: caFile, Version: "test",
	}); err != nil {
		t.Fatal(err)
	}
	return &bot{t: t, cp: cp, dir: dir, logs: &testlog.Buffer{}, clock: SystemClock{}}
}

// start runs a runner on the bot's state directory, as `emsign-bot run`
// does; stop cancels it and waits for Run to return.
func (b *bot) start(maxSpool int64) (stop func()) {
	t := b.t
	t.Helper()
	st, err := state.Load(b.dir)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := client.New(client.Config{URL: st.Settings.URL, TLS: st.TLSConfig(), Version: "test", Logger: log, Dial: b.dial})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(st.SpoolPath(), spool.Options{MaxBytes: maxSpool, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Client: c, Spool: sp, Logger: log, Clock: b.clock,
		Backoff:      client.Backoff{Min: 5 * time.Millisecond, Max: 40 * time.Millisecond},
		RefusedDelay: 50 * time.Millisecond,
		PollWait:     300 * time.Millisecond,
		BatchSize:    10,
		BatchAge:     50 * time.Millisecond,
	}
	if b.tweak != nil {
		b.tweak(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the runner did not stop within 10s of its context ending")
			}
			c.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

// spoolFiles lists the record files in the bot's spool.
func (b *bot) spoolFiles() []string {
	entries, _ := os.ReadDir(filepath.Join(b.dir, state.SpoolDir))
	var names []string
	for _, e := range entries {
		if !e.IsDir() && !strings.HasSuffix(e.Name(), spool.MarkSuffix) {
			names = append(names, e.Name())
		}
	}
	return names
}

// mark reads the bot's open-scan marker.
func (b *bot) mark() (o openScan, ok bool) {
	b.t.Helper()
	raw, err := os.ReadFile(filepath.Join(b.dir, state.SpoolDir, markName))
	if err != nil {
		return openScan{}, false
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		b.t.Fatalf("marker %q: %v", raw, err)
	}
	return o, true
}

func (b *bot) spoolHas(suffix string) bool {
	for _, n := range b.spoolFiles() {
		if strings.HasSuffix(n, suffix) {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds, failing the test after 15s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// certDir writes n certificates, one PEM file each, into a new directory
// and returns its file:/// target.
func certDir(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(1000 + i)),
			Subject:      pkix.Name{CommonName: fmt.Sprintf("host%d.example.com", i)},
			DNSNames:     []string{fmt.Sprintf("host%d.example.com", i)},
			NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, fmt.Sprintf("cert%03d.pem", i))
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return "file://" + protocol.FileToURIPath(dir)
}

// stallingTarget is a TCP listener that accepts and never answers: a TLS
// scan of it runs until its handshake timeout or its context ends.
func stallingTarget(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return "tls://" + ln.Addr().String()
}

// scanConfig is an on-demand configuration with targets.
func scanConfig(version string, targets ...string) protocol.BotConfig {
	return protocol.BotConfig{Status: protocol.BotActive, Targets: targets,
		Schedule: protocol.Schedule{Kind: protocol.ScheduleOnDemand}, Version: version}
}

// checkScan checks what the control plane holds for a scan: start, gapless
// batches each received once or more, complete with the batch count.
func checkScan(t *testing.T, cp *fakecp.Server, scan string, wantCerts int) protocol.ScanComplete {
	t.Helper()
	fs, gapless := cp.FindingsOf(scan)
	if !gapless {
		t.Errorf("scan %s: batches have a gap", scan)
	}
	certs := 0
	seen := map[string]bool{}
	for _, f := range fs {
		if len(f.Chain) > 0 {
			certs++
			if seen[f.Location.String()] {
				t.Errorf("location %s arrived twice", f.Location)
			}
			seen[f.Location.String()] = true
		}
	}
	if certs != wantCerts {
		t.Errorf("scan %s: %d certificates arrived, want %d", scan, certs, wantCerts)
	}
	var c protocol.ScanComplete
	cp.Do(func(cp *fakecp.Server) {
		var ok bool
		if _, ok = cp.Starts[scan]; !ok {
			t.Errorf("scan %s: no start", scan)
		}
		if c, ok = cp.Completes[scan]; !ok {
			t.Errorf("scan %s: no completion", scan)
		}
		n := int64(0)
		for k := range cp.Batches {
			if k.Scan == scan {
				n++
			}
		}
		if c.Batches != n {
			t.Errorf("scan %s: completion counts %d batches, %d arrived", scan, c.Batches, n)
		}
		if c.Certificates != wantCerts && c.Complete {
			t.Errorf("scan %s: completion counts %d certificates, want %d", scan, c.Certificates, wantCerts)
		}
		if cp.CompletePosts[scan] != 1 {
			t.Errorf("scan %s: completion posted %d times", scan, cp.CompletePosts[scan])
		}
	})
	return c
}

// fakeClock is a Clock the test moves by hand.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	afters  int
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(now time.Time) *fakeClock { return &fakeClock{now: now} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.afters++
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{c.now.Add(d), ch})
	return ch
}

// Afters counts the calls to After: the loop calls it each time it waits.
func (c *fakeClock) Afters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.afters
}

// Set moves the clock to t and fires every timer due by then.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(t) {
			w.ch <- t
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}
