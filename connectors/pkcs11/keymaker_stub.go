//go:build !cgo

package pkcs11

import (
	"context"
	"crypto"
	"log/slog"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/protocol"
)

// KeyMaker makes and finds rotation keys inside a PKCS#11 token; this
// build has no cgo, so it says so.
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

// MakeKey says that this build has no PKCS#11 support.
func (k *KeyMaker) MakeKey(ctx context.Context, spec protocol.PKCS11Key, algorithm string) (crypto.Signer, deploy.TokenKey, error) {
	return nil, deploy.TokenKey{}, errNoCgo
}

// FindKey says that this build has no PKCS#11 support.
func (k *KeyMaker) FindKey(ctx context.Context, spec protocol.PKCS11Key) (crypto.Signer, deploy.TokenKey, error) {
	return nil, deploy.TokenKey{}, errNoCgo
}

// openCertStore says that this build has no PKCS#11 support: the
// deployer refuses in its prepare step.
func openCertStore(context.Context, settings, *slog.Logger) (certStore, error) {
	return nil, errNoCgo
}
