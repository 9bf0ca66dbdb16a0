// Package admin holds the operations that both the admin commands of
// emsign-cp and the user API perform: API keys, bot creation and tokens,
// and the JSON views of bots and scans they both print.
package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// apiKeyPrefix starts every API key, so that a leaked one is recognisable
// (secret scanners) and its public ID can be split off.
const apiKeyPrefix = "emcp_"

// ErrBadAPIKey is an API key that is malformed, unknown or wrong.
var ErrBadAPIKey = errors.New("invalid API key")

// Hash is how tokens and API keys are stored: SHA-256. They are random and
// high-entropy, so a fast hash is enough.
func Hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// CreateAPIKey makes an API key for the account and stores its hash. The
// key is returned once and never again.
func CreateAPIKey(ctx context.Context, st store.Store, account, role string) (string, error) {
	if !slices.Contains(store.Roles, role) {
		return "", fmt.Errorf("role %q: want one of %s", role, strings.Join(store.Roles, ", "))
	}
	idb := make([]byte, 8)
	secret := make([]byte, 32)
	if _, err := rand.Read(idb); err != nil {
		return "", fmt.Errorf("api key: %w", err)
	}
	if _, err := rand.Read(secret); err != nil {
		return "", fmt.Errorf("api key: %w", err)
	}
	id := hex.EncodeToString(idb)
	key := apiKeyPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret)
	if err := st.CreateAPIKey(ctx, store.APIKey{ID: id, Account: account, Role: role, Hash: Hash(key)}); err != nil {
		return "", err
	}
	return key, nil
}

// CheckAPIKey finds the key's record and compares its hash in constant
// time. Every failure is ErrBadAPIKey, except a store failure.
func CheckAPIKey(ctx context.Context, st store.Store, key string) (store.APIKey, error) {
	rest, ok := strings.CutPrefix(key, apiKeyPrefix)
	if !ok {
		return store.APIKey{}, ErrBadAPIKey
	}
	id, _, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 16 {
		return store.APIKey{}, ErrBadAPIKey
	}
	k, err := st.APIKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.APIKey{}, ErrBadAPIKey
	}
	if err != nil {
		return store.APIKey{}, err
	}
	if subtle.ConstantTimeCompare(k.Hash, Hash(key)) != 1 {
		return store.APIKey{}, ErrBadAPIKey
	}
	return k, nil
}

// NewToken makes a bot token: a random UUID (version 4), as bots expect (B2).
func NewToken() (string, error) {
	u, err := uuid.NewRandom()
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	return u.String(), nil
}

// NewID makes an identifier for a bot, scan or job: a random UUID.
func NewID() string { return uuid.NewString() }

// CreateBot adds a bot to the account and returns its ID and its token,
// shown once.
func CreateBot(ctx context.Context, st store.Store, account, name, group string) (id, token string, err error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "", "", errors.New("name: required")
	}
	if len(name) > 200 {
		return "", "", errors.New("name: at most 200 characters")
	}
	if token, err = NewToken(); err != nil {
		return "", "", err
	}
	id = NewID()
	if err := st.CreateBot(ctx, store.Bot{ID: id, Account: account, Name: name, Group: strings.TrimSpace(group), TokenHash: Hash(token)}); err != nil {
		return "", "", err
	}
	return id, token, nil
}

// RegenerateToken gives the bot a new token and revokes its certificate: it
// must activate again (B8).
func RegenerateToken(ctx context.Context, st store.Store, account, botID string) (string, error) {
	token, err := NewToken()
	if err != nil {
		return "", err
	}
	if err := st.SetBotToken(ctx, account, botID, Hash(token)); err != nil {
		return "", err
	}
	return token, nil
}

// FindTokenHolder finds which of the account's bots holds token, comparing
// every candidate's hash in constant time.
func FindTokenHolder(ctx context.Context, st store.Store, account, token string) (store.Bot, []byte, bool, error) {
	bots, err := st.TokenHolders(ctx, account)
	if err != nil {
		return store.Bot{}, nil, false, err
	}
	h := Hash(token)
	var found store.Bot
	ok := false
	for _, b := range bots {
		if subtle.ConstantTimeCompare(b.TokenHash, h) == 1 {
			found, ok = b, true
		}
	}
	return found, h, ok, nil
}

// BotView is a bot as the user API and `emsign-cp bot list` show it.
type BotView struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Group     string            `json:"group"`
	Tags      []store.Tag       `json:"tags"`
	Status    string            `json:"status"`
	Host      string            `json:"host"`
	OS        string            `json:"os"`
	Arch      string            `json:"arch"`
	IPs       []string          `json:"ips"`
	Version   string            `json:"version"`
	Path      string            `json:"path,omitempty"`
	Created   time.Time         `json:"created"`
	Activated *time.Time        `json:"activated,omitempty"`
	LastSeen  *time.Time        `json:"last_seen"`
	Targets   int               `json:"targets"`
	Schedule  protocol.Schedule `json:"schedule"`
	LastScan  *LastScan         `json:"last_scan"`
	NextScan  *time.Time        `json:"next_scan"`
}

// LastScan summarises a bot's latest scan (D2).
type LastScan struct {
	ID       string     `json:"id"`
	Started  *time.Time `json:"started"`
	Finished *time.Time `json:"finished"`
	Findings int        `json:"findings"`
	Errors   int        `json:"errors"`
	Complete bool       `json:"complete"`
}

// ViewBot describes a bot: its last scan (the latest finished one, else the
// latest started) and its next scheduled scan.
func ViewBot(ctx context.Context, st store.Store, b store.Bot, now time.Time) (BotView, error) {
	v := BotView{
		ID: b.ID, Name: b.Name, Group: b.Group, Tags: b.Tags, Status: b.Status, Host: b.Hostname, OS: b.OS,
		Arch: b.Arch, IPs: b.IPs, Version: b.Version, Path: b.Path, Created: b.CreatedAt, Activated: b.Activated,
		LastSeen: b.LastSeen, Targets: b.Targets.Count, Schedule: b.Targets.Schedule,
	}
	if v.Tags == nil {
		v.Tags = []store.Tag{}
	}
	if v.IPs == nil {
		v.IPs = []string{}
	}
	if v.Schedule.Kind == "" {
		v.Schedule.Kind = protocol.ScheduleOnDemand
	}
	scans, err := st.Scans(ctx, b.Account, b.ID, 20)
	if err != nil {
		return BotView{}, err
	}
	var last *store.Scan
	for i := range scans {
		if scans[i].Finished != nil {
			last = &scans[i]
			break
		}
		if last == nil && scans[i].Started != nil {
			last = &scans[i]
		}
	}
	if last != nil {
		v.LastScan = &LastScan{ID: last.ID, Started: last.Started, Finished: last.Finished, Findings: last.Certificates,
			Errors: last.Errors, Complete: last.Complete}
	}
	if b.Status == protocol.BotActive || b.Status == protocol.BotActivationPending {
		if next, ok, err := b.Targets.Schedule.Next(now); err == nil && ok {
			next = next.UTC()
			v.NextScan = &next
		}
	}
	return v, nil
}

// ScanView is a scan as the user API shows it.
type ScanView struct {
	ID           string            `json:"id"`
	Trigger      string            `json:"trigger"`
	Queued       *time.Time        `json:"queued,omitempty"`
	Started      *time.Time        `json:"started"`
	Finished     *time.Time        `json:"finished"`
	Targets      int               `json:"targets"`
	Batches      int64             `json:"batches"`
	Certificates int               `json:"certificates"`
	Errors       int               `json:"errors"`
	Complete     bool              `json:"complete"`
	Stopped      string            `json:"stopped,omitempty"`
	ErrorList    []store.ScanError `json:"error_list,omitempty"`
}

// ViewScan describes a scan.
func ViewScan(s store.Scan) ScanView {
	return ScanView{ID: s.ID, Trigger: s.Trigger, Queued: s.Queued, Started: s.Started, Finished: s.Finished, Targets: s.Targets,
		Batches: s.Batches, Certificates: s.Certificates, Errors: s.Errors, Complete: s.Complete, Stopped: s.Stopped}
}

// APIKeyID is the public ID of a key CreateAPIKey made ("" for another
// string): what logs and the audit log name it by.
func APIKeyID(key string) string {
	rest, ok := strings.CutPrefix(key, apiKeyPrefix)
	if !ok {
		return ""
	}
	id, _, ok := strings.Cut(rest, "_")
	if !ok {
		return ""
	}
	return id
}

// UserView is a user as the user API and `emsign-cp user list` show it:
// never a password hash or a TOTP secret.
type UserView struct {
	ID        string     `json:"id"`
	Email     string     `json:"email"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	Disabled  bool       `json:"disabled"`
	TwoFactor bool       `json:"two_factor"`
	Created   time.Time  `json:"created"`
	LastLogin *time.Time `json:"last_login"`
}

// ViewUser describes a user.
func ViewUser(u store.User) UserView {
	return UserView{ID: u.ID, Email: u.Email, Name: u.Name, Role: u.Role, Disabled: u.Disabled,
		TwoFactor: len(u.TOTPSealed) > 0, Created: u.CreatedAt, LastLogin: u.LastLogin}
}
