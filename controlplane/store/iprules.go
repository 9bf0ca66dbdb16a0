package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ---- IP restrictions (A4)

// CreateIPRule stores a rule of r.Account; the ID and (when zero) the
// creation time are set here. The range is not checked: controlplane/iprules
// does that before.
func (s *SQL) CreateIPRule(ctx context.Context, r IPRule) (IPRule, error) {
	if r.Account == "" || r.StartIP == "" || r.EndIP == "" {
		return IPRule{}, errors.New("create ip rule: account, start and end are required")
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = s.now()
	}
	r.CreatedAt = fromUS(us(r.CreatedAt))
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM accounts WHERE id = ?`, r.Account).Scan(&n); err != nil {
			return fmt.Errorf("create ip rule: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("create ip rule: account %s: %w", r.Account, ErrNotFound)
		}
		if r.UserID != "" {
			// A rule for a user of another account would never apply and
			// would show a stranger's ID.
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE account_id = ? AND id = ?`,
				r.Account, r.UserID).Scan(&n); err != nil {
				return fmt.Errorf("create ip rule: %w", err)
			}
			if n == 0 {
				return fmt.Errorf("create ip rule: user %s: %w", r.UserID, ErrNotFound)
			}
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO ip_rules (account_id, user_id, start_ip, end_ip, description, enabled,
			created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Account, r.UserID, r.StartIP, r.EndIP, r.Description, boolInt(r.Enabled), us(r.CreatedAt), r.CreatedBy)
		if err != nil {
			return fmt.Errorf("create ip rule: %w", err)
		}
		if r.ID, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("create ip rule: %w", err)
		}
		return nil
	})
	if err != nil {
		return IPRule{}, err
	}
	return r, nil
}

// IPRules lists the account's rules, oldest first.
func (s *SQL) IPRules(ctx context.Context, account string) ([]IPRule, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, account_id, user_id, start_ip, end_ip, description, enabled, created_at,
		created_by FROM ip_rules WHERE account_id = ? ORDER BY id`, account)
	if err != nil {
		return nil, fmt.Errorf("list ip rules: %w", err)
	}
	defer rows.Close()
	out := []IPRule{}
	for rows.Next() {
		var r IPRule
		var enabled int
		var created int64
		if err := rows.Scan(&r.ID, &r.Account, &r.UserID, &r.StartIP, &r.EndIP, &r.Description, &enabled, &created,
			&r.CreatedBy); err != nil {
			return nil, fmt.Errorf("list ip rules: %w", err)
		}
		r.Enabled = enabled == 1
		r.CreatedAt = fromUS(created)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list ip rules: %w", err)
	}
	return out, nil
}

// SetIPRuleEnabled enables or disables one of the account's rules.
func (s *SQL) SetIPRuleEnabled(ctx context.Context, account string, id int64, enabled bool) error {
	res, err := s.db.ExecContext(ctx, `UPDATE ip_rules SET enabled = ? WHERE account_id = ? AND id = ?`,
		boolInt(enabled), account, id)
	if err != nil {
		return fmt.Errorf("set ip rule enabled: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("ip rule %d: %w", id, ErrNotFound)
	}
	return nil
}

// DeleteIPRule deletes one of the account's rules.
func (s *SQL) DeleteIPRule(ctx context.Context, account string, id int64) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM ip_rules WHERE account_id = ? AND id = ?`, account, id)
	if err != nil {
		return fmt.Errorf("delete ip rule: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("ip rule %d: %w", id, ErrNotFound)
	}
	return nil
}
