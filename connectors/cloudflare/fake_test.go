package cloudflare

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
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
	t *testing.T
	// token, or email and key: the credentials it accepts.
	token, email, key string
	// fail maps a list (custom, packs, origin) to a failure mode.
	fail map[string]string

	mu       sync.Mutex
	requests []string
	calls    map[string]int
	lists    map[string][]json.RawMessage
}

func newFakeAPI(t *testing.T, originPEMs []string) *fakeAPI {
	f := &fakeAPI{t: t, fail: map[string]string{}, calls: map[string]int{}, lists: map[string][]json.RawMessage{}}
	for name, file := range map[string]string{"custom": "custom_certificates.json", "packs": "certificate_packs.json", "origin": "origin_ca_certificates.json"} {
		b, err := os.ReadFile("testdata/" + file)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
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
		b, _ := os.ReadFile("testdata/error_auth.json")
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

// served certificates: a 127.0.0.1 TLS listener answering by SNI.
type edge struct {
	addr  string
	certs map[string]*tls.Certificate
}

func selfSigned(t *testing.T, cn string, notAfter time.Time) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{cn},
		NotBefore:    time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func certPEM(c *tls.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}))
}

func startEdge(t *testing.T, certs map[string]*tls.Certificate) *edge {
	t.Helper()
	e := &edge{certs: certs}
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.TLS = &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if c, ok := certs[h.ServerName]; ok {
			return c, nil
		}
		return nil, fmt.Errorf("no certificate for %q", h.ServerName)
	}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	e.addr = srv.Listener.Addr().String()
	return e
}
