package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --export needs an activated bot; nothing is scanned or written without one.
func TestExportNeedsActivatedState(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "scan.bundle")
	code, _, stderr := runBot(t, "scan", "--export", out, "--state", filepath.Join(dir, "none"), "file://"+filepath.ToSlash(dir))
	if code == 0 || !strings.Contains(stderr, "not activated") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("bundle written: %v", err)
	}
}
