package web

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// The speed target: every page renders server-side in under
// 200 ms with 100,000 certificates. The inventory is built once per test
// binary (real certificates, ingested the way bots send them) and shared
// by the benchmarks; each benchmark times whole HTTP requests through
// Handler(): session, permission, store queries, template.

const benchTotal = 100_000

// benchNow is the benchmarks' clock: certificates expire around it.
var benchNow = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

var benchInv struct {
	once  sync.Once
	dir   string
	st    *store.SQL
	srv   *Server
	token string
	fp    string // a certificate to view: with a chain and two locations
	err   error
}

// TestMain removes the benchmarks' shared inventory when the tests end.
// It is the package's only TestMain: process-wide cleanup of other tests
// goes here too.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchInv.st != nil {
		benchInv.st.Close()
	}
	if benchInv.dir != "" {
		os.RemoveAll(benchInv.dir)
	}
	os.Exit(code)
}

// benchServer returns the dashboard over the 100,000-certificate store
// and a session cookie's value.
func benchServer(b *testing.B) (*Server, string) {
	b.Helper()
	benchInv.once.Do(func() {
		// Set until the build ends: a b.Fatal inside it (which ends the
		// goroutine) must not leave a half-built inventory looking done.
		benchInv.err = errors.New("building the benchmark inventory failed")
		start := time.Now()
		if err := buildBenchInventory(b); err != nil {
			benchInv.err = err
			return
		}
		benchInv.err = nil
		b.Logf("built %d certificates in %v", benchTotal, time.Since(start).Round(time.Millisecond))
	})
	if benchInv.err != nil {
		b.Fatal(benchInv.err)
	}
	return benchInv.srv, benchInv.token
}

func buildBenchInventory(b *testing.B) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "web-bench-")
	if err != nil {
		return err
	}
	benchInv.dir = dir
	clock := func() time.Time { return benchNow }
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "cp.db"), store.Options{Now: clock})
	if err != nil {
		return err
	}
	benchInv.st = st
	benchInv.srv = newTestWebServer(b, st, clock)
	acct, err := st.CreateAccount(ctx, "Bench")
	if err != nil {
		return err
	}
	if err := st.SetBotLimit(ctx, acct.ID, 10); err != nil {
		return err
	}
	benchInv.token = loginAs(b, st, acct.ID, "bench@example.com", "administrator", benchNow)
	var bots []string
	for i := range 3 {
		id, _, err := admin.CreateBot(ctx, st, acct.ID, fmt.Sprintf("bot-%d", i), "")
		if err != nil {
			return err
		}
		bots = append(bots, id)
	}

	// 14 issuers; leaf keys of a few kinds, made once (only their public
	// halves go into certificates; the issuers sign).
	var issuers []certIssuer
	for i := range 14 {
		issuers = append(issuers, newCertIssuer(b, fmt.Sprintf("Bench Issuing CA %d", i), benchNow))
	}
	var pubs []any
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			return err
		}
		pubs = append(pubs, &k.PublicKey)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pubs = append(pubs, &rk.PublicKey, &rk.PublicKey)

	ders := make([][]byte, benchTotal)
	workers := runtime.GOMAXPROCS(0)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < benchTotal; i += workers {
				cn := fmt.Sprintf("host%06d.%s.example.com", i, []string{"prod", "dev", "corp", "lab"}[i%4])
				sans := []string{cn, fmt.Sprintf("alt%06d.example.net", i)}
				notAfter := benchNow.Add(time.Duration(i%730-365)*24*time.Hour + time.Duration(i%86400)*time.Second)
				der, err := issuers[(i*7+i/3)%len(issuers)].sign(int64(i+2), cn, sans, notAfter, pubs[i%len(pubs)], i%50 == 0)
				if err != nil {
					errs[w] = err
					return
				}
				ders[i] = der
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}

	// One scan per bot; batches of 5,000 findings, as a big bot would send.
	const batch = 5000
	type scanState struct {
		id       string
		seq      int64
		findings []protocol.Finding
	}
	scans := make([]*scanState, len(bots))
	for i, bot := range bots {
		scans[i] = &scanState{id: admin.NewID()}
		if err := st.StartScan(ctx, acct.ID, bot, protocol.ScanStart{ScanID: scans[i].id, Started: benchNow}); err != nil {
			return err
		}
	}
	flush := func(bi int) error {
		s := scans[bi]
		if len(s.findings) == 0 {
			return nil
		}
		s.seq++
		_, err := st.Ingest(ctx, acct.ID, bots[bi], s.id, protocol.FindingsBatch{Seq: s.seq, Findings: s.findings})
		s.findings = s.findings[:0]
		return err
	}
	add := func(bi int, f protocol.Finding) error {
		scans[bi].findings = append(scans[bi].findings, f)
		if len(scans[bi].findings) >= batch {
			return flush(bi)
		}
		return nil
	}
	for i, der := range ders {
		iss := issuers[(i*7+i/3)%len(issuers)]
		l, err := protocol.ParseLocation(fmt.Sprintf("tls://10.%d.%d.%d:443", i>>16&255, i>>8&255, i&255))
		if err != nil {
			return err
		}
		if err := add(i%len(bots), protocol.Finding{Location: l, Source: "tls", Format: "tls", Chain: [][]byte{der, iss.der}, SeenAt: benchNow}); err != nil {
			return err
		}
		if i%5 == 0 {
			l, err := protocol.ParseLocation(fmt.Sprintf("file:///etc/ssl/certs/host%06d.pem", i))
			if err != nil {
				return err
			}
			if err := add((i+1)%len(bots), protocol.Finding{Location: l, Source: "file", Format: "pem", Chain: [][]byte{der}, SeenAt: benchNow,
				Attributes: map[string]string{"owner": "root"}}); err != nil {
				return err
			}
		}
	}
	for bi, bot := range bots {
		if err := flush(bi); err != nil {
			return err
		}
		if err := st.CompleteScan(ctx, acct.ID, bot, scans[bi].id, protocol.ScanComplete{Finished: benchNow, Batches: scans[bi].seq,
			Complete: true}); err != nil {
			return err
		}
	}
	benchInv.fp = protocol.Fingerprint(ders[5])
	// No ANALYZE here: the store refreshes the planner's statistics itself
	// when a scan completes (PRAGMA optimize), and the pages must be fast
	// with what it gathers.
	return nil
}

// benchPage times GET path; it must answer 200.
func benchPage(b *testing.B, path string) {
	srv, token := benchServer(b)
	h := srv.Handler()
	cookie := &http.Cookie{Name: SessionCookie, Value: token}
	var size int
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "https://cp.example.test"+path, nil)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("%s: status %d: %.300s", path, rec.Code, rec.Body.String())
		}
		size = rec.Body.Len()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
	b.ReportMetric(float64(size), "bytes/page")
}

func BenchmarkDashboardPage100k(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark: builds 100,000 certificates")
	}
	benchPage(b, "/")
}

func BenchmarkCertificatesPage100k(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark: builds 100,000 certificates")
	}
	for _, c := range []struct{ name, query string }{
		{"default", ""},
		{"not_after-desc", "?sort=not_after&order=desc"},
		{"q", "?q=prod.example"},
		{"q-rare", "?q=host04242"},
		{"common_name-page-1000", "?sort=common_name&page=1000"},
		{"issuer-filter", "?issuer=CA+1&type=leaf"},
		{"source-file", "?source=file&sort=first_seen&order=desc"},
		{"expiring-30-days", "?expires_after=2026-06-01&expires_before=2026-07-01"},
	} {
		b.Run(c.name, func(b *testing.B) { benchPage(b, "/certificates"+c.query) })
	}
}

func BenchmarkCertificateView(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark: builds 100,000 certificates")
	}
	benchServer(b)
	benchPage(b, "/certificates/"+benchInv.fp)
}

// BenchmarkExportCSV100k: the whole inventory as CSV (a download, not a
// page: it streams, so its time is not the 200 ms target's).
func BenchmarkExportCSV100k(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark: builds 100,000 certificates")
	}
	benchPage(b, "/certificates/export.csv")
}
