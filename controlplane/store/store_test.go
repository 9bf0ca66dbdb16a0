package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/internal/testcert"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

func open(t testing.TB) *store.SQL {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "cp.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// fixture is an account with one active bot and an open scan.
type fixture struct {
	st      *store.SQL
	account string
	bot     string
	token   string
}

func newFixture(t testing.TB, st *store.SQL, limit int) fixture {
	t.Helper()
	ctx := context.Background()
	a, err := st.CreateAccount(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	if limit > 1 {
		if err := st.SetBotLimit(ctx, a.ID, limit); err != nil {
			t.Fatal(err)
		}
	}
	id, token, err := admin.CreateBot(ctx, st, a.ID, "web", "")
	if err != nil {
		t.Fatal(err)
	}
	return fixture{st: st, account: a.ID, bot: id, token: token}
}

func (f fixture) startScan(t testing.TB, id string) {
	t.Helper()
	if err := f.st.StartScan(context.Background(), f.account, f.bot, protocol.ScanStart{ScanID: id, Trigger: "schedule"}); err != nil {
		t.Fatal(err)
	}
}

func loc(uri string) protocol.Location {
	l, err := protocol.ParseLocation(uri)
	if err != nil {
		panic(err)
	}
	return l
}

func finding(der []byte, uri string) protocol.Finding {
	return protocol.Finding{Location: loc(uri), Source: "tls", Format: "tls", Chain: [][]byte{der}, SeenAt: time.Now()}
}

func TestMigrationsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.db")
	ctx := context.Background()
	// Every migration file, applied once.
	files, err := filepath.Glob("migrations/sqlite/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migration files: %v, %v", files, err)
	}
	for i := range 3 {
		st, err := store.OpenSQLite(ctx, path, store.Options{})
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if err := store.Migrate(ctx, st.DB()); err != nil {
			t.Fatalf("migrate again %d: %v", i, err)
		}
		var n int
		if err := st.DB().QueryRow(`SELECT COUNT(*) FROM goose_db_version WHERE version_id > 0`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != len(files) {
			t.Fatalf("open %d: %d migrations recorded, want %d", i, n, len(files))
		}
		var mode string
		if err := st.DB().QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
			t.Fatalf("journal mode %q, %v; want wal", mode, err)
		}
		st.Close()
	}
}

func TestBotLimitAndIsolation(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	a := newFixture(t, st, 1)
	b := newFixture(t, st, 1)

	tests := []struct {
		name    string
		do      func() error
		wantErr error
	}{
		{"second bot over the limit", func() error { _, _, err := admin.CreateBot(ctx, st, a.account, "two", ""); return err }, store.ErrBotLimit},
		{"another account's bot", func() error { _, err := st.Bot(ctx, a.account, b.bot); return err }, store.ErrNotFound},
		{"suspend another account's bot", func() error { return st.SetBotStatus(ctx, a.account, b.bot, protocol.BotSuspended) }, store.ErrNotFound},
		{"token of another account's bot", func() error { return st.SetBotToken(ctx, a.account, b.bot, admin.Hash("x")) }, store.ErrNotFound},
		{"rename another account's bot", func() error {
			n := "x"
			_, err := st.UpdateBot(ctx, a.account, b.bot, store.BotPatch{Name: &n})
			return err
		}, store.ErrNotFound},
		{"targets of another account's bot", func() error {
			return st.SetTargets(ctx, a.account, b.bot, store.TargetConfig{}, admin.NewID())
		}, store.ErrNotFound},
		{"scan of another account's bot", func() error { return st.QueueScan(ctx, a.account, b.bot, admin.NewID(), admin.NewID()) }, store.ErrNotFound},
		{"bot in unknown account", func() error { _, _, err := admin.CreateBot(ctx, st, "0000000000", "x", ""); return err }, store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}

	// Raising the limit lets a second bot in; deactivating frees a place.
	if err := st.SetBotLimit(ctx, a.account, 2); err != nil {
		t.Fatal(err)
	}
	id2, _, err := admin.CreateBot(ctx, st, a.account, "two", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := admin.CreateBot(ctx, st, a.account, "three", ""); !errors.Is(err, store.ErrBotLimit) {
		t.Fatalf("third bot: %v", err)
	}
	if err := st.SetBotStatus(ctx, a.account, id2, protocol.BotInactive); err != nil {
		t.Fatal(err)
	}
	if _, _, err := admin.CreateBot(ctx, st, a.account, "three", ""); err != nil {
		t.Fatalf("after deactivation: %v", err)
	}
	bots, _ := st.Bots(ctx, b.account)
	if len(bots) != 1 || bots[0].ID != b.bot {
		t.Fatalf("account B sees %v", bots)
	}
}

func TestTokenAndAPIKeyLookup(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	f := newFixture(t, st, 1)
	other := newFixture(t, st, 1)

	key, err := admin.CreateAPIKey(ctx, st, f.account, "manager")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateAPIKey(ctx, st, f.account, "emperor"); err == nil {
		t.Fatal("unknown role accepted")
	}
	tests := []struct {
		name, key string
		ok        bool
	}{
		{"right", key, true},
		{"last character changed", key[:len(key)-1] + otherChar(key[len(key)-1]), false},
		{"no prefix", key[5:], false},
		{"empty", "", false},
		{"unknown id", "emcp_0000000000000000_abc", false},
	}
	for _, tt := range tests {
		t.Run("apikey "+tt.name, func(t *testing.T) {
			k, err := admin.CheckAPIKey(ctx, st, tt.key)
			if tt.ok != (err == nil) {
				t.Fatalf("err %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && (k.Account != f.account || k.Role != "manager") {
				t.Fatalf("key %+v", k)
			}
		})
	}

	for _, tt := range []struct {
		name, account, token string
		ok                   bool
	}{
		{"right", f.account, f.token, true},
		{"wrong token", f.account, other.token, false},
		{"wrong account", other.account, f.token, false},
	} {
		t.Run("token "+tt.name, func(t *testing.T) {
			b, _, ok, err := admin.FindTokenHolder(ctx, st, tt.account, tt.token)
			if err != nil || ok != tt.ok || ok && b.ID != f.bot {
				t.Fatalf("got %v %v %v", b.ID, ok, err)
			}
		})
	}
	// The token is consumed by activation.
	_, hash, _, _ := admin.FindTokenHolder(ctx, st, f.account, f.token)
	if err := st.ActivateBot(ctx, f.account, f.bot, hash, store.Activation{CertSerial: "01", Hostname: "h"}); err != nil {
		t.Fatal(err)
	}
	if err := st.ActivateBot(ctx, f.account, f.bot, hash, store.Activation{CertSerial: "02"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second activation: %v", err)
	}
	if _, _, ok, _ := admin.FindTokenHolder(ctx, st, f.account, f.token); ok {
		t.Fatal("used token still found")
	}
	if b, err := st.BotByCertificate(ctx, f.bot, "01"); err != nil || b.Status != protocol.BotActive {
		t.Fatalf("by certificate: %v %v", b.Status, err)
	}
	// A new token revokes the certificate.
	if _, err := admin.RegenerateToken(ctx, st, f.account, f.bot); err != nil {
		t.Fatal(err)
	}
	if _, err := st.BotByCertificate(ctx, f.bot, "01"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoked certificate: %v", err)
	}
}

func TestIngest(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	f := newFixture(t, st, 1)
	other := newFixture(t, st, 1)
	g := testcert.NewGenerator(t)
	web := g.New(t, testcert.Options{CN: "www.example.com", SANs: []string{"www.example.com", "example.com"}})
	api := g.New(t, testcert.Options{CN: "api.example.com"})

	f.startScan(t, "scan-1")
	batch := protocol.FindingsBatch{Seq: 1, Findings: []protocol.Finding{
		finding(web, "tls://10.0.0.1:443"),
		finding(web, "tls://10.0.0.2:443"),
		finding(web, "file:///etc/ssl/web.pem#0"),
		finding(api, "tls://10.0.0.3:443"),
		{Location: loc("jks:///opt/app/ks.jks"), Source: "jks", Error: "no password opens the keystore"},
		{Location: loc("file:///etc/ssl/junk.pem"), Source: "file", Chain: [][]byte{[]byte("not a certificate")}},
	}}
	tests := []struct {
		name    string
		account string
		bot     string
		scan    string
		batch   protocol.FindingsBatch
		wantDup bool
		wantErr error
	}{
		{"first", f.account, f.bot, "scan-1", batch, false, nil},
		{"repeated seq", f.account, f.bot, "scan-1", batch, true, nil},
		{"unknown scan", f.account, f.bot, "scan-x", batch, false, store.ErrNotFound},
		{"another account's bot into this scan", other.account, other.bot, "scan-1", batch, false, store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dup, err := st.Ingest(ctx, tt.account, tt.bot, tt.scan, tt.batch)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if dup != tt.wantDup {
				t.Fatalf("duplicate %v", dup)
			}
		})
	}
	certs, next, err := st.Certificates(ctx, f.account, store.CertificateFilter{})
	if err != nil || next != "" {
		t.Fatal(err, next)
	}
	if len(certs) != 2 {
		t.Fatalf("%d certificates, want 2", len(certs))
	}
	c, err := st.Certificate(ctx, f.account, protocol.Fingerprint(web))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Locations) != 3 || c.CommonName != "www.example.com" || len(c.SANs) != 2 || c.KeyAlgorithm != "ECDSA" {
		t.Fatalf("web certificate %+v", c)
	}
	sc, err := st.Scan(ctx, f.account, f.bot, "scan-1")
	if err != nil {
		t.Fatal(err)
	}
	if sc.Certificates != 4 || sc.Errors != 2 || sc.Batches != 1 {
		t.Fatalf("scan counts: %+v (the repeated batch must not count)", sc)
	}
	errs, _ := st.ScanErrors(ctx, f.account, f.bot, "scan-1", 0)
	if len(errs) != 2 || errs[0].URI != "jks:///opt/app/ks.jks" {
		t.Fatalf("scan errors %+v", errs)
	}
	if _, err := st.Certificate(ctx, other.account, protocol.Fingerprint(web)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other account sees the certificate: %v", err)
	}
	der, _, err := st.CertificateDER(ctx, f.account, protocol.Fingerprint(web))
	if err != nil || string(der) != string(web) {
		t.Fatalf("DER: %v", err)
	}
}

func TestCompleteScan(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	g := testcert.NewGenerator(t)
	a := g.New(t, testcert.Options{CN: "a"})
	b := g.New(t, testcert.Options{CN: "b"})
	c := g.New(t, testcert.Options{CN: "c"})

	present := func(t *testing.T, st *store.SQL, account string, der []byte) bool {
		t.Helper()
		cert, err := st.Certificate(ctx, account, protocol.Fingerprint(der))
		if err != nil {
			t.Fatal(err)
		}
		return cert.Locations[0].Present
	}
	tests := []struct {
		name     string
		complete protocol.ScanComplete
		// Whether a (not reported by scan 2), b (reported) and c (an error
		// in scan 2) stay present.
		wantA, wantB, wantC bool
	}{
		{"complete closes what was not reported", protocol.ScanComplete{Complete: true}, false, true, true},
		{"stopped early closes nothing", protocol.ScanComplete{Complete: true, Stopped: "max runtime of 2h reached"}, true, true, true},
		{"incomplete closes nothing", protocol.ScanComplete{Complete: false}, true, true, true},
		{"the batches it names all arrived", protocol.ScanComplete{Complete: true, Batches: 1}, false, true, true},
		{"a batch missing closes nothing", protocol.ScanComplete{Complete: true, Batches: 2}, true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := open(t)
			f := newFixture(t, st, 1)
			f.startScan(t, "s1")
			if _, err := st.Ingest(ctx, f.account, f.bot, "s1", protocol.FindingsBatch{Seq: 1, Findings: []protocol.Finding{
				finding(a, "tls://a:443"), finding(b, "tls://b:443"), finding(c, "tls://c:443")}}); err != nil {
				t.Fatal(err)
			}
			if err := st.CompleteScan(ctx, f.account, f.bot, "s1", protocol.ScanComplete{Complete: true}); err != nil {
				t.Fatal(err)
			}
			f.startScan(t, "s2")
			if _, err := st.Ingest(ctx, f.account, f.bot, "s2", protocol.FindingsBatch{Seq: 1, Findings: []protocol.Finding{
				finding(b, "tls://b:443"), {Location: loc("tls://c:443"), Source: "tls", Error: "handshake timeout"}}}); err != nil {
				t.Fatal(err)
			}
			if err := st.CompleteScan(ctx, f.account, f.bot, "s2", tt.complete); err != nil {
				t.Fatal(err)
			}
			if got := present(t, st, f.account, a); got != tt.wantA {
				t.Errorf("a present %v, want %v", got, tt.wantA)
			}
			if got := present(t, st, f.account, b); got != tt.wantB {
				t.Errorf("b present %v, want %v", got, tt.wantB)
			}
			if got := present(t, st, f.account, c); got != tt.wantC {
				t.Errorf("c present %v, want %v", got, tt.wantC)
			}
			cert, _ := st.Certificate(ctx, f.account, protocol.Fingerprint(a))
			if gone := cert.Locations[0].GoneAt; (gone != nil) == tt.wantA {
				t.Errorf("a gone_at %v", gone)
			}
			sc, _ := st.Scan(ctx, f.account, f.bot, "s2")
			if sc.Complete == tt.wantA || (tt.complete.Batches == 2) != strings.Contains(sc.Stopped, "batches missing") {
				t.Errorf("scan complete %v, stopped %q", sc.Complete, sc.Stopped)
			}
		})
	}
	_ = st
}

func TestCertificateFilters(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	f := newFixture(t, st, 2)
	g := testcert.NewGenerator(t)
	f.startScan(t, "s")
	var fs []protocol.Finding
	for i := range 25 {
		der := g.New(t, testcert.Options{
			CN:       fmt.Sprintf("host%02d.example.com", i),
			SANs:     []string{fmt.Sprintf("alt%02d.Example.org", i)},
			Issuer:   map[bool]string{true: "Old CA", false: "New CA"}[i%5 == 0],
			NotAfter: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, i, 0),
		})
		src, uri := "tls", fmt.Sprintf("tls://10.0.0.%d:443", i)
		if i%2 == 1 {
			src, uri = "file", fmt.Sprintf("file:///etc/ssl/h%d.pem", i)
		}
		fs = append(fs, protocol.Finding{Location: loc(uri), Source: src, Chain: [][]byte{der}})
	}
	if _, err := st.Ingest(ctx, f.account, f.bot, "s", protocol.FindingsBatch{Seq: 1, Findings: fs}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		filter store.CertificateFilter
		want   int
	}{
		{"all", store.CertificateFilter{}, 25},
		{"q in CN", store.CertificateFilter{Q: "host1"}, 10},
		{"q in SAN, any case", store.CertificateFilter{Q: "ALT03.example"}, 1},
		{"q with LIKE metacharacters", store.CertificateFilter{Q: "host_1%"}, 0},
		{"issuer", store.CertificateFilter{Issuer: "old ca"}, 5},
		{"expires before", store.CertificateFilter{ExpiresBefore: time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)}, 5},
		{"expires after", store.CertificateFilter{ExpiresAfter: time.Date(2028, 6, 1, 0, 0, 0, 0, time.UTC)}, 7},
		{"source", store.CertificateFilter{Source: "file"}, 12},
		{"location", store.CertificateFilter{Location: "10.0.0.1"}, 5}, // 10, 12, 14, 16, 18 (odd ones are files)
		{"bot", store.CertificateFilter{BotID: f.bot}, 25},
		{"other bot", store.CertificateFilter{BotID: "nobody"}, 0},
		{"combined", store.CertificateFilter{Source: "tls", Issuer: "old"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Page by 4 to exercise the cursor on every filter.
			tt.filter.Limit = 4
			seen := map[string]bool{}
			for page := 0; ; page++ {
				certs, next, err := st.Certificates(ctx, f.account, tt.filter)
				if err != nil {
					t.Fatal(err)
				}
				if len(certs) > 4 {
					t.Fatalf("page of %d", len(certs))
				}
				for _, c := range certs {
					if seen[c.Fingerprint] {
						t.Fatalf("%s twice", c.Fingerprint)
					}
					seen[c.Fingerprint] = true
					if len(c.Locations) != 1 {
						t.Fatalf("locations %v", c.Locations)
					}
				}
				if next == "" {
					break
				}
				tt.filter.After = next
				if page > 20 {
					t.Fatal("paging does not end")
				}
			}
			if len(seen) != tt.want {
				t.Fatalf("%d certificates, want %d", len(seen), tt.want)
			}
		})
	}
}

func TestJobs(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	f := newFixture(t, st, 1)
	other := newFixture(t, st, 1)
	for range 2 { // config_changed is queued once while pending
		if err := st.SetTargets(ctx, f.account, f.bot, store.TargetConfig{Count: 1, Schedule: protocol.Schedule{Kind: "daily", Time: "02:30"}}, admin.NewID()); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.QueueScan(ctx, f.account, f.bot, "scan-9", "job-9"); err != nil {
		t.Fatal(err)
	}
	jobs, err := st.TakeJobs(ctx, f.bot)
	if err != nil || len(jobs) != 2 || jobs[0].Kind != protocol.JobConfigChanged || jobs[1].ScanID != "scan-9" {
		t.Fatalf("jobs %+v %v", jobs, err)
	}
	if again, _ := st.TakeJobs(ctx, f.bot); len(again) != 0 {
		t.Fatalf("jobs delivered twice: %+v", again)
	}
	if err := st.FinishJob(ctx, other.bot, "job-9", store.JobDone, ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another bot finished the job: %v", err)
	}
	if err := st.FinishJob(ctx, f.bot, "job-9", store.JobDone, ""); err != nil {
		t.Fatal(err)
	}
	// The queued scan is this bot's: another bot cannot start it.
	if err := st.StartScan(ctx, other.account, other.bot, protocol.ScanStart{ScanID: "scan-9"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other bot started the scan: %v", err)
	}
	for range 2 {
		if err := st.StartScan(ctx, f.account, f.bot, protocol.ScanStart{ScanID: "scan-9", Targets: 3}); err != nil {
			t.Fatal(err)
		}
	}
	scans, _ := st.Scans(ctx, f.account, f.bot, 0)
	if len(scans) != 1 || scans[0].Trigger != "job" || scans[0].Started == nil || scans[0].Targets != 3 {
		t.Fatalf("scans %+v", scans)
	}
}

// otherChar returns a key character that is not c, so that a changed key
// really differs (a fixed replacement equals the original one time in 64).
func otherChar(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}
