package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/emsign/bot/agent/rotate"
	"github.com/emsign/bot/protocol"
)

// startRotation runs a JobRotate job on its own goroutine, at most
// RotationWorkers at once: a rotation waits for a CA and a server reload,
// and the loop must go on scanning and taking jobs meanwhile. The job
// counts as handled once its result is spooled; delivered again while it
// runs, it is ignored.
func (r *Runner) startRotation(ctx context.Context, j protocol.Job) {
	if j.Rotation == nil {
		r.finishRotation(j, protocol.JobResult{Status: protocol.JobFailed, Error: "a rotate job without its rotation"})
		return
	}
	if r.c.Rotator == nil {
		r.finishRotation(j, failedRotation(*j.Rotation, "rotation is not set up on this bot"))
		return
	}
	r.jobsMu.Lock()
	r.rotating[j.ID] = true
	r.jobsMu.Unlock()
	var passwords []protocol.Secret
	if cfg := r.config(); cfg != nil {
		passwords = rotate.KeystorePasswords(cfg.Targets)
	}
	r.rotations.Go(func() {
		defer func() {
			r.jobsMu.Lock()
			delete(r.rotating, j.ID)
			r.jobsMu.Unlock()
		}()
		select {
		case r.rotationSlots <- struct{}{}:
		case <-ctx.Done():
			r.finishRotation(j, failedRotation(*j.Rotation, "the bot stopped before the rotation began"))
			return
		}
		defer func() { <-r.rotationSlots }()
		r.log.Info("rotation started", "job", j.ID, "order", j.Rotation.OrderID, "kind", j.Rotation.Deploy.Kind, "location", j.Rotation.Location)
		start := time.Now()
		res := r.c.Rotator.Run(ctx, j.ID, *j.Rotation, passwords...)
		r.log.Info("rotation finished", "job", j.ID, "order", res.OrderID, "outcome", res.Outcome,
			"elapsed", time.Since(start).Round(time.Millisecond).String())
		r.finishRotation(j, rotationResult(res))
	})
}

// finishRotation spools a rotation job's result and remembers the job.
func (r *Runner) finishRotation(j protocol.Job, res protocol.JobResult) {
	if res.Status == protocol.JobFailed {
		r.log.Error("job failed", "job", j.ID, "kind", j.Kind, "error", res.Error)
	}
	body, err := json.Marshal(res)
	if err != nil {
		r.log.Error("cannot encode a job's result", "job", j.ID, "error", err)
		return
	}
	if err := r.spoolJobResult(j.ID, false, body); err != nil {
		r.log.Error("cannot spool a job's result", "job", j.ID, "error", err)
		return
	}
	r.markDone(j.ID)
}

// rotationResult is the job result of a rotation: done when the
// certificate is in place, failed otherwise with the last failed step.
func rotationResult(res protocol.RotationResult) protocol.JobResult {
	switch res.Outcome {
	case protocol.OutcomeDeployed, protocol.OutcomeAlreadyDeployed:
		return protocol.JobResult{Status: protocol.JobDone, Rotation: &res}
	}
	why := "no step failed"
	for i := len(res.Steps) - 1; i >= 0; i-- {
		if !res.Steps[i].OK {
			why = res.Steps[i].Name + ": " + res.Steps[i].Message
			break
		}
	}
	return protocol.JobResult{Status: protocol.JobFailed, Error: fmt.Sprintf("rotation %s: %s", res.Outcome, why), Rotation: &res}
}

// failedRotation is the result of a rotation that could not start.
func failedRotation(rot protocol.Rotation, why string) protocol.JobResult {
	return rotationResult(protocol.RotationResult{OrderID: rot.OrderID, Outcome: protocol.OutcomeFailed,
		Steps: []protocol.RotationStep{{Name: protocol.StepPrepare, Message: why, Time: time.Now().UTC()}}})
}
