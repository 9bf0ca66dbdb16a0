package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
)

// sourceSet is a set of location sources. The certificates table's sources
// column (migration 00004) holds one: each distinct source of the
// certificate's present locations followed by a comma, in order ("file,tls,";
// ” when the certificate is present nowhere, "," for the source ”), so
// that the dashboard counts certificates by source from one index instead
// of grouping every location.
type sourceSet map[string]struct{}

// String encodes the set for the sources column.
func (s sourceSet) String() string {
	l := make([]string, 0, len(s))
	for src := range s {
		l = append(l, src)
	}
	slices.Sort(l)
	var b strings.Builder
	for _, src := range l {
		b.WriteString(src)
		b.WriteByte(',')
	}
	return b.String()
}

func newSourceSet(sources ...string) sourceSet {
	s := make(sourceSet, len(sources))
	for _, src := range sources {
		s[src] = struct{}{}
	}
	return s
}

// hasSource tells whether a sources column holds src, without decoding it
// (ingestion asks for every known certificate of every batch).
func hasSource(v, src string) bool {
	for v != "" {
		s, rest, _ := strings.Cut(v, ",")
		if s == src {
			return true
		}
		v = rest
	}
	return false
}

// parseSources decodes a sources column. Repetitions (the migration's
// filling may leave some) count once.
func parseSources(v string) sourceSet {
	s := sourceSet{}
	for v != "" {
		src, rest, _ := strings.Cut(v, ",")
		s[src] = struct{}{}
		v = rest
	}
	return s
}

// addSources adds to the known certificates of a batch the sources they
// were found in (a new certificate got them when inserted). A certificate
// is written only when it has a new source: never in a steady rescan.
// Sources lost by a location that now holds another certificate or
// source are recomputed by recheckReplaced.
func addSources(ctx context.Context, tx *sql.Tx, account string, known map[string]knownCert, batch map[string][]string,
	bad map[string]string) error {
	var up *sql.Stmt
	for fp, k := range known {
		if _, isBad := bad[fp]; isBad {
			continue
		}
		grown := false
		for _, src := range batch[fp] {
			if !hasSource(k.sources, src) {
				grown = true
				break
			}
		}
		if !grown {
			continue
		}
		have := parseSources(k.sources)
		for _, src := range batch[fp] {
			have[src] = struct{}{}
		}
		if up == nil {
			var err error
			if up, err = tx.PrepareContext(ctx, `UPDATE certificates SET sources = ? WHERE account_id = ? AND fingerprint = ?`); err != nil {
				return fmt.Errorf("certificate sources: %w", err)
			}
			defer up.Close()
		}
		if _, err := up.ExecContext(ctx, have.String(), account, fp); err != nil {
			return fmt.Errorf("certificate %s sources: %w", fp, err)
		}
	}
	return nil
}

// recomputeSources sets the sources of the certificates from their present
// locations: after locations went (scan completion) or changed
// certificate or source (ingestion). Only changed rows are written.
func recomputeSources(ctx context.Context, tx *sql.Tx, account string, fps []string) error {
	for len(fps) > 0 {
		n := min(len(fps), inChunk)
		chunk := fps[:n]
		fps = fps[n:]
		args := make([]any, 0, n+1)
		args = append(args, account)
		sets := make(map[string]sourceSet, n)
		for _, fp := range chunk {
			args = append(args, fp)
			sets[fp] = sourceSet{}
		}
		rows, err := tx.QueryContext(ctx, `SELECT fingerprint, source FROM locations WHERE account_id = ? AND present = 1
			AND fingerprint IN (`+placeholders(n)+`)`, args...)
		if err != nil {
			return fmt.Errorf("certificate sources: %w", err)
		}
		for rows.Next() {
			var fp, src string
			if err := rows.Scan(&fp, &src); err != nil {
				rows.Close()
				return fmt.Errorf("certificate sources: %w", err)
			}
			if s := sets[fp]; s != nil {
				s[src] = struct{}{}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("certificate sources: %w", err)
		}
		for fp, s := range sets {
			v := s.String()
			if _, err := tx.ExecContext(ctx, `UPDATE certificates SET sources = ? WHERE account_id = ? AND fingerprint = ? AND sources <> ?`,
				v, account, fp, v); err != nil {
				return fmt.Errorf("certificate %s sources: %w", fp, err)
			}
		}
	}
	return nil
}

// queryer is what both *sql.DB and *sql.Tx offer.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryStrings runs a query of one text column and returns its values.
func queryStrings(ctx context.Context, q queryer, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
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
