package runner

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/agent/internal/atomicfile"
	"github.com/emsign/bot/agent/internal/fakecp"
	"github.com/emsign/bot/agent/spool"
	"github.com/emsign/bot/agent/state"
	"github.com/emsign/bot/protocol"
)

// copyDir copies the files of src into a new directory dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.Mkdir(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// The bot is killed mid-scan (SIGKILL, power loss): what is on disk at
// that instant is all the next start has. That instant is taken as a copy
// of the spool while the bot waits on a stalling target with nothing in
// flight; the bot is then stopped and its spool replaced by the copy, as
// if it had never run further. The next start closes the scan, incomplete,
// saying why, counting the batches spooled, and fails its job; every batch
// arrives once.
func TestKilledMidScan(t *testing.T) {
	b := newBot(t)
	b.tweak = func(c *Config) { c.BatchAge = time.Hour } // batches by count only: 3 of 10
	b.cp.SetConfig(scanConfig("v1", certDir(t, 30), stallingTarget(t)))
	b.cp.Do(func(cp *fakecp.Server) {
		cp.OnBatch = func(k fakecp.Key) bool {
			if k.Seq == 1 { // the rest stays in the spool
				b.cp.Do(func(cp *fakecp.Server) { cp.Down = true })
			}
			return false
		}
	})
	stop1 := b.start(0)
	b.cp.AddJob(protocol.Job{ID: "job-1", Kind: protocol.JobScan, ScanID: "scan-1"})
	waitFor(t, "three batches spooled, the scan held by the stalling target, the control plane down", func() bool {
		o, ok := b.mark()
		var down bool
		b.cp.Do(func(cp *fakecp.Server) { down = cp.Down })
		return ok && o.Batches == 3 && down && strings.Contains(b.logs.String(), "scanning target=tls://")
	})
	if o, _ := b.mark(); o != (openScan{Scan: "scan-1", Job: "job-1", Batches: 3}) {
		t.Errorf("marker %+v", o)
	}
	spoolDir := filepath.Join(b.dir, state.SpoolDir)
	killed := filepath.Join(t.TempDir(), "spool")
	copyDir(t, spoolDir, killed)
	stop1()
	if err := os.RemoveAll(spoolDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(killed, spoolDir); err != nil {
		t.Fatal(err)
	}
	if b.spoolHas(".complete") || b.spoolHas(".job") {
		t.Fatalf("the killed bot's spool holds a completion: %v", b.spoolFiles())
	}

	b.cp.Do(func(cp *fakecp.Server) { cp.OnBatch, cp.Down = nil, false })
	b.start(0)
	waitFor(t, "the job's result", func() bool {
		var ok bool
		b.cp.Do(func(cp *fakecp.Server) { _, ok = cp.Results["job-1"] })
		return ok
	})
	c := checkScan(t, b.cp, "scan-1", 30)
	if c.Complete || c.Stopped != StoppedByCrash || c.Batches != 3 || c.Finished.IsZero() {
		t.Errorf("completion %+v, want incomplete, stopped by the crash, 3 batches", c)
	}
	b.cp.Do(func(cp *fakecp.Server) {
		if res := cp.Results["job-1"]; res.Status != protocol.JobFailed || res.Error != StoppedByCrash {
			t.Errorf("job result %+v", res)
		}
		for k, n := range cp.BatchPosts {
			if n != 1 {
				t.Errorf("batch %v posted %d times", k, n)
			}
		}
	})
	waitFor(t, "an empty spool", func() bool { return len(b.spoolFiles()) == 0 })
	if o, ok := b.mark(); ok {
		t.Errorf("marker left: %+v", o)
	}
	if !strings.Contains(b.logs.String(), "closing a scan the bot did not finish") {
		t.Error("the recovery is not logged")
	}
}

// What the bot may have left on disk at any instant of a scan, and what
// the next start makes of it.
func TestRecoverOpenScans(t *testing.T) {
	start := spool.Record{Kind: spool.KindScanStart, Scan: "s1", Body: json.RawMessage(`{"scan_id":"s1","trigger":"job"}`)}
	batch := func(seq int64) spool.Record {
		body, _ := json.Marshal(protocol.FindingsBatch{Seq: seq, Findings: []protocol.Finding{}})
		return spool.Record{Kind: spool.KindFindings, Scan: "s1", Seq: seq, Body: body}
	}
	done, _ := json.Marshal(protocol.ScanComplete{Batches: 1, Complete: true})
	complete := spool.Record{Kind: spool.KindScanComplete, Scan: "s1", Body: done}
	tests := []struct {
		name    string
		mark    *openScan
		spooled []spool.Record
		// want: the completion's batches and whether it is the bot's own
		// (complete) or the recovery's; the job result, if any.
		batches  int64
		own      bool
		wantJob  bool
		noStarts bool
	}{
		{name: "all sent, marker left", mark: &openScan{Scan: "s1", Job: "j1", Batches: 2}, batches: 2, wantJob: true},
		{name: "scheduled scan, nothing found yet", mark: &openScan{Scan: "s1"}, batches: 0},
		{name: "killed after spooling a batch, before the marker moved", mark: &openScan{Scan: "s1", Job: "j1", Batches: 1},
			spooled: []spool.Record{batch(2)}, batches: 2, wantJob: true},
		{name: "killed after spooling the start, before the marker", spooled: []spool.Record{start, batch(1)},
			batches: 1, noStarts: true},
		{name: "killed after spooling the completion, before the marker moved", mark: &openScan{Scan: "s1", Batches: 1},
			spooled: []spool.Record{complete}, batches: 1, own: true},
		{name: "completion sent, job result not spooled", mark: &openScan{Scan: "s1", Job: "j1", Batches: 1, Completed: true},
			spooled: []spool.Record{complete}, batches: 1, own: true, wantJob: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBot(t)
			dir := filepath.Join(b.dir, state.SpoolDir)
			sp, err := spool.Open(dir, spool.Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tc.spooled {
				if err := sp.Append(r); err != nil {
					t.Fatal(err)
				}
			}
			if tc.mark != nil {
				raw, _ := json.Marshal(tc.mark)
				if err := atomicfile.Write(dir, markName, raw, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if !tc.noStarts {
				b.cp.Do(func(cp *fakecp.Server) { cp.Starts["s1"] = protocol.ScanStart{ScanID: "s1"} })
			}
			b.start(0)
			waitFor(t, "the completion, then an empty spool", func() bool {
				var ok bool
				b.cp.Do(func(cp *fakecp.Server) { _, ok = cp.Completes["s1"] })
				return ok && len(b.spoolFiles()) == 0
			})
			if o, ok := b.mark(); ok {
				t.Errorf("marker left: %+v", o)
			}
			b.cp.Do(func(cp *fakecp.Server) {
				c := cp.Completes["s1"]
				if cp.CompletePosts["s1"] != 1 {
					t.Errorf("completion posted %d times", cp.CompletePosts["s1"])
				}
				if tc.own && !c.Complete {
					t.Errorf("completion %+v, want the bot's own", c)
				}
				if !tc.own && (c.Complete || c.Stopped != StoppedByCrash || c.Finished.IsZero()) {
					t.Errorf("completion %+v, want the recovery's", c)
				}
				if c.Batches != tc.batches {
					t.Errorf("completion counts %d batches, want %d", c.Batches, tc.batches)
				}
				res, ok := cp.Results["j1"]
				if ok != tc.wantJob || len(cp.Results) > 1 {
					t.Errorf("job results %v, want one for j1: %v", cp.Results, tc.wantJob)
				}
				if ok && (res.Status != protocol.JobFailed || res.Error != StoppedByCrash) {
					t.Errorf("job result %+v", res)
				}
			})
		})
	}
}

// A marker that cannot be read is removed, said so, and the bot runs.
func TestUnreadableMarker(t *testing.T) {
	b := newBot(t)
	dir := filepath.Join(b.dir, state.SpoolDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, markName), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start(0)
	waitFor(t, "the marker removed", func() bool {
		_, err := os.Stat(filepath.Join(dir, markName))
		return os.IsNotExist(err)
	})
	if !strings.Contains(b.logs.String(), "open-scan marker that cannot be read") {
		t.Error("not logged")
	}
}
