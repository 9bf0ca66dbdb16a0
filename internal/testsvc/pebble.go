package testsvc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

const (
	pebbleVersion = "v2.10.1"
	pebbleInstall = "pebble is not installed: run scripts/gotools.sh (go install github.com/letsencrypt/pebble/v2/cmd/pebble@" + pebbleVersion + ")"
)

// PebbleOptions configures StartPebble.
type PebbleOptions struct {
	// EABKeys maps EAB key IDs to their HMAC keys (base64url); when set,
	// Pebble requires external account binding for every new account.
	EABKeys map[string]string
	// HTTPPort is the port Pebble's VA fetches HTTP-01 tokens from; every
	// name resolves to 127.0.0.1 (a DNS server in the test process), so a
	// solver listening on 127.0.0.1:HTTPPort is really validated. Zero
	// runs Pebble with PEBBLE_VA_ALWAYS_VALID=1 (nothing validated).
	HTTPPort int
	// AuthzReuse is the percentage of orders that reuse a valid
	// authorization of the same account (Pebble's PEBBLE_AUTHZREUSE); 0
	// makes every order validate afresh.
	AuthzReuse int
	// Blocklist are names Pebble refuses (rejectedIdentifier).
	Blocklist []string
}

// Pebble is a running Pebble on 127.0.0.1, stopped by the test's cleanup.
type Pebble struct {
	// DirectoryURL is the ACME directory.
	DirectoryURL string
	// ManagementURL is the management interface (roots, intermediates).
	ManagementURL string
	// MinicaFile is the PEM file of the CA that signs Pebble's HTTPS
	// certificate, for clients configured by file (emsign-cp's CA config).
	MinicaFile string
	// HTTPClient trusts Pebble's HTTPS certificate (minica).
	HTTPClient *http.Client
	log        *lockedBuffer
}

// Log is what Pebble printed so far.
func (p *Pebble) Log() string { return p.log.String() }

// freePort returns a TCP port free on 127.0.0.1 now.
func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// StartPebble runs Let's Encrypt's Pebble test CA on free ports of
// 127.0.0.1 and waits until its directory answers. A missing binary fails
// the test, naming scripts/gotools.sh.
func StartPebble(tb testing.TB, opts PebbleOptions) *Pebble {
	tb.Helper()
	bin, err := exec.LookPath("pebble")
	if err != nil {
		gopath, _ := exec.Command("go", "env", "GOPATH").Output()
		bin = filepath.Join(strings.TrimSpace(string(gopath)), "bin", "pebble")
		if _, err := os.Stat(bin); err != nil {
			tb.Fatal(pebbleInstall)
		}
	}
	modcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		tb.Fatalf("go env GOMODCACHE: %v", err)
	}
	certs := filepath.Join(strings.TrimSpace(string(modcache)), "github.com/letsencrypt/pebble/v2@"+pebbleVersion, "test/certs")
	minica, err := os.ReadFile(filepath.Join(certs, "pebble.minica.pem"))
	if err != nil {
		tb.Fatalf("pebble's test certificates are not in the module cache (%v): %s", err, pebbleInstall)
	}

	dir := tb.TempDir()
	listen, mgmt := freePort(tb), freePort(tb)
	httpPort := opts.HTTPPort
	if httpPort == 0 {
		httpPort = freePort(tb)
	}
	conf := map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", listen),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", mgmt),
		"certificate":                    filepath.Join(certs, "localhost/cert.pem"),
		"privateKey":                     filepath.Join(certs, "localhost/key.pem"),
		"httpPort":                       httpPort,
		"tlsPort":                        freePort(tb),
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": len(opts.EABKeys) > 0,
		"externalAccountMACKeys":         opts.EABKeys,
		"domainBlocklist":                opts.Blocklist,
		// Retry-After of 1s (0 would make clients fall back to their own
		// default, often longer).
		"retryAfter":   map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm": "ecdsa",
		"profiles": map[string]any{
			"default":    map[string]any{"description": "default", "validityPeriod": 7776000},
			"shortlived": map[string]any{"description": "short", "validityPeriod": 518400},
		},
	}
	b, err := json.Marshal(map[string]any{"pebble": conf})
	if err != nil {
		tb.Fatal(err)
	}
	confFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(confFile, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	args := []string{"-config", confFile}
	env := append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0",
		"PEBBLE_AUTHZREUSE="+strconv.Itoa(opts.AuthzReuse))
	if opts.HTTPPort != 0 {
		args = append(args, "-dnsserver", startLoopbackDNS(tb))
	} else {
		env = append(env, "PEBBLE_VA_ALWAYS_VALID=1")
	}

	out := &lockedBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting pebble: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if tb.Failed() {
			tb.Logf("pebble log:\n%s", out.String())
		}
	})

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(minica) {
		tb.Fatal("pebble.minica.pem holds no certificate")
	}
	p := &Pebble{
		MinicaFile:    filepath.Join(certs, "pebble.minica.pem"),
		DirectoryURL:  fmt.Sprintf("https://127.0.0.1:%d/dir", listen),
		ManagementURL: fmt.Sprintf("https://127.0.0.1:%d", mgmt),
		HTTPClient: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Proxy: nil},
		},
		log: out,
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := p.HTTPClient.Get(p.DirectoryURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-exited:
			tb.Fatalf("pebble exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pebble's directory %s does not answer (%v): %s", p.DirectoryURL, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Root returns the root that signs what Pebble issues (new at every
// start), from the management interface.
func (p *Pebble) Root(tb testing.TB) *x509.Certificate {
	tb.Helper()
	resp, err := p.HTTPClient.Get(p.ManagementURL + "/roots/0")
	if err != nil {
		tb.Fatalf("pebble root: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		tb.Fatalf("pebble root: no PEM in %q", b)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		tb.Fatalf("pebble root: %v", err)
	}
	return c
}

// startLoopbackDNS serves DNS over TCP (what Pebble's VA uses with
// -dnsserver) on 127.0.0.1, answering every A question with 127.0.0.1
// and every other question with no answer, so that Pebble validates
// HTTP-01 against a solver on this machine. It stops with the test.
func startLoopbackDNS(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(func() { cancel(); ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go serveDNSConn(ctx, conn)
		}
	}()
	return ln.Addr().String()
}

func serveDNSConn(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	for ctx.Err() == nil {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		var l [2]byte
		if _, err := io.ReadFull(conn, l[:]); err != nil {
			return
		}
		msg := make([]byte, int(l[0])<<8|int(l[1]))
		if _, err := io.ReadFull(conn, msg); err != nil {
			return
		}
		ans, err := answerDNS(msg)
		if err != nil {
			return
		}
		out := append([]byte{byte(len(ans) >> 8), byte(len(ans))}, ans...)
		if _, err := conn.Write(out); err != nil {
			return
		}
	}
}

// answerDNS answers one query: A 127.0.0.1 for A questions, nothing
// (NOERROR) for the rest.
func answerDNS(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if q.Type == dnsmessage.TypeA {
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
		if err := b.AResource(rh, dnsmessage.AResource{A: [4]byte{127, 0, 0, 1}}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}
