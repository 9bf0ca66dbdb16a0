//go:build unix

package files

import (
	"os"
	"syscall"
)

// dirSet remembers folders by device and inode, which catches every way
// back into a folder: symlinks, bind mounts, different spellings.
type dirSet map[[2]uint64]struct{}

// add records a folder and reports whether it is new.
func (s dirSet) add(_ string, fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	id := [2]uint64{uint64(st.Dev), uint64(st.Ino)} //nolint:unconvert // Dev and Ino differ in type between systems.
	if _, seen := s[id]; seen {
		return false
	}
	s[id] = struct{}{}
	return true
}
