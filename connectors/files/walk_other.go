//go:build !unix

package files

import (
	"os"
	"path/filepath"
)

// dirSet remembers folders by path (Windows has no inode in os.FileInfo).
// Symlinked folders are recorded by their resolved path, so a loop through
// links ends at the second visit; a folder reached through a link and by
// its real path may be walked twice.
type dirSet map[string]struct{}

// add records a folder and reports whether it is new.
func (s dirSet) add(path string, _ os.FileInfo) bool {
	key := filepath.Clean(path)
	if _, seen := s[key]; seen {
		return false
	}
	s[key] = struct{}{}
	return true
}
