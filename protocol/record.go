package protocol

import (
	"crypto"
	"crypto/dsa" //nolint:staticcheck // DSA keys are still found in the wild and must be named.
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"time"
)

// CertificateRecord is one line of `emsign-bot scan` output and one
// certificate at one location for the control plane. The JSON field names
// are a contract: tools outside this module read them.
type CertificateRecord struct {
	Location string `json:"location"`
	// Kind is certificate or key (a key object found on its own, e.g. in an
	// HSM); empty on a line that only reports a problem.
	Kind               string            `json:"kind,omitempty"`
	Source             string            `json:"source"`
	Format             string            `json:"format,omitempty"`
	FingerprintSHA256  string            `json:"fingerprint_sha256,omitempty"`
	Subject            string            `json:"subject,omitempty"`
	CommonName         string            `json:"common_name,omitempty"`
	SANs               []string          `json:"sans,omitempty"`
	Issuer             string            `json:"issuer,omitempty"`
	IssuerCommonName   string            `json:"issuer_common_name,omitempty"`
	Serial             string            `json:"serial,omitempty"`
	NotBefore          *time.Time        `json:"not_before,omitempty"`
	NotAfter           *time.Time        `json:"not_after,omitempty"`
	KeyAlgorithm       string            `json:"key_algorithm,omitempty"`
	KeyBits            int               `json:"key_bits,omitempty"`
	SignatureAlgorithm string            `json:"signature_algorithm,omitempty"`
	IsCA               bool              `json:"is_ca,omitempty"`
	Chain              []string          `json:"chain,omitempty"`
	HasPrivateKey      bool              `json:"has_private_key"`
	PrivateKey         *KeyInfo          `json:"private_key,omitempty"`
	TLS                *TLSInfo          `json:"tls,omitempty"`
	Machine            *MachineInfo      `json:"machine,omitempty"`
	Attributes         map[string]string `json:"attributes,omitempty"`
	Error              string            `json:"error,omitempty"`
	SeenAt             time.Time         `json:"seen_at"`
}

// Record kinds.
const (
	RecordCertificate = "certificate"
	RecordKey         = "key"
)

// Fingerprint is the lowercase hex SHA-256 of a DER certificate.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// NewRecord describes a finding. A certificate that does not parse still
// gets its fingerprint, and the parse failure goes into Error.
func NewRecord(f Finding) CertificateRecord {
	r := CertificateRecord{
		Location:      f.Location.String(),
		Source:        f.Source,
		Format:        f.Format,
		HasPrivateKey: f.Key.Private(),
		PrivateKey:    f.Key,
		TLS:           f.TLS,
		Machine:       f.Machine,
		Attributes:    f.Attributes,
		Error:         f.Error,
		SeenAt:        f.SeenAt.UTC(),
	}
	if len(f.Chain) == 0 {
		if f.Key != nil {
			r.Kind = RecordKey
			r.KeyAlgorithm, r.KeyBits = f.Key.Algorithm, f.Key.Bits
		}
		return r
	}
	r.Kind = RecordCertificate
	r.FingerprintSHA256 = Fingerprint(f.Chain[0])
	for _, der := range f.Chain[1:] {
		r.Chain = append(r.Chain, Fingerprint(der))
	}
	c, err := x509.ParseCertificate(f.Chain[0])
	if err != nil {
		r.Error = joinErrors(r.Error, fmt.Sprintf("certificate does not parse: %v", err))
		return r
	}
	nb, na := c.NotBefore.UTC(), c.NotAfter.UTC()
	r.Subject = c.Subject.String()
	r.Issuer = c.Issuer.String()
	r.CommonName = c.Subject.CommonName
	r.IssuerCommonName = c.Issuer.CommonName
	r.Serial = hex.EncodeToString(c.SerialNumber.Bytes())
	r.NotBefore, r.NotAfter = &nb, &na
	r.SignatureAlgorithm = c.SignatureAlgorithm.String()
	r.IsCA = c.IsCA
	r.SANs = SANs(c)
	r.KeyAlgorithm, r.KeyBits = PublicKeyInfo(c.PublicKey)
	return r
}

func joinErrors(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// SANs lists a certificate's subject alternative names: DNS names, IP
// addresses, e-mail addresses and URIs, in that order.
func SANs(c *x509.Certificate) []string {
	var s []string
	s = append(s, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		s = append(s, ip.String())
	}
	s = append(s, c.EmailAddresses...)
	for _, u := range c.URIs {
		s = append(s, u.String())
	}
	return s
}

// PublicKeyInfo names a public key's algorithm and size in bits.
func PublicKeyInfo(pub any) (string, int) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RSA", k.N.BitLen()
	case *ecdsa.PublicKey:
		return "ECDSA", k.Curve.Params().BitSize
	case ed25519.PublicKey:
		return "Ed25519", 256
	case *dsa.PublicKey:
		return "DSA", k.P.BitLen()
	default:
		return "unknown", 0
	}
}

// PrivateKeyInfo describes a private key (from x509.ParsePKCS8PrivateKey
// and friends) by its public half.
func PrivateKeyInfo(priv any) *KeyInfo {
	// crypto.PublicKey, not any: the method sets of *rsa.PrivateKey,
	// *ecdsa.PrivateKey and ed25519.PrivateKey name that type.
	type publicKeyer interface{ Public() crypto.PublicKey }
	var alg string
	var bits int
	switch k := priv.(type) {
	case *dsa.PrivateKey:
		alg, bits = PublicKeyInfo(&k.PublicKey)
	case publicKeyer:
		alg, bits = PublicKeyInfo(k.Public())
	default:
		alg = "unknown"
	}
	return &KeyInfo{Algorithm: alg, Bits: bits}
}
