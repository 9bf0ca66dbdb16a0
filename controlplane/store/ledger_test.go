package store_test

import (
	"context"
	"errors"
	"fmt"
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
