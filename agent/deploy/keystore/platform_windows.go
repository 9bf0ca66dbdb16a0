//go:build windows

package keystore

import (
	"io/fs"
	"os"
	"os/exec"
)

// owner is empty on Windows: a replaced keystore inherits the directory's
// ACL.
type owner struct{}

func ownerOf(fs.FileInfo) owner        { return owner{} }
func (owner) String() string           { return "" }
func applyOwner(*os.File, owner) error { return nil }

// killGroup leaves the default: the process itself is killed on timeout.
func killGroup(*exec.Cmd) {}
