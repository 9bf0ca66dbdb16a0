package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/emsign/bot/connectors/ca"
)

// LedgerConformance checks that a Ledger behaves as the interface's doc
// says: idempotent Record by order reference (also when deliveries race),
// the revoke/suspend/resume rules, the CRL's list and strictly increasing
// CRL numbers under concurrency. newLedger must return an empty ledger
// each call. Times are whole seconds in UTC, so a ledger that keeps
// microseconds (SQL) compares equal. MemoryLedger runs it (ledger_test.go);
// so does the control plane store's ledger.
func LedgerConformance(t *testing.T, newLedger func() Ledger) {
	t.Helper()
	ctx := context.Background()
	base := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	rec := func(serial, ref string) Record {
		return Record{Serial: serial, OrderRef: ref, Profile: "tls-server", DER: []byte("der-" + serial),
			NotBefore: base, NotAfter: base.Add(90 * 24 * time.Hour), IssuedAt: base}
	}
	mustRecord := func(t *testing.T, l Ledger, r Record) Record {
		t.Helper()
		got, err := l.Record(ctx, r)
		if err != nil {
			t.Fatalf("record %s: %v", r.Serial, err)
		}
		return got
	}

	t.Run("record and get", func(t *testing.T) {
		l := newLedger()
		want := rec("a1", "order-1")
		got := mustRecord(t, l, want)
		want.Status = ca.StatusGood
		sameRecord(t, "record", got, want)
		got.DER[0] = 'X' // the caller's copy: the ledger's stays as it was
		for _, c := range []struct {
			name string
			get  func() (Record, error)
		}{
			{"get", func() (Record, error) { return l.Get(ctx, "a1") }},
			{"get by order ref", func() (Record, error) { return l.GetByOrderRef(ctx, "order-1") }},
		} {
			r, err := c.get()
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			sameRecord(t, c.name, r, want)
		}
		for _, c := range []struct {
			name string
			err  error
		}{
			{"get unknown", func() error { _, err := l.Get(ctx, "ff"); return err }()},
			{"get by unknown ref", func() error { _, err := l.GetByOrderRef(ctx, "order-2"); return err }()},
		} {
			if !errors.Is(c.err, ErrNotFound) {
				t.Errorf("%s: %v, want ErrNotFound", c.name, c.err)
			}
		}
	})

	t.Run("idempotent by order ref", func(t *testing.T) {
		l := newLedger()
		first := mustRecord(t, l, rec("b1", "order-1"))
		again := mustRecord(t, l, rec("b2", "order-1"))
		if again.Serial != first.Serial || !bytes.Equal(again.DER, first.DER) {
			t.Errorf("second record under the same ref: %s, want the first %s", again.Serial, first.Serial)
		}
		if _, err := l.Get(ctx, "b2"); !errors.Is(err, ErrNotFound) {
			t.Errorf("the second certificate was stored: %v", err)
		}
		// Without a ref, a serial is recorded once.
		mustRecord(t, l, rec("b3", ""))
		if _, err := l.Record(ctx, rec("b3", "")); err == nil {
			t.Error("a serial recorded twice: no error")
		}
		// Another ref does not bring back a serial already recorded.
		if _, err := l.Record(ctx, rec("b1", "order-9")); err == nil {
			t.Error("serial b1 under another ref: no error")
		}
	})

	t.Run("concurrent records of one order ref", func(t *testing.T) {
		l := newLedger()
		const n = 20
		serials := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := l.Record(ctx, rec(fmt.Sprintf("c%02d", i), "order-race"))
				serials[i], errs[i] = r.Serial, err
			}()
		}
		wg.Wait()
		stored := 0
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("record %d: %v", i, errs[i])
			}
			if serials[i] != serials[0] {
				t.Errorf("record %d got %s, record 0 %s: two certificates for one order", i, serials[i], serials[0])
			}
			if _, err := l.Get(ctx, fmt.Sprintf("c%02d", i)); err == nil {
				stored++
			}
		}
		if stored != 1 {
			t.Errorf("%d certificates stored for one order ref, want 1", stored)
		}
	})

	t.Run("revoke suspend resume", func(t *testing.T) {
		l := newLedger()
		for _, s := range []string{"d1", "d2"} {
			mustRecord(t, l, rec(s, ""))
		}
		at := base.Add(time.Hour)
		later := at.Add(time.Hour)
		steps := []struct {
			name    string
			do      func() error
			serial  string
			wantErr error
			status  string
			reason  int
			revoked time.Time
			remarks string
		}{
			{"suspend", func() error { return l.Suspend(ctx, "d1", at, "on hold") }, "d1", nil, ca.StatusSuspended, ca.ReasonCertificateHold, at, "on hold"},
			{"suspend again", func() error { return l.Suspend(ctx, "d1", later, "again") }, "d1", nil, ca.StatusSuspended, ca.ReasonCertificateHold, at, "on hold"},
			{"resume", func() error { return l.Resume(ctx, "d1") }, "d1", nil, ca.StatusGood, 0, time.Time{}, "on hold"},
			{"resume a good one", func() error { return l.Resume(ctx, "d1") }, "d1", ErrNotSuspended, ca.StatusGood, 0, time.Time{}, "on hold"},
			{"suspend then revoke", func() error {
				if err := l.Suspend(ctx, "d1", at, "hold"); err != nil {
					return err
				}
				return l.Revoke(ctx, "d1", ca.ReasonKeyCompromise, later, "key lost")
			}, "d1", nil, ca.StatusRevoked, ca.ReasonKeyCompromise, later, "key lost"},
			{"revoke again", func() error { return l.Revoke(ctx, "d1", ca.ReasonSuperseded, base, "x") }, "d1", nil, ca.StatusRevoked, ca.ReasonKeyCompromise, later, "key lost"},
			{"suspend a revoked one", func() error { return l.Suspend(ctx, "d1", at, "x") }, "d1", ErrAlreadyRevoked, ca.StatusRevoked, ca.ReasonKeyCompromise, later, "key lost"},
			{"resume a revoked one", func() error { return l.Resume(ctx, "d1") }, "d1", ErrNotSuspended, ca.StatusRevoked, ca.ReasonKeyCompromise, later, "key lost"},
			{"revoke a good one", func() error { return l.Revoke(ctx, "d2", ca.ReasonSuperseded, at, "") }, "d2", nil, ca.StatusRevoked, ca.ReasonSuperseded, at, ""},
			{"revoke unknown", func() error { return l.Revoke(ctx, "ee", 0, at, "") }, "", ErrNotFound, "", 0, time.Time{}, ""},
			{"suspend unknown", func() error { return l.Suspend(ctx, "ee", at, "") }, "", ErrNotFound, "", 0, time.Time{}, ""},
			{"resume unknown", func() error { return l.Resume(ctx, "ee") }, "", ErrNotFound, "", 0, time.Time{}, ""},
		}
		for _, s := range steps {
			err := s.do()
			if s.wantErr == nil && err != nil || s.wantErr != nil && !errors.Is(err, s.wantErr) {
				t.Fatalf("%s: %v, want %v", s.name, err, s.wantErr)
			}
			if s.serial == "" {
				continue
			}
			r, err := l.Get(ctx, s.serial)
			if err != nil {
				t.Fatalf("%s: get: %v", s.name, err)
			}
			if r.Status != s.status || r.Reason != s.reason || !r.RevokedAt.Equal(s.revoked) || r.Remarks != s.remarks {
				t.Errorf("%s: status %s reason %d at %v remarks %q; want %s %d %v %q", s.name, r.Status, r.Reason, r.RevokedAt,
					r.Remarks, s.status, s.reason, s.revoked, s.remarks)
			}
		}
	})

	t.Run("revoked list", func(t *testing.T) {
		l := newLedger()
		if got, err := l.Revoked(ctx); err != nil || len(got) != 0 {
			t.Fatalf("empty ledger: %v, %v", got, err)
		}
		for _, s := range []string{"f3", "f1", "f2", "f4"} {
			mustRecord(t, l, rec(s, ""))
		}
		if err := l.Revoke(ctx, "f3", ca.ReasonKeyCompromise, base, ""); err != nil {
			t.Fatal(err)
		}
		if err := l.Suspend(ctx, "f1", base, ""); err != nil {
			t.Fatal(err)
		}
		got, err := l.Revoked(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var list []string
		for _, r := range got {
			list = append(list, r.Serial+"="+r.Status)
		}
		if want := []string{"f1=" + ca.StatusSuspended, "f3=" + ca.StatusRevoked}; fmt.Sprint(list) != fmt.Sprint(want) {
			t.Errorf("revoked: %v, want %v", list, want)
		}
	})

	t.Run("crl numbers", func(t *testing.T) {
		l := newLedger()
		for want := int64(1); want <= 3; want++ {
			n, err := l.NextCRLNumber(ctx)
			if err != nil || n.Cmp(big.NewInt(want)) != 0 {
				t.Fatalf("crl number %v, %v; want %d", n, err, want)
			}
		}
		const goroutines = 20
		got := make([]*big.Int, goroutines)
		errs := make([]error, goroutines)
		var wg sync.WaitGroup
		for i := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], errs[i] = l.NextCRLNumber(ctx)
			}()
		}
		wg.Wait()
		seen := map[string]bool{}
		for i := range goroutines {
			if errs[i] != nil {
				t.Fatalf("crl number: %v", errs[i])
			}
			if got[i].Cmp(big.NewInt(3)) <= 0 || seen[got[i].String()] {
				t.Errorf("crl number %v: repeated or not above 3", got[i])
			}
			seen[got[i].String()] = true
		}
	})
}

// sameRecord compares what a ledger returned with what was recorded.
func sameRecord(t *testing.T, what string, got, want Record) {
	t.Helper()
	if got.Serial != want.Serial || got.OrderRef != want.OrderRef || got.Profile != want.Profile ||
		!bytes.Equal(got.DER, want.DER) || !got.NotBefore.Equal(want.NotBefore) || !got.NotAfter.Equal(want.NotAfter) ||
		!got.IssuedAt.Equal(want.IssuedAt) || got.Status != want.Status || got.Reason != want.Reason ||
		!got.RevokedAt.Equal(want.RevokedAt) || got.Remarks != want.Remarks {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}
