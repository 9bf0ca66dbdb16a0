// Package connectors holds what every connector shares: the Source
// interface a discovery connector implements. Each connector lives in its
// own package below this one and imports only protocol.
package connectors

import (
	"context"

	"github.com/emsign/bot/protocol"
)

// Emit receives one finding. A Source calls it from one goroutine at a time;
// an error from it (the receiver gave up) ends the discovery with that error.
type Emit func(protocol.Finding) error

// Source finds certificates.
type Source interface {
	// Discover streams what the target holds. It returns when the target is
	// done or ctx ends; problems at one location are findings with Error
	// set, and only a failure of the whole target is returned.
	Discover(ctx context.Context, t protocol.Target, emit Emit) error
}
