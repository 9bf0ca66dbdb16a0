// Package keygen makes the bot's side of a rotation's first half: a new
// software key per the key profile (P3), and the CSR built from the CSR
// template (P1), by default with the subject and SANs of the certificate
// being replaced. Keys are marshalled as PEM in the form the old key file
// used, so the software that read the old file reads the new one.
package keygen

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Algorithm names a key type and size, as a key profile spells it.
type Algorithm string

// The algorithms Generate knows.
const (
	ECDSAP256 Algorithm = "ecdsa-p256"
	ECDSAP384 Algorithm = "ecdsa-p384"
	RSA2048   Algorithm = "rsa-2048"
	RSA3072   Algorithm = "rsa-3072"
	RSA4096   Algorithm = "rsa-4096"
	Ed25519   Algorithm = "ed25519"
)

// Algorithms lists every Algorithm Generate accepts, for validation and
// for the dashboard's choices.
func Algorithms() []Algorithm {
	return []Algorithm{ECDSAP256, ECDSAP384, RSA2048, RSA3072, RSA4096, Ed25519}
}

// Generate makes a new private key. rnd is the entropy source; nil means
// crypto/rand (tests pass nothing else: a key is only as good as its
// randomness).
func Generate(alg Algorithm, rnd io.Reader) (crypto.Signer, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	switch Algorithm(strings.ToLower(string(alg))) {
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rnd)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rnd)
	case RSA2048:
		return rsa.GenerateKey(rnd, 2048)
	case RSA3072:
		return rsa.GenerateKey(rnd, 3072)
	case RSA4096:
		return rsa.GenerateKey(rnd, 4096)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rnd)
		if err != nil {
			return nil, fmt.Errorf("keygen: %w", err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("keygen: key_algorithm %q is not one of %v", alg, Algorithms())
}

// AlgorithmOf names the algorithm of a public or private key, "" when it
// is none Generate makes (an RSA key of 1024 bits, a P-521 key).
func AlgorithmOf(key crypto.PublicKey) Algorithm {
	if s, ok := key.(crypto.Signer); ok {
		key = s.Public()
	}
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ECDSAP256
		case elliptic.P384():
			return ECDSAP384
		}
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048:
			return RSA2048
		case 3072:
			return RSA3072
		case 4096:
			return RSA4096
		}
	case ed25519.PublicKey:
		return Ed25519
	}
	return ""
}

// KeyFormat is how a private key is written in PEM.
type KeyFormat string

// The PEM forms of a private key.
const (
	PKCS8 KeyFormat = "PRIVATE KEY"     // any algorithm; the default
	PKCS1 KeyFormat = "RSA PRIVATE KEY" // RSA only (OpenSSL's traditional form)
	SEC1  KeyFormat = "EC PRIVATE KEY"  // ECDSA only (OpenSSL's traditional form)
)

// ErrNoKey says a PEM text holds no private key block.
var ErrNoKey = errors.New("no private key in the PEM data")

// FormatOf returns the form of the first private key block in pemData (a
// key file, or an HAProxy file holding certificates and the key). An
// encrypted key ("ENCRYPTED PRIVATE KEY", or a traditional block with
// Proc-Type: ENCRYPTED) is reported as an error: this package writes keys
// in the clear, and the server reading an encrypted one needs a
// passphrase the bot does not have.
func FormatOf(pemData []byte) (KeyFormat, error) {
	for rest := pemData; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return "", fmt.Errorf("keygen: %w", ErrNoKey)
		}
		switch b.Type {
		case string(PKCS8), string(PKCS1), string(SEC1):
			if b.Headers["Proc-Type"] != "" {
				return "", errors.New("keygen: the key is encrypted (Proc-Type header); encrypted keys are not supported")
			}
			return KeyFormat(b.Type), nil
		case "ENCRYPTED PRIVATE KEY":
			return "", errors.New("keygen: the key is encrypted (ENCRYPTED PRIVATE KEY); encrypted keys are not supported")
		}
	}
}

// MarshalPEM writes key as one PEM block in the given form ("" is PKCS8).
// PKCS1 takes an RSA key only and SEC1 an ECDSA key only.
func MarshalPEM(key crypto.Signer, format KeyFormat) ([]byte, error) {
	var der []byte
	var err error
	switch format {
	case PKCS8, "":
		format = PKCS8
		der, err = x509.MarshalPKCS8PrivateKey(key)
	case PKCS1:
		k, ok := key.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("keygen: key format %s needs an RSA key, not %s", format, describe(key))
		}
		der = x509.MarshalPKCS1PrivateKey(k)
	case SEC1:
		k, ok := key.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("keygen: key format %s needs an ECDSA key, not %s", format, describe(key))
		}
		der, err = x509.MarshalECPrivateKey(k)
	default:
		return nil, fmt.Errorf("keygen: unknown key format %q", format)
	}
	if err != nil {
		return nil, fmt.Errorf("keygen: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: string(format), Bytes: der}), nil
}

// MarshalLike writes key in the form of the key in oldPEM (the file being
// replaced), so that software reading the old file reads the new one. When
// that form cannot hold the new key (the old key was RSA in PKCS#1 and the
// new one is ECDSA), or oldPEM holds no key, it falls back to PKCS#8, the
// only form every algorithm has. It returns the form used. An encrypted
// old key is an error (see FormatOf).
func MarshalLike(key crypto.Signer, oldPEM []byte) ([]byte, KeyFormat, error) {
	format, err := FormatOf(oldPEM)
	if errors.Is(err, ErrNoKey) {
		format = PKCS8
	} else if err != nil {
		return nil, "", err
	}
	switch {
	case format == PKCS1 && !isRSA(key),
		format == SEC1 && !isECDSA(key):
		format = PKCS8
	}
	out, err := MarshalPEM(key, format)
	if err != nil {
		return nil, "", err
	}
	return out, format, nil
}

// ParsePEM reads the first private key in pemData, in any of the three
// forms. Errors never quote the key.
func ParsePEM(pemData []byte) (crypto.Signer, error) {
	format, err := FormatOf(pemData)
	if err != nil {
		return nil, err
	}
	for rest := pemData; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("keygen: %w", ErrNoKey)
		}
		if b.Type != string(format) {
			continue
		}
		var k any
		switch format {
		case PKCS8:
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case PKCS1:
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case SEC1:
			k, err = x509.ParseECPrivateKey(b.Bytes)
		}
		if err != nil {
			return nil, fmt.Errorf("keygen: parse %s: %w", format, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("keygen: %T is not a signing key", k)
		}
		return s, nil
	}
}

func isRSA(key crypto.Signer) bool   { _, ok := key.Public().(*rsa.PublicKey); return ok }
func isECDSA(key crypto.Signer) bool { _, ok := key.Public().(*ecdsa.PublicKey); return ok }

// describe names a key's algorithm for an error message.
func describe(key any) string {
	if s, ok := key.(crypto.Signer); ok {
		key = s.Public()
	}
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		return "an ECDSA " + k.Curve.Params().Name + " key"
	case *rsa.PublicKey:
		return fmt.Sprintf("an RSA %d key", k.N.BitLen())
	case ed25519.PublicKey:
		return "an Ed25519 key"
	}
	return fmt.Sprintf("a %T key", key)
}
