package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/internal/testcert"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

func keyFinding(uri, class, id string) protocol.Finding {
	return protocol.Finding{Location: loc(uri), Source: "pkcs11", Format: "pkcs11", SeenAt: time.Now(),
		Key: &protocol.KeyInfo{Algorithm: "RSA", Bits: 2048, Class: class, ID: id, Label: "k", Usage: []string{"sign"}}}
}

func errFinding(uri, msg string) protocol.Finding {
	return protocol.Finding{Location: loc(uri), Source: "tls", Error: msg, SeenAt: time.Now()}
}

func TestDashboard(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	f := newFixture(t, st, 1)
	other := newFixture(t, st, 1)
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	g := testcert.NewGenerator(t)
	cert := func(cn, issuer string, left time.Duration) []byte {
		return g.New(t, testcert.Options{CN: cn, Issuer: issuer, NotAfter: now.Add(left)})
	}
	day := 24 * time.Hour
	c1 := cert("c1", "CA One", 3*day)   // within 7 days
	c2 := cert("c2", "CA One", 20*day)  // within 30
	c3 := cert("c3", "CA One", -day)    // expired
	c4 := cert("c4", "CA Two", 100*day) // later
	c5 := cert("c5", "CA Two", 50*day)  // gone
	c6 := cert("c6", "CA Two", 45*day)  // within 60
	c7 := cert("c7", "CA Two", 80*day)  // within 90
	p11 := "pkcs11:token=t;serial=1;object=k;type="
	withKey := finding(c4, p11+"cert;id=%01")
	withKey.Source, withKey.Key = "pkcs11", &protocol.KeyInfo{Algorithm: "RSA", Bits: 2048, ID: "01"}
	file := func(der []byte, uri string) protocol.Finding {
		fi := finding(der, uri)
		fi.Source = "file"
		return fi
	}

	finished := now.Add(-time.Hour)
	ingest := func(fx fixture, scan string, complete bool, fs ...protocol.Finding) {
		t.Helper()
		fx.startScan(t, scan)
		if _, err := st.Ingest(ctx, fx.account, fx.bot, scan, protocol.FindingsBatch{Seq: 1, Findings: fs}); err != nil {
			t.Fatal(err)
		}
		if err := st.CompleteScan(ctx, fx.account, fx.bot, scan, protocol.ScanComplete{Complete: complete, Batches: 1, Finished: finished}); err != nil {
			t.Fatal(err)
		}
		finished = finished.Add(time.Minute)
	}
	// The first scan finds c5 and an unprotected endpoint; the second,
	// complete and latest, no longer: c5 is gone, f:443 not counted.
	ingest(f, "s1", true, finding(c5, "tls://e:443"), errFinding("tls://f:443", "handshake failure"))
	ingest(f, "s2", true,
		finding(c1, "tls://a:443"), finding(c2, "tls://b:443"), file(c2, "file:///x.pem"), finding(c3, "tls://c:443"),
		finding(c6, "tls://g:443"), file(c7, "file:///y.pem"), withKey,
		errFinding("tls://d:443", "handshake failure"),    // unprotected
		errFinding("tls://b:443", "reset"),                // protected all the same: a certificate is present
		keyFinding(p11+"private;id=%01", "private", "01"), // the pair of withKey: counted once
		keyFinding(p11+"public;id=%01", "public", "01"),   // not counted
		keyFinding("pkcs11:token=t;serial=1;object=aes;type=secret-key;id=%02", "secret-key", "02"),
	)
	// Another account's inventory changes nothing.
	ingest(other, "o1", true, finding(cert("x", "CA One", day), "tls://a:443"), errFinding("tls://z:443", "x"),
		keyFinding("pkcs11:token=o;object=o;type=secret-key;id=%09", "secret-key", "09"))
	if err := st.TouchBot(ctx, f.bot, now.Add(-time.Minute), "", ""); err != nil {
		t.Fatal(err)
	}

	d, err := st.Dashboard(ctx, f.account, now)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Dashboard{
		Certificates: store.CertificateCounts{Discovered: 6, NotConfigured: 6, Expired: 1, Gone: 1},
		Endpoints:    store.EndpointCounts{Scanned: 5, Protected: 4, Unprotected: 1},
		Keys:         store.KeyCounts{Total: 2, Symmetric: 1, Asymmetric: 1},
		Expiring:     store.ExpiringCounts{Expired: 1, Within7: 1, Within30: 1, Within60: 1, Within90: 1, Later: 1},
		ByIssuer:     []store.Bucket{{"CN=CA One", 3}, {"CN=CA Two", 3}},
		BySource:     []store.Bucket{{"tls", 4}, {"file", 2}, {"pkcs11", 1}},
		Bots:         store.BotCounts{Total: 1, Pending: 1, Online: 1},
	}
	if d.Certificates != want.Certificates || d.Endpoints != want.Endpoints || d.Keys != want.Keys || d.Expiring != want.Expiring ||
		d.Bots != want.Bots || d.Templates != want.Templates {
		t.Errorf("counts:\n got %+v\nwant %+v", d, want)
	}
	for _, c := range []struct {
		name      string
		got, want []store.Bucket
	}{{"issuer", d.ByIssuer, want.ByIssuer}, {"source", d.BySource, want.BySource}} {
		if len(c.got) != len(c.want) {
			t.Errorf("by %s: %v, want %v", c.name, c.got, c.want)
			continue
		}
		for i := range c.got {
			if c.got[i] != c.want[i] {
				t.Errorf("by %s: %v, want %v", c.name, c.got, c.want)
			}
		}
	}
	if n := 0; len(d.ByKey) == 1 {
		n = d.ByKey[0].Count
		if n != 6 {
			t.Errorf("by key: %v", d.ByKey)
		}
	} else {
		t.Errorf("by key: %v (one key type in this set)", d.ByKey)
	}

	// A renewed certificate at the same place: the old one is gone at
	// once, the new one present; c2 stays present (it is still in a file).
	c1b := cert("c1", "CA One", 300*day)
	f.startScan(t, "s3")
	if _, err := st.Ingest(ctx, f.account, f.bot, "s3", protocol.FindingsBatch{Seq: 1, Findings: []protocol.Finding{
		finding(c1b, "tls://a:443"), finding(c1b, "tls://b:443")}}); err != nil {
		t.Fatal(err)
	}
	d, err = st.Dashboard(ctx, f.account, now)
	if err != nil {
		t.Fatal(err)
	}
	if d.Certificates.Discovered != 6 || d.Certificates.Gone != 2 || d.Expiring.Within7 != 0 || d.Expiring.Later != 2 {
		t.Errorf("after renewal: %+v %+v", d.Certificates, d.Expiring)
	}
	// The gone one found again.
	if _, err := st.Ingest(ctx, f.account, f.bot, "s3", protocol.FindingsBatch{Seq: 2, Findings: []protocol.Finding{
		finding(c5, "tls://h:443")}}); err != nil {
		t.Fatal(err)
	}
	if d, _ = st.Dashboard(ctx, f.account, now); d.Certificates.Discovered != 7 || d.Certificates.Gone != 1 {
		t.Errorf("found again: %+v", d.Certificates)
	}
}

func TestKeyFindings(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	f := newFixture(t, st, 1)
	other := newFixture(t, st, 1)
	g := testcert.NewGenerator(t)
	withKey := finding(g.New(t, testcert.Options{CN: "k"}), "file:///etc/k.p12")
	no := false
	withKey.Key = &protocol.KeyInfo{Algorithm: "ECDSA", Bits: 256, Extractable: &no}
	f.startScan(t, "s1")
	fs := []protocol.Finding{
		keyFinding("pkcs11:token=t;object=a;type=private;id=%01", "private", "01"),
		{Location: loc("ssh://h:22"), Source: "ssh", SeenAt: time.Now(), Key: &protocol.KeyInfo{Algorithm: "Ed25519", Bits: 256, Class: "public"}},
		withKey,
	}
	if _, err := st.Ingest(ctx, f.account, f.bot, "s1", protocol.FindingsBatch{Seq: 1, Findings: fs}); err != nil {
		t.Fatal(err)
	}
	if err := st.CompleteScan(ctx, f.account, f.bot, "s1", protocol.ScanComplete{Complete: true, Batches: 1}); err != nil {
		t.Fatal(err)
	}
	if errs, err := st.ScanErrors(ctx, f.account, f.bot, "s1", 0); err != nil || len(errs) != 0 {
		t.Fatalf("key findings made errors: %v, %v", errs, err)
	}
	keys, err := st.Keys(ctx, f.account, 0)
	if err != nil || len(keys) != 3 {
		t.Fatalf("keys: %+v, %v", keys, err)
	}
	byURI := map[string]store.Key{}
	for _, k := range keys {
		byURI[k.URI] = k
		if !k.Present || k.BotID != f.bot {
			t.Errorf("key %s: %+v", k.URI, k)
		}
	}
	if k := byURI["file:///etc/k.p12"]; k.Fingerprint == "" || k.Algorithm != "ECDSA" || k.Extractable == nil || *k.Extractable || k.Sensitive != nil {
		t.Errorf("certificate's key: %+v", k)
	}
	if k := byURI["pkcs11:token=t;object=a;type=private;id=%01"]; k.Class != "private" || k.KeyID != "01" || k.Fingerprint != "" ||
		len(k.Usage) != 1 || k.Usage[0] != "sign" {
		t.Errorf("key object: %+v", k)
	}
	if k, _ := st.Keys(ctx, other.account, 0); len(k) != 0 {
		t.Fatalf("another account sees keys: %+v", k)
	}

	// A complete scan that no longer reports them marks them gone; an
	// incomplete one does not.
	for _, c := range []struct {
		scan     string
		complete bool
		present  bool
	}{{"s2", false, true}, {"s3", true, false}} {
		f.startScan(t, c.scan)
		if _, err := st.Ingest(ctx, f.account, f.bot, c.scan, protocol.FindingsBatch{Seq: 1, Findings: []protocol.Finding{
			finding(g.New(t, testcert.Options{CN: "other"}), "tls://x:443")}}); err != nil {
			t.Fatal(err)
		}
		if err := st.CompleteScan(ctx, f.account, f.bot, c.scan, protocol.ScanComplete{Complete: c.complete, Batches: 1}); err != nil {
			t.Fatal(err)
		}
		keys, _ := st.Keys(ctx, f.account, 0)
		for _, k := range keys {
			if k.Present != c.present {
				t.Errorf("%s: key %s present %v, want %v", c.scan, k.URI, k.Present, c.present)
			}
		}
	}
}

// TestDashboardSourcesDistinct: a certificate counts once per source
// however many present locations of that source hold it; every present TLS
// location is a protected endpoint; gone locations count for neither.
func TestDashboardSourcesDistinct(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	f := newFixture(t, st, 1)
	g := testcert.NewGenerator(t)
	a, b, c := g.New(t, testcert.Options{CN: "a"}), g.New(t, testcert.Options{CN: "b"}), g.New(t, testcert.Options{CN: "c"})
	file := func(der []byte, uri string) protocol.Finding {
		fi := finding(der, uri)
		fi.Source = "file"
		return fi
	}
	scans := []struct {
		id       string
		findings []protocol.Finding
		want     []store.Bucket
		tls      int
	}{
		{"s1", []protocol.Finding{finding(a, "tls://a1:443"), finding(a, "tls://a2:443"), finding(a, "tls://a3:443"),
			file(a, "file:///a.pem"), file(a, "file:///a2.pem"), finding(b, "tls://b:443"), file(c, "file:///c.pem")},
			[]store.Bucket{{"file", 2}, {"tls", 2}}, 4},
		// a is gone from two TLS places and both files, c from its file.
		{"s2", []protocol.Finding{finding(a, "tls://a1:443"), finding(b, "tls://b:443"), finding(b, "tls://b2:443")},
			[]store.Bucket{{"tls", 2}}, 3},
		// a1 now holds c (a renewed): a is gone; c is back, in a file
		// again too.
		{"s3", []protocol.Finding{finding(c, "tls://a1:443"), finding(b, "tls://b:443"), file(c, "file:///c.pem")},
			[]store.Bucket{{"tls", 2}, {"file", 1}}, 2},
		// The same place now reported as a file (another source): c
		// loses TLS; a comes back through a new place in a JKS store.
		{"s4", []protocol.Finding{file(c, "tls://a1:443"), finding(b, "tls://b:443"), file(c, "file:///c.pem"),
			{Location: loc("jks:///k.jks"), Source: "jks", Chain: [][]byte{a}}},
			[]store.Bucket{{"file", 1}, {"jks", 1}, {"tls", 1}}, 1},
	}
	for _, s := range scans {
		f.startScan(t, s.id)
		if _, err := st.Ingest(ctx, f.account, f.bot, s.id, protocol.FindingsBatch{Seq: 1, Findings: s.findings}); err != nil {
			t.Fatal(err)
		}
		if err := st.CompleteScan(ctx, f.account, f.bot, s.id, protocol.ScanComplete{Complete: true, Batches: 1}); err != nil {
			t.Fatal(err)
		}
		d, err := st.Dashboard(ctx, f.account, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if len(d.BySource) != len(s.want) || d.Endpoints.Protected != s.tls {
			t.Fatalf("%s: by source %v, protected %d; want %v, %d", s.id, d.BySource, d.Endpoints.Protected, s.want, s.tls)
		}
		for i := range s.want {
			if d.BySource[i] != s.want[i] {
				t.Fatalf("%s: by source %v, want %v", s.id, d.BySource, s.want)
			}
		}
		// The certificates' sources column agrees with their locations.
		var wrong int
		if err := st.DB().QueryRow(`SELECT COUNT(*) FROM certificates c WHERE c.account_id = ? AND c.sources <>
			COALESCE((SELECT string_agg(source || ',', '' ORDER BY source) FROM (SELECT DISTINCT l.source FROM locations l
				WHERE l.account_id = c.account_id AND l.fingerprint = c.fingerprint AND l.present = 1)), '')`, f.account).Scan(&wrong); err != nil || wrong != 0 {
			t.Fatalf("%s: %d certificates whose sources column is not their present locations' (%v)", s.id, wrong, err)
		}
	}
}
