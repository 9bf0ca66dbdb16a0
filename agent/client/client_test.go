package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/protocol"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		raw, want, err string
	}{
		{"https://cp.example", "https://cp.example", ""},
		{"https://cp.example:8443/base/", "https://cp.example:8443/base", ""},
		{"http://cp.example", "", "https://"},
		{"cp.example", "", "https://"},
		{"https://", "", "no host"},
		{"https://u:p@cp.example", "", "no user info"},
		{"https://cp.example/?x=1", "", "no user info"},
	}
	for _, tc := range tests {
		u, err := ParseURL(tc.raw)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.raw, err, tc.err)
			}
			continue
		}
		if err != nil || u.String() != tc.want {
			t.Errorf("%q: %v, %v; want %s", tc.raw, u, err, tc.want)
		}
	}
}

func TestErrorClasses(t *testing.T) {
	tests := []struct {
		err                     error
		unauthorized, permanent bool
	}{
		{&StatusError{Code: 401}, true, false},
		{&StatusError{Code: 403}, true, false},
		{fmt.Errorf("wrapped: %w", &StatusError{Code: 403}), true, false},
		{&StatusError{Code: 400}, false, true},
		{&StatusError{Code: 404}, false, true},
		{&StatusError{Code: 408}, false, false},
		{&StatusError{Code: 429}, false, false},
		{&StatusError{Code: 503}, false, false},
		{&UnreachableError{URL: "https://x", Err: errors.New("refused")}, false, false},
	}
	for _, tc := range tests {
		if IsUnauthorized(tc.err) != tc.unauthorized || IsPermanent(tc.err) != tc.permanent {
			t.Errorf("%v: unauthorized %v permanent %v", tc.err, IsUnauthorized(tc.err), IsPermanent(tc.err))
		}
	}
}

// A plain TLS server checks the client's requests and answers: headers,
// JSON, error bodies, 304.
func TestCallsAndAnswers(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(protocol.HeaderBotVersion) != "9.9" {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		switch r.URL.Path {
		case protocol.PathConfig:
			if r.Header.Get("If-None-Match") == `"v7"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("ETag", `"v7"`)
			_ = json.NewEncoder(w).Encode(protocol.BotConfig{Version: "v7", Threads: 3})
		case protocol.PathJobs:
			if r.URL.Query().Get("wait") != "30s" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			_ = json.NewEncoder(w).Encode(protocol.JobsResponse{Jobs: []protocol.Job{{ID: "j", Kind: protocol.JobScan}}})
		case protocol.FindingsPath("s1"):
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(protocol.ErrorResponse{Error: "bot deactivated"})
		case protocol.PathActivate:
			w.WriteHeader(http.StatusForbidden)
			_ = json.NewEncoder(w).Encode(protocol.ErrorResponse{Error: "token already used"})
		default:
			http.Error(w, "plain text failure", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	c, err := New(Config{URL: srv.URL, TLS: &tls.Config{RootCAs: poolOf(srv)}, Version: "9.9", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg, etag, nm, err := c.Config(ctx, "")
	if err != nil || nm || etag != "v7" || cfg.Threads != 3 {
		t.Fatalf("config: %+v %q %v %v", cfg, etag, nm, err)
	}
	if _, etag, nm, err = c.Config(ctx, etag); err != nil || !nm || etag != "v7" {
		t.Errorf("config with etag: %q %v %v, want not modified", etag, nm, err)
	}
	jobs, err := c.Jobs(ctx, 30*time.Second)
	if err != nil || len(jobs) != 1 {
		t.Errorf("jobs: %v %v", jobs, err)
	}
	_, err = c.PostFindings(ctx, "s1", protocol.FindingsBatch{Seq: 1})
	if !IsUnauthorized(err) || !strings.Contains(err.Error(), "bot deactivated") {
		t.Errorf("findings: %v", err)
	}
	_, err = c.Activate(ctx, protocol.ActivateRequest{})
	var re *RefusedError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "activation refused by the control plane: token already used") {
		t.Errorf("activate: %v", err)
	}
	err = c.CompleteScan(ctx, "s2", protocol.ScanComplete{})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 500 || !strings.Contains(err.Error(), "plain text failure") {
		t.Errorf("complete: %v", err)
	}
	if _, err := New(Config{URL: srv.URL, Version: "1"}); err == nil {
		t.Error("New without TLS config succeeded")
	}
}

func poolOf(srv *httptest.Server) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(srv.Certificate())
	return p
}

// With Dial set, every connection is made by it (the path: proxy or
// relay), TLS still verifies the URL's host, and the path header rides
// along with the version.
func TestDialAndPathHeader(t *testing.T) {
	var gotPath string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.Header.Get(protocol.HeaderBotPath)
		w.Write([]byte(`{"jobs":[]}`))
	}))
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	realAddr := srv.Listener.Addr().String()
	var dialed []string
	c, err := New(Config{
		// A name the test server's certificate holds, reached only through Dial.
		URL: "https://example.com:1", TLS: &tls.Config{RootCAs: pool}, Version: "1.0", Path: "via 10.0.0.9:7443",
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dialed = append(dialed, addr)
			var d net.Dialer
			return d.DialContext(ctx, network, realAddr)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Jobs(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if len(dialed) != 1 || dialed[0] != "example.com:1" || gotPath != "via 10.0.0.9:7443" {
		t.Errorf("dialed %v, path header %q", dialed, gotPath)
	}
}
