// Package f5 is a fake BIG-IP iControl REST server built from the
// documented answers in connectors/f5/testdata (see its README.md for the
// sources). It serves the certificates' PEM the documented way, through
// POST /mgmt/tm/util/bash running cat on the filestore file; the
// undocumented certificateText field of an ssl-cert object is only served
// after SetCertificateText(true).
package f5

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The credentials the fake accepts.
const (
	User     = "admin"
	Password = "s3cr3t-Pa55"
)

const (
	fakeUser     = User
	fakePassword = Password
	fakeToken    = "TOKEN0123456789"
	loginPath    = "/mgmt/shared/authn/login"
	bashPath     = "/mgmt/tm/util/bash"
	filestoreDir = "/config/filestore/files_d/"
)

// Fault is what the fake answers instead of the real thing.
type Fault struct {
	Status     int    // 401, 403, 404, 429, 500
	Garbage    bool   // a 200 with a body that is not JSON
	Times      int    // how many requests it hits; 0 means all
	RetryAfter string // for 429
}

// fakeBIGIP is an iControl REST server with the answers in testdata.
type fakeBIGIP struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	noLogin  bool              // the login endpoint answers 404
	faults   map[string]*Fault // by path (no query)
	pem      map[string]string // full path -> PEM
	requests []string          // METHOD PATH?QUERY
	failover string            // overrides failover.json's text when set
	basic    int               // requests that used basic auth
	certText bool              // ssl-cert objects carry certificateText
	files    map[string]string // filestore file name (:P:NAME_ID_REV) -> full path

	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	ders  map[string][][]byte // full path -> chain DER
}

func newFake(t testing.TB) *fakeBIGIP {
	t.Helper()
	f := &fakeBIGIP{t: t, faults: map[string]*Fault{}, pem: map[string]string{}, ders: map[string][][]byte{}, files: map[string]string{}}
	f.ca, f.caKey = newCA(t)
	for _, p := range []string{"/Common/default.crt", "/Common/site.crt", "/Tenant/app.crt"} {
		der := f.leaf(p)
		f.ders[p] = [][]byte{der}
		f.pem[p] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	// A bundle: the leaf, then the CA.
	der := f.leaf("/Common/bundle.crt")
	f.ders["/Common/bundle.crt"] = [][]byte{der, f.ca.Raw}
	f.pem["/Common/bundle.crt"] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.ca.Raw}))
	// The filestore keeps each object as :PARTITION:NAME_ID_REV.
	id := 1000
	for p := range f.pem {
		id++
		f.files[strings.ReplaceAll(p, "/", ":")+"_"+strconv.Itoa(id)+"_1"] = p
	}
	// /Common/gone.crt is listed but has no file and its detail is 404.
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func newCA(t testing.TB) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

var serial int64 = 100

func (f *fakeBIGIP) leaf(name string) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.ca, &key.PublicKey, f.caKey)
	if err != nil {
		f.t.Fatal(err)
	}
	return der
}

func (f *fakeBIGIP) host() string { return strings.TrimPrefix(f.srv.URL, "https://") }

// caFile writes the server's certificate where a ca_file can name it.
func (f *fakeBIGIP) caFile() string {
	p := filepath.Join(f.t.TempDir(), "bigip-ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
	if err := os.WriteFile(p, b, 0o600); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *fakeBIGIP) setFault(path string, ft Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[path] = &ft
}

func (f *fakeBIGIP) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

func readTestdata(t testing.TB, name string) map[string]any {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "connectors", "f5", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

func (f *fakeBIGIP) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	var ft *Fault
	if cur := f.faults[r.URL.Path]; cur != nil {
		c := *cur
		ft = &c
		if cur.Times > 0 {
			cur.Times--
			if cur.Times == 0 {
				delete(f.faults, r.URL.Path)
			}
		}
	}
	noLogin := f.noLogin
	failover := f.failover
	certText := f.certText
	f.mu.Unlock()

	if ft != nil {
		switch {
		case ft.Garbage:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"items": [ {"name": "x.crt", <html>oops`))
		default:
			if ft.RetryAfter != "" {
				w.Header().Set("Retry-After", ft.RetryAfter)
			}
			writeError(w, ft.Status)
		}
		return
	}

	if r.URL.Path == loginPath {
		if noLogin || r.Method != http.MethodPost {
			writeError(w, http.StatusNotFound)
			return
		}
		var body struct{ Username, Password, LoginProviderName string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.LoginProviderName != "tmos" {
			writeError(w, http.StatusBadRequest)
			return
		}
		if body.Username != fakeUser || body.Password != fakePassword {
			writeError(w, http.StatusUnauthorized)
			return
		}
		m := readTestdata(f.t, "login.json")
		tok := m["token"].(map[string]any)
		tok["token"], tok["name"] = fakeToken, fakeToken
		writeJSON(w, m)
		return
	}
	if !f.authorized(r) {
		writeError(w, http.StatusUnauthorized)
		return
	}
	if r.URL.Path == bashPath {
		f.bash(w, r)
		return
	}
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed)
		return
	}
	switch p := r.URL.Path; {
	case p == "/mgmt/tm/sys/failover":
		m := readTestdata(f.t, "failover.json")
		if failover != "" {
			m["apiRawValues"] = map[string]any{"apiAnonymous": failover}
		}
		writeJSON(w, m)
	case p == "/mgmt/tm/sys/file/ssl-cert":
		f.page(w, r, readTestdata(f.t, "ssl-cert.json"))
	case strings.HasPrefix(p, "/mgmt/tm/sys/file/ssl-cert/"):
		full := strings.ReplaceAll(strings.TrimPrefix(p, "/mgmt/tm/sys/file/ssl-cert/"), "~", "/")
		pemText, ok := f.pem[full]
		if !ok {
			writeError(w, http.StatusNotFound)
			return
		}
		for _, it := range readTestdata(f.t, "ssl-cert.json")["items"].([]any) {
			item := it.(map[string]any)
			if item["fullPath"] == full {
				if certText {
					item["certificateText"] = pemText
				}
				writeJSON(w, item)
				return
			}
		}
		writeError(w, http.StatusNotFound)
	case p == "/mgmt/tm/ltm/profile/client-ssl":
		f.page(w, r, readTestdata(f.t, "client-ssl.json"))
	case p == "/mgmt/tm/ltm/virtual":
		m := readTestdata(f.t, "virtual.json")
		if r.URL.Query().Get("expandSubcollections") != "true" {
			for _, it := range m["items"].([]any) {
				delete(it.(map[string]any)["profilesReference"].(map[string]any), "items")
			}
		}
		f.page(w, r, m)
	default:
		writeError(w, http.StatusNotFound)
	}
}

// bashCat is the one command the fake's util/bash runs: cat of the newest
// filestore file of a certificate object.
var bashCat = regexp.MustCompile(`^-c 'cat "\$\(ls -1t ` + regexp.QuoteMeta(filestoreDir) +
	`([A-Za-z0-9_.-]+)_d/certificate_d/(:[A-Za-z0-9_.:-]+)_\[0-9\]\*_\[0-9\]\* \| head -n 1\)"'$`)

// bash answers POST /mgmt/tm/util/bash
// (https://clouddocs.f5.com/api/icontrol-rest/APIRef_tm_util_bash.html) as
// testdata/util-bash.json shows: the command's output in commandResult,
// stderr included, and no commandResult when there is no output.
func (f *fakeBIGIP) bash(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed)
		return
	}
	var body struct {
		Command     string `json:"command"`
		UtilCmdArgs string `json:"utilCmdArgs"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Command != "run" {
		writeError(w, http.StatusBadRequest)
		return
	}
	m := readTestdata(f.t, "util-bash.json")
	m["utilCmdArgs"] = body.UtilCmdArgs
	delete(m, "commandResult")
	sm := bashCat.FindStringSubmatch(body.UtilCmdArgs)
	if sm == nil {
		m["commandResult"] = "bash: the fake runs only cat of a certificate file\n"
		writeJSON(w, m)
		return
	}
	part, prefix := sm[1], sm[2]
	if !strings.HasPrefix(prefix, ":"+part+":") {
		m["commandResult"] = "cat: '': No such file or directory\n"
		writeJSON(w, m)
		return
	}
	for name, full := range f.files {
		if full != "" && strings.HasPrefix(name, prefix+"_") && strings.Count(name[len(prefix):], "_") == 2 {
			m["commandResult"] = f.pem[full]
			writeJSON(w, m)
			return
		}
	}
	glob := filestoreDir + part + "_d/certificate_d/" + prefix + "_[0-9]*_[0-9]*"
	m["commandResult"] = "ls: cannot access " + glob + ": No such file or directory\ncat: '': No such file or directory\n"
	writeJSON(w, m)
}

func (f *fakeBIGIP) authorized(r *http.Request) bool {
	if tok := r.Header.Get("X-F5-Auth-Token"); tok != "" {
		return subtle.ConstantTimeCompare([]byte(tok), []byte(fakeToken)) == 1
	}
	u, p, ok := r.BasicAuth()
	f.mu.Lock()
	f.basic++
	f.mu.Unlock()
	return ok && u == fakeUser && p == fakePassword
}

// page serves one page of m's items as $top/$skip ask, with the paging
// fields and a nextLink naming the device as localhost, as BIG-IP does.
func (f *fakeBIGIP) page(w http.ResponseWriter, r *http.Request, m map[string]any) {
	items := m["items"].([]any)
	q := r.URL.Query()
	top, skip := len(items), 0
	if v := q.Get("$top"); v != "" {
		top, _ = strconv.Atoi(v)
	}
	if v := q.Get("$skip"); v != "" {
		skip, _ = strconv.Atoi(v)
	}
	if top <= 0 {
		top = len(items)
	}
	end := min(skip+top, len(items))
	skip = min(skip, len(items))
	m["items"] = items[skip:end]
	if _, paged := q["$top"]; paged {
		m["currentItemCount"] = end - skip
		m["itemsPerPage"] = top
		m["pageIndex"] = skip/top + 1
		m["startIndex"] = skip + 1
		m["totalItems"] = len(items)
		m["totalPages"] = (len(items) + top - 1) / top
		if end < len(items) {
			q.Set("$skip", strconv.Itoa(end))
			m["nextLink"] = "https://localhost" + r.URL.Path + "?" + q.Encode() + "&ver=15.1.8"
		}
	}
	writeJSON(w, m)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	msg := http.StatusText(code)
	if code == http.StatusNotFound {
		msg = "01020036:3: The requested object was not found."
	}
	_, _ = fmt.Fprintf(w, `{"code":%d,"message":%q,"errorStack":[],"apiError":3}`, code, msg)
}

// Fake is a running fake BIG-IP.
type Fake struct{ f *fakeBIGIP }

// Start serves the certificates of connectors/f5/testdata over HTTPS with
// its own certificate until the test ends. It accepts only User and
// Password. /Common/gone.crt is listed but its detail answers 404.
func Start(t testing.TB) *Fake {
	t.Helper()
	return &Fake{f: newFake(t)}
}

// Host is the HOST:PORT of an f5:// target.
func (x *Fake) Host() string { return x.f.host() }

// CAFile writes the server's certificate to a file for ca_file=.
func (x *Fake) CAFile() string { return x.f.caFile() }

// Certs maps each certificate's full path to its chain, leaf first (DER).
func (x *Fake) Certs() map[string][][]byte {
	out := map[string][][]byte{}
	for k, v := range x.f.ders {
		out[k] = v
	}
	return out
}

// Requests lists the requests served, as METHOD PATH?QUERY.
func (x *Fake) Requests() []string { return x.f.seen() }

// SetFault makes requests to path (without query) fail as ft says, for
// ft.Times requests or, when 0, all of them. SetFault("/mgmt/tm/util/bash",
// Fault{Status: 401}) is a user without the Administrator role.
func (x *Fake) SetFault(path string, ft Fault) { x.f.setFault(path, ft) }

// SetNoLogin makes the token login endpoint answer 404, as a device
// without the token service: clients must use basic auth.
func (x *Fake) SetNoLogin(on bool) {
	x.f.mu.Lock()
	defer x.f.mu.Unlock()
	x.f.noLogin = on
}

// SetFailover replaces the apiAnonymous text of GET /mgmt/tm/sys/failover,
// e.g. "Failover standby for 0d 00:01:02\n".
func (x *Fake) SetFailover(text string) {
	x.f.mu.Lock()
	defer x.f.mu.Unlock()
	x.f.failover = text
}

// SetCertificateText makes GET /mgmt/tm/sys/file/ssl-cert/~P~NAME carry the
// object's PEM in certificateText, a field F5's documentation does not
// describe: a device on which the connector's fallback works.
func (x *Fake) SetCertificateText(on bool) {
	x.f.mu.Lock()
	defer x.f.mu.Unlock()
	x.f.certText = on
}

// BasicAuthCount is how many requests came with HTTP basic auth.
func (x *Fake) BasicAuthCount() int {
	x.f.mu.Lock()
	defer x.f.mu.Unlock()
	return x.f.basic
}
