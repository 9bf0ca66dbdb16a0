package web

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/csv"
	"encoding/pem"
	"fmt"
	"html"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
	"github.com/xuri/excelize/v2"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/auth"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/seal"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// certEnv is a dashboard over a real SQLite store holding a small,
// known inventory, and a logged-in administrator.
type certEnv struct {
	t       testing.TB
	st      *store.SQL
	srv     *Server
	now     time.Time
	account string
	token   string // the session cookie's value
	botA    string
	botB    string
	// Fingerprints of the fixtures by name.
	fp map[string]string
}

const xssCN = "<script>alert(1)</script>"

// certIssuer is a CA that signs test certificates.
type certIssuer struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

func newCertIssuer(t testing.TB, cn string, now time.Time) certIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn, Organization: []string{"Test"}},
		NotBefore: now.AddDate(-1, 0, 0), NotAfter: now.AddDate(0, 0, 1000),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: 0, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, SubjectKeyId: []byte{1, 2, 3, 4},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return certIssuer{cert: c, der: der, key: key}
}

// leaf issues a certificate; serial must be unique per issuer.
func (ci certIssuer) leaf(t testing.TB, serial int64, cn string, sans []string, notAfter time.Time, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := ci.sign(serial, cn, sans, notAfter, &key.PublicKey, false)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// sign issues a certificate for pub (a leaf, or a CA when ca is set).
func (ci certIssuer) sign(serial int64, cn string, sans []string, notAfter time.Time, pub any, ca bool) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn, Organization: []string{"Example"}},
		NotBefore: notAfter.AddDate(-1, 0, 0), NotAfter: notAfter, DNSNames: sans,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		OCSPServer: []string{"http://ocsp.example.test"}, IssuingCertificateURL: []string{"http://ca.example.test/ca.crt"},
		CRLDistributionPoints: []string{"http://crl.example.test/ca.crl"},
	}
	if ca {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage, tmpl.ExtKeyUsage = true, true, x509.KeyUsageCertSign, nil
	}
	oid, err := x509.OIDFromInts([]uint64{2, 23, 140, 1, 2, 1})
	if err != nil {
		return nil, err
	}
	tmpl.Policies = []x509.OID{oid}
	return x509.CreateCertificate(rand.Reader, tmpl, ci.cert, pub, ci.key)
}

func newCertEnv(t testing.TB) *certEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Now().UTC().Truncate(time.Second)
	clock := func() time.Time { return now }
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "cp.db"), store.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &certEnv{t: t, st: st, now: now, fp: map[string]string{}}
	e.srv = newTestWebServer(t, st, clock)

	acct, err := st.CreateAccount(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetBotLimit(ctx, acct.ID, 5); err != nil {
		t.Fatal(err)
	}
	e.account = acct.ID
	e.token = loginAs(t, st, acct.ID, "admin@example.com", "administrator", now)

	var tokA string
	e.botA, tokA, err = admin.CreateBot(ctx, st, acct.ID, "web-bot", "")
	if err != nil {
		t.Fatal(err)
	}
	e.botB, _, err = admin.CreateBot(ctx, st, acct.ID, "file-bot <b>", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.ActivateBot(ctx, acct.ID, e.botA, admin.Hash(tokA), store.Activation{Hostname: "h1", CertSerial: "01"}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{e.botA, e.botB} {
		if err := st.TouchBot(ctx, b, now, "1.0", ""); err != nil {
			t.Fatal(err)
		}
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := newCertIssuer(t, "Test Issuing CA", now)
	evil := newCertIssuer(t, xssCN, now)
	day := 24 * time.Hour
	www := ca.leaf(t, 10, "www.example.com", []string{"www.example.com", "api.example.com", "shop.example.com", "mail.example.com"}, now.Add(100*day), key)
	xss := evil.leaf(t, 11, xssCN, []string{"xss.example.com"}, now.Add(5*day+time.Hour), key)
	expired := ca.leaf(t, 12, "expired.example.com", []string{"expired.example.com"}, now.Add(-10*day), key)
	formula := ca.leaf(t, 13, "=1+2", []string{"formula.example.com"}, now.Add(45*day), key)
	for name, der := range map[string][]byte{"www": www, "xss": xss, "expired": expired, "formula": formula, "ca": ca.der} {
		e.fp[name] = protocol.Fingerprint(der)
	}

	seen := now
	find := func(der []byte, chain [][]byte, uri, source, format string) protocol.Finding {
		l, err := protocol.ParseLocation(uri)
		if err != nil {
			t.Fatal(err)
		}
		return protocol.Finding{Location: l, Source: source, Format: format, Chain: append([][]byte{der}, chain...), SeenAt: seen}
	}
	wwwF := find(www, [][]byte{ca.der}, "tls://www.example.com:443", "tls", "tls")
	wwwF.Key = &protocol.KeyInfo{Algorithm: "ECDSA", Bits: 256}
	wwwF.Attributes = map[string]string{"virtual_server": "<i>vs1</i>"}
	errL, _ := protocol.ParseLocation("tls://closed.example.com:443")
	findingsA := []protocol.Finding{
		wwwF,
		find(expired, [][]byte{ca.der}, "tls://expired.example.com:443", "tls", "tls"),
		find(formula, nil, "file:///etc/ssl/formula.pem", "file", "pem"),
		{Location: errL, Source: "tls", Error: "handshake failure", SeenAt: seen},
	}
	for i := range 60 {
		der := ca.leaf(t, int64(100+i), fmt.Sprintf("bulk-%02d.example.org", i), []string{fmt.Sprintf("bulk-%02d.example.org", i)}, now.Add(200*day), key)
		findingsA = append(findingsA, find(der, nil, fmt.Sprintf("file:///srv/bulk/%02d.pem", i), "file", "pem"))
	}
	findingsB := []protocol.Finding{
		find(xss, [][]byte{evil.der}, "file:///etc/ssl/xss.pem", "file", "pem"),
		find(ca.der, nil, "file:///etc/ssl/ca.pem", "file", "pem"),
	}
	for _, s := range []struct {
		bot      string
		findings []protocol.Finding
	}{{e.botA, findingsA}, {e.botB, findingsB}} {
		scan := admin.NewID()
		if err := st.StartScan(ctx, acct.ID, s.bot, protocol.ScanStart{ScanID: scan, Trigger: protocol.TriggerSchedule, Started: now}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Ingest(ctx, acct.ID, s.bot, scan, protocol.FindingsBatch{Seq: 1, Findings: s.findings}); err != nil {
			t.Fatal(err)
		}
		if err := st.CompleteScan(ctx, acct.ID, s.bot, scan, protocol.ScanComplete{Finished: now, Batches: 1,
			Certificates: len(s.findings), Complete: true}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// newTestWebServer makes a dashboard over st with a fixed clock.
func newTestWebServer(t testing.TB, st store.Store, clock func() time.Time) *Server {
	t.Helper()
	key, err := seal.LoadKey(filepath.Join(t.TempDir(), "secret.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.New(key)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	o, err := ops.New(ops.Config{Store: st, Sealer: sealer, Logger: log, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Store: st, Ops: o, Logger: log, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// loginAs makes a user with role and a logged-in session; it returns the
// session cookie's value.
func loginAs(t testing.TB, st store.Store, account, email, role string, now time.Time) string {
	t.Helper()
	ctx := context.Background()
	hash, err := auth.HashPassword("correct horse battery staple 42")
	if err != nil {
		t.Fatal(err)
	}
	u := store.User{ID: admin.NewID(), Account: account, Email: email, Name: "Test", Role: role, Password: hash}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	token := "session-" + admin.NewID()
	if err := st.CreateSession(ctx, store.Session{IDHash: hashToken(token), UserID: u.ID, Account: account, Stage: store.SessionOK,
		CSRF: "csrf-" + admin.NewID(), CreatedAt: now, LastSeen: now, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return token
}

type webResponse struct {
	status int
	header http.Header
	body   []byte
}

// get requests path with the session (none when token is "").
func getPage(t testing.TB, srv *Server, token, path string) webResponse {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "https://cp.example.test"+path, nil)
	if token != "" {
		req.AddCookie(&http.Cookie{Name: SessionCookie, Value: token})
	}
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	return webResponse{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

func (e *certEnv) get(path string) webResponse {
	e.t.Helper()
	return getPage(e.t, e.srv, e.token, path)
}

var rowFingerprint = regexp.MustCompile(`<tr data-fingerprint="([0-9a-f]{64})"`)

// listed is the fingerprints a list page shows, in order.
func listed(body []byte) []string {
	var out []string
	for _, m := range rowFingerprint.FindAllSubmatch(body, -1) {
		out = append(out, string(m[1]))
	}
	return out
}

var resultCount = regexp.MustCompile(`<span id="result-count">(\d+)</span>`)

func TestCertificateList(t *testing.T) {
	e := newCertEnv(t)
	all := 65
	today := e.now.Format(dateLayout)
	tests := []struct {
		name      string
		query     url.Values
		wantCount int
		// wantFirst is the fingerprint (by fixture name) the page lists
		// first; wantAll are ones it must list; wantNot ones it must not.
		wantFirst string
		wantAll   []string
		wantNot   []string
		wantRows  int
	}{
		{"default: by expiry", nil, all, "expired", []string{"xss", "formula", "www"}, nil, 50},
		{"q by SAN part", url.Values{"q": {"SHOP.example"}}, 1, "www", nil, nil, 1},
		{"q by CN part", url.Values{"q": {"bulk-0"}}, 10, "", nil, []string{"www"}, 10},
		{"issuer", url.Values{"issuer": {"script"}}, 1, "xss", nil, nil, 1},
		{"source file", url.Values{"source": {"file"}}, 63, "xss", nil, []string{"www", "expired"}, 50},
		{"source tls", url.Values{"source": {"tls"}}, 2, "expired", []string{"www"}, nil, 2},
		{"bot B", url.Values{"bot": {"B"}}, 2, "xss", []string{"ca"}, nil, 2},
		{"type ca", url.Values{"type": {"ca"}}, 1, "ca", nil, nil, 1},
		{"type leaf", url.Values{"type": {"leaf"}, "q": {"example.com"}}, 4, "expired", nil, []string{"ca"}, 4},
		{"location", url.Values{"location": {"closed"}}, 0, "", nil, nil, 0},
		{"location server", url.Values{"location": {"www.example.com:443"}}, 1, "www", nil, nil, 1},
		{"expires before today", url.Values{"expires_before": {today}}, 1, "expired", nil, nil, 1},
		{"expires window", url.Values{"expires_after": {today}, "expires_before": {e.now.AddDate(0, 0, 60).Format(dateLayout)}}, 2, "xss", []string{"formula"}, nil, 2},
		{"sort CN desc", url.Values{"sort": {"common_name"}, "order": {"desc"}}, all, "www", nil, nil, 50},
		{"sort CN asc", url.Values{"sort": {"common_name"}}, all, "xss", nil, nil, 50},
		{"sort not_after desc", url.Values{"sort": {"not_after"}, "order": {"desc"}}, all, "ca", nil, nil, 50},
		{"page 2", url.Values{"page": {"2"}}, all, "", nil, nil, 15},
		{"page past the end", url.Values{"page": {"9"}}, all, "", nil, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.query
			if q != nil && q.Get("bot") == "B" {
				q.Set("bot", e.botB)
			}
			r := e.get("/certificates?" + q.Encode())
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			m := resultCount.FindSubmatch(r.body)
			if m == nil || string(m[1]) != fmt.Sprint(tt.wantCount) {
				t.Errorf("result count %q, want %d", m, tt.wantCount)
			}
			got := listed(r.body)
			if len(got) != tt.wantRows {
				t.Errorf("%d rows, want %d", len(got), tt.wantRows)
			}
			if tt.wantFirst != "" && (len(got) == 0 || got[0] != e.fp[tt.wantFirst]) {
				t.Errorf("first row %v, want %s (%s)", got[:min(1, len(got))], tt.wantFirst, e.fp[tt.wantFirst])
			}
			for _, n := range tt.wantAll {
				if !strings.Contains(strings.Join(got, " "), e.fp[n]) {
					t.Errorf("%s not listed", n)
				}
			}
			for _, n := range tt.wantNot {
				if strings.Contains(strings.Join(got, " "), e.fp[n]) {
					t.Errorf("%s listed", n)
				}
			}
		})
	}
}

func TestCertificateListPageContract(t *testing.T) {
	e := newCertEnv(t)
	r := e.get("/certificates?q=example&sort=common_name&order=desc")
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	body := string(r.body)
	for _, want := range []string{
		`<form id="search" method="get" action="/certificates"`,
		`<table id="certificates">`,
		`class="cert-link" href="/certificates/` + e.fp["www"] + `"`,
		`id="export-csv" href="/certificates/export.csv?order=desc&amp;q=example&amp;sort=common_name"`,
		`id="export-xlsx" href="/certificates/export.xlsx?order=desc&amp;q=example&amp;sort=common_name"`,
		`aria-sort="descending"`,
		`+1 more`, // www has four SANs
		`page=2`,  // the pager keeps the filters
		`<label for="expires_before">`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if !regexp.MustCompile(`href="/certificates\?order=desc&amp;page=2&amp;q=example&amp;sort=common_name"`).MatchString(body) {
		t.Errorf("pager link without the filters")
	}
	// The expired certificate is marked bad; the one expiring in 5 days warn.
	r = e.get("/certificates?q=expired")
	if !strings.Contains(string(r.body), `class="bad"`) {
		t.Errorf("expired certificate not marked bad")
	}
	r = e.get("/certificates?q=xss")
	if !strings.Contains(string(r.body), `class="warn"`) {
		t.Errorf("certificate expiring in 5 days not marked warn")
	}
}

func TestCertificateListBadInput(t *testing.T) {
	e := newCertEnv(t)
	tests := []struct {
		query, field string
	}{
		{"expires_before=2026-13-01", "expires_before"},
		{"expires_after=yesterday", "expires_after"},
		{"sort=serial", "sort"},
		{"order=up", "order"},
		{"type=root", "type"},
		{"page=0", "page"},
		{"page=x", "page"},
		{"q=" + strings.Repeat("a", 201), "q"},
	}
	for _, tt := range tests {
		t.Run(tt.query[:min(len(tt.query), 30)], func(t *testing.T) {
			r := e.get("/certificates?" + tt.query)
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", r.status)
			}
			if !strings.Contains(string(r.body), `role="alert" id="search-error">`+tt.field+`:`) {
				t.Errorf("message does not name %s", tt.field)
			}
			if !strings.Contains(string(r.body), `<form id="search"`) {
				t.Errorf("no search form to correct the input")
			}
			for _, ext := range []string{"csv", "xlsx"} {
				if r := e.get("/certificates/export." + ext + "?" + tt.query); r.status != http.StatusBadRequest {
					t.Errorf("export %s: status %d, want 400", ext, r.status)
				}
			}
		})
	}
}

func TestCertificateEscaping(t *testing.T) {
	e := newCertEnv(t)
	pages := []string{
		"/certificates",
		"/certificates?q=xss",
		"/certificates/" + e.fp["xss"],
		"/certificates/" + e.fp["www"], // the attribute <i>vs1</i>
		"/",
	}
	for _, p := range pages {
		t.Run(p, func(t *testing.T) {
			r := e.get(p)
			if r.status != http.StatusOK {
				t.Fatalf("status %d", r.status)
			}
			body := string(r.body)
			for _, bad := range []string{"<script>alert", "<i>vs1", "<b>"} {
				if strings.Contains(body, bad) {
					t.Errorf("%q unescaped", bad)
				}
			}
		})
	}
	r := e.get("/certificates/" + e.fp["xss"])
	if !strings.Contains(string(r.body), `<h1 id="cert-title">&lt;script&gt;alert(1)&lt;/script&gt;</h1>`) {
		t.Errorf("view: the CN is not shown escaped in the h1")
	}
	r = e.get("/")
	if !strings.Contains(string(r.body), "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("dashboard: the issuer is not in the chart, escaped")
	}
}

func TestCertificateView(t *testing.T) {
	e := newCertEnv(t)
	r := e.get("/certificates/" + e.fp["www"])
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	body := string(r.body)
	for _, want := range []string{
		`<h1 id="cert-title">www.example.com</h1>`,
		`<dl id="cert-details"`,
		"DNS: shop.example.com",
		"CN=Test Issuing CA,O=Test",
		"0A", // serial 10 as hex
		"days left",
		"ECDSA 256 bits (P-256)",
		"ECDSA-SHA256",
		"Digital signature",
		"TLS server authentication",
		"Basic constraints</dt>\n  <dd><span class=\"hint\">none</span>", // the leaf has none
		"http://ocsp.example.test",
		"http://ca.example.test/ca.crt",
		"http://crl.example.test/ca.crl",
		"2.23.140.1.2.1",
		`id="cert-chain"`,
		`<table id="cert-locations"`,
		"tls://www.example.com:443",
		`<a href="/bots/` + e.botA + `">web-bot</a>`,
		"virtual_server",
		"&lt;i&gt;vs1&lt;/i&gt;",
		`id="download-pem" href="/certificates/` + e.fp["www"] + `/download?format=pem"`,
		`id="download-der"`,
		`id="download-p7b"`,
		`id="download-pem-chain"`,
		`id="search-issuer" href="/certificates?issuer=`,
		`id="revoke-form"`, // D7: an administrator has the actions
	} {
		if !strings.Contains(body, want) {
			t.Errorf("view lacks %q", want)
		}
	}
	// AIA and CRL URLs are attacker-chosen: text, never links.
	if strings.Contains(body, `href="http://ocsp`) || strings.Contains(body, `href="http://crl`) {
		t.Errorf("a certificate's URL became a link")
	}
	if r := e.get("/certificates/" + e.fp["ca"]); !strings.Contains(string(r.body), "CA: yes, path length ≤ 0") {
		t.Errorf("CA certificate: no basic constraints")
	}
	// "Other certificates of this issuer" finds them.
	m := regexp.MustCompile(`id="search-issuer" href="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no issuer search link")
	}
	if r := e.get(html.UnescapeString(m[1])); !strings.Contains(string(r.body), `<span id="result-count">64</span>`) { // and the CA itself, self-signed
		t.Errorf("issuer search %s does not find the issuer's 64 certificates", m[1])
	}
	if r := e.get("/certificates/" + e.fp["expired"]); !strings.Contains(string(r.body), "expired 10 days ago") {
		t.Errorf("expired certificate: no \"expired 10 days ago\"")
	}

	tests := []struct {
		path   string
		status int
	}{
		{"/certificates/" + strings.Repeat("ab", 32), http.StatusNotFound},
		{"/certificates/nothex", http.StatusBadRequest},
		{"/certificates/" + e.fp["www"] + "/download?format=pfx", http.StatusBadRequest},
		{"/certificates/" + strings.Repeat("ab", 32) + "/download", http.StatusNotFound},
		{"/certificates/zz/download", http.StatusBadRequest},
	}
	for _, tt := range tests {
		if r := e.get(tt.path); r.status != tt.status {
			t.Errorf("%s: status %d, want %d", tt.path, r.status, tt.status)
		}
	}
}

func TestCertificateDownload(t *testing.T) {
	e := newCertEnv(t)
	fp := e.fp["www"]
	tests := []struct {
		query    string
		ctype    string
		filename string
		certs    int
	}{
		{"format=pem", "application/x-pem-file", "www.example.com.pem", 1},
		{"", "application/x-pem-file", "www.example.com.pem", 1},
		{"format=pem&chain=1", "application/x-pem-file", "www.example.com-chain.pem", 2},
		{"format=der", "application/pkix-cert", "www.example.com.der", 1},
		{"format=p7b", "application/x-pkcs7-certificates", "www.example.com.p7b", 2},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			r := e.get("/certificates/" + fp + "/download?" + tt.query)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if got := r.header.Get("Content-Type"); got != tt.ctype {
				t.Errorf("content type %q, want %q", got, tt.ctype)
			}
			if got, want := r.header.Get("Content-Disposition"), `attachment; filename="`+tt.filename+`"`; got != want {
				t.Errorf("disposition %q, want %q", got, want)
			}
			var certs []*x509.Certificate
			switch {
			case strings.Contains(tt.query, "der"):
				c, err := x509.ParseCertificate(r.body)
				if err != nil {
					t.Fatal(err)
				}
				certs = append(certs, c)
			case strings.Contains(tt.query, "p7b"):
				p7, err := pkcs7.Parse(r.body)
				if err != nil {
					t.Fatal(err)
				}
				certs = p7.Certificates
			default:
				rest := r.body
				for {
					var b *pem.Block
					b, rest = pem.Decode(rest)
					if b == nil {
						break
					}
					c, err := x509.ParseCertificate(b.Bytes)
					if err != nil {
						t.Fatal(err)
					}
					certs = append(certs, c)
				}
			}
			if len(certs) != tt.certs {
				t.Fatalf("%d certificates, want %d", len(certs), tt.certs)
			}
			if protocol.Fingerprint(certs[0].Raw) != fp {
				t.Errorf("first certificate is not the one asked for")
			}
		})
	}
	// The CN <script>... makes no file name: the fingerprint's start.
	r := e.get("/certificates/" + e.fp["xss"] + "/download?format=der")
	if want := `attachment; filename="script_alert_1___script.der"`; r.header.Get("Content-Disposition") != want {
		t.Errorf("disposition %q, want %q", r.header.Get("Content-Disposition"), want)
	}
	entries, _, err := e.st.Audit(context.Background(), e.account, store.AuditFilter{Action: "certificate.download"})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(tests)+1 || entries[0].Object != e.fp["xss"] || entries[0].Actor != "admin@example.com" {
		t.Errorf("audit: %+v", entries)
	}
}

func TestSafeFileName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"www.example.com", "www.example.com"},
		{"*.example.com", "wildcard.example.com"},
		{`a"b;c\d/e`, "a_b_c_d_e"},
		{"../../etc/passwd", "etc_passwd"},
		{"", "fallback"},
		{"日本", "fallback"},
		{"..", "fallback"},
		{strings.Repeat("x", 100), strings.Repeat("x", 64)},
	}
	for _, tt := range tests {
		if got := safeFileName(tt.in, "fallback"); got != tt.want {
			t.Errorf("safeFileName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCertificateExport(t *testing.T) {
	e := newCertEnv(t)
	tests := []struct {
		query string
		want  int // data rows
	}{
		{"", 65},
		{"source=file", 63},
		{"q=formula", 1},
		{"q=nothing-matches", 0},
		{"page=2&sort=issuer", 65}, // every match, not one page
	}
	for _, tt := range tests {
		t.Run("csv "+tt.query, func(t *testing.T) {
			r := e.get("/certificates/export.csv?" + tt.query)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if cd := r.header.Get("Content-Disposition"); !regexp.MustCompile(`^attachment; filename="certificates-\d{4}-\d\d-\d\d-\d{6}\.csv"$`).MatchString(cd) {
				t.Errorf("disposition %q", cd)
			}
			rows, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			checkExport(t, e, rows, tt.want)
		})
		t.Run("xlsx "+tt.query, func(t *testing.T) {
			r := e.get("/certificates/export.xlsx?" + tt.query)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			f, err := excelize.OpenReader(bytes.NewReader(r.body))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rows, err := f.GetRows("Certificates")
			if err != nil {
				t.Fatal(err)
			}
			checkExport(t, e, rows, tt.want)
		})
	}
	entries, _, err := e.st.Audit(context.Background(), e.account, store.AuditFilter{Action: "certificates.export"})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2*len(tests) || entries[0].Detail != "order=asc&page=2&sort=issuer" && entries[0].Detail != "order=asc&sort=issuer" {
		t.Errorf("audit: %d entries, latest %+v", len(entries), entries[:min(1, len(entries))])
	}
}

// checkExport checks an export's rows: the header, n certificates, every
// cell that could be a formula neutralised.
func checkExport(t *testing.T, e *certEnv, rows [][]string, n int) {
	t.Helper()
	if len(rows) != n+1 {
		t.Fatalf("%d rows, want %d and a header", len(rows), n+1)
	}
	if strings.Join(rows[0], "|") != strings.Join(exportHeader, "|") {
		t.Errorf("header %q", rows[0])
	}
	fps := map[string]bool{}
	for _, row := range rows[1:] {
		fps[row[11]] = true
		for i, cell := range row {
			if _, err := strconv.Atoi(cell); err == nil {
				continue // a number is not a formula
			}
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				t.Errorf("column %s: %q could run as a formula", exportHeader[i], cell)
			}
		}
		if row[11] == e.fp["formula"] && row[0] != "'=1+2" {
			t.Errorf("formula CN exported as %q", row[0])
		}
		if row[11] == e.fp["www"] {
			if row[1] != "www.example.com\napi.example.com\nshop.example.com\nmail.example.com" || row[12] != "tls://www.example.com:443" ||
				row[13] != "web-bot" || row[10] != "no" || row[7] != "ECDSA" || row[8] != "256" {
				t.Errorf("www row %q", row)
			}
		}
		if row[11] == e.fp["expired"] && row[6] != "-10" {
			t.Errorf("expired: days left %q, want -10", row[6])
		}
	}
	if len(fps) != n {
		t.Errorf("%d distinct certificates, want %d", len(fps), n)
	}
}

func TestSafeCell(t *testing.T) {
	for in, want := range map[string]string{"": "", "=SUM(A1)": "'=SUM(A1)", "+1": "'+1", "-1": "'-1", "@x": "'@x",
		"\tx": "'\tx", "\rx": "'\rx", "a=b": "a=b", "'x": "'x"} {
		if got := safeCell(in); got != want {
			t.Errorf("safeCell(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCertificatePagesNeedLogin(t *testing.T) {
	e := newCertEnv(t)
	basic := loginAs(t, e.st, e.account, "basic@example.com", "basic_user", e.now)
	for _, p := range []string{"/", "/certificates", "/certificates/" + e.fp["www"], "/certificates/export.csv",
		"/certificates/" + e.fp["www"] + "/download?format=der"} {
		t.Run(p, func(t *testing.T) {
			r := getPage(t, e.srv, "", p)
			if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/login?next=") {
				t.Errorf("logged out: status %d, location %q", r.status, r.header.Get("Location"))
			}
			if r := getPage(t, e.srv, basic, p); r.status != http.StatusOK {
				t.Errorf("basic user: status %d", r.status)
			}
		})
	}
	// A basic user sees no bot links (no bots.view).
	r := getPage(t, e.srv, basic, "/certificates/"+e.fp["www"])
	if strings.Contains(string(r.body), `href="/bots/`) {
		t.Errorf("basic user gets links to bots")
	}
}

func TestPager(t *testing.T) {
	tests := []struct {
		page, pages int
		want        string
	}{
		{1, 1, ""},
		{1, 3, "[1] 2 3"},
		{1, 10, "[1] 2 3 … 10"},
		{5, 10, "1 … 3 4 [5] 6 7 … 10"},
		{10, 10, "1 … 8 9 [10]"},
		{4, 10, "1 2 3 [4] 5 6 … 10"},
	}
	for _, tt := range tests {
		var parts []string
		for _, p := range pager(certQuery{Page: tt.page, Sort: "not_after", Order: "asc"}, tt.pages) {
			switch {
			case p.Gap:
				parts = append(parts, "…")
			case p.Current:
				parts = append(parts, fmt.Sprintf("[%d]", p.N))
			default:
				parts = append(parts, fmt.Sprint(p.N))
			}
		}
		if got := strings.Join(parts, " "); got != tt.want {
			t.Errorf("page %d of %d: %q, want %q", tt.page, tt.pages, got, tt.want)
		}
	}
}

func TestDNCommonName(t *testing.T) {
	for in, want := range map[string]string{
		"CN=R11,O=Let's Encrypt,C=US": "R11",
		`CN=a\,b,O=x`:                 "a,b",
		"O=x,CN=y":                    "y",
		"O=x":                         "",
		"CN=" + xssCN:                 xssCN,
	} {
		if got := dnCommonName(in); got != want {
			t.Errorf("dnCommonName(%q) = %q, want %q", in, got, want)
		}
	}
}
