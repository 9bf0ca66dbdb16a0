//go:build windows

package deploy

import "os/exec"

// shellArgv runs a script through cmd.exe.
func shellArgv(script string) []string { return []string{"cmd.exe", "/C", script} }

// killGroup keeps exec's default on Windows: the process is killed.
func killGroup(*exec.Cmd) {}
