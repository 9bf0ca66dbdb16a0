// Package spool is the bot's durable outbox: a FIFO of records (scan
// starts, findings batches, scan completions, job results) kept on disk
// until the control plane has acknowledged them. Each record is one file,
// written atomically and fsync'd before Append returns, named by its place
// in the queue, its scan and its sequence number. A file half-written when
// the bot died is a temporary file: Open deletes it and it is never
// delivered.
package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/emsign/bot/agent/internal/atomicfile"
)

// Record kinds.
const (
	KindScanStart    = "start"
	KindFindings     = "findings"
	KindScanComplete = "complete"
	KindJobResult    = "job"
)

// DefaultMaxBytes is the default cap on the spool's size: 1 GiB.
const DefaultMaxBytes int64 = 1 << 30

// ErrFull is returned by Append and Room when the spool has reached its
// cap: the bot refuses new scans rather than drop what it has not sent.
var ErrFull = errors.New("spool is full")

// MarkSuffix ends the name of a file the spool's owner keeps beside the
// records (the runner's open-scan marker): not a record, never queued, sent
// or counted, and left alone by Open.
const MarkSuffix = ".mark"

// corruptDir receives record files that cannot be read: kept for a person
// to look at, never sent, never counted.
const corruptDir = "corrupt"

// Record is one entry of the outbox.
type Record struct {
	Kind string `json:"kind"`
	// Scan is the scan (or, for KindJobResult, the job) the record belongs to.
	Scan string `json:"scan"`
	// Seq is the batch number within the scan (KindFindings), else 0.
	Seq int64 `json:"seq,omitempty"`
	// Body is the JSON request body to send.
	Body json.RawMessage `json:"body"`
}

// Entry is a record read back from the spool.
type Entry struct {
	Record
	// Name is the record's file name; Remove takes it.
	Name string
}

// Options configure a spool.
type Options struct {
	// MaxBytes caps the spool; 0 means DefaultMaxBytes.
	MaxBytes int64
	Logger   *slog.Logger
}

// Spool is a durable FIFO in one directory. It is safe for concurrent use
// by one process; two processes must not open the same directory.
type Spool struct {
	dir string
	max int64
	log *slog.Logger
	mu  sync.Mutex
	// names holds the record files in queue order, sizes their sizes.
	names  []string
	sizes  map[string]int64
	total  int64
	next   uint64
	notify chan struct{}
}

// idPattern is what a scan or job ID may look like: it becomes part of a
// file name and of a URL path.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidID reports whether id can name a scan or job in the spool (and in a
// URL path).
func ValidID(id string) bool { return idPattern.MatchString(id) && !strings.Contains(id, "..") }

// nameRE matches record file names: <position>_<scan>_<seq>.<kind>.
var nameRE = regexp.MustCompile(`^(\d{20})_([A-Za-z0-9._-]+)_(\d+)\.(start|findings|complete|job)$`)

// Open opens (creating it, 0700) the spool in dir, deletes the temporary
// files a crash left behind, and indexes what is queued.
func Open(dir string, o Options) (*Spool, error) {
	if o.MaxBytes < 0 {
		return nil, errors.New("spool: negative size cap")
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{dir: dir, max: o.MaxBytes, log: o.Logger, sizes: map[string]int64{}, notify: make(chan struct{}, 1)}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case e.IsDir():
			continue
		case atomicfile.IsTemp(name):
			// A write the process did not finish: never delivered.
			s.log.Warn("spool: removing a record left half-written by a crash", "file", name)
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return nil, fmt.Errorf("spool: %w", err)
			}
			continue
		}
		m := nameRE.FindStringSubmatch(name)
		if m == nil && strings.HasSuffix(name, MarkSuffix) {
			continue
		}
		if m == nil {
			s.log.Warn("spool: ignoring a file that is not a record", "file", name)
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		pos, _ := strconv.ParseUint(m[1], 10, 64)
		if pos >= s.next {
			s.next = pos + 1
		}
		s.names = append(s.names, name)
		s.sizes[name] = info.Size()
		s.total += info.Size()
	}
	sort.Strings(s.names) // fixed-width positions sort as numbers
	if s.next == 0 {
		s.next = 1
	}
	return s, nil
}

// Dir is the spool's directory.
func (s *Spool) Dir() string { return s.dir }

// MaxBytes is the spool's cap.
func (s *Spool) MaxBytes() int64 { return s.max }

// Size is the bytes queued.
func (s *Spool) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Len is the number of records queued.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.names)
}

// Room returns ErrFull (wrapped, with the sizes) when the spool is at or
// over its cap: a new scan must not start.
func (s *Spool) Room() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.roomLocked(0)
}

func (s *Spool) roomLocked(add int64) error {
	if s.total+add > s.max {
		return fmt.Errorf("%w: %d bytes queued for the control plane, cap %d (is the control plane reachable?)", ErrFull, s.total, s.max)
	}
	return nil
}

// Append queues a record durably: when it returns nil the record survives a
// crash. Scan starts and findings are refused with ErrFull over the cap;
// completions and job results, small and needed to close what was started,
// are always accepted. It takes no context on purpose: a record being
// written when the bot is told to stop must still be written.
func (s *Spool) Append(r Record) error {
	switch r.Kind {
	case KindScanStart, KindFindings, KindScanComplete, KindJobResult:
	default:
		return fmt.Errorf("spool: unknown record kind %q", r.Kind)
	}
	if !ValidID(r.Scan) {
		return fmt.Errorf("spool: %q is not a valid scan or job id", r.Scan)
	}
	if r.Seq < 0 {
		return errors.New("spool: negative sequence number")
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Kind == KindScanStart || r.Kind == KindFindings {
		if err := s.roomLocked(int64(len(data))); err != nil {
			return err
		}
	}
	name := fmt.Sprintf("%020d_%s_%d.%s", s.next, r.Scan, r.Seq, r.Kind)
	if err := atomicfile.Write(s.dir, name, data, 0o600); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.next++
	s.names = append(s.names, name)
	s.sizes[name] = int64(len(data))
	s.total += int64(len(data))
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
}

// Queued describes a record waiting in the spool, as its file name says.
type Queued struct {
	Kind string
	Scan string
	Seq  int64
}

// Queue lists the records waiting, oldest first, without reading them.
func (s *Spool) Queue() []Queued {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Queued, 0, len(s.names))
	for _, name := range s.names {
		if m := nameRE.FindStringSubmatch(name); m != nil {
			seq, _ := strconv.ParseInt(m[3], 10, 64)
			out = append(out, Queued{Kind: m[4], Scan: m[2], Seq: seq})
		}
	}
	return out
}

// Notify returns a channel that receives after an Append: an uploader
// waiting for work selects on it.
func (s *Spool) Notify() <-chan struct{} { return s.notify }

// Oldest returns the first record in the queue; ok is false when the queue
// is empty. A record file that cannot be read is moved aside to corrupt/
// (logged) and the next one is returned.
func (s *Spool) Oldest() (e Entry, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.names) > 0 {
		name := s.names[0]
		raw, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Entry{}, false, fmt.Errorf("spool: %w", err)
		}
		var r Record
		if err == nil {
			err = json.Unmarshal(raw, &r)
		}
		if err == nil {
			return Entry{Record: r, Name: name}, true, nil
		}
		s.log.Error("spool: a record cannot be read; moved aside, not sent", "file", name, "error", err)
		if err := s.quarantineLocked(name); err != nil {
			return Entry{}, false, err
		}
	}
	return Entry{}, false, nil
}

// Remove deletes a delivered record.
func (s *Spool) Remove(e Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := atomicfile.Remove(s.dir, e.Name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	s.dropLocked(e.Name)
	return nil
}

// Reject moves a record the control plane refused for good (a 4xx other
// than an authentication failure) out of the queue into corrupt/, so that
// one bad record does not hold up the rest; it is kept for inspection.
func (s *Spool) Reject(e Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.quarantineLocked(e.Name)
}

func (s *Spool) quarantineLocked(name string) error {
	bad := filepath.Join(s.dir, corruptDir)
	if err := os.MkdirAll(bad, 0o700); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := os.Rename(filepath.Join(s.dir, name), filepath.Join(bad, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	if err := atomicfile.SyncDir(s.dir); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.dropLocked(name)
	return nil
}

func (s *Spool) dropLocked(name string) {
	for i, n := range s.names {
		if n == name {
			s.names = append(s.names[:i], s.names[i+1:]...)
			break
		}
	}
	s.total -= s.sizes[name]
	delete(s.sizes, name)
}
