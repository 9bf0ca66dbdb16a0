package files

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"

	"github.com/youmark/pkcs8"

	"github.com/emsign/bot/protocol"
)

// foundKey is a private key seen in a file. Only what describes it is
// kept once the file is parsed; the key itself never leaves the parser.
type foundKey struct {
	// pub is the public half, to match the key with its certificate; nil
	// when the key could not be opened.
	pub crypto.PublicKey
	// info describes the key; Bits is 0 when it could not be opened.
	info *protocol.KeyInfo
}

// describeKey describes an opened private key.
func describeKey(priv any) foundKey {
	type publicKeyer interface{ Public() crypto.PublicKey }
	k := foundKey{info: protocol.PrivateKeyInfo(priv)}
	if p, ok := priv.(publicKeyer); ok {
		k.pub = p.Public()
	}
	return k
}

// parsePEMKey reads a private key block, decrypting it with the first
// password that fits. A key no password opens is still reported (with an
// algorithm when the block type names one), so that its certificate shows
// that a key lives beside it.
func parsePEMKey(b *pem.Block, pws []string) (foundKey, error) {
	hint := map[string]string{"RSA PRIVATE KEY": "RSA", "EC PRIVATE KEY": "ECDSA"}[b.Type]
	der := b.Bytes
	//nolint:staticcheck // legacy PEM encryption (Proc-Type: 4,ENCRYPTED) is still written by openssl -traditional; we only read it.
	if x509.IsEncryptedPEMBlock(b) {
		opened := false
		for _, pw := range pws {
			//nolint:staticcheck // see above.
			if d, err := x509.DecryptPEMBlock(b, []byte(pw)); err == nil {
				der, opened = d, true
				break
			}
		}
		if !opened {
			return foundKey{info: &protocol.KeyInfo{Algorithm: hint}}, nil
		}
	}
	var priv any
	var err error
	switch b.Type {
	case "PRIVATE KEY":
		priv, err = x509.ParsePKCS8PrivateKey(der)
	case "RSA PRIVATE KEY":
		priv, err = x509.ParsePKCS1PrivateKey(der)
	case "EC PRIVATE KEY":
		priv, err = x509.ParseECPrivateKey(der)
	case "ENCRYPTED PRIVATE KEY":
		for _, pw := range pws {
			if priv, err = decryptPKCS8(der, pw); err == nil {
				break
			}
		}
		if err != nil {
			return foundKey{info: &protocol.KeyInfo{}}, nil
		}
	default:
		return foundKey{}, fmt.Errorf("not a private key block: %s", b.Type)
	}
	if err != nil {
		return foundKey{}, err
	}
	return describeKey(priv), nil
}

// maxPBKDF2Iterations bounds the work one password attempt on an encrypted
// key may cost: openssl writes 2048, the strongest settings in use about
// 600,000. The count comes from the file, and a file may lie.
const maxPBKDF2Iterations = 1 << 20

// pbes2 is the outline of an encrypted PKCS#8 key (RFC 8018), read only to
// check its key-derivation settings before the library runs them.
type pbes2 struct {
	Algorithm struct {
		OID    asn1.ObjectIdentifier
		Params struct {
			KDF struct {
				OID    asn1.ObjectIdentifier
				Params struct {
					Salt       []byte
					Iterations int
				}
			}
			Cipher asn1.RawValue
		}
	}
	Data []byte
}

// checkPKCS8KDF accepts PBES2 with PBKDF2 and a sane iteration count. It
// refuses scrypt, whose cost parameters from a hostile file could exhaust
// memory, and anything it cannot read.
func checkPKCS8KDF(der []byte) error {
	var p pbes2
	if _, err := asn1.Unmarshal(der, &p); err != nil {
		return fmt.Errorf("encrypted key: %w", err)
	}
	if !p.Algorithm.OID.Equal(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}) ||
		!p.Algorithm.Params.KDF.OID.Equal(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}) {
		return fmt.Errorf("encrypted key: only PBES2 with PBKDF2 is opened")
	}
	if n := p.Algorithm.Params.KDF.Params.Iterations; n < 1 || n > maxPBKDF2Iterations {
		return fmt.Errorf("encrypted key: %d PBKDF2 iterations, more than the %d allowed", n, maxPBKDF2Iterations)
	}
	return nil
}

// decryptPKCS8 opens an encrypted PKCS#8 key (PBES2 with PBKDF2, as openssl
// pkcs8 -topk8 writes it).
func decryptPKCS8(der []byte, pw string) (priv any, err error) {
	if err := checkPKCS8KDF(der); err != nil {
		return nil, err
	}
	// The library parses untrusted input: a panic in it must not end the
	// scan.
	defer func() {
		if r := recover(); r != nil {
			priv, err = nil, fmt.Errorf("pkcs8: %v", r)
		}
	}()
	return pkcs8.ParsePKCS8PrivateKey(der, []byte(pw))
}

// publicKeyEqual reports whether a certificate's public key is pub.
func publicKeyEqual(c *x509.Certificate, pub crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := c.PublicKey.(equaler)
	return ok && pub != nil && e.Equal(pub)
}

// attachKeys gives each certificate the key that matches its public key.
// Keys that could not be opened cannot be matched: when exactly one
// end-entity certificate is left without a key, such a key is taken to be
// its own (the usual cert-plus-encrypted-key file) and reported with the
// certificate's algorithm and an unknown size.
func attachKeys(certs []*x509.Certificate, entries []*Entry, keys []foundKey) {
	var closed int
	for _, k := range keys {
		if k.pub == nil {
			closed++
			continue
		}
		for i, c := range certs {
			if c != nil && entries[i].Key == nil && publicKeyEqual(c, k.pub) {
				entries[i].Key = k.info
			}
		}
	}
	if closed == 0 {
		return
	}
	lone := -1
	for i, c := range certs {
		if c == nil || c.IsCA || entries[i].Key != nil {
			continue
		}
		if lone >= 0 {
			return
		}
		lone = i
	}
	if lone >= 0 {
		alg, _ := protocol.PublicKeyInfo(certs[lone].PublicKey)
		entries[lone].Key = &protocol.KeyInfo{Algorithm: alg}
	}
}

// buildChain orders the certificates of a file behind leaf: each next one
// is the issuer of the one before, by name and signature. It stops at a
// self-signed certificate or when no issuer is found.
func buildChain(leaf *x509.Certificate, pool []*x509.Certificate) [][]byte {
	chain := [][]byte{bytes.Clone(leaf.Raw)}
	used := map[*x509.Certificate]bool{leaf: true}
	cur := leaf
	for len(chain) < len(pool)+1 {
		if bytes.Equal(cur.RawIssuer, cur.RawSubject) {
			break
		}
		var next *x509.Certificate
		for _, c := range pool {
			if !used[c] && bytes.Equal(c.RawSubject, cur.RawIssuer) && cur.CheckSignatureFrom(c) == nil {
				next = c
				break
			}
		}
		if next == nil {
			break
		}
		used[next] = true
		chain = append(chain, bytes.Clone(next.Raw))
		cur = next
	}
	return chain
}
