package ldap

import (
	"bytes"
	"context"
	"encoding/asn1"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
	"github.com/smallstep/pkcs7"

	"github.com/emsign/bot/protocol"
)

// fix holds the certificates of the fixture entries, by name.
var fix = map[string][]byte{}

// loadFixture adds the fixture entries:
//
//	ou=people:      alice (2 userCertificate), bob (userCertificate and a
//	                PKCS#7 userSMIMECertificate of 2), carol (none), mallory
//	                (a garbage userSMIMECertificate and a DER one);
//	                ou=contractors below it: dave (1)
//	ou=computers:   web01, a device (1)
//	ou=pki:         cn=Test CA, a pkiCA (cACertificate, crossCertificatePair)
//	ou=restricted:  cn=hidden (1), readable only after a bind
//	ou=refs:        a referral to ou=computers
//	cn=reader:      the bind DN of the tests
func (s *slapd) loadFixture() error {
	c, err := s.admin()
	if err != nil {
		return err
	}
	defer c.Close()
	ca := s.ca
	for _, n := range []string{"alice0", "alice1", "bob", "bobS0", "bobS1", "malloryS", "dave", "web01", "hidden", "TestCA", "pairFwd", "pairRev"} {
		fix[n] = ca.leaf(n)
	}
	p7, err := pkcs7.DegenerateCertificate(append(slices.Clone(fix["bobS0"]), fix["bobS1"]...))
	if err != nil {
		return err
	}
	// The pair is built by hand, with explicit [0] and [1] tags, so that
	// the connector's decoding is checked against an independent encoding
	// (which slapd validates too).
	pair, err := asn1.Marshal(struct{ F, R asn1.RawValue }{
		F: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: fix["pairFwd"]},
		R: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: fix["pairRev"]},
	})
	if err != nil {
		return err
	}
	person := func(cn, ou string, extra ...[2]any) entry {
		return entry{dn: "cn=" + cn + "," + ou + "," + suffix, attrs: append([][2]any{
			{"objectClass", []string{"inetOrgPerson", "pkiUser"}}, {"cn", cn}, {"sn", cn},
		}, extra...)}
	}
	ou := func(name string) entry {
		return entry{dn: name + "," + suffix, attrs: [][2]any{{"objectClass", "organizationalUnit"}, {"ou", strings.TrimPrefix(name, "ou=")}}}
	}
	entries := []entry{
		{dn: suffix, attrs: [][2]any{{"objectClass", []string{"dcObject", "organization"}}, {"o", "Example"}, {"dc", "example"}}},
		{dn: readerDN, attrs: [][2]any{{"objectClass", []string{"person", "simpleSecurityObject"}}, {"cn", "reader"}, {"sn", "reader"}, {"userPassword", readerPW}}},
		ou("ou=people"), ou("ou=computers"), ou("ou=pki"), ou("ou=restricted"), ou("ou=refs"), ou("ou=bulk"),
		{dn: "ou=contractors,ou=people," + suffix, attrs: [][2]any{{"objectClass", "organizationalUnit"}, {"ou", "contractors"}}},
		person("alice", "ou=people", [2]any{"userCertificate;binary", [][]byte{fix["alice0"], fix["alice1"]}}),
		person("bob", "ou=people", [2]any{"userCertificate;binary", fix["bob"]}, [2]any{"userSMIMECertificate", p7}),
		person("carol", "ou=people"),
		person("mallory", "ou=people", [2]any{"userSMIMECertificate", [][]byte{[]byte("\x30\x03garbage, not a certificate"), fix["malloryS"]}}),
		person("dave", "ou=contractors,ou=people", [2]any{"userCertificate;binary", fix["dave"]}),
		{dn: "cn=web01,ou=computers," + suffix, attrs: [][2]any{
			{"objectClass", []string{"device", "pkiUser"}}, {"cn", "web01"}, {"userCertificate;binary", fix["web01"]}}},
		{dn: "cn=Test CA,ou=pki," + suffix, attrs: [][2]any{
			{"objectClass", []string{"applicationProcess", "pkiCA"}}, {"cn", "Test CA"},
			{"cACertificate;binary", fix["TestCA"]}, {"crossCertificatePair;binary", pair}}},
		person("hidden", "ou=restricted", [2]any{"userCertificate;binary", fix["hidden"]}),
		{dn: "ou=link,ou=refs," + suffix, attrs: [][2]any{
			{"objectClass", []string{"referral", "extensibleObject"}}, {"ou", "link"},
			{"ref", "ldap://" + s.hostPort() + "/ou=computers," + suffix + "??sub"}}},
	}
	for _, e := range entries {
		if err := add(c, e); err != nil {
			return err
		}
	}
	return nil
}

func newSource(t *testing.T, cfg Config) *Source {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// scan runs a target and returns its findings by location.
func scan(t *testing.T, src *Source, target string) (map[string]protocol.Finding, error) {
	t.Helper()
	tg, err := protocol.ParseTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]protocol.Finding{}
	err = src.Discover(context.Background(), tg, func(f protocol.Finding) error {
		k := f.Location.String()
		// The 10,000 paging entries, once loaded, stay in the shared server;
		// fixture tests leave them out so that neither test order nor
		// -count changes what they see.
		if strings.Contains(k, ",ou=bulk,") && !strings.Contains(tg.BaseDN(), "ou=bulk") {
			return nil
		}
		if _, dup := got[k]; dup {
			t.Errorf("location %s emitted twice", k)
		}
		// A location is a dedupe key: it must read back.
		if back, err := protocol.ParseLocation(k); err != nil || back != f.Location {
			t.Errorf("location %s does not round-trip: %+v, %v", k, back, err)
		}
		got[k] = f
		return nil
	})
	return got, err
}

func keys(m map[string]protocol.Finding) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	slices.Sort(k)
	return k
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs slapd; runs without -short")
	}
}

// want checks the certificate at a location.
func want(t *testing.T, got map[string]protocol.Finding, loc, cert, format string) {
	t.Helper()
	f, ok := got[loc]
	if !ok {
		t.Errorf("no finding at %s; have:\n%s", loc, strings.Join(keys(got), "\n"))
		return
	}
	if f.Error != "" || len(f.Chain) != 1 || !bytes.Equal(f.Chain[0], fix[cert]) {
		t.Errorf("%s: error %q, %d certificates, want %s", loc, f.Error, len(f.Chain), cert)
	}
	if f.Format != format {
		t.Errorf("%s: format %q, want %q", loc, f.Format, format)
	}
}

func TestDirectoryBindDNFindsEverything(t *testing.T) {
	skipShort(t)
	s := needSlapd(t)
	src := newSource(t, Config{})
	h := s.hostPort()
	got, err := scan(t, src, "ldap://"+h+"/"+suffix+"?bind_dn="+readerDN+"&password="+readerPW)
	if err != nil {
		t.Fatal(err)
	}
	base := "ldap://" + h + "/"
	want(t, got, base+"cn=alice,ou=people,dc=example,dc=com?userCertificate;binary#0", "alice0", "der")
	want(t, got, base+"cn=alice,ou=people,dc=example,dc=com?userCertificate;binary#1", "alice1", "der")
	want(t, got, base+"cn=bob,ou=people,dc=example,dc=com?userCertificate;binary#0", "bob", "der")
	want(t, got, base+"cn=bob,ou=people,dc=example,dc=com?userSMIMECertificate#0.0", "bobS0", "pkcs7")
	want(t, got, base+"cn=bob,ou=people,dc=example,dc=com?userSMIMECertificate#0.1", "bobS1", "pkcs7")
	want(t, got, base+"cn=mallory,ou=people,dc=example,dc=com?userSMIMECertificate#1", "malloryS", "der")
	want(t, got, base+"cn=dave,ou=contractors,ou=people,dc=example,dc=com?userCertificate;binary#0", "dave", "der")
	want(t, got, base+"cn=web01,ou=computers,dc=example,dc=com?userCertificate;binary#0", "web01", "der")
	want(t, got, base+"cn=Test%20CA,ou=pki,dc=example,dc=com?cACertificate;binary#0", "TestCA", "der")
	want(t, got, base+"cn=Test%20CA,ou=pki,dc=example,dc=com?crossCertificatePair;binary#0.forward", "pairFwd", "der")
	want(t, got, base+"cn=Test%20CA,ou=pki,dc=example,dc=com?crossCertificatePair;binary#0.reverse", "pairRev", "der")
	want(t, got, base+"cn=hidden,ou=restricted,dc=example,dc=com?userCertificate;binary#0", "hidden", "der")

	bad := got[base+"cn=mallory,ou=people,dc=example,dc=com?userSMIMECertificate#0"]
	if bad.Error == "" || len(bad.Chain) != 0 || !strings.Contains(bad.Error, "neither PKCS#7 nor an X.509 certificate") {
		t.Errorf("garbage value: %+v", bad)
	}
	if len(got) != 13 {
		t.Errorf("%d findings, want 13:\n%s", len(got), strings.Join(keys(got), "\n"))
	}
	for k, f := range got {
		if f.Source != "ldap" || f.Location.Scheme != "ldap" || f.Location.Host != h || f.SeenAt.IsZero() {
			t.Errorf("%s: source %q, location %+v, seen %v", k, f.Source, f.Location, f.SeenAt)
		}
	}
}

func TestDirectoryAnonymous(t *testing.T) {
	skipShort(t)
	s := needSlapd(t)
	got, err := scan(t, newSource(t, Config{}), "ldap://"+s.hostPort()+"/"+suffix)
	if err != nil {
		t.Fatal(err)
	}
	// Everything but what the ACL keeps from anonymous users.
	if len(got) != 12 {
		t.Errorf("%d findings, want 12:\n%s", len(got), strings.Join(keys(got), "\n"))
	}
	for k := range got {
		if strings.Contains(k, "restricted") {
			t.Errorf("anonymous bind read %s", k)
		}
	}
}

func TestDirectoryWrongPassword(t *testing.T) {
	skipShort(t)
	s := needSlapd(t)
	var logs bytes.Buffer
	src := newSource(t, Config{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	const wrong = "Wr0ng-pw_Kj2m"
	got, err := scan(t, src, "ldap://"+s.hostPort()+"/"+suffix+"?bind_dn="+readerDN+"&password="+wrong)
	if err == nil {
		t.Fatal("no error for a wrong password")
	}
	t.Log(err)
	if want := "ldap: bind as " + readerDN + ": invalid credentials"; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want it to start with %q", err, want)
	}
	if len(got) != 0 {
		t.Errorf("%d findings after a failed bind", len(got))
	}
	// A right password, with debug logs: neither shows in logs or errors.
	if _, err := scan(t, src, "ldaps://"+s.tlsHostPort()+"/"+suffix+"?bind_dn="+readerDN+"&password="+readerPW+"&ca_file="+s.caFile); err != nil {
		t.Fatal(err)
	}
	if _, err := scan(t, src, "ldap://"+s.hostPort()+"/ou=nowhere,"+suffix+"?bind_dn="+readerDN+"&password="+readerPW); err == nil {
		t.Error("no error for a base DN that does not exist")
	} else if strings.Contains(err.Error(), readerPW) || !strings.Contains(err.Error(), "no such object") {
		t.Errorf("missing base: %v", err)
	}
	for _, pw := range []string{wrong, readerPW} {
		if strings.Contains(err.Error(), pw) || strings.Contains(logs.String(), pw) {
			t.Errorf("password %s leaked: error %q, logs:\n%s", pw, err, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "password=") {
		t.Errorf("logs do not show the (redacted) target, so the test proves nothing:\n%s", logs.String())
	}
}

func TestDirectoryScopeAndBase(t *testing.T) {
	skipShort(t)
	s := needSlapd(t)
	src := newSource(t, Config{})
	h := "ldap://" + s.hostPort() + "/"
	for _, c := range []struct {
		target string
		n      int
	}{
		{h + "ou=people," + suffix, 8},
		{h + "ou=people," + suffix + "?scope=sub", 8},
		{h + "ou=people," + suffix + "?scope=one", 7},
		{h + "cn=alice,ou=people," + suffix + "?scope=base", 2},
		{h + "ou=people," + suffix + "?scope=base", 0},
		{h + "ou=computers," + suffix, 1},
		{h + "ou=pki," + suffix, 3},
		{h + suffix + "?filter=(cn=alice)", 2},
		{h + suffix + "?filter=cn=bob", 3},
		{h + suffix + "?filter=(|(cn=alice)(objectClass=device))", 3},
		{h + suffix + "?filter=(objectClass=pkiCA)", 3},
		{h + suffix + "?filter=(cn=carol)", 0},
	} {
		got, err := scan(t, src, c.target)
		if err != nil {
			t.Errorf("%s: %v", c.target, err)
			continue
		}
		if len(got) != c.n {
			t.Errorf("%s: %d findings, want %d:\n%s", c.target, len(got), c.n, strings.Join(keys(got), "\n"))
		}
		if !strings.Contains(c.target, "restricted") {
			for k := range got {
				if !strings.HasPrefix(k, "ldap://"+s.hostPort()+"/") {
					t.Errorf("%s: location %s", c.target, k)
				}
			}
		}
	}
	if _, err := scan(t, src, h+suffix+"?filter=(cn=alice"); err == nil || !strings.Contains(err.Error(), "filter") {
		t.Errorf("bad filter: %v", err)
	}
}

func TestDirectoryTLS(t *testing.T) {
	skipShort(t)
	s := needSlapd(t)
	src := newSource(t, Config{DialTimeout: 5 * time.Second})
	auth := "&bind_dn=" + readerDN + "&password=" + readerPW
	for _, c := range []struct {
		target, scheme, fail string
	}{
		{"ldaps://" + s.tlsHostPort() + "/" + suffix + "?ca_file=" + s.caFile + auth, "ldaps", ""},
		{"ldaps://" + s.tlsHostPort() + "/" + suffix + "?insecure=true" + auth, "ldaps", ""},
		{"ldap://" + s.hostPort() + "/" + suffix + "?starttls=true&ca_file=" + s.caFile + auth, "ldap", ""},
		{"ldaps://" + s.tlsHostPort() + "/" + suffix + "?bind_dn=" + readerDN + "&password=" + readerPW, "", "certificate signed by unknown authority"},
		{"ldap://" + s.hostPort() + "/" + suffix + "?starttls=true" + auth, "", "certificate signed by unknown authority"},
		{"ldaps://localhost:" + fmt.Sprint(s.tlsPort) + "/" + suffix + "?ca_file=" + s.caFile + "&insecure=false" + auth, "ldaps", ""},
	} {
		got, err := scan(t, src, c.target)
		if c.fail != "" {
			t.Logf("%s: %v", c.target, err)
			if err == nil || !strings.Contains(err.Error(), c.fail) || !strings.Contains(err.Error(), "ca_file=") {
				t.Errorf("%s: error %v, want %q with advice", c.target, err, c.fail)
			}
			if err != nil && strings.Contains(err.Error(), readerPW) {
				t.Errorf("password in error %q", err)
			}
			if len(got) != 0 {
				t.Errorf("%s: %d findings from an untrusted server", c.target, len(got))
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.target, err)
			continue
		}
		if len(got) != 13 {
			t.Errorf("%s: %d findings, want 13", c.target, len(got))
		}
		for k, f := range got {
			if f.Location.Scheme != c.scheme || f.Source != c.scheme {
				t.Errorf("%s: %s has scheme %s, source %s", c.target, k, f.Location.Scheme, f.Source)
			}
		}
	}
}

func TestDirectoryReferrals(t *testing.T) {
	skipShort(t)
	s := needSlapd(t)
	var logs bytes.Buffer
	src := newSource(t, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	h := "ldap://" + s.hostPort() + "/ou=refs," + suffix + "?bind_dn=" + readerDN + "&password=" + readerPW
	got, err := scan(t, src, h)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 || !strings.Contains(logs.String(), "referrals not followed") {
		t.Errorf("referrals=false: %d findings, logs:\n%s", len(got), logs.String())
	}
	got, err = scan(t, src, h+"&referrals=true")
	if err != nil {
		t.Fatal(err)
	}
	want(t, got, "ldap://"+s.hostPort()+"/cn=web01,ou=computers,dc=example,dc=com?userCertificate;binary#0", "web01", "der")
	if len(got) != 1 {
		t.Errorf("referrals=true: %d findings, want 1:\n%s", len(got), strings.Join(keys(got), "\n"))
	}
	if strings.Contains(logs.String(), readerPW) {
		t.Error("password in logs")
	}
}

func TestDirectoryEmitErrorEndsDiscovery(t *testing.T) {
	skipShort(t)
	s := needSlapd(t)
	tg, _ := protocol.ParseTarget("ldap://" + s.hostPort() + "/" + suffix)
	stop := errors.New("receiver gave up")
	n := 0
	err := newSource(t, Config{}).Discover(context.Background(), tg, func(protocol.Finding) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("err %v after %d findings, want the emit error after 1", err, n)
	}
}

var bulkOnce sync.Once

const bulkEntries = 10000

// loadBulk adds bulkEntries users with a certificate each under ou=bulk,
// through several requests in flight on one connection.
func (s *slapd) loadBulk(t *testing.T) {
	t.Helper()
	var loadErr error
	bulkOnce.Do(func() {
		c, err := s.admin()
		if err != nil {
			loadErr = err
			return
		}
		defer c.Close()
		jobs := make(chan int)
		var wg sync.WaitGroup
		var mu sync.Mutex
		for range 8 {
			wg.Go(func() {
				for i := range jobs {
					cn := fmt.Sprintf("u%05d", i)
					err := add(c, entry{dn: "cn=" + cn + ",ou=bulk," + suffix, attrs: [][2]any{
						{"objectClass", []string{"inetOrgPerson", "pkiUser"}}, {"cn", cn}, {"sn", cn},
						{"userCertificate;binary", s.ca.leaf(cn)}}})
					if err != nil {
						mu.Lock()
						loadErr = err
						mu.Unlock()
					}
				}
			})
		}
		for i := range bulkEntries {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
	})
	if loadErr != nil {
		t.Fatal(loadErr)
	}
}

// TestDirectoryBulkPaged reads 10,000 entries in pages of 500 and checks
// that each page's entries are emitted before the next page is asked for:
// a connector that buffered the whole search fails it.
func TestDirectoryBulkPaged(t *testing.T) {
	skipShort(t)
	s := needSlapd(t)
	start := time.Now()
	s.loadBulk(t)
	t.Logf("loaded %d entries in %v", bulkEntries, time.Since(start))

	src := newSource(t, Config{})
	var pageStarts []int // findings emitted when each page was requested
	emitted := 0
	src.pageHook = func(page int) {
		if page != len(pageStarts)+1 {
			t.Errorf("page %d after %d pages", page, len(pageStarts))
		}
		pageStarts = append(pageStarts, emitted)
	}
	tg, err := protocol.ParseTarget("ldap://" + s.hostPort() + "/ou=bulk," + suffix + "?page_size=500")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	maxInPage := 0
	start = time.Now()
	err = src.Discover(context.Background(), tg, func(f protocol.Finding) error {
		if f.Error != "" || len(f.Chain) != 1 {
			t.Errorf("%s: %q", f.Location, f.Error)
		}
		seen[f.Location.String()] = true
		emitted++
		if len(pageStarts) == 0 {
			t.Fatal("a finding before any page was requested")
		}
		maxInPage = max(maxInPage, emitted-pageStarts[len(pageStarts)-1])
		return nil
	})
	t.Logf("read %d entries in %d pages in %v", emitted, len(pageStarts), time.Since(start))
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != bulkEntries || emitted != bulkEntries {
		t.Errorf("%d findings at %d locations, want %d", emitted, len(seen), bulkEntries)
	}
	if len(pageStarts) < bulkEntries/500 {
		t.Fatalf("%d pages, want at least %d", len(pageStarts), bulkEntries/500)
	}
	for i, n := range pageStarts {
		if n != i*500 {
			t.Errorf("page %d requested after %d findings, want %d: entries were held back", i+1, n, i*500)
		}
	}
	if maxInPage > 500 {
		t.Errorf("%d findings from one page, want at most 500", maxInPage)
	}
}

// TestDirectoryCancel cancels in the middle of a large search.
func TestDirectoryCancel(t *testing.T) {
	skipShort(t)
	s := needSlapd(t)
	s.loadBulk(t)
	tg, _ := protocol.ParseTarget("ldap://" + s.hostPort() + "/ou=bulk," + suffix + "?page_size=1000")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n, after atomic.Int64
	done := make(chan error, 1)
	go func() {
		done <- newSource(t, Config{}).Discover(ctx, tg, func(protocol.Finding) error {
			if ctx.Err() != nil {
				after.Add(1)
			}
			if n.Add(1) == 1500 {
				cancel()
			}
			return nil
		})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Discover did not return after cancel")
	}
	if after.Load() != 0 || n.Load() != 1500 {
		t.Errorf("%d findings, %d of them after cancel", n.Load(), after.Load())
	}
}

// The connection to the test server is used by goldap directly here to make
// sure the fixture is what the tests think.
func TestDirectoryFixtureNamesBinary(t *testing.T) {
	skipShort(t)
	s := needSlapd(t)
	c, err := goldap.DialURL("ldap://" + s.hostPort())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Search(goldap.NewSearchRequest("cn=alice,ou=people,"+suffix, goldap.ScopeBaseObject, 0, 0, 0, false,
		"(objectClass=*)", []string{"userCertificate"}, nil))
	if err != nil || len(res.Entries) != 1 || len(res.Entries[0].Attributes) != 1 {
		t.Fatalf("%v %+v", err, res)
	}
	// slapd answers with the ;binary name even when asked without it.
	if n := res.Entries[0].Attributes[0].Name; n != "userCertificate;binary" {
		t.Errorf("attribute %q", n)
	}
}
