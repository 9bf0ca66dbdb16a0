package connectors

import "sync/atomic"

// Progress counts what a Source has done so far, for a progress line. Its
// counters are safe to read while the scan runs.
type Progress struct {
	Probed atomic.Int64 // endpoints, files or entries looked at
	Open   atomic.Int64 // endpoints that accepted a connection
}
