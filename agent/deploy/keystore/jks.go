package keystore

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jks "github.com/pavlo-v-chernykh/keystore-go/v4"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/protocol"
)

// jksMagic starts every JKS file (0xFEEDFEED); a JCEKS starts 0xCECECECE
// and a PKCS#12 with a DER SEQUENCE.
const jksMagic = 0xFEEDFEED

// jksFormat reads and writes Java keystores with keystore-go. Entries
// other than the one replaced are written back as they were read: trusted
// certificates in clear, other private keys still encrypted under their
// own passwords, which the bot need not know.
type jksFormat struct{}

func (jksFormat) name() string { return "JKS" }

func (jksFormat) open(data []byte, pw string) (store, error) {
	if len(data) < 4 || binary.BigEndian.Uint32(data) != jksMagic {
		hint := ""
		switch {
		case len(data) > 0 && data[0] == 0x30:
			hint = " (it looks like PKCS#12, Java's default keystore type since 9: deploy it as kind pkcs12)"
		case len(data) >= 4 && binary.BigEndian.Uint32(data) == 0xCECECECE:
			hint = " (it is a JCEKS keystore, which the bot does not write)"
		}
		return nil, errors.New("not a JKS keystore" + hint)
	}
	ks := jks.New(jks.WithCaseExactAliases(), jks.WithOrderedAliases())
	pwb := []byte(pw)
	defer clear(pwb)
	if err := ks.Load(bytes.NewReader(data), pwb); err != nil {
		// With the magic right, keystore-go fails on the digest (the
		// password) or on a broken file; only the first says "digest".
		if strings.Contains(err.Error(), "digest") {
			return nil, fmt.Errorf("%w: the keystore's integrity check fails", errWrongPassword)
		}
		return nil, fmt.Errorf("JKS keystore does not parse: %w", err)
	}
	return &jksStore{ks: ks}, nil
}

type jksStore struct {
	ks jks.KeyStore
}

func (s *jksStore) keyAliases() []string {
	var out []string
	for _, a := range s.ks.Aliases() {
		if s.ks.IsPrivateKeyEntry(a) {
			out = append(out, a)
		}
	}
	return out
}

// pick finds the private-key entry: the alias given (Java compares
// aliases without case), else the only one.
func (s *jksStore) pick(alias string) (string, *x509.Certificate, error) {
	keys := s.keyAliases()
	if alias == "" {
		switch len(keys) {
		case 0:
			return "", nil, errors.New("the keystore has no private-key entry to replace")
		case 1:
			alias = keys[0]
		default:
			return "", nil, fmt.Errorf("the keystore has %d private-key entries (%s): the job must name one (alias)", len(keys), strings.Join(keys, ", "))
		}
	} else {
		i := slices.IndexFunc(s.ks.Aliases(), func(a string) bool { return strings.EqualFold(a, alias) })
		if i < 0 {
			return "", nil, fmt.Errorf("alias %q is not in the keystore (private-key entries: %s)", alias, strings.Join(keys, ", "))
		}
		alias = s.ks.Aliases()[i]
		if !s.ks.IsPrivateKeyEntry(alias) {
			return "", nil, fmt.Errorf("alias %q is a trusted-certificate entry, not a private-key entry", alias)
		}
	}
	chain, err := s.ks.GetPrivateKeyEntryCertificateChain(alias)
	if err != nil {
		return "", nil, fmt.Errorf("entry %q: %w", alias, err)
	}
	if len(chain) == 0 {
		return alias, nil, nil
	}
	leaf, err := x509.ParseCertificate(chain[0].Content)
	if err != nil {
		return "", nil, fmt.Errorf("entry %q: certificate: %w", alias, err)
	}
	return alias, leaf, nil
}

// replace sets alias's key and chain. The entry's key password stays the
// store password (what Tomcat, Jetty and keytool assume by default) unless
// the old key was under another password the bot knows: then that one,
// so a server configured with its own keyPass still opens it. An old key
// that no known password opens is refused: the server's keyPass is
// unknown, and the new key would be under one it does not have.
func (s *jksStore) replace(alias string, m deploy.Material, pw string, known []protocol.Secret, now time.Time) ([]byte, []string, error) {
	var notes []string
	keyPW, found := "", false
	for _, cand := range append([]string{pw}, reveal(known)...) {
		b := []byte(cand)
		e, err := s.ks.GetPrivateKeyEntry(alias, b)
		clear(b)
		if err == nil {
			clear(e.PrivateKey)
			keyPW, found = cand, true
			break
		}
	}
	switch {
	case !found:
		return nil, nil, errors.New("the entry's key is under a password that none of the known ones opens: the server's key password is unknown, so the bot refuses to set one")
	case keyPW != pw:
		notes = append(notes, "the entry keeps its own key password (not the store password)")
	}
	der, err := x509.MarshalPKCS8PrivateKey(m.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("new key: %w", err)
	}
	defer clear(der)
	chain := []jks.Certificate{{Type: "X.509", Content: m.Certificate.Raw}}
	for _, c := range m.Chain {
		chain = append(chain, jks.Certificate{Type: "X.509", Content: c.Raw})
	}
	kb := []byte(keyPW)
	defer clear(kb)
	if err := s.ks.SetPrivateKeyEntry(alias, jks.PrivateKeyEntry{CreationTime: now, PrivateKey: der, CertificateChain: chain}, kb); err != nil {
		return nil, nil, fmt.Errorf("set entry: %w", err)
	}
	var out bytes.Buffer
	pb := []byte(pw)
	defer clear(pb)
	if err := s.ks.Store(&out, pb); err != nil {
		return nil, nil, fmt.Errorf("encode: %w", err)
	}
	if others := len(s.ks.Aliases()) - 1; others > 0 {
		notes = append(notes, fmt.Sprintf("%d other entries kept as they were", others))
	}
	return out.Bytes(), notes, nil
}

func reveal(ss []protocol.Secret) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.Reveal())
	}
	return out
}
