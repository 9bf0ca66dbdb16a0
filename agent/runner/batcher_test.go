package runner

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/emsign/bot/agent/spool"
	"github.com/emsign/bot/protocol"
)

func TestBatcher(t *testing.T) {
	tests := []struct {
		name     string
		size     int
		age      time.Duration
		findings int
		pause    time.Duration // after the first finding
		want     []int         // findings per batch
	}{
		{"by count", 3, time.Hour, 7, 0, []int{3, 3, 1}},
		{"exact multiple", 2, time.Hour, 4, 0, []int{2, 2}},
		{"none", 5, time.Hour, 0, 0, nil},
		{"by age", 100, 10 * time.Millisecond, 3, 80 * time.Millisecond, []int{1, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sp, err := spool.Open(t.TempDir(), spool.Options{})
			if err != nil {
				t.Fatal(err)
			}
			b := newBatcher(sp.Append, "s", tc.size, tc.age)
			for i := 0; i < tc.findings; i++ {
				if err := b.Write(protocol.Finding{Source: "file", Location: protocol.Location{Scheme: "file", Path: "/etc/x.pem"}}); err != nil {
					t.Fatal(err)
				}
				if i == 0 && tc.pause > 0 {
					time.Sleep(tc.pause)
				}
			}
			n, err := b.Close()
			if err != nil {
				t.Fatal(err)
			}
			if int(n) != len(tc.want) {
				t.Errorf("Close says %d batches, want %d", n, len(tc.want))
			}
			for i, want := range tc.want {
				e, ok, err := sp.Oldest()
				if err != nil || !ok {
					t.Fatalf("batch %d missing: %v", i+1, err)
				}
				var fb protocol.FindingsBatch
				if err := json.Unmarshal(e.Body, &fb); err != nil {
					t.Fatal(err)
				}
				if fb.Seq != int64(i+1) || e.Seq != fb.Seq || len(fb.Findings) != want {
					t.Errorf("batch %d: seq %d/%d with %d findings, want %d", i+1, e.Seq, fb.Seq, len(fb.Findings), want)
				}
				_ = sp.Remove(e)
			}
			if sp.Len() != 0 {
				t.Errorf("%d records left", sp.Len())
			}
		})
	}
}

func TestBatcherStopsWhenSpoolFull(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: 200})
	if err != nil {
		t.Fatal(err)
	}
	b := newBatcher(sp.Append, "s", 1, time.Hour)
	var werr error
	for i := 0; i < 10 && werr == nil; i++ {
		werr = b.Write(protocol.Finding{Source: "file", Location: protocol.Location{Scheme: "file", Path: "/etc/x.pem"}, Error: "some problem at a location"})
	}
	if !errors.Is(werr, spool.ErrFull) {
		t.Fatalf("write error %v, want ErrFull", werr)
	}
	if err := b.Write(protocol.Finding{}); !errors.Is(err, spool.ErrFull) {
		t.Errorf("write after full: %v", err)
	}
	if _, err := b.Close(); !errors.Is(err, spool.ErrFull) {
		t.Errorf("close: %v", err)
	}
}
