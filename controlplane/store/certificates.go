package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// sortColumns maps the certificate orders to their columns: a whitelist,
// the only way a sort reaches the SQL text. Each has an index
// (account_id, column) whose entries end with the primary key, so that the
// order with ties broken by fingerprint is the index's own.
var sortColumns = map[string]string{
	SortFingerprint: "",
	SortNotAfter:    "c.not_after",
	SortCommonName:  "c.common_name",
	SortIssuer:      "c.issuer",
	SortFirstSeen:   "c.first_seen",
}

// certificateWhere builds the WHERE of a search (the cursor aside): the
// same for a page and for its count.
func certificateWhere(account string, f CertificateFilter) (string, []any, error) {
	where := []string{"c.account_id = ?"}
	args := []any{account}
	if f.Q != "" {
		where, args = append(where, `c.search LIKE ? ESCAPE '\'`), append(args, likePattern(f.Q))
	}
	if f.Issuer != "" {
		where, args = append(where, `LOWER(c.issuer) LIKE ? ESCAPE '\'`), append(args, likePattern(f.Issuer))
	}
	if !f.ExpiresBefore.IsZero() {
		where, args = append(where, "c.not_after < ?"), append(args, us(f.ExpiresBefore))
	}
	if !f.ExpiresAfter.IsZero() {
		where, args = append(where, "c.not_after > ?"), append(args, us(f.ExpiresAfter))
	}
	switch f.Type {
	case "":
	case "ca":
		where = append(where, "c.is_ca = 1")
	case "leaf":
		where = append(where, "c.is_ca = 0")
	default:
		return "", nil, fmt.Errorf("certificate type %q: want ca, leaf or nothing", f.Type)
	}
	var loc []string
	if f.Source != "" {
		loc, args = append(loc, "l.source = ?"), append(args, f.Source)
	}
	if f.Location != "" {
		loc, args = append(loc, `LOWER(l.uri) LIKE ? ESCAPE '\'`), append(args, likePattern(f.Location))
	}
	if f.BotID != "" {
		loc, args = append(loc, "l.bot_id = ?"), append(args, f.BotID)
	}
	if len(loc) > 0 {
		where = append(where, `EXISTS (SELECT 1 FROM locations l WHERE l.account_id = c.account_id AND l.fingerprint = c.fingerprint AND `+
			strings.Join(loc, " AND ")+`)`)
	}
	return strings.Join(where, " AND "), args, nil
}

// Certificates searches the inventory in the order asked for. The next
// cursor is given in the fingerprint order only (After works with it
// alone); other orders page by Offset, with CountCertificates for the
// number of pages.
func (s *SQL) Certificates(ctx context.Context, account string, f CertificateFilter) ([]Certificate, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultPageSize
	}
	limit = min(limit, MaxPageSize)
	col, ok := sortColumns[f.Sort]
	if !ok {
		return nil, "", fmt.Errorf("search certificates: sort %q: want %s, %s, %s or %s (or nothing: by fingerprint)",
			f.Sort, SortNotAfter, SortCommonName, SortIssuer, SortFirstSeen)
	}
	if f.After != "" && f.Sort != SortFingerprint {
		return nil, "", fmt.Errorf("search certificates: after: a cursor works only in the fingerprint order, not with sort %q: use offset", f.Sort)
	}
	if f.Offset < 0 {
		return nil, "", fmt.Errorf("search certificates: offset %d: want 0 or more", f.Offset)
	}
	where, args, err := certificateWhere(account, f)
	if err != nil {
		return nil, "", fmt.Errorf("search certificates: %w", err)
	}
	dir, cmp := "", ">"
	if f.Desc {
		dir, cmp = " DESC", "<"
	}
	if f.After != "" {
		where += " AND c.fingerprint " + cmp + " ?"
		args = append(args, strings.ToLower(f.After))
	}
	// Both terms in the same direction: SQLite then walks the sort's index
	// (forwards or backwards) and stops after the page instead of sorting
	// every match.
	order := "c.fingerprint" + dir
	if col != "" {
		order = col + dir + ", " + order
	}
	args = append(args, limit+1, f.Offset)
	rows, err := s.db.QueryContext(ctx, `SELECT `+certColumns+` FROM certificates c WHERE `+where+
		` ORDER BY `+order+` LIMIT ? OFFSET ?`, args...)
	if err != nil {
		return nil, "", fmt.Errorf("search certificates: %w", err)
	}
	certs := []Certificate{}
	for rows.Next() {
		c, err := scanCert(rows)
		if err != nil {
			rows.Close()
			return nil, "", fmt.Errorf("search certificates: %w", err)
		}
		certs = append(certs, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("search certificates: %w", err)
	}
	next := ""
	if len(certs) > limit {
		certs = certs[:limit]
		if f.Sort == SortFingerprint {
			next = certs[limit-1].Fingerprint
		}
	}
	if err := s.attachLocations(ctx, account, certs); err != nil {
		return nil, "", err
	}
	return certs, next, nil
}

// CountCertificates counts the matches of a search over all its pages.
func (s *SQL) CountCertificates(ctx context.Context, account string, f CertificateFilter) (int, error) {
	where, args, err := certificateWhere(account, f)
	if err != nil {
		return 0, fmt.Errorf("count certificates: %w", err)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM certificates c WHERE `+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count certificates: %w", err)
	}
	return n, nil
}

// maxFacetIssuers bounds the issuers offered by the search form.
const maxFacetIssuers = 200

// FacetValues lists the account's distinct issuers (alphabetically, at
// most 200) and location sources. The issuers skip from one to the next
// in the index certificates_issuer (a seek each) rather than reading every
// certificate.
func (s *SQL) FacetValues(ctx context.Context, account string) ([]string, []string, error) {
	issuers := []string{}
	for len(issuers) < maxFacetIssuers {
		var v sql.NullString
		var err error
		if len(issuers) == 0 {
			err = s.db.QueryRowContext(ctx, `SELECT MIN(issuer) FROM certificates WHERE account_id = ?`, account).Scan(&v)
		} else {
			err = s.db.QueryRowContext(ctx, `SELECT MIN(issuer) FROM certificates WHERE account_id = ? AND issuer > ?`,
				account, issuers[len(issuers)-1]).Scan(&v)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("facet values: %w", err)
		}
		if !v.Valid {
			break
		}
		issuers = append(issuers, v.String)
	}
	sources, err := s.strings(ctx, `SELECT DISTINCT source FROM locations WHERE account_id = ? AND source <> '' ORDER BY source`, account)
	if err != nil {
		return nil, nil, fmt.Errorf("facet values: %w", err)
	}
	return issuers, sources, nil
}

func (s *SQL) strings(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
