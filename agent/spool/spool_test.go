package spool

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/agent/internal/atomicfile"
)

func rec(kind, scan string, seq int64, body string) Record {
	return Record{Kind: kind, Scan: scan, Seq: seq, Body: json.RawMessage(body)}
}

// drain reads and removes every record, in order.
func drain(t *testing.T, s *Spool) []Record {
	t.Helper()
	var out []Record
	for {
		e, ok, err := s.Oldest()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, e.Record)
		if err := s.Remove(e); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAppendOldestRemoveInOrder(t *testing.T) {
	tests := []struct {
		name    string
		records []Record
	}{
		{"empty", nil},
		{"one scan", []Record{
			rec(KindScanStart, "s1", 0, `{"scan_id":"s1"}`),
			rec(KindFindings, "s1", 1, `{"seq":1}`),
			rec(KindFindings, "s1", 2, `{"seq":2}`),
			rec(KindScanComplete, "s1", 0, `{"batches":2}`),
			rec(KindJobResult, "job-1", 0, `{"status":"done"}`),
		}},
		{"two scans interleaved, order kept", []Record{
			rec(KindFindings, "b", 1, `{"seq":1}`),
			rec(KindFindings, "a", 1, `{"seq":1}`),
			rec(KindFindings, "b", 2, `{"seq":2}`),
		}},
		{"many (positions sort as numbers)", func() []Record {
			var rs []Record
			for i := 1; i <= 25; i++ {
				rs = append(rs, rec(KindFindings, "s", int64(i), fmt.Sprintf(`{"seq":%d}`, i)))
			}
			return rs
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.TempDir(), Options{})
			if err != nil {
				t.Fatal(err)
			}
			var size int64
			for _, r := range tc.records {
				if err := s.Append(r); err != nil {
					t.Fatal(err)
				}
				if s.Size() <= size {
					t.Errorf("size did not grow: %d", s.Size())
				}
				size = s.Size()
			}
			if s.Len() != len(tc.records) {
				t.Errorf("len %d, want %d", s.Len(), len(tc.records))
			}
			got := drain(t, s)
			if len(got) != len(tc.records) {
				t.Fatalf("got %d records, want %d", len(got), len(tc.records))
			}
			for i := range got {
				if got[i].Kind != tc.records[i].Kind || got[i].Scan != tc.records[i].Scan || got[i].Seq != tc.records[i].Seq ||
					string(got[i].Body) != string(tc.records[i].Body) {
					t.Errorf("record %d: got %+v, want %+v", i, got[i], tc.records[i])
				}
			}
			if s.Size() != 0 || s.Len() != 0 {
				t.Errorf("after drain: size %d len %d", s.Size(), s.Len())
			}
		})
	}
}

func TestAppendRejectsBadRecords(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Record{
		rec("other", "s", 0, `{}`),
		rec(KindFindings, "../etc", 1, `{}`),
		rec(KindFindings, "a/b", 1, `{}`),
		rec(KindFindings, "", 1, `{}`),
		rec(KindFindings, "s", -1, `{}`),
	} {
		if err := s.Append(r); err == nil {
			t.Errorf("append %+v succeeded", r)
		}
	}
}

// A crash between creating the temp file and renaming it leaves a torn
// write behind: it must never be delivered, and Open removes it.
func TestTornWriteIsNotDelivered(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(rec(KindFindings, "s", 1, `{"seq":1}`)); err != nil {
		t.Fatal(err)
	}
	torn := filepath.Join(dir, atomicfile.TempPrefix+"00000000000000000002_s_2.findings-123")
	if err := os.WriteFile(torn, []byte(`{"kind":"findings","scan":"s","seq":2,"bo`), 0o600); err != nil {
		t.Fatal(err)
	}
	// A record file whose content is damaged (not from us: disk trouble)
	// is moved aside, not sent.
	if err := os.WriteFile(filepath.Join(dir, "00000000000000000003_s_3.findings"), []byte(`{"kind":`), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(torn); !os.IsNotExist(err) {
		t.Errorf("torn temp file still there: %v", err)
	}
	got := drain(t, s2)
	if len(got) != 1 || got[0].Seq != 1 {
		t.Fatalf("got %+v, want only seq 1", got)
	}
	if _, err := os.Stat(filepath.Join(dir, corruptDir, "00000000000000000003_s_3.findings")); err != nil {
		t.Errorf("damaged record not kept aside: %v", err)
	}
	// New appends go after the highest position ever seen.
	if err := s2.Append(rec(KindFindings, "s", 4, `{}`)); err != nil {
		t.Fatal(err)
	}
	if e, _, _ := s2.Oldest(); !strings.HasPrefix(e.Name, "00000000000000000004_") {
		t.Errorf("new record named %s, want position 4", e.Name)
	}
}

func TestSizeCap(t *testing.T) {
	s, err := Open(t.TempDir(), Options{MaxBytes: 300})
	if err != nil {
		t.Fatal(err)
	}
	big := `"` + strings.Repeat("x", 100) + `"`
	tests := []struct {
		rec     Record
		wantErr bool
	}{
		{rec(KindScanStart, "s", 0, big), false},
		{rec(KindFindings, "s", 1, big), false},
		{rec(KindFindings, "s", 2, big), true},      // would cross the cap
		{rec(KindScanComplete, "s", 0, big), false}, // always accepted
		{rec(KindJobResult, "j", 0, big), false},    // always accepted
		{rec(KindScanStart, "s2", 0, `{}`), true},
	}
	for i, tc := range tests {
		err := s.Append(tc.rec)
		if tc.wantErr != (err != nil) {
			t.Errorf("%d: append %s: err %v, want error %v", i, tc.rec.Kind, err, tc.wantErr)
		}
		if err != nil && !errors.Is(err, ErrFull) {
			t.Errorf("%d: error %v is not ErrFull", i, err)
		}
	}
	if err := s.Room(); !errors.Is(err, ErrFull) {
		t.Errorf("Room() = %v, want ErrFull", err)
	}
	drain(t, s)
	if err := s.Room(); err != nil {
		t.Errorf("Room() after drain = %v", err)
	}
	if _, err := Open(t.TempDir(), Options{MaxBytes: -1}); err == nil {
		t.Error("negative cap accepted")
	}
}

// A restarted bot finds what it had not sent, in order, and goes on.
func TestRestartDrains(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= 5; i++ {
		if err := s.Append(rec(KindFindings, "s", i, `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	e, _, _ := s.Oldest()
	if err := s.Remove(e); err != nil { // seq 1 was acknowledged
		t.Fatal(err)
	}
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Size() != s.Size() {
		t.Errorf("size after reopen %d, want %d", s2.Size(), s.Size())
	}
	if err := s2.Append(rec(KindScanComplete, "s", 0, `{}`)); err != nil {
		t.Fatal(err)
	}
	got := drain(t, s2)
	var seqs []string
	for _, r := range got {
		seqs = append(seqs, fmt.Sprintf("%s%d", r.Kind, r.Seq))
	}
	if want := "findings2 findings3 findings4 findings5 complete0"; strings.Join(seqs, " ") != want {
		t.Errorf("got %s, want %s", strings.Join(seqs, " "), want)
	}
}

const crashEnv = "EMSIGN_SPOOL_CRASH_DIR"

// TestCrashChild is the process TestKilledMidAppend kills: it appends
// numbered batches in a loop and prints each number once Append returned.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		return // only as a child of TestKilledMidAppend
	}
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	body := strings.Repeat("x", 64<<10) // large enough to be caught mid-write
	for i := int64(1); ; i++ {
		b, _ := json.Marshal(map[string]any{"seq": i, "pad": body})
		if err := s.Append(Record{Kind: KindFindings, Scan: "crash", Seq: i, Body: b}); err != nil {
			fmt.Println("error", err)
			os.Exit(3)
		}
		fmt.Println(i)
	}
}

func TestKilledMidAppend(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a child process mid-write; slow-ish")
	}
	dir := t.TempDir()
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		var confirmed int64
		deadline := time.Now().Add(5 * time.Second)
		for sc.Scan() && time.Now().Before(deadline) {
			line := sc.Text()
			if strings.HasPrefix(line, "error") {
				t.Fatalf("child: %s", line)
			}
			if n, err := strconv.ParseInt(line, 10, 64); err == nil {
				confirmed = n
			}
			if confirmed >= int64(20+round*7) {
				break
			}
		}
		_ = cmd.Process.Kill() // SIGKILL on Unix: no deferred code runs
		_ = cmd.Wait()
		if confirmed == 0 {
			t.Fatal("child appended nothing")
		}
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		// Every confirmed batch is there and intact; nothing partial is
		// delivered (each record reads back whole, in order).
		want := int64(1)
		for {
			e, ok, err := s.Oldest()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			var b struct {
				Seq int64  `json:"seq"`
				Pad string `json:"pad"`
			}
			if err := json.Unmarshal(e.Body, &b); err != nil || b.Seq != e.Seq || len(b.Pad) != 64<<10 {
				t.Fatalf("round %d: record %s is damaged: %v", round, e.Name, err)
			}
			if e.Seq != want {
				t.Fatalf("round %d: got seq %d, want %d", round, e.Seq, want)
			}
			want++
			if err := s.Remove(e); err != nil {
				t.Fatal(err)
			}
		}
		if want-1 < confirmed {
			t.Fatalf("round %d: %d batches confirmed, only %d in the spool", round, confirmed, want-1)
		}
		if _, err := os.Stat(filepath.Join(dir, corruptDir)); err == nil {
			t.Fatalf("round %d: a record was found damaged", round)
		}
	}
}

// Queue lists what waits, from the file names, in order; a mark file
// beside the records is not one of them, before or after a reopen.
func TestQueueAndMarks(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(dir, "open-scan"+MarkSuffix, []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, r := range []Record{
		rec(KindScanStart, "scan_1", 0, `{}`),
		rec(KindFindings, "scan_1", 1, `{}`),
		rec(KindFindings, "scan_1", 12, `{}`),
		rec(KindScanComplete, "scan_1", 0, `{}`),
		rec(KindJobResult, "job-1", 0, `{}`),
	} {
		if err := s.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	want := []Queued{
		{KindScanStart, "scan_1", 0}, {KindFindings, "scan_1", 1}, {KindFindings, "scan_1", 12},
		{KindScanComplete, "scan_1", 0}, {KindJobResult, "job-1", 0},
	}
	check := func(s *Spool) {
		t.Helper()
		got := s.Queue()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("queue\n got %v\nwant %v", got, want)
		}
	}
	check(s)
	var logs strings.Builder
	s, err = Open(dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	check(s)
	if s.Len() != len(want) {
		t.Errorf("Len %d after reopen, want %d", s.Len(), len(want))
	}
	if logs.Len() != 0 {
		t.Errorf("reopen logged: %s", logs.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "open-scan"+MarkSuffix)); err != nil {
		t.Errorf("the mark did not survive Open: %v", err)
	}
}
