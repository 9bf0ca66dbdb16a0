//go:build cgo

package pkcs11

import (
	"context"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"sync"

	p11 "github.com/miekg/pkcs11"

	"github.com/emsign/bot/connectors"
	"github.com/emsign/bot/protocol"
)

// Key types PKCS#11 3.0 added, which github.com/miekg/pkcs11 does not name.
const (
	ckkECEdwards   = 0x40
	ckkECMontgomry = 0x41
)

// Supported reports whether this build can talk to PKCS#11 modules.
func Supported() bool { return true }

// New validates cfg and fills in defaults.
func New(cfg Config) (*Source, error) {
	cfg = fillConfig(cfg)
	return &Source{cfg: cfg, log: cfg.Logger}, nil
}

// moduleLocks serialises the scans of one module in this process. A
// PKCS#11 module has one state per process: C_Initialize and C_Finalize are
// global, and a login holds for every session of the application, so two
// scans of one module at once would finalise under each other's feet or
// share (or break) each other's login.
var moduleLocks = struct {
	sync.Mutex
	m map[string]chan struct{}
}{m: map[string]chan struct{}{}}

func lockModule(ctx context.Context, path string) (func(), error) {
	moduleLocks.Lock()
	ch := moduleLocks.m[path]
	if ch == nil {
		ch = make(chan struct{}, 1)
		moduleLocks.m[path] = ch
	}
	moduleLocks.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Discover loads the target's module, scans every initialised token the
// target selects, and unloads the module. Problems with one token (a wrong
// PIN, a locked PIN) are findings with Error at the token's location; a
// module that does not load, or no token that matches, is returned.
func (s *Source) Discover(ctx context.Context, t protocol.Target, emit connectors.Emit) error {
	if t.Scheme != protocol.SchemePKCS11 {
		return fmt.Errorf("pkcs11: cannot scan %s targets", t.Scheme)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	set, err := resolve(t)
	if err != nil {
		return err
	}
	path, err := set.module()
	if err != nil {
		return err
	}
	unlock, err := lockModule(ctx, path)
	if err != nil {
		return err
	}
	defer unlock()

	c := p11.New(path)
	if c == nil {
		return fmt.Errorf("pkcs11: cannot load module %s: not a PKCS#11 library (no C_GetFunctionList), or built for another architecture", path)
	}
	defer c.Destroy()
	switch err := c.Initialize(); {
	case err == nil:
		defer func() {
			if err := c.Finalize(); err != nil {
				s.log.Warn("pkcs11: C_Finalize failed", "module", path, "err", rvName(err))
			}
		}()
	case isRV(err, p11.CKR_CRYPTOKI_ALREADY_INITIALIZED):
		// Someone else in this process initialised the module and will
		// finalise it: finalising here would pull it from under them.
		s.log.Info("pkcs11: module already initialised in this process; using it without finalising", "module", path)
	default:
		return fmt.Errorf("pkcs11: module %s: C_Initialize: %s", path, rvName(err))
	}

	sc := scan{Source: s, c: c, set: set, emit: emit, module: path}
	return sc.run(ctx)
}

// scan is one Discover: the loaded module and what the target asked for.
type scan struct {
	*Source
	c      *p11.Ctx
	set    settings
	emit   connectors.Emit
	module string
}

// token is an initialised token the target selects.
type token struct {
	slot uint
	info p11.TokenInfo
	loc  protocol.Location
}

func (sc *scan) run(ctx context.Context) error {
	lib, err := sc.c.GetInfo()
	if err != nil {
		return fmt.Errorf("pkcs11: module %s: C_GetInfo: %s", sc.module, rvName(err))
	}
	slots, err := sc.c.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("pkcs11: module %s: C_GetSlotList: %s", sc.module, rvName(err))
	}
	var chosen []token
	var seen []string
	for _, slot := range slots {
		if err := ctx.Err(); err != nil {
			return err
		}
		ti, err := sc.c.GetTokenInfo(slot)
		if err != nil {
			sc.log.Debug("pkcs11: slot skipped: no token info", "module", sc.module, "slot", slot, "err", rvName(err))
			continue
		}
		if ti.Flags&p11.CKF_TOKEN_INITIALIZED == 0 {
			sc.log.Debug("pkcs11: slot skipped: token not initialised", "module", sc.module, "slot", slot)
			continue
		}
		ti.Label, ti.SerialNumber = trim(ti.Label), trim(ti.SerialNumber)
		ti.ManufacturerID, ti.Model = trim(ti.ManufacturerID), trim(ti.Model)
		seen = append(seen, fmt.Sprintf("%q (serial %s, slot %d)", ti.Label, ti.SerialNumber, slot))
		si, err := sc.c.GetSlotInfo(slot)
		if err != nil {
			sc.log.Debug("pkcs11: no slot info", "module", sc.module, "slot", slot, "err", rvName(err))
		}
		if !sc.set.selects(slot, ti, si, lib) {
			continue
		}
		chosen = append(chosen, token{slot: slot, info: ti, loc: tokenLocation(ti.Label, ti.SerialNumber)})
	}
	if len(chosen) == 0 {
		have := "none is initialised"
		if len(seen) > 0 {
			have = "it has " + strings.Join(seen, ", ")
		}
		return fmt.Errorf("pkcs11: module %s: no initialised token matches %s: %s", sc.module, sc.set.selection(), have)
	}
	for _, tok := range chosen {
		if err := sc.token(ctx, tok); err != nil {
			return err
		}
	}
	return nil
}

func trim(s string) string { return strings.TrimRight(s, " \x00") }

// selects reports whether a token matches every token attribute given.
func (s settings) selects(slot uint, ti p11.TokenInfo, si p11.SlotInfo, lib p11.Info) bool {
	have := map[string]string{
		"token":                ti.Label,
		"manufacturer":         ti.ManufacturerID,
		"serial":               ti.SerialNumber,
		"model":                ti.Model,
		"slot-id":              strconv.FormatUint(uint64(slot), 10),
		"slot-description":     trim(si.SlotDescription),
		"slot-manufacturer":    trim(si.ManufacturerID),
		"library-manufacturer": trim(lib.ManufacturerID),
		"library-description":  trim(lib.LibraryDescription),
	}
	for _, k := range tokenSelectors {
		want, ok := s.attrs[k]
		if !ok {
			continue
		}
		if k == "library-version" {
			v := lib.LibraryVersion
			if want != fmt.Sprintf("%d.%d", v.Major, v.Minor) && want != strconv.Itoa(int(v.Major)) {
				return false
			}
			continue
		}
		if k == "slot-id" {
			n, _ := strconv.ParseUint(want, 10, 64)
			if n != uint64(slot) {
				return false
			}
			continue
		}
		if have[k] != want {
			return false
		}
	}
	return true
}

// problem emits a finding with Error at a token's location.
func (sc *scan) problem(tok token, msg string) error {
	sc.log.Warn("pkcs11: token problem", "location", tok.loc.String(), "problem", msg)
	return sc.emit(protocol.Finding{Location: tok.loc, Source: protocol.SchemePKCS11, Format: FormatPKCS11,
		Error: msg, SeenAt: sc.cfg.Now()})
}

// token scans one token: one session, at most one login, the objects.
func (sc *scan) token(ctx context.Context, tok token) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	name := fmt.Sprintf("token %q", tok.info.Label)
	sh, err := sc.c.OpenSession(tok.slot, p11.CKF_SERIAL_SESSION)
	if err != nil {
		return sc.problem(tok, fmt.Sprintf("%s: cannot open a session: %s", name, rvName(err)))
	}
	defer func() {
		if err := sc.c.CloseSession(sh); err != nil {
			sc.log.Debug("pkcs11: C_CloseSession failed", "location", tok.loc.String(), "err", rvName(err))
		}
	}()

	loggedIn := false
	if sc.set.hasPIN {
		msg, ok := sc.login(ctx, sh, tok, name)
		if err := ctx.Err(); err != nil {
			return err
		}
		if ok {
			loggedIn = true
			defer func() { _ = sc.c.Logout(sh) }()
		} else if err := sc.problem(tok, msg); err != nil {
			return err
		}
	} else {
		sc.log.Info("pkcs11: no PIN given: only public objects are listed, certificates are not paired with their private keys",
			"location", tok.loc.String())
		if sc.set.keys {
			msg := name + ": no PIN given (pin-value or pin-source): only public objects are listed; private and secret keys are not"
			if err := sc.problem(tok, msg); err != nil {
				return err
			}
		}
	}

	objs, err := sc.objects(ctx, sh)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return sc.problem(tok, fmt.Sprintf("%s: cannot list objects: %v", name, err))
	}
	return sc.report(ctx, tok, objs, loggedIn)
}

// login logs in once, never again: a real HSM locks its PIN after a few
// wrong attempts, and a scan runs on a schedule. It returns the problem to
// report when it did not log in.
func (sc *scan) login(ctx context.Context, sh p11.SessionHandle, tok token, name string) (string, bool) {
	f := tok.info.Flags
	switch {
	case f&p11.CKF_USER_PIN_LOCKED != 0:
		return name + ": the user PIN is locked (CKF_USER_PIN_LOCKED): not logged in; the token's security officer must unblock it", false
	case f&p11.CKF_USER_PIN_FINAL_TRY != 0:
		return name + ": one wrong PIN more locks this token (CKF_USER_PIN_FINAL_TRY), so the bot does not try: " +
			"log in once by hand with the right PIN to reset the counter", false
	case f&p11.CKF_USER_PIN_INITIALIZED == 0:
		return name + ": the token has no user PIN yet (CKF_USER_PIN_INITIALIZED not set): not logged in", false
	}
	if ctx.Err() != nil {
		return "", false
	}
	err := sc.c.Login(sh, p11.CKU_USER, sc.set.pin.Reveal())
	switch {
	case err == nil:
		return "", true
	case isRV(err, p11.CKR_USER_ALREADY_LOGGED_IN):
		// Another session of this process is logged in to the token.
		return "", true
	}
	var msg string
	switch {
	case isRV(err, p11.CKR_PIN_INCORRECT):
		msg = name + ": wrong PIN (CKR_PIN_INCORRECT): not logged in, and not tried again (an HSM locks its PIN after a few wrong attempts)"
	case isRV(err, p11.CKR_PIN_LOCKED):
		msg = name + ": the user PIN is locked (CKR_PIN_LOCKED): the token's security officer must unblock it"
	case isRV(err, p11.CKR_PIN_EXPIRED):
		msg = name + ": the PIN has expired (CKR_PIN_EXPIRED): change it on the token"
	case isRV(err, p11.CKR_PIN_LEN_RANGE), isRV(err, p11.CKR_PIN_INVALID):
		msg = name + ": the PIN has a length or characters this token refuses (" + rvName(err) + ")"
	case isRV(err, p11.CKR_USER_PIN_NOT_INITIALIZED):
		msg = name + ": the token has no user PIN yet (CKR_USER_PIN_NOT_INITIALIZED)"
	default:
		msg = name + ": login failed: " + rvName(err)
	}
	if ti, err := sc.c.GetTokenInfo(tok.slot); err == nil {
		switch {
		case ti.Flags&p11.CKF_USER_PIN_LOCKED != 0:
			msg += "; the token now reports its user PIN locked"
		case ti.Flags&p11.CKF_USER_PIN_FINAL_TRY != 0:
			msg += "; the token now reports one attempt left before it locks"
		case ti.Flags&p11.CKF_USER_PIN_COUNT_LOW != 0:
			msg += "; the token reports few attempts left"
		}
	}
	return msg + "; only public objects are listed", false
}

// object is one object of a token, read.
type object struct {
	class uint
	label string
	id    []byte
	// certificates
	certType uint
	der      []byte
	// keys
	key KeyObject
	// content tells apart objects that share class, label and id.
	content []byte
}

// typeName is the RFC 7512 type of an object class.
func typeName(class uint) string {
	switch class {
	case p11.CKO_CERTIFICATE:
		return "cert"
	case p11.CKO_PRIVATE_KEY:
		return "private"
	case p11.CKO_PUBLIC_KEY:
		return "public"
	case p11.CKO_SECRET_KEY:
		return "secret-key"
	}
	return "data"
}

// objects lists and reads the certificates and keys the session sees.
func (sc *scan) objects(ctx context.Context, sh p11.SessionHandle) ([]object, error) {
	if err := sc.c.FindObjectsInit(sh, nil); err != nil {
		return nil, fmt.Errorf("C_FindObjectsInit: %s", rvName(err))
	}
	var handles []p11.ObjectHandle
	for {
		if err := ctx.Err(); err != nil {
			_ = sc.c.FindObjectsFinal(sh)
			return nil, err
		}
		hs, _, err := sc.c.FindObjects(sh, 256)
		if err != nil {
			_ = sc.c.FindObjectsFinal(sh)
			return nil, fmt.Errorf("C_FindObjects: %s", rvName(err))
		}
		if len(hs) == 0 {
			break
		}
		handles = append(handles, hs...)
	}
	if err := sc.c.FindObjectsFinal(sh); err != nil {
		return nil, fmt.Errorf("C_FindObjectsFinal: %s", rvName(err))
	}
	var objs []object
	for _, h := range handles {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		a := sc.attrs(sh, h, p11.CKA_CLASS, p11.CKA_LABEL, p11.CKA_ID)
		cls, ok := ulong(a[p11.CKA_CLASS])
		if !ok {
			continue
		}
		o := object{class: cls, label: string(a[p11.CKA_LABEL]), id: a[p11.CKA_ID]}
		switch cls {
		case p11.CKO_CERTIFICATE:
			c := sc.attrs(sh, h, p11.CKA_CERTIFICATE_TYPE, p11.CKA_VALUE)
			o.certType, _ = ulong(c[p11.CKA_CERTIFICATE_TYPE])
			o.der = c[p11.CKA_VALUE]
			o.content = o.der
		case p11.CKO_PRIVATE_KEY, p11.CKO_PUBLIC_KEY, p11.CKO_SECRET_KEY:
			o.key, o.content = sc.readKey(sh, h, cls)
			o.key.Class, o.key.Label, o.key.ID = typeName(cls), o.label, o.id
		default:
			continue
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// attrs reads attributes of an object. An attribute the object does not
// have, or keeps secret, is absent from the map; nothing secret is asked.
func (sc *scan) attrs(sh p11.SessionHandle, h p11.ObjectHandle, types ...uint) map[uint][]byte {
	out := map[uint][]byte{}
	tmpl := make([]*p11.Attribute, len(types))
	for i, t := range types {
		tmpl[i] = p11.NewAttribute(t, nil)
	}
	if got, err := sc.c.GetAttributeValue(sh, h, tmpl); err == nil {
		for _, a := range got {
			if a.Value != nil {
				out[a.Type] = a.Value
			}
		}
		return out
	}
	// One attribute spoilt the batch (not present, or sensitive): ask
	// for each alone.
	for _, t := range types {
		got, err := sc.c.GetAttributeValue(sh, h, []*p11.Attribute{p11.NewAttribute(t, nil)})
		if err == nil && len(got) == 1 && got[0].Value != nil {
			out[t] = got[0].Value
		}
	}
	return out
}

func ulong(b []byte) (uint, bool) {
	switch len(b) {
	case 8:
		return uint(binary.NativeEndian.Uint64(b)), true
	case 4:
		return uint(binary.NativeEndian.Uint32(b)), true
	}
	return 0, false
}

func boolAttr(a map[uint][]byte, t uint) *bool {
	v, ok := a[t]
	if !ok || len(v) != 1 {
		return nil
	}
	b := v[0] != 0
	return &b
}

// usages are the key attributes that say what a key may do.
var usages = []struct {
	attr uint
	name string
}{
	{p11.CKA_SIGN, "sign"}, {p11.CKA_VERIFY, "verify"}, {p11.CKA_ENCRYPT, "encrypt"}, {p11.CKA_DECRYPT, "decrypt"},
	{p11.CKA_WRAP, "wrap"}, {p11.CKA_UNWRAP, "unwrap"}, {p11.CKA_DERIVE, "derive"},
}

// readKey describes a key from its public attributes; its value is never
// asked for. content is public material that tells two keys apart.
func (sc *scan) readKey(sh p11.SessionHandle, h p11.ObjectHandle, class uint) (KeyObject, []byte) {
	types := []uint{p11.CKA_KEY_TYPE, p11.CKA_MODULUS_BITS, p11.CKA_MODULUS, p11.CKA_EC_PARAMS, p11.CKA_PRIME,
		p11.CKA_EXTRACTABLE, p11.CKA_SENSITIVE, p11.CKA_ALWAYS_SENSITIVE, p11.CKA_NEVER_EXTRACTABLE, p11.CKA_LOCAL}
	if class == p11.CKO_SECRET_KEY {
		types = append(types, p11.CKA_VALUE_LEN, p11.CKA_CHECK_VALUE)
	}
	if class == p11.CKO_PUBLIC_KEY {
		types = append(types, p11.CKA_EC_POINT)
	}
	for _, u := range usages {
		types = append(types, u.attr)
	}
	a := sc.attrs(sh, h, types...)
	var k KeyObject
	kt, _ := ulong(a[p11.CKA_KEY_TYPE])
	k.Algorithm, k.Bits = keyType(kt, a)
	if class != p11.CKO_PUBLIC_KEY {
		k.Extractable = boolAttr(a, p11.CKA_EXTRACTABLE)
		k.Sensitive = boolAttr(a, p11.CKA_SENSITIVE)
		k.AlwaysSensitive = boolAttr(a, p11.CKA_ALWAYS_SENSITIVE)
		k.NeverExtractable = boolAttr(a, p11.CKA_NEVER_EXTRACTABLE)
	}
	k.Local = boolAttr(a, p11.CKA_LOCAL)
	for _, u := range usages {
		if b := boolAttr(a, u.attr); b != nil && *b {
			k.Usage = append(k.Usage, u.name)
		}
	}
	var content []byte
	for _, t := range []uint{p11.CKA_MODULUS, p11.CKA_EC_POINT, p11.CKA_PRIME, p11.CKA_CHECK_VALUE} {
		content = append(content, a[t]...)
	}
	return k, content
}

// keyType names a key type and finds its size in bits.
func keyType(kt uint, a map[uint][]byte) (string, int) {
	switch kt {
	case p11.CKK_RSA:
		if n, ok := ulong(a[p11.CKA_MODULUS_BITS]); ok && n > 0 {
			return "RSA", int(n)
		}
		return "RSA", new(big.Int).SetBytes(a[p11.CKA_MODULUS]).BitLen()
	case p11.CKK_EC:
		_, bits := curve(a[p11.CKA_EC_PARAMS])
		return "ECDSA", bits
	case ckkECEdwards:
		if name, bits := curve(a[p11.CKA_EC_PARAMS]); name == "Ed448" {
			return name, bits
		}
		return "Ed25519", 256
	case ckkECMontgomry:
		if name, bits := curve(a[p11.CKA_EC_PARAMS]); name == "X448" {
			return name, bits
		}
		return "X25519", 256
	case p11.CKK_DSA:
		return "DSA", new(big.Int).SetBytes(a[p11.CKA_PRIME]).BitLen()
	case p11.CKK_DH:
		return "DH", new(big.Int).SetBytes(a[p11.CKA_PRIME]).BitLen()
	case p11.CKK_AES:
		return "AES", valueBits(a)
	case p11.CKK_DES:
		return "DES", 56
	case p11.CKK_DES2:
		return "2DES", 112
	case p11.CKK_DES3:
		return "3DES", 168
	case p11.CKK_GENERIC_SECRET:
		return "GenericSecret", valueBits(a)
	case p11.CKK_SHA_1_HMAC:
		return "HMAC-SHA1", valueBits(a)
	case p11.CKK_SHA224_HMAC:
		return "HMAC-SHA224", valueBits(a)
	case p11.CKK_SHA256_HMAC:
		return "HMAC-SHA256", valueBits(a)
	case p11.CKK_SHA384_HMAC:
		return "HMAC-SHA384", valueBits(a)
	case p11.CKK_SHA512_HMAC:
		return "HMAC-SHA512", valueBits(a)
	case p11.CKK_CAMELLIA:
		return "Camellia", valueBits(a)
	}
	return fmt.Sprintf("CKK_0x%X", kt), valueBits(a)
}

func valueBits(a map[uint][]byte) int {
	n, _ := ulong(a[p11.CKA_VALUE_LEN])
	return int(n) * 8
}

// curves are the named curves a key's CKA_EC_PARAMS may give.
var curves = map[string]struct {
	name string
	bits int
}{
	"1.2.840.10045.3.1.7":   {"P-256", 256},
	"1.3.132.0.34":          {"P-384", 384},
	"1.3.132.0.35":          {"P-521", 521},
	"1.3.132.0.33":          {"P-224", 224},
	"1.2.840.10045.3.1.1":   {"P-192", 192},
	"1.3.132.0.10":          {"secp256k1", 256},
	"1.3.36.3.3.2.8.1.1.7":  {"brainpoolP256r1", 256},
	"1.3.36.3.3.2.8.1.1.11": {"brainpoolP384r1", 384},
	"1.3.36.3.3.2.8.1.1.13": {"brainpoolP512r1", 512},
	"1.3.101.112":           {"Ed25519", 256},
	"1.3.101.113":           {"Ed448", 456},
	"1.3.101.110":           {"X25519", 256},
	"1.3.101.111":           {"X448", 448},
}

// curve reads CKA_EC_PARAMS: a named curve's OID, or (PKCS#11 3.0, for
// Edwards and Montgomery keys) its name as a PrintableString.
func curve(params []byte) (string, int) {
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(params, &oid); err == nil {
		c := curves[oid.String()]
		return c.name, c.bits
	}
	var name string
	if _, err := asn1.Unmarshal(params, &name); err == nil {
		switch name {
		case "edwards25519":
			return "Ed25519", 256
		case "edwards448":
			return "Ed448", 456
		case "curve25519":
			return "X25519", 256
		case "curve448":
			return "X448", 448
		}
	}
	return "", 0
}

// report emits the token's certificates, then its keys when asked.
func (sc *scan) report(ctx context.Context, tok token, objs []object, loggedIn bool) error {
	want := func(o object) bool {
		if v, ok := sc.set.attrs["object"]; ok && v != o.label {
			return false
		}
		if v, ok := sc.set.attrs["id"]; ok && v != string(o.id) {
			return false
		}
		if v, ok := sc.set.attrs["type"]; ok && v != typeName(o.class) {
			return false
		}
		if o.class == p11.CKO_CERTIFICATE {
			return sc.set.certs
		}
		return sc.set.keys
	}
	locs := locations(tok.loc, objs)
	// A private key and a certificate with the same CKA_ID are a pair.
	privByID := map[string]*object{}
	for i := range objs {
		if o := &objs[i]; o.class == p11.CKO_PRIVATE_KEY && len(o.id) > 0 && privByID[string(o.id)] == nil {
			privByID[string(o.id)] = o
		}
	}
	certs, keys := 0, 0
	for _, pass := range []bool{true, false} {
		for i, o := range objs {
			if (o.class == p11.CKO_CERTIFICATE) != pass || !want(o) {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			f := protocol.Finding{Location: locs[i], Source: protocol.SchemePKCS11, Format: FormatPKCS11, SeenAt: sc.cfg.Now()}
			if o.class == p11.CKO_CERTIFICATE {
				if o.certType != p11.CKC_X_509 {
					sc.log.Debug("pkcs11: certificate object skipped: not X.509", "location", f.Location.String(), "type", o.certType)
					continue
				}
				if len(o.der) == 0 {
					f.Error = "certificate object has no value (CKA_VALUE)"
				} else {
					f.Chain = [][]byte{o.der}
				}
				if k := privByID[string(o.id)]; k != nil && len(o.id) > 0 {
					f.Key = &protocol.KeyInfo{Algorithm: k.key.Algorithm, Bits: k.key.Bits, Label: k.key.Label,
						ID: hex.EncodeToString(k.key.ID), Extractable: k.key.Extractable, Sensitive: k.key.Sensitive, Usage: k.key.Usage}
				}
				certs++
			} else {
				k := o.key
				k.Location = f.Location
				f.Key = &protocol.KeyInfo{Algorithm: k.Algorithm, Bits: k.Bits, Class: k.Class, Label: k.Label,
					ID: hex.EncodeToString(k.ID), Extractable: k.Extractable, Sensitive: k.Sensitive, Usage: k.Usage}
				sc.log.Debug("pkcs11: key", "location", f.Location.String(), "algorithm", k.Algorithm, "bits", k.Bits,
					"usage", strings.Join(k.Usage, ","))
				if sc.cfg.KeyDetails != nil {
					sc.cfg.KeyDetails(k)
				}
				keys++
			}
			if err := sc.emit(f); err != nil {
				return err
			}
		}
	}
	sc.log.Info("pkcs11: token scanned", "location", tok.loc.String(), "slot", tok.slot, "logged_in", loggedIn,
		"certificates", certs, "keys", keys)
	return nil
}

// locations names every object. Class, label and id usually tell objects
// apart; those that share all three get x-sha256=, the start of the SHA-256
// of public material (a certificate's DER, a key's modulus or EC point, a
// secret key's check value), and if even that is shared, x-n=, their rank
// among their twins in the token's listing.
func locations(tok protocol.Location, objs []object) []protocol.Location {
	key := func(o object) string { return fmt.Sprintf("%d\x00%s\x00%x", o.class, o.label, o.id) }
	count := map[string]int{}
	for _, o := range objs {
		count[key(o)]++
	}
	extras := make([]string, len(objs))
	extraCount := map[string]int{}
	for i, o := range objs {
		if count[key(o)] < 2 {
			continue
		}
		if len(o.content) > 0 {
			sum := sha256.Sum256(o.content)
			extras[i] = "x-sha256=" + hex.EncodeToString(sum[:8])
		}
		extraCount[key(o)+extras[i]]++
	}
	rank := map[string]int{}
	locs := make([]protocol.Location, len(objs))
	for i, o := range objs {
		k := key(o) + extras[i]
		if extraCount[k] > 1 {
			rank[k]++
			if extras[i] != "" {
				extras[i] += ";"
			}
			extras[i] += "x-n=" + strconv.Itoa(rank[k])
		}
		locs[i] = objectLocation(tok, o.label, typeName(o.class), o.id, extras[i])
	}
	return locs
}

func isRV(err error, rv uint) bool {
	var e p11.Error
	return errors.As(err, &e) && uint(e) == rv
}

// rvName names a PKCS#11 return value: CKR_PIN_INCORRECT.
func rvName(err error) string {
	var e p11.Error
	if !errors.As(err, &e) {
		return err.Error()
	}
	s := e.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s[i+2:], "CKR_") {
		return s[i+2:]
	}
	return fmt.Sprintf("CKR 0x%X", uint(e))
}
