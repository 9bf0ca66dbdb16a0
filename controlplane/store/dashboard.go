package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emsign/bot/protocol"
)

// Keys lists the account's keys, newest first.
func (s *SQL) Keys(ctx context.Context, account string, limit int) ([]Key, error) {
	return s.FoundKeys(ctx, account, KeyFilter{Limit: limit})
}

// FoundKeys lists the keys scans found, newest first: with a location,
// the keys at that URI and the keys found with the certificate present
// there (a PEM key file beside its certificate file).
func (s *SQL) FoundKeys(ctx context.Context, account string, f KeyFilter) ([]Key, error) {
	where, args := []string{"account_id = ?"}, []any{account}
	if f.BotID != "" {
		where, args = append(where, "bot_id = ?"), append(args, f.BotID)
	}
	if f.Location != "" {
		sub, subArgs := "SELECT l.fingerprint FROM locations l WHERE l.account_id = ? AND l.uri = ? AND l.present = 1", []any{account, f.Location}
		if f.BotID != "" {
			sub, subArgs = sub+" AND l.bot_id = ?", append(subArgs, f.BotID)
		}
		where = append(where, "(uri = ? OR (fingerprint <> '' AND fingerprint IN ("+sub+")))")
		args = append(append(args, f.Location), subArgs...)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultPageSize
	}
	rows, err := s.db.QueryContext(ctx, `SELECT uri, bot_id, source, class, algorithm, bits, label, key_id, extractable, sensitive,
		usage, fingerprint, first_seen, last_seen, present FROM keys WHERE `+strings.Join(where, " AND ")+`
		ORDER BY last_seen DESC, id DESC LIMIT ? OFFSET ?`, append(args, limit, max(f.Offset, 0))...)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	defer rows.Close()
	out := []Key{}
	for rows.Next() {
		var k Key
		var extractable, sensitive sql.NullInt64
		var usage string
		var first, last int64
		var present int
		if err := rows.Scan(&k.URI, &k.BotID, &k.Source, &k.Class, &k.Algorithm, &k.Bits, &k.Label, &k.KeyID, &extractable,
			&sensitive, &usage, &k.Fingerprint, &first, &last, &present); err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		if err := json.Unmarshal([]byte(usage), &k.Usage); err != nil {
			return nil, fmt.Errorf("key %s usage: %w", k.URI, err)
		}
		k.Extractable, k.Sensitive = nullIntBool(extractable), nullIntBool(sensitive)
		k.FirstSeen, k.LastSeen, k.Present = fromUS(first), fromUS(last), present == 1
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return out, nil
}

func nullIntBool(v sql.NullInt64) *bool {
	if !v.Valid {
		return nil
	}
	b := v.Int64 == 1
	return &b
}

// Bounds of the expiry buckets, in days left.
var expiringDays = []int{7, 30, 60, 90}

// onlineWithin is how recently a bot must have called to count as online.
const onlineWithin = 5 * time.Minute

// topIssuers is how many issuers the chart names before "Other".
const topIssuers = 10

// Dashboard computes the account's numbers from its inventory and its
// orders (dashOrders). Counts of what later features bring (vulnerability
// checks, email templates, keys in templates) stay
// zero: there is nothing to count them from yet, and the dashboard never
// estimates. Enabled CSR templates, provisioning templates and key
// profiles are counted (dashTemplates, templates.go).
func (s *SQL) Dashboard(ctx context.Context, account string, now time.Time) (Dashboard, error) {
	var d Dashboard
	// One read transaction: every number comes from the same snapshot.
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return Dashboard{}, fmt.Errorf("dashboard: %w", err)
	}
	defer tx.Rollback()
	for _, step := range []func(context.Context, *sql.Tx, string, time.Time, *Dashboard) error{
		dashCertificates, dashSources, dashEndpoints, dashKeys, dashBots, dashTemplates, dashOrders,
	} {
		if err := step(ctx, tx, account, now, &d); err != nil {
			return Dashboard{}, fmt.Errorf("dashboard: %w", err)
		}
	}
	return d, nil
}

// dashCertificates counts certificates in one pass over the covering
// index certificates_dashboard: by issuer and key for the present ones,
// each group's expiry buckets added up in SQL; the gone ones only counted.
func dashCertificates(ctx context.Context, tx *sql.Tx, account string, now time.Time, d *Dashboard) error {
	n := us(now)
	day := int64(24 * time.Hour / time.Microsecond)
	args := []any{n}
	for _, days := range expiringDays {
		args = append(args, n+int64(days)*day)
	}
	args = append(args, account)
	rows, err := tx.QueryContext(ctx, `SELECT issuer, key_algorithm, key_bits, COUNT(*),
			SUM(CASE WHEN not_after <= ? THEN 1 ELSE 0 END), SUM(CASE WHEN not_after <= ? THEN 1 ELSE 0 END),
			SUM(CASE WHEN not_after <= ? THEN 1 ELSE 0 END), SUM(CASE WHEN not_after <= ? THEN 1 ELSE 0 END),
			SUM(CASE WHEN not_after <= ? THEN 1 ELSE 0 END)
		FROM certificates WHERE account_id = ? AND present = 1 GROUP BY issuer, key_algorithm, key_bits`, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	issuers := map[string]int{}
	keys := map[string]int{}
	e := &d.Expiring
	for rows.Next() {
		var issuer, alg string
		var bits, count int
		var le [5]int // expired by now, within 7, 30, 60, 90 days (cumulative)
		if err := rows.Scan(&issuer, &alg, &bits, &count, &le[0], &le[1], &le[2], &le[3], &le[4]); err != nil {
			return err
		}
		d.Certificates.Discovered += count
		issuers[issuer] += count
		keys[keyLabel(alg, bits)] += count
		e.Expired += le[0]
		e.Within7 += le[1] - le[0]
		e.Within30 += le[2] - le[1]
		e.Within60 += le[3] - le[2]
		e.Within90 += le[4] - le[3]
		e.Later += count - le[4]
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM certificates WHERE account_id = ? AND present = 0`, account).
		Scan(&d.Certificates.Gone); err != nil {
		return err
	}
	d.Certificates.Expired = e.Expired
	// dashOrders takes the configured ones off.
	d.Certificates.NotConfigured = d.Certificates.Discovered
	d.ByIssuer = buckets(issuers, topIssuers)
	d.ByKey = buckets(keys, 0)
	return nil
}

// keyLabel names a key for the chart: "RSA 2048", "ECDSA 256", "Ed25519"
// (whose size says nothing more).
func keyLabel(alg string, bits int) string {
	if bits <= 0 || alg == "Ed25519" || alg == "Ed448" {
		return alg
	}
	return alg + " " + strconv.Itoa(bits)
}

// buckets sorts counts largest first (ties by label); past top (when not
// zero) the rest are added up as "Other".
func buckets(counts map[string]int, top int) []Bucket {
	out := make([]Bucket, 0, len(counts))
	for l, c := range counts {
		out = append(out, Bucket{Label: l, Count: c})
	}
	slices.SortFunc(out, func(a, b Bucket) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		if a.Label < b.Label {
			return -1
		}
		if a.Label > b.Label {
			return 1
		}
		return 0
	})
	if top > 0 && len(out) > top {
		other := 0
		for _, b := range out[top:] {
			other += b.Count
		}
		out = append(out[:top], Bucket{Label: "Other", Count: other})
	}
	return out
}

// dashSources: a certificate counts once in each source it is present in,
// from the certificates' sources column (see sourceSet): one pass over the
// index certificates_sources, grouped in its order, a row per combination
// of sources. Counting from the locations meant grouping every present
// location by (fingerprint, source): 60 ms at 100,000 certificates.
func dashSources(ctx context.Context, tx *sql.Tx, account string, _ time.Time, d *Dashboard) error {
	rows, err := tx.QueryContext(ctx, `SELECT sources, COUNT(*) FROM certificates WHERE account_id = ? AND sources > ''
		GROUP BY sources`, account)
	if err != nil {
		return err
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var sources string
		var n int
		if err := rows.Scan(&sources, &n); err != nil {
			return err
		}
		for src := range parseSources(sources) {
			counts[src] += n
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	d.BySource = buckets(counts, 0)
	return nil
}

// dashEndpoints: a protected endpoint is a TLS location (of a bot) where a
// certificate is present; an unprotected one is a TLS place the latest
// complete scan of its bot reached without getting a certificate (a
// handshake error) and where that bot has no certificate present.
func dashEndpoints(ctx context.Context, tx *sql.Tx, account string, _ time.Time, d *Dashboard) error {
	err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM locations WHERE account_id = ? AND present = 1 AND source = ?`,
		account, protocol.SchemeTLS).Scan(&d.Endpoints.Protected)
	if err != nil {
		return err
	}
	err = tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT DISTINCT s.bot_id, e.uri FROM scans s JOIN scan_errors e ON e.scan_id = s.id
		WHERE s.account_id = ? AND s.complete = 1 AND e.source = ?
			AND s.id = (SELECT s2.id FROM scans s2 WHERE s2.account_id = s.account_id AND s2.bot_id = s.bot_id AND s2.complete = 1
				ORDER BY s2.finished DESC, s2.id DESC LIMIT 1)
			AND NOT EXISTS (SELECT 1 FROM locations l WHERE l.account_id = s.account_id AND l.bot_id = s.bot_id AND l.uri = e.uri
				AND l.present = 1 AND l.source = ?)) u`,
		account, protocol.SchemeTLS, protocol.SchemeTLS).Scan(&d.Endpoints.Unprotected)
	if err != nil {
		return err
	}
	d.Endpoints.Scanned = d.Endpoints.Protected + d.Endpoints.Unprotected
	return nil
}

// dashKeys: present keys; a key pair counts once (its private key, seen
// as its own object and with its certificate, shares the pair column);
// public key objects are not counted.
func dashKeys(ctx context.Context, tx *sql.Tx, account string, _ time.Time, d *Dashboard) error {
	err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM keys WHERE account_id = ? AND present = 1 AND class = ?`,
		account, protocol.KeyClassSecret).Scan(&d.Keys.Symmetric)
	if err != nil {
		return err
	}
	err = tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT DISTINCT bot_id, pair FROM keys
		WHERE account_id = ? AND present = 1 AND class IN (?, '')) p`, account, protocol.KeyClassPrivate).Scan(&d.Keys.Asymmetric)
	if err != nil {
		return err
	}
	d.Keys.Total = d.Keys.Symmetric + d.Keys.Asymmetric
	return nil
}

func dashBots(ctx context.Context, tx *sql.Tx, account string, now time.Time, d *Dashboard) error {
	rows, err := tx.QueryContext(ctx, `SELECT status, last_seen FROM bots WHERE account_id = ?`, account)
	if err != nil {
		return err
	}
	defer rows.Close()
	online := us(now.Add(-onlineWithin))
	for rows.Next() {
		var status string
		var last sql.NullInt64
		if err := rows.Scan(&status, &last); err != nil {
			return err
		}
		b := &d.Bots
		b.Total++
		switch status {
		case protocol.BotActive:
			b.Active++
		case protocol.BotActivationPending:
			b.Pending++
		case protocol.BotSuspended:
			b.Suspended++
		case protocol.BotInactive:
			b.Inactive++
		}
		if last.Valid && last.Int64 >= online && status != protocol.BotInactive {
			b.Online++
		}
	}
	return rows.Err()
}

// dashOrders fills the provisioning counts (S4, S5) from the orders, by
// status: Initiated counts initiated and ordering orders, Deployed every
// order that deployed (deployed, rotated, re-keyed), the others their own
// status; Keys.Rotated the rotated and re-keyed ones. Configured counts
// the present certificates that an order replaced or issued (each once);
// NotConfigured the other present ones. Templates.CSRs counts the orders
// that got a CSR (the partial index orders_csr); Templates.Keystores the
// orders that wrote a JKS or PKCS#12 keystore and got it deployed
// (deployed, rotated, re-keyed: the partial index orders_keystores).
func dashOrders(ctx context.Context, tx *sql.Tx, account string, _ time.Time, d *Dashboard) error {
	counts, err := countBy(ctx, tx, `SELECT status, COUNT(*) FROM orders WHERE account_id = ? GROUP BY status`, account)
	if err != nil {
		return err
	}
	c := &d.Certificates
	c.Initiated = counts[OrderInitiated] + counts[OrderOrdering]
	c.Issued = counts[OrderIssued]
	c.Deployed = counts[OrderDeployed] + counts[OrderRotated] + counts[OrderRekeyed]
	c.Revoked = counts[OrderRevoked]
	c.Rotated = counts[OrderRotated]
	c.Rekeyed = counts[OrderRekeyed]
	c.Suspended = counts[OrderSuspended]
	d.Keys.Rotated = counts[OrderRotated] + counts[OrderRekeyed]
	if len(counts) == 0 {
		return nil
	}
	// From the orders' side (both fingerprint indexes), so that the cost
	// follows the number of orders, not of certificates.
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM (
			SELECT fingerprint AS fp FROM orders WHERE account_id = ? AND fingerprint <> ''
			UNION SELECT new_fingerprint FROM orders WHERE account_id = ? AND new_fingerprint <> '') o
		JOIN certificates c ON c.account_id = ? AND c.fingerprint = o.fp AND c.present = 1`,
		account, account, account).Scan(&c.Configured); err != nil {
		return err
	}
	c.NotConfigured = c.Discovered - c.Configured
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders WHERE account_id = ? AND csr_pem <> ''`, account).
		Scan(&d.Templates.CSRs); err != nil {
		return err
	}
	// The kinds are literals (protocol.DeployJKS, DeployPKCS12), as in the
	// partial index: SQLite uses it only when the query says the same.
	return tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders WHERE account_id = ? AND deploy_kind IN ('jks', 'pkcs12')
		AND status IN (?, ?, ?)`, account, OrderDeployed, OrderRotated, OrderRekeyed).Scan(&d.Templates.Keystores)
}
