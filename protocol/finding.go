package protocol

import "time"

// Formats a certificate was found in.
const (
	FormatPEM       = "pem"
	FormatDER       = "der"
	FormatPKCS7     = "pkcs7"
	FormatPKCS12    = "pkcs12"
	FormatJKS       = "jks"
	FormatJCEKS     = "jceks"
	FormatTLS       = "tls"
	FormatCertStore = "certstore"
	FormatPKCS11    = "pkcs11"
	FormatLDAP      = "ldap"
)

// Finding is one certificate at one location, or a problem at a location.
// Connectors stream findings; a scan is never held whole in memory. Its JSON
// form is what the bot sends the control plane (DER as base64).
type Finding struct {
	Location Location `json:"location"`
	// Source is the kind of target that found it (tls, file, jks, ...).
	Source string `json:"source"`
	// Format is how the certificate was stored or served (pem, pkcs12, ...).
	Format string `json:"format,omitempty"`
	// Chain is DER, the certificate first, then the certificates served or
	// stored with it, in the order found.
	Chain [][]byte `json:"chain,omitempty"`
	// Key describes a private key found with the certificate; the key
	// itself never leaves the connector.
	Key *KeyInfo `json:"key,omitempty"`
	// TLS describes the session, for endpoints.
	TLS *TLSInfo `json:"tls,omitempty"`
	// Error is a per-location problem (no password fits, handshake failure,
	// truncated PEM). A finding may carry both a certificate and an error,
	// e.g. a keystore whose certificates were read but whose keys were not.
	Error string `json:"error,omitempty"`
	// Attributes describe the place beyond its identity: the virtual
	// servers that serve an F5 certificate, an ACM certificate's status, a
	// Cloudflare pack's hosts. They are not part of the location, so a
	// change in them does not make a new location.
	Attributes map[string]string `json:"attributes,omitempty"`
	// Machine is the host a certificate store belongs to (B4.4).
	Machine *MachineInfo `json:"machine,omitempty"`
	SeenAt  time.Time    `json:"seen_at"`
}

// MachineInfo names the machine a local store was read on.
type MachineInfo struct {
	Hostname string   `json:"hostname"`
	IPs      []string `json:"ips,omitempty"`
}

// KeyInfo describes a key without revealing it: a private key found with a
// certificate, or a key object of its own (an HSM's keys, B4.2).
type KeyInfo struct {
	Algorithm string `json:"algorithm"`
	Bits      int    `json:"bits,omitempty"`
	// Class is private, public or secret-key (RFC 7512's object types); ""
	// means a private key found with a certificate.
	Class string `json:"class,omitempty"`
	Label string `json:"label,omitempty"`
	// ID is the key's identifier in its store (PKCS#11 CKA_ID), hex.
	ID string `json:"id,omitempty"`
	// Extractable is false for keys that cannot leave their store (HSMs,
	// non-exportable Windows keys); nil when unknown.
	Extractable *bool `json:"extractable,omitempty"`
	// Sensitive is true for keys whose value the store never reveals.
	Sensitive *bool `json:"sensitive,omitempty"`
	// Usage lists what the key may do: sign, verify, encrypt, decrypt,
	// wrap, unwrap, derive.
	Usage []string `json:"usage,omitempty"`
}

// Private reports whether the key is a private key (as opposed to a public
// or secret key object).
func (k *KeyInfo) Private() bool {
	return k != nil && (k.Class == "" || k.Class == KeyClassPrivate)
}

// Key classes.
const (
	KeyClassPrivate = "private"
	KeyClassPublic  = "public"
	KeyClassSecret  = "secret-key"
)

// TLSInfo describes a TLS session an endpoint accepted.
type TLSInfo struct {
	Version     string `json:"version"`
	CipherSuite string `json:"cipher_suite"`
	// Group is the key-exchange group, e.g. X25519 or X25519MLKEM768.
	Group string `json:"group,omitempty"`
	// PostQuantum is true when X25519MLKEM768 was negotiated.
	PostQuantum bool   `json:"pq_key_exchange"`
	SNI         string `json:"sni,omitempty"`
	ALPN        string `json:"alpn,omitempty"`
}
