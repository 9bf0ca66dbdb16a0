package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emsign/bot/protocol"
)

// inChunk bounds the parameters of one IN (...) list.
const inChunk = 500

// Ingest stores a batch of findings in one transaction: one certificate row
// per leaf fingerprint and account, one location row per (account, bot,
// URI); error findings become scan errors and never certificates.
func (s *SQL) Ingest(ctx context.Context, account, botID, scanID string, b protocol.FindingsBatch) (bool, error) {
	if b.Seq < 1 {
		return false, fmt.Errorf("ingest: seq %d: want 1 or more", b.Seq)
	}
	now := s.now().UTC()
	duplicate := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		exists, err := scanOwned(ctx, tx, account, botID, scanID)
		if err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("scan %s: %w", scanID, ErrNotFound)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO scan_batches (scan_id, seq, findings, received_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (scan_id, seq) DO NOTHING`, scanID, b.Seq, len(b.Findings), us(now))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			duplicate = true
			return nil
		}
		return s.ingest(ctx, tx, account, botID, scanID, b.Findings, now)
	})
	if err != nil {
		return false, fmt.Errorf("ingest scan %s batch %d: %w", scanID, b.Seq, err)
	}
	return duplicate, nil
}

type observed struct {
	f           protocol.Finding
	uri         string
	fingerprint string
	seen        time.Time
}

// failed is a scan error and the attributes its finding carried.
type failed struct {
	ScanError
	attrs map[string]string
}

// attributesJSON encodes a finding's attributes for the locations table:
// '{}' when there are none (no encoding cost for the common case).
func attributesJSON(attrs map[string]string) (string, error) {
	if len(attrs) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(attrs)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func (s *SQL) ingest(ctx context.Context, tx *sql.Tx, account, botID, scanID string, findings []protocol.Finding, now time.Time) error {
	var certs, keys []observed
	var errs []failed
	fresh := map[string]int{} // fingerprint → index in certs of its first finding
	for _, f := range findings {
		seen := f.SeenAt.UTC()
		if seen.IsZero() || seen.After(now) {
			seen = now
		}
		o := observed{f: f, uri: f.Location.String(), seen: seen}
		if f.Error != "" {
			errs = append(errs, failed{ScanError{URI: o.uri, Source: f.Source, Error: f.Error, SeenAt: seen}, f.Attributes})
		}
		if len(f.Chain) == 0 || len(f.Chain[0]) == 0 {
			switch {
			case f.Key != nil:
				// A key object of its own (an HSM's key, an SSH public
				// key): a key, not a problem.
				keys = append(keys, o)
			case f.Error == "":
				errs = append(errs, failed{ScanError{URI: o.uri, Source: f.Source, Error: "finding without certificate, key or error", SeenAt: seen}, f.Attributes})
			}
			continue
		}
		o.fingerprint = protocol.Fingerprint(f.Chain[0])
		if _, ok := fresh[o.fingerprint]; !ok {
			fresh[o.fingerprint] = len(certs)
		}
		certs = append(certs, o)
	}

	// Certificates this account already has need no parsing nor insert.
	known, err := knownFingerprints(ctx, tx, account, fresh)
	if err != nil {
		return err
	}
	// The sources each certificate of the batch is found in: a new
	// certificate's sources column (it has no other location), and what a
	// known one's must include.
	batchSources := make(map[string][]string, len(fresh))
	for _, o := range certs {
		if l := batchSources[o.fingerprint]; !slices.Contains(l, o.f.Source) {
			batchSources[o.fingerprint] = append(l, o.f.Source)
		}
	}
	insCert, err := tx.PrepareContext(ctx, `INSERT INTO certificates (account_id, fingerprint, subject, common_name, sans, search,
		issuer, serial, not_before, not_after, key_algorithm, key_bits, signature_algorithm, is_ca, first_seen, sources)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (account_id, fingerprint) DO NOTHING`)
	// present: the column's default, 1: a certificate is inserted with its location.
	if err != nil {
		return err
	}
	defer insCert.Close()
	insDER, err := tx.PrepareContext(ctx, `INSERT INTO certificate_der (account_id, fingerprint, der, chain) VALUES (?, ?, ?, ?)
		ON CONFLICT (account_id, fingerprint) DO NOTHING`)
	if err != nil {
		return err
	}
	defer insDER.Close()
	bad := map[string]string{} // fingerprint → why it does not parse
	for fp, i := range fresh {
		if _, ok := known[fp]; ok {
			continue
		}
		o := certs[i]
		r := protocol.NewRecord(o.f)
		if r.NotAfter == nil {
			bad[fp] = r.Error
			continue
		}
		sans := r.SANs
		if sans == nil {
			sans = []string{}
		}
		search := strings.ToLower(r.CommonName + "\n" + strings.Join(sans, "\n"))
		if _, err := insCert.ExecContext(ctx, account, fp, r.Subject, r.CommonName, jsonText(sans), search, r.Issuer, r.Serial,
			us(*r.NotBefore), us(*r.NotAfter), r.KeyAlgorithm, r.KeyBits, r.SignatureAlgorithm, boolInt(r.IsCA), us(o.seen),
			newSourceSet(batchSources[fp]...).String()); err != nil {
			return fmt.Errorf("certificate %s: %w", fp, err)
		}
		if _, err := insDER.ExecContext(ctx, account, fp, o.f.Chain[0], encodeChain(o.f.Chain[1:])); err != nil {
			return fmt.Errorf("certificate %s: %w", fp, err)
		}
	}

	upLoc, err := tx.PrepareContext(ctx, `INSERT INTO locations (account_id, bot_id, uri, fingerprint, source, format,
		first_seen, last_seen, present, gone_at, last_scan_id, attributes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, NULL, ?, ?)
		ON CONFLICT (account_id, bot_id, uri) DO UPDATE SET
			first_seen = CASE WHEN locations.fingerprint = excluded.fingerprint THEN locations.first_seen ELSE excluded.first_seen END,
			fingerprint = excluded.fingerprint, source = excluded.source, format = excluded.format,
			last_seen = CASE WHEN locations.last_seen > excluded.last_seen THEN locations.last_seen ELSE excluded.last_seen END,
			present = 1, gone_at = NULL, last_scan_id = excluded.last_scan_id, attributes = excluded.attributes,
			replaced = CASE WHEN locations.fingerprint <> excluded.fingerprint OR locations.source <> excluded.source
				THEN locations.fingerprint ELSE locations.replaced END`)
	if err != nil {
		return err
	}
	defer upLoc.Close()
	nCerts := 0
	for _, o := range certs {
		if why, ok := bad[o.fingerprint]; ok {
			if o.f.Error == "" { // else already recorded
				errs = append(errs, failed{ScanError{URI: o.uri, Source: o.f.Source, Error: why, SeenAt: o.seen}, o.f.Attributes})
			}
			continue
		}
		attrs, err := attributesJSON(o.f.Attributes)
		if err != nil {
			return fmt.Errorf("location %s attributes: %w", o.uri, err)
		}
		if _, err := upLoc.ExecContext(ctx, account, botID, o.uri, o.fingerprint, o.f.Source, o.f.Format,
			us(o.seen), us(o.seen), scanID, attrs); err != nil {
			return fmt.Errorf("location %s: %w", o.uri, err)
		}
		nCerts++
		if o.f.Key != nil {
			// The private key stored with the certificate.
			keys = append(keys, o)
		}
	}
	// Known certificates found again (present once more), and those whose
	// place now holds another certificate (present elsewhere, or gone).
	var back []string
	for fp, k := range known {
		if !k.present {
			if _, bad := bad[fp]; !bad {
				back = append(back, fp)
			}
		}
	}
	if err := markPresent(ctx, tx, account, back); err != nil {
		return err
	}
	if err := addSources(ctx, tx, account, known, batchSources, bad); err != nil {
		return err
	}
	if err := recheckReplaced(ctx, tx, account); err != nil {
		return err
	}
	if err := upsertKeys(ctx, tx, account, botID, scanID, keys); err != nil {
		return err
	}

	if len(errs) > 0 {
		insErr, err := tx.PrepareContext(ctx, `INSERT INTO scan_errors (scan_id, uri, source, error, seen_at) VALUES (?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer insErr.Close()
		// A location that failed this time is not known to be gone: the
		// scan's completion must not close it. An error never makes a
		// location; attributes that came with it update a location that
		// already exists (an error without attributes leaves them as they
		// were: the bot could not see them, they are not known to be gone).
		keep, err := tx.PrepareContext(ctx, `UPDATE locations SET last_scan_id = ?, attributes = COALESCE(?, attributes)
			WHERE account_id = ? AND bot_id = ? AND uri = ?`)
		if err != nil {
			return err
		}
		defer keep.Close()
		// Nor is a key at a place that failed this time.
		keepKey, err := tx.PrepareContext(ctx, `UPDATE keys SET last_scan_id = ? WHERE account_id = ? AND bot_id = ? AND uri = ?`)
		if err != nil {
			return err
		}
		defer keepKey.Close()
		for _, e := range errs {
			if _, err := insErr.ExecContext(ctx, scanID, e.URI, e.Source, e.Error, us(e.SeenAt)); err != nil {
				return fmt.Errorf("scan error: %w", err)
			}
			var attrs any // NULL: keep the location's attributes
			if len(e.attrs) > 0 {
				a, err := attributesJSON(e.attrs)
				if err != nil {
					return fmt.Errorf("scan error %s attributes: %w", e.URI, err)
				}
				attrs = a
			}
			if _, err := keep.ExecContext(ctx, scanID, attrs, account, botID, e.URI); err != nil {
				return fmt.Errorf("scan error: %w", err)
			}
			if _, err := keepKey.ExecContext(ctx, scanID, account, botID, e.URI); err != nil {
				return fmt.Errorf("scan error: %w", err)
			}
		}
	}
	_, err = tx.ExecContext(ctx, `UPDATE scans SET batches = batches + 1, certificates = certificates + ?, errors = errors + ? WHERE id = ?`,
		nCerts, len(errs), scanID)
	return err
}

// upsertKeys records the keys of a batch: one row per (account, bot, URI),
// kept up to date like locations. The statement is prepared only when a
// batch has keys: most have none.
func upsertKeys(ctx context.Context, tx *sql.Tx, account, botID, scanID string, keys []observed) error {
	if len(keys) == 0 {
		return nil
	}
	up, err := tx.PrepareContext(ctx, `INSERT INTO keys (account_id, bot_id, uri, source, class, algorithm, bits, label, key_id,
		extractable, sensitive, usage, fingerprint, pair, first_seen, last_seen, present, last_scan_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
		ON CONFLICT (account_id, bot_id, uri) DO UPDATE SET
			source = excluded.source, class = excluded.class, algorithm = excluded.algorithm, bits = excluded.bits,
			label = excluded.label, key_id = excluded.key_id, extractable = excluded.extractable,
			sensitive = excluded.sensitive, usage = excluded.usage, fingerprint = excluded.fingerprint, pair = excluded.pair,
			last_seen = CASE WHEN keys.last_seen > excluded.last_seen THEN keys.last_seen ELSE excluded.last_seen END,
			present = 1, last_scan_id = excluded.last_scan_id`)
	if err != nil {
		return err
	}
	defer up.Close()
	for _, o := range keys {
		k := o.f.Key
		usage := k.Usage
		if usage == nil {
			usage = []string{}
		}
		if _, err := up.ExecContext(ctx, account, botID, o.uri, o.f.Source, k.Class, k.Algorithm, k.Bits, k.Label,
			strings.ToLower(k.ID), nullBool(k.Extractable), nullBool(k.Sensitive), jsonText(usage), o.fingerprint,
			keyPair(o.uri, k.ID), us(o.seen), us(o.seen), scanID); err != nil {
			return fmt.Errorf("key %s: %w", o.uri, err)
		}
	}
	return nil
}

func nullBool(b *bool) any {
	if b == nil {
		return nil
	}
	return boolInt(*b)
}

// keyPair names the key pair a key belongs to within its bot (the keys
// table's pair column). A PKCS#11 token shows a private key twice: as its
// own object (pkcs11:token=t;object=k;type=private;id=%01) and as the key
// of the certificate with the same CKA_ID (...;type=cert;id=%01). Both give
// the token part of the URI (its attributes but object, type, id and the
// x- ones that tell twins apart) and the ID. Any other key is its URI.
func keyPair(uri, id string) string {
	rest, ok := strings.CutPrefix(uri, protocol.SchemePKCS11+":")
	if !ok || id == "" {
		return uri
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i]
	}
	var token []string
	for _, attr := range strings.Split(rest, ";") {
		name, _, _ := strings.Cut(attr, "=")
		switch {
		case name == "object", name == "type", name == "id", strings.HasPrefix(name, "x-"):
			continue
		}
		token = append(token, attr)
	}
	return protocol.SchemePKCS11 + ":" + strings.Join(token, ";") + ";id=" + strings.ToLower(id)
}

// markPresent sets the certificates' present flag (see the certificates
// table's present column).
func markPresent(ctx context.Context, tx *sql.Tx, account string, fps []string) error {
	for len(fps) > 0 {
		n := min(len(fps), inChunk)
		args := make([]any, 0, n+1)
		args = append(args, account)
		for _, fp := range fps[:n] {
			args = append(args, fp)
		}
		fps = fps[n:]
		if _, err := tx.ExecContext(ctx, `UPDATE certificates SET present = 1 WHERE account_id = ? AND present = 0 AND fingerprint IN (`+
			placeholders(n)+`)`, args...); err != nil {
			return fmt.Errorf("certificate presence: %w", err)
		}
	}
	return nil
}

// recheckReplaced rechecks the presence of the certificates the batch
// replaced at a location (the locations' replaced column), then forgets
// them. The partial index makes the common case, none, one empty lookup.
func recheckReplaced(ctx context.Context, tx *sql.Tx, account string) error {
	replaced, err := queryStrings(ctx, tx, `SELECT DISTINCT replaced FROM locations WHERE account_id = ? AND replaced <> ''`, account)
	if err != nil {
		return fmt.Errorf("replaced certificates: %w", err)
	}
	if len(replaced) == 0 {
		return nil
	}
	if err := recomputeSources(ctx, tx, account, replaced); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE certificates SET present = 0 WHERE account_id = ? AND present = 1
		AND fingerprint IN (SELECT replaced FROM locations WHERE account_id = ? AND replaced <> '')
		AND NOT EXISTS (SELECT 1 FROM locations l WHERE l.account_id = certificates.account_id
			AND l.fingerprint = certificates.fingerprint AND l.present = 1)`, account, account)
	if err != nil {
		return fmt.Errorf("replaced certificates: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE locations SET replaced = '' WHERE account_id = ? AND replaced <> ''`, account); err != nil {
		return fmt.Errorf("replaced certificates: %w", err)
	}
	return nil
}

// knownCert is what ingestion needs of a certificate the account has.
type knownCert struct {
	present bool
	sources string // the sources column
}

// knownFingerprints tells which of the fingerprints the account already
// has, whether each is present and where.
func knownFingerprints(ctx context.Context, tx *sql.Tx, account string, fps map[string]int) (map[string]knownCert, error) {
	known := map[string]knownCert{}
	all := make([]string, 0, len(fps))
	for fp := range fps {
		all = append(all, fp)
	}
	for len(all) > 0 {
		n := min(len(all), inChunk)
		chunk := all[:n]
		all = all[n:]
		args := make([]any, 0, n+1)
		args = append(args, account)
		for _, fp := range chunk {
			args = append(args, fp)
		}
		rows, err := tx.QueryContext(ctx, `SELECT fingerprint, present, sources FROM certificates WHERE account_id = ? AND fingerprint IN (`+
			placeholders(n)+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var fp, sources string
			var present int
			if err := rows.Scan(&fp, &present, &sources); err != nil {
				rows.Close()
				return nil, err
			}
			known[fp] = knownCert{present: present == 1, sources: sources}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return known, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// encodeChain writes DER certificates each after its 4-byte length.
func encodeChain(chain [][]byte) []byte {
	if len(chain) == 0 {
		return nil
	}
	var b []byte
	for _, der := range chain {
		b = binary.BigEndian.AppendUint32(b, uint32(len(der)))
		b = append(b, der...)
	}
	return b
}

func decodeChain(b []byte) ([][]byte, error) {
	var chain [][]byte
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, errors.New("chain: truncated")
		}
		n := binary.BigEndian.Uint32(b)
		b = b[4:]
		if uint32(len(b)) < n {
			return nil, errors.New("chain: truncated")
		}
		chain = append(chain, b[:n])
		b = b[n:]
	}
	return chain, nil
}

// ---- certificates

const certColumns = `c.fingerprint, c.subject, c.common_name, c.sans, c.issuer, c.serial, c.not_before, c.not_after,
	c.key_algorithm, c.key_bits, c.signature_algorithm, c.is_ca, c.first_seen`

func scanCert(r scanner) (Certificate, error) {
	var c Certificate
	var sans string
	var nb, na, first int64
	var isCA int
	if err := r.Scan(&c.Fingerprint, &c.Subject, &c.CommonName, &sans, &c.Issuer, &c.Serial, &nb, &na, &c.KeyAlgorithm,
		&c.KeyBits, &c.SignatureAlgorithm, &isCA, &first); err != nil {
		return Certificate{}, err
	}
	if err := json.Unmarshal([]byte(sans), &c.SANs); err != nil {
		return Certificate{}, fmt.Errorf("certificate %s sans: %w", c.Fingerprint, err)
	}
	c.NotBefore, c.NotAfter, c.FirstSeen = fromUS(nb), fromUS(na), fromUS(first)
	c.IsCA = isCA == 1
	c.Locations = []Location{}
	return c, nil
}

// likePattern makes a case-insensitive substring pattern (ESCAPE '\').
func likePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(strings.ToLower(s)) + "%"
}

func (s *SQL) attachLocations(ctx context.Context, account string, certs []Certificate) error {
	idx := map[string]int{}
	for i, c := range certs {
		idx[c.Fingerprint] = i
	}
	for start := 0; start < len(certs); start += inChunk {
		chunk := certs[start:min(len(certs), start+inChunk)]
		args := []any{account}
		for _, c := range chunk {
			args = append(args, c.Fingerprint)
		}
		rows, err := s.db.QueryContext(ctx, `SELECT fingerprint, uri, bot_id, source, format, first_seen, last_seen, present, gone_at,
			attributes FROM locations WHERE account_id = ? AND fingerprint IN (`+placeholders(len(chunk))+`) ORDER BY uri, bot_id`, args...)
		if err != nil {
			return fmt.Errorf("certificate locations: %w", err)
		}
		for rows.Next() {
			var fp string
			var l Location
			var first, last int64
			var present int
			var gone sql.NullInt64
			var attrs sql.NullString
			if err := rows.Scan(&fp, &l.URI, &l.BotID, &l.Source, &l.Format, &first, &last, &present, &gone, &attrs); err != nil {
				rows.Close()
				return fmt.Errorf("certificate locations: %w", err)
			}
			if attrs.Valid && attrs.String != "" && attrs.String != "{}" {
				if err := json.Unmarshal([]byte(attrs.String), &l.Attributes); err != nil {
					rows.Close()
					return fmt.Errorf("certificate location %s attributes: %w", l.URI, err)
				}
			}
			l.FirstSeen, l.LastSeen, l.Present, l.GoneAt = fromUS(first), fromUS(last), present == 1, fromNullUS(gone)
			c := &certs[idx[fp]]
			c.Locations = append(c.Locations, l)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("certificate locations: %w", err)
		}
	}
	return nil
}

// Certificate reads one certificate of the account with its locations.
func (s *SQL) Certificate(ctx context.Context, account, fingerprint string) (Certificate, error) {
	c, err := scanCert(s.db.QueryRowContext(ctx, `SELECT `+certColumns+` FROM certificates c WHERE c.account_id = ? AND c.fingerprint = ?`,
		account, strings.ToLower(fingerprint)))
	if err != nil {
		return Certificate{}, notFound("certificate "+fingerprint, err)
	}
	certs := []Certificate{c}
	if err := s.attachLocations(ctx, account, certs); err != nil {
		return Certificate{}, err
	}
	return certs[0], nil
}

// CertificateDER reads a certificate's DER and the chain found with it.
func (s *SQL) CertificateDER(ctx context.Context, account, fingerprint string) ([]byte, [][]byte, error) {
	var der, chain []byte
	err := s.db.QueryRowContext(ctx, `SELECT der, chain FROM certificate_der WHERE account_id = ? AND fingerprint = ?`,
		account, strings.ToLower(fingerprint)).Scan(&der, &chain)
	if err != nil {
		return nil, nil, notFound("certificate "+fingerprint, err)
	}
	rest, err := decodeChain(chain)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate %s: %w", fingerprint, err)
	}
	return der, rest, nil
}

// InsertSyntheticCertificates adds n made-up certificate rows (no DER, one
// location each) directly, for benchmarks of the search: a realistic
// inventory in seconds rather than minutes of ingestion.
func (s *SQL) InsertSyntheticCertificates(ctx context.Context, account, botID string, n int, gen func(i int) Certificate) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		ins, err := tx.PrepareContext(ctx, `INSERT INTO certificates (account_id, fingerprint, subject, common_name, sans, search,
			issuer, serial, not_before, not_after, key_algorithm, key_bits, signature_algorithm, is_ca, first_seen, sources)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		loc, err := tx.PrepareContext(ctx, `INSERT INTO locations (account_id, bot_id, uri, fingerprint, source, format,
			first_seen, last_seen, present, last_scan_id) VALUES (?, ?, ?, ?, 'tls', 'tls', ?, ?, 1, '')`)
		if err != nil {
			return err
		}
		defer loc.Close()
		for i := range n {
			c := gen(i)
			search := strings.ToLower(c.CommonName + "\n" + strings.Join(c.SANs, "\n"))
			sources := sourceSet{}
			if len(c.Locations) > 0 {
				sources["tls"] = struct{}{} // the locations' source below
			}
			if _, err := ins.ExecContext(ctx, account, c.Fingerprint, c.Subject, c.CommonName, jsonText(c.SANs), search, c.Issuer,
				c.Serial, us(c.NotBefore), us(c.NotAfter), c.KeyAlgorithm, c.KeyBits, c.SignatureAlgorithm, boolInt(c.IsCA), us(c.FirstSeen),
				sources.String()); err != nil {
				return err
			}
			for _, l := range c.Locations {
				if _, err := loc.ExecContext(ctx, account, botID, l.URI, c.Fingerprint, us(l.FirstSeen), us(l.LastSeen)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
