//go:build linux

package tls

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ctls "crypto/tls"

	"github.com/emsign/bot/protocol"
)

// BenchmarkHandshakesNginx measures full ECDSA P-256 handshakes a second
// against nginx on loopback, the kind of server the figures were
// taken against (tlsx 1,368-1,724/s, zgrab2 1,111-1,212/s, a minimal Go
// pool 3,000-3,400/s; target at least 3,000/s). `make bench` installs nginx.
func BenchmarkHandshakesNginx(b *testing.B) {
	// 16 addresses x 100 ports: each Discover call has enough endpoints
	// that its workers stay busy to the end.
	const addrs, listeners = 16, 100
	ports := startNginx(b, addrs, listeners)
	target, err := protocol.ParseTarget(fmt.Sprintf("tls://127.0.0.1-127.0.0.%d:%s", addrs, joinInts(ports)))
	if err != nil {
		b.Fatal(err)
	}
	src, err := New(Config{Threads: 64})
	if err != nil {
		b.Fatal(err)
	}
	found := 0
	b.ResetTimer()
	start, cpu := time.Now(), processCPU(b)
	for i := 0; i < b.N; i += addrs * listeners {
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
	b.ReportMetric(float64((processCPU(b)-cpu).Microseconds())/float64(found), "client-CPU-µs/handshake")
}

// processCPU is the CPU time (user and system) this process has used: on a
// shared machine it varies less than wall-clock throughput does.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startNginx runs nginx with an ECDSA P-256 certificate on n ports of each
// of the loopback addresses 127.0.0.1 to 127.0.0.<addrs>.
func startNginx(b *testing.B, addrs, n int) []int {
	b.Helper()
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			b.Fatal("nginx is needed for this benchmark: make bench installs it (apt-get install nginx-light)")
		}
		nginx = "/usr/sbin/nginx"
	}
	dir := b.TempDir()
	cert := newCert(b, "bench.example.com", "ecdsa")
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		b.Fatal(err)
	}
	writePEM(b, filepath.Join(dir, "key.pem"), "PRIVATE KEY", keyDER)
	writePEM(b, filepath.Join(dir, "cert.pem"), "CERTIFICATE", cert.Certificate...)

	ports := make([]int, 0, n)
	var listen strings.Builder
	// Ports below 32768 are not handed out as source ports, so one found
	// free here stays free until nginx binds it.
	for p := 20000 + os.Getpid()%5000; p < 32000 && len(ports) < n; p++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		ports = append(ports, p)
		for a := 1; a <= addrs; a++ {
			fmt.Fprintf(&listen, "    listen 127.0.0.%d:%d ssl;\n", a, p)
		}
	}
	conf := fmt.Sprintf(`master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
  ssl_session_cache off;
  ssl_session_tickets off;
  server {
%[2]s    ssl_certificate %[1]s/cert.pem;
    ssl_certificate_key %[1]s/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    return 204;
  }
}
`, dir, listen.String())
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitListening(b, ports[len(ports)-1])
	return ports
}

// BenchmarkMinimalPoolNginx is the yardstick the figures name: a
// minimal Go pool (dial, handshake with X25519 preferred, close) against the
// same nginx, so that the connector's own overhead shows side by side.
func BenchmarkMinimalPoolNginx(b *testing.B) {
	const addrs, listeners = 16, 100
	ports := startNginx(b, addrs, listeners)
	cfg := &ctls.Config{InsecureSkipVerify: true, CurvePreferences: []ctls.CurveID{ctls.X25519}} //nolint:gosec // a benchmark yardstick
	jobs := make(chan string, 64)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 64 {
		wg.Go(func() {
			for addr := range jobs {
				c, err := net.DialTimeout("tcp", addr, 3*time.Second)
				if err != nil {
					failed.Add(1)
					continue
				}
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := ctls.Client(c, cfg).Handshake(); err != nil {
					failed.Add(1)
				}
				c.Close()
			}
		})
	}
	b.ResetTimer()
	start, cpu := time.Now(), processCPU(b)
	for i := range b.N {
		jobs <- fmt.Sprintf("127.0.0.%d:%d", 1+i%addrs, ports[(i/addrs)%len(ports)])
	}
	close(jobs)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d handshakes failed", n)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handshakes/s")
	b.ReportMetric(float64((processCPU(b)-cpu).Microseconds())/float64(b.N), "client-CPU-µs/handshake")
}
