package runner

import (
	"path/filepath"
	"sync"
	"time"

	"github.com/emsign/bot/agent/export"
	"github.com/emsign/bot/agent/scan"
	"github.com/emsign/bot/protocol"
)

// BundleExt is the extension of the bundles written to Config.ExportDir.
const BundleExt = ".emsbundle"

// scanExport writes a scan's findings to ExportDir/<scan>.emsbundle besides
// the spool (the air gap). It never fails the scan: an export that cannot
// be written is logged and dropped, the upload goes on.
type scanExport struct {
	r    *Runner
	scan string
	path string
	mu   sync.Mutex
	exp  *export.Exporter // nil once dropped
}

// startExport begins the scan's bundle, or returns nil when there is no
// export directory (or the bundle cannot be started, which is logged).
func (r *Runner) startExport(scanID string) *scanExport {
	if r.c.ExportDir == "" {
		return nil
	}
	path := filepath.Join(r.c.ExportDir, scanID+BundleExt)
	exp, err := export.New(path, r.c.ExportIdentity)
	if err != nil {
		r.log.Error("scan not exported", "scan", scanID, "path", path, "error", err)
		return nil
	}
	return &scanExport{r: r, scan: scanID, path: path, exp: exp}
}

func (x *scanExport) write(f protocol.Finding) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.exp == nil {
		return
	}
	if err := x.exp.Write(f); err != nil {
		x.r.log.Error("scan not exported", "scan", x.scan, "path", x.path, "error", err)
		x.exp.Abort()
		x.exp = nil
	}
}

// finish writes the bundle, signed, atomically.
func (x *scanExport) finish(started time.Time, targets int, c protocol.ScanComplete) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.exp == nil {
		return
	}
	hdr, err := x.exp.Finish(export.Summary{Started: started, Finished: c.Finished, Targets: targets,
		Complete: c.Complete, Stopped: c.Stopped})
	x.exp = nil
	if err != nil {
		x.r.log.Error("scan not exported", "scan", x.scan, "path", x.path, "error", err)
		return
	}
	x.r.log.Info("scan exported", "scan", x.scan, "path", x.path, "findings", hdr.Count, "bundle_scan", hdr.ScanID)
}

// exportSink hands each finding to the spool's sink and to the export.
type exportSink struct {
	scan.Sink
	x *scanExport
}

func (s exportSink) Write(f protocol.Finding) error {
	s.x.write(f)
	return s.Sink.Write(f)
}
