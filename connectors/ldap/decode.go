package ldap

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/smallstep/pkcs7"

	"github.com/emsign/bot/protocol"
)

// kind is what an attribute holds.
type kind int

const (
	kindNone kind = iota
	// kindCert is one DER certificate a value (userCertificate,
	// cACertificate).
	kindCert
	// kindPair is an X.509 CertificatePair (crossCertificatePair).
	kindPair
	// kindSMIME is a PKCS#7 SignedData with certificates, or a plain DER
	// certificate (userSMIMECertificate).
	kindSMIME
)

// attrKind names what an attribute holds from its name as the server wrote
// it: the options after ';' (binary) and the case do not matter.
func attrKind(name string) kind {
	base, _, _ := strings.Cut(name, ";")
	switch strings.ToLower(base) {
	case "usercertificate", "cacertificate":
		return kindCert
	case "crosscertificatepair":
		return kindPair
	case "usersmimecertificate":
		return kindSMIME
	}
	return kindNone
}

// certificatePair is X.509's CertificatePair (ITU-T X.509 §11.2.3), whose
// module tags explicitly:
//
//	CertificatePair ::= SEQUENCE {
//	  forward [0] Certificate OPTIONAL,
//	  reverse [1] Certificate OPTIONAL }
type certificatePair struct {
	Forward asn1.RawValue `asn1:"optional,explicit,tag:0"`
	Reverse asn1.RawValue `asn1:"optional,explicit,tag:1"`
}

// decoded is one certificate read from a value, or why the value (or a part
// of it) does not read.
type decoded struct {
	entry  string // the location's Entry: the value's index, and the part
	format string
	der    []byte
	err    error
}

// decodeValue reads value i of an attribute. A single certificate has entry
// "i"; a PKCS#7 value's certificates are "i.0", "i.1", ...; a pair's halves
// are "i.forward" and "i.reverse".
func decodeValue(k kind, i int, v []byte) []decoded {
	idx := strconv.Itoa(i)
	switch k {
	case kindCert:
		return []decoded{readCert(idx, protocol.FormatDER, v)}
	case kindPair:
		var p certificatePair
		rest, err := asn1.Unmarshal(v, &p)
		if err != nil {
			return []decoded{{entry: idx, format: protocol.FormatDER, err: fmt.Errorf("not a certificate pair: %v", err)}}
		}
		if len(rest) > 0 {
			return []decoded{{entry: idx, format: protocol.FormatDER, err: fmt.Errorf("not a certificate pair: %d bytes after it", len(rest))}}
		}
		var out []decoded
		// A RawValue keeps the explicit [0] or [1] wrapper: the certificate
		// is its content.
		if len(p.Forward.FullBytes) > 0 {
			out = append(out, readCert(idx+".forward", protocol.FormatDER, p.Forward.Bytes))
		}
		if len(p.Reverse.FullBytes) > 0 {
			out = append(out, readCert(idx+".reverse", protocol.FormatDER, p.Reverse.Bytes))
		}
		if len(out) == 0 {
			return []decoded{{entry: idx, format: protocol.FormatDER, err: errors.New("certificate pair with neither forward nor reverse certificate")}}
		}
		return out
	case kindSMIME:
		p7, p7err := pkcs7.Parse(v)
		if p7err == nil {
			out := make([]decoded, 0, len(p7.Certificates))
			for j, c := range p7.Certificates {
				out = append(out, decoded{entry: idx + "." + strconv.Itoa(j), format: protocol.FormatPKCS7, der: c.Raw})
			}
			return out
		}
		c, err := x509.ParseCertificate(v)
		if err != nil {
			return []decoded{{entry: idx, format: protocol.FormatPKCS7,
				err: fmt.Errorf("neither PKCS#7 nor an X.509 certificate: pkcs7: %v; %v", p7err, err)}}
		}
		return []decoded{{entry: idx, format: protocol.FormatDER, der: c.Raw}}
	}
	return nil
}

func readCert(entry, format string, der []byte) decoded {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return decoded{entry: entry, format: format, err: fmt.Errorf("not an X.509 certificate: %v", err)}
	}
	return decoded{entry: entry, format: format, der: c.Raw}
}
