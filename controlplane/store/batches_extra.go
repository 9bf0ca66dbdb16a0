package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Methods of *SQL beyond the OrderStore contract that the batch runner and
// the scheduler (controlplane/batches, controlplane/schedules) need, each
// one conditional UPDATE so that several replicas may run them at once
// (issue 11). They take no account: the runners work over every account.

// BatchItemsInState lists a batch's items in one state by Seq.
func (s *SQL) BatchItemsInState(ctx context.Context, batchID, state string, limit, offset int) ([]BatchItem, error) {
	if limit <= 0 {
		limit = DefaultPageSize
	}
	rows, err := s.db.QueryContext(ctx, `SELECT batch_id, seq, wave, fingerprint, location, bot_id, order_id, state, error
		FROM batch_items WHERE batch_id = ? AND state = ? ORDER BY seq LIMIT ? OFFSET ?`, batchID, state, limit, max(offset, 0))
	if err != nil {
		return nil, fmt.Errorf("batch items: %w", err)
	}
	defer rows.Close()
	var out []BatchItem
	for rows.Next() {
		var it BatchItem
		if err := rows.Scan(&it.BatchID, &it.Seq, &it.Wave, &it.Fingerprint, &it.Location, &it.BotID, &it.OrderID, &it.State,
			&it.Error); err != nil {
			return nil, fmt.Errorf("batch items: %w", err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("batch items: %w", err)
	}
	return out, nil
}

// ClaimBatchWave moves the pending items of one wave to ordered, with
// claim as their order ID, before their orders are made, and returns
// them by Seq. It claims only when the batch is running and every earlier
// wave has ended (no item pending or ordered): one UPDATE, so that of two
// runners racing one gets the wave's items and the other none, and no
// wave starts while the one before is under way. claim must be unique to
// the caller and the moment (the runner's ID and the time).
func (s *SQL) ClaimBatchWave(ctx context.Context, batchID string, wave int, claim string) ([]BatchItem, error) {
	var out []BatchItem
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE batch_items SET state = ?, order_id = ?, error = ''
			WHERE batch_id = ? AND wave = ? AND state = ?
			AND EXISTS (SELECT 1 FROM batches b WHERE b.id = ? AND b.status = ?)
			AND NOT EXISTS (SELECT 1 FROM batch_items e WHERE e.batch_id = ? AND e.wave < ? AND e.state IN (?, ?))`,
			ItemOrdered, claim, batchID, wave, ItemPending, batchID, BatchRunning, batchID, wave, ItemPending, ItemOrdered); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT batch_id, seq, wave, fingerprint, location, bot_id, order_id, state, error
			FROM batch_items WHERE batch_id = ? AND state = ? AND order_id = ? ORDER BY seq`, batchID, ItemOrdered, claim)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var it BatchItem
			if err := rows.Scan(&it.BatchID, &it.Seq, &it.Wave, &it.Fingerprint, &it.Location, &it.BotID, &it.OrderID, &it.State,
				&it.Error); err != nil {
				return err
			}
			out = append(out, it)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("claim batch wave: %w", err)
	}
	return out, nil
}

// ReleaseBatchItem puts an item claimed with claim (and still without its
// order) back to pending.
func (s *SQL) ReleaseBatchItem(ctx context.Context, batchID string, seq int, claim string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE batch_items SET state = ?, order_id = ''
		WHERE batch_id = ? AND seq = ? AND state = ? AND order_id = ?`, ItemPending, batchID, seq, ItemOrdered, claim)
	if err != nil {
		return false, fmt.Errorf("release batch item: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("release batch item: %w", err)
	}
	return n == 1, nil
}

// SkipPendingBatchItems marks every pending item of a batch skipped with
// reason (a stop) and counts them.
func (s *SQL) SkipPendingBatchItems(ctx context.Context, batchID, reason string) (int, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE batch_items SET state = ?, error = ? WHERE batch_id = ? AND state = ?`,
		ItemSkipped, reason, batchID, ItemPending)
	if err != nil {
		return 0, fmt.Errorf("skip batch items: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("skip batch items: %w", err)
	}
	return int(n), nil
}

// SkipBatchItems marks the given pending items of a new batch skipped,
// each with its Error as the reason, in one transaction (CreateBatch
// stores every item pending; a plan knows some cannot be ordered).
func (s *SQL) SkipBatchItems(ctx context.Context, batchID string, items []BatchItem) error {
	if len(items) == 0 {
		return nil
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `UPDATE batch_items SET state = ?, error = ? WHERE batch_id = ? AND seq = ? AND state = ?`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, it := range items {
			if _, err := st.ExecContext(ctx, ItemSkipped, it.Error, batchID, it.Seq, ItemPending); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("skip batch items: %w", err)
	}
	return nil
}

// ClaimSchedule takes a due schedule before its action runs, so that one
// replica acts: a one-shot one becomes fired if still pending; an
// auto-renew one is marked fired for its current certificate if it was
// not yet. FireSchedule records a firing after the action, which would
// let two replicas both order; this claims first. claimed is false when
// another replica took it (or it was canceled).
func (s *SQL) ClaimSchedule(ctx context.Context, id string, now time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE schedules SET
		status = CASE WHEN auto_renew_days = 0 THEN ? ELSE status END,
		fired_fingerprint = CASE WHEN auto_renew_days > 0 THEN fingerprint ELSE fired_fingerprint END,
		last_fired = ?, last_order_id = '', last_error = ''
		WHERE id = ? AND status = ? AND (auto_renew_days = 0 OR fired_fingerprint <> fingerprint)`,
		ScheduleFired, us(now), id, SchedulePending)
	if err != nil {
		return false, fmt.Errorf("claim schedule: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("claim schedule: %w", err)
	}
	return n == 1, nil
}

// SetScheduleResult records what a claimed firing did: its order, or its
// error. An auto-renew firing that failed is unmarked, so that the
// schedule is due again after AutoRenewRetry (DueSchedules).
func (s *SQL) SetScheduleResult(ctx context.Context, id, orderID, errText string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE schedules SET last_order_id = ?, last_error = ?,
		fired_fingerprint = CASE WHEN auto_renew_days > 0 AND ? <> '' THEN '' ELSE fired_fingerprint END
		WHERE id = ?`, orderID, errText, errText, id)
	if err != nil {
		return fmt.Errorf("schedule result: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("schedule result: %w", err)
	} else if n == 0 {
		return fmt.Errorf("schedule %s: %w", id, ErrNotFound)
	}
	return nil
}
