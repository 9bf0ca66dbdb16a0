package cloudflare

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	fake "github.com/emsign/bot/internal/fakes/cloudflare"
	"github.com/emsign/bot/protocol"
)

const (
	zoneID      = fake.ZoneID
	secretToken = "tok-SECRET-7f3a9c"
	secretKey   = "key-SECRET-1b2c3d"
)

type env struct {
	api   *fake.Fake
	edge  *edge
	log   *bytes.Buffer
	dials []string
	mu    sync.Mutex
}

func setup(t *testing.T) *env {
	t.Helper()
	e := &env{log: &bytes.Buffer{}}
	e.api = fake.StartWith(t, fake.Options{DocumentedHosts: true})
	e.edge = startEdge(t, map[string]*tls.Certificate{
		"www.example.com": selfSigned(t, "www.example.com", time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)),
		"example.com":     selfSigned(t, "example.com", time.Date(2028, 3, 1, 0, 0, 0, 0, time.UTC)),
	})
	return e
}

func (e *env) source(t *testing.T, mod func(*Config)) *Source {
	t.Helper()
	cfg := Config{
		Logger:       slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		PerPage:      2,
		MaxRetryWait: 10 * time.Millisecond,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			e.mu.Lock()
			e.dials = append(e.dials, addr)
			e.mu.Unlock()
			host, _, _ := net.SplitHostPort(addr)
			if _, ok := e.edge.certs[host]; !ok {
				return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}}
			}
			var d net.Dialer
			return d.DialContext(ctx, network, e.edge.addr) // only ever 127.0.0.1
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *env) target(t *testing.T, auth string) protocol.Target {
	t.Helper()
	raw := "cloudflare://" + zoneID + "?endpoint=" + url.QueryEscape(e.api.URL()) + "&" + auth
	tg, err := protocol.ParseTarget(raw)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func run(t *testing.T, s *Source, tg protocol.Target) (map[string]protocol.Finding, []protocol.Finding, error) {
	t.Helper()
	byLoc := map[string]protocol.Finding{}
	var all []protocol.Finding
	err := s.Discover(context.Background(), tg, func(f protocol.Finding) error {
		all = append(all, f)
		byLoc[f.Location.String()] = f
		return nil
	})
	return byLoc, all, err
}

func (e *env) noSecrets(t *testing.T, texts ...string) {
	t.Helper()
	texts = append(texts, e.log.String())
	for _, s := range texts {
		for _, sec := range []string{secretToken, secretKey} {
			if strings.Contains(s, sec) {
				t.Errorf("secret leaked: %q", s)
			}
		}
	}
}

func checkFull(t *testing.T, e *env, byLoc map[string]protocol.Finding, all []protocol.Finding) {
	t.Helper()
	if len(all) != 8 {
		for _, f := range all {
			t.Logf("%s %s %q", f.Location, f.Format, f.Error)
		}
		t.Fatalf("got %d findings, want 8 (3 custom, 2 packs, 3 origin)", len(all))
	}
	loc := func(id string) string { return "cloudflare://zone/" + zoneID + "/" + id }

	c1 := byLoc[loc("2458ce5a0c1c4d7f8a6e1b2c3d4e5f60")]
	if c1.Error != "" || len(c1.Chain) != 1 || c1.Format != protocol.FormatTLS || c1.Source != "cloudflare" {
		t.Fatalf("custom cert by handshake: %+v", c1)
	}
	a := c1.Attributes
	if a["kind"] != KindCustom || a["status"] != "active" || a["hosts"] != "www.example.com,example.com" || a["issuer"] != "GlobalSign" ||
		a["expires_on"] != "2030-01-01T00:00:00Z" || a["fetched_by"] != "tls-handshake" || a["handshake_host"] != "www.example.com:443" || a["served_matches"] != "true" {
		t.Errorf("custom attributes: %v", a)
	}
	if c1.TLS == nil || c1.TLS.SNI != "www.example.com" {
		t.Errorf("custom TLS info: %+v", c1.TLS)
	}
	c2 := byLoc[loc("3569df6b1d2d5e8f9b7f2c3d4e5f6071")]
	if c2.Chain != nil || !strings.Contains(c2.Error, "handshake to gone.example.com:443 failed") || !strings.Contains(c2.Error, "no such host") || c2.Attributes["issuer"] != "DigiCert" {
		t.Errorf("unresolvable custom cert: %+v", c2)
	}
	c3 := byLoc[loc("467ae07c2e3e6f9a0c8a3d4e5f607182")]
	if c3.Chain != nil || !strings.Contains(c3.Error, `"pending"`) {
		t.Errorf("pending custom cert: %+v", c3)
	}
	p1 := byLoc[loc("3822ff90-ea29-44df-9e55-21300bb9419b")]
	if p1.Error != "" || len(p1.Chain) != 1 || p1.Format != protocol.FormatTLS || p1.Attributes["kind"] != KindPack ||
		p1.Attributes["certificate_authority"] != "lets_encrypt" || p1.Attributes["hosts"] != "example.com,*.example.com" ||
		p1.Attributes["served_matches"] != "true" || !strings.Contains(p1.Attributes["certificates"], "7e7b8deba8538af625850b7b2530034c issuer=LetsEncrypt status=active expires_on=2028-03-01T00:00:00Z") {
		t.Errorf("pack: %+v", p1)
	}
	p2 := byLoc[loc("4933aa01-fb3a-55e0-af66-32411cca520c")]
	if p2.Chain != nil || !strings.Contains(p2.Error, "pending_validation") || p2.Attributes["certificate_authority"] != "google" {
		t.Errorf("pending pack: %+v", p2)
	}
	o0 := byLoc[loc("328578533902268680212849205732770752308931942346")]
	if o0.Error != "" || len(o0.Chain) != 1 || o0.Format != protocol.FormatPEM || o0.Attributes["kind"] != KindOrigin || o0.Attributes["hosts"] != "example.com,*.example.com" {
		t.Errorf("origin: %+v", o0)
	}
	o2 := byLoc[loc("528578533902268680212849205732770752308931942348")]
	if o2.Chain != nil || !strings.Contains(o2.Error, "no PEM") {
		t.Errorf("origin without PEM: %+v", o2)
	}
	// Pages followed (3 custom, 2 packs and 3 origin at 2 a page).
	reqs := strings.Join(e.api.Requests(), "\n")
	for _, want := range []string{
		"/client/v4/zones/" + zoneID + "/custom_certificates?page=2&per_page=2",
		"/client/v4/certificates?page=2&per_page=2&zone_id=" + zoneID,
		"/client/v4/zones/" + zoneID + "/ssl/certificate_packs?page=1&per_page=2&status=all",
	} {
		if !strings.Contains(reqs, want) {
			t.Errorf("no request %s in\n%s", want, reqs)
		}
	}
	if strings.Contains(reqs, "page=3") {
		t.Errorf("asked past total_pages:\n%s", reqs)
	}
	// Handshakes only to hosts the fake edge knows, each once.
	for _, d := range e.dials {
		if d != "www.example.com:443" && d != "example.com:443" && d != "gone.example.com:443" {
			t.Errorf("unexpected dial %s", d)
		}
	}
	if len(e.dials) != 3 {
		t.Errorf("dials %v, want one per host", e.dials)
	}
	for _, f := range all {
		if l, err := protocol.ParseLocation(f.Location.String()); err != nil || l != f.Location {
			t.Errorf("location %s does not round-trip: %v", f.Location, err)
		}
	}
}

func TestTokenAuth(t *testing.T) {
	e := setup(t)
	e.api.SetToken(secretToken)
	byLoc, all, err := run(t, e.source(t, nil), e.target(t, "api_token="+secretToken))
	if err != nil {
		t.Fatal(err)
	}
	checkFull(t, e, byLoc, all)
	e.noSecrets(t, fmt.Sprint(all))
}

func TestKeyEmailAuth(t *testing.T) {
	e := setup(t)
	e.api.SetKey("ops@example.com", secretKey)
	byLoc, all, err := run(t, e.source(t, nil), e.target(t, "email=ops%40example.com&api_key="+secretKey))
	if err != nil {
		t.Fatal(err)
	}
	checkFull(t, e, byLoc, all)
	e.noSecrets(t, fmt.Sprint(all))
}

func TestAuthErrors(t *testing.T) {
	for _, tc := range []struct {
		name, fail string
		wrong      bool
		want       []string
	}{
		{name: "wrong token", wrong: true, want: []string{"HTTP 401", "Authentication error (code 10000)", "list custom certificates"}},
		{name: "403 on origin", fail: fake.Fail403, want: []string{"HTTP 403", "Unauthorized to access requested resource (code 9109)", "list origin CA certificates"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			e.api.SetToken("other")
			if !tc.wrong {
				e.api.SetToken(secretToken)
				e.api.Fail(fake.ListOrigin, tc.fail)
			}
			_, _, err := run(t, e.source(t, nil), e.target(t, "api_token="+secretToken))
			var ae *AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *AuthError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			e.noSecrets(t, err.Error())
		})
	}
}

func TestRetryAndListErrors(t *testing.T) {
	for _, tc := range []struct {
		list, mode, want string
	}{
		{fake.ListCustom, fake.Fail429Once, ""},
		{fake.ListPacks, fake.Fail429Always, "list certificate packs: HTTP 429 Too Many Requests: Please wait and consider throttling your request speed (code 971)"},
		{fake.ListCustom, fake.Fail500, "list custom certificates: HTTP 500 Internal Server Error (the body is not a Cloudflare API error)"},
		{fake.ListOrigin, fake.FailGarbage, "list origin CA certificates: malformed response (HTTP 200"},
	} {
		t.Run(tc.list+"-"+tc.mode, func(t *testing.T) {
			e := setup(t)
			e.api.SetToken(secretToken)
			e.api.Fail(tc.list, tc.mode)
			start := time.Now()
			_, all, err := run(t, e.source(t, func(c *Config) { c.MaxRetries = 2 }), e.target(t, "api_token="+secretToken))
			if err != nil {
				t.Fatal(err)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("retry wait not bounded: %v", time.Since(start))
			}
			var zoneErr *protocol.Finding
			for i, f := range all {
				if f.Location.String() == "cloudflare://zone/"+zoneID {
					zoneErr = &all[i]
				}
			}
			if tc.want == "" {
				if zoneErr != nil || len(all) != 8 {
					t.Fatalf("after one 429: %d findings, zone error %+v", len(all), zoneErr)
				}
				if n := e.api.Calls(tc.list); n < 2 {
					t.Errorf("no retry: %d calls", n)
				}
				return
			}
			if zoneErr == nil || !strings.Contains(zoneErr.Error, tc.want) {
				t.Fatalf("zone finding %+v, want error containing %q", zoneErr, tc.want)
			}
			if len(all) < 4 {
				t.Errorf("the other lists were not read: %d findings", len(all))
			}
			if n := e.api.Calls(fake.ListPacks); tc.mode == fake.Fail429Always && n != 3 {
				t.Errorf("429: %d calls, want 1 + 2 retries", n)
			}
			e.noSecrets(t, fmt.Sprint(all))
		})
	}
}

func TestWrongScheme(t *testing.T) {
	s, _ := New(Config{})
	if err := s.Discover(context.Background(), protocol.Target{Scheme: "tls"}, nil); err == nil {
		t.Fatal("want an error")
	}
}

// served certificates: a 127.0.0.1 TLS listener answering by SNI.
type edge struct {
	addr  string
	certs map[string]*tls.Certificate
}

func selfSigned(t *testing.T, cn string, notAfter time.Time) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{cn},
		NotBefore:    time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func startEdge(t *testing.T, certs map[string]*tls.Certificate) *edge {
	t.Helper()
	e := &edge{certs: certs}
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.TLS = &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if c, ok := certs[h.ServerName]; ok {
			return c, nil
		}
		return nil, fmt.Errorf("no certificate for %q", h.ServerName)
	}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	e.addr = srv.Listener.Addr().String()
	return e
}
