package ordering_test

import (
	"context"
	"testing"

	"github.com/emsign/bot/controlplane/ordering"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// BenchmarkRotationCycle is one order's control-plane work through the
// local CA (P9's 10,000 locations in 15 minutes leave 90 ms each):
// Rotate, job delivery, CSR checked and issued, result recorded.
func BenchmarkRotationCycle(b *testing.B) {
	e := newEnv(b, nil)
	ctx := context.Background()
	bot := e.bot_(e.bot)
	key := newKey(b)
	b.ResetTimer()
	for b.Loop() {
		o, err := e.svc.Rotate(ctx, e.account, ordering.RotateRequest{Fingerprint: e.fp, Location: pemLoc})
		if err != nil {
			b.Fatal(err)
		}
		jobs, err := e.st.TakeJobs(ctx, e.bot)
		if err != nil || len(jobs) != 1 {
			b.Fatal(jobs, err)
		}
		r, err := e.svc.JobRotation(ctx, jobs[0])
		if err != nil {
			b.Fatal(err)
		}
		res, err := e.svc.OrderCSR(ctx, bot, o.ID, csrFor(b, r, key, nil))
		if err != nil || res.Status != protocol.OrderIssued {
			b.Fatal(res, err)
		}
		if err := e.svc.RotationFinished(ctx, bot, store.Job{ID: jobs[0].ID}, protocol.JobResult{Status: protocol.JobDone,
			Rotation: &protocol.RotationResult{OrderID: o.ID, Outcome: protocol.OutcomeDeployed}}); err != nil {
			b.Fatal(err)
		}
	}
}
