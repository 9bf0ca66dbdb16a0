package keystore

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	gopkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/protocol"
)

// pkcs12Format reads PKCS#12 files with go-pkcs12 and rewrites them whole:
// one key, its leaf and the chain, under the store password, the key's
// friendlyName kept (encodePKCS12). The encoding is the modern one (PBES2
// AES-256-CBC with PBKDF2, HMAC-SHA-256 MAC), which Java 8u301+ and
// OpenSSL 1.1.1+ read, whatever the old file used: go-pkcs12 does not say
// whether it was the legacy RC2/3DES one, so a consumer that needs that
// (Windows Server 2016) is not served.
type pkcs12Format struct{}

func (pkcs12Format) name() string { return "PKCS#12" }

func (pkcs12Format) open(data []byte, pw string) (st store, err error) {
	// go-pkcs12 parses the file: a panic in it must refuse, not crash the bot.
	defer func() {
		if r := recover(); r != nil {
			st, err = nil, fmt.Errorf("PKCS#12 does not parse: %v", r)
		}
	}()
	if len(data) == 0 || data[0] != 0x30 {
		return nil, errors.New("not a PKCS#12 file (no DER SEQUENCE at the start)")
	}
	_, leaf, cas, err := gopkcs12.DecodeChain(data, pw)
	switch {
	case errors.Is(err, gopkcs12.ErrIncorrectPassword), errors.Is(err, gopkcs12.ErrDecryption):
		return nil, fmt.Errorf("%w: the PKCS#12 MAC or decryption fails", errWrongPassword)
	case err != nil && err.Error() == "pkcs12: no MAC in data" && pw != "":
		return nil, fmt.Errorf("%w: the file has no MAC and takes only the empty password", errWrongPassword)
	case err != nil && strings.Contains(err.Error(), "expected exactly one key bag"):
		return nil, errors.New("the PKCS#12 file holds more than one private key (or none): the bot rewrites files with exactly one")
	case err != nil:
		return nil, fmt.Errorf("PKCS#12 does not parse: %w", err)
	}
	return &pkcs12Store{leaf: leaf, cas: cas, name: friendlyName(data, pw, leaf)}, nil
}

// friendlyName is the leaf's friendlyName (its alias to Java), "" when the
// file gives none or go-pkcs12's ToPEM cannot read the layout.
func friendlyName(data []byte, pw string, leaf *x509.Certificate) string {
	blocks, err := gopkcs12.ToPEM(data, pw) //nolint:staticcheck // the only go-pkcs12 call that returns friendlyName.
	if err != nil {
		return ""
	}
	for _, b := range blocks {
		if b.Type == "CERTIFICATE" && string(b.Bytes) == string(leaf.Raw) {
			return b.Headers["friendlyName"]
		}
	}
	return ""
}

type pkcs12Store struct {
	leaf *x509.Certificate
	cas  []*x509.Certificate
	name string
}

// pick checks alias against the key's friendlyName, when both are known.
func (s *pkcs12Store) pick(alias string) (string, *x509.Certificate, error) {
	if alias != "" && s.name != "" && !strings.EqualFold(alias, s.name) {
		return "", nil, fmt.Errorf("alias %q is not in the PKCS#12 file: its key is %q", alias, s.name)
	}
	if s.name != "" {
		return s.name, s.leaf, nil
	}
	return alias, s.leaf, nil
}

// replace encodes a new file: the new key, leaf and chain under the same
// password. One password protects the whole file, so there is no separate
// key password to keep.
func (s *pkcs12Store) replace(_ string, m deploy.Material, pw string, _ []protocol.Secret, _ time.Time) ([]byte, []string, error) {
	data, err := encodePKCS12(m.Key, m.Certificate, m.Chain, pw, s.name)
	if err != nil {
		return nil, nil, fmt.Errorf("encode: %w", err)
	}
	kept := "no friendlyName, as before"
	if s.name != "" {
		kept = fmt.Sprintf("friendlyName %q kept", s.name)
	}
	notes := []string{fmt.Sprintf("the file is rewritten whole (key, leaf, %d chain certificates; PBES2/AES-256, HMAC-SHA-256; %s)", len(m.Chain), kept)}
	if len(s.cas) > 0 && len(m.Chain) == 0 {
		notes = append(notes, fmt.Sprintf("the old file had %d CA certificates and the new certificate came with no chain", len(s.cas)))
	}
	return data, notes, nil
}
