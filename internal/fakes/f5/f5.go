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
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
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
	// Method limits the fault to requests of one method ("PATCH"); ""
	// hits every method.
	Method string
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

	// The writable state (deploy.go): client-ssl profiles as served,
	// installed objects, uploaded files, saves.
	profiles  []map[string]any
	keys      map[string]string // sys file ssl-key full path -> PEM ("" for the testdata ones)
	installed map[string]bool   // ssl-cert objects installed through the API
	uploads   map[string][]byte // /var/config/rest/downloads/NAME -> content
	saves     int
}

func newFake(t testing.TB) *fakeBIGIP {
	t.Helper()
	f := &fakeBIGIP{t: t, faults: map[string]*Fault{}, pem: map[string]string{}, ders: map[string][][]byte{}, files: map[string]string{},
		keys: map[string]string{}, installed: map[string]bool{}, uploads: map[string][]byte{}}
	f.loadProfiles()
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
	if cur := f.faults[r.URL.Path]; cur != nil && (cur.Method == "" || cur.Method == r.Method) {
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
	if f.write(w, r) {
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
		f.page(w, r, f.certList())
	case strings.HasPrefix(p, "/mgmt/tm/sys/file/ssl-cert/"):
		full := strings.ReplaceAll(strings.TrimPrefix(p, "/mgmt/tm/sys/file/ssl-cert/"), "~", "/")
		f.mu.Lock()
		pemText, ok := f.pem[full]
		f.mu.Unlock()
		if !ok {
			writeError(w, http.StatusNotFound)
			return
		}
		for _, it := range f.certList()["items"].([]any) {
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
		f.page(w, r, f.profileList())
	case strings.HasPrefix(p, "/mgmt/tm/ltm/profile/client-ssl/"):
		if prof := f.profile(strings.TrimPrefix(p, "/mgmt/tm/ltm/profile/client-ssl/")); prof != nil {
			writeJSON(w, prof)
			return
		}
		writeError(w, http.StatusNotFound)
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
	f.mu.Lock()
	for name, full := range f.files {
		if full != "" && strings.HasPrefix(name, prefix+"_") && strings.Count(name[len(prefix):], "_") == 2 {
			m["commandResult"] = f.pem[full]
			f.mu.Unlock()
			writeJSON(w, m)
			return
		}
	}
	f.mu.Unlock()
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
	x.f.mu.Lock()
	defer x.f.mu.Unlock()
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

// The write API, as F5's documentation and tools use it (a deployment,
// connectors/f5/deploy.go):
//
//   - POST /mgmt/shared/file-transfer/uploads/NAME, body the bytes,
//     Content-Type application/octet-stream, Content-Range START-END/TOTAL
//     (chunks of at most 1 MiB); the answer is the upload's state
//     {"remainingByteCount","usedChunks","totalByteCount","localFilePath",
//     "temporaryFilePath","generation","lastUpdateMicros"} and the file is
//     /var/config/rest/downloads/NAME (iControl REST User Guide, "File
//     transfer"; the Upload type of F5's go-bigip; F5's upload gists).
//   - POST /mgmt/tm/sys/crypto/cert and /mgmt/tm/sys/crypto/key
//     {"command":"install","name":N,"from-local-file":PATH} (tmsh "install
//     sys crypto cert|key N from-local-file PATH";
//     https://clouddocs.f5.com/api/icontrol-rest/APIRef_tm_sys_crypto_cert.html):
//     the object appears as sys file ssl-cert / ssl-key N; installing over
//     an existing name replaces it, as tmsh does.
//   - POST /mgmt/tm/util/unix-rm {"command":"run","utilCmdArgs":PATH}
//     (https://clouddocs.f5.com/api/icontrol-rest/APIRef_tm_util_unix-rm.html).
//   - PATCH /mgmt/tm/ltm/profile/client-ssl/~P~NAME {"certKeyChain":[...]}:
//     every cert, key and chain named must exist ("01070712:3: ..." 400
//     otherwise, the code BIG-IP gives for a missing file object); the
//     deprecated top-level cert/key/chain follow the first entry.
//   - DELETE /mgmt/tm/sys/file/ssl-cert/~P~N and .../ssl-key/~P~N: refused
//     (400) while a profile uses the object; only objects installed
//     through the API can be deleted here.
//   - POST /mgmt/tm/sys/config {"command":"save"}.

func (f *fakeBIGIP) loadProfiles() {
	for _, it := range readTestdata(f.t, "client-ssl.json")["items"].([]any) {
		p := it.(map[string]any)
		f.profiles = append(f.profiles, p)
		for _, e := range p["certKeyChain"].([]any) {
			if k, _ := e.(map[string]any)["key"].(string); k != "" {
				f.keys[fullPath(k)] = ""
			}
		}
	}
}

func fullPath(name string) string {
	if strings.HasPrefix(name, "/") || name == "none" || name == "" {
		return name
	}
	return "/Common/" + name
}

// clone deep-copies JSON-shaped data, so that an answer never aliases the
// state.
func clone[T any](v T) T {
	b, _ := json.Marshal(v)
	var out T
	_ = json.Unmarshal(b, &out)
	return out
}

func (f *fakeBIGIP) profileList() map[string]any {
	m := readTestdata(f.t, "client-ssl.json")
	f.mu.Lock()
	defer f.mu.Unlock()
	items := make([]any, len(f.profiles))
	for i, p := range f.profiles {
		items[i] = clone(p)
	}
	m["items"] = items
	return m
}

// profile finds a profile by its URI name (~P~NAME); nil when none.
func (f *fakeBIGIP) profile(uriName string) map[string]any {
	full := strings.ReplaceAll(uriName, "~", "/")
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.profiles {
		if p["fullPath"] == full {
			return clone(p)
		}
	}
	return nil
}

// certList is testdata's ssl-cert collection plus the installed objects.
func (f *fakeBIGIP) certList() map[string]any {
	m := readTestdata(f.t, "ssl-cert.json")
	f.mu.Lock()
	defer f.mu.Unlock()
	items := m["items"].([]any)
	for full := range f.installed {
		items = append(items, f.certItem(full))
	}
	m["items"] = items
	return m
}

// certItem describes an installed certificate object as ssl-cert.json's
// items do.
func (f *fakeBIGIP) certItem(full string) map[string]any {
	ders := f.ders[full]
	c, _ := x509.ParseCertificate(ders[0])
	sum := sha256.Sum256(ders[0])
	fp := strings.ToUpper(hex.EncodeToString(sum[:]))
	var pairs []string
	for i := 0; i < len(fp); i += 2 {
		pairs = append(pairs, fp[i:i+2])
	}
	part, name, _ := strings.Cut(strings.TrimPrefix(full, "/"), "/")
	keyType := "ec-public"
	if _, ok := c.PublicKey.(*rsa.PublicKey); ok {
		keyType = "rsa-public"
	}
	return map[string]any{
		"kind": "tm:sys:file:ssl-cert:ssl-certstate", "name": name, "partition": part, "fullPath": full, "generation": 1,
		"selfLink":       "https://localhost/mgmt/tm/sys/file/ssl-cert/" + strings.ReplaceAll(full, "/", "~") + "?ver=15.1.8",
		"expirationDate": c.NotAfter.Unix(), "fingerprint": "SHA256/" + strings.Join(pairs, ":"),
		"isBundle": strconv.FormatBool(len(ders) > 1), "issuer": c.Issuer.String(), "subject": c.Subject.String(),
		"keyType": keyType, "size": len(f.pem[full]),
	}
}

// inUse reports the profiles naming the object kind ("cert", "key") at full.
func (f *fakeBIGIP) inUse(kind, full string) []string {
	var out []string
	for _, p := range f.profiles {
		for _, e := range p["certKeyChain"].([]any) {
			em := e.(map[string]any)
			names := []string{fullPath(fmt.Sprint(em["key"]))}
			if kind == "cert" {
				names = []string{fullPath(fmt.Sprint(em["cert"])), fullPath(fmt.Sprint(em["chain"]))}
			}
			if slices.Contains(names, full) {
				out = append(out, p["fullPath"].(string))
			}
		}
	}
	return out
}

// write serves the write API; false when r is not one of its requests.
func (f *fakeBIGIP) write(w http.ResponseWriter, r *http.Request) bool {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodPost && strings.HasPrefix(p, "/mgmt/shared/file-transfer/uploads/"):
		f.upload(w, r, strings.TrimPrefix(p, "/mgmt/shared/file-transfer/uploads/"))
	case r.Method == http.MethodPost && (p == "/mgmt/tm/sys/crypto/cert" || p == "/mgmt/tm/sys/crypto/key"):
		f.install(w, r, strings.TrimPrefix(p, "/mgmt/tm/sys/crypto/"))
	case r.Method == http.MethodPost && p == "/mgmt/tm/util/unix-rm":
		var body struct{ Command, UtilCmdArgs string }
		if json.NewDecoder(r.Body).Decode(&body) != nil || body.Command != "run" {
			writeError(w, http.StatusBadRequest)
			return true
		}
		f.mu.Lock()
		delete(f.uploads, strings.TrimSpace(body.UtilCmdArgs))
		f.mu.Unlock()
		writeJSON(w, map[string]any{"kind": "tm:util:unix-rm:runstate", "command": "run", "utilCmdArgs": body.UtilCmdArgs})
	case r.Method == http.MethodPost && p == "/mgmt/tm/sys/config":
		var body struct{ Command string }
		if json.NewDecoder(r.Body).Decode(&body) != nil || body.Command != "save" {
			writeError(w, http.StatusBadRequest)
			return true
		}
		f.mu.Lock()
		f.saves++
		f.mu.Unlock()
		writeJSON(w, map[string]any{"kind": "tm:sys:config:savestate", "command": "save"})
	case r.Method == http.MethodPatch && strings.HasPrefix(p, "/mgmt/tm/ltm/profile/client-ssl/"):
		f.patchProfile(w, r, strings.ReplaceAll(strings.TrimPrefix(p, "/mgmt/tm/ltm/profile/client-ssl/"), "~", "/"))
	case r.Method == http.MethodDelete && (strings.HasPrefix(p, "/mgmt/tm/sys/file/ssl-cert/") || strings.HasPrefix(p, "/mgmt/tm/sys/file/ssl-key/")):
		kind, name, _ := strings.Cut(strings.TrimPrefix(p, "/mgmt/tm/sys/file/ssl-"), "/")
		f.deleteObject(w, kind, strings.ReplaceAll(name, "~", "/"))
	default:
		return false
	}
	return true
}

func writeMessage(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg, "errorStack": []string{}, "apiError": 26214401})
}

var contentRange = regexp.MustCompile(`^(\d+)-(\d+)/(\d+)$`)

func (f *fakeBIGIP) upload(w http.ResponseWriter, r *http.Request, name string) {
	if r.Header.Get("Content-Type") != "application/octet-stream" {
		writeMessage(w, http.StatusBadRequest, "Content-Type must be application/octet-stream")
		return
	}
	m := contentRange.FindStringSubmatch(r.Header.Get("Content-Range"))
	if m == nil || name == "" || strings.Contains(name, "/") {
		writeMessage(w, http.StatusBadRequest, "Content-Range START-END/TOTAL is required")
		return
	}
	start, _ := strconv.Atoi(m[1])
	end, _ := strconv.Atoi(m[2])
	total, _ := strconv.Atoi(m[3])
	chunk, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil || len(chunk) != end-start+1 || end >= total || len(chunk) > 1<<20 {
		writeMessage(w, http.StatusBadRequest, "the body does not match Content-Range")
		return
	}
	local := "/var/config/rest/downloads/" + name
	f.mu.Lock()
	cur := f.uploads[local]
	if start == 0 {
		cur = nil
	}
	if start != len(cur) {
		f.mu.Unlock()
		writeMessage(w, http.StatusBadRequest, "chunk out of order")
		return
	}
	cur = append(cur, chunk...)
	f.uploads[local] = cur
	f.mu.Unlock()
	writeJSON(w, map[string]any{"remainingByteCount": total - len(cur), "usedChunks": map[string]int{strconv.Itoa(start): len(chunk)},
		"totalByteCount": total, "localFilePath": local, "temporaryFilePath": "/var/config/rest/downloads/tmp/" + name,
		"generation": 0, "lastUpdateMicros": time.Now().UnixMicro()})
}

func (f *fakeBIGIP) install(w http.ResponseWriter, r *http.Request, kind string) {
	var body struct {
		Command       string `json:"command"`
		Name          string `json:"name"`
		FromLocalFile string `json:"from-local-file"`
	}
	if json.NewDecoder(r.Body).Decode(&body) != nil || body.Command != "install" || body.Name == "" {
		writeMessage(w, http.StatusBadRequest, "want {\"command\":\"install\",\"name\":...,\"from-local-file\":...}")
		return
	}
	full := fullPath(body.Name)
	f.mu.Lock()
	defer f.mu.Unlock()
	data, ok := f.uploads[body.FromLocalFile]
	if !ok {
		writeMessage(w, http.StatusBadRequest, "01070712:3: File not found: "+body.FromLocalFile)
		return
	}
	switch kind {
	case "cert":
		var ders [][]byte
		for rest := data; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if _, err := x509.ParseCertificate(b.Bytes); b.Type != "CERTIFICATE" || err != nil {
				writeMessage(w, http.StatusBadRequest, "Invalid certificate file: "+body.FromLocalFile)
				return
			}
			ders = append(ders, b.Bytes)
		}
		if len(ders) == 0 {
			writeMessage(w, http.StatusBadRequest, "Invalid certificate file: "+body.FromLocalFile)
			return
		}
		f.ders[full], f.pem[full], f.installed[full] = ders, string(data), true
		f.files[strings.ReplaceAll(full, "/", ":")+"_"+strconv.Itoa(9000+len(f.files))+"_1"] = full
	case "key":
		b, _ := pem.Decode(data)
		if b == nil || !strings.HasSuffix(b.Type, "PRIVATE KEY") || strings.Contains(b.Type, "ENCRYPTED") {
			writeMessage(w, http.StatusBadRequest, "Invalid key file: "+body.FromLocalFile)
			return
		}
		f.keys[full] = string(data)
	}
	writeJSON(w, map[string]any{"kind": "tm:sys:crypto:" + kind + ":" + kind + "state", "command": "install",
		"name": body.Name, "fromLocalFile": body.FromLocalFile})
}

func (f *fakeBIGIP) patchProfile(w http.ResponseWriter, r *http.Request, full string) {
	var body struct {
		CertKeyChain []map[string]any `json:"certKeyChain"`
	}
	if json.NewDecoder(r.Body).Decode(&body) != nil || len(body.CertKeyChain) == 0 {
		writeMessage(w, http.StatusBadRequest, "want {\"certKeyChain\":[...]}")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var prof map[string]any
	for _, p := range f.profiles {
		if p["fullPath"] == full {
			prof = p
		}
	}
	if prof == nil {
		writeError(w, http.StatusNotFound)
		return
	}
	items := make([]any, len(body.CertKeyChain))
	for i, e := range body.CertKeyChain {
		cert, key, chain := fullPath(fmt.Sprint(e["cert"])), fullPath(fmt.Sprint(e["key"])), fullPath(fmt.Sprint(e["chain"]))
		if _, ok := e["chain"]; !ok {
			chain = "none"
		}
		if _, ok := f.pem[cert]; !ok {
			writeMessage(w, http.StatusBadRequest, "01070712:3: Values ("+cert+") specified for ssl profile certificate: unable to find the file object.")
			return
		}
		if _, ok := f.keys[key]; !ok {
			writeMessage(w, http.StatusBadRequest, "01070712:3: Values ("+key+") specified for ssl profile key: unable to find the file object.")
			return
		}
		if _, ok := f.pem[chain]; !ok && chain != "none" {
			writeMessage(w, http.StatusBadRequest, "01070712:3: Values ("+chain+") specified for ssl profile chain: unable to find the file object.")
			return
		}
		item := clone(e)
		item["cert"], item["key"], item["chain"] = cert, key, chain
		items[i] = item
	}
	prof["certKeyChain"] = items
	first := items[0].(map[string]any)
	prof["cert"], prof["key"], prof["chain"] = first["cert"], first["key"], first["chain"]
	prof["generation"] = 100 + len(f.requests)
	writeJSON(w, clone(prof))
}

func (f *fakeBIGIP) deleteObject(w http.ResponseWriter, kind, full string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	exists := f.installed[full]
	if kind == "key" {
		_, exists = f.keys[full]
	}
	if !exists {
		writeError(w, http.StatusNotFound)
		return
	}
	if users := f.inUse(kind, full); len(users) > 0 {
		writeMessage(w, http.StatusBadRequest, "01071349:3: File object ("+full+") is in use by ssl profile "+strings.Join(users, ", "))
		return
	}
	if kind == "key" {
		if f.keys[full] == "" {
			writeMessage(w, http.StatusBadRequest, "the fake deletes only objects installed through the API")
			return
		}
		delete(f.keys, full)
	} else {
		delete(f.installed, full)
		delete(f.pem, full)
		delete(f.ders, full)
		for name, p := range f.files {
			if p == full {
				delete(f.files, name)
			}
		}
	}
	w.WriteHeader(http.StatusOK)
}

// CertKeyChain is one certKeyChain entry of a client-ssl profile.
type CertKeyChain struct {
	Name, Cert, Key, Chain string
}

// Profile is the certKeyChain of the client-ssl profile full ("/Common/site_ssl").
func (x *Fake) Profile(full string) []CertKeyChain {
	p := x.f.profile(strings.ReplaceAll(full, "/", "~"))
	if p == nil {
		return nil
	}
	var out []CertKeyChain
	for _, e := range p["certKeyChain"].([]any) {
		em := e.(map[string]any)
		s := func(k string) string { v, _ := em[k].(string); return v }
		out = append(out, CertKeyChain{Name: s("name"), Cert: fullPath(s("cert")), Key: fullPath(s("key")), Chain: fullPath(s("chain"))})
	}
	return out
}

// Installed lists the objects installed through the API and still there,
// as "cert PATH" and "key PATH", sorted.
func (x *Fake) Installed() []string {
	x.f.mu.Lock()
	defer x.f.mu.Unlock()
	var out []string
	for p := range x.f.installed {
		out = append(out, "cert "+p)
	}
	for p, pemText := range x.f.keys {
		if pemText != "" {
			out = append(out, "key "+p)
		}
	}
	slices.Sort(out)
	return out
}

// CertPEM is the PEM of the certificate object full, "" when none.
func (x *Fake) CertPEM(full string) string {
	x.f.mu.Lock()
	defer x.f.mu.Unlock()
	return x.f.pem[full]
}

// Uploads lists the files in /var/config/rest/downloads, sorted.
func (x *Fake) Uploads() []string {
	x.f.mu.Lock()
	defer x.f.mu.Unlock()
	var out []string
	for p := range x.f.uploads {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Saves counts POST /mgmt/tm/sys/config {"command":"save"}.
func (x *Fake) Saves() int {
	x.f.mu.Lock()
	defer x.f.mu.Unlock()
	return x.f.saves
}

// Token is the X-F5-Auth-Token the fake's login hands out.
const Token = fakeToken
