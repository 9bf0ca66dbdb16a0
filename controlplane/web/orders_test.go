package web

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/batches"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/ordering"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/seal"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// ordEnv is a dashboard over a real SQLite store, ops and ordering
// service (the local CA), with an active bot holding one certificate at
// a PEM file and a TLS endpoint, and a default provisioning template.
type ordEnv struct {
	*btEnv
	now      time.Time
	botID    string
	fp       string // the certificate at file:///etc/ssl/site.pem
	xssFP    string // a certificate whose CN is a script, at a file
	template string // the default provisioning template's ID
}

const (
	ordFileURI = "file:///etc/ssl/site.pem"
	ordTLSURI  = "tls://127.0.0.1:8443"
	ordXSSURI  = "file:///etc/ssl/x%3Cscript%3E.pem"
	// ordRawXSS is a location as an order may carry it, not normalised.
	ordRawXSS = "file:///etc/ssl/<script>alert(1)</script>.pem"
)

func newOrdEnv(t *testing.T) *ordEnv {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "cp.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key := make([]byte, seal.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.New(key)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	notifier := ops.NewNotifier()
	svc, err := ordering.New(ordering.Config{Store: st, Sealer: sealer, Logger: log, Wake: notifier.Notify})
	if err != nil {
		t.Fatal(err)
	}
	o, err := ops.New(ops.Config{Store: st, Sealer: sealer, Logger: log, Notifier: notifier, Ordering: svc})
	if err != nil {
		t.Fatal(err)
	}
	planner, err := batches.NewPlanner(batches.PlannerConfig{Store: st, NewID: admin.NewID, Deployable: svc.Deployable})
	if err != nil {
		t.Fatal(err)
	}
	o.SetBatches(planner, nil)
	s, err := New(Config{Store: st, Ops: o, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	acct, err := st.CreateAccount(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetBotLimit(ctx, acct.ID, 10); err != nil {
		t.Fatal(err)
	}
	hash, err := btPasswordHash()
	if err != nil {
		t.Fatal(err)
	}
	e := &ordEnv{btEnv: &btEnv{t: t, st: st, ops: o, h: s.Handler(), account: acct.ID, hash: hash}, now: now}

	var tok string
	e.botID, tok, err = admin.CreateBot(ctx, st, acct.ID, "web-bot", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.ActivateBot(ctx, acct.ID, e.botID, admin.Hash(tok), store.Activation{Hostname: "h1", CertSerial: "01",
		Capability: protocol.CapabilityVersion}); err != nil {
		t.Fatal(err)
	}
	if err := st.TouchBot(ctx, e.botID, now, "1.0", ""); err != nil {
		t.Fatal(err)
	}

	ca := newCertIssuer(t, "Test Issuing CA", now)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	site := ca.leaf(t, 10, "site.example.com", []string{"site.example.com"}, now.AddDate(0, 0, 20), leafKey)
	xss := ca.leaf(t, 11, xssCN, []string{"xss.example.com"}, now.AddDate(0, 0, 20), leafKey)
	e.fp, e.xssFP = protocol.Fingerprint(site), protocol.Fingerprint(xss)
	find := func(der []byte, uri, source, format string) protocol.Finding {
		l, err := protocol.ParseLocation(uri)
		if err != nil {
			t.Fatal(err)
		}
		return protocol.Finding{Location: l, Source: source, Format: format, Chain: [][]byte{der, ca.der}, SeenAt: now}
	}
	findings := []protocol.Finding{
		find(site, ordFileURI, "file", "pem"),
		find(site, ordTLSURI, "tls", "tls"),
		find(xss, ordXSSURI, "file", "pem"),
	}
	scan := admin.NewID()
	if err := st.StartScan(ctx, acct.ID, e.botID, protocol.ScanStart{ScanID: scan, Trigger: protocol.TriggerSchedule, Started: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Ingest(ctx, acct.ID, e.botID, scan, protocol.FindingsBatch{Seq: 1, Findings: findings}); err != nil {
		t.Fatal(err)
	}
	if err := st.CompleteScan(ctx, acct.ID, e.botID, scan, protocol.ScanComplete{Finished: now, Batches: 1,
		Certificates: len(findings), Complete: true}); err != nil {
		t.Fatal(err)
	}

	e.template = admin.NewID()
	if err := st.CreateProvisioningTemplate(ctx, store.ProvisioningTemplate{ID: e.template, Account: acct.ID,
		Name: "Local <b>CA</b>", Default: true, KeyPair: store.KeyPairNew, KeystorePassword: store.KeystorePasswordRandom,
		CAConnector: "local", Enabled: true, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	return e
}

// order makes an order straight in the store (no job), as ordering
// would, with its first event.
func (e *ordEnv) order(fp, location, status string) store.Order {
	e.t.Helper()
	ctx := context.Background()
	o := store.Order{ID: admin.NewID(), Account: e.account, BotID: e.botID, Action: protocol.ActionRotate, Fingerprint: fp,
		Location: location, TemplateID: e.template, Connector: "local", Status: store.OrderInitiated, CreatedBy: "test",
		CreatedAt: e.now, UpdatedAt: e.now}
	if err := e.st.CreateOrder(ctx, o, nil); err != nil {
		e.t.Fatal(err)
	}
	if status != store.OrderInitiated {
		var err error
		o, err = e.st.TransitionOrder(ctx, e.account, o.ID, nil, store.OrderPatch{Status: &status},
			store.OrderEvent{Time: e.now, Status: status, OK: true, Message: "moved to " + status})
		if err != nil {
			e.t.Fatal(err)
		}
	}
	return o
}

var orderLocationRE = regexp.MustCompile(`^/orders/([^/?#]+)$`)

// has reports whether the body holds every string.
func hasAll(body string, want ...string) []string {
	var missing []string
	for _, w := range want {
		if !strings.Contains(body, w) {
			missing = append(missing, w)
		}
	}
	return missing
}

// TestOrderActionsByRole: the certificate page's actions, the orders
// pages and their POSTs follow the role (D7, A1).
func TestOrderActionsByRole(t *testing.T) {
	e := newOrdEnv(t)
	certPath := "/certificates/" + e.fp
	for _, role := range rbac.Roles() {
		t.Run(string(role), func(t *testing.T) {
			u := e.login(string(role))
			manage, view := rbac.Can(role, rbac.ManageOrders), rbac.Can(role, rbac.ViewOrders)
			body := btWant(t, e.get(u, certPath), http.StatusOK)
			for _, id := range []string{`id="rotate-form"`, `id="revoke-form"`, `id="suspend-form"`} {
				if strings.Contains(body, id) != manage {
					t.Errorf("%s shown: %v, want %v", id, !manage, manage)
				}
			}
			if strings.Contains(body, `id="cert-orders"`) != view {
				t.Errorf("orders table shown: %v, want %v", !view, view)
			}
			if strings.Contains(body, `id="nav-orders"`) != view {
				t.Errorf("nav shown: %v, want %v", !view, view)
			}
			wantView := http.StatusForbidden
			if view {
				wantView = http.StatusOK
			}
			for _, p := range []string{"/orders", "/batches", "/schedules"} {
				if w := e.get(u, p); w.Code != wantView {
					t.Errorf("GET %s: %d, want %d", p, w.Code, wantView)
				}
			}
			if manage {
				return
			}
			for _, p := range []string{certPath + "/rotate", certPath + "/revoke", certPath + "/suspend", certPath + "/resume",
				"/batches/new", "/schedules"} {
				w := e.post(u, p, url.Values{"location": {ordFileURI}, "action": {"rotate"}, "reason": {"superseded"}})
				btWant(t, w, http.StatusForbidden, `id="error-title"`)
			}
			if w := e.get(u, "/batches/new"); w.Code != http.StatusForbidden {
				t.Errorf("GET /batches/new: %d", w.Code)
			}
		})
	}
	os, err := e.st.Orders(context.Background(), e.account, store.OrderFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(os) != 0 {
		t.Errorf("refused POSTs made %d orders", len(os))
	}
}

// TestRotateThroughForm: an Administrator rotates from the certificate
// page and lands on the order, which shows its status and history (D7).
func TestRotateThroughForm(t *testing.T) {
	e := newOrdEnv(t)
	adm := e.login("administrator")
	certPath := "/certificates/" + e.fp
	body := btWant(t, e.get(adm, certPath), http.StatusOK, `id="rotate-form"`, `|`+ordFileURI+`"`,
		"Local &lt;b&gt;CA&lt;/b&gt; (default)", `name="csrf" value="`+adm.csrf+`"`, "allowed_reload")
	if strings.Contains(body, ordTLSURI+`"`) {
		t.Error("a TLS endpoint is offered for deployment: it can only be verified")
	}
	w := e.post(adm, certPath+"/rotate", url.Values{"location": {ordFileURI}, "action": {"rotate"}, "template": {e.template},
		"reload": {"nginx -s reload"}, "verify": {"127.0.0.1:8443"}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("status %d\n%s", w.Code, btMain(w.Body.String()))
	}
	m := orderLocationRE.FindStringSubmatch(w.Header().Get("Location"))
	if m == nil {
		t.Fatalf("redirected to %q, want /orders/{id}", w.Header().Get("Location"))
	}
	o, err := e.st.Order(context.Background(), e.account, m[1])
	if err != nil {
		t.Fatal(err)
	}
	if o.Location != ordFileURI || o.Action != protocol.ActionRotate || o.Fingerprint != e.fp {
		t.Errorf("order %+v", o)
	}
	page := btWant(t, e.get(adm, "/orders/"+o.ID), http.StatusOK,
		`<strong id="order-status" class="warn">initiated</strong>`, `<meta http-equiv="refresh" content="5">`,
		`id="order-events"`, `data-seq="1"`, ordFileURI, `href="/certificates/`+e.fp+`"`)
	_ = page
	// The certificate page lists it; the list finds it by certificate.
	btWant(t, e.get(adm, certPath), http.StatusOK, `data-order="`+o.ID+`"`)
	btWant(t, e.get(adm, "/orders?fingerprint="+e.fp), http.StatusOK, `data-order="`+o.ID+`"`)
}

// TestRotateFormErrors: bad input answers 400 with the certificate page,
// the form filled again and the field named (D7).
func TestRotateFormErrors(t *testing.T) {
	e := newOrdEnv(t)
	adm := e.login("administrator")
	path := "/certificates/" + e.fp
	ok := url.Values{"location": {ordFileURI}, "action": {"rotate"}, "template": {e.template}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range ok {
			f[kk] = vv
		}
		f.Set(k, v)
		return f
	}
	tests := []struct {
		name, path string
		form       url.Values
		status     int
		want       []string
	}{
		{"no location", path + "/rotate", with("location", ""), 400, []string{`id="rotate-error"`, "Location:"}},
		{"bad action", path + "/rotate", with("action", "steal"), 400, []string{"Action: want rotate, rekey or renew"}},
		{"bad verify", path + "/rotate", with("verify", "nohost"), 400, []string{"Verify endpoints:", `value="nohost"`}},
		{"bad port", path + "/rotate", with("verify", "a.example:99999"), 400, []string{"Verify endpoints:"}},
		{"two-line reload", path + "/rotate", with("reload", "nginx -s reload\nrm -rf /"), 400, []string{"Reload command: one line"}},
		{"location not deployable", path + "/rotate", with("location", ordTLSURI), 400, []string{`id="rotate-error"`}},
		{"bad reason", path + "/revoke", url.Values{"reason": {"whim"}}, 400, []string{`id="revoke-error"`, "Reason:"}},
		{"two-line remarks", path + "/suspend", url.Values{"remarks": {"a\nb"}}, 400, []string{`id="suspend-error"`, "Remarks:"}},
		{"bad fingerprint", "/certificates/xyz/rotate", ok, 400, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			btWant(t, e.post(adm, tc.path, tc.form), tc.status, tc.want...)
		})
	}
	os, err := e.st.Orders(context.Background(), e.account, store.OrderFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(os) != 0 {
		t.Errorf("bad input made %d orders", len(os))
	}
}

// TestOrderActionsCSRF: a form without the session's token, or from
// another site, changes nothing.
func TestOrderActionsCSRF(t *testing.T) {
	e := newOrdEnv(t)
	adm, other := e.login("administrator"), e.login("administrator")
	path := "/certificates/" + e.fp + "/rotate"
	form := url.Values{"location": {ordFileURI}, "action": {"rotate"}, "template": {e.template}}
	for name, csrf := range map[string]string{"missing": "", "another session's": other.csrf} {
		t.Run(name, func(t *testing.T) {
			f := url.Values{"csrf": {csrf}}
			for k, v := range form {
				f[k] = v
			}
			btWant(t, e.post(adm, path, f), http.StatusForbidden, "CSRF")
		})
	}
	t.Run("cross-site", func(t *testing.T) {
		f := url.Values{"csrf": {adm.csrf}}
		for k, v := range form {
			f[k] = v
		}
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(f.Encode()))
		r.Host = btHost
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Origin", "https://evil.example")
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: adm.cookie})
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		btWant(t, w, http.StatusForbidden, "another site")
	})
	for _, p := range []string{"/batches/new", "/schedules"} {
		btWant(t, e.post(adm, p, url.Values{"csrf": {""}, "name": {"x"}}), http.StatusForbidden, "CSRF")
	}
	os, err := e.st.Orders(context.Background(), e.account, store.OrderFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(os) != 0 {
		t.Errorf("refused forms made %d orders", len(os))
	}
}

// TestOrderPage: the order shows its fields and every event, escaped;
// a final order stops refreshing (D7, S5).
func TestOrderPage(t *testing.T) {
	e := newOrdEnv(t)
	ctx := context.Background()
	adm := e.login("administrator")
	o := e.order(e.xssFP, ordRawXSS, store.OrderIssued)
	if err := e.st.AddOrderEvents(ctx, e.account, o.ID, []store.OrderEvent{
		{Time: e.now, Status: store.OrderIssued, Step: protocol.StepWrite, OK: true, Message: "wrote <script>alert(2)</script>"},
		{Time: e.now, Status: store.OrderIssued, Step: protocol.StepReload, OK: false, Message: "reload failed"},
	}); err != nil {
		t.Fatal(err)
	}
	body := btWant(t, e.get(adm, "/orders/"+o.ID), http.StatusOK,
		`<strong id="order-status" class="ok">issued</strong>`, `<meta http-equiv="refresh" content="5">`,
		"wrote &lt;script&gt;alert(2)&lt;/script&gt;", "file:///etc/ssl/&lt;script&gt;alert(1)&lt;/script&gt;.pem", `<td>write</td>`, `<td>reload</td>`, `<span class="bad">failed</span>`,
		"Local &lt;b&gt;CA&lt;/b&gt;")
	if strings.Contains(body, "<script>alert") {
		t.Error("a script in an event or location is not escaped")
	}
	status := store.OrderRolledBack
	msg := "verify failed: <b>old served</b>"
	if _, err := e.st.TransitionOrder(ctx, e.account, o.ID, nil, store.OrderPatch{Status: &status, Error: &msg},
		store.OrderEvent{Time: e.now, Status: status, Step: protocol.StepRollback, OK: true, Message: "put back"}); err != nil {
		t.Fatal(err)
	}
	body = btWant(t, e.get(adm, "/orders/"+o.ID), http.StatusOK, `<strong id="order-status" class="bad">rolled_back</strong>`,
		"verify failed: &lt;b&gt;old served&lt;/b&gt;", `id="order-error"`, `<td>rollback</td>`)
	if strings.Contains(body, `http-equiv="refresh"`) {
		t.Error("a final order still refreshes")
	}
	btWant(t, e.get(adm, "/orders/no-such-order"), http.StatusNotFound)
	stranger := e.loginIn(e.otherAccount(), "administrator")
	btWant(t, e.get(stranger, "/orders/"+o.ID), http.StatusNotFound)
}

func (e *ordEnv) otherAccount() string {
	e.t.Helper()
	a, err := e.st.CreateAccount(context.Background(), "Other")
	if err != nil {
		e.t.Fatal(err)
	}
	return a.ID
}

// TestOrdersList: filters, paging and bad filters.
func TestOrdersList(t *testing.T) {
	e := newOrdEnv(t)
	adm := e.login("administrator")
	rotated := e.order(e.fp, ordFileURI, store.OrderRotated)
	var failed []string
	for range orderPageSize + 2 {
		failed = append(failed, e.order(e.xssFP, ordRawXSS, store.OrderFailed).ID)
	}
	body := btWant(t, e.get(adm, "/orders?status=rotated"), http.StatusOK, `data-order="`+rotated.ID+`"`)
	if strings.Contains(body, `data-order="`+failed[0]+`"`) {
		t.Error("the status filter lets a failed order through")
	}
	page1 := btWant(t, e.get(adm, "/orders?status=failed"), http.StatusOK, `id="orders-next"`)
	if n := strings.Count(page1, `<tr data-order=`); n != orderPageSize {
		t.Errorf("page 1 has %d rows, want %d", n, orderPageSize)
	}
	page2 := btWant(t, e.get(adm, "/orders?status=failed&page=2"), http.StatusOK, `id="orders-prev"`)
	if n := strings.Count(page2, `<tr data-order=`); n != 2 {
		t.Errorf("page 2 has %d rows, want 2", n)
	}
	for _, q := range []string{"status=lost", "fingerprint=abc", "page=0"} {
		btWant(t, e.get(adm, "/orders?"+q), http.StatusBadRequest, `id="orders-error"`)
	}
	// A script in a location is escaped in the list.
	all := btWant(t, e.get(adm, "/orders?fingerprint="+e.xssFP), http.StatusOK, "&lt;script&gt;alert(1)")
	if strings.Contains(all, "<script>") {
		t.Error("unescaped script in the orders list")
	}
}

// TestDashboardProvisioningCounts: the S5 numbers are in their ids, bare,
// linking to the orders for those who may see them.
func TestDashboardProvisioningCounts(t *testing.T) {
	e := newOrdEnv(t)
	e.order(e.fp, ordFileURI, store.OrderRotated)
	e.order(e.xssFP, ordXSSURI, store.OrderInitiated)
	adm, basic := e.login("administrator"), e.login("basic_user")
	body := btWant(t, e.get(adm, "/"), http.StatusOK)
	for _, st := range []string{"initiated", "issued", "deployed", "rotated", "rekeyed", "revoked", "suspended"} {
		re := regexp.MustCompile(`<a id="count-` + st + `" data-stat="certificates.` + st + `" href="/orders\?status=[a-z_%0-9-]+">(\d+)</a>`)
		if !re.MatchString(body) {
			t.Errorf("no linked #count-%s holding a number", st)
		}
	}
	if strings.Contains(body, "fill once provisioning") {
		t.Error("the provisioning hint is still there")
	}
	for st, want := range map[string]string{"rotated": "1", "initiated": "1", "revoked": "0"} {
		re := regexp.MustCompile(`id="count-` + st + `"[^>]*>(\d+)<`)
		m := re.FindStringSubmatch(body)
		if m == nil || m[1] != want {
			t.Errorf("count-%s = %v, want %s", st, m, want)
		}
	}
	b := btWant(t, e.get(basic, "/"), http.StatusOK, `<span id="count-rotated" data-stat="certificates.rotated">`)
	if strings.Contains(b, `href="/orders?`) != rbac.Can(rbac.BasicUser, rbac.ViewOrders) {
		t.Error("links to the orders for a user who may not see them")
	}
}

// TestSuspendResumeRevokeThroughForms: a certificate the local CA issued
// for an order is suspended, resumed and revoked from the forms, each
// landing on its order (D7).
func TestSuspendResumeRevokeThroughForms(t *testing.T) {
	e := newOrdEnv(t)
	ctx := context.Background()
	adm := e.login("administrator")
	w := e.post(adm, "/certificates/"+e.fp+"/rotate", url.Values{"location": {ordFileURI}, "action": {"rekey"}, "template": {e.template}})
	m := orderLocationRE.FindStringSubmatch(w.Header().Get("Location"))
	if w.Code != http.StatusSeeOther || m == nil {
		t.Fatalf("rotate: %d to %q\n%s", w.Code, w.Header().Get("Location"), btMain(w.Body.String()))
	}
	orderID := m[1]
	// The bot's half: a CSR for the same names, answered by the local CA.
	der, _, err := e.st.CertificateDER(ctx, e.account, e.fp)
	if err != nil {
		t.Fatal(err)
	}
	old, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: old.Subject, DNSNames: old.DNSNames}, key)
	if err != nil {
		t.Fatal(err)
	}
	bot, err := e.st.Bot(ctx, e.account, e.botID)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := e.ops.Ordering().OrderCSR(ctx, bot, orderID, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})))
	if err != nil || ans.Status != protocol.OrderIssued {
		t.Fatalf("CSR: %+v, %v", ans, err)
	}
	o, err := e.st.Order(ctx, e.account, orderID)
	if err != nil {
		t.Fatal(err)
	}
	newFP := o.NewFingerprint
	btWant(t, e.get(adm, "/orders/"+orderID), http.StatusOK, `id="order-new-cert" href="/certificates/`+newFP+`"`)

	steps := []struct {
		action string
		form   url.Values
		status string
	}{
		{"suspend", url.Values{"remarks": {"under review <b>now</b>"}}, store.OrderSuspended},
		{"resume", url.Values{}, store.OrderIssued},
		{"revoke", url.Values{"reason": {"keyCompromise"}, "remarks": {"key leaked"}}, store.OrderRevoked},
	}
	for _, st := range steps {
		w := e.post(adm, "/certificates/"+newFP+"/"+st.action, st.form)
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/orders/"+orderID {
			t.Fatalf("%s: %d to %q\n%s", st.action, w.Code, w.Header().Get("Location"), btMain(w.Body.String()))
		}
		btWant(t, e.get(adm, "/orders/"+orderID), http.StatusOK, `id="order-status" class="`+statusClass(st.status)+`">`+st.status+`<`)
	}
	body := btWant(t, e.get(adm, "/orders/"+orderID), http.StatusOK, "under review &lt;b&gt;now&lt;/b&gt;", "key leaked")
	if strings.Contains(body, `http-equiv="refresh"`) {
		t.Error("a revoked order still refreshes")
	}
}

// TestOrderHelpers: the forms' parsing and the order page's refresh rule,
// without services (runs in -short).
func TestOrderHelpers(t *testing.T) {
	verify := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{" , ", nil, false},
		{"127.0.0.1:8443", []string{"127.0.0.1:8443"}, false},
		{"a.example:443#www.example.com, [::1]:443", []string{"a.example:443#www.example.com", "[::1]:443"}, false},
		{"a.example", nil, true},
		{":443", nil, true},
		{"a.example:0", nil, true},
		{"a.example:443#two names", nil, true},
		{strings.Repeat("a:1,", maxVerify+1), nil, true},
	}
	for _, tc := range verify {
		got, err := parseVerify(tc.in)
		if (err != nil) != tc.wantErr || strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("parseVerify(%q) = %q, %v", tc.in, got, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "verify: ") {
			t.Errorf("parseVerify(%q): error %q does not name the field", tc.in, err)
		}
	}
	final := []struct {
		o    store.Order
		want bool
	}{
		{store.Order{Status: store.OrderInitiated, BotID: "b"}, false},
		{store.Order{Status: store.OrderOrdering, BotID: "b"}, false},
		{store.Order{Status: store.OrderIssued, BotID: "b"}, false},
		{store.Order{Status: store.OrderIssued}, true}, // ordered only
		{store.Order{Status: store.OrderDeployed, BotID: "b", Action: protocol.ActionRotate}, false},
		{store.Order{Status: store.OrderDeployed, BotID: "b", Action: protocol.ActionRenew}, true},
		{store.Order{Status: store.OrderRotated}, true},
		{store.Order{Status: store.OrderRekeyed}, true},
		{store.Order{Status: store.OrderRolledBack}, true},
		{store.Order{Status: store.OrderFailed}, true},
		{store.Order{Status: store.OrderRevoked}, true},
	}
	for _, tc := range final {
		if got := orderFinal(tc.o); got != tc.want {
			t.Errorf("orderFinal(%s, %s) = %v", tc.o.Status, tc.o.Action, got)
		}
	}
	req, err := rotateRequest(strings.Repeat("ab", 32), url.Values{"location": {ordFileURI}, "action": {"renew"},
		"reload": {"  systemctl   reload nginx "}, "key_path": {"/etc/ssl/site.key"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(req.Deploy.Reload, "|") != "systemctl|reload|nginx" || req.Deploy.KeyPath != "/etc/ssl/site.key" ||
		req.Deploy.Verify != nil || req.Action != protocol.ActionRenew {
		t.Errorf("rotateRequest = %+v", req)
	}
	for _, q := range []string{"status=lost", "fingerprint=12", "page=x", "batch=a%0Ab"} {
		v, _ := url.ParseQuery(q)
		if _, err := parseOrderQuery(v); err == nil {
			t.Errorf("parseOrderQuery(%s) accepted", q)
		}
	}
	oq, err := parseOrderQuery(url.Values{"status": {store.OrderRekeyed}, "page": {"3"}})
	if err != nil || oq.Filter.Offset != 2*orderPageSize || oq.Filter.Limit != orderPageSize+1 ||
		oq.Link(4) != "/orders?page=4&status=re-keyed" {
		t.Errorf("parseOrderQuery = %+v, %v; link %s", oq, err, oq.Link(4))
	}
}
