package digicert

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/connectors/ca"
	fake "github.com/emsign/bot/internal/fakes/digicert"
	"github.com/emsign/bot/protocol"
)

func newCSR(t *testing.T, cn string, dns ...string) *x509.CertificateRequest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// setup starts a fake and an Issuer logging to the returned buffer.
func setup(t *testing.T, mod func(*Config)) (*fake.Fake, *Issuer, *bytes.Buffer) {
	t.Helper()
	f := fake.Start(t)
	var logs bytes.Buffer
	cfg := Config{
		BaseURL:        f.URL(),
		APIKey:         protocol.NewSecret(fake.APIKey),
		OrganizationID: fake.OrganizationID,
		SkipApproval:   true,
		PollInterval:   5 * time.Millisecond,
		PollTimeout:    2 * time.Second,
		Logger:         slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	iss, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f, iss, &logs
}

// verify checks the leaf chains to the fake's root through res.Chain and
// names what the CSR asked for.
func verify(t *testing.T, f *fake.Fake, res *ca.IssueResponse, names ...string) {
	t.Helper()
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(f.Root)
	for _, c := range res.Chain {
		if c.Equal(f.Root) {
			t.Error("chain carries the self-signed root")
		}
		inter.AddCert(c)
	}
	for _, n := range names {
		if _, err := res.Certificate.Verify(x509.VerifyOptions{DNSName: n, Roots: roots, Intermediates: inter}); err != nil {
			t.Errorf("verify %s: %v", n, err)
		}
	}
	if len(res.Chain) != 1 || !res.Chain[0].Equal(f.Intermediate) {
		t.Errorf("chain = %d certificates, want the intermediate", len(res.Chain))
	}
}

func TestNewValidates(t *testing.T) {
	key := protocol.NewSecret("k")
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no key", Config{OrganizationID: 1}, "API key"},
		{"no organization", Config{APIKey: key}, "organization"},
		{"bad url", Config{APIKey: key, OrganizationID: 1, BaseURL: "ftp://x"}, "base URL"},
		{"bad product", Config{APIKey: key, OrganizationID: 1, Product: "../x"}, "product"},
		{"bad hash", Config{APIKey: key, OrganizationID: 1, SignatureHash: "md5"}, "signature hash"},
		{"negative", Config{APIKey: key, OrganizationID: 1, PollTimeout: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "digicert: ") {
				t.Fatalf("New: %v, want an error about %s", err, tt.want)
			}
		})
	}
	iss, err := New(Config{APIKey: key, OrganizationID: 1})
	if err != nil {
		t.Fatal(err)
	}
	if iss.cfg.BaseURL != DefaultBaseURL || iss.cfg.Product != "ssl_basic" || iss.cfg.ServerPlatformID != -1 {
		t.Errorf("defaults: %+v", iss.cfg)
	}
}

func TestIssue(t *testing.T) {
	tests := []struct {
		name     string
		polls    int
		lifetime time.Duration
		profile  string
		wantVal  fake.Validity
		wantProd string
	}{
		{"immediate", 0, 0, "", fake.Validity{Years: 1}, "ssl_basic"},
		{"after pending polls", 3, 0, "", fake.Validity{Years: 1}, "ssl_basic"},
		{"lifetime and profile", 0, 90*24*time.Hour - time.Hour, "ssl_plus", fake.Validity{Days: 90}, "ssl_plus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, iss, _ := setup(t, nil)
			f.SetPendingPolls(tt.polls)
			csr := newCSR(t, "www.example.com", "www.example.com", "api.example.com")
			res, err := iss.Issue(context.Background(), &ca.IssueRequest{CSR: csr, Lifetime: tt.lifetime, Profile: tt.profile})
			if err != nil {
				t.Fatal(err)
			}
			verify(t, f, res, "www.example.com", "api.example.com")
			o := f.LastOrder()
			if res.CAOrderID != strconv.Itoa(o.ID) {
				t.Errorf("CAOrderID = %q, want %d", res.CAOrderID, o.ID)
			}
			c := o.Request.Certificate
			if c.CommonName != "www.example.com" || !slices.Equal(c.DNSNames, []string{"api.example.com"}) ||
				c.ServerPlatform == nil || c.ServerPlatform.ID != -1 || c.SignatureHash != "sha256" ||
				o.Request.Organization.ID != fake.OrganizationID || o.Request.PaymentMethod != "balance" ||
				!o.Request.SkipApproval || o.Product != tt.wantProd || *o.Request.OrderValidity != tt.wantVal {
				t.Errorf("order body = %+v (product %s)", o.Request, o.Product)
			}
			gets := 0
			for _, r := range f.Requests() {
				if strings.HasPrefix(r, "GET /services/v2/order/certificate/") {
					gets++
				}
			}
			if gets != tt.polls {
				t.Errorf("%d order polls, want %d", gets, tt.polls)
			}
		})
	}
}

func TestPendingBeyondTimeout(t *testing.T) {
	f, iss, _ := setup(t, func(c *Config) { c.PollTimeout = 40 * time.Millisecond })
	f.SetPendingPolls(1 << 20)
	csr := newCSR(t, "slow.example.com")
	_, err := iss.Issue(context.Background(), &ca.IssueRequest{CSR: csr})
	var pe *PendingError
	if !errors.As(err, &pe) {
		t.Fatalf("Issue: %v, want a *PendingError", err)
	}
	if want := strconv.Itoa(f.LastOrder().ID); pe.OrderID != want || pe.Status != "pending" {
		t.Fatalf("PendingError = %+v, want order %s pending", pe, want)
	}
	if errors.Is(err, ca.ErrRejected) || !strings.HasPrefix(err.Error(), "digicert: ") {
		t.Errorf("error %q", err)
	}
	// The control plane resumes later with the order ID: no second order.
	f.Issue(f.LastOrder().ID)
	res, err := iss.Collect(context.Background(), pe.OrderID)
	if err != nil {
		t.Fatal(err)
	}
	verify(t, f, res, "slow.example.com")
	posts := 0
	for _, r := range f.Requests() {
		if strings.HasPrefix(r, "POST ") {
			posts++
		}
	}
	if res.CAOrderID != pe.OrderID || posts != 1 {
		t.Errorf("collected order %s after %d orders, want %s after 1", res.CAOrderID, posts, pe.OrderID)
	}
	// A cancelled context also ends the wait with the order ID.
	f.SetPendingPolls(1 << 20)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err = iss.Issue(ctx, &ca.IssueRequest{CSR: csr})
	if !errors.As(err, &pe) || pe.OrderID != strconv.Itoa(f.LastOrder().ID) {
		t.Fatalf("Issue with a short context: %v", err)
	}
}

func TestRejected(t *testing.T) {
	tests := []struct {
		name string
		prep func(*fake.Fake)
		csr  func(*testing.T) *x509.CertificateRequest
		mod  func(*Config)
		want string
	}{
		{"refused name", func(f *fake.Fake) { f.RejectName("bad.example.com", "CAA check failed for bad.example.com") },
			func(t *testing.T) *x509.CertificateRequest { return newCSR(t, "ok.example.com", "bad.example.com") }, nil,
			"CAA check failed for bad.example.com"},
		{"unknown product", nil, func(t *testing.T) *x509.CertificateRequest { return newCSR(t, "ok.example.com") },
			func(c *Config) { c.Product = "ssl_nonesuch" }, "not_found|product"},
		{"wrong organization", nil, func(t *testing.T) *x509.CertificateRequest { return newCSR(t, "ok.example.com") },
			func(c *Config) { c.OrganizationID = 99 }, "invalid_organization"},
		{"no names", nil, func(t *testing.T) *x509.CertificateRequest { return newCSR(t, "") }, nil, "names no host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, iss, _ := setup(t, tt.mod)
			if tt.prep != nil {
				tt.prep(f)
			}
			_, err := iss.Issue(context.Background(), &ca.IssueRequest{CSR: tt.csr(t)})
			if !errors.Is(err, ca.ErrRejected) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Issue: %v, want ErrRejected with %q", err, tt.want)
			}
		})
	}
}

func TestBadAPIKey(t *testing.T) {
	const wrong = "wrong-key-9d8c7b6a5f4e"
	f, iss, logs := setup(t, func(c *Config) { c.APIKey = protocol.NewSecret(wrong) })
	_, err := iss.Issue(context.Background(), &ca.IssueRequest{CSR: newCSR(t, "www.example.com")})
	if !errors.Is(err, ErrAuth) || errors.Is(err, ca.ErrRejected) {
		t.Fatalf("Issue: %v, want ErrAuth", err)
	}
	if !strings.Contains(err.Error(), "digicert") || !strings.Contains(err.Error(), "invalid_api_key") {
		t.Errorf("error %q does not name the connector and DigiCert's code", err)
	}
	_, err2 := iss.Status(context.Background(), &ca.StatusRequest{CAOrderID: "1001"})
	for _, s := range []string{err.Error(), err2.Error(), fmt.Sprintf("%+v %#v", iss.cfg, iss.cfg), logs.String()} {
		if strings.Contains(s, wrong) || strings.Contains(s, fake.APIKey) {
			t.Errorf("an API key leaked: %s", s)
		}
	}
	if !errors.Is(err2, ErrAuth) {
		t.Errorf("Status: %v, want ErrAuth", err2)
	}
	if n := len(f.Requests()); n != 2 {
		t.Errorf("%d requests, want 2 (no retry with a refused key)", n)
	}
}

func TestServerErrorIsRetryable(t *testing.T) {
	f, iss, _ := setup(t, nil)
	for _, status := range []int{500, 503, 429} {
		f.FailNext(status)
		_, err := iss.Issue(context.Background(), &ca.IssueRequest{CSR: newCSR(t, "www.example.com")})
		if err == nil || errors.Is(err, ca.ErrRejected) || errors.Is(err, ErrAuth) {
			t.Errorf("HTTP %d: %v, want a plain error", status, err)
		}
	}
}

// TestPollFailureKeepsOrderID: an order placed and then not fetched
// (a 503 while polling) comes back with its order ID, never lost.
func TestPollFailureKeepsOrderID(t *testing.T) {
	f, iss, _ := setup(t, nil)
	f.SetPendingPolls(2)
	f.FailNext(0, 503)
	_, err := iss.Issue(context.Background(), &ca.IssueRequest{CSR: newCSR(t, "www.example.com")})
	var pe *PendingError
	if !errors.As(err, &pe) || pe.OrderID != strconv.Itoa(f.LastOrder().ID) || pe.Err == nil || errors.Is(err, ca.ErrRejected) {
		t.Fatalf("Issue: %v, want a *PendingError with the order ID and the 503", err)
	}
	res, err := iss.Collect(context.Background(), pe.OrderID)
	if err != nil {
		t.Fatal(err)
	}
	verify(t, f, res, "www.example.com")
}

func TestRenew(t *testing.T) {
	f, iss, _ := setup(t, nil)
	first, err := iss.Issue(context.Background(), &ca.IssueRequest{CSR: newCSR(t, "www.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		orderID   string
		wantRenew int
		wantErr   error
	}{
		{"with order id", first.CAOrderID, mustAtoi(first.CAOrderID), nil},
		{"without order id", "", 0, nil},
		{"unknown order", "424242", 0, ca.ErrRejected},
		{"not an order id", "abc", 0, ca.ErrNotIssuedHere},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := iss.Renew(context.Background(), &ca.RenewRequest{Certificate: first.Certificate, CAOrderID: tt.orderID, CSR: newCSR(t, "www.example.com")})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Renew: %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			verify(t, f, res, "www.example.com")
			if got := f.LastOrder().Request.RenewalOfOrderID; got != tt.wantRenew || res.CAOrderID == first.CAOrderID {
				t.Errorf("renewal_of_order_id = %d, want %d (new order %s)", got, tt.wantRenew, res.CAOrderID)
			}
		})
	}
}

func mustAtoi(s string) int { n, _ := strconv.Atoi(s); return n }

func TestRevokeAndStatus(t *testing.T) {
	tests := []struct {
		name       string
		byOrder    bool
		reason     int
		admin      bool
		skip       bool
		wantErr    error
		wantReason string
		wantStatus string
	}{
		{"by order", true, ca.ReasonKeyCompromise, true, true, nil, "key_compromise", ca.StatusRevoked},
		{"by serial", false, ca.ReasonSuperseded, true, true, nil, "superseded", ca.StatusGood},
		{"hold not supported", true, ca.ReasonCertificateHold, true, true, ca.ErrNotSupported, "", ca.StatusGood},
		{"needs approval", true, ca.ReasonCessationOfOperation, true, false, nil, "", ca.StatusGood},
		{"not admin", true, ca.ReasonUnspecified, false, true, ErrAuth, "", ca.StatusGood},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, iss, _ := setup(t, func(c *Config) { c.SkipApproval = tt.skip })
			f.SetAdmin(tt.admin)
			res, err := iss.Issue(context.Background(), &ca.IssueRequest{CSR: newCSR(t, "www.example.com")})
			if err != nil {
				t.Fatal(err)
			}
			st, err := iss.Status(context.Background(), &ca.StatusRequest{CAOrderID: res.CAOrderID, Certificate: res.Certificate})
			if err != nil || st.Status != ca.StatusGood {
				t.Fatalf("Status before: %+v, %v", st, err)
			}
			req := &ca.RevokeRequest{Certificate: res.Certificate, Reason: tt.reason, Remarks: "rotated away, ticket 42"}
			if tt.byOrder {
				req.CAOrderID = res.CAOrderID
			}
			err = iss.Revoke(context.Background(), req)
			var rp *RevocationPendingError
			switch {
			case !tt.skip:
				if !errors.As(err, &rp) || rp.RequestID == "" {
					t.Fatalf("Revoke: %v, want a *RevocationPendingError", err)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Revoke: %v, want %v", err, tt.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			}
			o := f.Order(mustAtoi(res.CAOrderID))
			if tt.wantReason != "" {
				if o.Revocation == nil || o.Revocation.RevocationReason != tt.wantReason || o.Revocation.Comments != req.Remarks {
					t.Errorf("revocation = %+v", o.Revocation)
				}
				if !tt.byOrder && !o.CertRevoked {
					t.Error("certificate not revoked")
				}
			} else if o.Revocation != nil {
				t.Errorf("revoked anyway: %+v", o.Revocation)
			}
			// Status by order ID, and by the certificate alone (serial).
			for _, sr := range []*ca.StatusRequest{{CAOrderID: res.CAOrderID}, {Certificate: res.Certificate}} {
				st, err := iss.Status(context.Background(), sr)
				if err != nil || st.Status != tt.wantStatus {
					t.Errorf("Status(%+v) = %+v, %v; want %s", sr.CAOrderID, st, err, tt.wantStatus)
				}
			}
		})
	}
}

func TestNotIssuedHere(t *testing.T) {
	_, iss, _ := setup(t, nil)
	if _, err := iss.Status(context.Background(), &ca.StatusRequest{CAOrderID: "777"}); !errors.Is(err, ca.ErrNotIssuedHere) {
		t.Errorf("Status of an unknown order: %v", err)
	}
	if err := iss.Revoke(context.Background(), &ca.RevokeRequest{CAOrderID: "777"}); !errors.Is(err, ca.ErrNotIssuedHere) {
		t.Errorf("Revoke of an unknown order: %v", err)
	}
	if _, err := iss.Collect(context.Background(), "777"); !errors.Is(err, ca.ErrNotIssuedHere) {
		t.Errorf("Collect of an unknown order: %v", err)
	}
}
