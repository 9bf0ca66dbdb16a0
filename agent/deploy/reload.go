package deploy

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
)

// maxOutput bounds the command output kept in a message: its head and
// its tail, where tools put the line that matters.
const maxOutput = 1024

// reload runs the reload command and says how it went.
func (d *Deployer) reload(ctx context.Context) (string, error) {
	return runCommand(ctx, d.cfg.Reload)
}

// runCommand runs c, whose Argv and Timeout are valid (RunCommand).
func runCommand(ctx context.Context, c *Command) (string, error) {
	argv := c.Argv
	if c.Shell {
		argv = shellArgv(c.Argv[0])
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	// Output goes to a file, not a pipe: a reload that starts a daemon
	// (a restart script) leaves it holding the pipe, and Wait would block
	// until the daemon exits.
	out, err := os.CreateTemp("", "emsign-reload-*.log")
	if err != nil {
		return "", fmt.Errorf("output file: %w", err)
	}
	defer func() { _ = out.Close(); _ = os.Remove(out.Name()) }()

	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = c.Dir
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	killGroup(cmd)
	start := time.Now()
	runErr := cmd.Run()
	took := time.Since(start).Round(time.Millisecond)
	text := readOutput(out)
	name := commandName(c)
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "", fmt.Errorf("%s timed out after %s%s", name, c.Timeout, text)
	case runErr != nil:
		return "", fmt.Errorf("%s failed after %s: %w%s", name, took, runErr, text)
	}
	return fmt.Sprintf("%s exited 0 in %s%s", name, took, text), nil
}

// commandName shows the command in a message (argv quoted when needed).
func commandName(c *Command) string {
	if c.Shell {
		return fmt.Sprintf("shell %q", c.Argv[0])
	}
	var parts []string
	for _, a := range c.Argv {
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
	s := strings.TrimSpace(redact(string(b)))
	if len(s) > maxOutput {
		s = fmt.Sprintf("%s ... [%d bytes cut] ... %s", s[:maxOutput/2], len(s)-maxOutput, s[len(s)-maxOutput/2:])
	}
	return "; output: " + s
}

// pemKey matches a PEM private key block, or the start of one cut short.
var pemKey = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)`)

// redact removes private keys from text that ends up in a step or an
// error (a reload script that cats the key file by mistake).
func redact(s string) string {
	return pemKey.ReplaceAllString(s, "[private key redacted]")
}
