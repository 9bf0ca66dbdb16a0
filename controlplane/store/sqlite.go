package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver, "sqlite"

	"github.com/emsign/bot/protocol"
)

//go:embed migrations/sqlite/*.sql
var sqliteMigrations embed.FS

// Options tune a store.
type Options struct {
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// RedeliverAfter is how long a delivered rotate job may stay
	// unfinished before TakeJobs hands it over again; RedeliverAfter
	// (the constant) when zero.
	RedeliverAfter time.Duration
}

// RedeliverAfter is the default time after which a delivered rotate job
// that has not finished is delivered again: rotations are at-least-once
// (a bot that crashed, or whose answer was lost, gets the job back; the
// bot and the ordering code are idempotent, so one order never orders
// twice). Scan and config jobs are delivered once.
const RedeliverAfter = 10 * time.Minute

// SQL is the Store over database/sql. Its statements are portable SQL
// (ON CONFLICT upserts, no engine-specific functions) so that the
// PostgreSQL implementation can share them.
type SQL struct {
	db             *sql.DB
	now            func() time.Time
	redeliverAfter time.Duration
}

var _ Store = (*SQL)(nil)

// OpenSQLite opens (creating if needed) the SQLite database at path, in WAL
// mode with a busy timeout, and applies the migrations.
func OpenSQLite(ctx context.Context, path string, o Options) (*SQL, error) {
	if path == "" {
		return nil, errors.New("open store: empty database path")
	}
	// Created private before SQLite opens it: its WAL and shared-memory
	// files take the database file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	f.Close()
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(NORMAL)", "foreign_keys(1)", "cache_size(-32000)"} {
		q.Add("_pragma", p)
	}
	// Write transactions take the lock at BEGIN: two writers never deadlock
	// upgrading read locks, they wait (busy_timeout) instead.
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := Migrate(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	s := &SQL{db: db, now: o.Now, redeliverAfter: o.RedeliverAfter}
	if s.now == nil {
		s.now = time.Now
	}
	if s.redeliverAfter <= 0 {
		s.redeliverAfter = RedeliverAfter
	}
	s.optimize(ctx)
	return s, nil
}

// optimize lets SQLite refresh the statistics its query planner uses
// (sqlite_stat1) for the tables whose size changed much since the last
// time, reading a bounded sample of each (analysis_limit) so that it costs
// milliseconds even at millions of rows. Without statistics, a search
// filtered by a location's source or bot checks each certificate against
// every location of the account: minutes at 100,000 certificates. A
// failure only leaves the statistics as they were, so it is not an error
// of the caller's change.
func (s *SQL) optimize(ctx context.Context) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = conn.ExecContext(ctx, `PRAGMA analysis_limit = 2000`)
	// 0x10002: check every table (not only those this connection used)
	// and analyse those that would benefit.
	_, _ = conn.ExecContext(ctx, `PRAGMA optimize = 0x10002`)
}

// Migrate applies the SQLite migrations not yet applied (goose, with the
// SQL files embedded in the binary).
func Migrate(ctx context.Context, db *sql.DB) error {
	fsys, err := fs.Sub(sqliteMigrations, "migrations/sqlite")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	return nil
}

// DB is the underlying database, for tests and tools.
func (s *SQL) DB() *sql.DB { return s.db }

// Close closes the database.
func (s *SQL) Close() error { return s.db.Close() }

// Times are stored as Unix microseconds.
func us(t time.Time) int64 { return t.UnixMicro() }

func fromUS(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromNullUS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromUS(v.Int64)
	return &t
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *SQL) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func notFound(what string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ---- accounts and keys

// CreateAccount makes an account with a random, unused 10-digit number.
func (s *SQL) CreateAccount(ctx context.Context, name string) (Account, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return Account{}, errors.New("create account: empty name")
	}
	a := Account{Name: name, BotLimit: 1, CreatedAt: s.now().UTC()}
	for range 20 {
		n, err := rand.Int(rand.Reader, big.NewInt(9_000_000_000))
		if err != nil {
			return Account{}, fmt.Errorf("create account: %w", err)
		}
		a.ID = fmt.Sprintf("%010d", n.Int64()+1_000_000_000)
		res, err := s.db.ExecContext(ctx, `INSERT INTO accounts (id, name, bot_limit, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			a.ID, a.Name, a.BotLimit, us(a.CreatedAt))
		if err != nil {
			return Account{}, fmt.Errorf("create account: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return a, nil
		}
	}
	return Account{}, errors.New("create account: no free account number")
}

// Account reads an account.
func (s *SQL) Account(ctx context.Context, id string) (Account, error) {
	var a Account
	var created int64
	var totp int
	err := s.db.QueryRowContext(ctx, `SELECT id, name, bot_limit, created_at, require_totp FROM accounts WHERE id = ?`, id).
		Scan(&a.ID, &a.Name, &a.BotLimit, &created, &totp)
	if err != nil {
		return Account{}, notFound("account "+id, err)
	}
	a.CreatedAt = fromUS(created)
	a.RequireTOTP = totp == 1
	return a, nil
}

// SetBotLimit sets how many bots the account may have.
func (s *SQL) SetBotLimit(ctx context.Context, account string, limit int) error {
	if limit < 1 {
		return fmt.Errorf("set bot limit: %d: want at least 1", limit)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE accounts SET bot_limit = ? WHERE id = ?`, limit, account)
	if err != nil {
		return fmt.Errorf("set bot limit: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("account %s: %w", account, ErrNotFound)
	}
	return nil
}

// CreateAPIKey stores a key's ID, role and hash.
func (s *SQL) CreateAPIKey(ctx context.Context, k APIKey) error {
	if k.ID == "" || len(k.Hash) == 0 {
		return errors.New("create api key: no ID or hash")
	}
	if _, err := s.Account(ctx, k.Account); err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = s.now()
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO api_keys (id, account_id, role, key_hash, created_at) VALUES (?, ?, ?, ?, ?)`,
		k.ID, k.Account, k.Role, k.Hash, us(k.CreatedAt))
	if err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	return nil
}

// APIKey reads a key by its public ID.
func (s *SQL) APIKey(ctx context.Context, id string) (APIKey, error) {
	var k APIKey
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT id, account_id, role, key_hash, created_at FROM api_keys WHERE id = ?`, id).
		Scan(&k.ID, &k.Account, &k.Role, &k.Hash, &created)
	if err != nil {
		return APIKey{}, notFound("api key", err)
	}
	k.CreatedAt = fromUS(created)
	return k, nil
}

// ---- bots

const botColumns = `id, account_id, name, grp, tags, status, token_hash, cert_serial, hostname, os, arch, ips,
	version, path, capability, targets_sealed, target_count, schedule, threads, max_runtime, config_version,
	created_at, activated_at, last_seen`

type scanner interface{ Scan(...any) error }

func scanBot(r scanner) (Bot, error) {
	var b Bot
	var tags, ips, schedule string
	var serial sql.NullString
	var maxRuntime, created int64
	var activated, lastSeen sql.NullInt64
	err := r.Scan(&b.ID, &b.Account, &b.Name, &b.Group, &tags, &b.Status, &b.TokenHash, &serial, &b.Hostname, &b.OS,
		&b.Arch, &ips, &b.Version, &b.Path, &b.Capability, &b.Targets.Sealed, &b.Targets.Count, &schedule,
		&b.Targets.Threads, &maxRuntime, &b.Targets.Version, &created, &activated, &lastSeen)
	if err != nil {
		return Bot{}, err
	}
	b.CertSerial = serial.String
	if err := json.Unmarshal([]byte(tags), &b.Tags); err != nil {
		return Bot{}, fmt.Errorf("bot %s tags: %w", b.ID, err)
	}
	if err := json.Unmarshal([]byte(ips), &b.IPs); err != nil {
		return Bot{}, fmt.Errorf("bot %s ips: %w", b.ID, err)
	}
	if err := json.Unmarshal([]byte(schedule), &b.Targets.Schedule); err != nil {
		return Bot{}, fmt.Errorf("bot %s schedule: %w", b.ID, err)
	}
	b.Targets.MaxRuntime = time.Duration(maxRuntime)
	b.CreatedAt = fromUS(created)
	b.Activated = fromNullUS(activated)
	b.LastSeen = fromNullUS(lastSeen)
	return b, nil
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain structs and slices come here.
		panic(err)
	}
	return string(b)
}

// CreateBot adds a bot, within the account's bot limit.
func (s *SQL) CreateBot(ctx context.Context, b Bot) error {
	if b.ID == "" || b.Name == "" || len(b.TokenHash) == 0 {
		return errors.New("create bot: ID, name and token hash are required")
	}
	if b.Tags == nil {
		b.Tags = []Tag{}
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		var limit, n int
		if err := tx.QueryRowContext(ctx, `SELECT bot_limit FROM accounts WHERE id = ?`, b.Account).Scan(&limit); err != nil {
			return notFound("create bot: account "+b.Account, err)
		}
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM bots WHERE account_id = ? AND status <> ?`,
			b.Account, protocol.BotInactive).Scan(&n); err != nil {
			return fmt.Errorf("create bot: %w", err)
		}
		if n >= limit {
			return fmt.Errorf("create bot: account %s may have %d bot(s) and has %d; raise its limit first: %w", b.Account, limit, n, ErrBotLimit)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO bots (id, account_id, name, grp, tags, status, token_hash, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			b.ID, b.Account, b.Name, b.Group, jsonText(b.Tags), protocol.BotActivationPending, b.TokenHash, us(s.now()))
		if err != nil {
			return fmt.Errorf("create bot: %w", err)
		}
		return nil
	})
}

// Bot reads one bot of the account.
func (s *SQL) Bot(ctx context.Context, account, id string) (Bot, error) {
	b, err := scanBot(s.db.QueryRowContext(ctx, `SELECT `+botColumns+` FROM bots WHERE account_id = ? AND id = ?`, account, id))
	if err != nil {
		return Bot{}, notFound("bot "+id, err)
	}
	return b, nil
}

func (s *SQL) bots(ctx context.Context, query string, args ...any) ([]Bot, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Bot{}
	for rows.Next() {
		b, err := scanBot(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// Bots lists the account's bots, oldest first.
func (s *SQL) Bots(ctx context.Context, account string) ([]Bot, error) {
	b, err := s.bots(ctx, `SELECT `+botColumns+` FROM bots WHERE account_id = ? ORDER BY created_at, id`, account)
	if err != nil {
		return nil, fmt.Errorf("list bots: %w", err)
	}
	return b, nil
}

// TokenHolders lists the account's bots that still hold a token.
func (s *SQL) TokenHolders(ctx context.Context, account string) ([]Bot, error) {
	b, err := s.bots(ctx, `SELECT `+botColumns+` FROM bots WHERE account_id = ? AND token_hash IS NOT NULL`, account)
	if err != nil {
		return nil, fmt.Errorf("token holders: %w", err)
	}
	return b, nil
}

// BotByCertificate finds a bot by its current certificate.
func (s *SQL) BotByCertificate(ctx context.Context, botID, serial string) (Bot, error) {
	b, err := scanBot(s.db.QueryRowContext(ctx, `SELECT `+botColumns+` FROM bots WHERE id = ? AND cert_serial = ?`, botID, serial))
	if err != nil {
		return Bot{}, notFound("bot certificate", err)
	}
	return b, nil
}

// UpdateBot changes a bot's name, group or tags.
func (s *SQL) UpdateBot(ctx context.Context, account, id string, p BotPatch) (Bot, error) {
	var sets []string
	var args []any
	if p.Name != nil {
		sets, args = append(sets, "name = ?"), append(args, *p.Name)
	}
	if p.Group != nil {
		sets, args = append(sets, "grp = ?"), append(args, *p.Group)
	}
	if p.Tags != nil {
		tags := *p.Tags
		if tags == nil {
			tags = []Tag{}
		}
		sets, args = append(sets, "tags = ?"), append(args, jsonText(tags))
	}
	if len(sets) > 0 {
		res, err := s.db.ExecContext(ctx, `UPDATE bots SET `+strings.Join(sets, ", ")+` WHERE account_id = ? AND id = ?`,
			append(args, account, id)...)
		if err != nil {
			return Bot{}, fmt.Errorf("update bot: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return Bot{}, fmt.Errorf("bot %s: %w", id, ErrNotFound)
		}
	}
	return s.Bot(ctx, account, id)
}

// SetBotStatus suspends or deactivates a bot.
func (s *SQL) SetBotStatus(ctx context.Context, account, id, status string) error {
	var q string
	switch status {
	case protocol.BotSuspended:
		q = `UPDATE bots SET status = ? WHERE account_id = ? AND id = ? AND status <> 'inactive'`
	case protocol.BotInactive:
		q = `UPDATE bots SET status = ?, token_hash = NULL, cert_serial = NULL WHERE account_id = ? AND id = ?`
	default:
		return fmt.Errorf("set bot status: %q: want suspended or inactive", status)
	}
	res, err := s.db.ExecContext(ctx, q, status, account, id)
	if err != nil {
		return fmt.Errorf("set bot status: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.Bot(ctx, account, id); err != nil {
			return err
		}
		return fmt.Errorf("bot %s is inactive: %w", id, ErrConflict)
	}
	return nil
}

// SetBotToken issues a new token (by hash) and revokes the certificate.
func (s *SQL) SetBotToken(ctx context.Context, account, id string, tokenHash []byte) error {
	res, err := s.db.ExecContext(ctx, `UPDATE bots SET token_hash = ?, cert_serial = NULL, status = ?
		WHERE account_id = ? AND id = ? AND status <> ?`, tokenHash, protocol.BotActivationPending, account, id, protocol.BotInactive)
	if err != nil {
		return fmt.Errorf("set bot token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.Bot(ctx, account, id); err != nil {
			return err
		}
		return fmt.Errorf("bot %s is inactive: %w", id, ErrConflict)
	}
	return nil
}

// ActivateBot consumes the token and records the bot's certificate.
func (s *SQL) ActivateBot(ctx context.Context, account, id string, tokenHash []byte, a Activation) error {
	if a.IPs == nil {
		a.IPs = []string{}
	}
	now := us(s.now())
	res, err := s.db.ExecContext(ctx, `UPDATE bots SET token_hash = NULL, status = ?, cert_serial = ?, hostname = ?, os = ?,
		arch = ?, ips = ?, version = ?, path = ?, capability = ?, activated_at = ?, last_seen = ?
		WHERE account_id = ? AND id = ? AND token_hash = ? AND status = ?`,
		protocol.BotActive, a.CertSerial, a.Hostname, a.OS, a.Arch, jsonText(a.IPs), a.Version, a.Path, a.Capability,
		now, now, account, id, tokenHash, protocol.BotActivationPending)
	if err != nil {
		return fmt.Errorf("activate bot: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("activate bot %s: %w", id, ErrNotFound)
	}
	return nil
}

// TouchBot records that the bot called, with the version and path it
// reported (each left as it was when empty).
func (s *SQL) TouchBot(ctx context.Context, id string, at time.Time, version, path string) error {
	q, args := `UPDATE bots SET last_seen = ?`, []any{us(at)}
	if version != "" {
		q, args = q+`, version = ?`, append(args, version)
	}
	if path != "" {
		q, args = q+`, path = ?`, append(args, path)
	}
	if _, err := s.db.ExecContext(ctx, q+` WHERE id = ?`, append(args, id)...); err != nil {
		return fmt.Errorf("touch bot: %w", err)
	}
	return nil
}

// RaiseBotCapability records a higher protocol version.
func (s *SQL) RaiseBotCapability(ctx context.Context, id string, capability int) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE bots SET capability = ? WHERE id = ? AND capability < ?`, capability, id, capability); err != nil {
		return fmt.Errorf("raise bot capability: %w", err)
	}
	return nil
}

// SetTargets replaces the bot's targets and queues config_changed.
func (s *SQL) SetTargets(ctx context.Context, account, id string, tc TargetConfig, jobID string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE bots SET targets_sealed = ?, target_count = ?, schedule = ?, threads = ?,
			max_runtime = ?, config_version = config_version + 1 WHERE account_id = ? AND id = ?`,
			tc.Sealed, tc.Count, jsonText(tc.Schedule), tc.Threads, int64(tc.MaxRuntime), account, id)
		if err != nil {
			return fmt.Errorf("set targets: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("bot %s: %w", id, ErrNotFound)
		}
		var pending int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM jobs WHERE bot_id = ? AND kind = ? AND status = ?`,
			id, protocol.JobConfigChanged, JobPending).Scan(&pending); err != nil {
			return fmt.Errorf("set targets: %w", err)
		}
		if pending > 0 {
			return nil
		}
		return insertJob(ctx, tx, Job{ID: jobID, Account: account, BotID: id, Kind: protocol.JobConfigChanged}, s.now())
	})
}

func insertJob(ctx context.Context, tx *sql.Tx, j Job, now time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO jobs (id, account_id, bot_id, kind, scan_id, payload, order_id, status, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		j.ID, j.Account, j.BotID, j.Kind, j.ScanID, j.Payload, j.OrderID, JobPending, us(now))
	if err != nil {
		return fmt.Errorf("queue job: %w", err)
	}
	return nil
}

// ---- jobs

// QueueScan records a user's scan request and its job.
func (s *SQL) QueueScan(ctx context.Context, account, botID, scanID, jobID string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM bots WHERE account_id = ? AND id = ?`, account, botID).Scan(&n); err != nil {
			return fmt.Errorf("queue scan: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("bot %s: %w", botID, ErrNotFound)
		}
		now := s.now()
		if _, err := tx.ExecContext(ctx, `INSERT INTO scans (id, account_id, bot_id, trigger, queued_at) VALUES (?, ?, ?, ?, ?)`,
			scanID, account, botID, protocol.TriggerJob, us(now)); err != nil {
			return fmt.Errorf("queue scan: %w", err)
		}
		return insertJob(ctx, tx, Job{ID: jobID, Account: account, BotID: botID, Kind: protocol.JobScan, ScanID: scanID}, now)
	})
}

// takeCondition selects the jobs TakeJobs hands over: the pending ones,
// and the rotate jobs delivered at or before the time given (the
// arguments: bot, pending, delivered, rotate, time) and not finished.
const takeCondition = `bot_id = ? AND (status = ? OR (status = ? AND kind = ? AND delivered_at <= ?))`

// TakeJobs hands over the pending jobs, and again the rotate jobs
// delivered more than the redelivery time ago that did not finish.
func (s *SQL) TakeJobs(ctx context.Context, botID string) ([]Job, error) {
	var jobs []Job
	now := s.now()
	args := []any{botID, JobPending, JobDelivered, protocol.JobRotate, us(now.Add(-s.redeliverAfter))}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, account_id, bot_id, kind, scan_id, payload, order_id, status, error, created_at
			FROM jobs WHERE `+takeCondition+` ORDER BY created_at, id`, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var j Job
			var created int64
			if err := rows.Scan(&j.ID, &j.Account, &j.BotID, &j.Kind, &j.ScanID, &j.Payload, &j.OrderID, &j.Status, &j.Error,
				&created); err != nil {
				rows.Close()
				return err
			}
			j.CreatedAt = fromUS(created)
			jobs = append(jobs, j)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(jobs) == 0 {
			return nil
		}
		// The same condition in the same (write) transaction: what was
		// read is what is marked.
		_, err = tx.ExecContext(ctx, `UPDATE jobs SET status = ?, delivered_at = ? WHERE `+takeCondition,
			append([]any{JobDelivered, us(now)}, args...)...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("take jobs: %w", err)
	}
	return jobs, nil
}

// FinishJob records a job's result.
func (s *SQL) FinishJob(ctx context.Context, botID, jobID, status, errText string) error {
	if status != JobDone && status != JobFailed {
		return fmt.Errorf("finish job: status %q: want done or failed", status)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE jobs SET status = ?, error = ?, finished_at = ? WHERE bot_id = ? AND id = ?`,
		status, errText, us(s.now()), botID, jobID)
	if err != nil {
		return fmt.Errorf("finish job: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	}
	return nil
}

// ---- scans

// scanOwned says whether the scan exists, and fails with ErrNotFound when
// it belongs to another bot.
func scanOwned(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, account, botID, scanID string) (bool, error) {
	var acc, bot string
	err := q.QueryRowContext(ctx, `SELECT account_id, bot_id FROM scans WHERE id = ?`, scanID).Scan(&acc, &bot)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if acc != account || bot != botID {
		return false, fmt.Errorf("scan %s: %w", scanID, ErrNotFound)
	}
	return true, nil
}

// StartScan opens a scan or confirms it.
func (s *SQL) StartScan(ctx context.Context, account, botID string, st protocol.ScanStart) error {
	if st.ScanID == "" {
		return errors.New("start scan: no scan ID")
	}
	started := st.Started
	if started.IsZero() {
		started = s.now()
	}
	trigger := st.Trigger
	if trigger == "" {
		trigger = protocol.TriggerSchedule
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		exists, err := scanOwned(ctx, tx, account, botID, st.ScanID)
		if err != nil {
			return fmt.Errorf("start scan: %w", err)
		}
		if exists {
			_, err = tx.ExecContext(ctx, `UPDATE scans SET started = ?, targets = ? WHERE id = ? AND started IS NULL`,
				us(started), st.Targets, st.ScanID)
		} else {
			_, err = tx.ExecContext(ctx, `INSERT INTO scans (id, account_id, bot_id, trigger, started, targets) VALUES (?, ?, ?, ?, ?, ?)`,
				st.ScanID, account, botID, trigger, us(started), st.Targets)
		}
		if err != nil {
			return fmt.Errorf("start scan: %w", err)
		}
		return nil
	})
}

// CompleteScan closes a scan.
func (s *SQL) CompleteScan(ctx context.Context, account, botID, scanID string, c protocol.ScanComplete) error {
	finished := c.Finished
	if finished.IsZero() {
		finished = s.now()
	}
	complete := c.Complete && c.Stopped == ""
	stopped := c.Stopped
	// A finished scan is when tables grow: refresh the planner's statistics
	// then (after the commit, never inside the scan's transaction).
	defer s.optimize(ctx)
	return s.tx(ctx, func(tx *sql.Tx) error {
		exists, err := scanOwned(ctx, tx, account, botID, scanID)
		if err != nil {
			return fmt.Errorf("complete scan: %w", err)
		}
		if !exists {
			return fmt.Errorf("scan %s: %w", scanID, ErrNotFound)
		}
		// A scan whose batches did not all arrive cannot tell what is gone.
		var received, last int64
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM scan_batches WHERE scan_id = ?`,
			scanID).Scan(&received, &last); err != nil {
			return fmt.Errorf("complete scan: %w", err)
		}
		if complete && c.Batches > 0 && (received != c.Batches || last != c.Batches) {
			complete = false
			if stopped == "" {
				stopped = fmt.Sprintf("batches missing: received %d of %d", received, c.Batches)
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE scans SET finished = ?, complete = ?, stopped = ?,
			started = COALESCE(started, ?) WHERE id = ?`,
			us(finished), boolInt(complete), stopped, us(finished), scanID); err != nil {
			return fmt.Errorf("complete scan: %w", err)
		}
		if !complete {
			return nil
		}
		// What this scan did not report is gone from where it was.
		if _, err := tx.ExecContext(ctx, `UPDATE locations SET present = 0, gone_at = ?
			WHERE account_id = ? AND bot_id = ? AND present = 1 AND last_scan_id <> ?`,
			us(finished), account, botID, scanID); err != nil {
			return fmt.Errorf("complete scan: %w", err)
		}
		// The sources of the certificates of those locations.
		gone, err := queryStrings(ctx, tx, `SELECT DISTINCT fingerprint FROM locations
			WHERE account_id = ? AND bot_id = ? AND present = 0 AND gone_at = ?`, account, botID, us(finished))
		if err != nil {
			return fmt.Errorf("complete scan: %w", err)
		}
		if err := recomputeSources(ctx, tx, account, gone); err != nil {
			return fmt.Errorf("complete scan: %w", err)
		}
		// Certificates whose last present location that was.
		if _, err := tx.ExecContext(ctx, `UPDATE certificates SET present = 0 WHERE account_id = ? AND present = 1
			AND fingerprint IN (SELECT fingerprint FROM locations WHERE account_id = ? AND bot_id = ? AND present = 0 AND gone_at = ?)
			AND NOT EXISTS (SELECT 1 FROM locations l WHERE l.account_id = certificates.account_id
				AND l.fingerprint = certificates.fingerprint AND l.present = 1)`,
			account, account, botID, us(finished)); err != nil {
			return fmt.Errorf("complete scan: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET present = 0
			WHERE account_id = ? AND bot_id = ? AND present = 1 AND last_scan_id <> ?`,
			account, botID, scanID); err != nil {
			return fmt.Errorf("complete scan: %w", err)
		}
		return nil
	})
}

const scanColumns = `id, account_id, bot_id, trigger, queued_at, started, finished, targets, batches, certificates, errors, complete, stopped`

func scanScan(r scanner) (Scan, error) {
	var sc Scan
	var queued, started, finished sql.NullInt64
	var complete int
	if err := r.Scan(&sc.ID, &sc.Account, &sc.BotID, &sc.Trigger, &queued, &started, &finished, &sc.Targets, &sc.Batches,
		&sc.Certificates, &sc.Errors, &complete, &sc.Stopped); err != nil {
		return Scan{}, err
	}
	sc.Queued, sc.Started, sc.Finished = fromNullUS(queued), fromNullUS(started), fromNullUS(finished)
	sc.Complete = complete == 1
	return sc, nil
}

// Scans lists a bot's scans, newest first.
func (s *SQL) Scans(ctx context.Context, account, botID string, limit int) ([]Scan, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+scanColumns+` FROM scans WHERE account_id = ? AND bot_id = ?
		ORDER BY COALESCE(started, queued_at) DESC, id LIMIT ?`, account, botID, limit)
	if err != nil {
		return nil, fmt.Errorf("list scans: %w", err)
	}
	defer rows.Close()
	out := []Scan{}
	for rows.Next() {
		sc, err := scanScan(rows)
		if err != nil {
			return nil, fmt.Errorf("list scans: %w", err)
		}
		out = append(out, sc)
	}
	return out, rows.Err()
}

// Scan reads one scan of a bot.
func (s *SQL) Scan(ctx context.Context, account, botID, scanID string) (Scan, error) {
	sc, err := scanScan(s.db.QueryRowContext(ctx, `SELECT `+scanColumns+` FROM scans WHERE account_id = ? AND bot_id = ? AND id = ?`,
		account, botID, scanID))
	if err != nil {
		return Scan{}, notFound("scan "+scanID, err)
	}
	return sc, nil
}

// ScanErrors lists the problems a scan met.
func (s *SQL) ScanErrors(ctx context.Context, account, botID, scanID string, limit int) ([]ScanError, error) {
	if _, err := s.Scan(ctx, account, botID, scanID); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.db.QueryContext(ctx, `SELECT uri, source, error, seen_at FROM scan_errors WHERE scan_id = ? ORDER BY id LIMIT ?`, scanID, limit)
	if err != nil {
		return nil, fmt.Errorf("scan errors: %w", err)
	}
	defer rows.Close()
	out := []ScanError{}
	for rows.Next() {
		var e ScanError
		var seen int64
		if err := rows.Scan(&e.URI, &e.Source, &e.Error, &seen); err != nil {
			return nil, fmt.Errorf("scan errors: %w", err)
		}
		e.SeenAt = fromUS(seen)
		out = append(out, e)
	}
	return out, rows.Err()
}
