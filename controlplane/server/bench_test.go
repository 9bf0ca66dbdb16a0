package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/store"
)

// BenchmarkCertificateSearch: 100,000 certificates in one account, GET
// /api/v1/certificates over HTTPS with a q filter (rare and common terms)
// and paging by the cursor. Reports the p95 latency of one page. Target
// (issue 3): p95 < 100 ms.
func BenchmarkCertificateSearch(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark")
	}
	const total = 100_000
	e := newEnv(b)
	account, key := e.account(1)
	id, _ := e.createBot(key, "web")
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	issuers := []string{"CN=Let's Encrypt R11", "CN=DigiCert Global G2", "CN=Internal Issuing CA 1", "CN=emSign SSL CA - G1"}
	start := time.Now()
	err := e.st.InsertSyntheticCertificates(context.Background(), account, id, total, func(i int) store.Certificate {
		sum := sha256.Sum256(fmt.Appendf(nil, "cert-%d", i))
		cn := fmt.Sprintf("host%06d.%s.example.com", i, []string{"prod", "dev", "corp", "lab"}[i%4])
		return store.Certificate{
			Fingerprint: hex.EncodeToString(sum[:]), Subject: "CN=" + cn + ",O=Example", CommonName: cn,
			SANs: []string{cn, fmt.Sprintf("alt%06d.example.net", i)}, Issuer: issuers[i%len(issuers)],
			Serial: fmt.Sprintf("%x", i), NotBefore: base, NotAfter: base.AddDate(0, 0, i%900), KeyAlgorithm: "RSA", KeyBits: 2048,
			SignatureAlgorithm: "SHA256-RSA", FirstSeen: base,
			Locations: []store.Location{{URI: fmt.Sprintf("tls://10.%d.%d.%d:443", i>>16&255, i>>8&255, i&255), FirstSeen: base, LastSeen: base}},
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("inserted %d certificates in %v", total, time.Since(start))

	client := e.transport()
	get := func(q url.Values) (time.Duration, string) {
		req, _ := http.NewRequest("GET", e.ts.URL+"/api/v1/certificates?"+q.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+key)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var out CertificatesPage
		if err := decode(resp, &out); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0), out.Next
	}
	queries := []url.Values{
		{"q": {"host04242"}},                    // rare: scans every row
		{"q": {"prod.example"}},                 // common: stops at one page
		{"q": {"alt0999"}, "limit": {"50"}},     // a few pages
		{"q": {"corp"}, "issuer": {"digicert"}}, // two filters
		{"q": {"example"}, "expires_before": {"2026-03-01T00:00:00Z"}},
	}
	var lat []time.Duration
	for b.Loop() {
		for _, q := range queries {
			q := maps(q)
			for page := 0; page < 3; page++ {
				d, next := get(q)
				lat = append(lat, d)
				if next == "" {
					break
				}
				q.Set("next", next)
			}
		}
	}
	slices.Sort(lat)
	p95 := lat[len(lat)*95/100]
	b.ReportMetric(float64(p95.Microseconds())/1000, "p95-ms")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
}

// CertificatesPage is the part of the answer the benchmark reads.
type CertificatesPage struct {
	Next string `json:"next"`
}

func maps(v url.Values) url.Values {
	c := url.Values{}
	for k, vs := range v {
		c[k] = slices.Clone(vs)
	}
	return c
}
