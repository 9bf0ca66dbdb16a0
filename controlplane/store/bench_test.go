package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/internal/testcert"
	"github.com/emsign/bot/protocol"
)

// BenchmarkIngest measures findings per second into SQLite with dedupe:
// batches of 500 findings, each certificate at two locations (so half the
// certificates of a batch are already known when their second location
// comes), new locations in every batch. Target (issue 3): ≥ 20,000
// findings/s.
func BenchmarkIngest(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark")
	}
	const batchSize = 500
	ctx := context.Background()
	st := open(b)
	f := newFixture(b, st, 1)
	f.startScan(b, "bench")
	g := testcert.NewGenerator(b)
	pool := make([][]byte, 4000)
	for i := range pool {
		pool[i] = g.New(b, testcert.Options{CN: fmt.Sprintf("host%d.example.com", i), SANs: []string{fmt.Sprintf("host%d.example.com", i)}})
	}
	now := time.Now()
	seq := int64(0)
	n := 0
	for b.Loop() {
		seq++
		fs := make([]protocol.Finding, batchSize)
		for j := range fs {
			k := int(seq)*batchSize + j
			fs[j] = protocol.Finding{
				Location: protocol.Location{Scheme: "tls", Host: fmt.Sprintf("10.%d.%d.%d:443", k>>16&255, k>>8&255, k&255)},
				Source:   "tls", Chain: [][]byte{pool[(k/2)%len(pool)]}, SeenAt: now,
			}
		}
		if _, err := st.Ingest(ctx, f.account, f.bot, "bench", protocol.FindingsBatch{Seq: seq, Findings: fs}); err != nil {
			b.Fatal(err)
		}
		n += batchSize
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "findings/s")
}
