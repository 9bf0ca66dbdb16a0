package rotate

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/agent/keygen"
	"github.com/emsign/bot/protocol"
)

// TokenKeyMaker makes and finds key pairs on a PKCS#11 token (the HSM
// package implements it). The signer it returns signs inside the token:
// the private key never leaves it. A signer that is an io.Closer is closed
// when the rotation ends (it may hold a session).
type TokenKeyMaker interface {
	// MakeKey generates a key pair of algorithm (a keygen name) on the
	// token spec names, with spec.Label and spec.ID ("" derives one).
	MakeKey(ctx context.Context, spec protocol.PKCS11Key, algorithm string) (crypto.Signer, deploy.TokenKey, error)
	// FindKey finds the key pair spec.Label / spec.ID names.
	FindKey(ctx context.Context, spec protocol.PKCS11Key) (crypto.Signer, deploy.TokenKey, error)
}

// errNoPKCS11 is the answer of a bot built without a TokenKeyMaker.
var errNoPKCS11 = errors.New("no PKCS#11 support in this build")

// rotKey is the key of one rotation.
type rotKey struct {
	signer crypto.Signer    // signs the CSR
	memory crypto.Signer    // the key itself, when the bot holds it (Material.Key)
	token  *deploy.TokenKey // the token key's name (Material.KeyRef)
	// existing: the key already at the location (not persisted: it is
	// there anyway).
	existing bool
	// csr is the CSR an earlier run of this order posted, if it kept one.
	csr []byte
	msg string
}

func (k *rotKey) close() {
	if c, ok := k.signer.(io.Closer); ok {
		_ = c.Close()
	}
}

// obtainKey finds or makes the key of rot: the existing one at the
// location, the one an earlier run kept for this order, or a new one where
// rot.Key says.
func (r *Rotator) obtainKey(ctx context.Context, rot protocol.Rotation, existing bool, loc *pemLocation) (*rotKey, error) {
	stored, kept, err := r.keys.load(rot.OrderID)
	if err != nil {
		return nil, err
	}
	spec := rot.Key
	onToken := spec.Where == protocol.KeyWherePKCS11
	if existing {
		switch {
		case onToken || rot.Deploy.Kind == protocol.DeployPKCS11:
			if spec.PKCS11 == nil {
				return nil, errors.New("key.pkcs11 is not set: the token of the existing key is not named")
			}
			if r.cfg.KeyMaker == nil {
				return nil, errNoPKCS11
			}
			signer, tk, err := r.cfg.KeyMaker.FindKey(ctx, *spec.PKCS11)
			if err != nil {
				return nil, fmt.Errorf("find the existing key on the token: %w", err)
			}
			k := &rotKey{signer: signer, token: &tk, existing: true,
				msg: fmt.Sprintf("kept the existing %s key on the token (label %q, id %s)", keygen.AlgorithmOf(signer.Public()), tk.Label, tk.ID)}
			if kept {
				k.csr = stored.CSR
			}
			return k, nil
		case rot.Deploy.Kind == protocol.DeployPEM && loc != nil:
			if !matches(loc.leaf, loc.key) {
				return nil, fmt.Errorf("the key in %s is not the key of the certificate in %s: no existing key to keep", loc.keyPath, rot.Deploy.CertPath)
			}
			k := &rotKey{signer: loc.key, memory: loc.key, existing: true,
				msg: fmt.Sprintf("kept the existing %s key of %s", keygen.AlgorithmOf(loc.key.Public()), loc.keyPath)}
			if kept {
				k.csr = stored.CSR
			}
			return k, nil
		default:
			return nil, fmt.Errorf("keeping the existing key (key pair \"existing\") is supported for pem and pkcs11 locations only, not %s", rot.Deploy.Kind)
		}
	}

	switch {
	case kept && onToken && stored.Token != nil:
		if r.cfg.KeyMaker == nil {
			return nil, errNoPKCS11
		}
		if spec.PKCS11 == nil {
			return nil, errors.New("key.pkcs11 is not set: the token is not named")
		}
		find := *spec.PKCS11
		find.Label, find.ID = stored.Token.Label, stored.Token.ID
		signer, tk, err := r.cfg.KeyMaker.FindKey(ctx, find)
		if err != nil {
			return nil, fmt.Errorf("find the key made on the token for order %s before (label %q, id %s): %w", rot.OrderID, stored.Token.Label, stored.Token.ID, err)
		}
		return &rotKey{signer: signer, token: &tk, csr: stored.CSR,
			msg: fmt.Sprintf("using the %s key made on the token for this order before (label %q, id %s)", keygen.AlgorithmOf(signer.Public()), tk.Label, tk.ID)}, nil
	case kept && !onToken && stored.Key != nil:
		return &rotKey{signer: stored.Key, memory: stored.Key, csr: stored.CSR,
			msg: fmt.Sprintf("using the %s key made for this order before (kept in the bot's state directory)", keygen.AlgorithmOf(stored.Key.Public()))}, nil
	case kept:
		return nil, fmt.Errorf("the key kept for order %s was not made where key.where %q says: remove %s to start the order again",
			rot.OrderID, spec.Where, r.keys.dir)
	}

	if onToken {
		if r.cfg.KeyMaker == nil {
			return nil, errNoPKCS11
		}
		if spec.PKCS11 == nil {
			return nil, errors.New("key.pkcs11 is not set: the token to make the key on is not named")
		}
		signer, tk, err := r.cfg.KeyMaker.MakeKey(ctx, *spec.PKCS11, spec.Algorithm)
		if err != nil {
			return nil, fmt.Errorf("make a %s key on the token: %w", spec.Algorithm, err)
		}
		return &rotKey{signer: signer, token: &tk,
			msg: fmt.Sprintf("made a new %s key on the token (label %q, id %s); it never leaves the token", spec.Algorithm, tk.Label, tk.ID)}, nil
	}
	key, err := keygen.Generate(keygen.Algorithm(spec.Algorithm), nil)
	if err != nil {
		return nil, err
	}
	return &rotKey{signer: key, memory: key, msg: fmt.Sprintf("made a new %s key (%s)", spec.Algorithm, spec.Where)}, nil
}
