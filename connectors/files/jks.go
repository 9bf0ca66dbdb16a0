package files

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pavlo-v-chernykh/keystore-go/v4"
	"github.com/square/certigo/jceks"

	"github.com/emsign/bot/protocol"
)

// noPasswordFits is the problem reported on a keystore no password opens.
const noPasswordFits = "no password fits"

// parseJKS reads a JKS keystore with keystore-go. Certificates are stored in
// clear in a JKS; only the integrity digest and the private keys need the
// password. keystore-go fills its entries before it compares the digest, so
// a store no password fits still yields its certificates: they are
// reported, with a problem on the file saying that no password fits.
func parseJKS(data []byte, pws []string) []Entry {
	// keystore-go allocates whatever a length field says before reading;
	// a file that lies about a length must not get that far.
	if err := checkJKSLayout(data); err != nil {
		return []Entry{{Format: protocol.FormatJKS, Err: "JKS keystore does not parse: " + err.Error()}}
	}
	var ks keystore.KeyStore
	storeOpened := false
	for _, pw := range pws {
		ks = keystore.New(keystore.WithCaseExactAliases(), keystore.WithOrderedAliases())
		// With the layout checked, the digest is the only thing Load can
		// still fail on.
		if err := ks.Load(bytes.NewReader(data), []byte(pw)); err == nil {
			storeOpened = true
			break
		}
	}
	var out []Entry
	keysClosed := 0
	for _, alias := range ks.Aliases() {
		if ks.IsTrustedCertificateEntry(alias) {
			e, err := ks.GetTrustedCertificateEntry(alias)
			if err != nil || (e.Certificate.Type != "X.509" && e.Certificate.Type != "X509") {
				continue
			}
			out = append(out, Entry{Name: alias, Format: protocol.FormatJKS, Chain: [][]byte{e.Certificate.Content}})
			continue
		}
		chain, err := ks.GetPrivateKeyEntryCertificateChain(alias)
		if err != nil || len(chain) == 0 {
			continue
		}
		e := Entry{Name: alias, Format: protocol.FormatJKS}
		for _, c := range chain {
			e.Chain = append(e.Chain, c.Content)
		}
		e.Key = openJKSKey(ks, alias, pws)
		if e.Key.Bits == 0 {
			keysClosed++
			// The key exists; its algorithm is the certificate's.
			if c, err := x509.ParseCertificate(e.Chain[0]); err == nil {
				e.Key.Algorithm, _ = protocol.PublicKeyInfo(c.PublicKey)
			}
		}
		out = append(out, e)
	}
	switch {
	case !storeOpened:
		out = append(out, Entry{Format: protocol.FormatJKS, Err: noPasswordFits + ": certificates were read without checking the keystore's integrity; private keys were not opened"})
	case keysClosed > 0:
		out = append(out, Entry{Format: protocol.FormatJKS, Err: fmt.Sprintf("%s for %d private key(s): the keystore password opened the store but not these keys", noPasswordFits, keysClosed)})
	}
	return out
}

// openJKSKey decrypts a key entry with the first password that fits (a key
// may have its own password) and describes it; Bits stays 0 when none fits.
func openJKSKey(ks keystore.KeyStore, alias string, pws []string) *protocol.KeyInfo {
	for _, pw := range pws {
		e, err := ks.GetPrivateKeyEntry(alias, []byte(pw))
		if err != nil {
			continue
		}
		priv, err := x509.ParsePKCS8PrivateKey(e.PrivateKey)
		clear(e.PrivateKey)
		if err != nil {
			continue
		}
		return protocol.PrivateKeyInfo(priv)
	}
	return &protocol.KeyInfo{}
}

// checkJKSLayout walks the JKS layout (OpenJDK's JavaKeyStore.engineLoad)
// and checks that every length fits in the data, without reading anything
// it does not need to. It is a guard for keystore-go, not a parser.
func checkJKSLayout(data []byte) error {
	r := layoutReader{data: data}
	if magic := r.u32(); magic != binary.BigEndian.Uint32([]byte(magicJKS)) {
		return errors.New("bad magic")
	}
	version := r.u32()
	if version != 1 && version != 2 {
		return fmt.Errorf("unknown version %d", version)
	}
	count := r.u32()
	for i := uint32(0); i < count && r.err == nil; i++ {
		tag := r.u32()
		r.skip(int(r.u16())) // alias
		r.skip(8)            // date
		certs := uint32(1)
		switch tag {
		case 1: // private key: encrypted key, then the chain
			r.skip(int(r.u32()))
			certs = r.u32()
		case 2: // trusted certificate
		default:
			return fmt.Errorf("entry %d: unknown tag %d", i, tag)
		}
		for j := uint32(0); j < certs && r.err == nil; j++ {
			if version == 2 {
				r.skip(int(r.u16())) // certificate type
			}
			r.skip(int(r.u32()))
		}
	}
	r.skip(20) // SHA-1 digest
	return r.err
}

// layoutReader reads big-endian fields and remembers the first overrun.
type layoutReader struct {
	data []byte
	err  error
}

func (r *layoutReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.data) {
		r.err = errors.New("truncated: a length points past the end of the file")
		return nil
	}
	b := r.data[:n]
	r.data = r.data[n:]
	return b
}

func (r *layoutReader) skip(n int) { r.take(n) }

func (r *layoutReader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *layoutReader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

// parseJCEKS reads a JCEKS keystore with certigo's jceks package, since
// keystore-go reads only JKS. It reads the layout without the password
// first (trusted certificates are stored in clear), then checks the
// integrity with each password. certigo returns the chain of a key entry
// only with the key, so a key entry no password opens is a problem on that
// entry, and secret-key entries (which JCEKS allows) stop the reading: the
// entries before them are reported with a problem.
func parseJCEKS(data []byte, pws []string) []Entry {
	limits := []jceks.ParseOption{jceks.WithMaxCertificateBytes(uint(len(data))), jceks.WithMaxPrivateKeyBytes(uint(len(data)))}
	var ks jceks.KeyStore
	var problems []string
	if err := ks.ParseWithOptions(bytes.NewReader(data), nil, limits...); err != nil {
		if errors.Is(err, jceks.ErrUnsupportedJCEKSData) {
			problems = append(problems, "JCEKS entries after this one are not supported yet: "+err.Error())
		} else {
			return []Entry{{Format: protocol.FormatJCEKS, Err: "JCEKS keystore does not parse: " + err.Error()}}
		}
	}
	storeOpened := false
	if len(problems) == 0 {
		for _, pw := range pws {
			var check jceks.KeyStore
			if check.ParseWithOptions(bytes.NewReader(data), []byte(pw), limits...) == nil {
				storeOpened = true
				break
			}
		}
		if !storeOpened {
			problems = append(problems, noPasswordFits+": trusted certificates were read without checking the keystore's integrity; key entries were not opened")
		}
	}
	var out []Entry
	for _, alias := range ks.ListCerts() {
		c, err := ks.GetCert(alias)
		if err != nil || c == nil {
			continue
		}
		out = append(out, Entry{Name: alias, Format: protocol.FormatJCEKS, Chain: [][]byte{bytes.Clone(c.Raw)}})
	}
	for _, alias := range ks.ListPrivateKeys() {
		out = append(out, openJCEKSKey(&ks, alias, pws))
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	if len(problems) > 0 {
		out = append(out, Entry{Format: protocol.FormatJCEKS, Err: strings.Join(problems, "; ")})
	}
	return out
}

// openJCEKSKey opens a JCEKS key entry with the first password that fits.
func openJCEKSKey(ks *jceks.KeyStore, alias string, pws []string) Entry {
	for _, pw := range pws {
		priv, certs, err := ks.GetPrivateKeyAndCerts(alias, []byte(pw))
		if err != nil || len(certs) == 0 {
			continue
		}
		e := Entry{Name: alias, Format: protocol.FormatJCEKS, Key: protocol.PrivateKeyInfo(priv)}
		for _, c := range certs {
			e.Chain = append(e.Chain, bytes.Clone(c.Raw))
		}
		return e
	}
	return Entry{Name: alias, Format: protocol.FormatJCEKS, Err: noPasswordFits + " for this key entry: the JCEKS reader gives its certificates only with the key"}
}
