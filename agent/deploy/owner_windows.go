//go:build windows

package deploy

import (
	"io/fs"
	"os"
)

// owner is empty on Windows: files inherit the directory's ACL, which is
// what IIS-less PEM servers (nginx, Apache for Windows) rely on.
type owner struct{}

func ownerOf(fs.FileInfo) owner        { return owner{} }
func (owner) String() string           { return "" }
func applyOwner(*os.File, owner) error { return nil }
