package keygen

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGenerateAndCSREachAlgorithm(t *testing.T) {
	tests := []struct {
		alg     Algorithm
		wantSig x509.SignatureAlgorithm
		wantPub x509.PublicKeyAlgorithm
	}{
		{ECDSAP256, x509.ECDSAWithSHA256, x509.ECDSA},
		{ECDSAP384, x509.ECDSAWithSHA384, x509.ECDSA},
		{RSA2048, x509.SHA256WithRSA, x509.RSA},
		{RSA3072, x509.SHA256WithRSA, x509.RSA},
		{RSA4096, x509.SHA256WithRSA, x509.RSA},
		{Ed25519, x509.PureEd25519, x509.Ed25519},
	}
	for _, tt := range tests {
		t.Run(string(tt.alg), func(t *testing.T) {
			if testing.Short() && (tt.alg == RSA4096 || tt.alg == RSA3072) {
				t.Skip("slow key size in -short")
			}
			key, err := Generate(tt.alg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := AlgorithmOf(key); got != tt.alg {
				t.Errorf("AlgorithmOf = %q, want %q", got, tt.alg)
			}
			csr, err := CreateCSR(Template{CommonName: "www.example.test", DNSNames: []string{"www.example.test"}}, key, nil)
			if err != nil {
				t.Fatal(err)
			}
			if csr.SignatureAlgorithm != tt.wantSig || csr.PublicKeyAlgorithm != tt.wantPub {
				t.Errorf("CSR sig %v pub %v, want %v %v", csr.SignatureAlgorithm, csr.PublicKeyAlgorithm, tt.wantSig, tt.wantPub)
			}
			if err := csr.CheckSignature(); err != nil {
				t.Errorf("CheckSignature: %v", err)
			}
			if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(csr.PublicKey) {
				t.Error("CSR public key is not the key's")
			}
			// PKCS#8 round trip.
			p, err := MarshalPEM(key, "")
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParsePEM(p)
			if err != nil || AlgorithmOf(back) != tt.alg {
				t.Fatalf("ParsePEM: %v, %v", AlgorithmOf(back), err)
			}
		})
	}
	if _, err := Generate("dsa-1024", nil); err == nil || !strings.Contains(err.Error(), "key_algorithm") {
		t.Errorf("unknown algorithm: %v", err)
	}
}

// TestCSROpenSSLVerifies has OpenSSL check the CSR's signature, not only
// Go: the CA on the other side is rarely Go.
func TestCSROpenSSLVerifies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs openssl")
	}
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is needed: ", err)
	}
	for _, alg := range []Algorithm{ECDSAP256, RSA2048, Ed25519} {
		key, _ := Generate(alg, nil)
		csr, err := CreateCSR(Template{CommonName: "x.test", DNSNames: []string{"x.test"}}, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "req.pem")
		if err := os.WriteFile(f, EncodeCSR(csr), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(openssl, "req", "-in", f, "-noout", "-verify").CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("verify OK")) {
			t.Errorf("%s: openssl req -verify: %v\n%s", alg, err, out)
		}
	}
}

func TestCSRTemplateFields(t *testing.T) {
	key, _ := Generate(ECDSAP256, nil)
	u, _ := url.Parse("spiffe://example.test/web")
	csr, err := CreateCSR(Template{
		CommonName: "web.example.test", Organization: []string{"Example"}, OrganizationalUnit: []string{"Ops"},
		Locality: []string{"Pune"}, Province: []string{"MH"}, Country: []string{"IN"},
		Email:      []string{"pki@example.test"},
		ExtraNames: []Attribute{{OID: "2.5.4.97", Value: "VATIN-123"}},
		DNSNames:   []string{"web.example.test", "www.example.test"}, IPAddresses: []net.IP{net.ParseIP("192.0.2.7")},
		EmailAddresses: []string{"web@example.test"}, URIs: []*url.URL{u}, URIStrings: []string{"urn:example:web"},
		SignatureAlgorithm: "ECDSAWithSHA384",
	}, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := csr.Subject
	if s.CommonName != "web.example.test" || s.Organization[0] != "Example" || s.OrganizationalUnit[0] != "Ops" ||
		s.Locality[0] != "Pune" || s.Province[0] != "MH" || s.Country[0] != "IN" {
		t.Errorf("subject %v", s)
	}
	found := map[string]string{}
	for _, n := range s.Names {
		found[n.Type.String()], _ = n.Value.(string)
	}
	if found["1.2.840.113549.1.9.1"] != "pki@example.test" || found["2.5.4.97"] != "VATIN-123" {
		t.Errorf("extra names %v", found)
	}
	if len(csr.DNSNames) != 2 || !csr.IPAddresses[0].Equal(net.ParseIP("192.0.2.7")) ||
		csr.EmailAddresses[0] != "web@example.test" || len(csr.URIs) != 2 || csr.URIs[1].String() != "urn:example:web" {
		t.Errorf("SANs %v %v %v %v", csr.DNSNames, csr.IPAddresses, csr.EmailAddresses, csr.URIs)
	}
	if csr.SignatureAlgorithm != x509.ECDSAWithSHA384 {
		t.Errorf("sig %v", csr.SignatureAlgorithm)
	}
}

func TestCSRDefaultsFromCertificate(t *testing.T) {
	oldKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	u, _ := url.Parse("spiffe://example.test/api")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject: pkix.Name{CommonName: "api.example.test", Organization: []string{"Example"}, Country: []string{"IN"},
			ExtraNames: []pkix.AttributeTypeAndValue{
				{Type: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, Value: "pki@example.test"},
				{Type: asn1.ObjectIdentifier{2, 5, 4, 5}, Value: "SN-42"},
			}},
		DNSNames: []string{"api.example.test", "api2.example.test"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		EmailAddresses: []string{"api@example.test"}, URIs: []*url.URL{u},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &oldKey.PublicKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := x509.ParseCertificate(der)

	newKey, _ := Generate(ECDSAP256, nil) // a rotation may change the key type
	tests := []struct {
		name    string
		tmpl    Template
		wantCN  string
		wantDNS []string
	}{
		{"empty template takes all", Template{}, "api.example.test", old.DNSNames},
		{"template subject kept, SANs copied", Template{CommonName: "new.example.test"}, "new.example.test", old.DNSNames},
		{"template SANs kept, subject copied", Template{DNSNames: []string{"only.example.test"}}, "api.example.test", []string{"only.example.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr, err := CreateCSR(tt.tmpl.WithDefaults(old), newKey, nil)
			if err != nil {
				t.Fatal(err)
			}
			if csr.Subject.CommonName != tt.wantCN || strings.Join(csr.DNSNames, ",") != strings.Join(tt.wantDNS, ",") {
				t.Errorf("CN %q DNS %v", csr.Subject.CommonName, csr.DNSNames)
			}
			if csr.SignatureAlgorithm != x509.ECDSAWithSHA256 {
				t.Errorf("sig %v, want one fitting the new key", csr.SignatureAlgorithm)
			}
		})
	}
	csr, _ := CreateCSR(Template{}.WithDefaults(old), newKey, nil)
	if csr.Subject.String() != old.Subject.String() {
		t.Errorf("subject %q, want %q", csr.Subject, old.Subject)
	}
	if !csr.IPAddresses[0].Equal(old.IPAddresses[0]) || csr.EmailAddresses[0] != "api@example.test" || csr.URIs[0].String() != u.String() {
		t.Errorf("SANs not copied: %v %v %v", csr.IPAddresses, csr.EmailAddresses, csr.URIs)
	}
}

func TestRefusals(t *testing.T) {
	ec, _ := Generate(ECDSAP256, nil)
	rsaKey, _ := Generate(RSA2048, nil)
	ed, _ := Generate(Ed25519, nil)
	ok := Template{CommonName: "a.test"}
	tests := []struct {
		name string
		tmpl Template
		key  crypto.Signer
		want string
	}{
		{"RSA signature for an ECDSA key", Template{CommonName: "a.test", SignatureAlgorithm: "SHA256WithRSA"}, ec, "signature_algorithm SHA256-RSA does not fit an ECDSA P-256 key"},
		{"ECDSA signature for an RSA key", Template{CommonName: "a.test", SignatureAlgorithm: "ECDSA-SHA256"}, rsaKey, "does not fit an RSA 2048 key"},
		{"RSA-PSS for Ed25519", Template{CommonName: "a.test", SignatureAlgorithm: "SHA256-RSAPSS"}, ed, "does not fit an Ed25519 key"},
		{"SHA-1 refused", Template{CommonName: "a.test", SignatureAlgorithm: "SHA1WithRSA"}, rsaKey, "signature_algorithm \"SHA1WithRSA\" is not supported"},
		{"empty template", Template{}, ec, "neither a subject nor a SAN"},
		{"bad custom OID", Template{CommonName: "a.test", ExtraNames: []Attribute{{OID: "not.an.oid", Value: "x"}}}, ec, "extra_names[0].oid"},
		{"bad country", Template{CommonName: "a.test", Country: []string{"India"}}, ec, "c[0]"},
		{"relative URI", Template{CommonName: "a.test", URIStrings: []string{"no-scheme"}}, ec, "uris[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CreateCSR(tt.tmpl, tt.key, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := CreateCSR(ok, ec, nil); err != nil {
		t.Errorf("control: %v", err)
	}
}

func TestMarshalLike(t *testing.T) {
	rsaKey, _ := Generate(RSA2048, nil)
	ecKey, _ := Generate(ECDSAP384, nil)
	edKey, _ := Generate(Ed25519, nil)
	oldRSA1, _ := MarshalPEM(rsaKey, PKCS1)
	oldEC1, _ := MarshalPEM(ecKey, SEC1)
	old8, _ := MarshalPEM(ecKey, PKCS8)
	cert := []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	haproxy := append(append([]byte{}, cert...), oldRSA1...)

	newRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	newEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tests := []struct {
		name string
		key  crypto.Signer
		old  []byte
		want KeyFormat
	}{
		{"PKCS#1 stays PKCS#1", newRSA, oldRSA1, PKCS1},
		{"SEC1 stays SEC1", newEC, oldEC1, SEC1},
		{"PKCS#8 stays PKCS#8", newEC, old8, PKCS8},
		{"combined HAProxy file", newRSA, haproxy, PKCS1},
		{"RSA old, EC new: PKCS#8", newEC, oldRSA1, PKCS8},
		{"EC old, Ed25519 new: PKCS#8", edKey, oldEC1, PKCS8},
		{"no old key: PKCS#8", newEC, cert, PKCS8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, f, err := MarshalLike(tt.key, tt.old)
			if err != nil || f != tt.want {
				t.Fatalf("format %q, %v; want %q", f, err, tt.want)
			}
			b, _ := pem.Decode(out)
			if b.Type != string(tt.want) {
				t.Errorf("block %q", b.Type)
			}
			back, err := ParsePEM(out)
			if err != nil || !back.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(tt.key.Public()) {
				t.Errorf("round trip: %v", err)
			}
		})
	}
	enc := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}})
	if _, _, err := MarshalLike(newEC, enc); err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Errorf("encrypted old key: %v", err)
	}
	if _, err := MarshalPEM(newEC, PKCS1); err == nil || !strings.Contains(err.Error(), "needs an RSA key, not an ECDSA P-256 key") {
		t.Errorf("PKCS1 of EC: %v", err)
	}
}
