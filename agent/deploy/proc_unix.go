//go:build !windows

package deploy

import (
	"os/exec"
	"syscall"
)

// shellArgv runs a script through the POSIX shell.
func shellArgv(script string) []string { return []string{"/bin/sh", "-c", script} }

// killGroup puts the command in its own process group and makes a
// timeout kill the whole group: a shell's children would otherwise
// outlive it.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
