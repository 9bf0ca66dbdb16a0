package store_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"testing/fstest"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/emsign/bot/controlplane/internal/testcert"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

func withAttrs(f protocol.Finding, attrs map[string]string) protocol.Finding {
	f.Attributes = attrs
	return f
}

// locationsOf reads the account's locations of a certificate by URI.
func locationsOf(t *testing.T, st *store.SQL, account string, der []byte) map[string]store.Location {
	t.Helper()
	c, err := st.Certificate(context.Background(), account, protocol.Fingerprint(der))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]store.Location{}
	for _, l := range c.Locations {
		if _, dup := m[l.URI]; dup {
			t.Fatalf("location %s twice", l.URI)
		}
		m[l.URI] = l
	}
	return m
}

func TestIngestAttributes(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	f := newFixture(t, st, 1)
	other := newFixture(t, st, 1)
	g := testcert.NewGenerator(t)
	der := g.New(t, testcert.Options{CN: "www.example.com"})
	const vip, plain, failing = "tls://10.0.0.1:443", "tls://10.0.0.2:443", "tls://10.0.0.9:443"
	ingest := func(t *testing.T, fx fixture, scan string, fs ...protocol.Finding) {
		t.Helper()
		fx.startScan(t, scan)
		if _, err := st.Ingest(ctx, fx.account, fx.bot, scan, protocol.FindingsBatch{Seq: 1, Findings: fs}); err != nil {
			t.Fatal(err)
		}
	}
	count := func(t *testing.T, account string) int {
		t.Helper()
		var n int
		if err := st.DB().QueryRow(`SELECT COUNT(*) FROM locations WHERE account_id = ?`, account).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	steps := []struct {
		name     string
		findings []protocol.Finding
		want     map[string]string // the attributes of vip afterwards
	}{
		{"first scan", []protocol.Finding{
			withAttrs(finding(der, vip), map[string]string{"status": "ISSUED", "in_use": "2"}),
			finding(der, plain),
		}, map[string]string{"status": "ISSUED", "in_use": "2"}},
		{"changed attributes: same location", []protocol.Finding{
			withAttrs(finding(der, vip), map[string]string{"status": "EXPIRED"}),
			finding(der, plain),
		}, map[string]string{"status": "EXPIRED"}},
		{"error with attributes updates the existing location", []protocol.Finding{
			{Location: loc(vip), Source: "tls", Error: "handshake timeout", Attributes: map[string]string{"failover": "standby"}},
			{Location: loc(failing), Source: "tls", Error: "refused", Attributes: map[string]string{"failover": "active"}},
		}, map[string]string{"failover": "standby"}},
		{"error without attributes keeps them", []protocol.Finding{
			{Location: loc(vip), Source: "tls", Error: "handshake timeout"},
		}, map[string]string{"failover": "standby"}},
		{"certificate without attributes clears them", []protocol.Finding{
			finding(der, vip),
		}, nil},
	}
	for i, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			ingest(t, f, "scan-"+string(rune('a'+i)), s.findings...)
			locs := locationsOf(t, st, f.account, der)
			if len(locs) != 2 || count(t, f.account) != 2 {
				t.Fatalf("%d locations (%d rows), want 2: %+v", len(locs), count(t, f.account), locs)
			}
			if got := locs[vip].Attributes; !reflect.DeepEqual(got, s.want) {
				t.Fatalf("attributes %v, want %v", got, s.want)
			}
			if got := locs[plain].Attributes; got != nil {
				t.Fatalf("location without attributes has %v", got)
			}
		})
	}

	// Another account's location of the same URI and certificate has its
	// own attributes and does not touch this account's.
	ingest(t, other, "other-1", withAttrs(finding(der, vip), map[string]string{"owner": "other"}))
	if got := locationsOf(t, st, other.account, der)[vip].Attributes; got["owner"] != "other" || len(got) != 1 {
		t.Fatalf("other account's attributes %v", got)
	}
	if got := locationsOf(t, st, f.account, der)[vip].Attributes; got != nil {
		t.Fatalf("the other account's scan changed this account's attributes: %v", got)
	}
	if _, err := st.Certificate(ctx, f.account, protocol.Fingerprint(g.New(t, testcert.Options{CN: "x"}))); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown certificate: %v", err)
	}
}

// A database of the first schema only (as in the field) takes the
// attributes migration: its locations keep their rows, with no attributes.
func TestMigrationAddsAttributes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	initSQL, err := os.ReadFile("migrations/sqlite/00001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fstest.MapFS{"00001_init.sql": {Data: initSQL}}, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMicro()
	g := testcert.NewGenerator(t)
	fp := protocol.Fingerprint(g.New(t, testcert.Options{CN: "old.example.com"}))
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO accounts (id, name, created_at) VALUES ('0000000001', 'Old', ?)`, []any{now}},
		{`INSERT INTO bots (id, account_id, name, status, created_at) VALUES ('b1', '0000000001', 'web', 'active', ?)`, []any{now}},
		{`INSERT INTO certificates (account_id, fingerprint, subject, common_name, sans, search, issuer, serial, not_before, not_after,
			key_algorithm, key_bits, signature_algorithm, is_ca, first_seen)
			VALUES ('0000000001', ?, 'CN=old', 'old', '[]', 'old', 'CA', '1', ?, ?, 'RSA', 2048, 'SHA256-RSA', 0, ?)`, []any{fp, now, now, now}},
		{`INSERT INTO locations (account_id, bot_id, uri, fingerprint, first_seen, last_seen, present)
			VALUES ('0000000001', 'b1', 'tls://old:443', ?, ?, ?, 1)`, []any{fp, now, now}},
	} {
		if _, err := db.Exec(q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	db.Close()

	st, err := store.OpenSQLite(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var attrs string
	if err := st.DB().QueryRow(`SELECT attributes FROM locations WHERE uri = 'tls://old:443'`).Scan(&attrs); err != nil || attrs != "{}" {
		t.Fatalf("existing row's attributes %q, %v; want {}", attrs, err)
	}
	c, err := st.Certificate(ctx, "0000000001", fp)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Locations) != 1 || c.Locations[0].Attributes != nil {
		t.Fatalf("locations after the migration %+v", c.Locations)
	}
	// Migration 00004 filled the sources column from the locations (this
	// one's source is the default, '').
	d, err := st.Dashboard(ctx, "0000000001", time.Now())
	if err != nil || len(d.BySource) != 1 || d.BySource[0] != (store.Bucket{Label: "", Count: 1}) {
		t.Fatalf("by source after the migration %v, %v", d.BySource, err)
	}
}
