package files

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"github.com/smallstep/pkcs7"

	"github.com/emsign/bot/protocol"
)

// ErrNotCertificate says that data holds nothing this package reads. The
// walker stays silent about such files unless their name promises a
// certificate (see certExtensions).
var ErrNotCertificate = errors.New("no certificate found: not PEM, DER, PKCS#7, PKCS#12 or a Java keystore")

// Entry is one certificate of a file, or a problem with the file or one of
// its entries.
type Entry struct {
	// Name is the location entry: the index of the certificate in the file
	// ("0", "1", ...) or a keystore alias; "" is the file itself, used for
	// problems with the whole file.
	Name string
	// Format is one of the protocol.Format* constants.
	Format string
	// Chain is DER, the certificate first, then the certificates stored
	// with it as its chain. Empty for a problem.
	Chain [][]byte
	// Key describes the private key stored with the certificate. Bits is 0
	// when the key exists but no password opened it.
	Key *protocol.KeyInfo
	// Err is a problem, e.g. "no password fits". An entry may carry both a
	// certificate and a problem.
	Err string
}

// kind is what the first bytes of a file say it may be.
type kind int

const (
	kindBinary kind = iota // nothing we read: skipped unless its name says otherwise
	kindText               // may hold PEM anywhere
	kindDER                // an ASN.1 SEQUENCE: certificate, PKCS#7, PKCS#12 or a key
	kindJKS
	kindJCEKS
)

// Keystore magics: JKS (sun.security.provider.JavaKeyStore) and JCEKS
// (com.sun.crypto.provider.JceKeyStore), big-endian at offset 0.
const (
	magicJKS   = "\xfe\xed\xfe\xed"
	magicJCEKS = "\xce\xce\xce\xce"
)

// sniffLen is how much of a file sniff looks at; headLen is how much the
// walker reads at first, which costs one read like sniffLen and holds most
// certificate files whole.
const (
	sniffLen = 64
	headLen  = 8 << 10
)

// sniff classifies a file by its first bytes, so that the walker reads in
// full only files that may hold certificates.
func sniff(head []byte) kind {
	if len(head) > sniffLen {
		head = head[:sniffLen]
	}
	switch {
	case bytes.HasPrefix(head, []byte(magicJKS)):
		return kindJKS
	case bytes.HasPrefix(head, []byte(magicJCEKS)):
		return kindJCEKS
	case len(head) >= 2 && head[0] == 0x30 && (head[1] <= 0x84):
		// SEQUENCE with a short, long (up to 4 length bytes) or indefinite
		// length; text starting with "0" is caught here too and falls
		// through to the PEM search in Parse.
		return kindDER
	case bytes.IndexByte(head, 0) < 0:
		return kindText
	default:
		return kindBinary
	}
}

// looksLikeKeystore reports whether head is a JKS, JCEKS or PKCS#12 file.
func looksLikeKeystore(head []byte) bool {
	k := sniff(head)
	return k == kindJKS || k == kindJCEKS || (k == kindDER && isPKCS12(head))
}

// looksLikeCertificates reports whether head is a strong sign of a
// certificate file, for files too large to read.
func looksLikeCertificates(head []byte) bool {
	return looksLikeKeystore(head) || bytes.Contains(head, []byte("-----BEGIN "))
}

// hasCertExtension reports whether a file's name promises a certificate:
// such a file that holds nothing readable is reported, any other is skipped
// in silence.
func hasCertExtension(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".crt", ".cer", ".pem", ".der", ".p7b", ".p7c":
		return true
	}
	return hasKeystoreExtension(path)
}

// hasKeystoreExtension reports whether a file's name promises a keystore
// (what jks targets look for).
func hasKeystoreExtension(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".p12", ".pfx", ".jks", ".jceks", ".keystore", ".truststore":
		return true
	}
	return false
}

// Parse reads every certificate data holds, in any format this package
// knows. passwords are tried in order on keystores and encrypted keys, then
// the empty password. It returns ErrNotCertificate (possibly wrapped, with
// what was seen) when data holds nothing it reads; problems with a file it
// did recognise are entries with Err set.
func Parse(data []byte, passwords []protocol.Secret) ([]Entry, error) {
	pws := candidates(passwords)
	switch sniff(data) {
	case kindJKS:
		return parseJKS(data, pws), nil
	case kindJCEKS:
		return parseJCEKS(data, pws), nil
	case kindDER:
		if entries, ok := parseDER(data, pws); ok {
			return entries, nil
		}
	}
	// PEM may follow any text, so everything else is searched for it.
	return parsePEM(data, pws)
}

// ParseKeystore reads only keystores: JKS, JCEKS and PKCS#12 (jks targets).
func ParseKeystore(data []byte, passwords []protocol.Secret) ([]Entry, error) {
	pws := candidates(passwords)
	switch sniff(data) {
	case kindJKS:
		return parseJKS(data, pws), nil
	case kindJCEKS:
		return parseJCEKS(data, pws), nil
	case kindDER:
		if isPKCS12(data) {
			return parsePKCS12(data, pws), nil
		}
	}
	return nil, ErrNotCertificate
}

// candidates lists the passwords to try: those given, then the empty one.
func candidates(passwords []protocol.Secret) []string {
	out := make([]string, 0, len(passwords)+1)
	for _, p := range passwords {
		if !p.IsZero() {
			out = append(out, p.Reveal())
		}
	}
	return append(out, "")
}

// parseDER reads a binary ASN.1 file: a certificate, PKCS#12, PKCS#7, or a
// bare private key (recognised, nothing to report). ok is false when it is
// none of these.
func parseDER(data []byte, pws []string) (entries []Entry, ok bool) {
	if isPKCS12(data) {
		return parsePKCS12(data, pws), true
	}
	// Some tools leave a newline or padding after the certificate: take the
	// first element and let the rest be.
	var elem asn1.RawValue
	if _, err := asn1.Unmarshal(data, &elem); err == nil {
		if _, err := x509.ParseCertificate(elem.FullBytes); err == nil || isCertificateShape(elem.FullBytes) {
			// A certificate Go refuses (a negative serial, a duplicate
			// extension) is still reported; its record says why it does not
			// parse.
			return []Entry{{Name: protocol.IndexEntry(0), Format: protocol.FormatDER, Chain: [][]byte{bytes.Clone(elem.FullBytes)}}}, true
		}
		if isPrivateKeyDER(elem.FullBytes) || isRequestOrCRL(elem.FullBytes) {
			return nil, true
		}
	}
	if certs, err := parsePKCS7(data); err == nil && len(certs) > 0 {
		return pkcs7Entries(certs, 0), true
	}
	return nil, false
}

// isPKCS12 reports whether data starts as a PFX: SEQUENCE { INTEGER 3, ...}.
// The outer length may be indefinite (BER), which is how some tools write it.
func isPKCS12(data []byte) bool {
	if len(data) < 2 || data[0] != 0x30 {
		return false
	}
	hdr := 2
	if l := data[1]; l > 0x80 {
		hdr += int(l & 0x7f)
	}
	return len(data) >= hdr+3 && bytes.Equal(data[hdr:hdr+3], []byte{0x02, 0x01, 0x03})
}

// isCertificateShape reports whether der has the outline of an X.509 v2/v3
// certificate: SEQUENCE { tbsCertificate SEQUENCE { [0] version, ... },
// AlgorithmIdentifier, BIT STRING }. The [0] version sets it apart from CRLs
// and CSRs, which have the same outer shape.
func isCertificateShape(der []byte) bool {
	var cert struct {
		TBS       asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}
	if rest, err := asn1.Unmarshal(der, &cert); err != nil || len(rest) > 0 {
		return false
	}
	var version asn1.RawValue
	_, err := asn1.Unmarshal(cert.TBS.Bytes, &version)
	return err == nil && cert.TBS.Tag == asn1.TagSequence && version.Class == asn1.ClassContextSpecific && version.Tag == 0
}

// isRequestOrCRL reports a DER CSR or CRL: readable, but no certificate.
func isRequestOrCRL(der []byte) bool {
	if _, err := x509.ParseCertificateRequest(der); err == nil {
		return true
	}
	_, err := x509.ParseRevocationList(der)
	return err == nil
}

func isPrivateKeyDER(der []byte) bool {
	if _, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return true
	}
	if _, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return true
	}
	_, err := x509.ParseECPrivateKey(der)
	return err == nil
}

// pkcs7MaxDepth is the deepest nesting parsePKCS7 hands to smallstep/pkcs7.
const pkcs7MaxDepth = 64

// parsePKCS7 returns the certificates of a PKCS#7 / CMS SignedData (the
// certificates-only .p7b form, DER or BER).
func parsePKCS7(der []byte) (certs []*x509.Certificate, err error) {
	// The library parses untrusted input; a panic in it must not take the
	// bot down.
	defer func() {
		if r := recover(); r != nil {
			certs, err = nil, fmt.Errorf("pkcs7: %v", r)
		}
	}()
	// smallstep/pkcs7 makes BER into DER recursively, with no depth limit:
	// a few MiB of nested indefinite lengths overflow the goroutine stack,
	// a fatal error no recover catches. Certificates in a SignedData are
	// some 20 levels deep.
	if _, err := checkBERBounds(der, pkcs7MaxDepth, len(der), math.MaxInt); err != nil {
		return nil, err
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, err
	}
	return p7.Certificates, nil
}

// pkcs7Entries makes one entry per certificate, numbered from first.
func pkcs7Entries(certs []*x509.Certificate, first int) []Entry {
	out := make([]Entry, 0, len(certs))
	for i, c := range certs {
		out = append(out, Entry{Name: protocol.IndexEntry(first + i), Format: protocol.FormatPKCS7, Chain: [][]byte{bytes.Clone(c.Raw)}})
	}
	return out
}
