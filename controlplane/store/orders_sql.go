package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emsign/bot/protocol"
)

// OrderStore over SQL (orders.go). Every state change that replicas may
// race on is one conditional UPDATE whose affected row count says who
// won: ClaimOrdering, TransitionOrder, SetBatchStatus, FireSchedule,
// CancelSchedule. Event sequence numbers are max+1 inside the
// transaction that changes (and so, in PostgreSQL, locks) the order row.

var _ OrderStore = (*SQL)(nil)

// AutoRenewRetry is how long an auto-renew schedule whose firing made no
// order (FireSchedule with an error and no order ID: the bot was
// unreachable, the template disabled...) waits before it is due again.
const AutoRenewRetry = time.Hour

const orderColumns = `id, account_id, bot_id, job_id, action, fingerprint, location, template_id, connector, ca_settings,
	status, csr_pem, cert_pem, chain_pem, new_fingerprint, ca_order_id, outcome, error, batch_id, remarks, created_by,
	created_at, updated_at, ordering_since, deploy_kind, key_where, key_algorithm, key_ref`

func scanOrder(r scanner) (Order, error) {
	var o Order
	var created, updated int64
	var since sql.NullInt64
	err := r.Scan(&o.ID, &o.Account, &o.BotID, &o.JobID, &o.Action, &o.Fingerprint, &o.Location, &o.TemplateID,
		&o.Connector, &o.CASettings, &o.Status, &o.CSRPEM, &o.CertPEM, &o.ChainPEM, &o.NewFingerprint, &o.CAOrderID,
		&o.Outcome, &o.Error, &o.BatchID, &o.Remarks, &o.CreatedBy, &created, &updated, &since, &o.DeployKind, &o.KeyWhere,
		&o.KeyAlgorithm, &o.KeyRef)
	if err != nil {
		return Order{}, err
	}
	o.CreatedAt, o.UpdatedAt, o.OrderingSince = fromUS(created), fromUS(updated), fromNullUS(since)
	return o, nil
}

// rowQuerier is what both *sql.DB and *sql.Tx offer for one row.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func orderByAccount(ctx context.Context, q rowQuerier, account, id string) (Order, error) {
	o, err := scanOrder(q.QueryRowContext(ctx, `SELECT `+orderColumns+` FROM orders WHERE account_id = ? AND id = ?`, account, id))
	if err != nil {
		return Order{}, notFound("order "+id, err)
	}
	return o, nil
}

// CreateOrder adds an order (status initiated) with its first event and,
// when job is not nil, its rotate job. The job's Kind, Account, OrderID
// and (when empty) BotID are taken from the order, and o.JobID from the
// job. A duplicate order ID is ErrConflict: callers that derive the ID
// from what they act on (a schedule's firing, a batch item) order once
// even when two replicas try. o.BotID, when set, must be the account's
// bot (ErrNotFound).
func (s *SQL) CreateOrder(ctx context.Context, o Order, job *Job) error {
	switch {
	case o.ID == "":
		return errors.New("create order: id: empty")
	case o.Account == "":
		return errors.New("create order: account: empty")
	case o.Action == "":
		return errors.New("create order: action: empty")
	}
	if job != nil {
		j := *job // the caller's stays as it was
		job = &j
		if job.ID == "" {
			return errors.New("create order: job id: empty")
		}
		if job.BotID == "" {
			job.BotID = o.BotID
		}
		if o.BotID == "" || job.BotID != o.BotID {
			return fmt.Errorf("create order: job bot %q: want the order's bot %q", job.BotID, o.BotID)
		}
		if o.JobID != "" && o.JobID != job.ID {
			return fmt.Errorf("create order: job id %q: want the order's job id %q", job.ID, o.JobID)
		}
		o.JobID = job.ID
	}
	now := s.now()
	o.Status, o.OrderingSince = OrderInitiated, nil
	stamps(&o.CreatedAt, &o.UpdatedAt, now)
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := accountExists(ctx, tx, o.Account); err != nil {
			return err
		}
		if o.BotID != "" {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM bots WHERE account_id = ? AND id = ?`, o.Account, o.BotID).
				Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("bot %s: %w", o.BotID, ErrNotFound)
			}
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO orders (`+orderColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)
			ON CONFLICT (id) DO NOTHING`,
			o.ID, o.Account, o.BotID, o.JobID, o.Action, o.Fingerprint, o.Location, o.TemplateID, o.Connector,
			o.CASettings, o.Status, o.CSRPEM, o.CertPEM, o.ChainPEM, o.NewFingerprint, o.CAOrderID, o.Outcome, o.Error,
			o.BatchID, o.Remarks, o.CreatedBy, us(o.CreatedAt), us(o.UpdatedAt), o.DeployKind, o.KeyWhere, o.KeyAlgorithm,
			o.KeyRef)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("order %s already exists: %w", o.ID, ErrConflict)
		}
		msg := "order created"
		if o.CreatedBy != "" {
			msg += " by " + o.CreatedBy
		}
		if err := insertEvents(ctx, tx, o.ID, o.Status, o.CreatedAt,
			[]OrderEvent{{Time: o.CreatedAt, Status: o.Status, OK: true, Message: msg}}); err != nil {
			return err
		}
		if job == nil {
			return nil
		}
		job.Account, job.Kind, job.OrderID = o.Account, protocol.JobRotate, o.ID
		return insertJob(ctx, tx, *job, now)
	})
	if err != nil {
		return fmt.Errorf("create order: %w", err)
	}
	return nil
}

// insertEvents appends evs to the order's history, numbering them after
// the last one; an event without a status gets status, without a time at.
func insertEvents(ctx context.Context, tx *sql.Tx, orderID, status string, at time.Time, evs []OrderEvent) error {
	var last int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM order_events WHERE order_id = ?`, orderID).
		Scan(&last); err != nil {
		return err
	}
	for _, ev := range evs {
		last++
		if ev.Status == "" {
			ev.Status = status
		}
		if ev.Time.IsZero() {
			ev.Time = at
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO order_events (order_id, seq, time, status, step, ok, message)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, orderID, last, us(ev.Time), ev.Status, ev.Step, boolInt(ev.OK), ev.Message); err != nil {
			return err
		}
	}
	return nil
}

// Order reads one order of the account.
func (s *SQL) Order(ctx context.Context, account, id string) (Order, error) {
	return orderByAccount(ctx, s.db, account, id)
}

// OrderForBot reads an order by the bot it was sent to.
func (s *SQL) OrderForBot(ctx context.Context, botID, id string) (Order, error) {
	if botID == "" {
		// An order without a bot is nobody's through the bot API.
		return Order{}, fmt.Errorf("order %s: %w", id, ErrNotFound)
	}
	o, err := scanOrder(s.db.QueryRowContext(ctx, `SELECT `+orderColumns+` FROM orders WHERE bot_id = ? AND id = ?`, botID, id))
	if err != nil {
		return Order{}, notFound("order "+id, err)
	}
	return o, nil
}

// Orders lists the account's orders, newest first. A negative or zero
// Limit is 100.
func (s *SQL) Orders(ctx context.Context, account string, f OrderFilter) ([]Order, error) {
	where, args := []string{"account_id = ?"}, []any{account}
	if f.Fingerprint != "" {
		where, args = append(where, "(fingerprint = ? OR new_fingerprint = ?)"), append(args, f.Fingerprint, f.Fingerprint)
	}
	if f.BatchID != "" {
		where, args = append(where, "batch_id = ?"), append(args, f.BatchID)
	}
	if f.BotID != "" {
		where, args = append(where, "bot_id = ?"), append(args, f.BotID)
	}
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, f.Status)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultPageSize
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+orderColumns+` FROM orders WHERE `+strings.Join(where, " AND ")+`
		ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`, append(args, limit, max(f.Offset, 0))...)
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	defer rows.Close()
	out := []Order{}
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			return nil, fmt.Errorf("list orders: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	return out, nil
}

// OrderEvents lists an order's history, oldest first.
func (s *SQL) OrderEvents(ctx context.Context, account, id string) ([]OrderEvent, error) {
	if _, err := s.Order(ctx, account, id); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT order_id, seq, time, status, step, ok, message FROM order_events
		WHERE order_id = ? ORDER BY seq`, id)
	if err != nil {
		return nil, fmt.Errorf("order events: %w", err)
	}
	defer rows.Close()
	out := []OrderEvent{}
	for rows.Next() {
		var ev OrderEvent
		var at int64
		var ok int
		if err := rows.Scan(&ev.OrderID, &ev.Seq, &at, &ev.Status, &ev.Step, &ok, &ev.Message); err != nil {
			return nil, fmt.Errorf("order events: %w", err)
		}
		ev.Time, ev.OK = fromUS(at), ok == 1
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("order events: %w", err)
	}
	return out, nil
}

// ClaimOrdering takes an order for ordering with one conditional UPDATE;
// the claim is recorded as an event. ErrNotFound when the order is not
// the bot's.
func (s *SQL) ClaimOrdering(ctx context.Context, botID, id, csrPEM string, now, staleBefore time.Time) (Order, bool, error) {
	if botID == "" {
		return Order{}, false, fmt.Errorf("claim ordering: order %s: %w", id, ErrNotFound)
	}
	var o Order
	var claimed bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var prev sql.NullInt64
		// Whether this is a takeover, for the event only: the UPDATE
		// below decides.
		if err := tx.QueryRowContext(ctx, `SELECT ordering_since FROM orders WHERE bot_id = ? AND id = ?`, botID, id).
			Scan(&prev); err != nil {
			return notFound("order "+id, err)
		}
		res, err := tx.ExecContext(ctx, `UPDATE orders SET status = ?, ordering_since = ?, csr_pem = ?, updated_at = ?
			WHERE id = ? AND bot_id = ? AND (status = ? OR (status = ? AND ordering_since < ?))`,
			OrderOrdering, us(now), csrPEM, us(now), id, botID, OrderInitiated, OrderOrdering, us(staleBefore))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		claimed = n == 1
		if claimed {
			msg := "ordering from the CA"
			if prev.Valid {
				msg = "ordering again from the CA: the previous attempt, begun " + fromUS(prev.Int64).Format(time.RFC3339) + ", went stale"
			}
			if err := insertEvents(ctx, tx, id, OrderOrdering, now, []OrderEvent{{OK: true, Message: msg}}); err != nil {
				return err
			}
		}
		o, err = scanOrder(tx.QueryRowContext(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = ?`, id))
		return err
	})
	if err != nil {
		return Order{}, false, fmt.Errorf("claim ordering: %w", err)
	}
	return o, claimed, nil
}

// TransitionOrder applies p when the status is one of from, with the event
// ev, in one transaction. A status other than ordering clears
// OrderingSince; ordering sets it to now.
func (s *SQL) TransitionOrder(ctx context.Context, account, id string, from []string, p OrderPatch, ev OrderEvent) (Order, error) {
	now := s.now()
	sets, args := []string{"updated_at = ?"}, []any{us(now)}
	set := func(col string, v *string) {
		if v != nil {
			sets, args = append(sets, col+" = ?"), append(args, *v)
		}
	}
	set("status", p.Status)
	set("csr_pem", p.CSRPEM)
	set("cert_pem", p.CertPEM)
	set("chain_pem", p.ChainPEM)
	set("new_fingerprint", p.NewFingerprint)
	set("ca_order_id", p.CAOrderID)
	set("outcome", p.Outcome)
	set("error", p.Error)
	set("remarks", p.Remarks)
	if p.Status != nil {
		if *p.Status == "" {
			return Order{}, errors.New("transition order: status: empty")
		}
		if *p.Status == OrderOrdering {
			sets, args = append(sets, "ordering_since = ?"), append(args, us(now))
		} else {
			sets = append(sets, "ordering_since = NULL")
		}
	}
	where, wargs := "account_id = ? AND id = ?", []any{account, id}
	if len(from) > 0 {
		where += " AND status IN (" + placeholders(len(from)) + ")"
		for _, f := range from {
			wargs = append(wargs, f)
		}
	}
	var o Order
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE orders SET `+strings.Join(sets, ", ")+` WHERE `+where, append(args, wargs...)...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		cur, err := orderByAccount(ctx, tx, account, id)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("order %s is %s, not %s: %w", id, cur.Status, strings.Join(from, " or "), ErrConflict)
		}
		ev.Status = cur.Status
		if err := insertEvents(ctx, tx, id, cur.Status, now, []OrderEvent{ev}); err != nil {
			return err
		}
		o = cur
		return nil
	})
	if err != nil {
		return Order{}, fmt.Errorf("transition order: %w", err)
	}
	return o, nil
}

// AddOrderEvents appends events (without a status: the order's; without
// a time: now).
func (s *SQL) AddOrderEvents(ctx context.Context, account, id string, evs []OrderEvent) error {
	if len(evs) == 0 {
		return nil
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		// A no-op UPDATE: it checks the account and, in PostgreSQL, locks
		// the order row, so that concurrent appends number in turn.
		res, err := tx.ExecContext(ctx, `UPDATE orders SET updated_at = updated_at WHERE account_id = ? AND id = ?`, account, id)
		if err != nil {
			return err
		}
		if err := checkUpdated(res, "order", id); err != nil {
			return err
		}
		o, err := orderByAccount(ctx, tx, account, id)
		if err != nil {
			return err
		}
		return insertEvents(ctx, tx, id, o.Status, s.now(), evs)
	})
	if err != nil {
		return fmt.Errorf("add order events: %w", err)
	}
	return nil
}

// OrderCounts counts the account's orders by status.
func (s *SQL) OrderCounts(ctx context.Context, account string) (map[string]int, error) {
	counts, err := countBy(ctx, s.db, `SELECT status, COUNT(*) FROM orders WHERE account_id = ? GROUP BY status`, account)
	if err != nil {
		return nil, fmt.Errorf("order counts: %w", err)
	}
	return counts, nil
}

// countBy runs a query of (key, count) rows.
func countBy(ctx context.Context, q queryer, query string, args ...any) (map[string]int, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		out[k] = n
	}
	return out, rows.Err()
}

// ---- the local CA

// LocalCA reads the account's private CA.
func (s *SQL) LocalCA(ctx context.Context, account string) (LocalCA, error) {
	c := LocalCA{Account: account}
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT cert_pem, key_sealed, created_at FROM local_cas WHERE account_id = ?`, account).
		Scan(&c.CertPEM, &c.KeySealed, &created)
	if err != nil {
		return LocalCA{}, notFound("local ca of account "+account, err)
	}
	c.CreatedAt = fromUS(created)
	return c, nil
}

// CreateLocalCA stores the account's private CA; ErrConflict when it has
// one already.
func (s *SQL) CreateLocalCA(ctx context.Context, c LocalCA) error {
	switch {
	case c.Account == "":
		return errors.New("create local ca: account: empty")
	case c.CertPEM == "":
		return errors.New("create local ca: certificate: empty")
	case len(c.KeySealed) == 0:
		return errors.New("create local ca: sealed key: empty")
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.now()
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := accountExists(ctx, tx, c.Account); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO local_cas (account_id, cert_pem, key_sealed, created_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (account_id) DO NOTHING`, c.Account, c.CertPEM, c.KeySealed, us(c.CreatedAt))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("account %s already has a local ca: %w", c.Account, ErrConflict)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create local ca: %w", err)
	}
	return nil
}

// ---- mass replacements (P9)

var batchStatuses = []string{BatchPlanned, BatchRunning, BatchStopping, BatchStopped, BatchDone}

var itemStates = []string{ItemPending, ItemOrdered, ItemDone, ItemFailed, ItemSkipped}

// CreateBatch adds a batch with its items. Items are numbered in the
// order given (Seq 1, 2, ...) and put in waves of WaveSize; their state
// is pending.
func (s *SQL) CreateBatch(ctx context.Context, b Batch, items []BatchItem) error {
	switch {
	case b.ID == "":
		return errors.New("create batch: id: empty")
	case b.Account == "":
		return errors.New("create batch: account: empty")
	case b.Action == "":
		return errors.New("create batch: action: empty")
	case b.WaveSize < 1:
		return fmt.Errorf("create batch: wave size %d: want at least 1", b.WaveSize)
	case b.MaxFailures < 0:
		return fmt.Errorf("create batch: max failures %d: want 0 or more", b.MaxFailures)
	}
	if b.Filter == "" {
		b.Filter = "{}"
	}
	if b.CreatedAt.IsZero() {
		b.CreatedAt = s.now()
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := accountExists(ctx, tx, b.Account); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO batches (id, account_id, name, filter, template_id, action, wave_size,
			max_failures, status, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			b.ID, b.Account, b.Name, b.Filter, b.TemplateID, b.Action, b.WaveSize, b.MaxFailures, BatchPlanned, b.CreatedBy,
			us(b.CreatedAt))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("batch %s already exists: %w", b.ID, ErrConflict)
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO batch_items (batch_id, seq, wave, fingerprint, location, bot_id, order_id,
			state, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '')`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i, it := range items {
			seq := i + 1
			if _, err := stmt.ExecContext(ctx, b.ID, seq, i/b.WaveSize+1, it.Fingerprint, it.Location, it.BotID, it.OrderID,
				ItemPending); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create batch: %w", err)
	}
	return nil
}

const batchColumns = `id, account_id, name, filter, template_id, action, wave_size, max_failures, status, created_by,
	created_at, started_at, finished_at`

func scanBatch(r scanner) (Batch, error) {
	var b Batch
	var created int64
	var started, finished sql.NullInt64
	if err := r.Scan(&b.ID, &b.Account, &b.Name, &b.Filter, &b.TemplateID, &b.Action, &b.WaveSize, &b.MaxFailures, &b.Status,
		&b.CreatedBy, &created, &started, &finished); err != nil {
		return Batch{}, err
	}
	b.CreatedAt, b.StartedAt, b.FinishedAt = fromUS(created), fromNullUS(started), fromNullUS(finished)
	return b, nil
}

// batches lists batches with their counts, from two queries: the batches,
// then their items grouped by state (the covering index batch_items_state).
func (s *SQL) batches(ctx context.Context, where string, args ...any) ([]Batch, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+batchColumns+` FROM batches WHERE `+where+` ORDER BY created_at DESC, id DESC`,
		args...)
	if err != nil {
		return nil, err
	}
	out := []Batch{}
	for rows.Next() {
		b, err := scanBatch(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, b)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return out, nil
	}
	ids := make([]any, len(out))
	index := map[string]int{}
	for i, b := range out {
		ids[i], index[b.ID] = b.ID, i
	}
	rows, err = s.db.QueryContext(ctx, `SELECT batch_id, state, COUNT(*) FROM batch_items WHERE batch_id IN (`+
		placeholders(len(ids))+`) GROUP BY batch_id, state`, ids...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id, state string
		var n int
		if err := rows.Scan(&id, &state, &n); err != nil {
			return nil, err
		}
		c := &out[index[id]].Counts
		c.Total += n
		switch state {
		case ItemPending:
			c.Pending += n
		case ItemOrdered:
			c.Ordered += n
		case ItemDone:
			c.Done += n
		case ItemFailed:
			c.Failed += n
		case ItemSkipped:
			c.Skipped += n
		}
	}
	return out, rows.Err()
}

// Batch reads one batch of the account with its counts.
func (s *SQL) Batch(ctx context.Context, account, id string) (Batch, error) {
	bs, err := s.batches(ctx, `account_id = ? AND id = ?`, account, id)
	if err != nil {
		return Batch{}, fmt.Errorf("batch %s: %w", id, err)
	}
	if len(bs) == 0 {
		return Batch{}, fmt.Errorf("batch %s: %w", id, ErrNotFound)
	}
	return bs[0], nil
}

// Batches lists the account's batches, newest first, with their counts.
func (s *SQL) Batches(ctx context.Context, account string) ([]Batch, error) {
	bs, err := s.batches(ctx, `account_id = ?`, account)
	if err != nil {
		return nil, fmt.Errorf("list batches: %w", err)
	}
	return bs, nil
}

// RunningBatches lists the running and stopping batches of every account,
// with their counts.
func (s *SQL) RunningBatches(ctx context.Context) ([]Batch, error) {
	bs, err := s.batches(ctx, `status IN (?, ?)`, BatchRunning, BatchStopping)
	if err != nil {
		return nil, fmt.Errorf("running batches: %w", err)
	}
	return bs, nil
}

// BatchItems lists a batch's items in plan order; a limit of 0 or less is
// 100.
func (s *SQL) BatchItems(ctx context.Context, account, id string, limit, offset int) ([]BatchItem, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM batches WHERE account_id = ? AND id = ?`, account, id).
		Scan(&n); err != nil {
		return nil, fmt.Errorf("batch items: %w", err)
	}
	if n == 0 {
		return nil, fmt.Errorf("batch %s: %w", id, ErrNotFound)
	}
	if limit <= 0 {
		limit = DefaultPageSize
	}
	rows, err := s.db.QueryContext(ctx, `SELECT batch_id, seq, wave, fingerprint, location, bot_id, order_id, state, error
		FROM batch_items WHERE batch_id = ? ORDER BY seq LIMIT ? OFFSET ?`, id, limit, max(offset, 0))
	if err != nil {
		return nil, fmt.Errorf("batch items: %w", err)
	}
	defer rows.Close()
	out := []BatchItem{}
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

// SetBatchStatus changes the status when it is one of from (any, when from
// is empty). Running stamps StartedAt (the first time); stopped and done
// stamp FinishedAt.
func (s *SQL) SetBatchStatus(ctx context.Context, account, id string, from []string, to string, now time.Time) error {
	if !slices.Contains(batchStatuses, to) {
		return fmt.Errorf("set batch status: status %q: want one of %s", to, strings.Join(batchStatuses, ", "))
	}
	sets, args := []string{"status = ?"}, []any{to}
	switch to {
	case BatchRunning:
		sets, args = append(sets, "started_at = COALESCE(started_at, ?)"), append(args, us(now))
	case BatchStopped, BatchDone:
		sets, args = append(sets, "finished_at = ?"), append(args, us(now))
	}
	where := "account_id = ? AND id = ?"
	args = append(args, account, id)
	if len(from) > 0 {
		where += " AND status IN (" + placeholders(len(from)) + ")"
		for _, f := range from {
			args = append(args, f)
		}
	}
	res, err := s.db.ExecContext(ctx, `UPDATE batches SET `+strings.Join(sets, ", ")+` WHERE `+where, args...)
	if err != nil {
		return fmt.Errorf("set batch status: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var status string
		if err := s.db.QueryRowContext(ctx, `SELECT status FROM batches WHERE account_id = ? AND id = ?`, account, id).
			Scan(&status); err != nil {
			return notFound("set batch status: batch "+id, err)
		}
		return fmt.Errorf("set batch status: batch %s is %s, not %s: %w", id, status, strings.Join(from, " or "), ErrConflict)
	}
	return nil
}

// SetBatchItem records an item's state and error, and its order when
// orderID is not empty (an empty one keeps the order recorded before).
func (s *SQL) SetBatchItem(ctx context.Context, batchID string, seq int, orderID, state, errText string) error {
	if !slices.Contains(itemStates, state) {
		return fmt.Errorf("set batch item: state %q: want one of %s", state, strings.Join(itemStates, ", "))
	}
	q, args := `UPDATE batch_items SET state = ?, error = ?`, []any{state, errText}
	if orderID != "" {
		q, args = q+`, order_id = ?`, append(args, orderID)
	}
	res, err := s.db.ExecContext(ctx, q+` WHERE batch_id = ? AND seq = ?`, append(args, batchID, seq)...)
	if err != nil {
		return fmt.Errorf("set batch item: %w", err)
	}
	if err := checkUpdated(res, "batch item", fmt.Sprintf("%s/%d", batchID, seq)); err != nil {
		return fmt.Errorf("set batch item: %w", err)
	}
	return nil
}

// ---- schedules (P6)

var scheduleActions = []string{ScheduleInitiate, ScheduleOrder, ScheduleRotate, ScheduleRenewal, ScheduleRecheck}

// CreateSchedule adds a pending schedule. A one-shot one needs At; an
// auto-renew one (AutoRenewDays > 0) needs the Fingerprint of the
// certificate whose expiry it watches. A duplicate ID is ErrConflict.
func (s *SQL) CreateSchedule(ctx context.Context, sc Schedule) error {
	switch {
	case sc.ID == "":
		return errors.New("create schedule: id: empty")
	case sc.Account == "":
		return errors.New("create schedule: account: empty")
	case !slices.Contains(scheduleActions, sc.Action):
		return fmt.Errorf("create schedule: action %q: want one of %s", sc.Action, strings.Join(scheduleActions, ", "))
	case sc.AutoRenewDays < 0:
		return fmt.Errorf("create schedule: auto-renew days %d: want 0 or more", sc.AutoRenewDays)
	case sc.AutoRenewDays == 0 && sc.At.IsZero():
		return errors.New("create schedule: at: empty (a one-shot schedule needs a time)")
	case sc.AutoRenewDays > 0 && sc.Fingerprint == "":
		return errors.New("create schedule: fingerprint: empty (auto-renew watches a certificate)")
	}
	if sc.CreatedAt.IsZero() {
		sc.CreatedAt = s.now()
	}
	var at any
	if !sc.At.IsZero() {
		at = us(sc.At)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := accountExists(ctx, tx, sc.Account); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO schedules (id, account_id, action, fingerprint, location, template_id, at,
			auto_renew_days, status, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			sc.ID, sc.Account, sc.Action, sc.Fingerprint, sc.Location, sc.TemplateID, at, sc.AutoRenewDays, SchedulePending,
			sc.CreatedBy, us(sc.CreatedAt))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("schedule %s already exists: %w", sc.ID, ErrConflict)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create schedule: %w", err)
	}
	return nil
}

const scheduleColumns = `s.id, s.account_id, s.action, s.fingerprint, s.location, s.template_id, s.at, s.auto_renew_days,
	s.status, s.last_fired, s.last_order_id, s.last_error, s.created_by, s.created_at`

func (s *SQL) schedules(ctx context.Context, query string, args ...any) ([]Schedule, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Schedule{}
	for rows.Next() {
		var sc Schedule
		var at, fired sql.NullInt64
		var created int64
		if err := rows.Scan(&sc.ID, &sc.Account, &sc.Action, &sc.Fingerprint, &sc.Location, &sc.TemplateID, &at,
			&sc.AutoRenewDays, &sc.Status, &fired, &sc.LastOrderID, &sc.LastError, &sc.CreatedBy, &created); err != nil {
			return nil, err
		}
		if at.Valid {
			sc.At = fromUS(at.Int64)
		}
		sc.LastFired, sc.CreatedAt = fromNullUS(fired), fromUS(created)
		out = append(out, sc)
	}
	return out, rows.Err()
}

// Schedules lists the account's schedules, newest first.
func (s *SQL) Schedules(ctx context.Context, account string) ([]Schedule, error) {
	out, err := s.schedules(ctx, `SELECT `+scheduleColumns+` FROM schedules s WHERE s.account_id = ?
		ORDER BY s.created_at DESC, s.id DESC`, account)
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	return out, nil
}

// CancelSchedule cancels a pending schedule; canceling a canceled one
// again is nil, a fired one ErrConflict.
func (s *SQL) CancelSchedule(ctx context.Context, account, id string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE schedules SET status = ? WHERE account_id = ? AND id = ? AND status = ?`,
		ScheduleCanceled, account, id, SchedulePending)
	if err != nil {
		return fmt.Errorf("cancel schedule: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	var status string
	if err := s.db.QueryRowContext(ctx, `SELECT status FROM schedules WHERE account_id = ? AND id = ?`, account, id).
		Scan(&status); err != nil {
		return notFound("cancel schedule: schedule "+id, err)
	}
	if status == ScheduleCanceled {
		return nil
	}
	return fmt.Errorf("cancel schedule: schedule %s is %s: %w", id, status, ErrConflict)
}

// DueSchedules lists, oldest due first, the pending one-shot schedules
// with At <= now, then the auto-renew schedules due: the certificate of
// their Fingerprint (the account's, still present somewhere) expires
// within AutoRenewDays of now, they have not fired with an order for that
// certificate yet, and a firing that failed without an order was more
// than AutoRenewRetry ago. An auto-renew schedule therefore fires at most
// once per certificate: once its order deploys, the ordering code moves
// it to the new certificate (MoveSchedules or UpdateScheduleFingerprint).
// A limit of 0 or less is 100.
func (s *SQL) DueSchedules(ctx context.Context, now time.Time, limit int) ([]Schedule, error) {
	if limit <= 0 {
		limit = DefaultPageSize
	}
	out, err := s.schedules(ctx, `SELECT `+scheduleColumns+` FROM schedules s
		WHERE s.status = ? AND s.auto_renew_days = 0 AND s.at <= ? ORDER BY s.at, s.id LIMIT ?`, SchedulePending, us(now), limit)
	if err != nil {
		return nil, fmt.Errorf("due schedules: %w", err)
	}
	if len(out) == limit {
		return out, nil
	}
	day := int64(24 * time.Hour / time.Microsecond)
	renew, err := s.schedules(ctx, `SELECT `+scheduleColumns+` FROM schedules s
		JOIN certificates c ON c.account_id = s.account_id AND c.fingerprint = s.fingerprint
		WHERE s.status = ? AND s.auto_renew_days > 0 AND s.fired_fingerprint <> s.fingerprint
			AND c.present = 1 AND c.not_after <= ? + s.auto_renew_days * ?
			AND (s.last_error = '' OR s.last_fired IS NULL OR s.last_fired <= ?)
		ORDER BY c.not_after, s.id LIMIT ?`,
		SchedulePending, us(now), day, us(now.Add(-AutoRenewRetry)), limit-len(out))
	if err != nil {
		return nil, fmt.Errorf("due schedules: %w", err)
	}
	return append(out, renew...), nil
}

// FireSchedule records a firing with one conditional UPDATE. A one-shot
// schedule becomes fired if still pending. An auto-renew one records the
// time, the order and the error; with an order it is marked as fired for
// its current certificate, only if it was not already (fired is false
// when another replica fired it); without one (errText says why) it stays
// due and is retried after AutoRenewRetry.
func (s *SQL) FireSchedule(ctx context.Context, id string, now time.Time, orderID, errText string) (bool, error) {
	var days int
	if err := s.db.QueryRowContext(ctx, `SELECT auto_renew_days FROM schedules WHERE id = ?`, id).Scan(&days); err != nil {
		return false, notFound("fire schedule: schedule "+id, err)
	}
	var res sql.Result
	var err error
	switch {
	case days == 0:
		res, err = s.db.ExecContext(ctx, `UPDATE schedules SET status = ?, last_fired = ?, last_order_id = ?, last_error = ?
			WHERE id = ? AND status = ?`, ScheduleFired, us(now), orderID, errText, id, SchedulePending)
	case orderID != "":
		res, err = s.db.ExecContext(ctx, `UPDATE schedules SET fired_fingerprint = fingerprint, last_fired = ?, last_order_id = ?,
			last_error = ? WHERE id = ? AND status = ? AND fired_fingerprint <> fingerprint`, us(now), orderID, errText, id,
			SchedulePending)
	default:
		if errText == "" {
			errText = "fired without an order"
		}
		res, err = s.db.ExecContext(ctx, `UPDATE schedules SET last_fired = ?, last_error = ?
			WHERE id = ? AND status = ? AND fired_fingerprint <> fingerprint`, us(now), errText, id, SchedulePending)
	}
	if err != nil {
		return false, fmt.Errorf("fire schedule: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("fire schedule: %w", err)
	}
	return n == 1, nil
}

// UpdateScheduleFingerprint points an auto-renew schedule at another
// certificate (the one that replaced it), so that it is due again when
// that one nears expiry. Not in OrderStore: the scheduler and ordering
// code of this control plane use it through *SQL.
func (s *SQL) UpdateScheduleFingerprint(ctx context.Context, id, fingerprint string) error {
	if fingerprint == "" {
		return errors.New("update schedule fingerprint: fingerprint: empty")
	}
	res, err := s.db.ExecContext(ctx, `UPDATE schedules SET fingerprint = ? WHERE id = ?`, fingerprint, id)
	if err != nil {
		return fmt.Errorf("update schedule fingerprint: %w", err)
	}
	if err := checkUpdated(res, "schedule", id); err != nil {
		return fmt.Errorf("update schedule fingerprint: %w", err)
	}
	return nil
}

// MoveSchedules points the account's pending auto-renew schedules on the
// certificate from at the certificate to (its replacement, once
// deployed), whichever order replaced it, and says how many moved. Not
// in OrderStore, like UpdateScheduleFingerprint.
func (s *SQL) MoveSchedules(ctx context.Context, account, from, to string) (int, error) {
	if from == "" || to == "" {
		return 0, errors.New("move schedules: fingerprints: empty")
	}
	res, err := s.db.ExecContext(ctx, `UPDATE schedules SET fingerprint = ?
		WHERE account_id = ? AND fingerprint = ? AND status = ? AND auto_renew_days > 0`, to, account, from, SchedulePending)
	if err != nil {
		return 0, fmt.Errorf("move schedules: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("move schedules: %w", err)
	}
	return int(n), nil
}

// ---- the key inventory (P4)

// KeyInventory reads the key inventory (P4): the keys scans found and
// the keys rotations made, with each location's history. *SQL implements
// it; it is not part of Store (store.go is the lead's), so callers
// assert it on their Store.
type KeyInventory interface {
	// FoundKeys lists the key objects scans found, newest first.
	FoundKeys(ctx context.Context, account string, f KeyFilter) ([]Key, error)
	// MadeKeys lists the orders that made a new key (KeyAlgorithm set),
	// newest first, with the key of the certificate each replaced.
	MadeKeys(ctx context.Context, account string, f KeyFilter) ([]KeyOrder, error)
	// LocationHistory lists every order of each location named, oldest
	// first (at most DefaultPageSize per location: the latest ones).
	LocationHistory(ctx context.Context, account string, locs []LocationRef) (map[LocationRef][]KeyOrder, error)
}

var _ KeyInventory = (*SQL)(nil)

// KeyFilter selects the key inventory's rows; zero fields select all.
type KeyFilter struct {
	// Location is a location URI: the keys found there or with the
	// certificate found there, the orders of that location.
	Location string
	BotID    string
	Limit    int // 0: DefaultPageSize
	Offset   int
}

// LocationRef names one location: the same URI on two bots (one path on
// two servers) is two locations.
type LocationRef struct{ BotID, URI string }

// KeyOrder is an order as the key inventory shows it: with the key of
// the certificate it replaced (from the certificate's row; "" and 0 when
// the order replaced none or the row is unknown). Order.KeyAlgorithm is
// the key it made ("" when it kept the key).
type KeyOrder struct {
	Order           Order
	OldKeyAlgorithm string
	OldKeyBits      int
}

// prefixColumns qualifies a column list with a table alias.
func prefixColumns(cols, alias string) string {
	parts := strings.Split(cols, ",")
	for i, p := range parts {
		parts[i] = alias + "." + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}

// keyOrderQuery selects orders (alias o) with their old certificate's key.
func keyOrderQuery(where string) string {
	return `SELECT ` + prefixColumns(orderColumns, "o") + `, COALESCE(c.key_algorithm, ''), COALESCE(c.key_bits, 0)
		FROM orders o LEFT JOIN certificates c ON c.account_id = o.account_id AND c.fingerprint = o.fingerprint AND o.fingerprint <> ''
		WHERE ` + where + ` ORDER BY o.created_at DESC, o.id DESC LIMIT ? OFFSET ?`
}

// stmtQueryer is a prepared statement's query.
type stmtQueryer interface {
	QueryContext(ctx context.Context, args ...any) (*sql.Rows, error)
}

// queryKeyOrders runs a prepared keyOrderQuery.
func queryKeyOrders(ctx context.Context, q stmtQueryer, args ...any) ([]KeyOrder, error) {
	rows, err := q.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []KeyOrder{}
	for rows.Next() {
		var m KeyOrder
		var created, updated int64
		var since sql.NullInt64
		o := &m.Order
		if err := rows.Scan(&o.ID, &o.Account, &o.BotID, &o.JobID, &o.Action, &o.Fingerprint, &o.Location, &o.TemplateID,
			&o.Connector, &o.CASettings, &o.Status, &o.CSRPEM, &o.CertPEM, &o.ChainPEM, &o.NewFingerprint, &o.CAOrderID,
			&o.Outcome, &o.Error, &o.BatchID, &o.Remarks, &o.CreatedBy, &created, &updated, &since, &o.DeployKind,
			&o.KeyWhere, &o.KeyAlgorithm, &o.KeyRef, &m.OldKeyAlgorithm, &m.OldKeyBits); err != nil {
			return nil, err
		}
		o.CreatedAt, o.UpdatedAt, o.OrderingSince = fromUS(created), fromUS(updated), fromNullUS(since)
		out = append(out, m)
	}
	return out, rows.Err()
}

// MadeKeys lists the orders that made a key, newest first, from the
// partial index orders_keys (or orders_location with a location).
func (s *SQL) MadeKeys(ctx context.Context, account string, f KeyFilter) ([]KeyOrder, error) {
	where, args := []string{"o.account_id = ?", "o.key_algorithm <> ''"}, []any{account}
	if f.Location != "" {
		where, args = append(where, "o.location = ?"), append(args, f.Location)
	}
	if f.BotID != "" {
		where, args = append(where, "o.bot_id = ?"), append(args, f.BotID)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultPageSize
	}
	stmt, err := s.db.PrepareContext(ctx, keyOrderQuery(strings.Join(where, " AND ")))
	if err != nil {
		return nil, fmt.Errorf("made keys: %w", err)
	}
	defer stmt.Close()
	out, err := queryKeyOrders(ctx, stmt, append(args, limit, max(f.Offset, 0))...)
	if err != nil {
		return nil, fmt.Errorf("made keys: %w", err)
	}
	return out, nil
}

// LocationHistory reads each location's orders with one indexed query
// per location (orders_location), in one read transaction so that the
// locations agree with each other.
func (s *SQL) LocationHistory(ctx context.Context, account string, locs []LocationRef) (map[LocationRef][]KeyOrder, error) {
	out := map[LocationRef][]KeyOrder{}
	if len(locs) == 0 {
		return out, nil
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("location history: %w", err)
	}
	defer tx.Rollback()
	// Prepared once: parsing the query for each location was most of a
	// page's time (BenchmarkKeyPage10k).
	stmt, err := tx.PrepareContext(ctx, keyOrderQuery("o.account_id = ? AND o.location = ? AND o.bot_id = ?"))
	if err != nil {
		return nil, fmt.Errorf("location history: %w", err)
	}
	defer stmt.Close()
	for _, l := range locs {
		if _, done := out[l]; done {
			continue
		}
		// The latest DefaultPageSize, newest first, then turned around.
		os, err := queryKeyOrders(ctx, stmt, account, l.URI, l.BotID, DefaultPageSize, 0)
		if err != nil {
			return nil, fmt.Errorf("location history: %w", err)
		}
		slices.Reverse(os)
		out[l] = os
	}
	return out, nil
}

// KeyPage is one page of the key inventory (P4).
type KeyPage struct {
	Found []Key
	Made  []KeyOrder
	// Locations are the locations of Made, each once, in Made's order
	// (the newest key first), each with its orders oldest first.
	Locations []LocationOrders
}

// LocationOrders is one location's rotation history.
type LocationOrders struct {
	LocationRef
	Orders []KeyOrder
}

// ReadKeyPage reads one page of the key inventory: f's Limit and Offset
// page the keys found and the keys made alike; the history covers the
// locations of the keys made on the page.
func ReadKeyPage(ctx context.Context, inv KeyInventory, account string, f KeyFilter) (KeyPage, error) {
	found, err := inv.FoundKeys(ctx, account, f)
	if err != nil {
		return KeyPage{}, err
	}
	made, err := inv.MadeKeys(ctx, account, f)
	if err != nil {
		return KeyPage{}, err
	}
	p := KeyPage{Found: found, Made: made}
	if err := p.fillLocations(ctx, inv, account); err != nil {
		return KeyPage{}, err
	}
	return p, nil
}

// TrimKeyPage cuts a page read with one row more than it shows (to know
// whether another page follows) to n rows of each list, with the history
// of the keys made it keeps, and reports whether a list was longer.
func TrimKeyPage(p KeyPage, n int) (KeyPage, bool) {
	more := false
	if len(p.Found) > n {
		p.Found, more = p.Found[:n], true
	}
	if len(p.Made) > n {
		p.Made, more = p.Made[:n], true
		keep := map[LocationRef]bool{}
		for _, m := range p.Made {
			keep[LocationRef{BotID: m.Order.BotID, URI: m.Order.Location}] = true
		}
		locs := []LocationOrders{}
		for _, l := range p.Locations {
			if keep[l.LocationRef] {
				locs = append(locs, l)
			}
		}
		p.Locations = locs
	}
	return p, more
}

// fillLocations reads the history of the locations of p.Made.
func (p *KeyPage) fillLocations(ctx context.Context, inv KeyInventory, account string) error {
	var refs []LocationRef
	seen := map[LocationRef]bool{}
	for _, m := range p.Made {
		ref := LocationRef{BotID: m.Order.BotID, URI: m.Order.Location}
		if !seen[ref] {
			seen[ref] = true
			refs = append(refs, ref)
		}
	}
	hist, err := inv.LocationHistory(ctx, account, refs)
	if err != nil {
		return err
	}
	p.Locations = []LocationOrders{}
	for _, ref := range refs {
		p.Locations = append(p.Locations, LocationOrders{LocationRef: ref, Orders: hist[ref]})
	}
	return nil
}
