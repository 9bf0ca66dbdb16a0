//go:build unix

package files

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/emsign/bot/protocol"
)

func TestUnreadable(t *testing.T) {
	tmp := t.TempDir()
	// Tests run as root, where chmod 000 stops nothing: a FIFO named like a
	// certificate is a file that cannot be read (opening it would block the
	// walk, so it must not even be opened).
	fifo := filepath.Join(tmp, "pipe.pem")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	locked := filepath.Join(tmp, "locked.crt")
	lockedDir := filepath.Join(tmp, "locked-dir")
	if os.Geteuid() != 0 {
		// Where permissions do stop reading, check them too.
		if err := os.WriteFile(locked, []byte("x"), 0o000); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(lockedDir, 0o000); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(lockedDir, 0o755) })
	}
	s := newSource(t, Config{})
	got := collect(t, s, target(t, uri("file", tmp)), tmp)
	if f := got["pipe.pem"]; !strings.Contains(f.Error, "pipe.pem") || !strings.Contains(f.Error, "not a regular file") {
		t.Errorf("FIFO: %q", f.Error)
	}
	if os.Geteuid() != 0 {
		if f := got["locked.crt"]; !strings.Contains(f.Error, locked) {
			t.Errorf("unreadable file: %q", f.Error)
		}
		if f := got["locked-dir"]; !strings.Contains(f.Error, lockedDir) {
			t.Errorf("unreadable folder: %q", f.Error)
		}
	}
	// ScanFile on a folder where a file is expected.
	var errs []string
	err := s.ScanFile(context.Background(), "certstore", tmp, nil, func(f protocol.Finding) error {
		errs = append(errs, f.Error)
		return nil
	})
	if err != nil || len(errs) != 1 || !strings.Contains(errs[0], filepath.Base(tmp)) || !strings.Contains(errs[0], "not a regular file") {
		t.Errorf("ScanFile(folder): %v %q", err, errs)
	}
	// A root that does not exist fails the target.
	if err := s.Discover(context.Background(), target(t, uri("file", filepath.Join(tmp, "nope"))), func(protocol.Finding) error { return nil }); err == nil {
		t.Error("missing root: no error")
	}
}
