package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/agent/keygen"
	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/internal/testcert"
	"github.com/emsign/bot/controlplane/server"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// ordersFixture is an account with an active bot of protocol 2 that found
// one certificate in a PEM file, in a JKS keystore and on a TLS endpoint,
// and a default provisioning template ordering from the local CA.
type ordersFixture struct {
	account, key string
	b            *bot
	fp           string
	old          []byte
}

const (
	apiPEMLoc = "file:///etc/nginx/web.pem#0"
	apiJKSLoc = "jks:///opt/tomcat/keystore.jks#tomcat"
	apiTLSLoc = "tls://127.0.0.1:8443?sni=www.example.com"
)

func newOrdersFixture(t *testing.T, e *env) ordersFixture {
	t.Helper()
	ctx := context.Background()
	account, key := e.account(5)
	_, token := e.createBot(key, "web")
	b := e.activate(account, token)
	der := testcert.NewGenerator(t).New(t, testcert.Options{CN: "www.example.com", SANs: []string{"www.example.com"}})
	if err := e.st.StartScan(ctx, account, b.id, protocol.ScanStart{ScanID: "s1", Trigger: "schedule"}); err != nil {
		t.Fatal(err)
	}
	loc := func(s string) protocol.Location { l, _ := protocol.ParseLocation(s); return l }
	if _, err := e.st.Ingest(ctx, account, b.id, "s1", protocol.FindingsBatch{Seq: 1, Findings: []protocol.Finding{
		{Location: loc(apiPEMLoc), Source: "file", Format: "pem", Chain: [][]byte{der}, SeenAt: time.Now()},
		{Location: loc(apiJKSLoc), Source: "jks", Format: "jks", Chain: [][]byte{der}, SeenAt: time.Now()},
		{Location: loc(apiTLSLoc), Source: "tls", Format: "tls", Chain: [][]byte{der}, SeenAt: time.Now()},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.CreateProvisioningTemplate(ctx, store.ProvisioningTemplate{ID: admin.NewID(), Account: account,
		Name: "default", Default: true, KeyPair: store.KeyPairNew, KeystorePassword: store.KeystorePasswordRandom,
		CAConnector: "local", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	return ordersFixture{account: account, key: key, b: b, fp: protocol.Fingerprint(der), old: der}
}

// D7, B9, S5: rotate from the API; the bot gets the job, posts its CSR,
// gets the certificate, reports; the order shows every step.
func TestRotateThroughAPI(t *testing.T) {
	e := newEnv(t)
	f := newOrdersFixture(t, e)
	const ksPassword = "ks-Pa55-w0rd-xyz"

	r := e.user("POST", "/certificates/"+f.fp+"/rotate", f.key, map[string]any{"location": apiPEMLoc,
		"deploy": map[string]any{"reload": []string{"nginx", "-s", "reload"}}})
	e.want(r, http.StatusAccepted)
	var o server.OrderView
	r.json(t, &o)
	if o.Status != store.OrderInitiated || o.Location != apiPEMLoc || o.Connector != "local" || o.Fingerprint != f.fp ||
		len(o.Events) != 1 || o.CreatedBy == "" {
		t.Fatalf("order %+v", o)
	}
	for _, bad := range []string{`"payload"`, `"csr_pem"`, `"job_id"`} {
		if strings.Contains(string(r.body), bad) {
			t.Fatalf("answer holds %s: %s", bad, r.body)
		}
	}

	// The bot's long poll delivers the rotation.
	jr := f.b.do("GET", protocol.PathJobs+"?wait=1s", nil)
	f.b.want(jr, http.StatusOK)
	var jobs protocol.JobsResponse
	jr.json(t, &jobs)
	if len(jobs.Jobs) != 1 || jobs.Jobs[0].Kind != protocol.JobRotate || jobs.Jobs[0].Rotation == nil {
		t.Fatalf("jobs %s", jr.body)
	}
	rot := jobs.Jobs[0].Rotation
	if rot.OrderID != o.ID || rot.Deploy.Kind != protocol.DeployPEM || rot.Deploy.CertPath != "/etc/nginx/web.pem" ||
		len(rot.Deploy.Verify) != 1 || rot.Deploy.Verify[0].Address != "127.0.0.1:8443" {
		t.Fatalf("rotation %+v", rot)
	}

	// The CSR: a name not asked for is refused; the right one issued.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	old, _ := x509.ParseCertificate(rot.OldCertificate)
	mk := func(extra ...string) string {
		tm := keygen.Template{}.WithDefaults(old)
		tm.DNSNames = append(tm.DNSNames, extra...)
		c, err := keygen.CreateCSR(tm, k, nil)
		if err != nil {
			t.Fatal(err)
		}
		return string(keygen.EncodeCSR(c))
	}
	cr := f.b.do("POST", protocol.OrderCSRPath(o.ID), protocol.OrderCSR{CSR: mk("evil.example.net")})
	f.b.want(cr, http.StatusBadRequest)
	if !strings.Contains(cr.errorText(t), "evil.example.net") {
		t.Fatalf("refusal %s", cr.body)
	}
	f.b.want(f.b.do("POST", protocol.OrderCSRPath("nope"), protocol.OrderCSR{CSR: mk()}), http.StatusNotFound)
	cr = f.b.do("POST", protocol.OrderCSRPath(o.ID), protocol.OrderCSR{CSR: mk()})
	f.b.want(cr, http.StatusOK)
	var oc protocol.OrderCertificate
	cr.json(t, &oc)
	if oc.Status != protocol.OrderIssued || !strings.Contains(oc.Certificate, "BEGIN CERTIFICATE") {
		t.Fatalf("csr answer %s", cr.body)
	}
	blk, _ := pem.Decode([]byte(oc.Certificate))
	newFP := protocol.Fingerprint(blk.Bytes)

	// The result, posted twice (the bot spools), moves the order once.
	res := protocol.JobResult{Status: protocol.JobDone, Rotation: &protocol.RotationResult{OrderID: o.ID,
		Outcome: protocol.OutcomeDeployed, Fingerprint: newFP, Steps: []protocol.RotationStep{
			{Name: protocol.StepKey, OK: true, Message: "ecdsa-p256", Time: time.Now()},
			{Name: protocol.StepWrite, OK: true, Message: "wrote /etc/nginx/web.pem", Time: time.Now()},
			{Name: protocol.StepReload, OK: true, Message: "nginx -s reload", Time: time.Now()},
			{Name: protocol.StepVerify, OK: true, Message: "127.0.0.1:8443 serves it", Time: time.Now()},
		}}}
	f.b.want(f.b.do("POST", protocol.JobResultPath(jobs.Jobs[0].ID), res), http.StatusOK)
	f.b.want(f.b.do("POST", protocol.JobResultPath(jobs.Jobs[0].ID), res), http.StatusOK)

	r = e.user("GET", "/orders/"+o.ID, f.key, nil)
	e.want(r, http.StatusOK)
	r.json(t, &o)
	steps := 0
	for _, ev := range o.Events {
		if ev.Step != "" {
			steps++
		}
	}
	if o.Status != store.OrderRotated || o.NewFingerprint != newFP || o.Outcome != protocol.OutcomeDeployed || steps != 4 {
		t.Fatalf("order after the result %+v", o)
	}
	r = e.user("GET", "/orders?fingerprint="+f.fp, f.key, nil)
	e.want(r, http.StatusOK)
	var list struct{ Orders []server.OrderView }
	r.json(t, &list)
	if len(list.Orders) != 1 || list.Orders[0].ID != o.ID {
		t.Fatalf("list %s", r.body)
	}
	e.want(e.user("GET", "/orders?limit=x", f.key, nil), http.StatusBadRequest)
	r = e.user("GET", "/orders/"+o.ID+"/certificate", f.key, nil)
	e.want(r, http.StatusOK)
	if !strings.HasPrefix(string(r.body), oc.Certificate) {
		t.Fatalf("certificate download %s", r.body)
	}

	// Suspend, resume, revoke the new certificate (D7), with remarks.
	r = e.user("POST", "/certificates/"+newFP+"/suspend", f.key, map[string]string{"remarks": "under review"})
	e.want(r, http.StatusOK)
	r = e.user("POST", "/certificates/"+newFP+"/resume", f.key, nil)
	e.want(r, http.StatusOK)
	r = e.user("POST", "/certificates/"+newFP+"/revoke", f.key, map[string]any{"reason": 1, "remarks": "key leaked"})
	e.want(r, http.StatusOK)
	r.json(t, &o)
	if o.Status != store.OrderRevoked || o.Remarks != "key leaked" {
		t.Fatalf("revoked order %+v", o)
	}
	r = e.user("POST", "/certificates/"+f.fp+"/revoke", f.key, map[string]any{"reason": 1})
	e.want(r, http.StatusBadRequest)
	if !strings.Contains(r.errorText(t), "not issued through emSign") {
		t.Fatalf("revoke of a discovered certificate: %s", r.body)
	}
	// The CRL is public, at the URL in the certificate.
	leaf, _ := x509.ParseCertificate(blk.Bytes)
	if len(leaf.CRLDistributionPoints) != 0 {
		t.Fatalf("CRL DP %v without a public URL", leaf.CRLDistributionPoints)
	}
	cl := e.do(e.transport(), "GET", "/ca/"+f.account+"/crl", "", nil)
	if cl.status != http.StatusOK {
		t.Fatalf("CRL: %d", cl.status)
	}
	crl, err := x509.ParseRevocationList(cl.body)
	if err != nil || len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Fatalf("CRL %v: %+v", err, crl)
	}

	// A JKS rotation with a keystore password: never in an answer, the
	// audit log or the logs; it reaches the bot's job.
	r = e.user("POST", "/certificates/"+f.fp+"/rotate", f.key, map[string]any{"location": apiJKSLoc,
		"deploy": map[string]any{"keystore_password": ksPassword}})
	e.want(r, http.StatusAccepted)
	var jo server.OrderView
	r.json(t, &jo)
	for _, body := range [][]byte{r.body, e.user("GET", "/orders/"+jo.ID, f.key, nil).body, e.user("GET", "/orders", f.key, nil).body,
		e.user("GET", "/audit", f.key, nil).body, []byte(e.logs.String())} {
		if strings.Contains(string(body), ksPassword) {
			t.Fatalf("the keystore password leaked: %s", body)
		}
	}
	jr = f.b.do("GET", protocol.PathJobs, nil)
	f.b.want(jr, http.StatusOK)
	jr.json(t, &jobs)
	// The first rotation's end queued a recheck scan of the bot (its
	// orders were all done): the JKS rotation comes with it.
	if !slices.ContainsFunc(jobs.Jobs, func(j protocol.Job) bool { return j.Kind == protocol.JobScan }) {
		t.Errorf("no recheck scan after the rotation: %s", jr.body)
	}
	jobs.Jobs = slices.DeleteFunc(jobs.Jobs, func(j protocol.Job) bool { return j.Kind == protocol.JobScan })
	if len(jobs.Jobs) != 1 || jobs.Jobs[0].Rotation == nil || jobs.Jobs[0].Rotation.Deploy.Kind != protocol.DeployJKS ||
		jobs.Jobs[0].Rotation.Deploy.Alias != "tomcat" || jobs.Jobs[0].Rotation.Deploy.KeystorePassword.Reveal() != ksPassword {
		t.Fatalf("jks job %s", jr.body)
	}
}

// D7: rotate refusals answer 400 naming the field, 409 for the bot.
func TestRotateAPIRefusals(t *testing.T) {
	e := newEnv(t)
	f := newOrdersFixture(t, e)
	for _, tc := range []struct {
		body   any
		status int
		want   string
	}{
		{map[string]any{"location": apiTLSLoc}, http.StatusBadRequest, "tls locations are verified, not written"},
		{map[string]any{}, http.StatusBadRequest, "name one"},
		{map[string]any{"location": apiPEMLoc, "template_id": "nope"}, http.StatusBadRequest, "template_id"},
		{map[string]any{"location": apiPEMLoc, "colour": "red"}, http.StatusBadRequest, "colour"},
		{map[string]any{"location": apiPEMLoc, "deploy": map[string]any{"verify": []string{"x"}}}, http.StatusBadRequest, "deploy.verify[0]"},
	} {
		r := e.user("POST", "/certificates/"+f.fp+"/rotate", f.key, tc.body)
		e.want(r, tc.status)
		if !strings.Contains(string(r.body), tc.want) {
			t.Errorf("%v: %s, want %q", tc.body, r.body, tc.want)
		}
	}
	e.want(e.user("POST", "/certificates/"+strings.Repeat("0", 64)+"/rotate", f.key, map[string]any{}), http.StatusNotFound)
	e.want(e.user("POST", "/certificates/xyz/rotate", f.key, map[string]any{}), http.StatusBadRequest)
}
