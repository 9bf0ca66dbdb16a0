// Package store keeps the control plane's state: accounts, API keys, bots,
// their (sealed) targets, jobs, scans, certificates and their locations.
//
// Store is the interface the HTTP server and the admin commands use; SQLite
// (OpenSQLite) implements it today, a PostgreSQL implementation will later.
// Every method that reads or changes an account's objects takes the account:
// an object of another account is ErrNotFound, never visible.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/emsign/bot/protocol"
)

// Errors the methods return (wrapped); test them with errors.Is.
var (
	// ErrNotFound: no such object in this account.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change contradicts the object's state.
	ErrConflict = errors.New("conflict")
	// ErrBotLimit: the account already has as many bots as it may (B8).
	ErrBotLimit = errors.New("bot limit reached")
)

// Store is the control plane's state. Methods are safe for concurrent use.
type Store interface {
	Close() error

	CreateAccount(ctx context.Context, name string) (Account, error)
	Account(ctx context.Context, id string) (Account, error)
	SetBotLimit(ctx context.Context, account string, limit int) error

	CreateAPIKey(ctx context.Context, k APIKey) error
	// APIKey finds a key by its public ID; the caller compares the hash.
	APIKey(ctx context.Context, id string) (APIKey, error)

	// CreateBot adds a bot in status activation_pending; ErrBotLimit when
	// the account's bots (inactive ones aside) already reach its limit.
	CreateBot(ctx context.Context, b Bot) error
	Bot(ctx context.Context, account, id string) (Bot, error)
	Bots(ctx context.Context, account string) ([]Bot, error)
	// BotByCertificate finds the bot whose current client certificate has
	// this serial; ErrNotFound when revoked or replaced.
	BotByCertificate(ctx context.Context, botID, serial string) (Bot, error)
	// TokenHolders lists the account's bots that hold an unused token.
	TokenHolders(ctx context.Context, account string) ([]Bot, error)
	UpdateBot(ctx context.Context, account, id string, p BotPatch) (Bot, error)
	// SetBotStatus suspends or deactivates; deactivating also drops the
	// token and the certificate.
	SetBotStatus(ctx context.Context, account, id, status string) error
	// SetBotToken stores a new token hash, revokes the certificate and puts
	// the bot back to activation_pending. ErrConflict for an inactive bot.
	SetBotToken(ctx context.Context, account, id string, tokenHash []byte) error
	// ActivateBot consumes the token (which must still be tokenHash) of a
	// bot in activation_pending and records its certificate and host.
	ActivateBot(ctx context.Context, account, id string, tokenHash []byte, a Activation) error
	// TouchBot records a call from the bot (last seen), and the version and
	// path it reported when not empty.
	TouchBot(ctx context.Context, id string, at time.Time, version, path string) error

	// SetTargets replaces a bot's targets and schedule and queues a
	// config_changed job (one at most pending).
	SetTargets(ctx context.Context, account, id string, tc TargetConfig, jobID string) error

	// QueueScan records a scan asked for by a user and the job that runs it.
	QueueScan(ctx context.Context, account, botID, scanID, jobID string) error
	// TakeJobs hands over the bot's pending jobs, oldest first, and marks
	// them delivered.
	TakeJobs(ctx context.Context, botID string) ([]Job, error)
	FinishJob(ctx context.Context, botID, jobID, status, errText string) error

	// StartScan opens a scan (or confirms it: idempotent). ErrNotFound when
	// the ID belongs to another bot.
	StartScan(ctx context.Context, account, botID string, s protocol.ScanStart) error
	// Ingest stores one batch of findings in one transaction; duplicate is
	// true (and nothing changes) when (scan, seq) was already received.
	Ingest(ctx context.Context, account, botID, scanID string, b protocol.FindingsBatch) (duplicate bool, err error)
	// CompleteScan closes a scan; a complete one marks the bot's locations
	// it did not report as no longer present.
	CompleteScan(ctx context.Context, account, botID, scanID string, c protocol.ScanComplete) error
	Scans(ctx context.Context, account, botID string, limit int) ([]Scan, error)
	Scan(ctx context.Context, account, botID, scanID string) (Scan, error)
	ScanErrors(ctx context.Context, account, botID, scanID string, limit int) ([]ScanError, error)

	// Certificates searches the account's inventory; next is the cursor of
	// the following page, "" at the end.
	Certificates(ctx context.Context, account string, f CertificateFilter) (certs []Certificate, next string, err error)
	Certificate(ctx context.Context, account, fingerprint string) (Certificate, error)
	// CertificateDER returns the leaf and the rest of the chain as found.
	CertificateDER(ctx context.Context, account, fingerprint string) (leaf []byte, chain [][]byte, err error)
}

// Roles an API key may have (A1). Enforcement comes with RBAC.
var Roles = []string{"administrator", "manager", "finance_manager", "standard_user", "basic_user", "discovery_user"}

// Account is a customer: its 10-digit number, name and bot limit.
type Account struct {
	ID        string    `json:"account"`
	Name      string    `json:"name"`
	BotLimit  int       `json:"bot_limit"`
	CreatedAt time.Time `json:"created_at"`
}

// APIKey is a REST access key (A2), stored by its public ID and hash.
type APIKey struct {
	ID        string
	Account   string
	Role      string
	Hash      []byte
	CreatedAt time.Time
}

// Tag is a reporting tag on a bot (B7).
type Tag struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	Remarks string `json:"remarks"`
}

// Bot is one bot as stored.
type Bot struct {
	ID         string
	Account    string
	Name       string
	Group      string
	Tags       []Tag
	Status     string
	TokenHash  []byte // nil once used
	CertSerial string // "" when none is valid
	Hostname   string
	OS         string
	Arch       string
	IPs        []string
	Version    string
	Path       string
	Capability int
	Targets    TargetConfig
	CreatedAt  time.Time
	Activated  *time.Time
	LastSeen   *time.Time
}

// BotPatch changes what is set.
type BotPatch struct {
	Name  *string
	Group *string
	Tags  *[]Tag
}

// Activation is what a bot tells about itself when it activates.
type Activation struct {
	Hostname   string
	OS         string
	Arch       string
	IPs        []string
	Version    string
	Path       string
	Capability int
	CertSerial string
}

// TargetConfig is what a bot scans and when. Sealed is the JSON list of
// target URIs, encrypted by the caller: the store never sees secrets.
type TargetConfig struct {
	Sealed     []byte
	Count      int
	Schedule   protocol.Schedule
	Threads    int
	MaxRuntime time.Duration
	// Version grows with every change (for the config ETag).
	Version int64
}

// Job statuses.
const (
	JobPending   = "pending"
	JobDelivered = "delivered"
	JobDone      = protocol.JobDone
	JobFailed    = protocol.JobFailed
)

// Job is work queued for a bot.
type Job struct {
	ID        string
	Account   string
	BotID     string
	Kind      string
	ScanID    string
	Status    string
	Error     string
	CreatedAt time.Time
}

// Scan is one scan of a bot.
type Scan struct {
	ID           string
	Account      string
	BotID        string
	Trigger      string
	Queued       *time.Time
	Started      *time.Time
	Finished     *time.Time
	Targets      int
	Batches      int64
	Certificates int
	Errors       int
	Complete     bool
	Stopped      string
}

// ScanError is a problem a scan met at a location.
type ScanError struct {
	URI    string    `json:"uri"`
	Source string    `json:"source,omitempty"`
	Error  string    `json:"error"`
	SeenAt time.Time `json:"seen_at"`
}

// Certificate is one certificate of an account, wherever it lives.
type Certificate struct {
	Fingerprint        string
	Subject            string
	CommonName         string
	SANs               []string
	Issuer             string
	Serial             string
	NotBefore          time.Time
	NotAfter           time.Time
	KeyAlgorithm       string
	KeyBits            int
	SignatureAlgorithm string
	IsCA               bool
	FirstSeen          time.Time
	Locations          []Location
}

// Location is one place (of one bot) that holds a certificate.
type Location struct {
	URI       string
	BotID     string
	Source    string
	Format    string
	FirstSeen time.Time
	LastSeen  time.Time
	Present   bool
	GoneAt    *time.Time
	// Attributes describe the place beyond its identity (the latest
	// scan's protocol.Finding Attributes); nil when there are none.
	Attributes map[string]string
}

// CertificateFilter narrows a certificate search; zero fields do not
// filter. Substring matches are case-insensitive.
type CertificateFilter struct {
	Q             string // in the common name or a SAN
	Issuer        string
	ExpiresBefore time.Time
	ExpiresAfter  time.Time
	Source        string // exact: tls, file, jks, certstore
	Location      string // in a location URI
	BotID         string
	Limit         int    // default 100, at most 1000
	After         string // the cursor a previous page returned
}

// Limits of a certificate search page.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)
