// Package cloudflare is a fake Cloudflare API v4 built from the documented
// answers in connectors/cloudflare/testdata.
package cloudflare

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
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
}

func newFakeAPI(t testing.TB, originPEMs []string) *fakeAPI {
	f := &fakeAPI{t: t, fail: map[string]string{}, calls: map[string]int{}, lists: map[string][]json.RawMessage{}}
	for name, file := range map[string]string{"custom": "custom_certificates.json", "packs": "certificate_packs.json", "origin": "origin_ca_certificates.json"} {
		b, err := os.ReadFile(testdata(file))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if file != "origin_ca_certificates.json" {
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
	if r.Method != http.MethodGet {
		writeJSON(w, 405, map[string]any{"success": false, "errors": []any{map[string]any{"code": 10405, "message": "method not allowed"}}})
		return
	}
	authErr := func() {
		b, _ := os.ReadFile(testdata("error_auth.json"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write(b)
	}
	switch {
	case f.token != "":
		if r.Header.Get("Authorization") != "Bearer "+f.token || r.Header.Get("X-Auth-Key") != "" {
			authErr()
			return
		}
	default:
		if r.Header.Get("X-Auth-Email") != f.email || r.Header.Get("X-Auth-Key") != f.key || r.Header.Get("Authorization") != "" {
			authErr()
			return
		}
	}
	path := strings.TrimPrefix(r.URL.Path, "/client/v4")
	q := r.URL.Query()
	var name string
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
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
	f.mu.Unlock()
	switch f.fail[name] {
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
	case "500":
		w.WriteHeader(500)
		_, _ = w.Write([]byte("<html>internal error</html>"))
		return
	case "garbage":
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"success":true,"result":[{"id":`))
		return
	}
	items := f.lists[name]
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

// Start serves the zone's custom certificates and certificate packs (their
// hosts renamed to end in .invalid, so that a handshake to HOST:443 fails
// without leaving the machine), and
// Origin CA certificates (two, made here, returned as PEM by the API),
// accepting only the API token given, until the test ends.
func Start(t testing.TB, token string) *Fake {
	t.Helper()
	x := &Fake{}
	var pems []string
	for _, cn := range []string{"example.com", "origin.example.com"} {
		c := originCert(t, cn)
		x.Origin = append(x.Origin, c)
		pems = append(pems, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
	}
	x.api = newFakeAPI(t, pems)
	x.api.token = token
	x.url = x.api.start().URL + "/client/v4"
	return x
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
