//go:build !linux && !windows

package certstore

import (
	"errors"
	"runtime"

	"github.com/emsign/bot/protocol"
)

// discover reads nothing: on macOS the system stores are keychains, which
// this package does not read, and other systems have no store it knows.
func (s *Source) discover(_ *scan, _ protocol.Target) error {
	return errUnsupported{goos: runtime.GOOS}
}

// errUnsupported is returned where this package reads no store.
type errUnsupported struct{ goos string }

func (e errUnsupported) Error() string { return "not supported on this platform (" + e.goos + ")" }

// Is lets callers test with errors.Is(err, errors.ErrUnsupported).
func (e errUnsupported) Is(target error) bool { return target == errors.ErrUnsupported }
