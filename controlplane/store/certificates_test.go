package store_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/internal/testcert"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

func TestCertificateSortCount(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	f := newFixture(t, st, 1)
	other := newFixture(t, st, 1)
	g := testcert.NewGenerator(t)
	f.startScan(t, "s")
	var fs []protocol.Finding
	for i := range 12 {
		der := g.New(t, testcert.Options{
			CN:       fmt.Sprintf("host%02d.example.com", (i*5)%12),
			Issuer:   []string{"B CA", "A CA", "C CA"}[i%3],
			NotAfter: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, (i*7)%12, 0),
		})
		src, uri := "tls", fmt.Sprintf("tls://10.0.0.%d:443", i)
		if i%4 == 0 {
			src, uri = "file", fmt.Sprintf("file:///etc/ssl/h%d.pem", i)
		}
		fs = append(fs, protocol.Finding{Location: loc(uri), Source: src, Chain: [][]byte{der}})
	}
	if _, err := st.Ingest(ctx, f.account, f.bot, "s", protocol.FindingsBatch{Seq: 1, Findings: fs}); err != nil {
		t.Fatal(err)
	}
	other.startScan(t, "o")
	if _, err := st.Ingest(ctx, other.account, other.bot, "o", protocol.FindingsBatch{Seq: 1, Findings: []protocol.Finding{
		{Location: loc("jks:///x.jks"), Source: "jks", Chain: [][]byte{g.New(t, testcert.Options{CN: "o", Issuer: "Z CA"})}}}}); err != nil {
		t.Fatal(err)
	}
	all, _, err := st.Certificates(ctx, f.account, store.CertificateFilter{})
	if err != nil || len(all) != 12 {
		t.Fatalf("all: %d, %v", len(all), err)
	}
	key := map[string]func(c store.Certificate) string{
		store.SortFingerprint: func(c store.Certificate) string { return "" },
		store.SortNotAfter:    func(c store.Certificate) string { return c.NotAfter.Format(time.RFC3339) },
		store.SortCommonName:  func(c store.Certificate) string { return c.CommonName },
		store.SortIssuer:      func(c store.Certificate) string { return c.Issuer },
		store.SortFirstSeen:   func(c store.Certificate) string { return c.FirstSeen.Format(time.RFC3339Nano) },
	}
	for sort, k := range key {
		for _, desc := range []bool{false, true} {
			t.Run(fmt.Sprintf("%q desc=%v", sort, desc), func(t *testing.T) {
				want := slices.Clone(all)
				slices.SortFunc(want, func(a, b store.Certificate) int {
					c := strings.Compare(k(a), k(b))
					if c == 0 {
						c = strings.Compare(a.Fingerprint, b.Fingerprint)
					}
					if desc {
						c = -c
					}
					return c
				})
				// Pages of 5 by offset give the whole order.
				var got []string
				for off := 0; off < 12; off += 5 {
					page, next, err := st.Certificates(ctx, f.account, store.CertificateFilter{Sort: sort, Desc: desc, Limit: 5, Offset: off})
					if err != nil {
						t.Fatal(err)
					}
					if sort != store.SortFingerprint && next != "" {
						t.Fatalf("cursor %q for sort %q", next, sort)
					}
					for _, c := range page {
						got = append(got, c.Fingerprint)
					}
				}
				for i := range want {
					if got[i] != want[i].Fingerprint {
						t.Fatalf("position %d: got %s, want %s (%s)", i, got[i], want[i].Fingerprint, k(want[i]))
					}
				}
			})
		}
	}

	// The cursor, descending.
	var got []string
	flt := store.CertificateFilter{Desc: true, Limit: 5}
	for {
		page, next, err := st.Certificates(ctx, f.account, flt)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page {
			got = append(got, c.Fingerprint)
		}
		if next == "" {
			break
		}
		flt.After = next
	}
	if len(got) != 12 || !slices.IsSortedFunc(got, func(a, b string) int { return strings.Compare(b, a) }) {
		t.Fatalf("descending by cursor: %v", got)
	}

	counts := []struct {
		name string
		f    store.CertificateFilter
		want int
	}{
		{"all", store.CertificateFilter{}, 12},
		{"limit and offset ignored", store.CertificateFilter{Limit: 2, Offset: 5}, 12},
		{"issuer", store.CertificateFilter{Issuer: "a ca"}, 4},
		{"source", store.CertificateFilter{Source: "file"}, 3},
		{"leaf", store.CertificateFilter{Type: "leaf"}, 12},
		{"ca", store.CertificateFilter{Type: "ca"}, 0},
		{"q", store.CertificateFilter{Q: "HOST0"}, 10},
	}
	for _, c := range counts {
		n, err := st.CountCertificates(ctx, f.account, c.f)
		if err != nil || n != c.want {
			t.Errorf("count %s: %d, %v; want %d", c.name, n, err, c.want)
		}
		page, _, err := st.Certificates(ctx, f.account, store.CertificateFilter{Issuer: c.f.Issuer, Source: c.f.Source, Type: c.f.Type, Q: c.f.Q})
		if err != nil || len(page) != c.want {
			t.Errorf("search %s: %d, %v; want %d", c.name, len(page), err, c.want)
		}
	}
	for _, bad := range []store.CertificateFilter{
		{Sort: "subject"}, {Sort: store.SortIssuer, After: all[0].Fingerprint}, {Type: "root"}, {Offset: -1},
	} {
		if _, _, err := st.Certificates(ctx, f.account, bad); err == nil {
			t.Errorf("%+v: no error", bad)
		} else if bad.After != "" && !strings.Contains(err.Error(), "after") {
			t.Errorf("%+v: %v does not name the field", bad, err)
		}
	}

	issuers, sources, err := st.FacetValues(ctx, f.account)
	if err != nil || !slices.Equal(issuers, []string{"CN=A CA", "CN=B CA", "CN=C CA"}) || !slices.Equal(sources, []string{"file", "tls"}) {
		t.Fatalf("facets: %v %v %v", issuers, sources, err)
	}
}
