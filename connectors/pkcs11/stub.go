//go:build !cgo

package pkcs11

import (
	"context"

	"github.com/emsign/bot/connectors"
	"github.com/emsign/bot/protocol"
)

// Supported reports whether this build can talk to PKCS#11 modules: false
// without cgo.
func Supported() bool { return false }

// New succeeds, so that a bot built without cgo still runs its other
// connectors; Discover says why pkcs11 targets cannot be scanned.
func New(cfg Config) (*Source, error) { return &Source{cfg: fillConfig(cfg)}, nil }

// Discover says that this build has no PKCS#11 support.
func (s *Source) Discover(ctx context.Context, t protocol.Target, emit connectors.Emit) error {
	return errNoCgo
}
