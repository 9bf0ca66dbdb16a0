//go:build !windows

package deploy

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// Owner is a file's owner as a deployment keeps it (mode and owner of
// the old file go to the new one): uid and gid; ok is false when
// unknown.
type Owner struct {
	uid, gid int
	ok       bool
}

// OwnerOf is fi's owner.
func OwnerOf(fi fs.FileInfo) Owner {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return Owner{}
	}
	return Owner{uid: int(st.Uid), gid: int(st.Gid), ok: true}
}

// String is " uid:gid" (with the space, for messages), or "".
func (o Owner) String() string {
	if !o.ok {
		return ""
	}
	return fmt.Sprintf(" %d:%d", o.uid, o.gid)
}

// applyOwner gives f the owner o. It calls chown only when the owner
// differs, so a bot that is not root still works on its own files; when
// it must change the owner and may not, that is an error: a key left
// owned by the wrong user may be unreadable by the server.
func applyOwner(f *os.File, o Owner) error {
	if !o.ok {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if OwnerOf(fi) == o {
		return nil
	}
	return f.Chown(o.uid, o.gid)
}
