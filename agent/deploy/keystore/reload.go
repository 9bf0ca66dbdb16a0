package keystore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"github.com/emsign/bot/agent/deploy"
)

// maxOutput bounds the command output kept in a message: its head and
// its tail, where tools put the line that matters.
const maxOutput = 1024

// RunReload runs an allowed reload command (argv, no shell) the way
// agent/deploy does: deploy.DefaultReloadTimeout, the process group killed
// after it (Unix), output kept in a temp file (a restart that leaves a
// daemon behind does not hang it) and shown head and tail with private
// keys redacted. The caller must have asked deploy.Env.AllowReload first.
// connectors/pkcs11's deployer uses it too.
func RunReload(ctx context.Context, argv []string) (string, error) {
	return runReload(ctx, argv)
}

func runReload(ctx context.Context, argv []string) (string, error) {
	if len(argv) == 0 || argv[0] == "" {
		return "", errors.New("reload: argv is empty")
	}
	timeout := deploy.DefaultReloadTimeout
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := os.CreateTemp("", "emsign-reload-*.log")
	if err != nil {
		return "", fmt.Errorf("output file: %w", err)
	}
	defer func() { _ = out.Close(); _ = os.Remove(out.Name()) }()

	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	killGroup(cmd)
	start := time.Now()
	runErr := cmd.Run()
	took := time.Since(start).Round(time.Millisecond)
	text := readOutput(out)
	name := commandName(argv)
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "", fmt.Errorf("%s timed out after %s%s", name, timeout, text)
	case runErr != nil:
		return "", fmt.Errorf("%s failed after %s: %w%s", name, took, runErr, text)
	}
	return fmt.Sprintf("%s exited 0 in %s%s", name, took, text), nil
}

// commandName shows argv in a message, quoted where needed.
func commandName(argv []string) string {
	var parts []string
	for _, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\"'") {
			a = fmt.Sprintf("%q", a)
		}
		parts = append(parts, a)
	}
	return "`" + strings.Join(parts, " ") + "`"
}

// readOutput returns "; output: ..." with the output's head and tail, or
// "" for no output.
func readOutput(f *os.File) string {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return ""
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return ""
	}
	s := strings.TrimSpace(pemKey.ReplaceAllString(string(b), "[private key redacted]"))
	if len(s) > maxOutput {
		s = fmt.Sprintf("%s ... [%d bytes cut] ... %s", s[:maxOutput/2], len(s)-maxOutput, s[len(s)-maxOutput/2:])
	}
	return "; output: " + s
}

// pemKey matches a PEM private key block, or the start of one cut short
// (a reload script that cats a key by mistake).
var pemKey = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)`)
