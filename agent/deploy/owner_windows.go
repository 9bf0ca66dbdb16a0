//go:build windows

package deploy

import (
	"io/fs"
	"os"
)

// Owner is empty on Windows: files inherit the directory's ACL, which is
// what IIS-less PEM servers (nginx, Apache for Windows) rely on.
type Owner struct{}

// OwnerOf is the empty Owner.
func OwnerOf(fs.FileInfo) Owner { return Owner{} }

// String is "": there is no owner to show.
func (Owner) String() string { return "" }

func applyOwner(*os.File, Owner) error { return nil }
