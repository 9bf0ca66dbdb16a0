// Package scan runs discovery targets through the connectors that serve
// them and hands every finding to a sink, as `emsign-bot scan` and the
// scheduled scans of the service both need.
package scan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/emsign/bot/connectors"
	"github.com/emsign/bot/protocol"
)

// Registry maps a target scheme to the connector that scans it.
type Registry map[string]connectors.Source

// Sink receives the findings of a scan, one at a time.
type Sink interface {
	Write(protocol.Finding) error
}

// Summary counts what a scan produced.
type Summary struct {
	Targets      int
	Certificates int
	Errors       int
	Elapsed      time.Duration
	// Stopped is set when the scan ended before every target was done
	// (max runtime reached, or interrupted).
	Stopped error
}

// Runner runs targets one after another; each connector is concurrent
// inside.
type Runner struct {
	Registry Registry
	Logger   *slog.Logger
	Now      func() time.Time
}

// Run scans every target. A target whose connector fails as a whole becomes
// an error finding and the scan goes on with the next one; Run returns an
// error only when the sink fails. When ctx ends, Run stops and reports why
// in Summary.Stopped.
func (r Runner) Run(ctx context.Context, targets []protocol.Target, sink Sink) (Summary, error) {
	now := r.Now
	if now == nil {
		now = time.Now
	}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := now()
	var sum Summary
	var sinkErr error
	emit := func(f protocol.Finding) error {
		if len(f.Chain) > 0 {
			sum.Certificates++
		}
		if f.Error != "" {
			sum.Errors++
		}
		if err := sink.Write(f); err != nil {
			sinkErr = err
			return err
		}
		return nil
	}
	for _, t := range targets {
		if ctx.Err() != nil {
			break
		}
		sum.Targets++
		src, ok := r.Registry[t.Scheme]
		if !ok {
			return sum, fmt.Errorf("no connector for %s targets", t.Scheme)
		}
		log.Info("scanning", "target", t)
		err := src.Discover(ctx, t, emit)
		switch {
		case sinkErr != nil:
			return sum, fmt.Errorf("write output: %w", sinkErr)
		case err == nil, ctx.Err() != nil && errors.Is(err, ctx.Err()):
		default:
			// The whole target failed: say so in the output, where the
			// person reading the inventory will see it, and go on.
			if werr := emit(protocol.Finding{
				Location: targetLocation(t),
				Source:   t.Scheme,
				Error:    err.Error(),
				SeenAt:   now(),
			}); werr != nil {
				return sum, fmt.Errorf("write output: %w", werr)
			}
		}
	}
	sum.Elapsed = now().Sub(start)
	if err := context.Cause(ctx); err != nil {
		sum.Stopped = err
	}
	return sum, nil
}

// targetLocation names a whole target as a location, secrets left out.
func targetLocation(t protocol.Target) protocol.Location {
	if t.Scheme == protocol.SchemeTLS {
		// Ranges rather than CIDR blocks: a '/' in a URI's host would not
		// read back.
		return protocol.Location{Scheme: t.Scheme, Host: t.Endpoints.String()}
	}
	return protocol.Location{Scheme: t.Scheme, Host: t.Host, Path: t.Path}
}
