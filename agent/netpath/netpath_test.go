package netpath

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"http://user:secret@proxy:3128":  "http://user:REDACTED@proxy:3128",
		"http://proxy:3128":              "http://proxy:3128",
		"https://u:p%40ss@proxy.ex:8443": "https://u:REDACTED@proxy.ex:8443",
		"http://user@proxy:3128":         "http://user@proxy:3128",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDescribeAndValidate(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "")
	t.Setenv("https_proxy", "")
	p, err := New(Settings{URL: "https://cp.example", Proxy: "http://u:pw@p:3128", Via: "10.0.0.9:7443"})
	if err != nil || p.Describe() != "via 10.0.0.9:7443" || p.ProxyRedacted() != "" {
		t.Errorf("via wins over proxy: %v %q", err, p.Describe())
	}
	p, err = New(Settings{URL: "https://cp.example", Proxy: "http://u:pw@p:3128"})
	if err != nil || p.Describe() != "proxy" || p.ProxyRedacted() != "http://u:REDACTED@p:3128" {
		t.Errorf("proxy: %v %q %q", err, p.Describe(), p.ProxyRedacted())
	}
	for _, bad := range []Settings{{Proxy: "socks5://u:pw-secret@h:1"}, {Proxy: "http://"}, {Via: "nohost"}, {Via: "h:0"}, {Via: ":80"}} {
		_, err := New(bad)
		if err == nil {
			t.Errorf("%+v accepted", bad)
		} else if strings.Contains(err.Error(), "pw-secret") {
			t.Errorf("error shows the password: %v", err)
		}
	}
	if u, err := Upstream("https://cp.example"); err != nil || u != "cp.example:443" {
		t.Errorf("Upstream: %q %v", u, err)
	}
	if u, err := Upstream("https://[::1]:8443/x"); err != nil || u != "[::1]:8443" {
		t.Errorf("Upstream: %q %v", u, err)
	}
}

// connectProxy is a minimal CONNECT proxy recording what it was asked.
type connectProxy struct {
	mu       sync.Mutex
	requests []string
	addr     string
	// to, if set, is where every tunnel really goes.
	to string
}

func startConnectProxy(t *testing.T, to string) *connectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := &connectProxy{addr: ln.Addr().String(), to: to}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cp.mu.Lock()
		cp.requests = append(cp.requests, r.Method+" "+r.Host+" auth="+r.Header.Get("Proxy-Authorization"))
		cp.mu.Unlock()
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		target := r.Host
		if cp.to != "" {
			target = cp.to
		}
		up, err := net.Dial("tcp", target)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		down, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n")
		go func() { io.Copy(up, down); up.Close() }()
		io.Copy(down, up)
		down.Close()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return cp
}

func (cp *connectProxy) Requests() []string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]string(nil), cp.requests...)
}

func echo(t *testing.T) string {
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

func roundTrip(t *testing.T, p *Path, target string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := p.DialContext(ctx, "tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "hello")
	buf := make([]byte, 5)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("round trip: %q %v", buf, err)
	}
}

func TestExplicitProxyConnect(t *testing.T) {
	target := echo(t)
	px := startConnectProxy(t, "")
	p, err := New(Settings{URL: "https://" + target, Proxy: "http://u:pw@" + px.addr})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, p, target)
	reqs := px.Requests()
	// "u:pw" in base64.
	if len(reqs) != 1 || reqs[0] != "CONNECT "+target+" auth=Basic dTpwdw==" {
		t.Errorf("proxy saw %q", reqs)
	}
}

// The environment's proxy is read once per process (net/http caches it):
// each case runs in a child process.
func TestEnvironmentProxy(t *testing.T) {
	if target := os.Getenv("NETPATH_TEST_TARGET"); target != "" {
		p, err := New(Settings{URL: "https://" + target})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := p.Describe(), os.Getenv("NETPATH_TEST_WANT"); got != want {
			t.Fatalf("Describe %q, want %q", got, want)
		}
		if p.Describe() == "proxy" {
			if !strings.Contains(p.ProxyRedacted(), "u:REDACTED@") {
				t.Fatalf("ProxyRedacted %q", p.ProxyRedacted())
			}
			roundTrip(t, p, target)
		}
		return
	}
	// net/http never proxies loopback addresses: the bot asks for a name,
	// the test proxy takes it to the echo server.
	px := startConnectProxy(t, echo(t))
	target := "cp.example.test:443"
	for _, tc := range []struct {
		noProxy, want string
		requests      int
	}{{"", "proxy", 1}, {"example.test", "direct", 0}} {
		before := len(px.Requests())
		cmd := exec.Command(os.Args[0], "-test.run=^TestEnvironmentProxy$", "-test.count=1")
		cmd.Env = append(os.Environ(), "NETPATH_TEST_TARGET="+target, "NETPATH_TEST_WANT="+tc.want,
			"HTTPS_PROXY=http://u:pw@"+px.addr, "https_proxy=", "NO_PROXY="+tc.noProxy, "no_proxy=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("NO_PROXY=%q: %v\n%s", tc.noProxy, err, out)
		}
		if n := len(px.Requests()) - before; n != tc.requests {
			t.Errorf("NO_PROXY=%q: %d CONNECTs, want %d", tc.noProxy, n, tc.requests)
		}
	}
}

func TestProxyDownIsAProxyError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p, err := New(Settings{URL: "https://cp.example", Proxy: "http://u:topsecret@" + addr})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.DialContext(context.Background(), "tcp", "cp.example:443")
	var pe *ProxyError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "u:REDACTED@"+addr) || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("error %v", err)
	}
}
