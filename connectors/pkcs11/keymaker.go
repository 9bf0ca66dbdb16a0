//go:build cgo

package pkcs11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // CKA_ID is the RFC 5280 key identifier (SHA-1), not a signature
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"strconv"
	"strings"
	"sync"

	p11 "github.com/miekg/pkcs11"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/protocol"
)

// KeyMaker makes and finds rotation keys inside a PKCS#11 token (P3: an
// HSM key never leaves the HSM). The signers it returns hold the module's
// process lock and a logged-in session until Close: close them before
// anything else in the process (a discovery scan, the token deployer)
// uses the same module, or that waits.
type KeyMaker struct {
	log *slog.Logger
}

// NewKeyMaker returns a KeyMaker logging to logger (nil: discard).
func NewKeyMaker(logger *slog.Logger) *KeyMaker {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &KeyMaker{log: logger}
}

// Curve OIDs for CKA_EC_PARAMS.
var (
	oidP256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384 = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
)

// MakeKey generates a key pair inside the token spec names
// (C_GenerateKeyPair): algorithm ecdsa-p256, ecdsa-p384, rsa-2048,
// rsa-3072 or rsa-4096. The private key is CKA_TOKEN, CKA_PRIVATE,
// CKA_SENSITIVE and not CKA_EXTRACTABLE; both objects get CKA_LABEL
// spec.Label and CKA_ID spec.ID (hex) or, when empty, the RFC 5280 key
// identifier of the public key (SHA-1 of the subjectPublicKey bits, 20
// bytes: the SubjectKeyId Go and OpenSSL put in the certificate). The
// returned signer signs on the token and is an io.Closer.
func (k *KeyMaker) MakeKey(ctx context.Context, spec protocol.PKCS11Key, algorithm string) (crypto.Signer, deploy.TokenKey, error) {
	set, id, err := keySettings(spec)
	if err != nil {
		return nil, deploy.TokenKey{}, err
	}
	gen, err := keyTemplates(algorithm, spec.Label)
	if err != nil {
		return nil, deploy.TokenKey{}, err
	}
	ts, err := openSession(ctx, set, k.log)
	if err != nil {
		return nil, deploy.TokenKey{}, err
	}
	signer, ref, err := ts.makeKey(gen, spec.Label, id)
	if err != nil {
		ts.Close()
		return nil, deploy.TokenKey{}, fmt.Errorf("pkcs11: %s: make key %q: %w", ts.name, spec.Label, err)
	}
	k.log.Info("pkcs11: key pair generated on the token", "token", ts.loc.String(), "label", ref.Label, "id", ref.ID, "algorithm", algorithm)
	return signer, ref, nil
}

// FindKey finds an existing private key by spec.Label and, when given,
// spec.ID (a renewal that keeps the key). Exactly one must match.
func (k *KeyMaker) FindKey(ctx context.Context, spec protocol.PKCS11Key) (crypto.Signer, deploy.TokenKey, error) {
	set, id, err := keySettings(spec)
	if err != nil {
		return nil, deploy.TokenKey{}, err
	}
	ts, err := openSession(ctx, set, k.log)
	if err != nil {
		return nil, deploy.TokenKey{}, err
	}
	signer, ref, err := ts.findKey(spec.Label, id)
	if err != nil {
		ts.Close()
		return nil, deploy.TokenKey{}, fmt.Errorf("pkcs11: %s: %w", ts.name, err)
	}
	return signer, ref, nil
}

// keySettings turns a key spec into the settings openSession takes, and
// decodes its ID.
func keySettings(spec protocol.PKCS11Key) (settings, []byte, error) {
	if spec.Module == "" {
		return settings{}, nil, errors.New("pkcs11: key: module is required (the PKCS#11 library path)")
	}
	if spec.Label == "" {
		return settings{}, nil, errors.New("pkcs11: key: label is required (the CKA_LABEL of the key pair)")
	}
	if spec.PIN.IsZero() {
		return settings{}, nil, errors.New("pkcs11: key: pin is required (keys are private objects)")
	}
	var id []byte
	if spec.ID != "" {
		var err error
		if id, err = hex.DecodeString(spec.ID); err != nil || len(id) == 0 {
			return settings{}, nil, fmt.Errorf("pkcs11: key: id %q is not hex", spec.ID)
		}
	}
	set := settings{attrs: map[string]string{}, pin: spec.PIN.Secret(), hasPIN: true}
	if strings.ContainsAny(spec.Module, `/\`) {
		set.modulePath = spec.Module
	} else {
		set.moduleName = spec.Module
	}
	if spec.TokenLabel != "" {
		set.attrs["token"] = spec.TokenLabel
	}
	if spec.TokenSerial != "" {
		set.attrs["serial"] = spec.TokenSerial
	}
	if spec.Slot != nil {
		if *spec.Slot < 0 {
			return settings{}, nil, fmt.Errorf("pkcs11: key: slot %d is negative", *spec.Slot)
		}
		set.attrs["slot-id"] = strconv.Itoa(*spec.Slot)
	}
	return set, id, nil
}

// keyGen is a key pair generation: the mechanism and both templates
// (without CKA_ID, which is set after or given).
type keyGen struct {
	mech      uint
	public    []*p11.Attribute
	private   []*p11.Attribute
	algorithm string
}

func keyTemplates(algorithm, label string) (keyGen, error) {
	g := keyGen{algorithm: algorithm}
	g.public = []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, false),
		p11.NewAttribute(p11.CKA_VERIFY, true),
		p11.NewAttribute(p11.CKA_LABEL, label),
	}
	g.private = []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_SIGN, true),
		p11.NewAttribute(p11.CKA_LABEL, label),
	}
	switch strings.ToLower(algorithm) {
	case "ecdsa-p256", "ecdsa-p384":
		oid := oidP256
		if strings.HasSuffix(strings.ToLower(algorithm), "384") {
			oid = oidP384
		}
		params, err := asn1.Marshal(oid)
		if err != nil {
			return g, err
		}
		g.mech = p11.CKM_EC_KEY_PAIR_GEN
		g.public = append(g.public, p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_EC), p11.NewAttribute(p11.CKA_EC_PARAMS, params))
		g.private = append(g.private, p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_EC))
	case "rsa-2048", "rsa-3072", "rsa-4096":
		bits, _ := strconv.Atoi(algorithm[len("rsa-"):])
		g.mech = p11.CKM_RSA_PKCS_KEY_PAIR_GEN
		g.public = append(g.public, p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_RSA),
			p11.NewAttribute(p11.CKA_MODULUS_BITS, bits), p11.NewAttribute(p11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}))
		g.private = append(g.private, p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_RSA))
	default:
		return g, fmt.Errorf("pkcs11: key: algorithm %q: a token key is ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072 or rsa-4096", algorithm)
	}
	return g, nil
}

// tokenSession is a logged-in read-write session on the one token a
// target or key spec selects. It holds the module's process lock (see
// lockModule) until Close: a module's state and login are per process.
type tokenSession struct {
	c        *p11.Ctx
	sh       p11.SessionHandle
	slot     uint
	info     p11.TokenInfo
	loc      protocol.Location
	name     string // token "LABEL" (serial S), for messages
	module   string
	finalize bool
	unlock   func()
	log      *slog.Logger
	mu       sync.Mutex // one operation at a time on the session
	closed   bool
}

// openSession loads the module, finds exactly one initialised token that
// set selects, opens a read-write session and logs in once (never again:
// an HSM locks its PIN after a few wrong tries).
func openSession(ctx context.Context, set settings, log *slog.Logger) (_ *tokenSession, err error) {
	path, err := set.module()
	if err != nil {
		return nil, err
	}
	unlock, err := lockModule(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: module %s: waiting for another user of it in this process: %w", path, err)
	}
	ts := &tokenSession{module: path, unlock: unlock, log: log}
	defer func() {
		if err != nil {
			ts.Close()
		}
	}()
	c := p11.New(path)
	if c == nil {
		return nil, fmt.Errorf("pkcs11: cannot load module %s: not a PKCS#11 library, or built for another architecture", path)
	}
	ts.c = c
	switch err := c.Initialize(); {
	case err == nil:
		ts.finalize = true
	case isRV(err, p11.CKR_CRYPTOKI_ALREADY_INITIALIZED):
		// Someone else in the process initialised it and will finalise it.
	default:
		return nil, fmt.Errorf("pkcs11: module %s: C_Initialize: %s", path, rvName(err))
	}
	lib, err := c.GetInfo()
	if err != nil {
		return nil, fmt.Errorf("pkcs11: module %s: C_GetInfo: %s", path, rvName(err))
	}
	slots, err := c.GetSlotList(true)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: module %s: C_GetSlotList: %s", path, rvName(err))
	}
	var chosen []token
	var seen []string
	for _, slot := range slots {
		ti, err := c.GetTokenInfo(slot)
		if err != nil || ti.Flags&p11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		ti.Label, ti.SerialNumber = trim(ti.Label), trim(ti.SerialNumber)
		ti.ManufacturerID, ti.Model = trim(ti.ManufacturerID), trim(ti.Model)
		desc := fmt.Sprintf("%q (serial %s, slot %d)", ti.Label, ti.SerialNumber, slot)
		seen = append(seen, desc)
		si, _ := c.GetSlotInfo(slot)
		if set.selects(slot, ti, si, lib) {
			chosen = append(chosen, token{slot: slot, info: ti, loc: tokenLocation(ti.Label, ti.SerialNumber)})
		}
	}
	switch {
	case len(chosen) == 0:
		return nil, fmt.Errorf("pkcs11: module %s: no initialised token matches %s: it has %s", path, set.selection(), orNone(seen))
	case len(chosen) > 1:
		return nil, fmt.Errorf("pkcs11: module %s: %d tokens match %s (%s): name one by label and serial", path, len(chosen), set.selection(), strings.Join(seen, ", "))
	}
	tok := chosen[0]
	ts.slot, ts.info, ts.loc = tok.slot, tok.info, tok.loc
	ts.name = fmt.Sprintf("token %q (serial %s)", tok.info.Label, tok.info.SerialNumber)
	sh, err := c.OpenSession(tok.slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: %s: cannot open a read-write session: %s", ts.name, rvName(err))
	}
	ts.sh = sh
	sc := &scan{Source: &Source{cfg: fillConfig(Config{Logger: log}), log: log}, c: c, set: set, module: path}
	msg, ok := sc.login(ctx, sh, tok, fmt.Sprintf("token %q", tok.info.Label))
	if !ok {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("pkcs11: " + strings.TrimSuffix(msg, "; only public objects are listed"))
	}
	return ts, nil
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

// Close logs out, closes the session, finalises the module when this
// session initialised it, and releases the module lock. It may be called
// more than once.
func (ts *tokenSession) Close() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.closed {
		return
	}
	ts.closed = true
	if ts.c != nil {
		if ts.sh != 0 {
			_ = ts.c.Logout(ts.sh)
			if err := ts.c.CloseSession(ts.sh); err != nil {
				ts.log.Debug("pkcs11: C_CloseSession failed", "module", ts.module, "err", rvName(err))
			}
		}
		if ts.finalize {
			if err := ts.c.Finalize(); err != nil {
				ts.log.Warn("pkcs11: C_Finalize failed", "module", ts.module, "err", rvName(err))
			}
		}
		ts.c.Destroy()
	}
	if ts.unlock != nil {
		ts.unlock()
	}
}

// find lists the objects matching the template.
func (ts *tokenSession) find(tmpl []*p11.Attribute) ([]p11.ObjectHandle, error) {
	if err := ts.c.FindObjectsInit(ts.sh, tmpl); err != nil {
		return nil, fmt.Errorf("C_FindObjectsInit: %s", rvName(err))
	}
	var out []p11.ObjectHandle
	for {
		hs, _, err := ts.c.FindObjects(ts.sh, 64)
		if err != nil {
			_ = ts.c.FindObjectsFinal(ts.sh)
			return nil, fmt.Errorf("C_FindObjects: %s", rvName(err))
		}
		if len(hs) == 0 {
			break
		}
		out = append(out, hs...)
	}
	if err := ts.c.FindObjectsFinal(ts.sh); err != nil {
		return nil, fmt.Errorf("C_FindObjectsFinal: %s", rvName(err))
	}
	return out, nil
}

// attr reads public attributes of an object; absent ones are missing from
// the map. Nothing secret (CKA_VALUE of a key, private parts) is asked.
func (ts *tokenSession) attr(h p11.ObjectHandle, types ...uint) map[uint][]byte {
	sc := scan{c: ts.c}
	return sc.attrs(ts.sh, h, types...)
}

// makeKey generates the pair, sets CKA_ID, and returns its signer. A pair
// that cannot be finished is destroyed: it was made by this call and
// nothing refers to it yet.
func (ts *tokenSession) makeKey(g keyGen, label string, id []byte) (crypto.Signer, deploy.TokenKey, error) {
	if id != nil {
		hs, err := ts.find([]*p11.Attribute{p11.NewAttribute(p11.CKA_ID, id)})
		if err != nil {
			return nil, deploy.TokenKey{}, err
		}
		if len(hs) > 0 {
			return nil, deploy.TokenKey{}, fmt.Errorf("id %x is taken by %d objects on the token: give another id or none (one is made from the public key)", id, len(hs))
		}
		g.public = append(g.public, p11.NewAttribute(p11.CKA_ID, id))
		g.private = append(g.private, p11.NewAttribute(p11.CKA_ID, id))
	}
	pubH, privH, err := ts.c.GenerateKeyPair(ts.sh, []*p11.Mechanism{p11.NewMechanism(g.mech, nil)}, g.public, g.private)
	if err != nil {
		return nil, deploy.TokenKey{}, fmt.Errorf("C_GenerateKeyPair (%s): %s", g.algorithm, rvName(err))
	}
	fail := func(err error) (crypto.Signer, deploy.TokenKey, error) {
		_ = ts.c.DestroyObject(ts.sh, privH)
		_ = ts.c.DestroyObject(ts.sh, pubH)
		return nil, deploy.TokenKey{}, err
	}
	pub, err := ts.publicKey(privH, pubH)
	if err != nil {
		return fail(err)
	}
	if id == nil {
		if id, err = keyID(pub); err != nil {
			return fail(err)
		}
		for _, h := range []p11.ObjectHandle{pubH, privH} {
			if err := ts.c.SetAttributeValue(ts.sh, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_ID, id)}); err != nil {
				return fail(fmt.Errorf("set CKA_ID: %s", rvName(err)))
			}
		}
	}
	return &tokenSigner{ts: ts, key: privH, pub: pub}, deploy.TokenKey{Label: label, ID: hex.EncodeToString(id)}, nil
}

// findKey finds the one private key with the label (and id).
func (ts *tokenSession) findKey(label string, id []byte) (crypto.Signer, deploy.TokenKey, error) {
	tmpl := []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY), p11.NewAttribute(p11.CKA_LABEL, label)}
	if id != nil {
		tmpl = append(tmpl, p11.NewAttribute(p11.CKA_ID, id))
	}
	hs, err := ts.find(tmpl)
	if err != nil {
		return nil, deploy.TokenKey{}, err
	}
	switch len(hs) {
	case 0:
		return nil, deploy.TokenKey{}, fmt.Errorf("no private key with label %q%s", label, idNote(id))
	case 1:
	default:
		var ids []string
		for _, h := range hs {
			ids = append(ids, hex.EncodeToString(ts.attr(h, p11.CKA_ID)[p11.CKA_ID]))
		}
		return nil, deploy.TokenKey{}, fmt.Errorf("%d private keys have label %q (ids %s): give the id", len(hs), label, strings.Join(ids, ", "))
	}
	keyID := ts.attr(hs[0], p11.CKA_ID)[p11.CKA_ID]
	var pubH p11.ObjectHandle
	if len(keyID) > 0 {
		if pubs, err := ts.find([]*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY), p11.NewAttribute(p11.CKA_ID, keyID)}); err == nil && len(pubs) > 0 {
			pubH = pubs[0]
		}
	}
	pub, err := ts.publicKey(hs[0], pubH)
	if err != nil && len(keyID) > 0 {
		// No public key object: a certificate of the same id has it.
		pub, err = ts.certPublicKey(keyID)
	}
	if err != nil {
		return nil, deploy.TokenKey{}, fmt.Errorf("key %q%s: %w", label, idNote(id), err)
	}
	return &tokenSigner{ts: ts, key: hs[0], pub: pub}, deploy.TokenKey{Label: label, ID: hex.EncodeToString(keyID)}, nil
}

func idNote(id []byte) string {
	if id == nil {
		return ""
	}
	return fmt.Sprintf(" and id %x", id)
}

// publicKey builds the public key from public attributes: the modulus and
// exponent (on the private object too), or the EC point of the public
// object (pubH 0: none).
func (ts *tokenSession) publicKey(privH, pubH p11.ObjectHandle) (crypto.PublicKey, error) {
	a := ts.attr(privH, p11.CKA_KEY_TYPE, p11.CKA_MODULUS, p11.CKA_PUBLIC_EXPONENT, p11.CKA_EC_PARAMS)
	kt, _ := ulong(a[p11.CKA_KEY_TYPE])
	switch kt {
	case p11.CKK_RSA:
		if len(a[p11.CKA_MODULUS]) == 0 && pubH != 0 {
			a = ts.attr(pubH, p11.CKA_MODULUS, p11.CKA_PUBLIC_EXPONENT)
		}
		n, e := new(big.Int).SetBytes(a[p11.CKA_MODULUS]), new(big.Int).SetBytes(a[p11.CKA_PUBLIC_EXPONENT])
		if n.Sign() == 0 || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31 {
			return nil, errors.New("the RSA key's modulus or exponent cannot be read")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case p11.CKK_EC:
		if pubH == 0 {
			return nil, errors.New("the EC key has no public key object (CKA_EC_POINT)")
		}
		pa := ts.attr(pubH, p11.CKA_EC_PARAMS, p11.CKA_EC_POINT)
		return ecPublicKey(pa[p11.CKA_EC_PARAMS], pa[p11.CKA_EC_POINT])
	}
	return nil, fmt.Errorf("key type CKK 0x%X cannot sign a CSR here (RSA and EC only)", kt)
}

// certPublicKey is the public key of a certificate object with the id.
func (ts *tokenSession) certPublicKey(id []byte) (crypto.PublicKey, error) {
	hs, err := ts.find([]*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_CERTIFICATE), p11.NewAttribute(p11.CKA_ID, id)})
	if err != nil {
		return nil, err
	}
	for _, h := range hs {
		if c, err := x509.ParseCertificate(ts.attr(h, p11.CKA_VALUE)[p11.CKA_VALUE]); err == nil {
			return c.PublicKey, nil
		}
	}
	return nil, errors.New("no public key object and no certificate with its id")
}

// ecPublicKey reads CKA_EC_PARAMS (a named curve) and CKA_EC_POINT (a DER
// OCTET STRING around the uncompressed point; some modules give it raw).
func ecPublicKey(params, point []byte) (*ecdsa.PublicKey, error) {
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(params, &oid); err != nil {
		return nil, errors.New("CKA_EC_PARAMS is not a named curve")
	}
	var curve elliptic.Curve
	switch {
	case oid.Equal(oidP256):
		curve = elliptic.P256()
	case oid.Equal(oidP384):
		curve = elliptic.P384()
	case oid.Equal(asn1.ObjectIdentifier{1, 3, 132, 0, 35}):
		curve = elliptic.P521()
	default:
		return nil, fmt.Errorf("curve %s is not supported", oid)
	}
	var raw []byte
	if rest, err := asn1.Unmarshal(point, &raw); err != nil || len(rest) > 0 {
		raw = point
	}
	return ecdsa.ParseUncompressedPublicKey(curve, raw)
}

// keyID is the CKA_ID MakeKey gives a key when the spec has none: the RFC
// 5280 (4.2.1.2, method 1) key identifier, SHA-1 of the subjectPublicKey
// bits. It equals the SubjectKeyId crypto/x509 and OpenSSL put in
// certificates for that key.
func keyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	sum := sha1.Sum(spki.PublicKey.Bytes) //nolint:gosec // an identifier
	return sum[:], nil
}

// tokenSigner signs with a private key on the token. It is a crypto.Signer
// and an io.Closer (Close ends the session and releases the module).
type tokenSigner struct {
	ts  *tokenSession
	key p11.ObjectHandle
	pub crypto.PublicKey
}

var (
	_ crypto.Signer = (*tokenSigner)(nil)
	_ io.Closer     = (*tokenSigner)(nil)
)

// Public is the key's public half.
func (s *tokenSigner) Public() crypto.PublicKey { return s.pub }

// Close logs out, closes the session and the module.
func (s *tokenSigner) Close() error {
	s.ts.Close()
	return nil
}

// hashMechs maps a hash to its PKCS#11 mechanism and MGF1 (for PSS).
var hashMechs = map[crypto.Hash][2]uint{
	crypto.SHA256: {p11.CKM_SHA256, p11.CKG_MGF1_SHA256},
	crypto.SHA384: {p11.CKM_SHA384, p11.CKG_MGF1_SHA384},
	crypto.SHA512: {p11.CKM_SHA512, p11.CKG_MGF1_SHA512},
}

// hashOIDs name the hashes in an RSA PKCS#1 v1.5 DigestInfo.
var hashOIDs = map[crypto.Hash]asn1.ObjectIdentifier{
	crypto.SHA256: {2, 16, 840, 1, 101, 3, 4, 2, 1},
	crypto.SHA384: {2, 16, 840, 1, 101, 3, 4, 2, 2},
	crypto.SHA512: {2, 16, 840, 1, 101, 3, 4, 2, 3},
}

// Sign signs digest on the token: ECDSA (CKM_ECDSA; the raw r||s the token
// returns is made ASN.1 DER), RSA PKCS#1 v1.5 (CKM_RSA_PKCS over the
// DigestInfo) or, with *rsa.PSSOptions, RSA-PSS (CKM_RSA_PKCS_PSS, salt
// the hash's length). SHA-256, SHA-384 and SHA-512.
func (s *tokenSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h := opts.HashFunc()
	hm, ok := hashMechs[h]
	if !ok {
		return nil, fmt.Errorf("pkcs11: sign: hash %v is not supported (SHA-256, SHA-384, SHA-512)", h)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("pkcs11: sign: digest is %d bytes, %v needs %d", len(digest), h, h.Size())
	}
	var mech *p11.Mechanism
	input := digest
	switch s.pub.(type) {
	case *ecdsa.PublicKey:
		mech = p11.NewMechanism(p11.CKM_ECDSA, nil)
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			salt := pss.SaltLength
			if salt == rsa.PSSSaltLengthAuto || salt == rsa.PSSSaltLengthEqualsHash {
				salt = h.Size()
			}
			mech = p11.NewMechanism(p11.CKM_RSA_PKCS_PSS, p11.NewPSSParams(hm[0], hm[1], uint(salt)))
			break
		}
		di, err := asn1.Marshal(struct {
			Algorithm pkix.AlgorithmIdentifier
			Digest    []byte
		}{pkix.AlgorithmIdentifier{Algorithm: hashOIDs[h], Parameters: asn1.NullRawValue}, digest})
		if err != nil {
			return nil, err
		}
		mech, input = p11.NewMechanism(p11.CKM_RSA_PKCS, nil), di
	default:
		return nil, fmt.Errorf("pkcs11: sign: key type %T is not supported", s.pub)
	}
	ts := s.ts
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.closed {
		return nil, errors.New("pkcs11: sign: the signer is closed")
	}
	if err := ts.c.SignInit(ts.sh, []*p11.Mechanism{mech}, s.key); err != nil {
		return nil, fmt.Errorf("pkcs11: %s: C_SignInit: %s", ts.name, rvName(err))
	}
	sig, err := ts.c.Sign(ts.sh, input)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: %s: C_Sign: %s", ts.name, rvName(err))
	}
	if _, ok := s.pub.(*ecdsa.PublicKey); ok {
		return ecdsaDER(sig)
	}
	return sig, nil
}

// ecdsaDER turns PKCS#11's r||s (two big-endian halves of equal length)
// into the ASN.1 ECDSA-Sig-Value X.509 wants.
func ecdsaDER(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, fmt.Errorf("pkcs11: sign: ECDSA signature of %d bytes is not r||s", len(raw))
	}
	r := new(big.Int).SetBytes(raw[:len(raw)/2])
	s := new(big.Int).SetBytes(raw[len(raw)/2:])
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(r)
		b.AddASN1BigInt(s)
	})
	return b.Bytes()
}

// openCertStore opens the token a deploy target names, for the
// certificate deployer.
func openCertStore(ctx context.Context, set settings, log *slog.Logger) (certStore, error) {
	ts, err := openSession(ctx, set, log)
	if err != nil {
		return nil, err
	}
	return ts, nil
}

func (ts *tokenSession) tokenName() string { return ts.name }

func (ts *tokenSession) tokenLocation() protocol.Location { return ts.loc }

// certs lists the X.509 certificate objects with the label.
func (ts *tokenSession) certs(label string) ([]certObject, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	hs, err := ts.find([]*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_CERTIFICATE),
		p11.NewAttribute(p11.CKA_CERTIFICATE_TYPE, p11.CKC_X_509), p11.NewAttribute(p11.CKA_LABEL, label)})
	if err != nil {
		return nil, err
	}
	var out []certObject
	for _, h := range hs {
		a := ts.attr(h, p11.CKA_LABEL, p11.CKA_ID, p11.CKA_VALUE)
		out = append(out, certObject{handle: uint(h), label: string(a[p11.CKA_LABEL]), id: a[p11.CKA_ID], der: a[p11.CKA_VALUE]})
	}
	return out, nil
}

// keyPublic finds the private key with label and id and returns its public
// key (from public attributes only).
func (ts *tokenSession) keyPublic(label string, id []byte) (crypto.PublicKey, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	hs, err := ts.find([]*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
		p11.NewAttribute(p11.CKA_LABEL, label), p11.NewAttribute(p11.CKA_ID, id)})
	if err != nil {
		return nil, err
	}
	if len(hs) == 0 {
		return nil, fmt.Errorf("no private key with label %q and id %x on the token", label, id)
	}
	var pubH p11.ObjectHandle
	if pubs, err := ts.find([]*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY), p11.NewAttribute(p11.CKA_ID, id)}); err == nil && len(pubs) > 0 {
		pubH = pubs[0]
	}
	return ts.publicKey(hs[0], pubH)
}

// createCert writes a certificate object: CKO_CERTIFICATE, CKC_X_509, a
// public token object with its DER, subject, issuer and serial number
// (DER INTEGER), under o's label and id.
func (ts *tokenSession) createCert(o certObject) (uint, error) {
	c, err := x509.ParseCertificate(o.der)
	if err != nil {
		return 0, err
	}
	serial, err := asn1.Marshal(c.SerialNumber)
	if err != nil {
		return 0, err
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	h, err := ts.c.CreateObject(ts.sh, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_CERTIFICATE),
		p11.NewAttribute(p11.CKA_CERTIFICATE_TYPE, p11.CKC_X_509),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, false),
		p11.NewAttribute(p11.CKA_LABEL, o.label),
		p11.NewAttribute(p11.CKA_ID, o.id),
		p11.NewAttribute(p11.CKA_SUBJECT, c.RawSubject),
		p11.NewAttribute(p11.CKA_ISSUER, c.RawIssuer),
		p11.NewAttribute(p11.CKA_SERIAL_NUMBER, serial),
		p11.NewAttribute(p11.CKA_VALUE, o.der),
	})
	if err != nil {
		return 0, fmt.Errorf("C_CreateObject: %s", rvName(err))
	}
	return uint(h), nil
}

// destroy deletes a certificate object (never a key: the deployer passes
// only handles certs returned).
func (ts *tokenSession) destroy(h uint) error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if err := ts.c.DestroyObject(ts.sh, p11.ObjectHandle(h)); err != nil {
		return fmt.Errorf("C_DestroyObject: %s", rvName(err))
	}
	return nil
}
