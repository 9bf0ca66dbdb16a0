package ordering_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/emsign/bot/agent/keygen"
	"github.com/emsign/bot/connectors/ca"
	"github.com/emsign/bot/connectors/ca/local"
	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/internal/testcert"
	"github.com/emsign/bot/controlplane/ordering"
	"github.com/emsign/bot/controlplane/seal"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// counting wraps an Issuer and counts what it is asked (a job delivered
// twice must order once).
type counting struct {
	ca.Issuer
	issues atomic.Int32
	delay  time.Duration
	err    error
}

func (c *counting) Issue(ctx context.Context, req *ca.IssueRequest) (*ca.IssueResponse, error) {
	c.issues.Add(1)
	if c.delay > 0 {
		time.Sleep(c.delay)
	}
	if c.err != nil {
		return nil, c.err
	}
	return c.Issuer.Issue(ctx, req)
}

// newTestCA is a private CA in memory, wrapped for counting.
func newTestCA(t testing.TB) *counting {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	l, err := localNew(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return &counting{Issuer: l}
}

// env is an account with an active bot of protocol 2 holding one
// certificate in a PEM file, also served by a TLS endpoint, on a real
// SQLite store.
type env struct {
	t       testing.TB
	st      *store.SQL
	sealer  *seal.Sealer
	svc     *ordering.Service
	reg     *ordering.Registry
	account string
	bot     string
	token   string
	fp      string
	oldDER  []byte
	woken   atomic.Int32
	now     time.Time
}

const (
	pemLoc = "file:///etc/nginx/web.pem#0"
	tlsLoc = "tls://127.0.0.1:8443?sni=www.example.com"
)

func newEnv(t testing.TB, change func(*ordering.Config)) *env {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "cp.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key := make([]byte, 32)
	rand.Read(key)
	sealer, err := seal.New(key)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, sealer: sealer, reg: &ordering.Registry{}}
	a, err := st.CreateAccount(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	e.account = a.ID
	if err := st.SetBotLimit(ctx, a.ID, 10); err != nil {
		t.Fatal(err)
	}
	e.bot = e.activeBot("web", 2)
	g := testcert.NewGenerator(t)
	e.oldDER = g.New(t, testcert.Options{CN: "www.example.com", SANs: []string{"www.example.com", "example.com"}})
	e.fp = fingerprintOf(e.oldDER)
	e.ingest(e.bot, "scan-1", []protocol.Finding{
		{Location: loc(pemLoc), Source: "file", Format: "pem", Chain: [][]byte{e.oldDER}, SeenAt: time.Now()},
		{Location: loc(tlsLoc), Source: "tls", Format: "tls", Chain: [][]byte{e.oldDER}, SeenAt: time.Now()},
	})
	e.template("default", ordering.KindLocal, "", true)
	cfg := ordering.Config{Store: st, Sealer: sealer, Registry: e.reg, Logger: slog.New(slog.DiscardHandler),
		PublicURL: "https://cp.example.com", Wake: func(string) { e.woken.Add(1) }, IssueWait: 10 * time.Second}
	if change != nil {
		change(&cfg)
	}
	e.svc, err = ordering.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func fingerprintOf(der []byte) string { return protocol.Fingerprint(der) }

func loc(uri string) protocol.Location {
	l, err := protocol.ParseLocation(uri)
	if err != nil {
		panic(err)
	}
	return l
}

// activeBot makes a bot activated with the capability.
func (e *env) activeBot(name string, capability int) string {
	e.t.Helper()
	ctx := context.Background()
	id, token, err := admin.CreateBot(ctx, e.st, e.account, name, "")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.ActivateBot(ctx, e.account, id, admin.Hash(token), store.Activation{Hostname: name,
		Capability: capability, CertSerial: "01" + name}); err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *env) ingest(bot, scan string, fs []protocol.Finding) {
	e.t.Helper()
	ctx := context.Background()
	if err := e.st.StartScan(ctx, e.account, bot, protocol.ScanStart{ScanID: scan, Trigger: "schedule"}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.st.Ingest(ctx, e.account, bot, scan, protocol.FindingsBatch{Seq: 1, Findings: fs}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) template(name, connector, settings string, def bool) string {
	e.t.Helper()
	id := admin.NewID()
	err := e.st.CreateProvisioningTemplate(context.Background(), store.ProvisioningTemplate{ID: id, Account: e.account,
		Name: name, Default: def, KeyPair: store.KeyPairNew, KeystorePassword: store.KeystorePasswordRandom,
		CAConnector: connector, CASettings: settings, Enabled: true})
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// job takes the bot's pending job and opens its rotation.
func (e *env) job(bot string) (store.Job, *protocol.Rotation) {
	e.t.Helper()
	jobs, err := e.st.TakeJobs(context.Background(), bot)
	if err != nil || len(jobs) != 1 {
		e.t.Fatalf("jobs %v, %v; want one", jobs, err)
	}
	r, err := e.svc.JobRotation(context.Background(), jobs[0])
	if err != nil {
		e.t.Fatal(err)
	}
	return jobs[0], r
}

// csrFor is the CSR the bot makes for a rotation (keygen, as the bot).
func csrFor(t testing.TB, r *protocol.Rotation, key crypto.Signer, change func(*keygen.Template)) string {
	t.Helper()
	old, err := x509.ParseCertificate(r.OldCertificate)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := keygen.Template{CommonName: r.CSR.CommonName, DNSNames: r.CSR.DNSNames}.WithDefaults(old)
	if change != nil {
		change(&tmpl)
	}
	csr, err := keygen.CreateCSR(tmpl, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(keygen.EncodeCSR(csr))
}

func newKey(t testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (e *env) bot_(id string) store.Bot {
	b, err := e.st.Bot(context.Background(), e.account, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// B9, P8: a PEM file location gets a job that says what to make, order
// and deploy, with the tls locations of the same certificate to verify.
func TestRotatePEMJob(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	if got := e.svc.Deployable(mustCert(t, e)); len(got) != 1 || got[0] != pemLoc {
		t.Fatalf("Deployable %v, want only %s", got, pemLoc)
	}
	o, err := e.svc.Rotate(ctx, e.account, ordering.RotateRequest{Fingerprint: e.fp, Deploy: ordering.DeployOptions{
		Reload: []string{"nginx", "-s", "reload"}}, CreatedBy: "admin@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Status != store.OrderInitiated || o.Location != pemLoc || o.BotID != e.bot || o.Connector != "local" ||
		o.Action != protocol.ActionRotate || o.CreatedBy != "admin@example.com" {
		t.Fatalf("order %+v", o)
	}
	if e.woken.Load() != 1 {
		t.Error("the bot was not woken")
	}
	j, r := e.job(e.bot)
	if j.Kind != protocol.JobRotate || j.OrderID != o.ID {
		t.Fatalf("job %+v", j)
	}
	if bytes.Contains(j.Payload, []byte("/etc/nginx")) {
		t.Error("the payload is not sealed")
	}
	want := protocol.DeploySpec{Kind: protocol.DeployPEM, CertPath: "/etc/nginx/web.pem", Reload: []string{"nginx", "-s", "reload"},
		Verify: []protocol.VerifyEndpoint{{Address: "127.0.0.1:8443", ServerName: "www.example.com"}}}
	if r.OrderID != o.ID || r.Action != protocol.ActionRotate || r.Location != pemLoc || !bytes.Equal(r.OldCertificate, e.oldDER) ||
		r.Key.Where != protocol.KeyWhereSoftware || r.Key.Algorithm != "ecdsa-p256" || r.Key.Existing ||
		!r.CSR.CopyFromCertificate || r.Deploy.Kind != want.Kind || r.Deploy.CertPath != want.CertPath ||
		strings.Join(r.Deploy.Reload, " ") != "nginx -s reload" || len(r.Deploy.Verify) != 1 || r.Deploy.Verify[0] != want.Verify[0] {
		t.Fatalf("rotation %+v", r)
	}
	// A job sealed for another job ID does not open (AAD bound).
	j.ID = "other"
	if _, err := e.svc.JobRotation(ctx, j); err == nil {
		t.Error("a payload opened under another job ID")
	}
}

func mustCert(t *testing.T, e *env) store.Certificate {
	c, err := e.st.Certificate(context.Background(), e.account, e.fp)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// P3: an HSM key profile's PIN travels only inside the sealed payload.
func TestRotatePKCS11PINSealed(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	const pin = "hsm-pin-4711"
	sealedPIN, err := e.sealer.Seal([]byte(pin), []byte("emsign-cp/key-profile-pin/"+e.account))
	if err != nil {
		t.Fatal(err)
	}
	kp := admin.NewID()
	if err := e.st.CreateKeyProfile(ctx, store.KeyProfile{ID: kp, Account: e.account, Name: "hsm", Kind: store.KeyProfilePKCS11,
		ModulePath: "/usr/lib/softhsm/libsofthsm2.so", TokenLabel: "prod", PINSealed: sealedPIN, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	csrT := admin.NewID()
	if err := e.st.CreateCSRTemplate(ctx, store.CSRTemplate{ID: csrT, Account: e.account, Name: "p384", KeyAlgorithm: "ECDSA",
		Curve: "P-384", CopyFromCertificate: true, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	tid := admin.NewID()
	if err := e.st.CreateProvisioningTemplate(ctx, store.ProvisioningTemplate{ID: tid, Account: e.account, Name: "hsm",
		KeyPair: store.KeyPairNew, KeystorePassword: store.KeystorePasswordRandom, CSRTemplateID: csrT, KeyProfileID: kp,
		CAConnector: "local", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Rotate(ctx, e.account, ordering.RotateRequest{Fingerprint: e.fp, TemplateID: tid, Action: protocol.ActionRekey}); err != nil {
		t.Fatal(err)
	}
	j, r := e.job(e.bot)
	if bytes.Contains(j.Payload, []byte(pin)) {
		t.Fatal("the PIN is in the payload in clear")
	}
	if r.Key.Where != protocol.KeyWherePKCS11 || r.Key.Algorithm != "ecdsa-p384" || r.Key.PKCS11 == nil ||
		r.Key.PKCS11.PIN.Reveal() != pin || r.Key.PKCS11.TokenLabel != "prod" || r.Key.Existing {
		t.Fatalf("key spec %+v", r.Key)
	}
}

// D7, B9: what Rotate refuses, each naming the field or saying why.
func TestRotateRefusals(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	oldBot := e.activeBot("old", 1)
	e.ingest(oldBot, "scan-old", []protocol.Finding{
		{Location: loc("file:///srv/old.pem"), Source: "file", Format: "pem", Chain: [][]byte{e.oldDER}, SeenAt: time.Now()}})
	offBot := e.activeBot("off", 2)
	e.ingest(offBot, "scan-off", []protocol.Finding{
		{Location: loc("file:///srv/off.pem"), Source: "file", Format: "pem", Chain: [][]byte{e.oldDER}, SeenAt: time.Now()}})
	if err := e.st.SetBotStatus(ctx, e.account, offBot, protocol.BotSuspended); err != nil {
		t.Fatal(err)
	}
	disabled := e.template("disabled", "local", "", false)
	tmpl, _ := e.st.ProvisioningTemplate(ctx, e.account, disabled)
	tmpl.Enabled = false
	if err := e.st.UpdateProvisioningTemplate(ctx, tmpl); err != nil {
		t.Fatal(err)
	}
	acme := e.template("acme", "acme", "nowhere", false)
	tests := []struct {
		name  string
		req   ordering.RotateRequest
		field string // InvalidError field; "" for a conflict
		msg   string
	}{
		{"tls location", ordering.RotateRequest{Location: tlsLoc}, "location", "tls locations are verified, not written"},
		{"two deployable locations", ordering.RotateRequest{}, "location", "name one"},
		{"unknown location", ordering.RotateRequest{Location: "file:///nope"}, "location", "no location"},
		{"unknown template", ordering.RotateRequest{Location: pemLoc, TemplateID: "nope"}, "template_id", "no such"},
		{"disabled template", ordering.RotateRequest{Location: pemLoc, TemplateID: disabled}, "template_id", "disabled"},
		{"connector not configured", ordering.RotateRequest{Location: pemLoc, TemplateID: acme}, "template_id", "not configured"},
		{"bad action", ordering.RotateRequest{Location: pemLoc, Action: "destroy"}, "action", "rotate, rekey or renew"},
		{"bad verify", ordering.RotateRequest{Location: pemLoc, Deploy: ordering.DeployOptions{Verify: []string{"nohost"}}},
			"deploy.verify[0]", "host:port"},
		{"password on a PEM file", ordering.RotateRequest{Location: pemLoc,
			Deploy: ordering.DeployOptions{KeystorePassword: protocol.NewSecret("x")}}, "deploy.keystore_password", "only for"},
		{"capability 1", ordering.RotateRequest{Location: "file:///srv/old.pem"}, "", "speaks protocol 1: upgrade it to rotate"},
		{"inactive bot", ordering.RotateRequest{Location: "file:///srv/off.pem"}, "", "is suspended"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Fingerprint = e.fp
			_, err := e.svc.Rotate(ctx, e.account, tt.req)
			var ie *ordering.InvalidError
			switch {
			case tt.field != "" && (!errors.As(err, &ie) || ie.Field != tt.field || !strings.Contains(ie.Msg, tt.msg)):
				t.Fatalf("error %v, want field %s saying %q", err, tt.field, tt.msg)
			case tt.field == "" && (!errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), tt.msg)):
				t.Fatalf("error %v, want a conflict saying %q", err, tt.msg)
			}
		})
	}
	// No default template.
	e2 := newEnv(t, nil)
	all, _ := e2.st.ProvisioningTemplates(ctx, e2.account)
	all[0].Default = false
	if err := e2.st.UpdateProvisioningTemplate(ctx, all[0]); err != nil {
		t.Fatal(err)
	}
	_, err := e2.svc.Rotate(ctx, e2.account, ordering.RotateRequest{Fingerprint: e2.fp, Location: pemLoc})
	var ie *ordering.InvalidError
	if !errors.As(err, &ie) || ie.Field != "template_id" || !strings.Contains(ie.Msg, "mark it default (P2)") {
		t.Fatalf("no default: %v", err)
	}
	if _, err := e2.svc.Rotate(ctx, e2.account, ordering.RotateRequest{Fingerprint: strings.Repeat("0", 64)}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown certificate: %v", err)
	}
}

// counted is an env whose default template orders from a counting CA.
func counted(t *testing.T, change func(*counting)) (*env, *counting) {
	var c *counting
	e := newEnv(t, func(cfg *ordering.Config) {
		c = newTestCA(t)
		if change != nil {
			change(c)
		}
		if err := cfg.Registry.Add(ordering.KindACME, "counting", c); err != nil {
			t.Fatal(err)
		}
	})
	ctx := context.Background()
	all, _ := e.st.ProvisioningTemplates(ctx, e.account)
	all[0].CAConnector, all[0].CASettings = "acme", "counting"
	if err := e.st.UpdateProvisioningTemplate(ctx, all[0]); err != nil {
		t.Fatal(err)
	}
	return e, c
}

func (e *env) rotate() (store.Order, store.Job, *protocol.Rotation) {
	e.t.Helper()
	o, err := e.svc.Rotate(context.Background(), e.account, ordering.RotateRequest{Fingerprint: e.fp, Location: pemLoc})
	if err != nil {
		e.t.Fatal(err)
	}
	j, r := e.job(e.bot)
	return o, j, r
}

// B9: a CSR is checked, issued once however often it is posted, and a
// CSR for another key after issue is a conflict.
func TestOrderCSR(t *testing.T) {
	e, c := counted(t, nil)
	ctx := context.Background()
	bot := e.bot_(e.bot)
	o, _, r := e.rotate()
	key := newKey(t)

	// Names not asked for are refused (400), naming the difference.
	bad := csrFor(t, r, key, func(tm *keygen.Template) { tm.DNSNames = append(tm.DNSNames, "evil.example.net") })
	_, err := e.svc.OrderCSR(ctx, bot, o.ID, bad)
	var ie *ordering.InvalidError
	if !errors.As(err, &ie) || ie.Field != "csr" || !strings.Contains(ie.Msg, "evil.example.net") {
		t.Fatalf("extra name: %v", err)
	}
	other := csrFor(t, r, key, func(tm *keygen.Template) { tm.CommonName = "other.example.com" })
	if _, err := e.svc.OrderCSR(ctx, bot, o.ID, other); !errors.As(err, &ie) || !strings.Contains(ie.Msg, "subject cn") {
		t.Fatalf("other CN: %v", err)
	}
	if _, err := e.svc.OrderCSR(ctx, bot, o.ID, "garbage"); !errors.As(err, &ie) || ie.Field != "csr" {
		t.Fatalf("garbage: %v", err)
	}
	// Another bot's order is not found.
	other2 := e.bot_(e.activeBot("other", 2))
	good := csrFor(t, r, key, nil)
	if _, err := e.svc.OrderCSR(ctx, other2, o.ID, good); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another bot's order: %v", err)
	}

	first, err := e.svc.OrderCSR(ctx, bot, o.ID, good)
	if err != nil || first.Status != protocol.OrderIssued || !strings.Contains(first.Certificate, "BEGIN CERTIFICATE") {
		t.Fatalf("first CSR: %+v %v", first, err)
	}
	again, err := e.svc.OrderCSR(ctx, bot, o.ID, good)
	if err != nil || again.Certificate != first.Certificate {
		t.Fatalf("second CSR: %+v %v", again, err)
	}
	if n := c.issues.Load(); n != 1 {
		t.Fatalf("%d Issue calls, want 1", n)
	}
	if _, err := e.svc.OrderCSR(ctx, bot, o.ID, csrFor(t, r, newKey(t), nil)); !errors.Is(err, store.ErrConflict) ||
		!strings.Contains(err.Error(), "already issued for another key") {
		t.Fatalf("another key: %v", err)
	}
	got, _ := e.st.Order(ctx, e.account, o.ID)
	cert, _ := pem.Decode([]byte(first.Certificate))
	if got.Status != store.OrderIssued || got.NewFingerprint != fingerprintOf(cert.Bytes) {
		t.Fatalf("order after issue %+v", got)
	}
	evs, _ := e.st.OrderEvents(ctx, e.account, o.ID)
	if last := evs[len(evs)-1]; !strings.HasPrefix(last.Message, "issued by acme (counting): serial ") {
		t.Fatalf("issue event %+v", last)
	}
}

// B9: CSRs posted at once (a job delivered twice, a bot retrying) order
// once; a slow CA answers pending first.
func TestOrderCSRConcurrent(t *testing.T) {
	e, c := counted(t, func(c *counting) { c.delay = 300 * time.Millisecond })
	ctx := context.Background()
	bot := e.bot_(e.bot)
	o, _, r := e.rotate()
	good := csrFor(t, r, newKey(t), nil)
	var wg sync.WaitGroup
	certs := make([]string, 8)
	errs := make([]error, 8)
	for i := range 8 {
		wg.Go(func() {
			for {
				res, err := e.svc.OrderCSR(ctx, bot, o.ID, good)
				if err != nil || res.Status == protocol.OrderIssued {
					certs[i], errs[i] = res.Certificate, err
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	for i := range 8 {
		if errs[i] != nil || certs[i] != certs[0] || certs[i] == "" {
			t.Fatalf("post %d: %v (same certificate: %v)", i, errs[i], certs[i] == certs[0])
		}
	}
	if n := c.issues.Load(); n != 1 {
		t.Fatalf("%d Issue calls, want 1", n)
	}

	// A CA slower than IssueWait: pending with a retry, then issued.
	e2, _ := counted(t, func(c *counting) { c.delay = 500 * time.Millisecond })
	e2.svc, _ = ordering.New(ordering.Config{Store: e2.st, Sealer: e2.sealer, Registry: e2.reg,
		Logger: slog.New(slog.DiscardHandler), IssueWait: 50 * time.Millisecond})
	o2, _, r2 := e2.rotate()
	csr2 := csrFor(t, r2, newKey(t), nil)
	res, err := e2.svc.OrderCSR(ctx, e2.bot_(e2.bot), o2.ID, csr2)
	if err != nil || res.Status != protocol.OrderPending || res.RetryAfter <= 0 {
		t.Fatalf("slow CA: %+v %v, want pending", res, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for res.Status != protocol.OrderIssued && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		res, err = e2.svc.OrderCSR(ctx, e2.bot_(e2.bot), o2.ID, csr2)
		if err != nil {
			t.Fatal(err)
		}
	}
	if res.Status != protocol.OrderIssued {
		t.Fatal("never issued")
	}
}

// P7: a CA's refusal fails the order; the bot is told why.
func TestOrderCSRRejected(t *testing.T) {
	e, _ := counted(t, func(c *counting) { c.err = errors.New("policy: " + ca.ErrRejected.Error() + " wrapped") })
	ctx := context.Background()
	o, _, r := e.rotate()
	_, err := e.svc.OrderCSR(ctx, e.bot_(e.bot), o.ID, csrFor(t, r, newKey(t), nil))
	// A plain error is temporary: pending, order back to initiated.
	got, _ := e.st.Order(ctx, e.account, o.ID)
	if err != nil || got.Status != store.OrderInitiated {
		t.Fatalf("temporary failure: %v, order %s", err, got.Status)
	}

	e2, _ := counted(t, func(c *counting) { c.err = errorsJoin("name refused", ca.ErrRejected) })
	o2, _, r2 := e2.rotate()
	_, err = e2.svc.OrderCSR(ctx, e2.bot_(e2.bot), o2.ID, csrFor(t, r2, newKey(t), nil))
	var re *ordering.RejectedError
	if !errors.As(err, &re) || !strings.Contains(re.Reason, "name refused") {
		t.Fatalf("rejected: %v", err)
	}
	got, _ = e2.st.Order(ctx, e2.account, o2.ID)
	if got.Status != store.OrderFailed || !strings.Contains(got.Error, "name refused") {
		t.Fatalf("order %+v", got)
	}
}

type joined struct {
	msg string
	err error
}

func (j joined) Error() string { return j.msg + ": " + j.err.Error() }
func (j joined) Unwrap() error { return j.err }

func errorsJoin(msg string, err error) error { return joined{msg, err} }

// D7, S5: the bot's result moves the order and records every step; a
// result posted twice changes nothing.
func TestRotationFinished(t *testing.T) {
	steps := []protocol.RotationStep{
		{Name: protocol.StepKey, OK: true, Message: "ecdsa-p256 key made"},
		{Name: protocol.StepWrite, OK: true, Message: "wrote /etc/nginx/web.pem"},
		{Name: protocol.StepVerify, OK: true, Message: "127.0.0.1:8443 serves the new certificate"},
	}
	tests := []struct {
		name    string
		action  string
		res     func(orderID string) protocol.JobResult
		status  string
		errText string
	}{
		{"deployed", protocol.ActionRotate, func(id string) protocol.JobResult {
			return protocol.JobResult{Status: protocol.JobDone, Rotation: &protocol.RotationResult{OrderID: id,
				Outcome: protocol.OutcomeDeployed, Steps: steps}}
		}, store.OrderRotated, ""},
		{"rekey deployed", protocol.ActionRekey, func(id string) protocol.JobResult {
			return protocol.JobResult{Status: protocol.JobDone, Rotation: &protocol.RotationResult{OrderID: id,
				Outcome: protocol.OutcomeAlreadyDeployed, Steps: steps}}
		}, store.OrderRekeyed, ""},
		{"renew deployed", protocol.ActionRenew, func(id string) protocol.JobResult {
			return protocol.JobResult{Status: protocol.JobDone, Rotation: &protocol.RotationResult{OrderID: id,
				Outcome: protocol.OutcomeDeployed, Steps: steps}}
		}, store.OrderDeployed, ""},
		{"rolled back", protocol.ActionRotate, func(id string) protocol.JobResult {
			return protocol.JobResult{Status: protocol.JobFailed, Error: "reload: exit status 1", Rotation: &protocol.RotationResult{
				OrderID: id, Outcome: protocol.OutcomeRolledBack, Steps: steps}}
		}, store.OrderRolledBack, "reload: exit status 1"},
		{"failed without a rotation part", protocol.ActionRotate, func(string) protocol.JobResult {
			return protocol.JobResult{Status: protocol.JobFailed, Error: "key: token not found"}
		}, store.OrderFailed, "key: token not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := counted(t, nil)
			ctx := context.Background()
			bot := e.bot_(e.bot)
			o, err := e.svc.Rotate(ctx, e.account, ordering.RotateRequest{Fingerprint: e.fp, Location: pemLoc, Action: tt.action})
			if err != nil {
				t.Fatal(err)
			}
			j, r := e.job(e.bot)
			if tt.status != store.OrderFailed {
				if res, err := e.svc.OrderCSR(ctx, bot, o.ID, csrFor(t, r, newKey(t), nil)); err != nil || res.Status != protocol.OrderIssued {
					t.Fatalf("csr: %+v %v", res, err)
				}
			}
			res := tt.res(o.ID)
			jj := store.Job{ID: j.ID, Account: e.account, BotID: e.bot, Kind: protocol.JobRotate}
			if err := e.svc.RotationFinished(ctx, bot, jj, res); err != nil {
				t.Fatal(err)
			}
			got, _ := e.st.Order(ctx, e.account, o.ID)
			if got.Status != tt.status || !strings.Contains(got.Error, tt.errText) {
				t.Fatalf("order %s (%s), want %s", got.Status, got.Error, tt.status)
			}
			evs, _ := e.st.OrderEvents(ctx, e.account, o.ID)
			if res.Rotation != nil {
				n := 0
				for _, ev := range evs {
					if ev.Step != "" {
						n++
					}
				}
				if n != len(steps) {
					t.Fatalf("%d step events, want %d: %+v", n, len(steps), evs)
				}
			}
			if res.Rotation == nil {
				// The server calls RotationFinished for a result without a
				// rotation part only while the job's order is open.
				if e.svc.HasOpenOrder(ctx, bot, j.ID) {
					t.Fatal("the order is still open")
				}
				return
			}
			if err := e.svc.RotationFinished(ctx, bot, jj, res); err != nil {
				t.Fatalf("second result: %v", err)
			}
			evs2, _ := e.st.OrderEvents(ctx, e.account, o.ID)
			if len(evs2) != len(evs) {
				t.Fatalf("a repeated result added %d events", len(evs2)-len(evs))
			}
			// Another bot cannot report on this order.
			other := e.bot_(e.activeBot("intruder", 2))
			if err := e.svc.RotationFinished(ctx, other, jj, res); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("another bot's result: %v", err)
			}
		})
	}
}

// D7, P7: revoke, suspend and resume through the local CA: the CRL the
// control plane serves and its OCSP answers follow.
func TestRevokeSuspendResumeLocalCA(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	bot := e.bot_(e.bot)
	o, _, r := e.rotate()
	res, err := e.svc.OrderCSR(ctx, bot, o.ID, csrFor(t, r, newKey(t), nil))
	if err != nil || res.Status != protocol.OrderIssued {
		t.Fatalf("csr: %+v %v", res, err)
	}
	blk, _ := pem.Decode([]byte(res.Certificate))
	leaf, _ := x509.ParseCertificate(blk.Bytes)
	newFP := fingerprintOf(blk.Bytes)
	wantCRL := "https://cp.example.com/ca/" + e.account + "/crl"
	if len(leaf.CRLDistributionPoints) != 1 || leaf.CRLDistributionPoints[0] != wantCRL {
		t.Fatalf("CRL DP %v, want %s", leaf.CRLDistributionPoints, wantCRL)
	}
	srv := httptest.NewServer(e.svc.CAHandler())
	defer srv.Close()
	get := func(path string) []byte {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return b
	}
	caDER := get("/ca/" + e.account + "/ca.crt")
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil || leaf.CheckSignatureFrom(caCert) != nil || !strings.HasPrefix(caCert.Subject.CommonName, "emSign Private CA") {
		t.Fatalf("ca.crt: %v", err)
	}
	if _, ok := caCert.PublicKey.(*ecdsa.PublicKey); !ok || caCert.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P384() {
		t.Fatal("the local CA is not ECDSA P-384")
	}
	crlHas := func() (bool, int) {
		crl, err := x509.ParseRevocationList(get("/ca/" + e.account + "/crl"))
		if err != nil {
			t.Fatal(err)
		}
		if err := crl.CheckSignatureFrom(caCert); err != nil {
			t.Fatal(err)
		}
		for _, rc := range crl.RevokedCertificateEntries {
			if rc.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
				return true, rc.ReasonCode
			}
		}
		return false, 0
	}
	ocspStatus := func() int {
		req, err := ocsp.CreateRequest(leaf, caCert, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(srv.URL+"/ca/"+e.account+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		or, err := ocsp.ParseResponseForCert(b, leaf, caCert)
		if err != nil {
			t.Fatalf("ocsp: %v", err)
		}
		return or.Status
	}
	if in, _ := crlHas(); in || ocspStatus() != ocsp.Good {
		t.Fatal("a good certificate is on the CRL or not good in OCSP")
	}
	steps := []struct {
		name   string
		do     func() (store.Order, error)
		status string
		inCRL  bool
		ocsp   int
	}{
		{"suspend", func() (store.Order, error) { return e.svc.Suspend(ctx, e.account, newFP, "key under review", "admin") },
			store.OrderSuspended, true, ocsp.Revoked},
		{"resume", func() (store.Order, error) { return e.svc.Resume(ctx, e.account, newFP, "admin") },
			store.OrderIssued, false, ocsp.Good},
		{"revoke", func() (store.Order, error) {
			return e.svc.Revoke(ctx, e.account, newFP, ca.ReasonKeyCompromise, "laptop stolen", "admin")
		}, store.OrderRevoked, true, ocsp.Revoked},
	}
	for _, s := range steps {
		got, err := s.do()
		if err != nil || got.Status != s.status {
			t.Fatalf("%s: %v, status %s want %s", s.name, err, got.Status, s.status)
		}
		if in, _ := crlHas(); in != s.inCRL {
			t.Fatalf("after %s: on the CRL %v, want %v", s.name, in, s.inCRL)
		}
		if st := ocspStatus(); st != s.ocsp {
			t.Fatalf("after %s: OCSP %d, want %d", s.name, st, s.ocsp)
		}
	}
	if _, reason := crlHas(); reason != ca.ReasonKeyCompromise {
		t.Fatalf("CRL reason %d", reason)
	}
	got, _ := e.st.Order(ctx, e.account, o.ID)
	if got.Remarks != "laptop stolen" {
		t.Fatalf("remarks %q", got.Remarks)
	}
	// The discovered certificate was not issued here.
	_, err = e.svc.Revoke(ctx, e.account, e.fp, 0, "", "admin")
	var ie *ordering.InvalidError
	if !errors.As(err, &ie) || ie.Field != "fingerprint" || !strings.Contains(ie.Msg, "not issued through emSign") {
		t.Fatalf("not issued here: %v", err)
	}
	// An account without a local CA: 404.
	resp, _ := http.Get(srv.URL + "/ca/nobody/crl")
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown account CRL: %d", resp.StatusCode)
	}
	resp.Body.Close()
}

// A payload that does not open fails its order with the reason.
func TestFailJob(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	o, j, _ := e.rotate()
	j.Payload = []byte("garbage")
	_, err := e.svc.JobRotation(ctx, j)
	if err == nil {
		t.Fatal("garbage opened")
	}
	if err := e.svc.FailJob(ctx, j, err); err != nil {
		t.Fatal(err)
	}
	got, _ := e.st.Order(ctx, e.account, o.ID)
	if got.Status != store.OrderFailed || !strings.Contains(got.Error, "could not be delivered") {
		t.Fatalf("order %+v", got)
	}
}

func localNew(c *x509.Certificate, k crypto.Signer) (*local.CA, error) {
	return local.New(local.Config{Certificate: c, Signer: k, Ledger: local.NewMemoryLedger(), Logger: slog.New(slog.DiscardHandler)})
}
