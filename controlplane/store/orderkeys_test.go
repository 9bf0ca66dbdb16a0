package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/internal/testcert"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// P4: what an order records about its key and deployment round-trips
// through every read.
func TestOrderKeyFields(t *testing.T) {
	ctx := context.Background()
	st, _ := openClock(t, store.Options{})
	f := newFixture(t, st, 1)
	tests := []struct {
		name string
		o    store.Order
	}{
		{"pem in software", store.Order{DeployKind: protocol.DeployPEM, KeyWhere: protocol.KeyWhereSoftware, KeyAlgorithm: "ecdsa-p256"}},
		{"jks kept key", store.Order{DeployKind: protocol.DeployJKS, KeyWhere: protocol.KeyWhereSoftware}},
		{"token key", store.Order{DeployKind: protocol.DeployPKCS11, KeyWhere: protocol.KeyWherePKCS11, KeyAlgorithm: "rsa-3072",
			KeyRef: "web-key#a1b2"}},
		{"order only", store.Order{}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.ID, o.Account, o.Action, o.Location = fmt.Sprint("k", i), f.account, protocol.ActionRotate, fmt.Sprintf("file:///k%d.pem", i)
			if err := st.CreateOrder(ctx, o, nil); err != nil {
				t.Fatal(err)
			}
			got, err := st.Order(ctx, f.account, o.ID)
			if err != nil {
				t.Fatal(err)
			}
			list, err := st.Orders(ctx, f.account, store.OrderFilter{Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			hist, err := st.LocationHistory(ctx, f.account, []store.LocationRef{{URI: o.Location}})
			if err != nil {
				t.Fatal(err)
			}
			reads := map[string]store.Order{"Order": got, "LocationHistory": {}}
			if h := hist[store.LocationRef{URI: o.Location}]; len(h) == 1 {
				reads["LocationHistory"] = h[0].Order
			}
			for _, l := range list {
				if l.ID == o.ID {
					reads["Orders"] = l
				}
			}
			for by, r := range reads {
				if r.DeployKind != o.DeployKind || r.KeyWhere != o.KeyWhere || r.KeyAlgorithm != o.KeyAlgorithm || r.KeyRef != o.KeyRef {
					t.Errorf("%s: %q %q %q %q; want %q %q %q %q", by, r.DeployKind, r.KeyWhere, r.KeyAlgorithm, r.KeyRef,
						o.DeployKind, o.KeyWhere, o.KeyAlgorithm, o.KeyRef)
				}
			}
		})
	}
}

// S4: Keystores counts the orders that wrote a JKS or PKCS#12 keystore
// and got it deployed; other kinds, unfinished or failed ones, and
// another account's do not count.
func TestDashboardKeystores(t *testing.T) {
	ctx := context.Background()
	st, clock := openClock(t, store.Options{})
	f := newFixture(t, st, 1)
	other := newFixture(t, st, 1)
	tests := []struct {
		name    string
		account string
		kind    string
		status  string
		want    int // the account's Keystores after this order
	}{
		{"jks rotated", f.account, protocol.DeployJKS, store.OrderRotated, 1},
		{"pem rotated", f.account, protocol.DeployPEM, store.OrderRotated, 1},
		{"jks failed", f.account, protocol.DeployJKS, store.OrderFailed, 1},
		{"jks initiated", f.account, protocol.DeployJKS, store.OrderInitiated, 1},
		{"pkcs12 deployed", f.account, protocol.DeployPKCS12, store.OrderDeployed, 2},
		{"pkcs12 re-keyed", f.account, protocol.DeployPKCS12, store.OrderRekeyed, 3},
		{"another account's jks", other.account, protocol.DeployJKS, store.OrderRotated, 3},
	}
	for i, tc := range tests {
		id := fmt.Sprint("ks", i)
		if err := st.CreateOrder(ctx, store.Order{ID: id, Account: tc.account, Action: protocol.ActionRotate,
			DeployKind: tc.kind, KeyWhere: protocol.KeyWhereSoftware, KeyAlgorithm: "rsa-2048"}, nil); err != nil {
			t.Fatal(err)
		}
		if tc.status != store.OrderInitiated {
			if _, err := st.TransitionOrder(ctx, tc.account, id, nil, store.OrderPatch{Status: &tc.status}, store.OrderEvent{}); err != nil {
				t.Fatal(err)
			}
		}
		d, err := st.Dashboard(ctx, f.account, clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if d.Templates.Keystores != tc.want {
			t.Errorf("after %s: keystores %d, want %d", tc.name, d.Templates.Keystores, tc.want)
		}
	}
	if d, _ := st.Dashboard(ctx, other.account, clock.Now()); d.Templates.Keystores != 1 {
		t.Errorf("other account: keystores %d, want 1", d.Templates.Keystores)
	}
}

// P4: the keys rotations made (newest first, with the key they replaced),
// each location's history (one URI on two bots is two locations), the
// keys found by location, paging and account isolation.
func TestKeyInventory(t *testing.T) {
	ctx := context.Background()
	st, clock := openClock(t, store.Options{})
	f := newFixture(t, st, 2)
	other := newFixture(t, st, 1)
	g := testcert.NewGenerator(t)
	oldDER := g.New(t, testcert.Options{CN: "old"})
	const pemURI, keyURI = "file:///etc/nginx/web.pem", "file:///etc/nginx/web.key"
	f.startScan(t, "s1")
	const p12URI = "file:///etc/tomcat/web.p12"
	found := finding(oldDER, pemURI)
	found.Source, found.Format = "file", "pem"
	// The same certificate with its key in a keystore: the key of the
	// certificate at pemURI too.
	inP12 := finding(oldDER, p12URI)
	inP12.Source, inP12.Format, inP12.Key = "file", "pkcs12", &protocol.KeyInfo{Algorithm: "ECDSA", Bits: 256}
	keyOnly := keyFinding("pkcs11:token=t;object=hsm;type=private;id=%01", "private", "01")
	if _, err := st.Ingest(ctx, f.account, f.bot, "s1", protocol.FindingsBatch{Seq: 1, Findings: []protocol.Finding{
		found, inP12, keyOnly,
		{Location: loc(keyURI), Source: "file", Format: "pem", SeenAt: time.Now(), Key: &protocol.KeyInfo{Algorithm: "ECDSA", Bits: 256}},
	}}); err != nil {
		t.Fatal(err)
	}
	cert, err := st.Certificate(ctx, f.account, fingerprint(oldDER))
	if err != nil {
		t.Fatal(err)
	}

	// Two orders at the PEM location (a rotate, then a renew that kept the
	// key), one rotate on the same path on another bot, one on a token.
	secondBot, _, err := admin.CreateBot(ctx, st, f.account, "web2", "")
	if err != nil {
		t.Fatal(err)
	}
	type mk struct {
		id, bot, uri, alg, ref, fp string
	}
	for _, m := range []mk{
		{"m1", f.bot, pemURI, "ecdsa-p384", "", fingerprint(oldDER)},
		{"m2", f.bot, pemURI, "", "", "new-fp-of-m1"},
		{"m3", secondBot, pemURI, "rsa-2048", "", ""},
		{"m4", f.bot, "pkcs11:token=t;object=web", "ecdsa-p256", "web", ""},
	} {
		clock.Add(time.Minute)
		if err := st.CreateOrder(ctx, store.Order{ID: m.id, Account: f.account, BotID: m.bot, Action: protocol.ActionRotate,
			Location: m.uri, Fingerprint: m.fp, DeployKind: protocol.DeployPEM, KeyWhere: protocol.KeyWhereSoftware,
			KeyAlgorithm: m.alg, KeyRef: m.ref}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CreateOrder(ctx, store.Order{ID: "x1", Account: other.account, Action: protocol.ActionRotate, Location: pemURI,
		KeyAlgorithm: "ecdsa-p256"}, nil); err != nil {
		t.Fatal(err)
	}

	ids := func(ms []store.KeyOrder) (out []string) {
		for _, m := range ms {
			out = append(out, m.Order.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    store.KeyFilter
		want []string
	}{
		{"all, newest first", store.KeyFilter{}, []string{"m4", "m3", "m1"}},
		{"by location", store.KeyFilter{Location: pemURI}, []string{"m3", "m1"}},
		{"by location and bot", store.KeyFilter{Location: pemURI, BotID: f.bot}, []string{"m1"}},
		{"page 2", store.KeyFilter{Limit: 2, Offset: 2}, []string{"m1"}},
		{"no such location", store.KeyFilter{Location: "file:///nowhere"}, nil},
	} {
		t.Run("made "+tc.name, func(t *testing.T) {
			got, err := st.MadeKeys(ctx, f.account, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(ids(got)) != fmt.Sprint(tc.want) {
				t.Fatalf("got %v, want %v", ids(got), tc.want)
			}
		})
	}
	made, _ := st.MadeKeys(ctx, f.account, store.KeyFilter{Location: pemURI, BotID: f.bot})
	if len(made) != 1 || made[0].OldKeyAlgorithm == "" || made[0].OldKeyAlgorithm != cert.KeyAlgorithm || made[0].OldKeyBits != cert.KeyBits ||
		made[0].Order.KeyAlgorithm != "ecdsa-p384" {
		t.Errorf("m1's replaced key: %+v, want %s %d", made, cert.KeyAlgorithm, cert.KeyBits)
	}
	if got, _ := st.MadeKeys(ctx, other.account, store.KeyFilter{}); fmt.Sprint(ids(got)) != "[x1]" {
		t.Errorf("other account's made keys: %v", ids(got))
	}

	hist, err := st.LocationHistory(ctx, f.account, []store.LocationRef{{f.bot, pemURI}, {secondBot, pemURI}, {"", pemURI}})
	if err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[store.LocationRef]string{{f.bot, pemURI}: "[m1 m2]", {secondBot, pemURI}: "[m3]", {"", pemURI}: "[]"} {
		var got []string
		for _, o := range hist[ref] {
			got = append(got, o.Order.ID)
		}
		if fmt.Sprint(got) != want {
			t.Errorf("history of %v: %v, want %s (oldest first)", ref, got, want)
		}
	}

	// One page of it all: m1's location (whose history includes the
	// renewal m2) once; cut to one key made, only m4's location is left.
	page, err := store.ReadKeyPage(ctx, st, f.account, store.KeyFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var locs []string
	for _, l := range page.Locations {
		locs = append(locs, fmt.Sprintf("%s@%v/%d", l.URI, l.BotID == f.bot, len(l.Orders)))
	}
	wantLocs := fmt.Sprint([]string{"pkcs11:token=t;object=web@true/1", pemURI + "@false/1", pemURI + "@true/2"})
	if len(page.Found) != 3 || len(page.Made) != 3 || fmt.Sprint(locs) != wantLocs {
		t.Errorf("page: %d found, %d made, locations %v; want 3, 3, %v", len(page.Found), len(page.Made), locs, wantLocs)
	}
	cut, more := store.TrimKeyPage(page, 1)
	if !more || len(cut.Found) != 1 || len(cut.Made) != 1 || len(cut.Locations) != 1 || cut.Locations[0].URI != "pkcs11:token=t;object=web" {
		t.Errorf("trimmed page: more %v, %+v", more, cut)
	}
	if _, more := store.TrimKeyPage(page, 3); more {
		t.Error("a page of exactly 3 says more follow")
	}

	keyURIs := func(ks []store.Key) (out []string) {
		for _, k := range ks {
			out = append(out, k.URI)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    store.KeyFilter
		want int
		has  string
	}{
		{"all", store.KeyFilter{}, 3, ""},
		{"the certificate's location finds its key", store.KeyFilter{Location: pemURI}, 1, p12URI},
		{"a key file's own URI", store.KeyFilter{Location: keyURI}, 1, keyURI},
		{"another bot's location", store.KeyFilter{Location: pemURI, BotID: secondBot}, 0, ""},
		{"paged", store.KeyFilter{Limit: 2, Offset: 2}, 1, ""},
	} {
		t.Run("found "+tc.name, func(t *testing.T) {
			got, err := st.FoundKeys(ctx, f.account, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want || (tc.has != "" && got[0].URI != tc.has) {
				t.Fatalf("got %v, want %d keys with %q", keyURIs(got), tc.want, tc.has)
			}
		})
	}
	if got, _ := st.FoundKeys(ctx, other.account, store.KeyFilter{}); len(got) != 0 {
		t.Errorf("other account sees keys %v", keyURIs(got))
	}
}

// BenchmarkKeyPage10k: one page of the key inventory (100 keys made and
// their locations' history) among 10,000 rotations of 5,000 locations,
// a fifth of them to keystores (P4 at the scale of a mass replacement,
// P9); and the plan of each query names its index.
func BenchmarkKeyPage10k(b *testing.B) {
	ctx := context.Background()
	st, clock := openClock(b, store.Options{})
	f := newFixture(b, st, 1)
	csr, cert := strings.Repeat("C", 1000), strings.Repeat("P", 2000)
	db := st.DB()
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	now := clock.Now().UnixMicro()
	kinds := []string{protocol.DeployPEM, protocol.DeployPEM, protocol.DeployPEM, protocol.DeployPEM, protocol.DeployJKS}
	for i := range 10_000 {
		if _, err := tx.Exec(`INSERT INTO orders (id, account_id, bot_id, action, fingerprint, location, status, csr_pem, cert_pem,
			new_fingerprint, created_at, updated_at, deploy_kind, key_where, key_algorithm) VALUES (?, ?, ?, 'rotate', ?, ?, ?, ?, ?, ?, ?, ?, ?, 'software', 'ecdsa-p256')`,
			fmt.Sprint("o", i), f.account, f.bot, fmt.Sprint("old", i), fmt.Sprintf("file:///srv/%d/cert.pem", i%5000),
			store.OrderRotated, csr, cert, fmt.Sprint("new", i), now+int64(i), now+int64(i), kinds[i%len(kinds)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	for _, q := range []struct{ query, index string }{
		{`SELECT COUNT(*) FROM orders WHERE account_id = 'a' AND deploy_kind IN ('jks', 'pkcs12') AND status IN ('deployed', 'rotated', 're-keyed')`, "orders_keystores"},
		{`SELECT id FROM orders o WHERE o.account_id = 'a' AND o.key_algorithm <> '' ORDER BY o.created_at DESC, o.id DESC LIMIT 100`, "orders_keys"},
		{`SELECT id FROM orders o WHERE o.account_id = 'a' AND o.location = 'x' AND o.bot_id = 'b' ORDER BY o.created_at DESC, o.id DESC LIMIT 100`, "orders_location"},
	} {
		var plan []string
		rows, err := db.Query(`EXPLAIN QUERY PLAN ` + q.query)
		if err != nil {
			b.Fatal(err)
		}
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				b.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		// A sort (TEMP B-TREE) would read every matching row, PEMs and all.
		if p := strings.Join(plan, "; "); !strings.Contains(p, q.index) || strings.Contains(p, "TEMP B-TREE") {
			b.Errorf("%s: plan %v: want %s and no sort", q.query, plan, q.index)
		}
	}
	b.ResetTimer()
	for range b.N {
		p, err := store.ReadKeyPage(ctx, st, f.account, store.KeyFilter{})
		if err != nil || len(p.Made) != 100 || len(p.Locations) != 100 || len(p.Locations[0].Orders) != 2 {
			b.Fatal(len(p.Made), len(p.Locations), err)
		}
	}
	b.StopTimer()
	d, err := st.Dashboard(ctx, f.account, clock.Now())
	if err != nil || d.Templates.Keystores != 2000 {
		b.Fatal(d.Templates, err)
	}
}
