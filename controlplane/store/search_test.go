package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/store"
)

// TestCertificateSearchIndex: searches read the index certificates_filter
// (q, issuer, type) and page through a deferred join; they must list and
// count exactly what a plain filter over every certificate gives, with
// LIKE's metacharacters in q and issuer taken literally, in every order,
// at every offset, and never another account's certificates.
func TestCertificateSearchIndex(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	f := newFixture(t, st, 1)
	other := newFixture(t, st, 1)
	names := []string{"a%b.example.com", "a_b.example.com", "axb.example.com", `a\b.example.com`, "UPPER.Example.COM",
		"plain.example.org", "100%.example.net", "x.example.com"}
	issuers := []string{"CN=Foo_Bar CA", "CN=Foo%Bar CA", "CN=FooXBar CA", `CN=Foo\Bar CA`}
	base := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	gen := func(account string) func(i int) store.Certificate {
		return func(i int) store.Certificate {
			sum := sha256.Sum256(fmt.Appendf(nil, "%s-%d", account, i))
			cn := names[i%len(names)]
			return store.Certificate{
				Fingerprint: hex.EncodeToString(sum[:]), Subject: "CN=" + cn, CommonName: cn,
				SANs: []string{cn, fmt.Sprintf("alt%d.Example.net", i)}, Issuer: issuers[(i/3)%len(issuers)],
				Serial: fmt.Sprint(i), NotBefore: base.AddDate(-1, 0, 0), NotAfter: base.AddDate(0, 0, (i*37)%90),
				KeyAlgorithm: "RSA", KeyBits: 2048, SignatureAlgorithm: "SHA256-RSA", IsCA: i%5 == 0,
				FirstSeen: base.Add(-time.Duration((i*13)%40) * time.Hour),
				Locations: []store.Location{{URI: fmt.Sprintf("tls://10.0.%d.%d:443", i/256, i%256), FirstSeen: base, LastSeen: base}},
			}
		}
	}
	const n = 60
	if err := st.InsertSyntheticCertificates(ctx, f.account, f.bot, n, gen(f.account)); err != nil {
		t.Fatal(err)
	}
	if err := st.InsertSyntheticCertificates(ctx, other.account, other.bot, n, gen(other.account)); err != nil {
		t.Fatal(err)
	}
	var all []store.Certificate
	for i := range n {
		all = append(all, gen(f.account)(i))
	}
	matches := func(c store.Certificate, flt store.CertificateFilter) bool {
		text := strings.ToLower(c.CommonName + "\n" + strings.Join(c.SANs, "\n"))
		switch {
		case flt.Q != "" && !strings.Contains(text, strings.ToLower(flt.Q)):
			return false
		case flt.Issuer != "" && !strings.Contains(strings.ToLower(c.Issuer), strings.ToLower(flt.Issuer)):
			return false
		case flt.Type == "ca" && !c.IsCA, flt.Type == "leaf" && c.IsCA:
			return false
		case !flt.ExpiresBefore.IsZero() && !c.NotAfter.Before(flt.ExpiresBefore):
			return false
		case flt.Source != "" && flt.Source != "tls", flt.BotID != "" && flt.BotID != f.bot:
			return false
		case flt.Location != "" && !strings.Contains(c.Locations[0].URI, strings.ToLower(flt.Location)):
			return false
		}
		return true
	}
	key := map[string]func(c store.Certificate) string{
		store.SortFingerprint: func(c store.Certificate) string { return "" },
		store.SortNotAfter:    func(c store.Certificate) string { return c.NotAfter.Format(time.RFC3339) },
		store.SortCommonName:  func(c store.Certificate) string { return c.CommonName },
		store.SortIssuer:      func(c store.Certificate) string { return c.Issuer },
		store.SortFirstSeen:   func(c store.Certificate) string { return c.FirstSeen.Format(time.RFC3339Nano) },
	}
	filters := []struct {
		name string
		f    store.CertificateFilter
		some bool // whether anything matches: the case tests what it means to
	}{
		{"percent", store.CertificateFilter{Q: "%"}, true},
		{"underscore", store.CertificateFilter{Q: "_"}, true},
		{"a%b", store.CertificateFilter{Q: "a%b"}, true},
		{"a_b", store.CertificateFilter{Q: "a_b"}, true},
		{"backslash", store.CertificateFilter{Q: `a\b`}, true},
		{"case", store.CertificateFilter{Q: "upper.EXAMPLE"}, true},
		{"san", store.CertificateFilter{Q: "ALT1"}, true},
		{"none", store.CertificateFilter{Q: "a%%b"}, false},
		{"issuer underscore", store.CertificateFilter{Issuer: "foo_bar"}, true},
		{"issuer percent", store.CertificateFilter{Issuer: "O%B"}, true},
		{"issuer backslash", store.CertificateFilter{Issuer: `o\b`}, true},
		{"leaf issuer", store.CertificateFilter{Type: "leaf", Issuer: "foo"}, true},
		{"ca", store.CertificateFilter{Type: "ca"}, true},
		{"q and expiry", store.CertificateFilter{Q: "example.com", ExpiresBefore: base.AddDate(0, 0, 45)}, true},
		{"q and source", store.CertificateFilter{Q: "b.example", Source: "tls"}, true},
		{"q and other source", store.CertificateFilter{Q: "b.example", Source: "file"}, false},
		{"source", store.CertificateFilter{Source: "tls"}, true},
		{"location", store.CertificateFilter{Location: "TLS://10.0.0.1"}, true},
		{"location percent", store.CertificateFilter{Location: "10.0.0.%"}, false},
		{"bot and issuer", store.CertificateFilter{BotID: f.bot, Issuer: "foo_"}, true},
		{"other bot", store.CertificateFilter{BotID: other.bot}, false},
	}
	for _, c := range filters {
		var want []store.Certificate
		for _, cert := range all {
			if matches(cert, c.f) {
				want = append(want, cert)
			}
		}
		if (len(want) > 0) != c.some {
			t.Fatalf("%s: the test's own filter finds %d", c.name, len(want))
		}
		got, err := st.CountCertificates(ctx, f.account, c.f)
		if err != nil || got != len(want) {
			t.Errorf("%s: count %d, %v; want %d", c.name, got, err, len(want))
		}
		for sort, k := range key {
			for _, desc := range []bool{false, true} {
				w := slices.Clone(want)
				slices.SortFunc(w, func(a, b store.Certificate) int {
					r := strings.Compare(k(a), k(b))
					if r == 0 {
						r = strings.Compare(a.Fingerprint, b.Fingerprint)
					}
					if desc {
						r = -r
					}
					return r
				})
				var fps []string
				for off := 0; off <= len(w); off += 7 {
					flt := c.f
					flt.Sort, flt.Desc, flt.Limit, flt.Offset = sort, desc, 7, off
					page, _, err := st.Certificates(ctx, f.account, flt)
					if err != nil {
						t.Fatalf("%s sort %q: %v", c.name, sort, err)
					}
					for _, p := range page {
						if len(p.Locations) != 1 {
							t.Fatalf("%s: %s has %d locations, want 1", c.name, p.Fingerprint, len(p.Locations))
						}
						fps = append(fps, p.Fingerprint)
					}
				}
				var wfps []string
				for _, x := range w {
					wfps = append(wfps, x.Fingerprint)
				}
				if !slices.Equal(fps, wfps) {
					t.Errorf("%s sort %q desc=%v:\n got %v\nwant %v", c.name, sort, desc, fps, wfps)
				}
			}
		}
	}
}
