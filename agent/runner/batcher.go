package runner

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/emsign/bot/agent/spool"
	"github.com/emsign/bot/protocol"
)

// batcher is the scan's sink: it groups findings into batches of up to
// size findings, or what arrived within age, and appends each batch to the
// spool (durably) before anything is sent.
type batcher struct {
	// append spools a record durably.
	append func(spool.Record) error
	scan   string
	size   int

	mu   sync.Mutex
	buf  []protocol.Finding
	seq  int64
	err  error
	stop chan struct{}
	done chan struct{}
}

func newBatcher(appendRecord func(spool.Record) error, scan string, size int, age time.Duration) *batcher {
	b := &batcher{append: appendRecord, scan: scan, size: size, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(age)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
				b.mu.Lock()
				_ = b.flushLocked()
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// Write buffers a finding; a full batch goes to the spool at once. Once
// the spool refused a batch, every Write fails, and the scan stops.
func (b *batcher) Write(f protocol.Finding) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	b.buf = append(b.buf, f)
	if len(b.buf) >= b.size {
		return b.flushLocked()
	}
	return nil
}

func (b *batcher) flushLocked() error {
	if b.err != nil || len(b.buf) == 0 {
		return b.err
	}
	body, err := json.Marshal(protocol.FindingsBatch{Seq: b.seq + 1, Findings: b.buf})
	if err != nil {
		b.err = fmt.Errorf("encode findings: %w", err)
		return b.err
	}
	if err := b.append(spool.Record{Kind: spool.KindFindings, Scan: b.scan, Seq: b.seq + 1, Body: body}); err != nil {
		b.err = err
		return err
	}
	b.seq++
	b.buf = b.buf[:0]
	return nil
}

// Close flushes what is buffered and returns the number of batches
// spooled, and the first error.
func (b *batcher) Close() (int64, error) {
	close(b.stop)
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seq, b.flushLocked()
}
