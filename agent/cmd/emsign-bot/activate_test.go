package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/agent/internal/fakecp"
)

const (
	testAccount = "1234567890"
	testToken   = "0b7c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3"
)

func TestActivateUsageErrorsNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	base := map[string]string{"--state": dir, "--account": testAccount, "--token": testToken, "--url": "https://cp.example"}
	tests := []struct {
		name string
		set  map[string]string
		want string
	}{
		{"no account", map[string]string{"--account": ""}, "--account"},
		{"short account", map[string]string{"--account": "12345"}, "--account: \"12345\" is not an account number"},
		{"no token", map[string]string{"--token": ""}, "--token: no bot token"},
		{"token not a UUID", map[string]string{"--token": "s3cr3t-value"}, "--token: not a bot token"},
		{"no url", map[string]string{"--url": ""}, "--url"},
		{"http url", map[string]string{"--url": "http://cp.example"}, "--url"},
		{"bad via", map[string]string{"--via": "nohost"}, "--via"},
		{"bad listen", map[string]string{"--listen": "99999"}, "--listen"},
		{"bad proxy", map[string]string{"--proxy": "socks5://u:pw-secret@h:1"}, "--proxy"},
		{"missing ca file", map[string]string{"--ca-file": filepath.Join(dir, "none.pem")}, "--ca-file"},
		{"listen not a number", map[string]string{"--listen": "x"}, "invalid argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"activate"}
			flags := map[string]string{}
			for k, v := range base {
				flags[k] = v
			}
			for k, v := range tc.set {
				flags[k] = v
			}
			for k, v := range flags {
				args = append(args, k+"="+v)
			}
			code, stdout, stderr := runBot(t, args...)
			if code != exitUsage {
				t.Errorf("exit %d, want 2; stderr %s", code, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not name %q", stderr, tc.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
			for _, secret := range []string{testToken, "s3cr3t-value", "pw-secret"} {
				if strings.Contains(stderr, secret) {
					t.Errorf("stderr shows a secret: %s", stderr)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "settings.json")); err == nil {
				t.Error("settings written")
			}
		})
	}
}

// activate, then run: the service fetches its configuration over mTLS and
// stops cleanly when told to.
func TestActivateThenRun(t *testing.T) {
	cp := fakecp.New(t)
	cp.AddToken(testAccount, testToken)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, cp.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "state")
	code, stdout, stderr := runBot(t, "activate", "--state", dir, "--account", testAccount, "--token", testToken, "--url", cp.URL, "--ca-file", caFile)
	if code != exitOK {
		t.Fatalf("activate: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "activated: bot bot-1 of account 1234567890") {
		t.Errorf("stdout %q", stdout)
	}
	if strings.Contains(stdout+stderr, testToken) {
		t.Error("the token is printed")
	}
	// Used once: a second activation is refused, exit 1, said plainly.
	code, _, stderr = runBot(t, "activate", "--state", dir, "--account", testAccount, "--token", testToken, "--url", cp.URL, "--ca-file", caFile)
	if code != exitInternal || !strings.Contains(stderr, "activation refused") {
		t.Errorf("second activation: exit %d, stderr %s", code, stderr)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"run", "--state", dir}, strings.NewReader(""), &out, &errOut) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var gets int
		cp.Do(func(cp *fakecp.Server) { gets = cp.ConfigGets })
		if gets > 0 {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("run never fetched its configuration")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("run: exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop")
	}

	code, _, stderr = runBot(t, "run", "--state", t.TempDir())
	if code != exitInternal || !strings.Contains(stderr, "not activated") {
		t.Errorf("run without activation: exit %d, stderr %s", code, stderr)
	}
	code, _, stderr = runBot(t, "run", "--state", dir, "--spool-max", "lots")
	if code != exitUsage || !strings.Contains(stderr, "--spool-max") {
		t.Errorf("bad --spool-max: exit %d, stderr %s", code, stderr)
	}
}
