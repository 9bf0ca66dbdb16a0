package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/protocol"
)

// runBot runs the command line in-process and returns exit code, stdout and
// stderr.
func runBot(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// jsonLines decodes JSON Lines output into generic objects, so the test
// reads the field names a user's jq would.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var rows []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("output line is not JSON: %q: %v", sc.Text(), err)
		}
		rows = append(rows, m)
	}
	return rows
}

func TestBadTargetExits2NamingIt(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"scan", "tls://999.1.1.1"}, []string{"tls://999.1.1.1", "999.1.1.1 is not an IP address"}},
		{[]string{"scan", "tls://10.0.0.1:0"}, []string{"tls://10.0.0.1:0", "not a port"}},
		{[]string{"scan", "ftp://x"}, []string{"ftp://x", "unknown scheme"}},
		{[]string{"scan", "file:///tmp?password=hunter2&bogus=1"}, []string{"unknown parameter \"bogus\""}},
		{[]string{"scan", "tls://127.0.0.1:1", "tls://10.0.0.300"}, []string{"10.0.0.300 is not an IP address"}},
		{[]string{"scan"}, []string{"requires at least 1 arg"}},
		{[]string{"scan", "--format", "xml", "tls://127.0.0.1:1"}, []string{"unknown format"}},
		{[]string{"scan", "--threads", "x", "tls://127.0.0.1:1"}, []string{"invalid argument"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := runBot(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want 2; stderr %s", code, stderr)
			}
			if stdout != "" {
				t.Errorf("something was scanned or printed: %q", stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not contain %q", stderr, w)
				}
			}
			if strings.Contains(stderr, "hunter2") {
				t.Error("a password appears in an error message")
			}
		})
	}
}

// serveTLS runs a TLS server with a fresh self-signed ECDSA certificate for
// name and returns its port and certificate.
func serveTLS(t *testing.T, name string) (int, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Example"}},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, der
}

// The JSON fields named in issue 2 are a contract.
func TestScanTLSJSONContract(t *testing.T) {
	port, der := serveTLS(t, "json.example.com")
	code, stdout, stderr := runBot(t, "scan", "--format", "json", fmt.Sprintf("tls://127.0.0.1:%d-%d", port, port+2))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rows := jsonLines(t, stdout)
	if len(rows) != 1 {
		t.Fatalf("got %d lines, want 1 (closed ports give none): %s", len(rows), stdout)
	}
	r := rows[0]
	for _, field := range []string{"location", "source", "fingerprint_sha256", "subject", "sans", "issuer", "serial",
		"not_before", "not_after", "key_algorithm", "key_bits", "signature_algorithm", "has_private_key", "tls"} {
		if _, ok := r[field]; !ok {
			t.Errorf("field %q missing from %v", field, r)
		}
	}
	want := map[string]any{
		"location":            fmt.Sprintf("tls://127.0.0.1:%d", port),
		"source":              "tls",
		"fingerprint_sha256":  protocol.Fingerprint(der),
		"subject":             "CN=json.example.com,O=Example",
		"key_algorithm":       "ECDSA",
		"key_bits":            float64(256),
		"signature_algorithm": "ECDSA-SHA256",
		"has_private_key":     false,
		"serial":              "2a",
	}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("%s = %v, want %v", k, r[k], v)
		}
	}
	if _, err := time.Parse(time.RFC3339, r["not_after"].(string)); err != nil {
		t.Errorf("not_after is not RFC 3339: %v", err)
	}
	if sans := r["sans"].([]any); len(sans) != 1 || sans[0] != "json.example.com" {
		t.Errorf("sans %v", sans)
	}
	if tl := r["tls"].(map[string]any); tl["version"] != "TLS 1.3" || tl["group"] != "X25519" {
		t.Errorf("tls %v", tl)
	}
}

func TestScanFormats(t *testing.T) {
	port, der := serveTLS(t, "fmt.example.com")
	target := fmt.Sprintf("tls://127.0.0.1:%d", port)

	code, stdout, _ := runBot(t, "scan", "--format", "csv", target)
	if code != exitOK {
		t.Fatalf("csv exit %d", code)
	}
	recs, err := csv.NewReader(strings.NewReader(stdout)).ReadAll()
	if err != nil || len(recs) != 2 {
		t.Fatalf("csv: %v, %d records", err, len(recs))
	}
	if recs[0][0] != "location" || recs[1][0] != target || recs[1][3] != protocol.Fingerprint(der) {
		t.Errorf("csv rows %v", recs)
	}

	code, stdout, _ = runBot(t, "scan", target)
	if code != exitOK {
		t.Fatalf("table exit %d", code)
	}
	if !strings.Contains(stdout, "DAYS LEFT") || !strings.Contains(stdout, "fmt.example.com") || !strings.Contains(stdout, target) {
		t.Errorf("table output:\n%s", stdout)
	}
}

// --max-runtime bounds the scan and still prints what was found.
func TestMaxRuntime(t *testing.T) {
	port, _ := serveTLS(t, "quick.example.com")
	stall, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stall.Close()
	go func() {
		for {
			c, err := stall.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	stallPort := stall.Addr().(*net.TCPAddr).Port
	start := time.Now()
	code, stdout, stderr := runBot(t, "scan", "--format", "json", "--max-runtime", "1s", "--timeout", "30s",
		fmt.Sprintf("tls://127.0.0.1:%d", port), fmt.Sprintf("tls://127.0.0.1:%d", stallPort))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("max runtime of 1s took %s", d)
	}
	if rows := jsonLines(t, stdout); len(rows) != 1 || rows[0]["source"] != "tls" {
		t.Errorf("what was found before the stop is not printed: %s", stdout)
	}
	if !strings.Contains(stderr, "max runtime") {
		t.Errorf("stderr does not say the scan stopped: %s", stderr)
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := runBot(t, "version")
	if code != exitOK || !strings.HasPrefix(stdout, "emsign-bot ") {
		t.Errorf("version: %d %q", code, stdout)
	}
}
