package batches_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/store"
)

// BenchmarkRun10k measures the runner's own cost over a batch of 10,000
// locations (issue 8's speed figure: 10,000 in under 15 minutes): orders
// made through the store by a fake rotator and finished at once, waves of
// 500. What remains of the 15 minutes is the bots' and the CA's.
func BenchmarkRun10k(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		f := newFixture(b, 0)
		ctx := context.Background()
		const n, wave = 10_000, 500
		batch := store.Batch{ID: admin.NewID(), Account: f.account, Name: "bench", Action: "rotate", WaveSize: wave,
			Status: store.BatchPlanned, CreatedBy: "bench"}
		items := make([]store.BatchItem, n)
		for i := range items {
			items[i] = store.BatchItem{BatchID: batch.ID, Seq: i + 1, Wave: i/wave + 1, Fingerprint: fmt.Sprintf("%064x", i),
				Location: fmt.Sprintf("file:///etc/ssl/%05d.pem#0", i), BotID: f.active, State: store.ItemPending}
		}
		if err := f.st.CreateBatch(ctx, batch, items); err != nil {
			b.Fatal(err)
		}
		rot := newFakeRotator(f.st)
		r := newRunner(b, f.st, rot)
		start(b, f, batch.ID)
		b.StartTimer()
		t0 := time.Now()
		for batchOf(b, f, batch.ID).Status == store.BatchRunning {
			pass(b, r)
			rot.finish(b, f.account, nil)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "s/10k")
		if got := batchOf(b, f, batch.ID); got.Counts.Done != n {
			b.Fatalf("counts %+v", got.Counts)
		}
	}
}
