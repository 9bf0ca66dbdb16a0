package protocol

import (
	"crypto"
	"crypto/dsa" //nolint:staticcheck // DSA keys are still found in the wild and must be named.
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	rsaKeyOnce sync.Once
	rsaKey     *rsa.PrivateKey
)

// testKey makes a key of the named kind; the RSA key is made once.
func testKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch kind {
	case "RSA-2048":
		rsaKeyOnce.Do(func() { rsaKey, err = rsa.GenerateKey(rand.Reader, 2048) })
		k = rsaKey
	case "P-256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "P-384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "Ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("no key kind %q", kind)
	}
	if err != nil || k == nil {
		t.Fatalf("generating %s key: %v", kind, err)
	}
	return k
}

var (
	testNotBefore = time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("IST", 5*3600+1800))
	testNotAfter  = time.Date(2027, 1, 2, 3, 4, 5, 0, time.FixedZone("PST", -8*3600))
)

// testCert makes a certificate for key, signed by parentKey as parent (or
// self-signed when parent is nil), and returns its DER.
func testCert(t testing.TB, tmpl *x509.Certificate, key crypto.Signer, parent *x509.Certificate, parentKey crypto.Signer) []byte {
	t.Helper()
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(0x01ab)
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = testNotBefore, testNotAfter
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	return der
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestNewRecordKeyAlgorithms(t *testing.T) {
	tests := []struct {
		kind    string
		alg     string
		bits    int
		sigAlgo string
	}{
		{"RSA-2048", "RSA", 2048, "SHA256-RSA"},
		{"P-256", "ECDSA", 256, "ECDSA-SHA256"},
		{"P-384", "ECDSA", 384, "ECDSA-SHA384"},
		{"Ed25519", "Ed25519", 256, "Ed25519"},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			key := testKey(t, tc.kind)
			der := testCert(t, &x509.Certificate{
				Subject:  pkix.Name{CommonName: "www.example.com", Organization: []string{"Example Ltd"}, Country: []string{"IN"}},
				DNSNames: []string{"www.example.com"},
			}, key, nil, nil)
			seen := time.Date(2026, 6, 1, 12, 0, 0, 0, time.FixedZone("CEST", 7200))
			r := NewRecord(Finding{
				Location: Location{Scheme: SchemeTLS, Host: "10.0.0.5:443", Query: "sni=www.example.com"},
				Source:   SchemeTLS,
				Format:   FormatTLS,
				Chain:    [][]byte{der},
				SeenAt:   seen,
			})
			if r.Location != "tls://10.0.0.5:443?sni=www.example.com" || r.Source != "tls" || r.Format != "tls" {
				t.Errorf("Location %q, Source %q, Format %q", r.Location, r.Source, r.Format)
			}
			if r.FingerprintSHA256 != sha256Hex(der) || r.FingerprintSHA256 != Fingerprint(der) {
				t.Errorf("FingerprintSHA256 = %q, want %q", r.FingerprintSHA256, sha256Hex(der))
			}
			if r.KeyAlgorithm != tc.alg || r.KeyBits != tc.bits {
				t.Errorf("key = %s/%d, want %s/%d", r.KeyAlgorithm, r.KeyBits, tc.alg, tc.bits)
			}
			if r.SignatureAlgorithm != tc.sigAlgo {
				t.Errorf("SignatureAlgorithm = %q, want %q", r.SignatureAlgorithm, tc.sigAlgo)
			}
			if want := "CN=www.example.com,O=Example Ltd,C=IN"; r.Subject != want || r.Issuer != want {
				t.Errorf("Subject %q, Issuer %q, want %q", r.Subject, r.Issuer, want)
			}
			if r.Serial != "01ab" {
				t.Errorf("Serial = %q, want 01ab", r.Serial)
			}
			if r.NotBefore == nil || !r.NotBefore.Equal(testNotBefore) || r.NotBefore.Location() != time.UTC {
				t.Errorf("NotBefore = %v, want %v in UTC", r.NotBefore, testNotBefore)
			}
			if r.NotAfter == nil || !r.NotAfter.Equal(testNotAfter) || r.NotAfter.Location() != time.UTC {
				t.Errorf("NotAfter = %v, want %v in UTC", r.NotAfter, testNotAfter)
			}
			if !r.SeenAt.Equal(seen) || r.SeenAt.Location() != time.UTC {
				t.Errorf("SeenAt = %v, want %v in UTC", r.SeenAt, seen)
			}
			if r.HasPrivateKey || r.PrivateKey != nil || r.IsCA || r.Error != "" || r.Chain != nil {
				t.Errorf("unexpected: %+v", r)
			}
			if !slices.Equal(r.SANs, []string{"www.example.com"}) {
				t.Errorf("SANs = %q", r.SANs)
			}
		})
	}
}

func TestNewRecordSANsOfAllKinds(t *testing.T) {
	u1, _ := url.Parse("spiffe://example.com/ns/prod/sa/web")
	u2, _ := url.Parse("https://www.example.com/path?q=1")
	der := testCert(t, &x509.Certificate{
		Subject:        pkix.Name{CommonName: "multi"},
		DNSNames:       []string{"www.example.com", "*.example.com", "xn--bcher-kva.example"},
		IPAddresses:    []net.IP{net.ParseIP("10.0.0.5"), net.ParseIP("2001:db8::1"), net.ParseIP("::ffff:192.0.2.1")},
		EmailAddresses: []string{"pki@example.com"},
		URIs:           []*url.URL{u1, u2},
	}, testKey(t, "P-256"), nil, nil)
	r := NewRecord(Finding{Location: Location{Scheme: "file", Path: "/x/b.pem", Entry: "0"}, Source: "file", Chain: [][]byte{der}})
	want := []string{
		"www.example.com", "*.example.com", "xn--bcher-kva.example",
		"10.0.0.5", "2001:db8::1", "192.0.2.1",
		"pki@example.com",
		"spiffe://example.com/ns/prod/sa/web", "https://www.example.com/path?q=1",
	}
	if !slices.Equal(r.SANs, want) {
		t.Errorf("SANs = %q, want %q", r.SANs, want)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(SANs(c), want) {
		t.Errorf("SANs(c) = %q", SANs(c))
	}
	// A certificate without SANs has none, and "sans" is left out.
	der = testCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "bare"}}, testKey(t, "P-256"), nil, nil)
	r = NewRecord(Finding{Location: Location{Scheme: "file", Path: "/b.pem"}, Chain: [][]byte{der}})
	if r.SANs != nil {
		t.Errorf("SANs = %q, want none", r.SANs)
	}
	b, _ := json.Marshal(r)
	if strings.Contains(string(b), `"sans"`) {
		t.Errorf("JSON of a record without SANs has sans: %s", b)
	}
}

func TestNewRecordChainFingerprints(t *testing.T) {
	rootKey, interKey, leafKey := testKey(t, "P-384"), testKey(t, "RSA-2048"), testKey(t, "Ed25519")
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Root CA"},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	rootDER := testCert(t, rootTmpl, rootKey, nil, nil)
	root, _ := x509.ParseCertificate(rootDER)
	interTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Test Issuing CA"},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	interDER := testCert(t, interTmpl, interKey, root, rootKey)
	inter, _ := x509.ParseCertificate(interDER)
	leafDER := testCert(t, &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes([]byte{0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42}),
		Subject:      pkix.Name{CommonName: "www.example.com"},
		DNSNames:     []string{"www.example.com"},
	}, leafKey, inter, interKey)

	r := NewRecord(Finding{
		Location: Location{Scheme: "tls", Host: "[2001:db8::1]:443"},
		Source:   "tls",
		Chain:    [][]byte{leafDER, interDER, rootDER},
	})
	if r.FingerprintSHA256 != sha256Hex(leafDER) {
		t.Errorf("fingerprint is not the leaf's")
	}
	if want := []string{sha256Hex(interDER), sha256Hex(rootDER)}; !slices.Equal(r.Chain, want) {
		t.Errorf("Chain = %q, want %q", r.Chain, want)
	}
	if r.Issuer != "CN=Test Issuing CA" || r.Subject != "CN=www.example.com" {
		t.Errorf("Subject %q, Issuer %q", r.Subject, r.Issuer)
	}
	if r.Serial != "7f000000000000000000000000000042" {
		t.Errorf("Serial = %q", r.Serial)
	}
	if r.KeyAlgorithm != "Ed25519" || r.SignatureAlgorithm != "SHA256-RSA" {
		t.Errorf("key %s signed with %s", r.KeyAlgorithm, r.SignatureAlgorithm)
	}
	if r.IsCA {
		t.Error("leaf is a CA")
	}
	if r.Location != "tls://[2001:db8::1]:443" {
		t.Errorf("Location = %q", r.Location)
	}
	// The intermediate on its own is a CA signed by ECDSA P-384.
	ri := NewRecord(Finding{Chain: [][]byte{interDER, rootDER}})
	if !ri.IsCA || ri.SignatureAlgorithm != "ECDSA-SHA384" || ri.KeyAlgorithm != "RSA" || ri.KeyBits != 2048 {
		t.Errorf("intermediate record: %+v", ri)
	}
	// The chain's members need not parse to be fingerprinted.
	garbage := []byte("not a certificate")
	rg := NewRecord(Finding{Chain: [][]byte{leafDER, garbage, {}}})
	if want := []string{sha256Hex(garbage), sha256Hex(nil)}; !slices.Equal(rg.Chain, want) || rg.Error != "" {
		t.Errorf("Chain = %q, Error %q", rg.Chain, rg.Error)
	}
}

func TestNewRecordGarbageDER(t *testing.T) {
	garbage := []byte{0x30, 0x82, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef}
	for _, prior := range []string{"", "wrong keystore password"} {
		r := NewRecord(Finding{
			Location: Location{Scheme: "file", Path: "/x/b.pem", Entry: "1"},
			Source:   "file",
			Format:   FormatPEM,
			Chain:    [][]byte{garbage},
			Error:    prior,
		})
		if r.FingerprintSHA256 != sha256Hex(garbage) {
			t.Errorf("FingerprintSHA256 = %q, want %q", r.FingerprintSHA256, sha256Hex(garbage))
		}
		if !strings.Contains(r.Error, "certificate does not parse") {
			t.Errorf("Error = %q", r.Error)
		}
		if prior != "" && !strings.HasPrefix(r.Error, prior+"; ") {
			t.Errorf("Error = %q, want it to keep %q first", r.Error, prior)
		}
		if r.Subject != "" || r.NotBefore != nil || r.NotAfter != nil || r.KeyAlgorithm != "" || r.SANs != nil {
			t.Errorf("garbage has details: %+v", r)
		}
		if r.Location != "file:///x/b.pem#1" {
			t.Errorf("Location = %q", r.Location)
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"not_before", "not_after", "subject", "key_algorithm"} {
			if _, ok := m[k]; ok {
				t.Errorf("JSON of garbage has %s: %s", k, b)
			}
		}
		if m["fingerprint_sha256"] != sha256Hex(garbage) || m["error"] != r.Error {
			t.Errorf("JSON = %s", b)
		}
	}
}

func TestNewRecordWithoutCertificate(t *testing.T) {
	r := NewRecord(Finding{
		Location: Location{Scheme: "jks", Path: "/opt/app/keystore.jks"},
		Source:   "jks",
		Error:    "no password fits",
	})
	if r.FingerprintSHA256 != "" || r.Error != "no password fits" || r.Location != "jks:///opt/app/keystore.jks" || r.HasPrivateKey {
		t.Errorf("record = %+v", r)
	}
	// An empty DER is still a (garbage) certificate.
	r = NewRecord(Finding{Chain: [][]byte{nil}})
	if r.FingerprintSHA256 != sha256Hex(nil) || r.Error == "" {
		t.Errorf("record of empty DER = %+v", r)
	}
}

func TestNewRecordKeyInfo(t *testing.T) {
	der := testCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "k"}}, testKey(t, "P-256"), nil, nil)
	no := false
	key := &KeyInfo{Algorithm: "ECDSA", Bits: 256, Extractable: &no}
	r := NewRecord(Finding{Location: Location{Scheme: "jks", Path: "/ks.jks", Entry: "tomcat"}, Chain: [][]byte{der}, Key: key})
	if !r.HasPrivateKey || r.PrivateKey != key {
		t.Errorf("HasPrivateKey %v, PrivateKey %+v", r.HasPrivateKey, r.PrivateKey)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["has_private_key"] != true {
		t.Errorf("has_private_key = %v in %s", m["has_private_key"], b)
	}
	pk, _ := m["private_key"].(map[string]any)
	if pk["algorithm"] != "ECDSA" || pk["bits"] != float64(256) || pk["extractable"] != false {
		t.Errorf("private_key = %v", m["private_key"])
	}
	// Without a key the field is still there, false.
	r = NewRecord(Finding{Chain: [][]byte{der}})
	b, _ = json.Marshal(r)
	m = nil
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if v, ok := m["has_private_key"]; !ok || v != false {
		t.Errorf("has_private_key = %v, %v in %s", v, ok, b)
	}
}

// The JSON field names are a contract with tools outside this module.
func TestCertificateRecordJSONFieldNames(t *testing.T) {
	root := testKey(t, "P-256")
	rootDER := testCert(t, &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "Root"}, IsCA: true, BasicConstraintsValid: true}, root, nil, nil)
	rootCert, _ := x509.ParseCertificate(rootDER)
	leafDER := testCert(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "www.example.com"},
		DNSNames:    []string{"www.example.com"},
		IPAddresses: []net.IP{net.ParseIP("10.0.0.5")},
	}, testKey(t, "RSA-2048"), rootCert, root)
	r := NewRecord(Finding{
		Location: Location{Scheme: "tls", Host: "10.0.0.5:443", Query: "sni=www.example.com"},
		Source:   "tls",
		Format:   FormatTLS,
		Chain:    [][]byte{leafDER, rootDER},
		Key:      &KeyInfo{Algorithm: "RSA", Bits: 2048},
		TLS:      &TLSInfo{Version: "TLS 1.3", CipherSuite: "TLS_AES_128_GCM_SHA256", Group: "X25519MLKEM768", PostQuantum: true, SNI: "www.example.com", ALPN: "h2"},
		Error:    "OCSP responder unreachable",
		SeenAt:   time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
	})
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	str := func(k string) string {
		t.Helper()
		v, ok := m[k].(string)
		if !ok {
			t.Errorf("%s = %#v, want a string, in %s", k, m[k], b)
		}
		return v
	}
	if got := str("location"); got != "tls://10.0.0.5:443?sni=www.example.com" {
		t.Errorf("location = %q", got)
	}
	if got := str("source"); got != "tls" {
		t.Errorf("source = %q", got)
	}
	if got := str("fingerprint_sha256"); got != sha256Hex(leafDER) {
		t.Errorf("fingerprint_sha256 = %q", got)
	}
	if got := str("subject"); got != "CN=www.example.com" {
		t.Errorf("subject = %q", got)
	}
	if got := str("issuer"); got != "CN=Root" {
		t.Errorf("issuer = %q", got)
	}
	if got := str("serial"); got != "01ab" {
		t.Errorf("serial = %q", got)
	}
	for k, want := range map[string]time.Time{"not_before": testNotBefore, "not_after": testNotAfter} {
		s := str(k)
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil || !tm.Equal(want) || !strings.HasSuffix(s, "Z") {
			t.Errorf("%s = %q (%v), want %v in RFC 3339 UTC", k, s, err, want.UTC().Format(time.RFC3339))
		}
	}
	if got, want := str("not_before"), "2026-01-01T21:34:05Z"; got != want {
		t.Errorf("not_before = %q, want %q", got, want)
	}
	if got := str("key_algorithm"); got != "RSA" {
		t.Errorf("key_algorithm = %q", got)
	}
	if got, ok := m["key_bits"].(float64); !ok || got != 2048 {
		t.Errorf("key_bits = %#v", m["key_bits"])
	}
	if got := str("signature_algorithm"); got != "ECDSA-SHA256" {
		t.Errorf("signature_algorithm = %q", got)
	}
	if got, ok := m["sans"].([]any); !ok || len(got) != 2 || got[0] != "www.example.com" || got[1] != "10.0.0.5" {
		t.Errorf("sans = %#v", m["sans"])
	}
	if got, ok := m["chain"].([]any); !ok || len(got) != 1 || got[0] != sha256Hex(rootDER) {
		t.Errorf("chain = %#v", m["chain"])
	}
	if got, ok := m["has_private_key"].(bool); !ok || !got {
		t.Errorf("has_private_key = %#v", m["has_private_key"])
	}
	if got := str("error"); got != "OCSP responder unreachable" {
		t.Errorf("error = %q", got)
	}
	tlsInfo, ok := m["tls"].(map[string]any)
	if !ok {
		t.Fatalf("tls = %#v", m["tls"])
	}
	for k, want := range map[string]any{
		"version": "TLS 1.3", "cipher_suite": "TLS_AES_128_GCM_SHA256", "group": "X25519MLKEM768",
		"pq_key_exchange": true, "sni": "www.example.com", "alpn": "h2",
	} {
		if tlsInfo[k] != want {
			t.Errorf("tls.%s = %#v, want %#v", k, tlsInfo[k], want)
		}
	}
	// Go field names never leak into the JSON.
	for k := range m {
		if k != strings.ToLower(k) || strings.Contains(k, "SHA") {
			t.Errorf("field %q is not snake_case", k)
		}
	}
	// And it reads back.
	var back CertificateRecord
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.FingerprintSHA256 != r.FingerprintSHA256 || !back.NotAfter.Equal(*r.NotAfter) || back.TLS.Group != "X25519MLKEM768" || !slices.Equal(back.SANs, r.SANs) {
		t.Errorf("read back: %+v", back)
	}
}

func TestFingerprint(t *testing.T) {
	if got, want := Fingerprint(nil), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; got != want {
		t.Errorf("Fingerprint(nil) = %s, want %s", got, want)
	}
	if got, want := Fingerprint([]byte("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("Fingerprint(abc) = %s, want %s", got, want)
	}
}

func TestPublicAndPrivateKeyInfo(t *testing.T) {
	for _, kind := range []string{"RSA-2048", "P-256", "P-384", "Ed25519"} {
		k := testKey(t, kind)
		alg, bits := PublicKeyInfo(k.Public())
		ki := PrivateKeyInfo(k)
		if ki.Algorithm != alg || ki.Bits != bits || ki.Extractable != nil {
			t.Errorf("%s: PrivateKeyInfo = %+v, PublicKeyInfo = %s/%d", kind, ki, alg, bits)
		}
		want := map[string]string{"RSA-2048": "RSA/2048", "P-256": "ECDSA/256", "P-384": "ECDSA/384", "Ed25519": "Ed25519/256"}[kind]
		if got := alg + "/" + itoa(bits); got != want {
			t.Errorf("%s: PublicKeyInfo = %s, want %s", kind, got, want)
		}
	}
	// A DSA key, built by hand: only its size matters here.
	p := new(big.Int).Lsh(big.NewInt(1), 2047)
	dsaPriv := &dsa.PrivateKey{PublicKey: dsa.PublicKey{Parameters: dsa.Parameters{P: p, Q: big.NewInt(7), G: big.NewInt(2)}, Y: big.NewInt(3)}, X: big.NewInt(5)}
	if alg, bits := PublicKeyInfo(&dsaPriv.PublicKey); alg != "DSA" || bits != 2048 {
		t.Errorf("DSA: %s/%d", alg, bits)
	}
	if ki := PrivateKeyInfo(dsaPriv); ki.Algorithm != "DSA" || ki.Bits != 2048 {
		t.Errorf("DSA private: %+v", ki)
	}
	// Keys it does not know are named unknown, not guessed.
	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if alg, bits := PublicKeyInfo(x.PublicKey()); alg != "unknown" || bits != 0 {
		t.Errorf("X25519 public: %s/%d", alg, bits)
	}
	if ki := PrivateKeyInfo(x); ki.Algorithm != "unknown" {
		t.Errorf("X25519 private: %+v", ki)
	}
	if ki := PrivateKeyInfo("not a key"); ki.Algorithm != "unknown" || ki.Bits != 0 {
		t.Errorf("string: %+v", ki)
	}
	if alg, _ := PublicKeyInfo(nil); alg != "unknown" {
		t.Errorf("nil: %s", alg)
	}
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }
