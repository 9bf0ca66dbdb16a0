package store

import (
	"context"
	"time"
)

// Orders, mass replacements and schedules (issue 8: B9, D7, P6, P9, S5).
//
// OrderStore is implemented by *SQL; Store embeds it. Every method taking
// an account keeps to that account's objects (another's are ErrNotFound).

// Order statuses (S5). An order moves initiated → ordering → issued →
// deployed → rotated (action rotate) or re-keyed (rekey); renew ends at
// deployed. failed and rolled_back end an order that did not deploy;
// revoked and suspended are what the CA did to the certificate it issued.
const (
	OrderInitiated  = "initiated"
	OrderOrdering   = "ordering" // the CA is being asked (ClaimOrdering)
	OrderIssued     = "issued"
	OrderDeployed   = "deployed"
	OrderRotated    = "rotated"
	OrderRekeyed    = "re-keyed"
	OrderFailed     = "failed"
	OrderRolledBack = "rolled_back"
	OrderRevoked    = "revoked"
	OrderSuspended  = "suspended"
	OrderCanceled   = "canceled"
)

// Order is one certificate ordered for one location (or, with no bot, an
// order whose certificate is only downloaded).
type Order struct {
	ID      string
	Account string
	// BotID and JobID: the bot that holds the location and the rotate job
	// it runs ("" for an order without deployment).
	BotID string
	JobID string
	// Action is protocol.ActionRotate, ActionRekey or ActionRenew, or
	// "order" for a certificate only ordered.
	Action string
	// Fingerprint is the certificate replaced ("" for a new order);
	// Location its location URI.
	Fingerprint string
	Location    string
	// TemplateID is the provisioning template; Connector and CASettings
	// are copied from it when the order is made (a later template change
	// does not change an order under way).
	TemplateID string
	Connector  string
	CASettings string
	Status     string
	// CSRPEM is the CSR the bot posted; CertPEM and ChainPEM the
	// certificate issued for it; NewFingerprint its SHA-256 (hex).
	CSRPEM         string
	CertPEM        string
	ChainPEM       string
	NewFingerprint string
	// CAOrderID is the CA's reference (for renewal, revocation).
	CAOrderID string
	// Outcome is the bot's RotationResult.Outcome once it reported.
	Outcome string
	Error   string
	// BatchID is the mass replacement the order belongs to ("" for none).
	BatchID string
	// Remarks are the person's words (D7: revoke and suspend remarks).
	Remarks string
	// DeployKind is what the location is (protocol.Deploy*: pem, jks,
	// pkcs12, ...): the dashboard counts the keystores written (S4).
	// "" for an order without deployment or made before it was recorded.
	DeployKind string
	// KeyWhere is where the new key is made (protocol.KeyWhere*:
	// software, pkcs12, pkcs11), as the key profile said (P3).
	KeyWhere string
	// KeyAlgorithm is the new key's keygen name (ecdsa-p256, rsa-2048,
	// ...; P4's key inventory); "" when the order keeps the key already
	// there (a renewal, or key pair "existing").
	KeyAlgorithm string
	// KeyRef names a token key (KeyWhere pkcs11): its CKA_LABEL, and
	// "#" and its CKA_ID (hex) when one was chosen; "" otherwise.
	KeyRef    string
	CreatedBy string // the actor, as the audit log names it
	CreatedAt time.Time
	UpdatedAt time.Time
	// OrderingSince is when ClaimOrdering last took the order (nil
	// unless ordering).
	OrderingSince *time.Time
}

// OrderEvent is one line of an order's history: a status change or a
// step the bot reported.
type OrderEvent struct {
	OrderID string
	Seq     int // 1, 2, ... per order
	Time    time.Time
	// Status is the order's status after the event.
	Status string
	// Step is the bot's step name (protocol.Step*) or "" for a status
	// change made by the control plane.
	Step    string
	OK      bool
	Message string
}

// OrderFilter selects orders; zero fields select all. Newest first.
type OrderFilter struct {
	Fingerprint string // the certificate replaced or the one issued
	BatchID     string
	BotID       string
	Status      string
	Limit       int // 0: 100
	Offset      int
}

// OrderPatch changes the fields set.
type OrderPatch struct {
	Status         *string
	CSRPEM         *string
	CertPEM        *string
	ChainPEM       *string
	NewFingerprint *string
	CAOrderID      *string
	Outcome        *string
	Error          *string
	Remarks        *string
}

// LocalCA is an account's private CA (connectors/ca/local): its
// certificate and its key sealed by the control plane.
type LocalCA struct {
	Account   string
	CertPEM   string
	KeySealed []byte
	CreatedAt time.Time
}

// Batch statuses (P9).
const (
	BatchPlanned  = "planned"  // a dry-run plan, not started
	BatchRunning  = "running"  // waves are being ordered
	BatchStopping = "stopping" // stop pressed: no new wave; orders under way finish
	BatchStopped  = "stopped"
	BatchDone     = "done"
)

// Batch is a mass replacement (P9): every location of the certificates a
// filter matched, replaced in waves of WaveSize orders.
type Batch struct {
	ID      string
	Account string
	Name    string
	// Filter is the certificate filter as JSON (the search's query
	// parameters), kept for the report.
	Filter     string
	TemplateID string
	Action     string // protocol.ActionRotate or ActionRekey
	WaveSize   int
	// MaxFailures stops the batch once this many orders failed (0: never).
	MaxFailures int
	Status      string
	CreatedBy   string
	CreatedAt   time.Time
	StartedAt   *time.Time
	FinishedAt  *time.Time
	// Counts of the items by state (filled by Batch and Batches).
	Counts BatchCounts
}

// BatchCounts are a batch's items by state.
type BatchCounts struct{ Total, Pending, Ordered, Done, Failed, Skipped int }

// Batch item states.
const (
	ItemPending = "pending" // not ordered yet
	ItemOrdered = "ordered" // its order is under way
	ItemDone    = "done"    // deployed and verified
	ItemFailed  = "failed"  // its order failed or rolled back
	ItemSkipped = "skipped" // left out (stopped, or no bot can reach it)
)

// BatchItem is one location of a batch.
type BatchItem struct {
	BatchID     string
	Seq         int // 1, 2, ... in the plan's order
	Wave        int // 1, 2, ...: (Seq-1)/WaveSize + 1
	Fingerprint string
	Location    string
	BotID       string
	OrderID     string
	State       string
	Error       string
}

// Schedule actions (P6).
const (
	ScheduleInitiate = "initiate"
	ScheduleOrder    = "order"
	ScheduleRotate   = "rotate"
	ScheduleRenewal  = "renewal"
	ScheduleRecheck  = "recheck"
)

// Schedule statuses.
const (
	SchedulePending  = "pending"
	ScheduleFired    = "fired"
	ScheduleCanceled = "canceled"
)

// Schedule is an action planned on a certificate (P6): once at At, or,
// with AutoRenewDays, every time the certificate at Location comes within
// that many days of expiry (auto-renew).
type Schedule struct {
	ID            string
	Account       string
	Action        string
	Fingerprint   string
	Location      string
	TemplateID    string
	At            time.Time
	AutoRenewDays int
	Status        string
	LastFired     *time.Time
	LastOrderID   string
	LastError     string
	CreatedBy     string
	CreatedAt     time.Time
}

// OrderStore keeps orders, the local CA, mass replacements and schedules.
type OrderStore interface {
	// CreateOrder adds o (status initiated, with a first event) and, when
	// job is not nil, its rotate job (status pending, Kind rotate,
	// Payload sealed by the caller), in one transaction.
	CreateOrder(ctx context.Context, o Order, job *Job) error
	Order(ctx context.Context, account, id string) (Order, error)
	// OrderForBot finds an order by the bot it was sent to (the bot API
	// knows the bot, not the account): ErrNotFound for another bot's.
	OrderForBot(ctx context.Context, botID, id string) (Order, error)
	Orders(ctx context.Context, account string, f OrderFilter) ([]Order, error)
	OrderEvents(ctx context.Context, account, id string) ([]OrderEvent, error)
	// ClaimOrdering moves an order from initiated (or from ordering
	// begun before staleBefore: a replica died while asking the CA) to
	// ordering and stores the CSR. claimed is false, with the order as it
	// is, when another call holds it or it is past ordering: exactly one
	// caller orders, whichever replica it runs on.
	ClaimOrdering(ctx context.Context, botID, id, csrPEM string, now, staleBefore time.Time) (o Order, claimed bool, err error)
	// TransitionOrder applies p when the order's status is one of from
	// (any status when from is empty), sets UpdatedAt and appends ev (its
	// Status is the new status; Seq and OrderID are filled in); it gives
	// ErrConflict, changing nothing, when the status is not one of from.
	TransitionOrder(ctx context.Context, account, id string, from []string, p OrderPatch, ev OrderEvent) (Order, error)
	// AddOrderEvents appends events without changing the order (the steps
	// a bot reported).
	AddOrderEvents(ctx context.Context, account, id string, evs []OrderEvent) error
	// OrderCounts counts the account's orders by status (S5).
	OrderCounts(ctx context.Context, account string) (map[string]int, error)

	// LocalCA gives the account's private CA, ErrNotFound when it has
	// none; CreateLocalCA gives ErrConflict when it already has one
	// (the caller then reads the one that won).
	LocalCA(ctx context.Context, account string) (LocalCA, error)
	CreateLocalCA(ctx context.Context, c LocalCA) error

	// CreateBatch adds a batch (status planned) with its items (state
	// pending) in one transaction.
	CreateBatch(ctx context.Context, b Batch, items []BatchItem) error
	Batch(ctx context.Context, account, id string) (Batch, error)
	Batches(ctx context.Context, account string) ([]Batch, error)
	// RunningBatches lists the batches of every account in status running
	// or stopping, for the batch runner.
	RunningBatches(ctx context.Context) ([]Batch, error)
	BatchItems(ctx context.Context, account, id string, limit, offset int) ([]BatchItem, error)
	// SetBatchStatus changes the status when it is one of from
	// (ErrConflict otherwise) and stamps StartedAt/FinishedAt.
	SetBatchStatus(ctx context.Context, account, id string, from []string, to string, now time.Time) error
	// SetBatchItem records an item's order and state.
	SetBatchItem(ctx context.Context, batchID string, seq int, orderID, state, errText string) error

	CreateSchedule(ctx context.Context, s Schedule) error
	Schedules(ctx context.Context, account string) ([]Schedule, error)
	CancelSchedule(ctx context.Context, account, id string) error
	// DueSchedules lists pending one-shot schedules with At <= now and
	// auto-renew schedules (of every account), at most limit.
	DueSchedules(ctx context.Context, now time.Time, limit int) ([]Schedule, error)
	// FireSchedule records a firing: a one-shot schedule becomes fired
	// only if still pending (fired false otherwise: another replica did
	// it); an auto-renew one records LastFired, the order and the error.
	FireSchedule(ctx context.Context, id string, now time.Time, orderID, errText string) (fired bool, err error)
}
