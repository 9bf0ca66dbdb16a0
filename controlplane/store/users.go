package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// SetRequireTOTP makes two-factor login compulsory for the account's users
// (or not).
func (s *SQL) SetRequireTOTP(ctx context.Context, account string, require bool) error {
	res, err := s.db.ExecContext(ctx, `UPDATE accounts SET require_totp = ? WHERE id = ?`, boolInt(require), account)
	if err != nil {
		return fmt.Errorf("set require totp: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("account %s: %w", account, ErrNotFound)
	}
	return nil
}

// ---- API keys

// APIKeys lists the account's API keys, oldest first.
func (s *SQL) APIKeys(ctx context.Context, account string) ([]APIKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, account_id, role, key_hash, created_at FROM api_keys
		WHERE account_id = ? ORDER BY created_at, id`, account)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	defer rows.Close()
	out := []APIKey{}
	for rows.Next() {
		var k APIKey
		var created int64
		if err := rows.Scan(&k.ID, &k.Account, &k.Role, &k.Hash, &created); err != nil {
			return nil, fmt.Errorf("list api keys: %w", err)
		}
		k.CreatedAt = fromUS(created)
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return out, nil
}

// RevokeAPIKey deletes one of the account's API keys.
func (s *SQL) RevokeAPIKey(ctx context.Context, account, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM api_keys WHERE account_id = ? AND id = ?`, account, id)
	if err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("api key %s: %w", id, ErrNotFound)
	}
	return nil
}

// ---- users

// normEmail is the form emails are stored and looked up in.
func normEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

const userColumns = `id, account_id, email, name, role, password, totp_sealed, totp_last_step, disabled, failed_logins,
	locked_until, created_at, last_login`

func scanUser(r scanner) (User, error) {
	var u User
	var disabled int
	var created int64
	var locked, last sql.NullInt64
	if err := r.Scan(&u.ID, &u.Account, &u.Email, &u.Name, &u.Role, &u.Password, &u.TOTPSealed, &u.TOTPLastStep, &disabled,
		&u.FailedLogins, &locked, &created, &last); err != nil {
		return User{}, err
	}
	u.Disabled = disabled == 1
	u.LockedUntil, u.LastLogin = fromNullUS(locked), fromNullUS(last)
	u.CreatedAt = fromUS(created)
	return u, nil
}

// CreateUser adds a user; ErrConflict when the email is taken (in any
// account).
func (s *SQL) CreateUser(ctx context.Context, u User) error {
	u.Email = normEmail(u.Email)
	if u.ID == "" || u.Email == "" || u.Role == "" || u.Password == "" {
		return errors.New("create user: ID, email, role and password are required")
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = s.now()
	}
	var locked, last any
	if u.LockedUntil != nil {
		locked = us(*u.LockedUntil)
	}
	if u.LastLogin != nil {
		last = us(*u.LastLogin)
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM accounts WHERE id = ?`, u.Account).Scan(&n); err != nil {
			return fmt.Errorf("create user: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("create user: account %s: %w", u.Account, ErrNotFound)
		}
		// ON CONFLICT on the email: a taken email is told apart from other
		// failures without parsing the driver's error.
		res, err := tx.ExecContext(ctx, `INSERT INTO users (`+userColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (email) DO NOTHING`,
			u.ID, u.Account, u.Email, u.Name, u.Role, u.Password, u.TOTPSealed, u.TOTPLastStep, boolInt(u.Disabled),
			u.FailedLogins, locked, us(u.CreatedAt), last)
		if err != nil {
			return fmt.Errorf("create user: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("create user: email %s is taken: %w", u.Email, ErrConflict)
		}
		return nil
	})
}

// User reads one user of the account.
func (s *SQL) User(ctx context.Context, account, id string) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE account_id = ? AND id = ?`, account, id))
	if err != nil {
		return User{}, notFound("user "+id, err)
	}
	return u, nil
}

// UserByEmail finds a user of any account by email, for login.
func (s *SQL) UserByEmail(ctx context.Context, email string) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE email = ?`, normEmail(email)))
	if err != nil {
		return User{}, notFound("user", err)
	}
	return u, nil
}

// Users lists the account's users by email.
func (s *SQL) Users(ctx context.Context, account string) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userColumns+` FROM users WHERE account_id = ? ORDER BY email`, account)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	out := []User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return out, nil
}

// UpdateUser changes what the patch sets. A new TOTP secret (or none)
// restarts the step counter: the steps of the old secret say nothing of
// the new one's codes.
func (s *SQL) UpdateUser(ctx context.Context, account, id string, p UserPatch) (User, error) {
	var sets []string
	var args []any
	if p.Name != nil {
		sets, args = append(sets, "name = ?"), append(args, *p.Name)
	}
	if p.Role != nil {
		sets, args = append(sets, "role = ?"), append(args, *p.Role)
	}
	if p.Password != nil {
		if *p.Password == "" {
			return User{}, errors.New("update user: empty password hash")
		}
		sets, args = append(sets, "password = ?"), append(args, *p.Password)
	}
	if p.TOTPSealed != nil {
		var sealed any // NULL: no second factor
		if len(*p.TOTPSealed) > 0 {
			sealed = *p.TOTPSealed
		}
		sets, args = append(sets, "totp_sealed = ?", "totp_last_step = 0"), append(args, sealed)
	}
	if p.Disabled != nil {
		sets, args = append(sets, "disabled = ?"), append(args, boolInt(*p.Disabled))
	}
	if len(sets) > 0 {
		res, err := s.db.ExecContext(ctx, `UPDATE users SET `+strings.Join(sets, ", ")+` WHERE account_id = ? AND id = ?`,
			append(args, account, id)...)
		if err != nil {
			return User{}, fmt.Errorf("update user: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return User{}, fmt.Errorf("user %s: %w", id, ErrNotFound)
		}
	}
	return s.User(ctx, account, id)
}

// RecordLogin notes a login attempt in one statement, so that concurrent
// attempts each count.
func (s *SQL) RecordLogin(ctx context.Context, id string, ok bool, at time.Time, lockedUntil time.Time) (User, error) {
	var res sql.Result
	var err error
	if ok {
		res, err = s.db.ExecContext(ctx, `UPDATE users SET failed_logins = 0, locked_until = NULL, last_login = ? WHERE id = ?`,
			us(at), id)
	} else {
		var lock any // NULL: no lock; a lock already set stays
		if !lockedUntil.IsZero() {
			lock = us(lockedUntil)
		}
		res, err = s.db.ExecContext(ctx, `UPDATE users SET failed_logins = failed_logins + 1,
			locked_until = COALESCE(?, locked_until) WHERE id = ?`, lock, id)
	}
	if err != nil {
		return User{}, fmt.Errorf("record login: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return User{}, fmt.Errorf("user %s: %w", id, ErrNotFound)
	}
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
	if err != nil {
		return User{}, notFound("user "+id, err)
	}
	return u, nil
}

// UseTOTPStep records an accepted code's time step; one statement, so two
// requests with the same code cannot both pass.
func (s *SQL) UseTOTPStep(ctx context.Context, id string, step int64) error {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET totp_last_step = ? WHERE id = ? AND totp_last_step < ?`, step, id, step)
	if err != nil {
		return fmt.Errorf("use totp step: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var k int
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE id = ?`, id).Scan(&k); err != nil {
			return fmt.Errorf("use totp step: %w", err)
		}
		if k == 0 {
			return fmt.Errorf("user %s: %w", id, ErrNotFound)
		}
		return fmt.Errorf("totp step %d already used: %w", step, ErrConflict)
	}
	return nil
}

// ---- sessions

// CreateSession stores a session (by the hash of its cookie).
func (s *SQL) CreateSession(ctx context.Context, se Session) error {
	if len(se.IDHash) == 0 || se.UserID == "" || se.Stage == "" {
		return errors.New("create session: ID hash, user and stage are required")
	}
	if se.CreatedAt.IsZero() {
		se.CreatedAt = s.now()
	}
	if se.LastSeen.IsZero() {
		se.LastSeen = se.CreatedAt
	}
	// The account is the user's: a session never crosses accounts (an
	// empty Account takes the user's).
	res, err := s.db.ExecContext(ctx, `INSERT INTO sessions (id_hash, user_id, account_id, stage, csrf, remote, user_agent,
		created_at, last_seen, expires) SELECT ?, id, account_id, ?, ?, ?, ?, ?, ?, ? FROM users WHERE id = ? AND (? = '' OR account_id = ?)`,
		se.IDHash, se.Stage, se.CSRF, se.Remote, se.UserAgent, us(se.CreatedAt), us(se.LastSeen), us(se.Expires), se.UserID,
		se.Account, se.Account)
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("create session: user %s: %w", se.UserID, ErrNotFound)
	}
	return nil
}

// Session finds a session by its hash; expiry is the caller's to check.
func (s *SQL) Session(ctx context.Context, idHash []byte) (Session, error) {
	var se Session
	var created, last, expires int64
	err := s.db.QueryRowContext(ctx, `SELECT id_hash, user_id, account_id, stage, csrf, remote, user_agent, created_at,
		last_seen, expires FROM sessions WHERE id_hash = ?`, idHash).
		Scan(&se.IDHash, &se.UserID, &se.Account, &se.Stage, &se.CSRF, &se.Remote, &se.UserAgent, &created, &last, &expires)
	if err != nil {
		return Session{}, notFound("session", err)
	}
	se.CreatedAt, se.LastSeen, se.Expires = fromUS(created), fromUS(last), fromUS(expires)
	return se, nil
}

// UpdateSession moves a session on (stage, last seen, maybe expiry).
func (s *SQL) UpdateSession(ctx context.Context, idHash []byte, stage string, lastSeen, expires time.Time) error {
	if stage == "" {
		return errors.New("update session: empty stage")
	}
	var exp any // NULL: keep the expiry
	if !expires.IsZero() {
		exp = us(expires)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE sessions SET stage = ?, last_seen = ?, expires = COALESCE(?, expires) WHERE id_hash = ?`,
		stage, us(lastSeen), exp, idHash)
	if err != nil {
		return fmt.Errorf("update session: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("session: %w", ErrNotFound)
	}
	return nil
}

// DeleteSession ends a session (logout); ending one already gone is no
// error.
func (s *SQL) DeleteSession(ctx context.Context, idHash []byte) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, idHash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteUserSessions ends every session of a user.
func (s *SQL) DeleteUserSessions(ctx context.Context, userID string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ?`, userID); err != nil {
		return fmt.Errorf("delete user sessions: %w", err)
	}
	return nil
}

// ---- audit

// AppendAudit appends an entry (its ID is the database's).
func (s *SQL) AppendAudit(ctx context.Context, e AuditEntry) error {
	if e.Account == "" || e.ActorKind == "" || e.Action == "" {
		return errors.New("append audit: account, actor kind and action are required")
	}
	if e.At.IsZero() {
		e.At = s.now()
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO audit_log (account_id, at, actor_kind, actor, action, object, detail, remote)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, e.Account, us(e.At), e.ActorKind, e.Actor, e.Action, e.Object, e.Detail, e.Remote); err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return nil
}

// Audit lists the account's entries newest first, by pages.
func (s *SQL) Audit(ctx context.Context, account string, f AuditFilter) ([]AuditEntry, int64, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultPageSize
	}
	limit = min(limit, MaxPageSize)
	where := []string{"account_id = ?"}
	args := []any{account}
	if f.Before > 0 {
		where, args = append(where, "id < ?"), append(args, f.Before)
	}
	if f.Actor != "" {
		where, args = append(where, "actor = ?"), append(args, f.Actor)
	}
	if f.Action != "" {
		// A prefix by substr, not LIKE: nothing to escape, and
		// case-sensitive on both SQLite and PostgreSQL (actions are ASCII).
		where, args = append(where, "substr(action, 1, ?) = ?"), append(args, len(f.Action), f.Action)
	}
	if f.Object != "" {
		where, args = append(where, "object = ?"), append(args, f.Object)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, account_id, at, actor_kind, actor, action, object, detail, remote FROM audit_log
		WHERE `+strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT ?`, append(args, limit+1)...)
	if err != nil {
		return nil, 0, fmt.Errorf("audit: %w", err)
	}
	defer rows.Close()
	out := []AuditEntry{}
	for rows.Next() {
		var e AuditEntry
		var at int64
		if err := rows.Scan(&e.ID, &e.Account, &at, &e.ActorKind, &e.Actor, &e.Action, &e.Object, &e.Detail, &e.Remote); err != nil {
			return nil, 0, fmt.Errorf("audit: %w", err)
		}
		e.At = fromUS(at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("audit: %w", err)
	}
	var next int64
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}
