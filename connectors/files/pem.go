package files

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/emsign/bot/protocol"
)

const (
	pemBegin = "-----BEGIN "
	pemDash  = "-----"
)

// parsePEM reads every PEM block of data, whatever text lies between the
// blocks. Each certificate is its own entry, numbered in file order
// (certificates inside a PKCS7 block continue the numbering). A block that
// is cut off or whose base64 is bad is a problem naming its line, and the
// good blocks of the file are still reported. Private keys are matched to
// certificates and never output.
//
// It returns ErrNotCertificate when data holds no well-formed block of a
// kind it reads: a text that merely mentions PEM is no certificate file.
func parsePEM(data []byte, pws []string) ([]Entry, error) {
	starts := blockStarts(data)
	if len(starts) == 0 {
		return nil, ErrNotCertificate
	}
	var (
		entries    []*Entry
		certs      []*x509.Certificate // parallel to entries; nil when the DER does not parse
		keys       []foundKey
		problems   []string
		wellFound  bool // a well-formed block of a kind this package reads
		recognised bool // a well-formed block of another kind
	)
	addCert := func(der []byte, c *x509.Certificate, format string) {
		entries = append(entries, &Entry{Name: protocol.IndexEntry(len(entries)), Format: format, Chain: [][]byte{der}})
		certs = append(certs, c)
	}
	for i, start := range starts {
		end := len(data)
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		seg := data[start:end]
		typ := blockType(seg)
		if !readBlockType(typ) {
			// A well-formed block of another kind (a public key, a CSR, a
			// CRL) makes this a PEM file, only not one with certificates.
			if b, _ := pem.Decode(seg); b != nil {
				recognised = true
			}
			continue
		}
		line := 1 + bytes.Count(data[:start], []byte("\n"))
		b, _ := pem.Decode(seg)
		if b == nil || b.Type != typ {
			if bytes.Contains(seg, []byte("-----END "+typ+pemDash)) {
				problems = append(problems, fmt.Sprintf("PEM block %q at line %d: bad base64 or headers", typ, line))
			} else {
				problems = append(problems, fmt.Sprintf("PEM block %q at line %d is truncated: BEGIN without END", typ, line))
			}
			continue
		}
		wellFound = true
		if len(b.Bytes) == 0 {
			problems = append(problems, fmt.Sprintf("PEM block %q at line %d is empty", typ, line))
			continue
		}
		switch typ {
		case "CERTIFICATE", "X509 CERTIFICATE", "X.509 CERTIFICATE":
			// A certificate Go cannot parse is still reported: the record
			// gets its fingerprint and says why it does not parse.
			c, _ := x509.ParseCertificate(b.Bytes)
			addCert(b.Bytes, c, protocol.FormatPEM)
		case "TRUSTED CERTIFICATE":
			// openssl's trusted form: the certificate, then its trust
			// settings (X509_AUX). The certificate is the first element.
			var elem asn1.RawValue
			if _, err := asn1.Unmarshal(b.Bytes, &elem); err != nil {
				problems = append(problems, fmt.Sprintf("PEM block %q at line %d: %v", typ, line, err))
				continue
			}
			if len(elem.FullBytes) == 0 {
				problems = append(problems, fmt.Sprintf("PEM block %q at line %d holds no certificate", typ, line))
				continue
			}
			der := bytes.Clone(elem.FullBytes)
			c, _ := x509.ParseCertificate(der)
			addCert(der, c, protocol.FormatPEM)
		case "PKCS7", "CMS":
			p7, err := parsePKCS7(b.Bytes)
			if err != nil {
				problems = append(problems, fmt.Sprintf("PEM block %q at line %d: %v", typ, line, err))
				continue
			}
			for _, c := range p7 {
				addCert(bytes.Clone(c.Raw), c, protocol.FormatPKCS7)
			}
		default: // private keys
			k, err := parsePEMKey(b, pws)
			if err != nil {
				problems = append(problems, fmt.Sprintf("PEM block %q at line %d: %v", typ, line, err))
				continue
			}
			keys = append(keys, k)
		}
	}
	if !wellFound {
		if recognised && len(problems) == 0 {
			return nil, nil
		}
		if len(problems) > 0 {
			return nil, fmt.Errorf("%w; %s", ErrNotCertificate, strings.Join(problems, "; "))
		}
		return nil, ErrNotCertificate
	}
	attachKeys(certs, entries, keys)
	out := make([]Entry, 0, len(entries)+1)
	for _, e := range entries {
		out = append(out, *e)
	}
	if len(problems) > 0 {
		out = append(out, Entry{Format: protocol.FormatPEM, Err: strings.Join(problems, "; ")})
	}
	return out, nil
}

// readBlockType reports whether parsePEM reads blocks of this type. Other
// blocks (CSRs, CRLs, parameters, PGP armour) are passed over, broken or
// not.
func readBlockType(t string) bool {
	switch t {
	case "CERTIFICATE", "X509 CERTIFICATE", "X.509 CERTIFICATE", "TRUSTED CERTIFICATE", "PKCS7", "CMS",
		"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
		return true
	}
	return false
}

// blockStarts returns the offsets of the BEGIN lines of data. Like
// encoding/pem, it takes BEGIN only at the start of a line.
func blockStarts(data []byte) []int {
	var out []int
	for off := 0; off < len(data); {
		i := bytes.Index(data[off:], []byte(pemBegin))
		if i < 0 {
			break
		}
		at := off + i
		if at == 0 || data[at-1] == '\n' {
			out = append(out, at)
		}
		off = at + len(pemBegin)
	}
	return out
}

// blockType reads TYPE from a segment starting "-----BEGIN TYPE-----".
func blockType(seg []byte) string {
	line := seg[len(pemBegin):]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t\r")
	t, ok := bytes.CutSuffix(line, []byte(pemDash))
	if !ok {
		return ""
	}
	return string(t)
}
