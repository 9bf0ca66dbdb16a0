package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/connectors/ca/local"
)

// P7: the store's CA ledger keeps every rule of local.Ledger (the checks
// MemoryLedger passes), each run on a fresh account.
func TestCALedgerConformance(t *testing.T) {
	st := open(t)
	n := 0
	local.LedgerConformance(t, func() local.Ledger {
		n++
		return st.CALedger(fmt.Sprintf("%010d", n))
	})
}

// Accounts' ledgers are apart: serials, order references and CRL numbers.
func TestCALedgerIsolation(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	a, b := st.CALedger("1000000001"), st.CALedger("1000000002")
	at := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	rec := local.Record{Serial: "1f", OrderRef: "order-1", DER: []byte{1}, NotBefore: at, NotAfter: at, IssuedAt: at}
	if _, err := a.Record(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := a.NextCRLNumber(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		err  error
	}{
		{"get", func() error { _, err := b.Get(ctx, "1f"); return err }()},
		{"get by order ref", func() error { _, err := b.GetByOrderRef(ctx, "order-1"); return err }()},
		{"revoke", b.Revoke(ctx, "1f", 1, at, "")},
		{"suspend", b.Suspend(ctx, "1f", at, "")},
		{"resume", b.Resume(ctx, "1f")},
	} {
		if !errors.Is(c.err, local.ErrNotFound) {
			t.Errorf("%s of another account's certificate: %v, want ErrNotFound", c.name, c.err)
		}
	}
	// The same serial and reference in another account are another
	// certificate.
	rec.DER = []byte{2}
	got, err := b.Record(ctx, rec)
	if err != nil || got.DER[0] != 2 {
		t.Fatalf("record in b: %+v, %v", got, err)
	}
	if n, err := b.NextCRLNumber(ctx); err != nil || n.Int64() != 1 {
		t.Errorf("b's first CRL number: %v, %v", n, err)
	}
	if r, _ := a.Revoked(ctx); len(r) != 0 {
		t.Errorf("a's CRL: %+v", r)
	}
}

// The hot lookups of a mass replacement use their indexes, so that each
// costs the same with 10,000 records as with 10 (a bound order ref read
// every record of the account until its query repeated the partial
// index's condition; the runner read every item of a batch).
func TestLedgerAndBatchQueriesUseIndexes(t *testing.T) {
	st := open(t)
	db := st.DB()
	for _, q := range []struct{ query, index string }{
		{`SELECT serial FROM ca_ledger WHERE account_id = ? AND order_ref = ? AND order_ref <> ''`, "ca_ledger_order_ref"},
		{`SELECT seq FROM batch_items WHERE batch_id = ? AND state = ? ORDER BY seq LIMIT 100`, "batch_items_state"},
		{`SELECT id FROM orders WHERE account_id = ? AND bot_id = ? AND status = ? ORDER BY created_at DESC, id DESC LIMIT 1`, "orders_bot_status"},
		{`SELECT id FROM orders WHERE account_id = ? AND status = ? ORDER BY created_at DESC, id DESC LIMIT 100`, "orders_status"},
	} {
		args := []any{"a", "b", "c"}[:strings.Count(q.query, "?")]
		rows, err := db.Query(`EXPLAIN QUERY PLAN `+q.query, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if p := strings.Join(plan, "; "); !strings.Contains(p, q.index) || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("%s: plan %v: want %s and no sort", q.query, plan, q.index)
		}
	}
}
