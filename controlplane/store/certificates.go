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
	if locFiltered(f) {
		// IN rather than a correlated EXISTS: the matching locations are
		// read once (a scan of locations_cert for a source) instead of
		// one lookup per certificate, which took 200 ms at 100,000.
		lw, largs := locationWhere(account, f)
		where = append(where, `c.fingerprint IN (SELECT l.fingerprint FROM locations l WHERE `+lw+`)`)
		args = append(args, largs...)
	}
	return strings.Join(where, " AND "), args, nil
}

// sortIndexes are the orders' indexes (migration 00003).
var sortIndexes = map[string]string{
	SortNotAfter:   "certificates_not_after",
	SortCommonName: "certificates_common_name",
	SortIssuer:     "certificates_issuer",
	SortFirstSeen:  "certificates_first_seen",
}

// certFiltered: the search filters on a certificate's substrings or type.
func certFiltered(f CertificateFilter) bool { return f.Q != "" || f.Issuer != "" || f.Type != "" }

// locFiltered: the search filters on the certificates' locations.
func locFiltered(f CertificateFilter) bool {
	return f.Source != "" || f.Location != "" || f.BotID != ""
}

// locationWhere builds the WHERE over locations l of a search's location
// filters.
func locationWhere(account string, f CertificateFilter) (string, []any) {
	where := []string{"l.account_id = ?"}
	args := []any{account}
	if f.Source != "" {
		where, args = append(where, "l.source = ?"), append(args, f.Source)
	}
	if f.Location != "" {
		where, args = append(where, `LOWER(l.uri) LIKE ? ESCAPE '\'`), append(args, likePattern(f.Location))
	}
	if f.BotID != "" {
		where, args = append(where, "l.bot_id = ?"), append(args, f.BotID)
	}
	return strings.Join(where, " AND "), args
}

// certificatesFrom names the certificates table of a search, with the
// index SQLite must read where its statistics lead it astray (they cannot
// tell how selective a LIKE '%x%' or a location filter is). A substring
// search (q, issuer) or a type filter must look at every certificate of
// the account: it reads the narrow index certificates_filter (migration
// 00004), which holds every column a search filters or sorts on; left to
// itself SQLite walked an order's index and looked up each row, 20 times
// slower. A search by location alone in an order walks that order's index,
// checking each fingerprint against the matching locations, and stops
// after the page; left to itself SQLite looked up every match and sorted
// them (100 ms for a source that 20,000 certificates are in). Other
// searches are left to the planner. (INDEXED BY is SQLite's: the
// PostgreSQL store drops it.)
func certificatesFrom(f CertificateFilter) string {
	switch {
	case certFiltered(f):
		return "certificates c INDEXED BY certificates_filter"
	case locFiltered(f) && sortIndexes[f.Sort] != "":
		return "certificates c INDEXED BY " + sortIndexes[f.Sort]
	}
	return "certificates c"
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
	// A deferred join: the page's fingerprints are found (and the offset
	// skipped) in an index alone, the order's or certificates_filter, then
	// only the page's rows are read; skipping 50,000 rows of the table
	// itself took 200-300 ms, its index about 3.
	args = append(args, limit+1, f.Offset, account)
	rows, err := s.db.QueryContext(ctx, `SELECT `+certColumns+` FROM (SELECT c.fingerprint FROM `+certificatesFrom(f)+
		` WHERE `+where+` ORDER BY `+order+` LIMIT ? OFFSET ?) p JOIN certificates c ON c.account_id = ? AND c.fingerprint = p.fingerprint`+
		` ORDER BY `+order, args...)
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
	unsorted := f // a count's plan is not its page's order's
	unsorted.Sort = SortFingerprint
	query := `SELECT COUNT(*) FROM ` + certificatesFrom(unsorted) + ` WHERE ` + where
	if locFiltered(f) && !certFiltered(f) && f.ExpiresBefore.IsZero() && f.ExpiresAfter.IsZero() {
		// Only locations filtered: count the distinct certificates of the
		// matching locations (every location's certificate is stored:
		// ingestion writes the certificate first, and neither is ever
		// deleted) in one pass over the locations instead of looking up
		// each certificate (75 ms at 20,000 matches).
		lw, largs := locationWhere(account, f)
		query, args = `SELECT COUNT(DISTINCT l.fingerprint) FROM locations l WHERE `+lw, largs
	}
	var n int
	if err := s.db.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
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
	sources, err := queryStrings(ctx, s.db, `SELECT DISTINCT source FROM locations WHERE account_id = ? AND source <> '' ORDER BY source`, account)
	if err != nil {
		return nil, nil, fmt.Errorf("facet values: %w", err)
	}
	return issuers, sources, nil
}
