package tls

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ctls "crypto/tls"

	"github.com/emsign/bot/connectors"
	"github.com/emsign/bot/protocol"
)

func port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// discover runs one target and collects what it emits.
func discover(t *testing.T, src *Source, target string) []protocol.Finding {
	t.Helper()
	tg, err := protocol.ParseTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var out []protocol.Finding
	err = src.Discover(context.Background(), tg, func(f protocol.Finding) error {
		mu.Lock()
		defer mu.Unlock()
		out = append(out, f)
		return nil
	})
	if err != nil {
		t.Fatalf("discover %s: %v", target, err)
	}
	slices.SortFunc(out, func(a, b protocol.Finding) int { return strings.Compare(a.Location.String(), b.Location.String()) })
	return out
}

func newSource(t *testing.T, cfg Config) *Source {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := port(ln)
	ln.Close()
	return p
}

// B4.1: a port range with TLS servers, a plain TCP service and closed ports.
func TestPortRangeFindsEachEndpointWithItsChain(t *testing.T) {
	ca := newTestCA(t)
	rsaCert := ca.leaf(t, "rsa.example.com", "rsa")
	ecCert := ca.leaf(t, "ec.example.com", "ecdsa")
	rsaLn := serveTLS(t, &ctls.Config{Certificates: []ctls.Certificate{rsaCert}})
	ecLn := serveTLS(t, &ctls.Config{Certificates: []ctls.Certificate{ecCert}})
	plain := servePlain(t, []byte("SSH-2.0-OpenSSH_9.2\r\n"))
	closed := closedPort(t)

	ports := []int{port(rsaLn), port(ecLn), port(plain), closed}
	target := "tls://127.0.0.1:" + joinInts(ports)
	got := discover(t, newSource(t, Config{}), target)

	want := map[int]struct {
		leaf []byte
		err  string
	}{
		port(rsaLn): {leaf: rsaCert.Certificate[0]},
		port(ecLn):  {leaf: ecCert.Certificate[0]},
		port(plain): {err: "does not speak TLS"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d findings, want %d (closed port %d must give none): %+v", len(got), len(want), closed, got)
	}
	for _, f := range got {
		_, portStr, _ := net.SplitHostPort(f.Location.Host)
		p, _ := strconv.Atoi(portStr)
		w, ok := want[p]
		if !ok {
			t.Errorf("unexpected finding at %s", f.Location)
			continue
		}
		if w.err != "" {
			if !strings.Contains(f.Error, w.err) {
				t.Errorf("%s: error %q, want it to contain %q", f.Location, f.Error, w.err)
			}
			continue
		}
		if f.Error != "" {
			t.Errorf("%s: unexpected error %s", f.Location, f.Error)
		}
		if len(f.Chain) != 2 || string(f.Chain[0]) != string(w.leaf) || string(f.Chain[1]) != string(ca.cert.Raw) {
			t.Errorf("%s: chain of %d certificates is not leaf, CA", f.Location, len(f.Chain))
		}
		if f.TLS == nil || f.TLS.Version != "TLS 1.3" || f.TLS.Group != "X25519" || f.TLS.ALPN != "" {
			t.Errorf("%s: tls info %+v", f.Location, f.TLS)
		}
		if f.Location.String() != fmt.Sprintf("tls://127.0.0.1:%d", p) {
			t.Errorf("location %s", f.Location)
		}
		if f.Source != "tls" || f.Format != "tls" || f.SeenAt.IsZero() {
			t.Errorf("%s: source %q format %q seen %v", f.Location, f.Source, f.Format, f.SeenAt)
		}
	}
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// servePlain writes banner to each connection, as a non-TLS service would.
func servePlain(t *testing.T, banner []byte) net.Listener {
	return serveRaw(t, func(c net.Conn) {
		_, _ = c.Write(banner)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Read(make([]byte, 1024))
	})
}

// SNI picks the certificate; a bare IP gets the server's default.
func TestSNI(t *testing.T) {
	ca := newTestCA(t)
	def := ca.leaf(t, "default.example.com", "ecdsa")
	named := ca.leaf(t, "www.example.com", "ecdsa")
	local := ca.leaf(t, "localhost", "ecdsa")
	ln := serveTLS(t, &ctls.Config{GetCertificate: func(h *ctls.ClientHelloInfo) (*ctls.Certificate, error) {
		switch h.ServerName {
		case "www.example.com":
			return &named, nil
		case "localhost":
			return &local, nil
		}
		return &def, nil
	}})
	src := newSource(t, Config{})
	tests := []struct {
		target, location, sni string
		leaf                  []byte
	}{
		{fmt.Sprintf("tls://127.0.0.1:%d", port(ln)), fmt.Sprintf("tls://127.0.0.1:%d", port(ln)), "", def.Certificate[0]},
		{fmt.Sprintf("tls://127.0.0.1:%d?sni=www.example.com", port(ln)), fmt.Sprintf("tls://127.0.0.1:%d?sni=www.example.com", port(ln)), "www.example.com", named.Certificate[0]},
		{fmt.Sprintf("tls://localhost:%d", port(ln)), fmt.Sprintf("tls://localhost:%d", port(ln)), "localhost", local.Certificate[0]},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			got := discover(t, src, tc.target)
			if len(got) != 1 {
				t.Fatalf("got %d findings: %+v", len(got), got)
			}
			f := got[0]
			if f.Error != "" || string(f.Chain[0]) != string(tc.leaf) {
				t.Fatalf("wrong certificate or error %q", f.Error)
			}
			if f.Location.String() != tc.location || f.TLS.SNI != tc.sni {
				t.Errorf("location %s sni %q, want %s %q", f.Location, f.TLS.SNI, tc.location, tc.sni)
			}
		})
	}
}

// Hostile and broken servers each cost one timeout and one error line.
func TestMisbehavingServers(t *testing.T) {
	stall := serveRaw(t, func(c net.Conn) { time.Sleep(3 * time.Second) })
	reset := serveRaw(t, func(c net.Conn) {
		buf := make([]byte, 10)
		_, _ = c.Read(buf)
		_ = c.(*net.TCPConn).SetLinger(0) // RST instead of FIN
	})
	garbage := serveRaw(t, func(c net.Conn) {
		_, _ = c.Write([]byte("\x16\x03\x03\x00\x05garbagegarbage"))
		time.Sleep(time.Second)
	})
	tests := []struct {
		name string
		ln   net.Listener
		want string
	}{
		{"stall", stall, "timed out"},
		{"reset", reset, "tls handshake"},
		{"garbage", garbage, "tls handshake"},
	}
	src := newSource(t, Config{HandshakeTimeout: 300 * time.Millisecond})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			got := discover(t, src, fmt.Sprintf("tls://127.0.0.1:%d", port(tc.ln)))
			if len(got) != 1 || !strings.Contains(got[0].Error, tc.want) {
				t.Fatalf("got %+v, want one error containing %q", got, tc.want)
			}
			// Not a timed test of speed: a hang here would be a bug, so the
			// bound is generous.
			if d := time.Since(start); d > 2500*time.Millisecond {
				t.Errorf("took %s with a 300ms handshake timeout", d)
			}
		})
	}
}

// A port the user named alone is reported when refused; in a range it is not.
func TestRefusedPort(t *testing.T) {
	p := closedPort(t)
	src := newSource(t, Config{})
	if got := discover(t, src, fmt.Sprintf("tls://127.0.0.1:%d", p)); len(got) != 1 || !strings.Contains(got[0].Error, "connect") {
		t.Errorf("single refused port: %+v", got)
	}
	if got := discover(t, src, fmt.Sprintf("tls://127.0.0.1:%d-%d", p, p+1)); len(got) != 0 {
		t.Errorf("refused ports in a range gave lines: %+v", got)
	}
	if got := discover(t, src, "tls://no-such-host.invalid:443,8443"); len(got) != 1 || !strings.Contains(got[0].Error, "resolve no-such-host.invalid") {
		t.Errorf("unresolvable name should give one error line: %+v", got)
	}
}

// TLS versions and key exchange groups are recorded, X25519MLKEM768 included.
func TestSessionInfo(t *testing.T) {
	cert := newCert(t, "v.example.com", "ecdsa")
	tests := []struct {
		name        string
		server      *ctls.Config
		postQuantum bool
		version     string
		group       string
	}{
		{"tls1.0", &ctls.Config{Certificates: []ctls.Certificate{cert}, MaxVersion: ctls.VersionTLS10, MinVersion: ctls.VersionTLS10}, false, "TLS 1.0", "X25519"},
		{"tls1.2", &ctls.Config{Certificates: []ctls.Certificate{cert}, MaxVersion: ctls.VersionTLS12}, false, "TLS 1.2", "X25519"},
		{"p256 only", &ctls.Config{Certificates: []ctls.Certificate{cert}, CurvePreferences: []ctls.CurveID{ctls.CurveP256}}, false, "TLS 1.3", "P-256"},
		{"pq offered", &ctls.Config{Certificates: []ctls.Certificate{cert}}, true, "TLS 1.3", "X25519MLKEM768"},
		{"pq not offered", &ctls.Config{Certificates: []ctls.Certificate{cert}}, false, "TLS 1.3", "X25519"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln := serveTLS(t, tc.server)
			got := discover(t, newSource(t, Config{PostQuantum: tc.postQuantum}), fmt.Sprintf("tls://127.0.0.1:%d", port(ln)))
			if len(got) != 1 || got[0].TLS == nil {
				t.Fatalf("got %+v", got)
			}
			info := got[0].TLS
			if info.Version != tc.version || info.Group != tc.group || info.PostQuantum != (tc.group == "X25519MLKEM768") {
				t.Errorf("got %+v, want version %s group %s", info, tc.version, tc.group)
			}
		})
	}
}

// A cancelled scan stops at once, even with servers that stall.
func TestCancelStopsTheScan(t *testing.T) {
	stall := serveRaw(t, func(c net.Conn) { time.Sleep(20 * time.Second) })
	tg, _ := protocol.ParseTarget(fmt.Sprintf("tls://127.0.0.1:%d", port(stall)))
	src := newSource(t, Config{HandshakeTimeout: 20 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- src.Discover(ctx, tg, func(protocol.Finding) error { return nil }) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want the context's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Discover did not return after its context ended")
	}
}

// An emit error ends the scan with that error.
func TestEmitErrorStops(t *testing.T) {
	ln := serveTLS(t, &ctls.Config{Certificates: []ctls.Certificate{newCert(t, "e.example.com", "ecdsa")}})
	tg, _ := protocol.ParseTarget(fmt.Sprintf("tls://127.0.0.1:%d", port(ln)))
	stop := errors.New("sink full")
	err := newSource(t, Config{}).Discover(context.Background(), tg, func(protocol.Finding) error { return stop })
	if !errors.Is(err, stop) {
		t.Errorf("got %v, want %v", err, stop)
	}
}

// openssl s_server, a TLS stack other than Go's, serving an RSA chain.
func TestOpenSSLServer(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is needed for this test: apt-get install openssl")
	}
	ca := newTestCA(t)
	leaf := ca.leaf(t, "openssl.example.com", "rsa")
	dir := t.TempDir()
	writePEM(t, filepath.Join(dir, "cert.pem"), "CERTIFICATE", leaf.Certificate[0])
	writePEM(t, filepath.Join(dir, "chain.pem"), "CERTIFICATE", ca.cert.Raw)
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "key.pem"), "PRIVATE KEY", keyDER)

	p := closedPort(t)
	cmd := exec.Command(openssl, "s_server", "-accept", fmt.Sprintf("127.0.0.1:%d", p), "-cert", filepath.Join(dir, "cert.pem"),
		"-key", filepath.Join(dir, "key.pem"), "-cert_chain", filepath.Join(dir, "chain.pem"), "-quiet", "-www")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitListening(t, p)

	got := discover(t, newSource(t, Config{}), fmt.Sprintf("tls://127.0.0.1:%d", p))
	if len(got) != 1 || got[0].Error != "" {
		t.Fatalf("got %+v", got)
	}
	if len(got[0].Chain) != 2 || string(got[0].Chain[0]) != string(leaf.Certificate[0]) || string(got[0].Chain[1]) != string(ca.cert.Raw) {
		t.Errorf("chain from openssl is not leaf, CA")
	}
	if got[0].TLS.Version != "TLS 1.3" {
		t.Errorf("tls %+v", got[0].TLS)
	}
}

func writePEM(tb testing.TB, path, typ string, ders ...[]byte) {
	tb.Helper()
	var out []byte
	for _, der := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})...)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		tb.Fatal(err)
	}
}

func waitListening(t testing.TB, p int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on port %d", p)
}

// Progress counts probes and open ports.
func TestProgress(t *testing.T) {
	ln := serveTLS(t, &ctls.Config{Certificates: []ctls.Certificate{newCert(t, "p.example.com", "ecdsa")}})
	closed := closedPort(t)
	var pr connectors.Progress
	discover(t, newSource(t, Config{Progress: &pr}), fmt.Sprintf("tls://127.0.0.1:%d,%d", port(ln), closed))
	if pr.Probed.Load() != 2 || pr.Open.Load() != 1 {
		t.Errorf("probed %d open %d, want 2 and 1", pr.Probed.Load(), pr.Open.Load())
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	if _, err := New(Config{Threads: -1}); err == nil {
		t.Error("negative threads accepted")
	}
}
