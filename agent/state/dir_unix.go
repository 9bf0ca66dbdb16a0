//go:build !windows

package state

// DefaultDir is where the service keeps its state.
func DefaultDir() string { return "/var/lib/emsign-bot" }

// restrictDir and restrictFile have nothing to add to the mode bits here.
func restrictDir(string) error  { return nil }
func restrictFile(string) error { return nil }
