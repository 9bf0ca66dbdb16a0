package runner

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emsign/bot/agent/internal/fakecp"
	"github.com/emsign/bot/agent/keygen"
	"github.com/emsign/bot/agent/rotate"
	"github.com/emsign/bot/protocol"
)

// testCA signs rotation CSRs for the fake control plane, once per order.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	mu   sync.Mutex
	done map[string]string // order → certificate PEM
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Runner Test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, done: map[string]string{}}
}

func (ca *testCA) sign(t *testing.T, cn string, pub any) []byte {
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: serial,
		Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour)}, ca.cert, pub, ca.key)
	if err != nil {
		t.Error(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// issue answers an order's CSR with its certificate, the same one when
// asked again.
func (ca *testCA) issue(t *testing.T, order string, csrPEM []byte) protocol.OrderCertificate {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if c, ok := ca.done[order]; ok {
		return protocol.OrderCertificate{Status: protocol.OrderIssued, Certificate: c}
	}
	b, _ := pem.Decode(csrPEM)
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		t.Error(err)
		return protocol.OrderCertificate{}
	}
	c := string(ca.sign(t, csr.Subject.CommonName, csr.PublicKey))
	ca.done[order] = c
	return protocol.OrderCertificate{Status: protocol.OrderIssued, Certificate: c}
}

func (b *bot) result(id string) (protocol.JobResult, bool) {
	var res protocol.JobResult
	var ok bool
	b.cp.Do(func(cp *fakecp.Server) { res, ok = cp.Results[id] })
	return res, ok
}

// TestRotationJob (B9): a rotate job runs beside the loop (a scan job sent
// while its CA is still working finishes first), the same job delivered
// again meanwhile is ignored, and its result goes through the spool with
// the rotation part: outcome, fingerprint, every step.
func TestRotationJob(t *testing.T) {
	b := newBot(t)
	ca := newTestCA(t)
	var release atomic.Bool
	b.cp.Do(func(cp *fakecp.Server) {
		cp.OnOrderCSR = func(order string, csrPEM []byte) (protocol.OrderCertificate, string) {
			if !release.Load() {
				return protocol.OrderCertificate{Status: protocol.OrderPending, RetryAfter: protocol.Duration(20 * time.Millisecond)}, ""
			}
			return ca.issue(t, order, csrPEM), ""
		}
	})
	// The location: a certificate and its key in PEM files.
	oldKey, _ := keygen.Generate(keygen.ECDSAP256, nil)
	oldKeyPEM, _ := keygen.MarshalPEM(oldKey, keygen.SEC1)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "site.crt"), filepath.Join(dir, "site.key")
	oldPEM := ca.sign(t, "www.runner.test", oldKey.Public())
	if err := os.WriteFile(certPath, oldPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, oldKeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	oldBlock, _ := pem.Decode(oldPEM)

	b.tweak = func(c *Config) {
		rot, err := rotate.New(rotate.Config{Client: c.Client, StateDir: b.dir, PollInterval: 20 * time.Millisecond, Logger: c.Logger})
		if err != nil {
			t.Fatal(err)
		}
		c.Rotator = rot
	}
	b.cp.SetConfig(scanConfig("v1", certDir(t, 3)))
	b.start(0)
	rotJob := protocol.Job{ID: "rot-1", Kind: protocol.JobRotate, Rotation: &protocol.Rotation{
		OrderID: "order-1", Action: protocol.ActionRotate, Location: "file://" + certPath, OldCertificate: oldBlock.Bytes,
		Key:    protocol.KeySpec{Where: protocol.KeyWhereSoftware, Algorithm: "ecdsa-p256"},
		CSR:    protocol.CSRSpec{CopyFromCertificate: true},
		Deploy: protocol.DeploySpec{Kind: protocol.DeployPEM, CertPath: certPath},
	}}
	b.cp.AddJob(rotJob)
	waitFor(t, "the rotation's CSR", func() bool {
		var n int
		b.cp.Do(func(cp *fakecp.Server) { n = len(cp.CSRs["order-1"]) })
		return n >= 2
	})
	b.cp.AddJob(rotJob) // delivered again while it runs
	b.cp.AddJob(protocol.Job{ID: "scan-job", Kind: protocol.JobScan, ScanID: "s1"})
	waitFor(t, "the scan job's result while the rotation waits", func() bool { _, ok := b.result("scan-job"); return ok })
	if _, ok := b.result("rot-1"); ok {
		t.Fatal("the rotation ended before its certificate was issued")
	}
	checkScan(t, b.cp, "s1", 3)

	release.Store(true)
	waitFor(t, "the rotation's result", func() bool { _, ok := b.result("rot-1"); return ok })
	res, _ := b.result("rot-1")
	if res.Status != protocol.JobDone || res.Rotation == nil {
		t.Fatalf("result %+v", res)
	}
	var names []string
	for _, s := range res.Rotation.Steps {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); res.Rotation.OrderID != "order-1" || res.Rotation.Outcome != protocol.OutcomeDeployed ||
		got != "key csr issued prepare backup write verify" || res.Rotation.Fingerprint == "" {
		t.Errorf("rotation %+v, steps %s", res.Rotation, got)
	}
	// The key file was found beside the certificate and replaced.
	newKey, err := keygen.ParsePEM(mustReadFile(t, keyPath))
	if err != nil || newKey.Public().(*ecdsa.PublicKey).Equal(oldKey.Public()) {
		t.Errorf("key file not replaced: %v", err)
	}
	b.cp.Do(func(cp *fakecp.Server) {
		order := strings.Join(cp.Order, ",")
		if strings.Index(order, "job scan-job") > strings.Index(order, "job rot-1") {
			t.Errorf("arrival order %s: the scan waited for the rotation", order)
		}
	})
	if !strings.Contains(b.logs.String(), `msg="job already handled" job=rot-1`) {
		t.Error("the job delivered again was not ignored")
	}
	waitFor(t, "an empty spool", func() bool { return len(b.spoolFiles()) == 0 })
	if _, err := os.Stat(filepath.Join(b.dir, rotate.RotationsDir, "order-1.key")); !os.IsNotExist(err) {
		t.Errorf("the rotation's kept key is still there: %v", err)
	}
}

// TestRotationNotSetUp: a bot without a Rotator answers a rotate job
// failed, naming the order.
func TestRotationNotSetUp(t *testing.T) {
	b := newBot(t)
	b.start(0)
	b.cp.AddJob(protocol.Job{ID: "rot-x", Kind: protocol.JobRotate, Rotation: &protocol.Rotation{OrderID: "order-x"}})
	b.cp.AddJob(protocol.Job{ID: "rot-y", Kind: protocol.JobRotate})
	waitFor(t, "the results", func() bool {
		_, x := b.result("rot-x")
		_, y := b.result("rot-y")
		return x && y
	})
	res, _ := b.result("rot-x")
	if res.Status != protocol.JobFailed || !strings.Contains(res.Error, "rotation is not set up on this bot") ||
		res.Rotation == nil || res.Rotation.OrderID != "order-x" || res.Rotation.Outcome != protocol.OutcomeFailed {
		t.Errorf("result %+v", res)
	}
	if res, _ := b.result("rot-y"); res.Status != protocol.JobFailed || !strings.Contains(res.Error, "without its rotation") {
		t.Errorf("result %+v", res)
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
