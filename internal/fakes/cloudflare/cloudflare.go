// Package cloudflare is a fake Cloudflare API v4 built from the documented
// answers in connectors/cloudflare/testdata.
package cloudflare

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAPI is a Cloudflare API v4 built from the documented requests and
// answers (testdata/*.json name the pages). It checks credentials, pages
// lists by page/per_page with result_info.total_pages, and can be told to
// fail one list with 401, 403, 429 (then succeed), 500 or garbage.
type fakeAPI struct {
	t testing.TB
	// token, or email and key: the credentials it accepts.
	token, email, key string
	// fail maps a list (custom, packs, origin) to a failure mode.
	fail map[string]string

	mu       sync.Mutex
	requests []string
	calls    map[string]int
	lists    map[string][]json.RawMessage
	// newIDOnEdit gives an edited custom certificate a new id, as
	// Cloudflare does for sni_custom ones.
	newIDOnEdit bool
	edits       []Edit
	pems        map[string]string // custom certificate id -> PEM uploaded
}

func newFakeAPI(t testing.TB, originPEMs []string, documentedHosts bool) *fakeAPI {
	f := &fakeAPI{t: t, fail: map[string]string{}, calls: map[string]int{}, lists: map[string][]json.RawMessage{}, pems: map[string]string{}}
	for name, file := range map[string]string{"custom": "custom_certificates.json", "packs": "certificate_packs.json", "origin": "origin_ca_certificates.json"} {
		b, err := os.ReadFile(testdata(file))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if file != "origin_ca_certificates.json" && !documentedHosts {
			s = strings.ReplaceAll(s, "example.com", "example.invalid")
		}
		for i, p := range originPEMs {
			q, _ := json.Marshal(p)
			s = strings.ReplaceAll(s, `"{{PEM_`+strconv.Itoa(i)+`}}"`, string(q))
		}
		var doc struct {
			Result []json.RawMessage `json:"result"`
		}
		if err := json.Unmarshal([]byte(s), &doc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		f.lists[name] = doc.Result
	}
	return f
}

func (f *fakeAPI) start() *httptest.Server {
	srv := httptest.NewServer(f)
	f.t.Cleanup(srv.Close)
	return srv
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	f.mu.Unlock()
	if r.Method != http.MethodGet && r.Method != http.MethodPatch {
		writeJSON(w, 405, map[string]any{"success": false, "errors": []any{map[string]any{"code": 10405, "message": "method not allowed"}}})
		return
	}
	f.mu.Lock()
	token, email, key := f.token, f.email, f.key
	f.mu.Unlock()
	authErr := func() {
		b, _ := os.ReadFile(testdata("error_auth.json"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write(b)
	}
	switch {
	case token != "":
		if r.Header.Get("Authorization") != "Bearer "+token || r.Header.Get("X-Auth-Key") != "" {
			authErr()
			return
		}
	default:
		if r.Header.Get("X-Auth-Email") != email || r.Header.Get("X-Auth-Key") != key || r.Header.Get("Authorization") != "" {
			authErr()
			return
		}
	}
	path := strings.TrimPrefix(r.URL.Path, "/client/v4")
	q := r.URL.Query()
	var name string
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case r.Method == http.MethodPatch && !(len(parts) == 4 && parts[0] == "zones" && parts[2] == "custom_certificates"):
		writeJSON(w, 405, map[string]any{"success": false, "errors": []any{map[string]any{"code": 10405, "message": "method not allowed"}}})
		return
	case len(parts) == 4 && parts[0] == "zones" && parts[2] == "custom_certificates":
		name = ListCustomGet
		if r.Method == http.MethodPatch {
			name = ListCustomEdit
		}
	case len(parts) == 3 && parts[0] == "zones" && parts[2] == "custom_certificates":
		name = "custom"
	case len(parts) == 4 && parts[0] == "zones" && parts[2] == "ssl" && parts[3] == "certificate_packs":
		if q.Get("status") != "all" {
			f.t.Errorf("certificate_packs without status=all: %s", r.URL)
		}
		name = "packs"
	case len(parts) == 1 && parts[0] == "certificates":
		if q.Get("zone_id") == "" {
			writeJSON(w, 400, map[string]any{"success": false, "errors": []any{map[string]any{"code": 1001, "message": "zone_id required"}}})
			return
		}
		name = "origin"
	default:
		writeJSON(w, 404, map[string]any{"success": false, "errors": []any{map[string]any{"code": 7003, "message": "Could not route to " + path}}})
		return
	}
	f.mu.Lock()
	f.calls[name]++
	n := f.calls[name]
	mode := f.fail[name]
	f.mu.Unlock()
	switch mode {
	case "401":
		authErr()
		return
	case "403":
		writeJSON(w, 403, map[string]any{"success": false, "errors": []any{map[string]any{"code": 9109, "message": "Unauthorized to access requested resource"}}, "messages": []any{}, "result": nil})
		return
	case "429once":
		if n == 1 {
			w.Header().Set("Retry-After", "0")
			writeJSON(w, 429, map[string]any{"success": false, "errors": []any{map[string]any{"code": 971, "message": "Please wait and consider throttling your request speed"}}})
			return
		}
	case "429always":
		w.Header().Set("Retry-After", "3600")
		writeJSON(w, 429, map[string]any{"success": false, "errors": []any{map[string]any{"code": 971, "message": "Please wait and consider throttling your request speed"}}})
		return
	case "400":
		writeJSON(w, 400, map[string]any{"success": false, "errors": []any{map[string]any{"code": 1002, "message": "Invalid certificate"}}, "messages": []any{}, "result": nil})
		return
	case "500":
		w.WriteHeader(500)
		_, _ = w.Write([]byte("<html>internal error</html>"))
		return
	case "garbage":
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"success":true,"result":[{"id":`))
		return
	}
	if name == ListCustomGet || name == ListCustomEdit {
		f.item(w, r, parts[1], parts[3])
		return
	}
	f.mu.Lock()
	items := slices.Clone(f.lists[name])
	f.mu.Unlock()
	page, _ := strconv.Atoi(q.Get("page"))
	perPage, _ := strconv.Atoi(q.Get("per_page"))
	if page < 1 {
		page = 1
	}
	if perPage < 1 {
		perPage = 20
	}
	total := (len(items) + perPage - 1) / perPage
	lo := min((page-1)*perPage, len(items))
	hi := min(lo+perPage, len(items))
	writeJSON(w, 200, map[string]any{
		"success": true, "errors": []any{}, "messages": []any{},
		"result":      items[lo:hi],
		"result_info": map[string]any{"page": page, "per_page": perPage, "count": hi - lo, "total_count": len(items), "total_pages": total},
	})
}

// ZoneID is the zone the testdata describes.
const ZoneID = "023e105f4ecef8ad9ca31a8372d0c353"

func testdata(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "connectors", "cloudflare", "testdata", name)
}

// Fake is a running fake Cloudflare API.
type Fake struct {
	api *fakeAPI
	url string
	// Origin is the Origin CA certificates the API returns, by their PEM.
	Origin []*x509.Certificate
}

// Options say what a fake started by StartWith serves and accepts.
type Options struct {
	// Token is the API token accepted; when it is "", only the pair
	// Email and Key (X-Auth-Email, X-Auth-Key) is.
	Token, Email, Key string
	// DocumentedHosts serves the custom certificates and certificate
	// packs with their hosts as documented (example.com, www.example.com,
	// ...) instead of renamed to end in .invalid.
	DocumentedHosts bool
}

// Start serves the zone's custom certificates and certificate packs (their
// hosts renamed to end in .invalid, so that a handshake to HOST:443 fails
// without leaving the machine), and
// Origin CA certificates (two, made here, returned as PEM by the API),
// accepting only the API token given, until the test ends.
func Start(t testing.TB, token string) *Fake {
	t.Helper()
	return StartWith(t, Options{Token: token})
}

// StartWith is Start with the credentials and hosts of o.
func StartWith(t testing.TB, o Options) *Fake {
	t.Helper()
	x := &Fake{}
	var pems []string
	for _, cn := range []string{"example.com", "origin.example.com"} {
		c := originCert(t, cn)
		x.Origin = append(x.Origin, c)
		pems = append(pems, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
	}
	x.api = newFakeAPI(t, pems, o.DocumentedHosts)
	x.api.token, x.api.email, x.api.key = o.Token, o.Email, o.Key
	x.url = x.api.start().URL + "/client/v4"
	return x
}

// SetToken makes the fake accept only the API token tok.
func (x *Fake) SetToken(tok string) {
	x.api.mu.Lock()
	defer x.api.mu.Unlock()
	x.api.token, x.api.email, x.api.key = tok, "", ""
}

// SetKey makes the fake accept only the global API key with its email.
func (x *Fake) SetKey(email, key string) {
	x.api.mu.Lock()
	defer x.api.mu.Unlock()
	x.api.token, x.api.email, x.api.key = "", email, key
}

// The lists a fake serves, for Fail and Calls.
const (
	ListCustom = "custom" // zones/ZONE/custom_certificates
	ListPacks  = "packs"  // zones/ZONE/ssl/certificate_packs
	ListOrigin = "origin" // certificates?zone_id=ZONE
	// ListCustomGet and ListCustomEdit are GET and PATCH of one custom
	// certificate (zones/ZONE/custom_certificates/ID).
	ListCustomGet  = "custom_get"
	ListCustomEdit = "custom_edit"
)

// Failure modes for Fail.
const (
	Fail401       = "401"       // the documented authentication error
	Fail403       = "403"       // Unauthorized to access requested resource
	Fail429Once   = "429once"   // 429 with Retry-After: 0 once, then answers
	Fail429Always = "429always" // 429 with Retry-After: 3600, every time
	Fail400       = "400"       // 400 with a Cloudflare error (an edit refused)
	Fail500       = "500"       // 500 with an HTML body
	FailGarbage   = "garbage"   // 200 with truncated JSON
)

// Fail makes every request for list answer in mode (one of the Fail*
// constants; "" answers normally again).
func (x *Fake) Fail(list, mode string) {
	x.api.mu.Lock()
	defer x.api.mu.Unlock()
	x.api.fail[list] = mode
}

// Calls counts the requests for list that passed authentication.
func (x *Fake) Calls(list string) int {
	x.api.mu.Lock()
	defer x.api.mu.Unlock()
	return x.api.calls[list]
}

// URL is the endpoint= of a cloudflare:// target.
func (x *Fake) URL() string { return x.url }

// Requests lists the requests served, as METHOD PATH?QUERY.
func (x *Fake) Requests() []string {
	x.api.mu.Lock()
	defer x.api.mu.Unlock()
	return append([]string(nil), x.api.requests...)
}

func originCert(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2039, 1, 1, 0, 0, 0, 0, time.UTC)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Edit is one PATCH of a custom certificate the fake accepted.
type Edit struct {
	Zone, ID, NewID string
	// Certificate is the PEM sent (leaf and chain); the key is not kept.
	Certificate, BundleMethod string
}

func apiError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, map[string]any{"success": false, "errors": []any{map[string]any{"code": code, "message": msg}}, "messages": []any{}, "result": nil})
}

// item serves GET and PATCH /zones/{zone_id}/custom_certificates/{id}
// (https://developers.cloudflare.com/api/resources/custom_certificates/methods/get/,
// .../methods/edit/): the answer is the envelope with the custom
// certificate as result, the same object the list gives. A PATCH takes
// certificate (leaf then intermediates, PEM), private_key (PEM) and
// bundle_method (ubiquitous, optimal, force); the fake needs both the
// certificate and its matching key (the documentation allows either alone;
// the fake keeps no key to check a lone certificate against). Hosts,
// issuer, signature and expires_on then describe the new certificate, and
// uploaded_on and modified_on are now; with SetNewIDOnEdit the id changes
// ("PATCHing a configuration for sni_custom certificates will result in a
// new resource id being returned, and the previous one being deleted").
func (f *fakeAPI) item(w http.ResponseWriter, r *http.Request, zone, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	idx := -1
	var cur map[string]any
	for i, raw := range f.lists["custom"] {
		var m map[string]any
		if json.Unmarshal(raw, &m) == nil && m["id"] == id && m["zone_id"] == zone {
			idx, cur = i, m
		}
	}
	if idx < 0 {
		apiError(w, 404, 1405, "Certificate not found")
		return
	}
	ok := func(m map[string]any) {
		writeJSON(w, 200, map[string]any{"success": true, "errors": []any{}, "messages": []any{}, "result": m})
	}
	if r.Method == http.MethodGet {
		ok(cur)
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		apiError(w, 400, 10000, "Content-Type must be application/json")
		return
	}
	var body struct {
		Certificate  string `json:"certificate"`
		PrivateKey   string `json:"private_key"`
		BundleMethod string `json:"bundle_method"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		apiError(w, 400, 10000, "malformed JSON body")
		return
	}
	if body.BundleMethod != "" && !slices.Contains([]string{"ubiquitous", "optimal", "force"}, body.BundleMethod) {
		apiError(w, 400, 1002, "bundle_method must be ubiquitous, optimal or force")
		return
	}
	var chain []*x509.Certificate
	for rest := []byte(body.Certificate); ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil || b.Type != "CERTIFICATE" {
			apiError(w, 400, 1002, "Invalid certificate")
			return
		}
		chain = append(chain, c)
	}
	kb, _ := pem.Decode([]byte(body.PrivateKey))
	if len(chain) == 0 || kb == nil {
		apiError(w, 400, 1002, "the fake needs certificate and private_key, both PEM")
		return
	}
	var key any
	var err error
	switch kb.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	}
	signer, isSigner := key.(crypto.Signer)
	if err != nil || !isSigner {
		apiError(w, 400, 1003, "Invalid private key")
		return
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(chain[0].PublicKey) {
		apiError(w, 400, 1003, "The private key does not match the certificate")
		return
	}
	leaf := chain[0]
	hosts := leaf.DNSNames
	if len(hosts) == 0 {
		hosts = []string{leaf.Subject.CommonName}
	}
	issuer := leaf.Issuer.CommonName
	if len(leaf.Issuer.Organization) > 0 {
		issuer = leaf.Issuer.Organization[0]
	}
	now := time.Now().UTC().Format(time.RFC3339)
	newID := id
	if f.newIDOnEdit {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		newID = hex.EncodeToString(b)
	}
	cur["id"], cur["hosts"], cur["issuer"], cur["signature"] = newID, hosts, issuer, signatureName(leaf.SignatureAlgorithm)
	cur["expires_on"], cur["uploaded_on"], cur["modified_on"], cur["status"] = leaf.NotAfter.UTC().Format(time.RFC3339), now, now, "active"
	if body.BundleMethod != "" {
		cur["bundle_method"] = body.BundleMethod
	}
	raw, _ := json.Marshal(cur)
	f.lists["custom"][idx] = raw
	delete(f.pems, id)
	f.pems[newID] = body.Certificate
	f.edits = append(f.edits, Edit{Zone: zone, ID: id, NewID: newID, Certificate: body.Certificate, BundleMethod: body.BundleMethod})
	ok(cur)
}

// signatureName names a signature algorithm as Cloudflare's "signature"
// field does (SHA256WithRSA, ECDSAWithSHA256).
func signatureName(a x509.SignatureAlgorithm) string {
	switch a {
	case x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA:
		return strings.ReplaceAll(a.String(), "-", "With")
	case x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512:
		return "ECDSAWith" + strings.TrimPrefix(a.String(), "ECDSA-")
	}
	return a.String()
}

// SetNewIDOnEdit makes a PATCH give the custom certificate a new id, as
// Cloudflare does for sni_custom certificates.
func (x *Fake) SetNewIDOnEdit(on bool) {
	x.api.mu.Lock()
	defer x.api.mu.Unlock()
	x.api.newIDOnEdit = on
}

// Edits lists the PATCHes of custom certificates the fake accepted.
func (x *Fake) Edits() []Edit {
	x.api.mu.Lock()
	defer x.api.mu.Unlock()
	return slices.Clone(x.api.edits)
}

// CustomPEM is the certificate PEM last uploaded to custom certificate id
// ("" when none was: the testdata ones have no PEM).
func (x *Fake) CustomPEM(id string) string {
	x.api.mu.Lock()
	defer x.api.mu.Unlock()
	return x.api.pems[id]
}

// CustomIDs lists the ids of the zone's custom certificates, in order.
func (x *Fake) CustomIDs() []string {
	x.api.mu.Lock()
	defer x.api.mu.Unlock()
	var out []string
	for _, raw := range x.api.lists["custom"] {
		var m struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(raw, &m)
		out = append(out, m.ID)
	}
	return out
}
