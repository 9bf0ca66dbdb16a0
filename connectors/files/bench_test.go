package files

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/emsign/bot/protocol"
)

// BenchmarkWalk walks a generated tree of 5,000 files shaped like /usr:
// mostly text and binaries that hold no certificate, some PEM bundles and
// keystores. It reports files per second.
func BenchmarkWalk(b *testing.B) {
	const files = 5000
	root := b.TempDir()
	corpus := corpusDir(b)
	pemBundle, err := os.ReadFile(filepath.Join(corpus, "pem", "bundle.pem"))
	if err != nil {
		b.Fatal(err)
	}
	jks, err := os.ReadFile(filepath.Join(corpus, "jks", "keystore.jks"))
	if err != nil {
		b.Fatal(err)
	}
	text := make([]byte, 8<<10)
	for i := range text {
		text[i] = "abcdefghij klmnop\n"[i%18]
	}
	binary := make([]byte, 32<<10)
	if _, err := rand.Read(binary); err != nil {
		b.Fatal(err)
	}
	binary[0] = 0x7f // an ELF-like start, never 0x30
	for i := range files {
		dir := filepath.Join(root, fmt.Sprintf("d%02d", i%50), fmt.Sprintf("e%d", i%7))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		var name string
		var data []byte
		switch {
		case i%50 == 0:
			name, data = fmt.Sprintf("cert%d.pem", i), pemBundle
		case i%250 == 1:
			name, data = fmt.Sprintf("store%d.jks", i), jks
		case i%2 == 0:
			name, data = fmt.Sprintf("doc%d.txt", i), text
		default:
			name, data = fmt.Sprintf("lib%d.so", i), binary
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	s := newSource(b, Config{Passwords: []protocol.Secret{protocol.NewSecret("changeit")}})
	tg := target(b, uri("file", root))
	b.ResetTimer()
	found := 0
	for b.Loop() {
		found = 0
		err := s.Discover(context.Background(), tg, func(f protocol.Finding) error {
			if f.Error != "" {
				return fmt.Errorf("unexpected problem: %s", f.Error)
			}
			found++
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if want := 2*(files/50) + 2*(files/250); found != want {
		b.Fatalf("found %d certificates, want %d", found, want)
	}
	b.ReportMetric(float64(files)*float64(b.N)/b.Elapsed().Seconds(), "files/s")
}
