package protocol

import "testing"

// BenchmarkEndpointIteration walks every endpoint of a /16 on three ports
// (196,608 endpoints) and reports the rate.
func BenchmarkEndpointIteration(b *testing.B) {
	tg, err := ParseTarget("tls://10.20.0.0/16:443,8443,9443")
	if err != nil {
		b.Fatal(err)
	}
	spec := tg.Endpoints
	want := spec.Count()
	if want != 65536*3 {
		b.Fatalf("Count = %d", want)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var total uint64
	for b.Loop() {
		var n uint64
		for e := range spec.All() {
			if e.Port == 0 {
				b.Fatal("port 0")
			}
			n++
		}
		if n != want {
			b.Fatalf("iterated %d endpoints, want %d", n, want)
		}
		total += n
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "endpoints/s")
	b.ReportMetric(float64(want), "endpoints/op")
}

// BenchmarkParseTarget parses a typical sweep target.
func BenchmarkParseTarget(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseTarget("tls://10.0.0.0/24,10.1.0.1-10.1.0.254,www.example.com:443,8443,1-899?sni=www.example.com"); err != nil {
			b.Fatal(err)
		}
	}
}
