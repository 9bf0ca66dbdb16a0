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

	"github.com/emsign/bot/connectors/ca/local"
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
	// RaiseBotCapability records the protocol version a bot reports when
	// it is higher than the one recorded (a bot upgraded in place); it
	// never lowers it.
	RaiseBotCapability(ctx context.Context, id string, capability int) error

	// SetTargets replaces a bot's targets and schedule and queues a
	// config_changed job (one at most pending).
	SetTargets(ctx context.Context, account, id string, tc TargetConfig, jobID string) error

	// QueueScan records a scan asked for by a user and the job that runs it.
	QueueScan(ctx context.Context, account, botID, scanID, jobID string) error
	// TakeJobs hands over the bot's pending jobs, oldest first, and marks
	// them delivered. A rotate job delivered more than the redelivery time
	// ago (Options.RedeliverAfter) and not finished is handed over again:
	// rotations are at-least-once.
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
	// the following page, "" at the end. Only the fingerprint order (the
	// default) gives a cursor: other orders page by Offset.
	Certificates(ctx context.Context, account string, f CertificateFilter) (certs []Certificate, next string, err error)
	Certificate(ctx context.Context, account, fingerprint string) (Certificate, error)
	// CertificateDER returns the leaf and the rest of the chain as found.
	CertificateDER(ctx context.Context, account, fingerprint string) (leaf []byte, chain [][]byte, err error)
	// CountCertificates counts what a search would list over every page
	// (Limit, After and Offset ignored).
	CountCertificates(ctx context.Context, account string, f CertificateFilter) (int, error)
	// FacetValues lists the distinct issuers and sources of the account's
	// certificates, for the search form's choices (at most 200 issuers).
	FacetValues(ctx context.Context, account string) (issuers, sources []string, err error)

	// Keys lists the key objects found (key-only findings, such as an
	// HSM's keys, and the private keys found with certificates), newest
	// first, at most limit.
	Keys(ctx context.Context, account string, limit int) ([]Key, error)

	// Dashboard computes the account's numbers and chart data (S1-S6) at
	// now.
	Dashboard(ctx context.Context, account string, now time.Time) (Dashboard, error)

	// Account settings (A4).
	SetRequireTOTP(ctx context.Context, account string, require bool) error

	// APIKeys lists the account's keys; RevokeAPIKey deletes one
	// (ErrNotFound when it is not the account's).
	APIKeys(ctx context.Context, account string) ([]APIKey, error)
	RevokeAPIKey(ctx context.Context, account, id string) error

	// Users. Emails are unique over all accounts (login asks for the email
	// only) and compared lowercase; CreateUser gives ErrConflict for an
	// email already taken.
	CreateUser(ctx context.Context, u User) error
	User(ctx context.Context, account, id string) (User, error)
	// UserByEmail finds a user of any account, for login.
	UserByEmail(ctx context.Context, email string) (User, error)
	Users(ctx context.Context, account string) ([]User, error)
	UpdateUser(ctx context.Context, account, id string, p UserPatch) (User, error)
	// RecordLogin notes a login attempt: a success clears the failure
	// count and sets LastLogin; a failure adds one and, at the limit,
	// locks the user until lockedUntil (zero: no lock).
	RecordLogin(ctx context.Context, id string, ok bool, at time.Time, lockedUntil time.Time) (User, error)
	// UseTOTPStep records the time step of an accepted one-time code; it
	// gives ErrConflict when that step (or a later one) was already used,
	// so that a code is never accepted twice.
	UseTOTPStep(ctx context.Context, id string, step int64) error

	// Sessions are found by the hash of their cookie's value.
	CreateSession(ctx context.Context, s Session) error
	Session(ctx context.Context, idHash []byte) (Session, error)
	// UpdateSession sets the stage and the last-seen time (and, when not
	// zero, a new expiry).
	UpdateSession(ctx context.Context, idHash []byte, stage string, lastSeen, expires time.Time) error
	DeleteSession(ctx context.Context, idHash []byte) error
	// DeleteUserSessions ends every session of a user (password change,
	// disabling, role change).
	DeleteUserSessions(ctx context.Context, userID string) error

	// Audit (A2): every change is appended; entries are never changed.
	AppendAudit(ctx context.Context, e AuditEntry) error
	// Audit lists entries newest first; next is the cursor of the
	// following page (0 at the end).
	Audit(ctx context.Context, account string, f AuditFilter) (entries []AuditEntry, next int64, err error)

	// IP restrictions (A4): CreateIPRule stores a rule (checked by the
	// caller: controlplane/iprules) and returns it with its ID; IPRules
	// lists the account's rules, oldest first (one indexed query: it runs
	// on every dashboard page and API call). SetIPRuleEnabled and
	// DeleteIPRule give ErrNotFound for another account's rule.
	CreateIPRule(ctx context.Context, r IPRule) (IPRule, error)
	IPRules(ctx context.Context, account string) ([]IPRule, error)
	SetIPRuleEnabled(ctx context.Context, account string, id int64, enabled bool) error
	DeleteIPRule(ctx context.Context, account string, id int64) error

	// CSR templates (P1), key profiles (P3) and provisioning templates
	// (P2). Names are unique per account (ErrConflict); lists are by name;
	// an object of another account is ErrNotFound. Update replaces every
	// setting of the object with ID t.ID (Account, CreatedAt kept).
	// Deleting a CSR template or key profile that a provisioning template
	// uses is ErrConflict naming them. A provisioning template stored with
	// Default set clears the account's other default in the same
	// transaction; its CSRTemplateID and KeyProfileID ("" for none) must
	// be the account's (ErrNotFound).
	CreateCSRTemplate(ctx context.Context, t CSRTemplate) error
	CSRTemplate(ctx context.Context, account, id string) (CSRTemplate, error)
	CSRTemplates(ctx context.Context, account string) ([]CSRTemplate, error)
	UpdateCSRTemplate(ctx context.Context, t CSRTemplate) error
	DeleteCSRTemplate(ctx context.Context, account, id string) error
	CreateKeyProfile(ctx context.Context, p KeyProfile) error
	KeyProfile(ctx context.Context, account, id string) (KeyProfile, error)
	KeyProfiles(ctx context.Context, account string) ([]KeyProfile, error)
	UpdateKeyProfile(ctx context.Context, p KeyProfile) error
	DeleteKeyProfile(ctx context.Context, account, id string) error
	CreateProvisioningTemplate(ctx context.Context, t ProvisioningTemplate) error
	ProvisioningTemplate(ctx context.Context, account, id string) (ProvisioningTemplate, error)
	ProvisioningTemplates(ctx context.Context, account string) ([]ProvisioningTemplate, error)
	UpdateProvisioningTemplate(ctx context.Context, t ProvisioningTemplate) error
	DeleteProvisioningTemplate(ctx context.Context, account, id string) error

	// Orders, the local CA, mass replacements and schedules (orders.go).
	OrderStore
	KeyInventory
	// CALedger is where the account's local CA (connectors/ca/local)
	// records what it issued, and takes its CRL numbers from. It does no
	// I/O until a method is called; every replica sharing the database
	// sees the same ledger.
	CALedger(account string) local.Ledger
}

// Roles an API key may have (A1). Enforcement comes with RBAC.
var Roles = []string{"administrator", "manager", "finance_manager", "standard_user", "basic_user", "discovery_user"}

// Account is a customer: its 10-digit number, name and bot limit.
type Account struct {
	ID        string    `json:"account"`
	Name      string    `json:"name"`
	BotLimit  int       `json:"bot_limit"`
	CreatedAt time.Time `json:"created_at"`
	// RequireTOTP makes two-factor login compulsory for every user (A4).
	RequireTOTP bool `json:"require_totp"`
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
	ID      string
	Account string
	BotID   string
	Kind    string
	ScanID  string
	// Payload is the job's work, sealed by the caller (a rotation, with
	// its secrets); nil for scans and config changes.
	Payload []byte
	// OrderID is the order a rotate job carries out.
	OrderID   string
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
	// Type: "ca" (CA certificates), "leaf" (the others), "" (both).
	Type string
	// Sort orders the results: SortFingerprint (the default, and the only
	// order After works with), SortNotAfter, SortCommonName, SortIssuer,
	// SortFirstSeen; Desc reverses it. Ties break by fingerprint.
	Sort  string
	Desc  bool
	Limit int    // default 100, at most 1000
	After string // the cursor a previous page returned (SortFingerprint only)
	// Offset skips that many results (page-numbered lists).
	Offset int
}

// Certificate orders.
const (
	SortFingerprint = ""
	SortNotAfter    = "not_after"
	SortCommonName  = "common_name"
	SortIssuer      = "issuer"
	SortFirstSeen   = "first_seen"
)

// Key is a key found by a scan: a key object (an HSM key, an SSH public
// key) or the private key stored with a certificate. Its value is never
// known to the control plane.
type Key struct {
	URI         string
	BotID       string
	Source      string
	Class       string // protocol.KeyClass*; "" for a private key found with a certificate
	Algorithm   string
	Bits        int
	Label       string
	KeyID       string // hex, e.g. PKCS#11 CKA_ID
	Extractable *bool
	Sensitive   *bool
	Usage       []string
	// Fingerprint is the certificate found with the key; "" for a key
	// object found on its own.
	Fingerprint string
	FirstSeen   time.Time
	LastSeen    time.Time
	Present     bool
}

// Dashboard is an account's numbers (S1-S6). Counts that a later feature
// fills (vulnerability checks, email templates, keystores) are zero until
// then: they are never estimated.
type Dashboard struct {
	Certificates CertificateCounts
	Endpoints    EndpointCounts
	Keys         KeyCounts
	Templates    TemplateCounts
	// Expiring counts present certificates (not expired) by the time left.
	Expiring ExpiringCounts
	// By issuer (the 10 most common, then "Other"), by key ("RSA 2048",
	// "ECDSA 256"...) and by source (a certificate counts once for each
	// source it is found in); each sorted by count, largest first.
	ByIssuer []Bucket
	ByKey    []Bucket
	BySource []Bucket
	// Bots: how many are active and seen lately.
	Bots BotCounts
}

// CertificateCounts (S5). Discovered counts the account's certificates
// still present in at least one location.
type CertificateCounts struct {
	Discovered, Configured, NotConfigured, Initiated, Issued, Deployed int
	Revoked, Rotated, Rekeyed, Suspended, Vulnerable, Expired, Gone    int
}

// EndpointCounts (S1): network endpoints (TLS locations) the latest scans
// reached. Protected ones served a certificate; unprotected ones answered
// but with no TLS (a handshake error).
type EndpointCounts struct{ Scanned, Protected, Unprotected int }

// KeyCounts (S2). A key pair counts once (its private key); public key
// objects are listed but not counted.
type KeyCounts struct{ Total, Symmetric, Asymmetric, InTemplates, Rotated int }

// TemplateCounts (S3, S4): enabled templates and key profiles; CSRs the
// orders that got one. EmailTemplates stays zero for now; Keystores counts the
// orders deployed to JKS and PKCS#12 keystores.
type TemplateCounts struct{ CSRTemplates, ProvisioningTemplates, KeyProfiles, EmailTemplates, CSRs, Keystores int }

// ExpiringCounts: certificates by the time left before they expire.
type ExpiringCounts struct{ Expired, Within7, Within30, Within60, Within90, Later int }

// BotCounts: bots by status; Online were seen in the last 5 minutes.
type BotCounts struct{ Total, Active, Pending, Suspended, Inactive, Online int }

// Bucket is one bar of a chart.
type Bucket struct {
	Label string
	Count int
}

// User is a person who logs in to the dashboard.
type User struct {
	ID       string
	Account  string
	Email    string // lowercase
	Name     string
	Role     string
	Password string // argon2id PHC string: $argon2id$v=19$m=...,t=...,p=...$salt$hash
	// TOTPSealed is the TOTP secret sealed with the control plane's key;
	// nil when the user has no second factor.
	TOTPSealed   []byte
	TOTPLastStep int64
	Disabled     bool
	FailedLogins int
	LockedUntil  *time.Time
	CreatedAt    time.Time
	LastLogin    *time.Time
}

// UserPatch changes what is set.
type UserPatch struct {
	Name     *string
	Role     *string
	Password *string
	// TOTPSealed: a pointer to nil removes the second factor.
	TOTPSealed *[]byte
	Disabled   *bool
}

// Session stages.
const (
	// SessionTOTP: the password was right; a one-time code is awaited.
	SessionTOTP = "totp"
	// SessionEnrol: the password was right; the account requires a second
	// factor the user has not set up yet: only enrolment is allowed.
	SessionEnrol = "enrol"
	// SessionOK: logged in.
	SessionOK = "ok"
)

// Session is a login. Only the SHA-256 of the cookie value is stored.
type Session struct {
	IDHash    []byte
	UserID    string
	Account   string
	Stage     string
	CSRF      string // the token forms carry; random, per session
	Remote    string
	UserAgent string
	CreatedAt time.Time
	LastSeen  time.Time
	Expires   time.Time
}

// AuditEntry is one change: who, what, when, from which address (A2).
// Detail never holds a secret.
type AuditEntry struct {
	ID      int64
	Account string
	At      time.Time
	// ActorKind is user, apikey or cli; Actor the user's email, the API
	// key's ID or the operating-system user.
	ActorKind string
	Actor     string
	Action    string // e.g. bot.create, targets.update, user.login
	Object    string // what it acted on, e.g. a bot ID
	Detail    string
	Remote    string // the client's address; "" for the command line
}

// AuditFilter narrows the audit log.
type AuditFilter struct {
	Actor  string // exact
	Action string // prefix, e.g. "bot."
	Object string // exact
	Before int64  // the cursor a previous page returned
	Limit  int    // default 100, at most 1000
}

// Limits of a certificate search page.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// IPRule allows a range of client addresses (A4): once a user has an
// enabled rule (their own or one for all users), they may work only from
// an address in one of them.
type IPRule struct {
	ID      int64
	Account string
	// UserID is the user the rule applies to; "" for all users (and API
	// keys).
	UserID string
	// StartIP and EndIP bound the range, both included, in the form
	// netip.Addr.String gives.
	StartIP     string
	EndIP       string
	Description string
	Enabled     bool
	CreatedAt   time.Time
	CreatedBy   string // the actor's name (email, key ID or OS user)
}

// CSRTemplate is how a CSR is built (P1).
type CSRTemplate struct {
	ID      string
	Account string
	Name    string
	// SignatureAlgorithm: SHA256WithRSA, SHA384WithRSA, ECDSAWithSHA256,
	// ECDSAWithSHA384, PureEd25519.
	SignatureAlgorithm string
	KeyAlgorithm       string // RSA, ECDSA, Ed25519
	KeySize            int    // RSA: 2048, 3072, 4096; 0 otherwise
	Curve              string // ECDSA: P-256, P-384; "" otherwise
	Subject            CSRSubject
	SANs               CSRSANs
	// CopyFromCertificate takes the subject and SANs of the certificate
	// being rotated (the rotation's default); the fields above then only
	// fill what it lacks.
	CopyFromCertificate bool
	Enabled             bool
	CreatedAt           time.Time
	UpdatedAt           time.Time
}

// CSRSubject is a CSR's subject DN.
type CSRSubject struct {
	CommonName         string `json:"cn,omitempty"`
	Organization       string `json:"o,omitempty"`
	OrganizationalUnit string `json:"ou,omitempty"`
	Locality           string `json:"l,omitempty"`
	Province           string `json:"st,omitempty"`
	Country            string `json:"c,omitempty"` // two letters
	Email              string `json:"email,omitempty"`
	// Custom attributes, by OID (e.g. 2.5.4.5 serialNumber).
	Custom []SubjectAttribute `json:"custom,omitempty"`
}

// SubjectAttribute is a subject attribute named by its OID.
type SubjectAttribute struct {
	OID   string `json:"oid"`
	Value string `json:"value"`
}

// CSRSANs are a CSR's subject alternative names.
type CSRSANs struct {
	DNS   []string `json:"dns,omitempty"`
	IP    []string `json:"ip,omitempty"`
	Email []string `json:"email,omitempty"`
	URI   []string `json:"uri,omitempty"`
}

// Key profile kinds (P3).
const (
	KeyProfileSoftware = "software"
	KeyProfilePKCS12   = "pkcs12"
	KeyProfilePKCS11   = "pkcs11"
)

// KeyProfile says where a new key is made and kept (P3).
type KeyProfile struct {
	ID      string
	Account string
	Name    string
	Kind    string // KeyProfileSoftware, KeyProfilePKCS12, KeyProfilePKCS11
	// PKCS#11: the module, the token (by label or serial), the slot (nil:
	// found by the token) and the user PIN, sealed by the caller (nil: none).
	ModulePath  string
	TokenLabel  string
	TokenSerial string
	Slot        *int
	PINSealed   []byte
	// PKCS#12: where keystores are written ("" the location's own path)
	// and the least length of their passwords.
	PathPattern       string
	PasswordMinLength int
	Enabled           bool
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// Provisioning template choices (P2).
const (
	KeyPairNew             = "new"
	KeyPairExisting        = "existing"
	KeystorePasswordRandom = "random"
	KeystorePasswordManual = "manual"
)

// ProvisioningTemplate is how a certificate is ordered and provisioned
// (P2).
type ProvisioningTemplate struct {
	ID      string
	Account string
	Name    string
	Origin  string
	// Default: the template used when none is chosen; one per account.
	Default bool
	KeyPair string // KeyPairNew, KeyPairExisting
	// KeystorePassword is KeystorePasswordRandom or KeystorePasswordManual;
	// a manual one is KeystorePasswordSealed (sealed by the caller).
	KeystorePassword       string
	KeystorePasswordSealed []byte
	CSRTemplateID          string // "" for none
	KeyProfileID           string // "" for none
	CAConnector            string
	CASettings             string // a reference to the connector's settings
	Enabled                bool
	CreatedAt              time.Time
	UpdatedAt              time.Time
}
