package rotate

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/agent/keygen"
	"github.com/emsign/bot/connectors/ca"
	"github.com/emsign/bot/connectors/ca/local"
	"github.com/emsign/bot/internal/testlog"
	"github.com/emsign/bot/protocol"
)

// fakeCP is the control plane's side of PathOrderCSR for these tests: a
// real local CA (connectors/ca/local, memory ledger) issuing by order, so
// an order issued twice gives the same certificate and a second key for
// the same order is refused, as the control plane's ordering does.
type fakeCP struct {
	ca      *local.CA
	root    *x509.Certificate
	rootKey crypto.Signer

	mu sync.Mutex
	// Pending answers this many posts pending first; PendingForever
	// answers every post pending.
	Pending        int
	PendingForever bool
	// Lifetime of the certificates issued (0: the CA's default).
	Lifetime time.Duration
	// Posts holds every CSR posted, per order.
	Posts map[string][]string
	// Serials are the certificates issued, distinct.
	Serials map[string]bool
}

func newFakeCP(t *testing.T) *fakeCP {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Rotation Test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	a, err := local.New(local.Config{Certificate: root, Signer: key, Ledger: local.NewMemoryLedger(),
		DefaultLifetime: 24 * time.Hour, MaxLifetime: 10 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return &fakeCP{ca: a, root: root, rootKey: key, Posts: map[string][]string{}, Serials: map[string]bool{}}
}

// OrderCSR implements Client.
func (f *fakeCP) OrderCSR(ctx context.Context, order string, csrPEM []byte) (protocol.OrderCertificate, error) {
	f.mu.Lock()
	f.Posts[order] = append(f.Posts[order], string(csrPEM))
	pending := f.PendingForever || f.Pending > 0
	if f.Pending > 0 {
		f.Pending--
	}
	lifetime := f.Lifetime
	f.mu.Unlock()
	if pending {
		return protocol.OrderCertificate{Status: protocol.OrderPending, RetryAfter: protocol.Duration(20 * time.Millisecond)}, nil
	}
	b, _ := pem.Decode(csrPEM)
	if b == nil {
		return protocol.OrderCertificate{}, errors.New("csr is not PEM")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return protocol.OrderCertificate{}, err
	}
	res, err := f.ca.Issue(ctx, &ca.IssueRequest{CSR: csr, OrderRef: order, Lifetime: lifetime})
	if err != nil {
		return protocol.OrderCertificate{}, err
	}
	f.mu.Lock()
	f.Serials[res.Certificate.SerialNumber.String()] = true
	f.mu.Unlock()
	var chain []byte
	for _, c := range res.Chain {
		chain = append(chain, certPEM(c)...)
	}
	return protocol.OrderCertificate{Status: protocol.OrderIssued, Certificate: string(certPEM(res.Certificate)), Chain: string(chain)}, nil
}

func (f *fakeCP) posts(order string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.Posts[order]...)
}

func (f *fakeCP) issued() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.Serials)
}

// oldLeaf is the certificate at a location before the rotation, with SANs
// the CSR must copy.
type oldLeaf struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	keyPEM  []byte
}

func (f *fakeCP) oldLeaf(t *testing.T, alg keygen.Algorithm, format keygen.KeyFormat) oldLeaf {
	t.Helper()
	key, err := keygen.Generate(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "www.rotate.test", Organization: []string{"Rotate Test"}},
		DNSNames: []string{"www.rotate.test", "rotate.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, f.root, key.Public(), f.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	kp, err := keygen.MarshalPEM(key, format)
	if err != nil {
		t.Fatal(err)
	}
	return oldLeaf{cert: c, certPEM: certPEM(c), key: key, keyPEM: kp}
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func writeFile(t *testing.T, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newRotator is a Rotator on a fresh state directory allowing allowed.
func newRotator(t *testing.T, client Client, stateDir string, allowed []string, tweak func(*Config)) (*Rotator, *testlog.Buffer) {
	t.Helper()
	logs := &testlog.Buffer{}
	cfg := Config{Client: client, StateDir: stateDir, Env: deploy.Env{AllowReload: AllowReload(allowed)}, PollInterval: 10 * time.Millisecond,
		Timeout: 20 * time.Second, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if tweak != nil {
		tweak(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r, logs
}

func stepNames(steps []protocol.RotationStep) string {
	var out []string
	for _, s := range steps {
		mark := "ok"
		if !s.OK {
			mark = "FAILED"
		}
		out = append(out, s.Name+":"+mark)
	}
	return strings.Join(out, " ")
}

func logSteps(t *testing.T, res protocol.RotationResult) {
	t.Helper()
	for _, s := range res.Steps {
		t.Logf("%s ok=%v: %s", s.Name, s.OK, s.Message)
	}
}

// noSecrets fails when any of the secrets, or a private key, shows in
// the result (as the control plane would get it) or the logs.
func noSecrets(t *testing.T, res protocol.RotationResult, logs string, secrets ...string) {
	t.Helper()
	raw, _ := json.Marshal(res)
	for _, text := range []string{string(raw), logs} {
		if strings.Contains(text, "PRIVATE KEY") {
			t.Errorf("a private key in %q", text)
		}
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("secret %q in %q", s, text)
			}
		}
	}
}

func keptFile(stateDir, order string) string {
	return filepath.Join(stateDir, RotationsDir, order+".key")
}

// csrKey is the public key of a posted CSR.
func csrOf(t *testing.T, csrPEM string) *x509.CertificateRequest {
	t.Helper()
	b, _ := pem.Decode([]byte(csrPEM))
	if b == nil {
		t.Fatalf("not a PEM CSR: %q", csrPEM)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}
