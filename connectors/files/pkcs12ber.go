package files

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
	"unicode/utf16"
)

// A BER-encoded PKCS#12 (Bouncy Castle's default, hence EJBCA's and many
// Java applications') is BER in three layers: the PFX itself, the
// AuthenticatedSafe inside it, which is what the MAC covers, and the
// ContentInfos in the AuthenticatedSafe, whose encrypted content is split
// into chunks when longer than 1000 bytes. berPKCS12 normalises the three
// layers to DER with berToDER, plus the SafeContents of unencrypted bags.
// What encrypted bags hold once decrypted is go-pkcs12's business: Bouncy
// Castle writes it in DER.
//
// The MAC covers the AuthenticatedSafe's bytes as written, so after
// normalising them it no longer matches. berPKCS12.forPassword checks the
// MAC over the original bytes (PKCS#12 key derivation, RFC 7292 B.2), and,
// when the password fits, returns the DER file with a MAC over the
// normalised bytes, made with the same password, so that go-pkcs12's own
// check passes and it decrypts with that password.

// berPKCS12 is a PKCS#12 file made DER, waiting for a password.
type berPKCS12 struct {
	version  int
	authSafe []byte // the AuthenticatedSafe as written: what the MAC covers
	derSafe  []byte // the AuthenticatedSafe in DER
	mac      *pkcs12MacData
	macRaw   asn1.RawValue // the MacData as written
	// wasBER: the file or its AuthenticatedSafe was not DER
	wasBER bool
}

type pkcs12PFX struct {
	Version  int
	AuthSafe pkcs12ContentInfo
	MacData  asn1.RawValue `asn1:"optional"`
}

type pkcs12ContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"tag:0,explicit,optional"`
}

type pkcs12EncryptedData struct {
	Version              int
	EncryptedContentInfo struct {
		ContentType                asn1.ObjectIdentifier
		ContentEncryptionAlgorithm pkix.AlgorithmIdentifier
		EncryptedContent           asn1.RawValue `asn1:"optional,tag:0"`
	}
}

type pkcs12MacData struct {
	Mac struct {
		Algorithm pkix.AlgorithmIdentifier
		Digest    []byte
	}
	MacSalt    []byte
	Iterations int `asn1:"optional,default:1"`
}

var (
	oidPKCS7Data          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidPKCS7EncryptedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 6}
	oidSHA1               = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256             = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA512             = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

// pkcs12MaxMacIterations bounds the work a file may ask of the MAC check,
// per password: ten times what Bouncy Castle writes (102400; openssl
// writes 2048), a fraction of a second.
const pkcs12MaxMacIterations = 1 << 20

// errPKCS12MAC means the MAC does not match: a wrong password.
var errPKCS12MAC = errors.New("pkcs12: MAC does not match (wrong password)")

// unmarshalDER is asn1.Unmarshal refusing anything after the element.
func unmarshalDER(b []byte, v any) error {
	rest, err := asn1.Unmarshal(b, v)
	if err == nil && len(rest) > 0 {
		err = errors.New("trailing data")
	}
	return err
}

// newBERPKCS12 normalises the layers of a PKCS#12 file.
func newBERPKCS12(data []byte) (*berPKCS12, error) {
	der, err := berToDER(data)
	if err != nil {
		return nil, err
	}
	var pfx pkcs12PFX
	if err := unmarshalDER(der, &pfx); err != nil {
		return nil, fmt.Errorf("PFX: %w", err)
	}
	if !pfx.AuthSafe.ContentType.Equal(oidPKCS7Data) {
		return nil, errors.New("PFX: only password-protected (data) PFX is supported")
	}
	p := &berPKCS12{version: pfx.Version}
	if err := unmarshalDER(pfx.AuthSafe.Content.Bytes, &p.authSafe); err != nil {
		return nil, fmt.Errorf("PFX content: %w", err)
	}
	if len(pfx.MacData.FullBytes) > 0 {
		p.macRaw = pfx.MacData
		p.mac = new(pkcs12MacData)
		if err := unmarshalDER(pfx.MacData.FullBytes, p.mac); err != nil {
			return nil, fmt.Errorf("MacData: %w", err)
		}
	}
	if p.derSafe, err = derAuthenticatedSafe(p.authSafe); err != nil {
		return nil, fmt.Errorf("AuthenticatedSafe: %w", err)
	}
	p.wasBER = !bytes.Equal(der, data) || !bytes.Equal(p.derSafe, p.authSafe)
	return p, nil
}

// derAuthenticatedSafe normalises the AuthenticatedSafe, the SafeContents
// of its unencrypted ContentInfos, and the chunks of its encrypted ones.
func derAuthenticatedSafe(authSafe []byte) ([]byte, error) {
	der, err := berToDER(authSafe)
	if err != nil {
		return nil, err
	}
	var infos []pkcs12ContentInfo
	if err := unmarshalDER(der, &infos); err != nil {
		return nil, err
	}
	for i := range infos {
		ci := &infos[i]
		var content []byte
		switch {
		case ci.ContentType.Equal(oidPKCS7Data):
			var safe []byte
			if err := unmarshalDER(ci.Content.Bytes, &safe); err != nil {
				return nil, err
			}
			if safe, err = berToDER(safe); err != nil {
				return nil, fmt.Errorf("SafeContents: %w", err)
			}
			if content, err = asn1.Marshal(safe); err != nil {
				return nil, err
			}
		case ci.ContentType.Equal(oidPKCS7EncryptedData):
			var ed pkcs12EncryptedData
			if err := unmarshalDER(ci.Content.Bytes, &ed); err != nil {
				return nil, err
			}
			// [0] IMPLICIT OCTET STRING: berToDER cannot know it is a
			// string, so its chunks (OCTET STRINGs, already flat) are
			// joined here.
			if ec := &ed.EncryptedContentInfo.EncryptedContent; ec.IsCompound {
				var joined []byte
				for rest := ec.Bytes; len(rest) > 0; {
					var chunk []byte
					if rest, err = asn1.Unmarshal(rest, &chunk); err != nil {
						return nil, fmt.Errorf("encrypted content: %w", err)
					}
					joined = append(joined, chunk...)
				}
				*ec = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: joined}
			}
			if content, err = asn1.Marshal(ed); err != nil {
				return nil, err
			}
		default:
			continue // go-pkcs12 will say it does not support it
		}
		ci.Content = asn1.RawValue{FullBytes: wrapExplicit0(content)}
	}
	return asn1.Marshal(infos)
}

// wrapExplicit0 makes the [0] EXPLICIT wrapping of a ContentInfo's content
// (a RawValue's FullBytes is written as is, hence the whole TLV).
func wrapExplicit0(content []byte) []byte {
	b, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: content})
	return b
}

// forPassword checks the MAC with pw and returns the file in DER, with a
// MAC over the DER AuthenticatedSafe made with the same password, or
// errPKCS12MAC. A file without MAC is returned as is: go-pkcs12 then
// accepts only the empty password, as for a DER file.
func (p *berPKCS12) forPassword(pw string) ([]byte, error) {
	pfx := pkcs12PFX{Version: p.version}
	safe, err := asn1.Marshal(p.derSafe)
	if err != nil {
		return nil, err
	}
	pfx.AuthSafe = pkcs12ContentInfo{ContentType: oidPKCS7Data, Content: asn1.RawValue{FullBytes: wrapExplicit0(safe)}}
	switch {
	case p.mac == nil:
	case bytes.Equal(p.derSafe, p.authSafe):
		// Only the outer layer was BER: the MAC still holds, and
		// go-pkcs12 checks it (every MAC it knows, PBMAC1 included).
		pfx.MacData = p.macRaw
	default:
		pwBytes, err := p.mac.check(p.authSafe, pw)
		if err != nil {
			return nil, err
		}
		// The new MAC is only for go-pkcs12's check: one iteration.
		mac := *p.mac
		mac.Iterations = 1
		if mac.Mac.Digest, err = pkcs12MAC(mac.Mac.Algorithm.Algorithm, p.derSafe, pwBytes, mac.MacSalt, 1); err != nil {
			return nil, err
		}
		if pfx.MacData.FullBytes, err = asn1.Marshal(mac); err != nil {
			return nil, err
		}
	}
	return asn1.Marshal(pfx)
}

// check verifies the MAC over message with pw and returns the password
// bytes that fit. Like go-pkcs12 (and openssl), the empty password is tried
// both as an empty BMPString (two zero bytes) and as no bytes at all, which
// is what Bouncy Castle uses.
func (m *pkcs12MacData) check(message []byte, pw string) ([]byte, error) {
	if m.Iterations < 1 || m.Iterations > pkcs12MaxMacIterations {
		return nil, fmt.Errorf("pkcs12: %d MAC iterations", m.Iterations)
	}
	candidates := [][]byte{bmpZeroTerminated(pw)}
	if candidates[0] == nil {
		return nil, errPKCS12MAC // not UCS-2: no file was made with it
	}
	if pw == "" {
		candidates = append(candidates, []byte{})
	}
	for _, c := range candidates {
		sum, err := pkcs12MAC(m.Mac.Algorithm.Algorithm, message, c, m.MacSalt, m.Iterations)
		if err != nil {
			return nil, err
		}
		if hmac.Equal(sum, m.Mac.Digest) {
			return c, nil
		}
	}
	return nil, errPKCS12MAC
}

// pkcs12MAC is the PKCS#12 MAC (RFC 7292 B): HMAC with a key derived from
// the password with the PKCS#12 key derivation, ID 3. The hashes are
// go-pkcs12's; PBMAC1 (RFC 9579) on a BER file is not supported.
func pkcs12MAC(alg asn1.ObjectIdentifier, message, password, salt []byte, iterations int) ([]byte, error) {
	var h func() hash.Hash
	var v int // the hash's block size in bytes
	switch {
	case alg.Equal(oidSHA1):
		h, v = sha1.New, 64
	case alg.Equal(oidSHA256):
		h, v = sha256.New, 64
	case alg.Equal(oidSHA512):
		h, v = sha512.New, 128
	default:
		return nil, fmt.Errorf("pkcs12: MAC algorithm %s on a BER-encoded file is not supported", alg)
	}
	key := pkcs12KDF(h, v, password, salt, iterations, 3, h().Size())
	mac := hmac.New(h, key)
	mac.Write(message)
	return mac.Sum(nil), nil
}

// pkcs12KDF is the PKCS#12 key derivation (RFC 7292 B.2): size bytes of key
// material of purpose id (1 key, 2 IV, 3 MAC) from password (a
// zero-terminated BMPString, or empty) and salt, with hash h of block size
// v bytes.
func pkcs12KDF(h func() hash.Hash, v int, password, salt []byte, iterations int, id byte, size int) []byte {
	// fill repeats b up to the next multiple of v bytes (none if b is empty).
	fill := func(b []byte) []byte {
		out := make([]byte, (len(b)+v-1)/v*v)
		for i := range out {
			out[i] = b[i%len(b)]
		}
		return out
	}
	d := bytes.Repeat([]byte{id}, v)
	i := append(fill(salt), fill(password)...)
	hh := h()
	var out []byte
	for len(out) < size {
		hh.Reset()
		hh.Write(d)
		hh.Write(i)
		a := hh.Sum(nil)
		for range iterations - 1 {
			hh.Reset()
			hh.Write(a)
			a = hh.Sum(a[:0])
		}
		out = append(out, a...)
		if len(out) >= size {
			break
		}
		// I_j = (I_j + B + 1) mod 2^(8v) for each v-byte block of I,
		// B being A repeated to v bytes.
		b := make([]byte, v)
		for k := range b {
			b[k] = a[k%len(a)]
		}
		for j := 0; j < len(i); j += v {
			carry := 1
			for k := v - 1; k >= 0; k-- {
				s := int(i[j+k]) + int(b[k]) + carry
				i[j+k], carry = byte(s), s>>8
			}
		}
	}
	return out[:size]
}

// bmpZeroTerminated is pw as a BMPString with two zero bytes after it, as
// PKCS#12 (RFC 7292 B.1) and go-pkcs12 want it; nil when pw has characters
// outside the Basic Multilingual Plane.
func bmpZeroTerminated(pw string) []byte {
	out := make([]byte, 0, 2*len(pw)+2)
	for _, r := range pw {
		if r > 0xffff || utf16.IsSurrogate(r) {
			return nil
		}
		out = append(out, byte(r>>8), byte(r))
	}
	return append(out, 0, 0)
}
