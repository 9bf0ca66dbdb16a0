//go:build !windows

package deploy

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// owner is a file's uid and gid; ok is false when unknown.
type owner struct {
	uid, gid int
	ok       bool
}

func ownerOf(fi fs.FileInfo) owner {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return owner{}
	}
	return owner{uid: int(st.Uid), gid: int(st.Gid), ok: true}
}

// String is " uid:gid" (with the space, for messages), or "".
func (o owner) String() string {
	if !o.ok {
		return ""
	}
	return fmt.Sprintf(" %d:%d", o.uid, o.gid)
}

// applyOwner gives f the owner o. It calls chown only when the owner
// differs, so a bot that is not root still works on its own files; when
// it must change the owner and may not, that is an error: a key left
// owned by the wrong user may be unreadable by the server.
func applyOwner(f *os.File, o owner) error {
	if !o.ok {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if ownerOf(fi) == o {
		return nil
	}
	return f.Chown(o.uid, o.gid)
}
