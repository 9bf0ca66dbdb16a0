package files

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	gopkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/emsign/bot/protocol"
)

// parsePKCS12 reads a PKCS#12 (PFX) file with go-pkcs12, which handles
// PBES2/AES and the legacy RC2/3DES ciphers, SHA-1 and SHA-2 MACs, no MAC,
// and empty passwords. It has no single call for every layout, so three are
// tried in turn (see decodePKCS12). The passwords are tried in order; the
// file is only reported as a whole when none fits. go-pkcs12 reads DER
// only: a BER-encoded file is made DER first (see berPKCS12).
func parsePKCS12(data []byte, pws []string) []Entry {
	entries, structural := decodePKCS12All(pws, func(string) ([]byte, error) { return data, nil })
	ber := false
	if structural != nil {
		if b, err := newBERPKCS12(data); err != nil {
			if len(data) > 1 && data[1] == 0x80 {
				return pkcs12Problem("BER-encoded PKCS#12 does not parse: "+err.Error(), nil)
			}
		} else if b.wasBER {
			ber = true
			entries, structural = decodePKCS12All(pws, b.forPassword)
		}
	}
	if entries != nil {
		return entries
	}
	prefix := ""
	if ber {
		prefix = "BER-encoded "
	}
	if structural == nil {
		return pkcs12Problem("no password fits (PKCS#12 MAC or decryption failed with every password given)", nil)
	}
	var ni gopkcs12.NotImplementedError
	if errors.As(structural, &ni) || errors.Is(structural, errPKCS12Layout) {
		return pkcs12Problem(prefix+"PKCS#12 layout not supported yet: ", structural)
	}
	return pkcs12Problem(prefix+"PKCS#12 does not parse: ", structural)
}

func pkcs12Problem(msg string, err error) []Entry {
	if err != nil {
		msg += err.Error()
	}
	return []Entry{{Format: protocol.FormatPKCS12, Err: msg}}
}

// decodePKCS12All tries the passwords in turn on the file fileFor gives for
// each (the file itself, or the BER file made DER for that password). It
// returns the entries of the first that fits, or the error that ended the
// attempt when it is not about the password (another password will not
// change that), or neither when no password fits.
func decodePKCS12All(pws []string, fileFor func(pw string) ([]byte, error)) ([]Entry, error) {
	for _, pw := range pws {
		data, err := fileFor(pw)
		if errors.Is(err, errPKCS12MAC) {
			continue
		}
		if err != nil {
			return nil, err
		}
		entries, err := decodePKCS12(data, pw)
		if err == nil {
			if entries == nil {
				entries = []Entry{}
			}
			return entries, nil
		}
		if !isPKCS12PasswordError(err) {
			return nil, err
		}
	}
	return nil, nil
}

// errPKCS12Layout marks a file that go-pkcs12 read but none of its decoders
// accepts as a whole.
var errPKCS12Layout = errors.New("none of go-pkcs12's decoders accepts this layout")

// isPKCS12PasswordError reports whether err means "wrong password". With no
// MAC, go-pkcs12 accepts only the empty password and says "no MAC in data"
// for any other, which is a wrong password too.
func isPKCS12PasswordError(err error) bool {
	return errors.Is(err, gopkcs12.ErrIncorrectPassword) || errors.Is(err, gopkcs12.ErrDecryption) ||
		err.Error() == "pkcs12: no MAC in data"
}

// decodePKCS12 reads the file with one password. Each of go-pkcs12's
// decoders accepts a subset of the layouts found in the field:
//
//   - ToPEM: exactly two safes (openssl's and Java's key stores), any number
//     of keys, and the bag attributes, so friendlyName aliases survive; but
//     it refuses unknown bag attributes such as Java's trusted-certificate
//     marker.
//   - DecodeTrustStore: Java trust stores (certificates only, each marked
//     trusted); no aliases.
//   - DecodeChain: one key and any certificates, in one or two safes; no
//     aliases.
//
// A password error from the first decoder ends the attempt: all three
// check the MAC first.
func decodePKCS12(data []byte, pw string) (entries []Entry, err error) {
	// The library parses untrusted input: a panic in it must not end the scan.
	defer func() {
		if r := recover(); r != nil {
			entries, err = nil, fmt.Errorf("pkcs12: %v", r)
		}
	}()
	blocks, err := gopkcs12.ToPEM(data, pw) //nolint:staticcheck // the only go-pkcs12 call that keeps friendlyName; we re-read its keys ourselves.
	if err == nil {
		return pkcs12FromBlocks(blocks)
	}
	if isPKCS12PasswordError(err) {
		return nil, err
	}
	if certs, err2 := gopkcs12.DecodeTrustStore(data, pw); err2 == nil {
		return pkcs12Entries(certs, nil, nil), nil
	}
	priv, leaf, cas, err3 := gopkcs12.DecodeChain(data, pw)
	if err3 != nil {
		if isPKCS12PasswordError(err3) {
			return nil, err3
		}
		return nil, fmt.Errorf("%w: %v", errPKCS12Layout, err3)
	}
	return pkcs12Entries(append([]*x509.Certificate{leaf}, cas...), nil, []foundKey{describeKey(priv)}), nil
}

// pkcs12FromBlocks turns ToPEM's output into entries. ToPEM labels RSA and
// EC keys "PRIVATE KEY" but encodes them as PKCS#1 and SEC 1.
func pkcs12FromBlocks(blocks []*pem.Block) ([]Entry, error) {
	var certs []*x509.Certificate
	var names []string
	var keys []foundKey
	for _, b := range blocks {
		switch b.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate %d: %w", len(certs), err)
			}
			certs = append(certs, c)
			names = append(names, b.Headers["friendlyName"])
		case "PRIVATE KEY":
			if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
				keys = append(keys, describeKey(k))
			} else if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
				keys = append(keys, describeKey(k))
			}
		}
	}
	return pkcs12Entries(certs, names, keys), nil
}

// pkcs12Entries makes one entry per certificate. The entry is the
// certificate's friendlyName when it has one that no other certificate of
// the file shares, else its index. A certificate with its key gets the
// chain found in the file behind it.
func pkcs12Entries(certs []*x509.Certificate, names []string, keys []foundKey) []Entry {
	count := map[string]int{}
	for _, n := range names {
		count[n]++
	}
	entries := make([]*Entry, len(certs))
	for i, c := range certs {
		name := protocol.IndexEntry(i)
		if i < len(names) && names[i] != "" && count[names[i]] == 1 {
			name = names[i]
		}
		entries[i] = &Entry{Name: name, Format: protocol.FormatPKCS12, Chain: [][]byte{bytes.Clone(c.Raw)}}
	}
	attachKeys(certs, entries, keys)
	out := make([]Entry, len(entries))
	for i, e := range entries {
		if e.Key != nil {
			e.Chain = buildChain(certs[i], certs)
		}
		out[i] = *e
	}
	return out
}
