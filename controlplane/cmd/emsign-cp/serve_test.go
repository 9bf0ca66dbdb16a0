package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lineWriter hands serve's first stdout line (its address) to a channel.
type lineWriter struct{ ch chan string }

func (w lineWriter) Write(p []byte) (int, error) {
	select {
	case w.ch <- string(p):
	default:
	}
	return len(p), nil
}

// P7: --ca-config and --public-url are checked before serving; the local
// CAs' files are mounted at /ca/.
func TestServeOrderingFlags(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"connectors":{"x":{"kind":"adcs"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name, caConfig, publicURL, want string
	}{
		{"missing file", filepath.Join(dir, "nope.json"), "", "ca config"},
		{"bad connector", bad, "", `connector "x": kind`},
		{"bad public URL", "", "ftp://cp", "public URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := serve(context.Background(), serveOptions{flags: &storeFlags{data: filepath.Join(dir, tc.name)},
				listen: "127.0.0.1:0", stdout: io.Discard, log: log, caConfig: tc.caConfig, publicURL: tc.publicURL})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if _, ok := err.(usageError); !ok {
				t.Fatalf("%T is not a usage error", err)
			}
		})
	}

	conf := filepath.Join(dir, "ca.json")
	if err := os.WriteFile(conf, []byte(`{"connectors":{"corp":{"kind":"acme","directory_url":"https://127.0.0.1:1/dir",
		"account_key_file":"corp.key","pre_validated":true}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := lineWriter{ch: make(chan string, 1)}
	done := make(chan error, 1)
	data := filepath.Join(dir, "data")
	logs := &lockedBuffer{}
	go func() {
		done <- serve(ctx, serveOptions{flags: &storeFlags{data: data}, listen: "127.0.0.1:0", stdout: out,
			log:      slog.New(slog.NewTextHandler(logs, nil)),
			caConfig: conf, publicURL: "https://cp.example.com"})
	}()
	var addr string
	select {
	case l := <-out.ch:
		var m map[string]string
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		addr = m["listening"]
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start")
	}
	caPEM, err := os.ReadFile(filepath.Join(data, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get("https://" + addr + "/ca/no-such-account/crl")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/ca/ of an unknown account: %d, want 404", resp.StatusCode)
	}
	if fi, err := os.Stat(filepath.Join(dir, "corp.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ACME account key not made 0600: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve ended with %v", err)
	}
	// The batch runner and the scheduler ran (P6, P9).
	if l := logs.String(); strings.Contains(l, "cannot run mass replacements") || strings.Contains(l, "cannot fire schedules") ||
		strings.Contains(l, "background runner stopped") {
		t.Fatalf("runners not started: %s", l)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
