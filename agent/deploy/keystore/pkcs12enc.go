package keystore

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // localKeyId is the leaf's SHA-1, as OpenSSL and Java write it
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"unicode/utf16"

	"github.com/youmark/pkcs8"
)

// encodePKCS12 writes a PKCS#12 file holding one key, its leaf and chain,
// with friendlyName (Java's alias, Tomcat's certificateKeyAlias) on the key
// and the leaf. go-pkcs12's encoders cannot write a friendlyName, so the
// file is assembled here with its layout and the same parameters as its
// Modern encoder and OpenSSL 3's default:
//
//   - the key in a pkcs8ShroudedKeyBag: PBES2, PBKDF2-HMAC-SHA-256 (10000
//     iterations), AES-256-CBC (github.com/youmark/pkcs8);
//   - the certificates in a plain (unencrypted) safe: they are public, and
//     Java and OpenSSL read such files (OpenSSL's -certpbe NONE);
//   - an HMAC-SHA-256 MAC over the contents, keyed by the PKCS#12 KDF
//     (RFC 7292 appendix B) with SHA-256, 2048 iterations.
//
// An empty password gives an unencrypted key bag and still a MAC, as
// OpenSSL does with -passout pass:.
func encodePKCS12(key crypto.Signer, leaf *x509.Certificate, chain []*x509.Certificate, pw, name string) ([]byte, error) {
	keyID := sha1.Sum(leaf.Raw) //nolint:gosec // an identifier, not a signature
	attrs, err := bagAttributes(name, keyID[:])
	if err != nil {
		return nil, err
	}
	var bags []safeBag
	for i, c := range append([]*x509.Certificate{leaf}, chain...) {
		inner, err := asn1.Marshal(certBag{ID: oidX509Certificate, Data: c.Raw})
		if err != nil {
			return nil, err
		}
		b := safeBag{ID: oidCertBag, Value: explicit0(inner)}
		if i == 0 {
			b.Attributes = attrs
		}
		bags = append(bags, b)
	}
	certSafe, err := dataContent(bags)
	if err != nil {
		return nil, err
	}

	var keyBag safeBag
	if pw == "" {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		keyBag = safeBag{ID: oidKeyBag, Value: explicit0(der), Attributes: attrs}
	} else {
		der, err := pkcs8.MarshalPrivateKey(key, []byte(pw), &pkcs8.Opts{
			Cipher:  pkcs8.AES256CBC,
			KDFOpts: pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: pbkdf2Iterations, HMACHash: crypto.SHA256},
		})
		if err != nil {
			return nil, err
		}
		keyBag = safeBag{ID: oidShroudedKeyBag, Value: explicit0(der), Attributes: attrs}
	}
	keySafe, err := dataContent([]safeBag{keyBag})
	if err != nil {
		return nil, err
	}

	authSafe, err := asn1.Marshal([]contentInfo{certSafe, keySafe})
	if err != nil {
		return nil, err
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	bmp, err := bmpZeroTerminated(pw)
	if err != nil {
		return nil, err
	}
	macKey := pkcs12KDF(salt, bmp, macIterations, 3, sha256.Size)
	h := hmac.New(sha256.New, macKey)
	h.Write(authSafe)
	octets, err := asn1.Marshal(authSafe)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(pfxPdu{
		Version:  3,
		AuthSafe: contentInfo{ContentType: oidData, Content: explicit0(octets)},
		MacData: macData{
			Mac:        digestInfo{Algorithm: pkix.AlgorithmIdentifier{Algorithm: oidSHA256, Parameters: asn1.NullRawValue}, Digest: h.Sum(nil)},
			MacSalt:    salt,
			Iterations: macIterations,
		},
	})
}

const (
	pbkdf2Iterations = 10000
	macIterations    = 2048
)

var (
	oidData            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidKeyBag          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 1}
	oidShroudedKeyBag  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
	oidCertBag         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 3}
	oidX509Certificate = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 22, 1}
	oidFriendlyName    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 20}
	oidLocalKeyID      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 21}
	oidSHA256          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
)

type pfxPdu struct {
	Version  int
	AuthSafe contentInfo
	MacData  macData `asn1:"optional"`
}

type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"tag:0,explicit,optional"`
}

type macData struct {
	Mac        digestInfo
	MacSalt    []byte
	Iterations int `asn1:"optional,default:1"`
}

type digestInfo struct {
	Algorithm pkix.AlgorithmIdentifier
	Digest    []byte
}

type safeBag struct {
	ID         asn1.ObjectIdentifier
	Value      asn1.RawValue     `asn1:"tag:0,explicit"`
	Attributes []pkcs12Attribute `asn1:"set,optional"`
}

type pkcs12Attribute struct {
	ID    asn1.ObjectIdentifier
	Value asn1.RawValue `asn1:"set"`
}

type certBag struct {
	ID   asn1.ObjectIdentifier
	Data []byte `asn1:"tag:0,explicit"`
}

// explicit0 wraps DER as the [0] EXPLICIT content encoding/asn1 writes
// for a RawValue field tagged so (the way go-pkcs12 builds its bags).
func explicit0(der []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: der}
}

// dataContent is a ContentInfo of type data holding the SafeContents.
func dataContent(bags []safeBag) (contentInfo, error) {
	safe, err := asn1.Marshal(bags)
	if err != nil {
		return contentInfo{}, err
	}
	octets, err := asn1.Marshal(safe)
	if err != nil {
		return contentInfo{}, err
	}
	return contentInfo{ContentType: oidData, Content: explicit0(octets)}, nil
}

// bagAttributes are localKeyId (pairs the key with its leaf) and, when
// name is set, friendlyName as a BMPString.
func bagAttributes(name string, keyID []byte) ([]pkcs12Attribute, error) {
	id, err := asn1.Marshal(keyID)
	if err != nil {
		return nil, err
	}
	attrs := []pkcs12Attribute{{ID: oidLocalKeyID, Value: set(id)}}
	if name != "" {
		b, err := bmp(name)
		if err != nil {
			return nil, err
		}
		fn, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagBMPString, Bytes: b})
		if err != nil {
			return nil, err
		}
		attrs = append([]pkcs12Attribute{{ID: oidFriendlyName, Value: set(fn)}}, attrs...)
	}
	return attrs, nil
}

func set(der []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: der}
}

// bmp is s in UTF-16 big-endian (ASN.1 BMPString: the BMP only).
func bmp(s string) ([]byte, error) {
	var out []byte
	for _, r := range s {
		if r > 0xFFFF || utf16.IsSurrogate(r) {
			return nil, errors.New("a character outside the Basic Multilingual Plane cannot be written in PKCS#12")
		}
		out = append(out, byte(r>>8), byte(r))
	}
	return out, nil
}

// bmpZeroTerminated is the password as the PKCS#12 KDF takes it: BMPString
// with two zero bytes at the end (also for the empty password).
func bmpZeroTerminated(s string) ([]byte, error) {
	b, err := bmp(s)
	if err != nil {
		return nil, errors.New("the keystore password has a character PKCS#12 cannot take")
	}
	return append(b, 0, 0), nil
}

// pkcs12KDF is RFC 7292 appendix B.2 with SHA-256 (u = 32, v = 64): the
// MAC key for id 3. It is used only to key the MAC; the key itself is
// encrypted with PBKDF2 (PBES2).
func pkcs12KDF(salt, password []byte, iterations int, id byte, size int) []byte {
	const u, v = sha256.Size, sha256.BlockSize
	d := make([]byte, v)
	for i := range d {
		d[i] = id
	}
	fill := func(src []byte) []byte {
		if len(src) == 0 {
			return nil
		}
		out := make([]byte, v*((len(src)+v-1)/v))
		for i := range out {
			out[i] = src[i%len(src)]
		}
		return out
	}
	in := append(fill(salt), fill(password)...)
	var out []byte
	for len(out) < size {
		h := sha256.New()
		h.Write(d)
		h.Write(in)
		a := h.Sum(nil)
		for range iterations - 1 {
			s := sha256.Sum256(a)
			a = s[:]
		}
		out = append(out, a...)
		// B is A repeated to v bytes; each v-byte block of I becomes
		// (I_j + B + 1) mod 2^(8v).
		b := make([]byte, v)
		for i := range b {
			b[i] = a[i%u]
		}
		for j := 0; j < len(in); j += v {
			carry := 1
			for k := v - 1; k >= 0; k-- {
				x := int(in[j+k]) + int(b[k]) + carry
				in[j+k] = byte(x)
				carry = x >> 8
			}
		}
	}
	return out[:size]
}
