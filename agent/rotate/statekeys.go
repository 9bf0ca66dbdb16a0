package rotate

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/agent/internal/atomicfile"
	"github.com/emsign/bot/agent/state"
	"github.com/emsign/bot/protocol"
)

// RotationsDir is the directory under the state directory holding the
// keys of rotations in progress, one <order>.key file each (0600).
const RotationsDir = "rotations"

// PEM block types of a persisted rotation. A token key is named, never
// held: its label and ID ride as PEM headers and the PIN is never stored.
const (
	blockKey      = "PRIVATE KEY"
	blockTokenKey = "EMSIGN TOKEN KEY"
	blockCSR      = "CERTIFICATE REQUEST"
)

var idRE = regexp.MustCompile(protocol.IDPattern)

// persisted is what a rotation keeps across a restart: the key it made
// (or the token key's name) and the CSR it posted, so that a bot restarted
// mid-rotation, or a job delivered again, posts the same CSR and the
// control plane answers with the certificate it already ordered.
type persisted struct {
	Key   crypto.Signer
	Token *deploy.TokenKey
	CSR   []byte // PEM
}

// keyStore is the rotations directory.
type keyStore struct {
	dir string
}

func (s keyStore) name(order string) string { return order + ".key" }

// load reads the persisted state of order; ok is false when there is none.
func (s keyStore) load(order string) (p persisted, ok bool, err error) {
	raw, err := os.ReadFile(filepath.Join(s.dir, s.name(order)))
	if errors.Is(err, fs.ErrNotExist) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("read the key kept for order %s: %w", order, err)
	}
	for rest := raw; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case blockKey:
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return p, false, fmt.Errorf("the key kept for order %s (%s) does not parse: %w", order, filepath.Join(s.dir, s.name(order)), err)
			}
			signer, ok := k.(crypto.Signer)
			if !ok {
				return p, false, fmt.Errorf("the key kept for order %s is a %T, not a signing key", order, k)
			}
			p.Key = signer
		case blockTokenKey:
			p.Token = &deploy.TokenKey{Label: b.Headers["Label"], ID: b.Headers["ID"]}
		case blockCSR:
			p.CSR = pem.EncodeToMemory(&pem.Block{Type: blockCSR, Bytes: b.Bytes})
		}
	}
	if p.Key == nil && p.Token == nil && p.CSR == nil {
		return p, false, fmt.Errorf("the file kept for order %s (%s) holds nothing usable", order, filepath.Join(s.dir, s.name(order)))
	}
	return p, true, nil
}

// save writes p for order atomically, 0600, in a 0700 directory: it must
// be on disk before the CSR is posted.
func (s keyStore) save(order string, p persisted) error {
	var out []byte
	if p.Key != nil {
		der, err := x509.MarshalPKCS8PrivateKey(p.Key)
		if err != nil {
			return fmt.Errorf("keep the key of order %s: %w", order, err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: blockKey, Bytes: der})...)
	}
	if p.Token != nil {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: blockTokenKey,
			Headers: map[string]string{"Label": p.Token.Label, "ID": p.Token.ID}})...)
	}
	if p.CSR != nil {
		out = append(out, p.CSR...)
	}
	if err := state.EnsureDir(s.dir); err != nil {
		return fmt.Errorf("keep the key of order %s: %w", order, err)
	}
	if err := atomicfile.Write(s.dir, s.name(order), out, state.FileMode); err != nil {
		return fmt.Errorf("keep the key of order %s: %w", order, err)
	}
	return nil
}

// remove deletes what was kept for order; none is fine.
func (s keyStore) remove(order string) error {
	err := atomicfile.Remove(s.dir, s.name(order))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the key kept for order %s: %w", order, err)
	}
	return nil
}
