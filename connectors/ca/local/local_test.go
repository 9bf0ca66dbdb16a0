package local

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emsign/bot/connectors/ca"
)

// testPKI is a root, optionally an intermediate, and the issuing CA's key.
type testPKI struct {
	root   *x509.Certificate
	issuer *x509.Certificate
	signer crypto.Signer
	chain  []*x509.Certificate // above issuer
}

func genKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch kind {
	case "rsa2048":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "rsa1024":
		k, err = rsa.GenerateKey(rand.Reader, 1024)
	case "p256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "p224":
		k, err = ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func caTemplate(cn string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"emSign test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

// mustCert parses what x509.CreateCertificate returns:
// mustCert(t)(x509.CreateCertificate(...)).
func mustCert(t testing.TB) func([]byte, error) *x509.Certificate {
	return func(der []byte, err error) *x509.Certificate {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

// newPKI makes a root CA of kind; with intermediate, an issuing CA below it.
func newPKI(t testing.TB, kind string, intermediate bool) *testPKI {
	t.Helper()
	rootKey := genKey(t, kind)
	rt := caTemplate("Test Root")
	root := mustCert(t)(x509.CreateCertificate(rand.Reader, rt, rt, rootKey.Public(), rootKey))
	if !intermediate {
		return &testPKI{root: root, issuer: root, signer: rootKey}
	}
	key := genKey(t, kind)
	it := caTemplate("Test Issuing CA")
	it.MaxPathLen, it.MaxPathLenZero = 0, true
	issuer := mustCert(t)(x509.CreateCertificate(rand.Reader, it, root, key.Public(), rootKey))
	return &testPKI{root: root, issuer: issuer, signer: key, chain: []*x509.Certificate{root}}
}

func newCA(t testing.TB, p *testPKI, mod func(*Config)) (*CA, *MemoryLedger) {
	t.Helper()
	l := NewMemoryLedger()
	cfg := Config{Certificate: p.issuer, Signer: p.signer, Chain: p.chain, Ledger: l,
		CRLURL: "http://127.0.0.1/crl", OCSPURL: "http://127.0.0.1/ocsp", IssuerURL: "http://127.0.0.1/ca.crt"}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a, l
}

func makeCSR(t testing.TB, key crypto.Signer, cn string, dns ...string) *x509.CertificateRequest {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
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
	p := newPKI(t, "p256", false)
	other := newPKI(t, "p256", false)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(9), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature}
	leafKey := genKey(t, "p256")
	leaf := mustCert(t)(x509.CreateCertificate(rand.Reader, leafTmpl, p.root, leafKey.Public(), p.signer))
	noSign := caTemplate("no sign")
	noSign.KeyUsage = x509.KeyUsageDigitalSignature
	noSignCert := mustCert(t)(x509.CreateCertificate(rand.Reader, noSign, noSign, p.signer.Public(), p.signer))

	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"no ledger", func(c *Config) { c.Ledger = nil }, "required"},
		{"not a CA", func(c *Config) { c.Certificate, c.Signer = leaf, leafKey }, "not a CA"},
		{"no certSign", func(c *Config) { c.Certificate = noSignCert }, "keyCertSign"},
		{"signer mismatch", func(c *Config) { c.Signer = other.signer }, "does not match"},
		{"chain does not sign", func(c *Config) { c.Chain = []*x509.Certificate{other.root} }, "did not sign"},
		{"default above max", func(c *Config) { c.DefaultLifetime, c.MaxLifetime = 48*time.Hour, 24*time.Hour }, "above the maximum"},
		{"missing default profile", func(c *Config) { c.Profiles = map[string]Profile{"x": TLSServerProfile()} }, "default profile"},
		{"certSign without allow_ca", func(c *Config) {
			c.Profiles = map[string]Profile{ProfileTLSServer: {KeyUsage: x509.KeyUsageCertSign}}
		}, "allow_ca"},
		{"bad pattern", func(c *Config) {
			c.Profiles = map[string]Profile{ProfileTLSServer: {KeyUsage: x509.KeyUsageDigitalSignature, Names: []string{"a.*.example.com"}}}
		}, "name pattern"},
		{"profile lifetime above max", func(c *Config) {
			c.Profiles = map[string]Profile{ProfileTLSServer: {KeyUsage: x509.KeyUsageDigitalSignature, MaxLifetime: 500 * 24 * time.Hour}}
		}, "max lifetime"},
		{"empty key usage", func(c *Config) { c.Profiles = map[string]Profile{ProfileTLSServer: {}} }, "key usage"},
		{"bad crl url", func(c *Config) { c.CRLURL = "ldap://x/crl" }, "crl_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Certificate: p.issuer, Signer: p.signer, Ledger: NewMemoryLedger()}
			tt.mod(&cfg)
			_, err := New(cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "local ca: ") {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestIssue(t *testing.T) {
	tests := []struct {
		caKind, leafKind string
		intermediate     bool
		wantKeyEnc       bool
	}{
		{"p256", "rsa2048", true, true},
		{"p256", "p256", true, false},
		{"rsa2048", "p384", false, false},
		{"p256", "ed25519", false, false},
		{"ed25519", "p256", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.caKind+"/"+tt.leafKind, func(t *testing.T) {
			p := newPKI(t, tt.caKind, tt.intermediate)
			a, l := newCA(t, p, nil)
			key := genKey(t, tt.leafKind)
			before := time.Now()
			resp, err := a.Issue(context.Background(), &ca.IssueRequest{CSR: makeCSR(t, key, "www.example.com", "www.example.com", "example.com")})
			if err != nil {
				t.Fatal(err)
			}
			c := resp.Certificate
			if len(resp.Chain) == 0 || !resp.Chain[0].Equal(p.issuer) {
				t.Fatalf("chain does not start with the issuing CA")
			}
			for _, ch := range resp.Chain {
				if ch.Equal(p.root) && tt.intermediate {
					t.Fatalf("chain holds the root")
				}
			}
			roots, inter := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(p.root)
			for _, ch := range resp.Chain {
				inter.AddCert(ch)
			}
			if _, err := c.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: roots, Intermediates: inter}); err != nil {
				t.Fatalf("verify: %v", err)
			}
			if got := c.KeyUsage&x509.KeyUsageKeyEncipherment != 0; got != tt.wantKeyEnc || c.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
				t.Errorf("key usage %b", c.KeyUsage)
			}
			if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || c.IsCA {
				t.Errorf("eku %v, ca %v", c.ExtKeyUsage, c.IsCA)
			}
			if len(c.SubjectKeyId) == 0 || !bytes.Equal(c.AuthorityKeyId, a.caKeyID) {
				t.Errorf("ski %x aki %x (ca %x)", c.SubjectKeyId, c.AuthorityKeyId, a.caKeyID)
			}
			if c.CRLDistributionPoints[0] != "http://127.0.0.1/crl" || c.OCSPServer[0] != "http://127.0.0.1/ocsp" || c.IssuingCertificateURL[0] != "http://127.0.0.1/ca.crt" {
				t.Errorf("urls %v %v %v", c.CRLDistributionPoints, c.OCSPServer, c.IssuingCertificateURL)
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 || c.SerialNumber.BitLen() < 64 {
				t.Errorf("serial %x", c.SerialNumber)
			}
			if d := before.Sub(c.NotBefore); d < 59*time.Second || d > 2*time.Minute {
				t.Errorf("not before backdated by %s", d)
			}
			if d := c.NotAfter.Sub(before); d < DefaultLifetime-time.Minute || d > DefaultLifetime+time.Minute {
				t.Errorf("lifetime %s", d)
			}
			rec, err := l.Get(context.Background(), resp.CAOrderID)
			if err != nil || !bytes.Equal(rec.DER, c.Raw) || rec.Status != ca.StatusGood || rec.Profile != ProfileTLSServer {
				t.Fatalf("ledger: %+v %v", rec, err)
			}
		})
	}
}

func TestIssueNames(t *testing.T) {
	p := newPKI(t, "p256", false)
	a, _ := newCA(t, p, nil)
	key := genKey(t, "p256")
	tests := []struct {
		name    string
		subject pkix.Name
		dns     []string
		ips     []net.IP
		wantDNS []string
		wantIPs int
	}{
		{"SAN only, empty subject (Pebble style)", pkix.Name{}, []string{"a.example.com", "B.example.com."}, nil, []string{"a.example.com", "b.example.com"}, 0},
		{"CN only", pkix.Name{CommonName: "host.example.com"}, nil, nil, []string{"host.example.com"}, 0},
		{"CN IP", pkix.Name{CommonName: "192.0.2.7"}, nil, nil, []string{}, 1},
		{"IP SAN", pkix.Name{}, nil, []net.IP{net.ParseIP("10.1.2.3")}, []string{}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: tt.subject, DNSNames: tt.dns, IPAddresses: tt.ips}, key)
			if err != nil {
				t.Fatal(err)
			}
			csr, _ := x509.ParseCertificateRequest(der)
			resp, err := a.Issue(context.Background(), &ca.IssueRequest{CSR: csr})
			if err != nil {
				t.Fatal(err)
			}
			c := resp.Certificate
			if strings.Join(c.DNSNames, ",") != strings.Join(tt.wantDNS, ",") || len(c.IPAddresses) != tt.wantIPs {
				t.Fatalf("dns %v ips %v", c.DNSNames, c.IPAddresses)
			}
			if !bytes.Equal(c.RawSubject, csr.RawSubject) {
				t.Errorf("subject %x, csr %x", c.RawSubject, csr.RawSubject)
			}
			if tt.subject.CommonName == "" {
				// RFC 5280 4.2.1.6: SAN critical when the subject is empty.
				for _, e := range c.Extensions {
					if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) && !e.Critical {
						t.Errorf("SAN not critical with an empty subject")
					}
				}
			}
		})
	}
}

func TestIssueRefusals(t *testing.T) {
	p := newPKI(t, "p256", false)
	a, l := newCA(t, p, func(c *Config) {
		c.Profiles = map[string]Profile{
			ProfileTLSServer: {KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				Names: []string{"*.example.com", "example.com", "10.0.0.0/8"}, MaxLifetime: 30 * 24 * time.Hour},
		}
	})
	good := genKey(t, "p256")
	badSig := makeCSR(t, good, "", "www.example.com")
	badSig.Signature = append([]byte(nil), badSig.Signature...)
	badSig.Signature[len(badSig.Signature)-3] ^= 0xff
	caCSR := func() *x509.CertificateRequest {
		bc, _ := asn1.Marshal(struct {
			IsCA bool
		}{true})
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"ca.example.com"},
			ExtraExtensions: []pkix.Extension{{Id: oidBasicConstraints, Critical: true, Value: bc}}}, good)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificateRequest(der)
		return c
	}()
	emailCSR := func() *x509.CertificateRequest {
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"www.example.com"}, EmailAddresses: []string{"a@example.com"}}, good)
		c, _ := x509.ParseCertificateRequest(der)
		return c
	}()
	ipCSR := func() *x509.CertificateRequest {
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("192.168.1.1")}}, good)
		c, _ := x509.ParseCertificateRequest(der)
		return c
	}()
	tests := []struct {
		name string
		req  *ca.IssueRequest
		want string
	}{
		{"name outside patterns", &ca.IssueRequest{CSR: makeCSR(t, good, "", "www.example.org")}, `dns name "www.example.org" is not allowed`},
		{"two labels under a one-label wildcard", &ca.IssueRequest{CSR: makeCSR(t, good, "", "a.b.example.com")}, `dns name "a.b.example.com"`},
		{"CN outside patterns", &ca.IssueRequest{CSR: makeCSR(t, good, "evil.test", "www.example.com")}, `dns name "evil.test"`},
		{"CN not a host name", &ca.IssueRequest{CSR: makeCSR(t, good, "My Service", "www.example.com")}, "subject common name"},
		{"IP outside range", &ca.IssueRequest{CSR: ipCSR}, "ip address 192.168.1.1"},
		{"email with patterns", &ca.IssueRequest{CSR: emailCSR}, "email address"},
		{"lifetime above max", &ca.IssueRequest{CSR: makeCSR(t, good, "", "www.example.com"), Lifetime: 31 * 24 * time.Hour}, "lifetime 744h0m0s is above"},
		{"negative lifetime", &ca.IssueRequest{CSR: makeCSR(t, good, "", "www.example.com"), Lifetime: -time.Hour}, "negative"},
		{"RSA 1024", &ca.IssueRequest{CSR: makeCSR(t, genKey(t, "rsa1024"), "", "www.example.com")}, "csr public key: RSA 1024 bits"},
		{"P-224", &ca.IssueRequest{CSR: makeCSR(t, genKey(t, "p224"), "", "www.example.com")}, "curve P-224"},
		{"bad signature", &ca.IssueRequest{CSR: badSig}, "csr signature"},
		{"CA requested", &ca.IssueRequest{CSR: caCSR}, "CA:TRUE is not allowed"},
		{"no names", &ca.IssueRequest{CSR: makeCSR(t, good, "")}, "no subject alternative name"},
		{"unknown profile", &ca.IssueRequest{CSR: makeCSR(t, good, "", "www.example.com"), Profile: "code-signing"}, `profile "code-signing"`},
		{"no csr", &ca.IssueRequest{}, "no csr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Issue(context.Background(), tt.req)
			if !errors.Is(err, ca.ErrRejected) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want ErrRejected containing %q", err, tt.want)
			}
		})
	}
	if recs, _ := l.Revoked(context.Background()); len(recs) != 0 || len(l.bySerial) != 0 {
		t.Fatalf("refusals were recorded")
	}
	// The allowed ones pass, wildcard names included.
	for _, n := range []string{"example.com", "www.example.com", "*.example.com"} {
		if _, err := a.Issue(context.Background(), &ca.IssueRequest{CSR: makeCSR(t, good, "", n)}); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}

func TestPatterns(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"example.com", "example.com", true},
		{"example.com", "www.example.com", false},
		{"*.example.com", "www.example.com", true},
		{"*.example.com", "*.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", "wwwexample.com", false},
		{"**.example.com", "a.b.example.com", true},
		{"**.example.com", "*.b.example.com", true},
		{"**.example.com", "example.com", false},
		{"**.example.com", "badexample.com", false},
	}
	for _, tt := range tests {
		if got := allowedDNS([]string{tt.pattern}, tt.name); got != tt.want {
			t.Errorf("allowedDNS(%q, %q) = %v", tt.pattern, tt.name, got)
		}
	}
}

func TestIdempotentOrderRef(t *testing.T) {
	p := newPKI(t, "p256", false)
	a, l := newCA(t, p, nil)
	key := genKey(t, "p256")
	ctx := context.Background()
	first, err := a.Issue(ctx, &ca.IssueRequest{CSR: makeCSR(t, key, "", "a.example.com"), OrderRef: "order-1"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := a.Issue(ctx, &ca.IssueRequest{CSR: makeCSR(t, key, "", "a.example.com"), OrderRef: "order-1"})
	if err != nil || !again.Certificate.Equal(first.Certificate) {
		t.Fatalf("second delivery issued anew: %v", err)
	}

	// Deliveries racing each other all get one certificate.
	var wg sync.WaitGroup
	serials := make([]string, 8)
	csr := makeCSR(t, key, "", "b.example.com")
	for i := range serials {
		wg.Go(func() {
			r, err := a.Issue(ctx, &ca.IssueRequest{CSR: csr, OrderRef: "order-2"})
			if err != nil {
				t.Error(err)
				return
			}
			serials[i] = r.CAOrderID
		})
	}
	wg.Wait()
	for _, s := range serials {
		if s != serials[0] {
			t.Fatalf("racing deliveries got %v", serials)
		}
	}
	if n := len(l.bySerial); n > 2 {
		t.Fatalf("%d certificates recorded, want 2", n)
	}

	_, err = a.Issue(ctx, &ca.IssueRequest{CSR: makeCSR(t, genKey(t, "p256"), "", "a.example.com"), OrderRef: "order-1"})
	if !errors.Is(err, ca.ErrRejected) || !strings.Contains(err.Error(), "another key") {
		t.Fatalf("order ref reused for another key: %v", err)
	}
}

func TestRenew(t *testing.T) {
	p := newPKI(t, "p256", false)
	a, _ := newCA(t, p, func(c *Config) {
		c.Profiles = map[string]Profile{ProfileTLSServer: TLSServerProfile(), "short": {KeyUsage: x509.KeyUsageDigitalSignature, MaxLifetime: 48 * time.Hour}}
	})
	ctx := context.Background()
	old, err := a.Issue(ctx, &ca.IssueRequest{CSR: makeCSR(t, genKey(t, "p256"), "", "r.example.com"), Profile: "short"})
	if err != nil {
		t.Fatal(err)
	}
	other := newPKI(t, "p256", false)
	b, _ := newCA(t, other, nil)
	foreign, err := b.Issue(ctx, &ca.IssueRequest{CSR: makeCSR(t, genKey(t, "p256"), "", "r.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		req     *ca.RenewRequest
		wantErr error
	}{
		{"by certificate", &ca.RenewRequest{Certificate: old.Certificate, CSR: makeCSR(t, genKey(t, "p256"), "", "r.example.com")}, nil},
		{"by order id", &ca.RenewRequest{CAOrderID: old.CAOrderID, CSR: makeCSR(t, genKey(t, "rsa2048"), "", "r.example.com")}, nil},
		{"not issued here", &ca.RenewRequest{Certificate: foreign.Certificate, CSR: makeCSR(t, genKey(t, "p256"), "", "r.example.com")}, ca.ErrNotIssuedHere},
		{"unknown order id", &ca.RenewRequest{CAOrderID: "abc123", CSR: makeCSR(t, genKey(t, "p256"), "", "r.example.com")}, ca.ErrNotIssuedHere},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := a.Renew(ctx, tt.req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.Certificate.SerialNumber.Cmp(old.Certificate.SerialNumber) == 0 {
				t.Fatal("same certificate")
			}
			// The old certificate's profile carries over.
			if d := resp.Certificate.NotAfter.Sub(resp.Certificate.NotBefore); d > 48*time.Hour+time.Minute {
				t.Fatalf("lifetime %s, profile short allows 48h", d)
			}
		})
	}
}

func TestRevokeSuspendCRL(t *testing.T) {
	p := newPKI(t, "p256", true)
	a, _ := newCA(t, p, nil)
	ctx := context.Background()
	var certs []*x509.Certificate
	for range 3 {
		r, err := a.Issue(ctx, &ca.IssueRequest{CSR: makeCSR(t, genKey(t, "p256"), "", "x.example.com")})
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, r.Certificate)
	}
	status := func(c *x509.Certificate) string {
		s, err := a.Status(ctx, &ca.StatusRequest{Certificate: c})
		if err != nil {
			t.Fatal(err)
		}
		return s.Status
	}
	crl := func() *x509.RevocationList {
		der, err := a.CRL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		l, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.CheckSignatureFrom(p.issuer); err != nil {
			t.Fatalf("crl signature: %v", err)
		}
		if !bytes.Equal(l.AuthorityKeyId, p.issuer.SubjectKeyId) || l.NextUpdate.Sub(l.ThisUpdate) != DefaultCRLInterval {
			t.Fatalf("crl aki %x next update %s", l.AuthorityKeyId, l.NextUpdate)
		}
		return l
	}
	entries := func(l *x509.RevocationList) map[string]int {
		m := map[string]int{}
		for _, e := range l.RevokedCertificateEntries {
			m[SerialString(e.SerialNumber)] = e.ReasonCode
		}
		return m
	}
	sn := func(c *x509.Certificate) string { return SerialString(c.SerialNumber) }

	empty := crl()
	if len(empty.RevokedCertificateEntries) != 0 {
		t.Fatal("fresh CRL not empty")
	}
	if err := a.Revoke(ctx, &ca.RevokeRequest{Certificate: certs[0], Reason: ca.ReasonKeyCompromise, Remarks: "key leaked"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Suspend(ctx, &ca.RevokeRequest{Certificate: certs[1], Remarks: "investigating"}); err != nil {
		t.Fatal(err)
	}
	// Reason certificateHold through Revoke suspends too.
	if err := a.Revoke(ctx, &ca.RevokeRequest{CAOrderID: strings.ToUpper(sn(certs[2])), Reason: ca.ReasonCertificateHold}); err != nil {
		t.Fatal(err)
	}
	if s := status(certs[0]) + "," + status(certs[1]) + "," + status(certs[2]); s != "revoked,suspended,suspended" {
		t.Fatalf("statuses %s", s)
	}
	l1 := crl()
	if l1.Number.Cmp(empty.Number) <= 0 {
		t.Fatalf("crl number %v after %v", l1.Number, empty.Number)
	}
	got := entries(l1)
	want := map[string]int{sn(certs[0]): ca.ReasonKeyCompromise, sn(certs[1]): ca.ReasonCertificateHold, sn(certs[2]): ca.ReasonCertificateHold}
	if len(got) != len(want) {
		t.Fatalf("crl entries %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("crl entries %v, want %v", got, want)
		}
	}

	for _, tt := range []struct {
		name string
		err  error
		want error
	}{
		{"resume an unknown one", a.Resume(ctx, "01"), ca.ErrNotIssuedHere},
		{"resume a revoked one", a.Resume(ctx, sn(certs[0])), ca.ErrRejected},
		{"suspend a revoked one", a.Suspend(ctx, &ca.RevokeRequest{Certificate: certs[0]}), ca.ErrRejected},
		{"bad reason", a.Revoke(ctx, &ca.RevokeRequest{Certificate: certs[0], Reason: 8}), ca.ErrRejected},
		{"revoke twice", a.Revoke(ctx, &ca.RevokeRequest{Certificate: certs[0], Reason: ca.ReasonSuperseded}), nil},
		{"resume bad serial", a.Resume(ctx, "xyz"), ca.ErrRejected},
	} {
		if !errors.Is(tt.err, tt.want) && (tt.want != nil || tt.err != nil) {
			t.Errorf("%s: %v, want %v", tt.name, tt.err, tt.want)
		}
	}

	// Resume with colons, as people copy serials from openssl.
	var colon []string
	for i, h := 0, sn(certs[1]); i < len(h); i += 2 {
		colon = append(colon, h[i:min(i+2, len(h))])
	}
	if err := a.Resume(ctx, strings.Join(colon, ":")); err != nil {
		t.Fatal(err)
	}
	if s := status(certs[1]); s != ca.StatusGood {
		t.Fatalf("after resume: %s", s)
	}
	if err := a.Resume(ctx, sn(certs[1])); !errors.Is(err, ca.ErrRejected) {
		t.Fatalf("resume a good one: %v", err)
	}
	// A suspended certificate can still be revoked for good.
	if err := a.Revoke(ctx, &ca.RevokeRequest{Certificate: certs[2], Reason: ca.ReasonSuperseded}); err != nil {
		t.Fatal(err)
	}
	l2 := crl()
	got = entries(l2)
	if _, ok := got[sn(certs[1])]; ok || len(got) != 2 || got[sn(certs[2])] != ca.ReasonSuperseded || got[sn(certs[0])] != ca.ReasonKeyCompromise {
		t.Fatalf("after resume: %v", got)
	}
	if l2.Number.Cmp(l1.Number) <= 0 {
		t.Fatalf("crl number did not increase")
	}
	other := newPKI(t, "p256", false)
	b, _ := newCA(t, other, nil)
	r, _ := b.Issue(ctx, &ca.IssueRequest{CSR: makeCSR(t, genKey(t, "p256"), "", "x.example.com")})
	if s := status(r.Certificate); s != ca.StatusUnknown {
		t.Fatalf("foreign certificate: %s", s)
	}
	if err := a.Revoke(ctx, &ca.RevokeRequest{Certificate: r.Certificate}); !errors.Is(err, ca.ErrNotIssuedHere) {
		t.Fatalf("revoke foreign: %v", err)
	}
}
