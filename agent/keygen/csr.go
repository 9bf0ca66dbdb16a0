package keygen

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Attribute is one subject attribute the named fields do not cover: a
// custom OID of the CSR template ("2.5.4.5" serialNumber, "2.5.4.97"
// organizationIdentifier, a private arc).
type Attribute struct {
	OID   string `json:"oid"`
	Value string `json:"value"`
}

// Template is a CSR template (P1) as the bot receives it. An empty subject
// and empty SANs are filled from the discovered certificate by
// WithDefaults, the rotation's default.
type Template struct {
	CommonName         string      `json:"cn,omitempty"`
	Organization       []string    `json:"o,omitempty"`
	OrganizationalUnit []string    `json:"ou,omitempty"`
	Locality           []string    `json:"l,omitempty"`
	Province           []string    `json:"st,omitempty"`
	Country            []string    `json:"c,omitempty"`
	Email              []string    `json:"email,omitempty"` // subject emailAddress (1.2.840.113549.1.9.1)
	ExtraNames         []Attribute `json:"extra_names,omitempty"`

	DNSNames       []string   `json:"dns_names,omitempty"`
	IPAddresses    []net.IP   `json:"ip_addresses,omitempty"`
	EmailAddresses []string   `json:"email_addresses,omitempty"` // rfc822Name SANs
	URIs           []*url.URL `json:"-"`                         // set by Go callers; JSON carries URIStrings
	URIStrings     []string   `json:"uris,omitempty"`

	// SignatureAlgorithm is as x509 spells it ("SHA256-RSA",
	// "ECDSA-SHA384", "SHA256-RSAPSS", "Ed25519") or as templates often do
	// ("SHA256WithRSA", "ECDSAWithSHA256"). "" picks the one fitting the
	// key: SHA256-RSA, ECDSA-SHA256 for P-256, ECDSA-SHA384 for P-384,
	// Ed25519.
	SignatureAlgorithm string `json:"signature_algorithm,omitempty"`
}

// oidEmail is the subject's emailAddress attribute (PKCS #9).
var oidEmail = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}

// namedOIDs are the attributes pkix.Name has fields for; FromCertificate
// copies the others as ExtraNames.
var namedOIDs = []asn1.ObjectIdentifier{
	{2, 5, 4, 3}, {2, 5, 4, 6}, {2, 5, 4, 7}, {2, 5, 4, 8}, {2, 5, 4, 10}, {2, 5, 4, 11},
}

// FromCertificate is a template asking for what c holds: its subject and
// its SANs. The signature algorithm is left to fit the new key, which may
// be of another type than c's.
func FromCertificate(c *x509.Certificate) Template {
	t := Template{
		CommonName:         c.Subject.CommonName,
		Organization:       slices.Clone(c.Subject.Organization),
		OrganizationalUnit: slices.Clone(c.Subject.OrganizationalUnit),
		Locality:           slices.Clone(c.Subject.Locality),
		Province:           slices.Clone(c.Subject.Province),
		Country:            slices.Clone(c.Subject.Country),
		DNSNames:           slices.Clone(c.DNSNames),
		IPAddresses:        slices.Clone(c.IPAddresses),
		EmailAddresses:     slices.Clone(c.EmailAddresses),
		URIs:               slices.Clone(c.URIs),
	}
	for _, n := range c.Subject.Names {
		v, ok := n.Value.(string)
		if !ok || slices.ContainsFunc(namedOIDs, n.Type.Equal) {
			continue
		}
		if n.Type.Equal(oidEmail) {
			t.Email = append(t.Email, v)
			continue
		}
		t.ExtraNames = append(t.ExtraNames, Attribute{OID: n.Type.String(), Value: v})
	}
	return t
}

// WithDefaults fills what t leaves empty from the discovered certificate c:
// the whole subject when t names no subject field, the SANs when t names
// none. A template naming some fields keeps them as they are (no merge
// field by field: a template saying O=New must not inherit the old OU).
func (t Template) WithDefaults(c *x509.Certificate) Template {
	if c == nil {
		return t
	}
	from := FromCertificate(c)
	if !t.hasSubject() {
		t.CommonName, t.Organization, t.OrganizationalUnit = from.CommonName, from.Organization, from.OrganizationalUnit
		t.Locality, t.Province, t.Country = from.Locality, from.Province, from.Country
		t.Email, t.ExtraNames = from.Email, from.ExtraNames
	}
	if !t.hasSANs() {
		t.DNSNames, t.IPAddresses, t.EmailAddresses, t.URIs = from.DNSNames, from.IPAddresses, from.EmailAddresses, from.URIs
		t.URIStrings = nil
	}
	return t
}

func (t Template) hasSubject() bool {
	return t.CommonName != "" || len(t.Organization)+len(t.OrganizationalUnit)+len(t.Locality)+
		len(t.Province)+len(t.Country)+len(t.Email)+len(t.ExtraNames) > 0
}

func (t Template) hasSANs() bool {
	return len(t.DNSNames)+len(t.IPAddresses)+len(t.EmailAddresses)+len(t.URIs)+len(t.URIStrings) > 0
}

// CreateCSR builds and signs a CSR for key from t. rnd nil means
// crypto/rand. The returned request is parsed back (its Raw is the DER)
// and its signature checked.
func CreateCSR(t Template, key crypto.Signer, rnd io.Reader) (*x509.CertificateRequest, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if !t.hasSubject() && !t.hasSANs() {
		return nil, errors.New("keygen: the CSR template has neither a subject nor a SAN")
	}
	sigAlg, err := SignatureAlgorithmFor(key, t.SignatureAlgorithm)
	if err != nil {
		return nil, err
	}
	subject := pkix.Name{
		CommonName:         t.CommonName,
		Organization:       t.Organization,
		OrganizationalUnit: t.OrganizationalUnit,
		Locality:           t.Locality,
		Province:           t.Province,
		Country:            t.Country,
	}
	for i, c := range t.Country {
		if len(c) != 2 {
			return nil, fmt.Errorf("keygen: c[%d] %q is not a two-letter country code", i, c)
		}
	}
	for _, e := range t.Email {
		subject.ExtraNames = append(subject.ExtraNames, pkix.AttributeTypeAndValue{Type: oidEmail, Value: e})
	}
	for i, a := range t.ExtraNames {
		oid, err := parseOID(a.OID)
		if err != nil {
			return nil, fmt.Errorf("keygen: extra_names[%d].oid: %w", i, err)
		}
		subject.ExtraNames = append(subject.ExtraNames, pkix.AttributeTypeAndValue{Type: oid, Value: a.Value})
	}
	uris := slices.Clone(t.URIs)
	for i, s := range t.URIStrings {
		u, err := url.Parse(s)
		if err != nil || u.Scheme == "" {
			return nil, fmt.Errorf("keygen: uris[%d] %q is not an absolute URI", i, s)
		}
		uris = append(uris, u)
	}
	der, err := x509.CreateCertificateRequest(rnd, &x509.CertificateRequest{
		Subject:            subject,
		DNSNames:           t.DNSNames,
		IPAddresses:        t.IPAddresses,
		EmailAddresses:     t.EmailAddresses,
		URIs:               uris,
		SignatureAlgorithm: sigAlg,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("keygen: create CSR: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("keygen: parse the CSR just made: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("keygen: the CSR just made does not verify: %w", err)
	}
	return csr, nil
}

// EncodeCSR is csr as a "CERTIFICATE REQUEST" PEM block.
func EncodeCSR(csr *x509.CertificateRequest) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw})
}

// lookupSigAlg finds a signature algorithm a CSR may ask for by name.
// SHA-1 and MD5 are absent on purpose: no CA accepts them and Go refuses
// to make them.
func lookupSigAlg(name string) (x509.SignatureAlgorithm, bool) {
	n := normSigAlg(name)
	if n == "pureed25519" {
		return x509.PureEd25519, true
	}
	for _, a := range []x509.SignatureAlgorithm{
		x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA,
		x509.SHA256WithRSAPSS, x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS,
		x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512,
		x509.PureEd25519,
	} {
		if normSigAlg(a.String()) == n {
			return a, true
		}
	}
	return 0, false
}

// normSigAlg makes "SHA256WithRSA", "sha256-rsa" and "SHA256_RSA" one name.
func normSigAlg(s string) string {
	s = strings.ToLower(s)
	s = strings.NewReplacer("-", "", "_", "", " ", "", "with", "").Replace(s)
	return s
}

// SignatureAlgorithmFor resolves a template's signature algorithm for key:
// "" picks the default for the key, a name is checked to fit it (an
// ECDSA key cannot sign SHA256-RSA). Errors name the field.
func SignatureAlgorithmFor(key crypto.Signer, name string) (x509.SignatureAlgorithm, error) {
	pub := key.Public()
	if name == "" {
		switch k := pub.(type) {
		case *rsa.PublicKey:
			return x509.SHA256WithRSA, nil
		case *ecdsa.PublicKey:
			switch k.Curve {
			case elliptic.P384():
				return x509.ECDSAWithSHA384, nil
			case elliptic.P521():
				return x509.ECDSAWithSHA512, nil
			}
			return x509.ECDSAWithSHA256, nil
		case ed25519.PublicKey:
			return x509.PureEd25519, nil
		}
		return 0, fmt.Errorf("keygen: no signature algorithm for %s", describe(pub))
	}
	alg, ok := lookupSigAlg(name)
	if !ok {
		return 0, fmt.Errorf("keygen: signature_algorithm %q is not supported (SHA-256/384/512 with RSA, RSA-PSS or ECDSA, or Ed25519)", name)
	}
	var fits bool
	switch pub.(type) {
	case *rsa.PublicKey:
		fits = strings.Contains(alg.String(), "RSA")
	case *ecdsa.PublicKey:
		fits = strings.HasPrefix(alg.String(), "ECDSA")
	case ed25519.PublicKey:
		fits = alg == x509.PureEd25519
	}
	if !fits {
		return 0, fmt.Errorf("keygen: signature_algorithm %s does not fit %s (key_algorithm)", alg, describe(pub))
	}
	return alg, nil
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	if _, err := x509.ParseOID(s); err != nil {
		return nil, fmt.Errorf("%q is not a dotted OID: %w", s, err)
	}
	var out asn1.ObjectIdentifier
	for _, arc := range strings.Split(s, ".") {
		n, err := strconv.Atoi(arc)
		if err != nil {
			return nil, fmt.Errorf("%q: arc %s is too large", s, arc)
		}
		out = append(out, n)
	}
	return out, nil
}
