// Package ops is every change a person makes to an account, in one place:
// the dashboard, the user API and the emsign-cp command line all call it.
// Each method checks the actor's role (controlplane/rbac) and appends an
// audit entry (A2) naming who, what, when and from where; a refused change
// is audited too. Secrets (tokens, passwords, target credentials) never
// reach the audit log or the logs.
package ops

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/emsign/bot/controlplane/batches"
	"github.com/emsign/bot/controlplane/ordering"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/seal"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// Actor kinds.
const (
	ActorUser   = "user"
	ActorAPIKey = "apikey"
	ActorCLI    = "cli"
)

// Actor is who asks for a change.
type Actor struct {
	Account string
	Kind    string // ActorUser, ActorAPIKey, ActorCLI
	// ID is the user's ID, the API key's public ID, or the OS user.
	ID string
	// Name is what the audit log shows: the user's email, the key's ID,
	// the OS user.
	Name   string
	Role   rbac.Role
	Remote string // the client's IP address; "" for the command line
}

// ErrForbidden: the actor's role does not allow the change (wrapped with
// the permission's name).
var ErrForbidden = errors.New("forbidden")

// InvalidError is bad input: Field names what is wrong (targets[2],
// schedule.time, email...), for a 400 answer or a form message.
type InvalidError struct {
	Field string
	Msg   string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Msg }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Config is what Ops needs.
type Config struct {
	Store  store.Store
	Sealer *seal.Sealer
	// Notifier wakes a bot's long poll when a job is queued for it; nil
	// makes one.
	Notifier *Notifier
	Logger   *slog.Logger
	Now      func() time.Time // time.Now when nil
	// Ordering makes orders and rotations (orders.go); nil: those methods
	// answer that ordering is not configured.
	Ordering *ordering.Service
}

// Ops performs audited, role-checked changes.
type Ops struct {
	st           store.Store
	sealer       *seal.Sealer
	notify       *Notifier
	log          *slog.Logger
	now          func() time.Time
	batchPlanner *batches.Planner
	batchWake    func() // SetBatches (batches.go)
	order        *ordering.Service
}

// New checks cfg.
func New(cfg Config) (*Ops, error) {
	if cfg.Store == nil || cfg.Sealer == nil || cfg.Logger == nil {
		return nil, errors.New("ops: store, sealer and logger are required")
	}
	o := &Ops{st: cfg.Store, sealer: cfg.Sealer, notify: cfg.Notifier, log: cfg.Logger, now: cfg.Now,
		order: cfg.Ordering}
	if o.notify == nil {
		o.notify = NewNotifier()
	}
	if o.now == nil {
		o.now = time.Now
	}
	return o, nil
}

// Notifier is the one the bot API's long polls subscribe to.
func (o *Ops) Notifier() *Notifier { return o.notify }

// TargetSettings is what a bot scans and when (B4, B5). Targets read back
// from Targets have their secrets redacted.
type TargetSettings struct {
	Targets    []string          `json:"targets"`
	Schedule   protocol.Schedule `json:"schedule"`
	Threads    int               `json:"threads"`
	MaxRuntime protocol.Duration `json:"max_runtime"`
}

// Limits of a bot's configuration.
const (
	MaxTargets = 1000
	MaxThreads = 4096
)

// The methods below are declared here so that every caller codes against
// one contract; their bodies live in bots.go, targets.go, users.go,
// audit.go.
//
// Bots (B2, B7, B8; permission ManageBots):
//   CreateBot(ctx, a, name, group string) (id, token string, err error)
//   UpdateBot(ctx, a, id string, p store.BotPatch) (store.Bot, error)
//   SetBotStatus(ctx, a, id, status string) error      // protocol.BotSuspended or protocol.BotInactive
//   RegenerateToken(ctx, a, id string) (token string, err error)
//   RunScan(ctx, a, id string) (scanID string, err error)
//
// Targets (B4-B6; read: ViewBots, change: ManageBots):
//   Targets(ctx, a, id string) (TargetSettings, error)             // secrets redacted
//   SetTargets(ctx, a, id string, ts TargetSettings) (TargetSettings, error) // replaces all; targets in clear
//   AddTargets(ctx, a, id string, raw []string) (TargetSettings, error)
//   RemoveTargets(ctx, a, id string, indexes []int) (TargetSettings, error)
//   SetSchedule(ctx, a, id string, s protocol.Schedule, threads int, maxRuntime time.Duration) (TargetSettings, error)
//   ImportTargets(ctx, a, dst, src string) (TargetSettings, error)  // B6: src's targets join dst's, none doubled
//
// Users and keys (A1, A2, A4; ManageUsers unless said):
//   CreateUser(ctx, a, email, name, role, password string) (store.User, error)
//   SetUserRole(ctx, a, userID, role string) error
//   SetUserDisabled(ctx, a, userID string, disabled bool) error
//   ResetUserTOTP(ctx, a, userID string) error
//   ChangePassword(ctx, a, oldPassword, newPassword string) error    // the actor's own (any role)
//   EnrolTOTP(ctx, a, secret string) error                            // the actor's own (any role): sealed and stored
//   TOTPSecret(ctx, u store.User) (string, error)                     // unsealed, for checking a code
//   CreateAPIKey(ctx, a, role string) (key string, err error)
//   RevokeAPIKey(ctx, a, id string) error
//   SetRequireTOTP(ctx, a, require bool) error                         // ManageAccount
//
// Audit:
//   Record(ctx, a, action, object, detail string) error   // for events that are not changes through ops: login, logout, failed login, download
