package tls

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	ctls "crypto/tls"

	"github.com/emsign/bot/protocol"
)

// BenchmarkHandshakes measures full ECDSA handshakes a second against Go TLS
// servers on loopback (issue 2 target: 3,000/s on two cores).
func BenchmarkHandshakes(b *testing.B) {
	for _, pq := range []bool{false, true} {
		b.Run(fmt.Sprintf("pq=%v", pq), func(b *testing.B) {
			const listeners = 1000
			cert := newCert(b, "bench.example.com", "ecdsa")
			ports := make([]string, 0, listeners)
			for range listeners {
				ln := serveTLS(b, &ctls.Config{Certificates: []ctls.Certificate{cert}})
				ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
			}
			target, err := protocol.ParseTarget("tls://127.0.0.1:" + strings.Join(ports, ","))
			if err != nil {
				b.Fatal(err)
			}
			src, err := New(Config{Threads: 64, PostQuantum: pq})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			found := 0
			for i := 0; i < b.N; i += listeners {
				err := src.Discover(context.Background(), target, func(f protocol.Finding) error {
					if f.Error != "" {
						return fmt.Errorf("%s: %s", f.Location, f.Error)
					}
					found++
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(found)/time.Since(start).Seconds(), "handshakes/s")
		})
	}
}

// BenchmarkPortSweep measures a connect sweep of all 65,535 ports of one
// loopback address (issue 2 target: at most 1.5 s; nmap -sT takes 2.2 s).
func BenchmarkPortSweep(b *testing.B) {
	target, err := protocol.ParseTarget("tls://127.0.0.1:1-65535")
	if err != nil {
		b.Fatal(err)
	}
	src, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := src.Discover(context.Background(), target, func(protocol.Finding) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/sweep")
}

// BenchmarkSlash16 sweeps 127.0.0.0/16 on three closed ports (196,608
// probes) and reports the process's peak resident memory (issue 2 target:
// under 100 MB).
func BenchmarkSlash16(b *testing.B) {
	target, err := protocol.ParseTarget("tls://127.0.0.0/16:1,2,3")
	if err != nil {
		b.Fatal(err)
	}
	src, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := src.Discover(context.Background(), target, func(protocol.Finding) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(target.Endpoints.Count())*float64(b.N)/b.Elapsed().Seconds(), "probes/s")
	b.ReportMetric(peakRSSMB(b), "peak-RSS-MB")
}

// peakRSSMB reads VmHWM, the process's high-water resident set.
func peakRSSMB(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatalf("read peak memory: %v", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				b.Fatalf("parse VmHWM %q: %v", v, err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmHWM in /proc/self/status")
	return 0
}
