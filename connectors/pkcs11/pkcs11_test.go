//go:build cgo

package pkcs11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	p11 "github.com/miekg/pkcs11"

	"github.com/emsign/bot/protocol"
)

const (
	softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"
	soPIN         = "12345678"
	userPIN       = "8472-pin"
)

// needSoftHSM fails (never skips) when SoftHSM2 or OpenSC's pkcs11-tool is
// missing, saying which package to install.
func needSoftHSM(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("SoftHSM2 tests are not short")
	}
	for tool, pkg := range map[string]string{"softhsm2-util": "softhsm2", "pkcs11-tool": "opensc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: install it with `apt-get install %s` (make test does)", tool, pkg)
		}
	}
	if _, err := os.Stat(softhsmModule); err != nil {
		t.Fatalf("%s is missing: install it with `apt-get install softhsm2`", softhsmModule)
	}
}

// hsm is a SoftHSM2 with its own token folder, selected by SOFTHSM2_CONF.
type hsm struct {
	t   *testing.T
	dir string
}

func newHSM(t *testing.T) *hsm {
	t.Helper()
	needSoftHSM(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n", dir)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	return &hsm{t: t, dir: dir}
}

func (h *hsm) run(name string, args ...string) string {
	h.t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		h.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (h *hsm) file(name string, data []byte) string {
	h.t.Helper()
	p := filepath.Join(h.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		h.t.Fatal(err)
	}
	return p
}

func (h *hsm) initToken(label string) {
	h.t.Helper()
	h.run("softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", soPIN, "--pin", userPIN)
}

// importKey imports a key pair with softhsm2-util.
func (h *hsm) importKey(token, label, id string, key crypto.Signer) {
	h.t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		h.t.Fatal(err)
	}
	p := h.file(label+".key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	h.run("softhsm2-util", "--import", p, "--token", token, "--label", label, "--id", id, "--pin", userPIN)
}

func (h *hsm) tool(token string, args ...string) {
	h.t.Helper()
	h.run("pkcs11-tool", append([]string{"--module", softhsmModule, "--token-label", token, "--login", "--pin", userPIN}, args...)...)
}

func (h *hsm) writeCert(token, label, id string, der []byte) {
	h.t.Helper()
	p := h.file(fmt.Sprintf("%s-%s-%x.der", token, label, der[len(der)-8:]), der)
	h.tool(token, "--write-object", p, "--type", "cert", "--id", id, "--label", label)
}

// withModule runs f with the module initialised by the test itself.
func (h *hsm) withModule(f func(c *p11.Ctx)) {
	h.t.Helper()
	c := p11.New(softhsmModule)
	if c == nil {
		h.t.Fatal("cannot load SoftHSM2")
	}
	defer c.Destroy()
	if err := c.Initialize(); err != nil {
		h.t.Fatalf("test's own C_Initialize: %v (did a Discover not finalise?)", err)
	}
	defer func() { _ = c.Finalize() }()
	f(c)
}

type tokenRef struct {
	slot   uint
	serial string
}

// tokens lists the initialised tokens by label.
func (h *hsm) tokens() map[string][]tokenRef {
	h.t.Helper()
	out := map[string][]tokenRef{}
	h.withModule(func(c *p11.Ctx) {
		slots, err := c.GetSlotList(true)
		if err != nil {
			h.t.Fatal(err)
		}
		for _, s := range slots {
			ti, err := c.GetTokenInfo(s)
			if err != nil || ti.Flags&p11.CKF_TOKEN_INITIALIZED == 0 {
				continue
			}
			out[ti.Label] = append(out[ti.Label], tokenRef{slot: s, serial: ti.SerialNumber})
		}
	})
	return out
}

// session opens a read-write session on a token and logs in with pin.
func (h *hsm) session(c *p11.Ctx, label, pin string) (p11.SessionHandle, error) {
	h.t.Helper()
	slots, _ := c.GetSlotList(true)
	for _, s := range slots {
		if ti, err := c.GetTokenInfo(s); err == nil && ti.Label == label {
			sh, err := c.OpenSession(s, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
			if err != nil {
				h.t.Fatal(err)
			}
			return sh, c.Login(sh, p11.CKU_USER, pin)
		}
	}
	h.t.Fatalf("no token %q", label)
	return 0, nil
}

// aesKey makes an AES-256 key with known flags through the library.
func (h *hsm) aesKey(token, label string, id []byte) {
	h.t.Helper()
	h.withModule(func(c *p11.Ctx) {
		sh, err := h.session(c, token, userPIN)
		if err != nil {
			h.t.Fatal(err)
		}
		defer c.CloseSession(sh)
		_, err = c.GenerateKey(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
			p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
			p11.NewAttribute(p11.CKA_TOKEN, true),
			p11.NewAttribute(p11.CKA_PRIVATE, true),
			p11.NewAttribute(p11.CKA_VALUE_LEN, 32),
			p11.NewAttribute(p11.CKA_LABEL, label),
			p11.NewAttribute(p11.CKA_ID, id),
			p11.NewAttribute(p11.CKA_SENSITIVE, true),
			p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
			p11.NewAttribute(p11.CKA_ENCRYPT, true),
			p11.NewAttribute(p11.CKA_DECRYPT, true),
			p11.NewAttribute(p11.CKA_WRAP, true),
			p11.NewAttribute(p11.CKA_UNWRAP, true),
			p11.NewAttribute(p11.CKA_SIGN, false),
		})
		if err != nil {
			h.t.Fatalf("C_GenerateKey AES: %v", err)
		}
	})
}

// keys made once: RSA key generation is slow.
var (
	keysOnce sync.Once
	caKey    *ecdsa.PrivateKey
	rsaKey   *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
)

func testKeys() {
	keysOnce.Do(func() {
		caKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
		ecKey, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	})
}

func makeCert(t *testing.T, cn string, pub crypto.PublicKey, parent *x509.Certificate, signer crypto.Signer, ca bool) *x509.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: ca, BasicConstraintsValid: true, DNSNames: []string{cn},
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// fixture is two tokens:
//
//	alpha: RSA key pair + certificate "web" (id 01), CA certificate "ca"
//	       (id 0a, no key), AES-256 key "aes" (id 10)
//	beta:  EC certificate "ec" (id 02, no key), EC key pair "lonely" (id 03)
//	       without a certificate
type fixture struct {
	*hsm
	web, ca, ec  *x509.Certificate
	alpha, beta  tokenRef
	alphaT, both string // locations' token parts
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	h := newHSM(t)
	testKeys()
	f := &fixture{hsm: h}
	f.ca = makeCert(t, "Test CA", caKey.Public(), nil, caKey, true)
	f.web = makeCert(t, "web.example.com", rsaKey.Public(), f.ca, caKey, false)
	f.ec = makeCert(t, "ec.example.com", ecKey.Public(), f.ca, caKey, false)
	h.initToken("alpha")
	h.initToken("beta")
	h.importKey("alpha", "web", "01", rsaKey)
	h.writeCert("alpha", "web", "01", f.web.Raw)
	h.writeCert("alpha", "ca", "0a", f.ca.Raw)
	h.aesKey("alpha", "aes", []byte{0x10})
	h.writeCert("beta", "ec", "02", f.ec.Raw)
	h.tool("beta", "--keypairgen", "--key-type", "EC:prime256v1", "--id", "03", "--label", "lonely")
	toks := h.tokens()
	if len(toks["alpha"]) != 1 || len(toks["beta"]) != 1 {
		t.Fatalf("tokens: %v", toks)
	}
	f.alpha, f.beta = toks["alpha"][0], toks["beta"][0]
	return f
}

func (f *fixture) alphaLoc(rest string) string {
	return "pkcs11:token=alpha;serial=" + f.alpha.serial + ";" + rest
}

func (f *fixture) betaLoc(rest string) string {
	return "pkcs11:token=beta;serial=" + f.beta.serial + ";" + rest
}

func target(t *testing.T, s string) protocol.Target {
	t.Helper()
	tg, err := protocol.ParseTarget(s)
	if err != nil {
		t.Fatalf("target %s: %v", s, err)
	}
	return tg
}

type result struct {
	findings []protocol.Finding
	keys     []KeyObject
	logs     string
	err      error
}

// byLoc indexes findings by location string.
func (r result) byLoc() map[string]protocol.Finding {
	m := map[string]protocol.Finding{}
	for _, f := range r.findings {
		m[f.Location.String()] = f
	}
	return m
}

func (r result) problems() []string {
	var p []string
	for _, f := range r.findings {
		if f.Error != "" {
			p = append(p, f.Location.String()+": "+f.Error)
		}
	}
	return p
}

func discover(t *testing.T, ctx context.Context, tg string) result {
	t.Helper()
	var logs bytes.Buffer
	var r result
	s, err := New(Config{
		Logger:     slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		KeyDetails: func(k KeyObject) { r.keys = append(r.keys, k) },
	})
	if err != nil {
		t.Fatal(err)
	}
	r.err = s.Discover(ctx, target(t, tg), func(f protocol.Finding) error {
		r.findings = append(r.findings, f)
		return nil
	})
	r.logs = logs.String()
	return r
}

const mod = "?module-path=" + softhsmModule

func TestCertificatesPairedByID(t *testing.T) {
	f := newFixture(t)
	r := discover(t, context.Background(), "pkcs11:"+mod+"&pin-value="+userPIN)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if p := r.problems(); len(p) > 0 {
		t.Fatalf("problems: %v", p)
	}
	got := r.byLoc()
	want := map[string]*x509.Certificate{
		f.alphaLoc("object=web;type=cert;id=%01"): f.web,
		f.alphaLoc("object=ca;type=cert;id=%0A"):  f.ca,
		f.betaLoc("object=ec;type=cert;id=%02"):   f.ec,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d findings %v, want %d", len(got), slices.Collect(mapsKeys(got)), len(want))
	}
	for loc, cert := range want {
		fd, ok := got[loc]
		if !ok {
			t.Fatalf("no finding at %s; got %v", loc, slices.Collect(mapsKeys(got)))
		}
		rec := protocol.NewRecord(fd)
		if rec.FingerprintSHA256 != protocol.Fingerprint(cert.Raw) || rec.Error != "" {
			t.Errorf("%s: fingerprint %s error %q, want %s", loc, rec.FingerprintSHA256, rec.Error, protocol.Fingerprint(cert.Raw))
		}
		if fd.Source != "pkcs11" || fd.Format != "pkcs11" || fd.SeenAt.IsZero() {
			t.Errorf("%s: source %q format %q seen %v", loc, fd.Source, fd.Format, fd.SeenAt)
		}
		back, err := protocol.ParseLocation(loc)
		if err != nil || back != fd.Location {
			t.Errorf("location %s does not read back: %+v %v", loc, back, err)
		}
		if cert == f.web {
			if !rec.HasPrivateKey || fd.Key.Algorithm != "RSA" || fd.Key.Bits != 2048 || fd.Key.Extractable == nil {
				t.Errorf("web: key %+v, want RSA 2048 with extractable known", fd.Key)
			}
		} else if fd.Key != nil {
			t.Errorf("%s: has a key %+v, want none", loc, fd.Key)
		}
	}
	if len(r.keys) != 0 {
		t.Errorf("keys reported without objects=keys: %+v", r.keys)
	}
}

func mapsKeys(m map[string]protocol.Finding) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestKeys(t *testing.T) {
	f := newFixture(t)
	r := discover(t, context.Background(), "pkcs11:"+mod+"&pin-value="+userPIN+"&objects=certs,keys")
	if r.err != nil || len(r.problems()) > 0 {
		t.Fatal(r.err, r.problems())
	}
	got := r.byLoc()
	details := map[string]KeyObject{}
	for _, k := range r.keys {
		details[k.Location.String()] = k
	}
	no, yes := false, true
	type want struct {
		alg         string
		bits        int
		extractable *bool
		sensitive   *bool
		usage       []string
	}
	wants := map[string]want{
		f.alphaLoc("object=aes;type=secret-key;id=%10"): {"AES", 256, &no, &yes, []string{"encrypt", "decrypt", "wrap", "unwrap"}},
		f.alphaLoc("object=web;type=private;id=%01"):    {"RSA", 2048, nil, nil, nil},
		f.betaLoc("object=lonely;type=private;id=%03"):  {"ECDSA", 256, nil, nil, []string{"sign"}},
		f.betaLoc("object=lonely;type=public;id=%03"):   {"ECDSA", 256, nil, nil, []string{"verify"}},
	}
	for loc, w := range wants {
		fd, ok := got[loc]
		if !ok {
			t.Errorf("no key finding at %s; got %v", loc, slices.Collect(mapsKeys(got)))
			continue
		}
		if len(fd.Chain) != 0 || fd.Key == nil || fd.Format != "pkcs11" || fd.Error != "" {
			t.Errorf("%s: %+v, want a key-only finding", loc, fd)
			continue
		}
		if fd.Key.Algorithm != w.alg || fd.Key.Bits != w.bits {
			t.Errorf("%s: key %s %d, want %s %d", loc, fd.Key.Algorithm, fd.Key.Bits, w.alg, w.bits)
		}
		d, ok := details[loc]
		if !ok {
			t.Errorf("%s: no KeyDetails", loc)
			continue
		}
		if w.extractable != nil && (fd.Key.Extractable == nil || *fd.Key.Extractable != *w.extractable ||
			d.Extractable == nil || *d.Extractable != *w.extractable) {
			t.Errorf("%s: extractable %v / %v, want %v", loc, fd.Key.Extractable, d.Extractable, *w.extractable)
		}
		if w.sensitive != nil && (d.Sensitive == nil || *d.Sensitive != *w.sensitive) {
			t.Errorf("%s: sensitive %v, want %v", loc, d.Sensitive, *w.sensitive)
		}
		for _, u := range w.usage {
			if !slices.Contains(d.Usage, u) {
				t.Errorf("%s: usage %v lacks %s", loc, d.Usage, u)
			}
		}
		if strings.Contains(loc, "type=private") && (d.Sensitive == nil || fd.Key.Extractable == nil) {
			t.Errorf("%s: private key flags unknown: %+v", loc, d)
		}
		if d.Class == "" || d.Label == "" || len(d.ID) != 1 {
			t.Errorf("%s: details %+v", loc, d)
		}
	}
	if slices.Contains(details[f.alphaLoc("object=aes;type=secret-key;id=%10")].Usage, "sign") {
		t.Error("aes: sign usage reported, it was made without")
	}
	if _, ok := got[f.alphaLoc("object=web;type=cert;id=%01")]; !ok {
		t.Error("objects=certs,keys lost the certificates")
	}

	// objects=keys alone: no certificates; type= narrows further.
	r = discover(t, context.Background(), "pkcs11:token=beta"+mod+"&pin-value="+userPIN+"&objects=keys")
	for _, fd := range r.findings {
		if len(fd.Chain) > 0 || !strings.HasPrefix(fd.Location.String(), "pkcs11:token=beta;") {
			t.Errorf("objects=keys on beta gave %s", fd.Location)
		}
	}
	if len(r.findings) != 2 || r.err != nil {
		t.Errorf("objects=keys on beta: %d findings, %v", len(r.findings), r.err)
	}
	r = discover(t, context.Background(), "pkcs11:token=beta;type=public"+mod+"&pin-value="+userPIN)
	if len(r.findings) != 1 || r.findings[0].Location.String() != f.betaLoc("object=lonely;type=public;id=%03") {
		t.Errorf("type=public: %+v %v", r.findings, r.err)
	}
}

func TestWrongPINOneErrorNoLockout(t *testing.T) {
	f := newFixture(t)
	const wrong = "0000-wrong"
	for scan := range 2 {
		r := discover(t, context.Background(), "pkcs11:token=alpha"+mod+"&pin-value="+wrong)
		if r.err != nil {
			t.Fatalf("scan %d: %v", scan, r.err)
		}
		p := r.problems()
		if len(p) != 1 || !strings.Contains(p[0], "wrong PIN (CKR_PIN_INCORRECT)") || !strings.HasPrefix(p[0], "pkcs11:token=alpha;serial="+f.alpha.serial+": ") {
			t.Fatalf("scan %d: problems %q, want one wrong-PIN error on the token", scan, p)
		}
		// Public certificates are still listed, unpaired.
		got := r.byLoc()
		web, ok := got[f.alphaLoc("object=web;type=cert;id=%01")]
		if !ok || web.Key != nil {
			t.Errorf("scan %d: web certificate %+v, want it found without a key", scan, web)
		}
		if strings.Contains(r.logs+strings.Join(p, ""), wrong) {
			t.Errorf("scan %d: the PIN shows in logs or errors", scan)
		}
	}
	// Two scans with a wrong PIN made at most two attempts: the token is
	// not locked, and the right PIN logs in.
	f.withModule(func(c *p11.Ctx) {
		ti, _ := c.GetTokenInfo(f.alpha.slot)
		if ti.Flags&(p11.CKF_USER_PIN_LOCKED) != 0 {
			t.Fatalf("token locked after two scans with a wrong PIN: flags %#x", ti.Flags)
		}
		sh, err := f.session(c, "alpha", userPIN)
		if err != nil {
			t.Fatalf("right PIN after two wrong scans: %v", err)
		}
		_ = c.Logout(sh)
		_ = c.CloseSession(sh)
	})
	r := discover(t, context.Background(), "pkcs11:token=alpha"+mod+"&pin-value="+userPIN)
	if web := r.byLoc()[f.alphaLoc("object=web;type=cert;id=%01")]; web.Key == nil || len(r.problems()) > 0 {
		t.Errorf("right PIN afterwards: web %+v, problems %v", web, r.problems())
	}
	// Both tokens with a wrong PIN: one error each.
	r = discover(t, context.Background(), "pkcs11:"+mod+"&pin-value="+wrong)
	if p := r.problems(); len(p) != 2 {
		t.Errorf("two tokens, wrong PIN: problems %q, want 2", p)
	}
}

func TestNoPIN(t *testing.T) {
	f := newFixture(t)
	r := discover(t, context.Background(), "pkcs11:"+mod)
	if r.err != nil || len(r.problems()) > 0 {
		t.Fatal(r.err, r.problems())
	}
	got := r.byLoc()
	if len(got) != 3 {
		t.Errorf("no PIN: %d findings, want the 3 public certificates", len(got))
	}
	if web, ok := got[f.alphaLoc("object=web;type=cert;id=%01")]; !ok || web.Key != nil {
		t.Errorf("no PIN: web %+v, want it found, unpaired", web)
	}
	if !strings.Contains(r.logs, "no PIN given") {
		t.Error("no PIN: no note in the log")
	}
	r = discover(t, context.Background(), "pkcs11:token=alpha"+mod+"&objects=keys")
	p := r.problems()
	if len(p) != 1 || !strings.Contains(p[0], "no PIN given") {
		t.Errorf("no PIN, objects=keys: problems %q, want the note", p)
	}
	for _, fd := range r.findings {
		if s := fd.Location.String(); strings.Contains(s, "type=private") || strings.Contains(s, "type=secret-key") {
			t.Errorf("no PIN: private object listed: %s", s)
		}
	}
}

func TestTokenSelection(t *testing.T) {
	f := newFixture(t)
	pin := "&pin-value=" + userPIN
	tokensOf := func(r result) []string {
		var s []string
		for _, fd := range r.findings {
			tok, _, _ := strings.Cut(fd.Location.Path, ";")
			if !slices.Contains(s, tok) {
				s = append(s, tok)
			}
		}
		slices.Sort(s)
		return s
	}
	cases := []struct {
		target string
		want   []string
	}{
		{"pkcs11:token=beta" + mod + pin, []string{"token=beta"}},
		{"pkcs11:serial=" + f.alpha.serial + mod + pin, []string{"token=alpha"}},
		{fmt.Sprintf("pkcs11:slot-id=%d", f.beta.slot) + mod + pin, []string{"token=beta"}},
		{"pkcs11:model=SoftHSM%20v2" + mod + pin, []string{"token=alpha", "token=beta"}},
		{"pkcs11:token=alpha;serial=" + f.alpha.serial + ";manufacturer=SoftHSM%20project" + mod + pin, []string{"token=alpha"}},
		{"pkcs11:" + mod + pin, []string{"token=alpha", "token=beta"}},
	}
	for _, c := range cases {
		r := discover(t, context.Background(), c.target)
		if r.err != nil {
			t.Errorf("%s: %v", c.target, r.err)
			continue
		}
		if got := tokensOf(r); !slices.Equal(got, c.want) {
			t.Errorf("%s: tokens %v, want %v", c.target, got, c.want)
		}
	}
	for _, tg := range []string{"pkcs11:token=gamma" + mod, "pkcs11:token=alpha;serial=" + f.beta.serial + mod,
		fmt.Sprintf("pkcs11:slot-id=%d", f.beta.slot+1000) + mod} {
		r := discover(t, context.Background(), tg)
		if r.err == nil || !strings.Contains(r.err.Error(), "no initialised token matches") ||
			!strings.Contains(r.err.Error(), `"alpha" (serial `+f.alpha.serial) {
			t.Errorf("%s: %v, want an error listing the tokens", tg, r.err)
		}
	}
	// Objects by label and id.
	r := discover(t, context.Background(), "pkcs11:object=ec"+mod)
	if len(r.findings) != 1 || r.findings[0].Location.String() != f.betaLoc("object=ec;type=cert;id=%02") {
		t.Errorf("object=ec: %+v", r.findings)
	}
	r = discover(t, context.Background(), "pkcs11:id=%0A"+mod)
	if len(r.findings) != 1 || r.findings[0].Location.String() != f.alphaLoc("object=ca;type=cert;id=%0A") {
		t.Errorf("id=%%0A: %+v", r.findings)
	}
}

func TestUninitialisedSlotSkipped(t *testing.T) {
	h := newHSM(t)
	// SoftHSM2 with no token has only its one uninitialised slot.
	r := discover(t, context.Background(), "pkcs11:"+mod)
	if r.err == nil || !strings.Contains(r.err.Error(), "none is initialised") {
		t.Fatalf("empty SoftHSM: %v, want no initialised token", r.err)
	}
	h.initToken("only")
	r = discover(t, context.Background(), "pkcs11:"+mod+"&pin-value="+userPIN+"&objects=certs,keys")
	if r.err != nil || len(r.findings) != 0 {
		t.Fatalf("one empty token: %v %+v", r.err, r.findings)
	}
	if !strings.Contains(r.logs, "token not initialised") || !strings.Contains(r.logs, "token scanned") {
		t.Errorf("log does not show the uninitialised slot skipped and the token scanned:\n%s", r.logs)
	}
}

func TestConfigFile(t *testing.T) {
	f := newFixture(t)
	pinFile := f.file("hsm.pin", []byte(userPIN+"\n"))
	conf := f.file("hsm.conf", []byte(fmt.Sprintf(`# pasted HSM configuration
module-path = %s
token = alpha
pin-source = %s
objects = certs,keys
`, softhsmModule, pinFile)))
	r := discover(t, context.Background(), "pkcs11:?config="+conf)
	if r.err != nil || len(r.problems()) > 0 {
		t.Fatal(r.err, r.problems())
	}
	got := r.byLoc()
	if web := got[f.alphaLoc("object=web;type=cert;id=%01")]; web.Key == nil {
		t.Errorf("config file: web not paired (PIN from pin-source not used?): %v", slices.Collect(mapsKeys(got)))
	}
	if _, ok := got[f.alphaLoc("object=aes;type=secret-key;id=%10")]; !ok {
		t.Error("config file: objects=certs,keys not applied")
	}
	// The target's attributes and parameters win over the file.
	r = discover(t, context.Background(), "pkcs11:token=beta?config="+conf+"&objects=certs")
	if r.err != nil || len(r.findings) != 1 || r.findings[0].Location.String() != f.betaLoc("object=ec;type=cert;id=%02") {
		t.Errorf("token=beta over the file: %v %+v", r.err, r.findings)
	}
	r = discover(t, context.Background(), "pkcs11:?config="+conf+"&pin-value=0000-wrong")
	if p := r.problems(); len(p) != 1 || !strings.Contains(p[0], "wrong PIN") {
		t.Errorf("pin-value over the file: %q", p)
	}
	// A bad file names the line, never a value.
	bad := f.file("bad.conf", []byte("module-path = "+softhsmModule+"\npin-value: s3cret-value\n"))
	r = discover(t, context.Background(), "pkcs11:?config="+bad)
	if r.err == nil || !strings.Contains(r.err.Error(), "line 2") || strings.Contains(r.err.Error(), "s3cret") {
		t.Errorf("bad config: %v", r.err)
	}
	r = discover(t, context.Background(), "pkcs11:?config="+f.file("unknown.conf", []byte("library = x\n")))
	if r.err == nil || !strings.Contains(r.err.Error(), `unknown key "library"`) {
		t.Errorf("unknown key: %v", r.err)
	}
	r = discover(t, context.Background(), "pkcs11:?config="+filepath.Join(f.dir, "missing.conf"))
	if r.err == nil || !strings.Contains(r.err.Error(), "config file") {
		t.Errorf("missing config: %v", r.err)
	}
}

func TestCancel(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r := discover(t, ctx, "pkcs11:"+mod); !errors.Is(r.err, context.Canceled) || len(r.findings) != 0 {
		t.Errorf("cancelled before: %v, %d findings", r.err, len(r.findings))
	}
	// Cancelled after the first finding.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	s, _ := New(Config{})
	n := 0
	err := s.Discover(ctx, target(t, "pkcs11:"+mod+"&pin-value="+userPIN+"&objects=certs,keys"), func(protocol.Finding) error {
		n++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Errorf("cancelled mid-scan: %v after %d findings", err, n)
	}
	// The module was finalised: the test initialises it afresh, and the
	// token is not left logged in.
	f.withModule(func(c *p11.Ctx) {
		sh, err := f.session(c, "alpha", userPIN)
		if err != nil {
			t.Errorf("login after a cancelled scan: %v", err)
		}
		_ = c.CloseSession(sh)
	})
	// An emit error ends the scan with that error.
	boom := errors.New("receiver gone")
	err = s.Discover(context.Background(), target(t, "pkcs11:"+mod), func(protocol.Finding) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("emit error: %v", err)
	}
	f.withModule(func(*p11.Ctx) {})
}

func TestModuleAlreadyInitialised(t *testing.T) {
	f := newFixture(t)
	f.withModule(func(c *p11.Ctx) {
		r := discover(t, context.Background(), "pkcs11:"+mod+"&pin-value="+userPIN)
		if r.err != nil || len(r.findings) != 3 {
			t.Fatalf("with the module initialised elsewhere: %v, %d findings", r.err, len(r.findings))
		}
		if !strings.Contains(r.logs, "already initialised") {
			t.Error("no note about the module already initialised")
		}
		// Discover did not finalise what it did not initialise.
		if _, err := c.GetSlotList(true); err != nil {
			t.Errorf("the test's module was finalised under it: %v", err)
		}
	})
}

func TestConcurrentScans(t *testing.T) {
	newFixture(t)
	var wg sync.WaitGroup
	results := make([]result, 4)
	for i := range results {
		wg.Go(func() {
			var r result
			s, _ := New(Config{})
			var mu sync.Mutex
			r.err = s.Discover(context.Background(), target(t, "pkcs11:"+mod+"&pin-value="+userPIN+"&objects=certs,keys"),
				func(fd protocol.Finding) error {
					mu.Lock()
					defer mu.Unlock()
					r.findings = append(r.findings, fd)
					return nil
				})
			results[i] = r
		})
	}
	wg.Wait()
	for i, r := range results {
		if r.err != nil || len(r.problems()) > 0 || len(r.findings) != len(results[0].findings) || len(r.findings) < 8 {
			t.Errorf("scan %d: %v %v, %d findings", i, r.err, r.problems(), len(r.findings))
		}
	}
}

func TestPINNeverShown(t *testing.T) {
	f := newFixture(t)
	pinFile := f.file("pin", []byte(userPIN))
	var all strings.Builder
	for _, tg := range []string{
		"pkcs11:" + mod + "&pin-value=" + userPIN + "&objects=certs,keys",
		"pkcs11:" + mod + "&pin-source=file:" + pinFile,
		"pkcs11:" + mod + "&pin-value=9999-" + userPIN,
		"pkcs11:token=nope" + mod + "&pin-value=" + userPIN,
		"pkcs11:?module-path=/nonexistent/lib.so&pin-value=" + userPIN,
	} {
		r := discover(t, context.Background(), tg)
		all.WriteString(r.logs)
		if r.err != nil {
			all.WriteString(r.err.Error())
		}
		b, _ := json.Marshal(r.findings)
		all.Write(b)
		fmt.Fprintf(&all, "%v %+v %#v", r.findings, r.keys, target(t, tg))
	}
	if strings.Contains(all.String(), userPIN) {
		t.Fatal("the PIN shows in logs, errors or findings")
	}
	if !strings.Contains(all.String(), "wrong PIN") || !strings.Contains(all.String(), "token scanned") {
		t.Fatal("the scans did not run as expected")
	}
}

func TestModuleErrors(t *testing.T) {
	h := newHSM(t)
	r := discover(t, context.Background(), "pkcs11:?module-path=/nonexistent/libhsm.so")
	if r.err == nil || !strings.Contains(r.err.Error(), "/nonexistent/libhsm.so does not exist") {
		t.Errorf("missing module: %v", r.err)
	}
	notLib := h.file("notalib.so", []byte("hello"))
	r = discover(t, context.Background(), "pkcs11:?module-path="+notLib)
	if r.err == nil || !strings.Contains(r.err.Error(), "cannot load module") {
		t.Errorf("not a library: %v", r.err)
	}
	// module-name finds SoftHSM2 in its usual folder. (protocol wants a
	// module-path or a config file in the target, so it comes by file.)
	h.initToken("named")
	r = discover(t, context.Background(), "pkcs11:?config="+h.file("named.conf", []byte("module-name=softhsm2\n")))
	if r.err != nil {
		t.Errorf("module-name=softhsm2: %v", r.err)
	}
	r = discover(t, context.Background(), "pkcs11:?config="+h.file("nosuch.conf", []byte("module-name=no-such-hsm\n")))
	if r.err == nil || !strings.Contains(r.err.Error(), "no-such-hsm") {
		t.Errorf("unknown module-name: %v", r.err)
	}
	s, _ := New(Config{})
	tls, _ := protocol.ParseTarget("tls://127.0.0.1:443")
	if err := s.Discover(context.Background(), tls, nil); err == nil {
		t.Error("a tls target was accepted")
	}
}

func TestSharedLabelsAndTwins(t *testing.T) {
	h := newHSM(t)
	testKeys()
	ca := makeCert(t, "Twin CA", caKey.Public(), nil, caKey, true)
	a := makeCert(t, "a.example.com", ecKey.Public(), ca, caKey, false)
	b := makeCert(t, "b.example.com", ecKey.Public(), ca, caKey, false)
	h.initToken("dup")
	h.initToken("dup")
	toks := h.tokens()["dup"]
	if len(toks) != 2 {
		t.Fatalf("tokens: %v", toks)
	}
	// Two certificates with one label and id in the first token, the
	// same certificate twice in the second.
	h.withModule(func(c *p11.Ctx) {
		for i, certs := range [][]*x509.Certificate{{a, b}, {a, a}} {
			sh, err := c.OpenSession(toks[i].slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Login(sh, p11.CKU_USER, userPIN); err != nil {
				t.Fatal(err)
			}
			for _, cert := range certs {
				_, err := c.CreateObject(sh, []*p11.Attribute{
					p11.NewAttribute(p11.CKA_CLASS, p11.CKO_CERTIFICATE),
					p11.NewAttribute(p11.CKA_CERTIFICATE_TYPE, p11.CKC_X_509),
					p11.NewAttribute(p11.CKA_TOKEN, true),
					p11.NewAttribute(p11.CKA_LABEL, "same; label/ü"),
					p11.NewAttribute(p11.CKA_ID, []byte{0xab, 0x01}),
					p11.NewAttribute(p11.CKA_SUBJECT, cert.RawSubject),
					p11.NewAttribute(p11.CKA_VALUE, cert.Raw),
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			_ = c.CloseSession(sh)
		}
	})
	r := discover(t, context.Background(), "pkcs11:token=dup"+mod)
	if r.err != nil || len(r.findings) != 4 {
		t.Fatalf("%v, %d findings", r.err, len(r.findings))
	}
	seen := map[string]bool{}
	for _, fd := range r.findings {
		s := fd.Location.String()
		if seen[s] {
			t.Errorf("location %s twice", s)
		}
		seen[s] = true
		if !strings.Contains(s, ";object=same%3B%20label%2F%C3%BC;type=cert;id=%AB%01;x-sha256=") {
			t.Errorf("location %s", s)
		}
		back, err := protocol.ParseLocation(s)
		if err != nil || back != fd.Location {
			t.Errorf("%s does not read back: %v", s, err)
		}
		attrs, err := protocol.Target{Path: back.Path}.PathAttrs()
		if err != nil || attrs["object"] != "same; label/ü" || attrs["id"] != "\xab\x01" {
			t.Errorf("%s: attributes %q %v", s, attrs, err)
		}
	}
	// A rescan names every object the same way.
	again := discover(t, context.Background(), "pkcs11:token=dup"+mod)
	for _, fd := range again.findings {
		if !seen[fd.Location.String()] {
			t.Errorf("rescan: new location %s", fd.Location)
		}
	}
}
