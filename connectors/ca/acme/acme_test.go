package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	xacme "golang.org/x/crypto/acme"

	"github.com/emsign/bot/connectors/ca"
	"github.com/emsign/bot/protocol"
)

func ecKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func csrFor(t testing.TB, key crypto.Signer, cn string, dns []string, ips ...net.IP) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn}, DNSNames: dns, IPAddresses: ips,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func TestNewValidates(t *testing.T) {
	ec := ecKey(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	good := func() Config {
		return Config{DirectoryURL: "https://ca.example/dir", AccountKey: ec, Solver: NewHTTPSolver()}
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   string // "" for success
	}{
		{"valid", func(*Config) {}, ""},
		{"valid with EAB", func(c *Config) {
			c.EABKeyID, c.EABHMACKey = "kid-1", protocol.NewSecret("zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W")
		}, ""},
		{"valid pre-validated without solver", func(c *Config) { c.Solver, c.PreValidated = nil, true }, ""},
		{"http directory", func(c *Config) { c.DirectoryURL = "http://ca.example/dir" }, "https URL"},
		{"no directory", func(c *Config) { c.DirectoryURL = "" }, "https URL"},
		{"no key", func(c *Config) { c.AccountKey = nil }, "account key: required"},
		{"small RSA key", func(c *Config) { c.AccountKey = small }, "RSA 1024 bits"},
		{"Ed25519 key", func(c *Config) { c.AccountKey = ed }, "RSA or ECDSA"},
		{"P-224 key", func(c *Config) { c.AccountKey = p224 }, "curve"},
		{"EAB key ID alone", func(c *Config) { c.EABKeyID = "kid-1" }, "give both or neither"},
		{"EAB HMAC alone", func(c *Config) { c.EABHMACKey = protocol.NewSecret("abcd") }, "give both or neither"},
		{"EAB HMAC not base64", func(c *Config) { c.EABKeyID, c.EABHMACKey = "kid-1", protocol.NewSecret("not base64 !!") }, "not base64url"},
		{"bad contact", func(c *Config) { c.Contact = "mailto:x" }, "not an e-mail"},
		{"no solver", func(c *Config) { c.Solver = nil }, "solver is required"},
		{"negative poll", func(c *Config) { c.PollTimeout = -1 }, "PollTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good()
			tt.change(&cfg)
			_, err := New(cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("New: %v, want an error containing %q", err, tt.want)
			case err != nil && !strings.HasPrefix(err.Error(), "acme: "):
				t.Errorf("error %q not prefixed with the connector's name", err)
			}
			if err != nil && strings.Contains(err.Error(), "not base64") && strings.Contains(err.Error(), "!!") {
				t.Errorf("the error quotes the HMAC key: %v", err)
			}
		})
	}
}

// The EAB HMAC key never shows in a printed Config.
func TestConfigHidesHMAC(t *testing.T) {
	cfg := Config{EABKeyID: "kid-1", EABHMACKey: protocol.NewSecret("s3cr3t-hmac")}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(f, cfg); strings.Contains(s, "s3cr3t-hmac") {
			t.Errorf("%s shows the HMAC key: %s", f, s)
		}
	}
}

func TestDecodeHMAC(t *testing.T) {
	for _, s := range []string{"AAECAw", "AAECAw==", "AAECAw=="} {
		k, err := decodeHMAC(s)
		if err != nil || len(k) != 4 || k[3] != 3 {
			t.Errorf("decodeHMAC(%q) = %v, %v", s, k, err)
		}
	}
	if _, err := decodeHMAC(""); err == nil {
		t.Error("empty key accepted")
	}
}

func TestClassify(t *testing.T) {
	prob := func(status int, typ string, sub ...string) *xacme.Error {
		e := &xacme.Error{StatusCode: status, ProblemType: "urn:ietf:params:acme:error:" + typ, Detail: "d"}
		for _, s := range sub {
			e.Subproblems = append(e.Subproblems, xacme.Subproblem{Type: "urn:ietf:params:acme:error:" + s})
		}
		return e
	}
	tests := []struct {
		name     string
		err      error
		rejected bool
	}{
		{"rejectedIdentifier", prob(400, "rejectedIdentifier"), true},
		{"badCSR", prob(400, "badCSR"), true},
		{"unauthorized", prob(403, "unauthorized"), true},
		{"caa", prob(403, "caa"), true},
		{"malformed", prob(400, "malformed"), true},
		{"externalAccountRequired", prob(400, "externalAccountRequired"), true},
		{"unsupportedIdentifier", prob(400, "unsupportedIdentifier"), true},
		{"compound with a rejected subproblem", prob(400, "compound", "caa"), true},
		{"serverInternal", prob(500, "serverInternal"), false},
		{"rateLimited", prob(429, "rateLimited"), false},
		{"badNonce", prob(400, "badNonce"), false},
		{"5xx without type", &xacme.Error{StatusCode: 503}, false},
		{"authorization unauthorized", &xacme.AuthorizationError{Identifier: "a.example", Errors: []error{prob(403, "unauthorized")}}, true},
		{"authorization connection", &xacme.AuthorizationError{Identifier: "a.example", Errors: []error{prob(400, "connection")}}, false},
		{"authorization dns", &xacme.AuthorizationError{Identifier: "a.example", Errors: []error{prob(400, "dns")}}, false},
		{"order badCSR", &xacme.OrderError{OrderURL: "u", Status: "invalid", Problem: prob(400, "badCSR")}, true},
		{"order without problem", &xacme.OrderError{OrderURL: "u", Status: "invalid"}, false},
		{"timeout", context.DeadlineExceeded, false},
		{"network", &net.OpError{Op: "dial", Err: errors.New("refused")}, false},
		{"wrapped", fmt.Errorf("x: %w", prob(400, "rejectedIdentifier")), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.err)
			if errors.Is(got, ca.ErrRejected) != tt.rejected {
				t.Errorf("classify(%v) = %v, rejected want %v", tt.err, got, tt.rejected)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("classify lost the cause: %v", got)
			}
		})
	}
	if classify(nil) != nil {
		t.Error("classify(nil) != nil")
	}
}

func TestIdentifiers(t *testing.T) {
	k := ecKey(t)
	tests := []struct {
		name string
		csr  *x509.CertificateRequest
		want string // names, or an error fragment
	}{
		{"dns and ip, deduplicated and lowercased", csrFor(t, k, "", []string{"A.example", "a.example", "b.example"}, net.ParseIP("192.0.2.1")), "a.example,b.example,192.0.2.1"},
		{"cn among the SANs", csrFor(t, k, "a.example", []string{"a.example"}), "a.example"},
		{"cn outside the SANs", csrFor(t, k, "c.example", []string{"a.example"}), "common name"},
		{"no SAN", csrFor(t, k, "a.example", nil), "no DNS or IP SAN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ids, err := identifiers(tt.csr)
			got := ""
			if err != nil {
				got = err.Error()
			} else {
				got = names(ids)
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("identifiers = %q, want %q", got, tt.want)
			}
		})
	}
	email := &x509.CertificateRequest{EmailAddresses: []string{"a@example.com"}, DNSNames: []string{"a.example"}}
	if _, err := identifiers(email); err == nil {
		t.Error("an e-mail SAN was accepted")
	}
}

// Requests refused before any network call wrap ErrRejected.
func TestIssueRefusesLocally(t *testing.T) {
	c, err := New(Config{DirectoryURL: "https://127.0.0.1:1/dir", AccountKey: ecKey(t), Solver: NewHTTPSolver()})
	if err != nil {
		t.Fatal(err)
	}
	k := ecKey(t)
	for name, req := range map[string]*ca.IssueRequest{
		"nil":          nil,
		"no CSR":       {},
		"CN not a SAN": {CSR: csrFor(t, k, "x.example", []string{"y.example"})},
	} {
		if _, err := c.Issue(context.Background(), req); !errors.Is(err, ca.ErrRejected) {
			t.Errorf("%s: Issue = %v, want ErrRejected", name, err)
		}
	}
	if _, err := c.Status(context.Background(), &ca.StatusRequest{}); !errors.Is(err, ca.ErrNotSupported) {
		t.Errorf("Status = %v, want ErrNotSupported", err)
	}
}

// A CA that is down is a temporary error, not a refusal.
func TestIssueServerDownIsTemporary(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"type":"urn:ietf:params:acme:error:serverInternal","detail":"down"}`)
	}))
	defer srv.Close()
	c, err := New(Config{DirectoryURL: srv.URL + "/dir", AccountKey: ecKey(t), Solver: NewHTTPSolver(), HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	c.client.RetryBackoff = func(int, *http.Request, *http.Response) time.Duration { return 0 }
	_, err = c.Issue(context.Background(), &ca.IssueRequest{CSR: csrFor(t, ecKey(t), "", []string{"a.example"})})
	if err == nil || errors.Is(err, ca.ErrRejected) {
		t.Fatalf("Issue = %v, want a temporary error", err)
	}
}

func TestHTTPSolver(t *testing.T) {
	s := NewHTTPSolver()
	srv := httptest.NewServer(s)
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	ctx := context.Background()
	if err := s.Present(ctx, "a.example", "tok_en-1", "tok_en-1.thumb"); err != nil {
		t.Fatal(err)
	}
	if code, body := get(ChallengePath + "tok_en-1"); code != 200 || body != "tok_en-1.thumb" {
		t.Errorf("served %d %q", code, body)
	}
	if code, _ := get(ChallengePath + "other"); code != 404 {
		t.Errorf("unknown token: %d", code)
	}
	if code, _ := get("/tok_en-1"); code != 404 {
		t.Errorf("outside the challenge path: %d", code)
	}
	if err := s.Present(ctx, "a.example", "../etc", "x"); err == nil {
		t.Error("a token with a slash was accepted")
	}
	if err := s.CleanUp(ctx, "a.example", "tok_en-1"); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(ChallengePath + "tok_en-1"); code != 404 || s.Len() != 0 {
		t.Errorf("after CleanUp: %d, %d tokens", code, s.Len())
	}
}
