package local

import (
	"context"
	"errors"
	"math/big"
	"sort"
	"sync"
	"time"

	"github.com/emsign/bot/connectors/ca"
)

// Errors a Ledger returns; the CA maps them to the ca package's errors.
var (
	// ErrNotFound: no certificate with this serial (or order reference).
	ErrNotFound = errors.New("not in the ledger")
	// ErrAlreadyRevoked: a revoked certificate cannot be suspended.
	ErrAlreadyRevoked = errors.New("already revoked")
	// ErrNotSuspended: only a suspended certificate can be resumed.
	ErrNotSuspended = errors.New("not suspended")
)

// Record is one certificate the CA issued, as the ledger keeps it.
type Record struct {
	// Serial is the certificate's serial number, lowercase hex without
	// separators or leading zeros (SerialString).
	Serial string
	// OrderRef is the caller's idempotency key ("" when none was given).
	OrderRef string
	Profile  string
	// DER is the certificate.
	DER       []byte
	NotBefore time.Time
	NotAfter  time.Time
	IssuedAt  time.Time
	// Status is ca.StatusGood, ca.StatusRevoked or ca.StatusSuspended.
	Status string
	// RevokedAt and Reason are set while revoked or suspended (Reason is
	// ca.ReasonCertificateHold while suspended).
	RevokedAt time.Time
	Reason    int
	// Remarks are the person's words given with the last revocation or
	// suspension (D7).
	Remarks string
}

// Ledger is where the CA keeps what it issued. The control plane's store
// implements it; NewMemoryLedger is for tests and small uses. Every method
// must be safe for concurrent use, and each state change must be atomic
// (one conditional UPDATE in SQL), because several control plane replicas
// may share one ledger.
type Ledger interface {
	// Record stores a newly issued certificate and returns it. When
	// rec.OrderRef is not empty and a certificate was already recorded
	// under it, Record stores nothing and returns that earlier record
	// (nil error): two deliveries of one job racing each other then both
	// hand out the first certificate.
	Record(ctx context.Context, rec Record) (Record, error)
	// Get returns the certificate with this serial, or ErrNotFound.
	Get(ctx context.Context, serial string) (Record, error)
	// GetByOrderRef returns the certificate recorded under ref, or
	// ErrNotFound.
	GetByOrderRef(ctx context.Context, ref string) (Record, error)
	// Revoke marks a good or suspended certificate revoked. Revoking a
	// revoked one again changes nothing and returns nil (a repeated
	// request is not an error). ErrNotFound when unknown.
	Revoke(ctx context.Context, serial string, reason int, at time.Time, remarks string) error
	// Suspend puts a good certificate on hold. A suspended one stays as
	// it is (nil); a revoked one gives ErrAlreadyRevoked.
	Suspend(ctx context.Context, serial string, at time.Time, remarks string) error
	// Resume lifts a suspension; ErrNotSuspended when the certificate is
	// not suspended.
	Resume(ctx context.Context, serial string) error
	// Revoked lists the revoked and the suspended certificates, for the
	// CRL. Expired ones may be left out.
	Revoked(ctx context.Context) ([]Record, error)
	// NextCRLNumber returns a CRL number greater than every one returned
	// before (RFC 5280 5.2.3: monotonically increasing), starting at 1.
	NextCRLNumber(ctx context.Context) (*big.Int, error)
}

// MemoryLedger is a Ledger in memory, safe for concurrent use. It forgets
// everything when the process ends.
type MemoryLedger struct {
	mu        sync.Mutex
	bySerial  map[string]*Record
	byRef     map[string]string
	crlNumber int64
}

var _ Ledger = (*MemoryLedger)(nil)

// NewMemoryLedger returns an empty MemoryLedger.
func NewMemoryLedger() *MemoryLedger {
	return &MemoryLedger{bySerial: map[string]*Record{}, byRef: map[string]string{}}
}

// Record implements Ledger.
func (l *MemoryLedger) Record(_ context.Context, rec Record) (Record, error) {
	if rec.Serial == "" {
		return Record{}, errors.New("ledger: record without serial")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if rec.OrderRef != "" {
		if s, ok := l.byRef[rec.OrderRef]; ok {
			return clone(l.bySerial[s]), nil
		}
	}
	if _, ok := l.bySerial[rec.Serial]; ok {
		return Record{}, errors.New("ledger: serial " + rec.Serial + " already recorded")
	}
	if rec.Status == "" {
		rec.Status = ca.StatusGood
	}
	c := clone(&rec)
	l.bySerial[rec.Serial] = &c
	if rec.OrderRef != "" {
		l.byRef[rec.OrderRef] = rec.Serial
	}
	return clone(&c), nil
}

// Get implements Ledger.
func (l *MemoryLedger) Get(_ context.Context, serial string) (Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.bySerial[serial]
	if !ok {
		return Record{}, ErrNotFound
	}
	return clone(r), nil
}

// GetByOrderRef implements Ledger.
func (l *MemoryLedger) GetByOrderRef(_ context.Context, ref string) (Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.byRef[ref]
	if !ok {
		return Record{}, ErrNotFound
	}
	return clone(l.bySerial[s]), nil
}

// Revoke implements Ledger.
func (l *MemoryLedger) Revoke(_ context.Context, serial string, reason int, at time.Time, remarks string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.bySerial[serial]
	if !ok {
		return ErrNotFound
	}
	if r.Status == ca.StatusRevoked {
		return nil
	}
	r.Status, r.Reason, r.RevokedAt, r.Remarks = ca.StatusRevoked, reason, at, remarks
	return nil
}

// Suspend implements Ledger.
func (l *MemoryLedger) Suspend(_ context.Context, serial string, at time.Time, remarks string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.bySerial[serial]
	if !ok {
		return ErrNotFound
	}
	switch r.Status {
	case ca.StatusRevoked:
		return ErrAlreadyRevoked
	case ca.StatusSuspended:
		return nil
	}
	r.Status, r.Reason, r.RevokedAt, r.Remarks = ca.StatusSuspended, ca.ReasonCertificateHold, at, remarks
	return nil
}

// Resume implements Ledger.
func (l *MemoryLedger) Resume(_ context.Context, serial string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.bySerial[serial]
	if !ok {
		return ErrNotFound
	}
	if r.Status != ca.StatusSuspended {
		return ErrNotSuspended
	}
	r.Status, r.Reason, r.RevokedAt = ca.StatusGood, 0, time.Time{}
	return nil
}

// Revoked implements Ledger.
func (l *MemoryLedger) Revoked(_ context.Context) ([]Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Record
	for _, r := range l.bySerial {
		if r.Status == ca.StatusRevoked || r.Status == ca.StatusSuspended {
			out = append(out, clone(r))
		}
	}
	// A stable order keeps CRLs comparable from one run to the next.
	sort.Slice(out, func(i, j int) bool { return out[i].Serial < out[j].Serial })
	return out, nil
}

// NextCRLNumber implements Ledger.
func (l *MemoryLedger) NextCRLNumber(_ context.Context) (*big.Int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.crlNumber++
	return big.NewInt(l.crlNumber), nil
}

// clone copies r so that callers never share the ledger's DER slice.
func clone(r *Record) Record {
	c := *r
	c.DER = append([]byte(nil), r.DER...)
	return c
}
