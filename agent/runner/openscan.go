package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/emsign/bot/agent/internal/atomicfile"
	"github.com/emsign/bot/agent/spool"
	"github.com/emsign/bot/protocol"
)

// StoppedByCrash is the Stopped of a scan closed at the next start because
// the bot died (SIGKILL, power loss, crash) before it spooled the scan's
// completion.
const StoppedByCrash = "the bot stopped during the scan (killed or crashed)"

// markName is the open-scan marker, kept in the spool's directory.
const markName = "open-scan" + spool.MarkSuffix

// openScan is what the marker holds: the scan being spooled, the job that
// asked for it, the last batch spooled, and whether its completion is
// spooled (the marker then stays until the job's result is).
//
// The marker is rewritten after each record the scan spools, under
// Runner.markMu, and the uploader removes a record from the spool only
// under markMu too: so a record is either still in the spool or counted by
// the marker, whatever instant the bot dies at. recoverOpenScans relies on
// that.
type openScan struct {
	Scan      string `json:"scan"`
	Job       string `json:"job,omitempty"`
	Batches   int64  `json:"batches"`
	Completed bool   `json:"completed,omitempty"`
}

func (r *Runner) writeMark(o openScan) error {
	b, _ := json.Marshal(o)
	return atomicfile.Write(r.c.Spool.Dir(), markName, b, 0o600)
}

func (r *Runner) clearMark() error {
	err := atomicfile.Remove(r.c.Spool.Dir(), markName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (r *Runner) readMark() (o openScan, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(r.c.Spool.Dir(), markName))
	if errors.Is(err, fs.ErrNotExist) {
		return openScan{}, false, nil
	}
	if err != nil {
		return openScan{}, false, err
	}
	if err := json.Unmarshal(b, &o); err != nil || !spool.ValidID(o.Scan) || (o.Job != "" && !spool.ValidID(o.Job)) {
		return openScan{}, false, fmt.Errorf("the open-scan marker cannot be read: %q", b)
	}
	return o, true, nil
}

// markFailed logs that the marker could not be kept: the scan goes on, but
// a crash now may leave it open on the control plane.
func (r *Runner) markFailed(scan string, err error) {
	r.log.Error("cannot record the open scan on disk; if the bot dies now the scan stays open on the control plane",
		"scan", scan, "error", err)
}

// spoolScanRecord appends a record of the open scan o and moves the marker
// on: the first record (the start) creates it, a batch advances it, the
// completion removes it, or, when a job's result is still to come, keeps
// it as completed.
func (r *Runner) spoolScanRecord(o *openScan, rec spool.Record) error {
	r.markMu.Lock()
	defer r.markMu.Unlock()
	if err := r.c.Spool.Append(rec); err != nil {
		return err
	}
	var err error
	switch rec.Kind {
	case spool.KindFindings:
		o.Batches = rec.Seq
		err = r.writeMark(*o)
	case spool.KindScanComplete:
		o.Completed = true
		if o.Job == "" {
			err = r.clearMark()
		} else {
			err = r.writeMark(*o)
		}
	default:
		err = r.writeMark(*o)
	}
	if err != nil {
		r.markFailed(o.Scan, err)
	}
	return nil
}

// spoolJobResult appends a job's result; the result of the job of the open
// scan removes the marker.
func (r *Runner) spoolJobResult(job string, scanJob bool, body []byte) error {
	r.markMu.Lock()
	defer r.markMu.Unlock()
	if err := r.c.Spool.Append(spool.Record{Kind: spool.KindJobResult, Scan: job, Body: body}); err != nil {
		return err
	}
	if scanJob {
		if err := r.clearMark(); err != nil {
			r.markFailed(job, err)
		}
	}
	return nil
}

// recoverOpenScans closes, at start, the scans a bot that died left open:
// the scan of the marker and any scan whose start or batches wait in the
// spool without a completion behind them get a completion saying the bot
// stopped (Batches: the last batch spooled), and the marker's job a failed
// result. It runs before the uploader starts.
func (r *Runner) recoverOpenScans() {
	m, marked, err := r.readMark()
	if err != nil {
		r.log.Error("removing an open-scan marker that cannot be read", "error", err)
		if err := r.clearMark(); err != nil {
			r.log.Error("cannot remove the open-scan marker", "error", err)
		}
	}
	type scanState struct {
		open, completed bool
		batches         int64
	}
	scans := map[string]*scanState{}
	var order []string
	jobs := map[string]bool{}
	get := func(id string) *scanState {
		s := scans[id]
		if s == nil {
			s = &scanState{}
			scans[id] = s
			order = append(order, id)
		}
		return s
	}
	if marked {
		s := get(m.Scan)
		s.open, s.completed, s.batches = true, m.Completed, m.Batches
	}
	for _, q := range r.c.Spool.Queue() {
		switch q.Kind {
		case spool.KindScanStart:
			get(q.Scan).open = true
		case spool.KindFindings:
			s := get(q.Scan)
			s.open, s.batches = true, max(s.batches, q.Seq)
		case spool.KindScanComplete:
			get(q.Scan).completed = true
		case spool.KindJobResult:
			jobs[q.Scan] = true
		}
	}
	ok := true
	for _, id := range order {
		s := scans[id]
		if !s.open || s.completed {
			continue
		}
		r.log.Warn("closing a scan the bot did not finish: it stopped during the scan (killed or crashed)",
			"scan", id, "batches", s.batches)
		body, _ := json.Marshal(protocol.ScanComplete{Finished: r.c.Clock.Now().UTC(), Batches: s.batches, Stopped: StoppedByCrash})
		if err := r.c.Spool.Append(spool.Record{Kind: spool.KindScanComplete, Scan: id, Body: body}); err != nil {
			r.log.Error("cannot spool the completion of a scan left open", "scan", id, "error", err)
			ok = false
		}
	}
	if marked && m.Job != "" && !jobs[m.Job] {
		body, _ := json.Marshal(protocol.JobResult{Status: protocol.JobFailed, Error: StoppedByCrash})
		if err := r.c.Spool.Append(spool.Record{Kind: spool.KindJobResult, Scan: m.Job, Body: body}); err != nil {
			r.log.Error("cannot spool the result of a job left open", "job", m.Job, "error", err)
			ok = false
		}
	}
	if marked && ok {
		if err := r.clearMark(); err != nil {
			r.log.Error("cannot remove the open-scan marker", "error", err)
		}
	}
}
