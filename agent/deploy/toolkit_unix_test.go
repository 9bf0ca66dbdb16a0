//go:build !windows

package deploy

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The commands are POSIX shell: this test runs where they do.

func TestRunCommand(t *testing.T) {
	dir := t.TempDir()
	// A reload script that shows a key file by mistake.
	keyFile := filepath.Join(dir, "key.pem")
	writeFile(t, keyFile, []byte("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI\n-----END EC PRIVATE KEY-----\n"), 0o600)
	for _, tt := range []struct {
		name    string
		c       Command
		want    string // in the message or the error
		wantErr bool
	}{
		{"exit 0 with output", Command{Argv: []string{"sh", "-c", "echo reloaded"}}, "`sh -c \"echo reloaded\"` exited 0 in", false},
		{"shell, in Dir", Command{Argv: []string{"pwd"}, Shell: true, Dir: dir}, "output: " + dir, false},
		{"exit 3", Command{Argv: []string{"sh", "-c", "echo broken; exit 3"}}, "failed after", true},
		{"timeout kills", Command{Argv: []string{"sleep 30"}, Shell: true, Timeout: 200 * time.Millisecond}, `shell "sleep 30" timed out after 200ms`, true},
		{"key redacted", Command{Argv: []string{"cat", keyFile}}, "output: [private key redacted]", false},
		{"empty argv", Command{}, "argv is empty", true},
		{"shell with two strings", Command{Argv: []string{"a", "b"}, Shell: true}, "one string", true},
		{"no such program", Command{Argv: []string{filepath.Join(dir, "missing")}}, "failed after", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := RunCommand(context.Background(), tt.c)
			text := msg
			if err != nil {
				text = err.Error()
			}
			if (err != nil) != tt.wantErr || !strings.Contains(text, tt.want) {
				t.Fatalf("msg %q, err %v; want %q (error %v)", msg, err, tt.want, tt.wantErr)
			}
			if strings.Contains(text, "MHcCAQEEI") {
				t.Errorf("key material in %q", text)
			}
		})
	}
	if got := (Command{Argv: []string{"systemctl", "reload", "my service"}}).String(); got != "`systemctl reload \"my service\"`" {
		t.Errorf("String %s", got)
	}
}
