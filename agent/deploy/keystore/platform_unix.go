//go:build !windows

package keystore

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
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

// applyOwner gives f the owner o, calling chown only when it differs: a
// keystore left owned by root would be unreadable by Tomcat's user.
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

// killGroup puts the command in its own process group and makes a
// timeout kill the whole group: a script's children would outlive it.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
