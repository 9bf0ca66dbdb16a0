package testsvc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SSHD is a real OpenSSH sshd on 127.0.0.1 that lets one test user in with
// a password.
type SSHD struct {
	// Addr is 127.0.0.1:PORT.
	Addr string
	// HostKey is the SHA256:... fingerprint of its only (ed25519) host key,
	// as ssh-keygen -lf prints it and host_key= takes it.
	HostKey string
	// User, Password and Home are the test user's; UID and GID own Home.
	User, Password, Home string
	UID, GID             int
}

// StartSSHD adds the system user name (if missing; it is deleted when the
// test ends) with password and starts sshd for it until the test ends. It
// needs root and the openssh-server package.
func StartSSHD(tb testing.TB, name, password string) *SSHD {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatal("sshd and a test user need root")
	}
	const sshd = "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		tb.Fatalf("%s is missing: install the openssh-server package: %v", sshd, err)
	}
	s := &SSHD{User: name, Password: password}
	u, err := user.Lookup(name)
	if err != nil {
		if out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", name).CombinedOutput(); err != nil {
			tb.Fatalf("useradd %s: %v: %s", name, err, out)
		}
		tb.Cleanup(func() {
			var out []byte
			var err error
			for range 50 { // sessions may outlive sshd by a moment
				_ = exec.Command("pkill", "-KILL", "-u", name).Run()
				if out, err = exec.Command("userdel", "-r", name).CombinedOutput(); err == nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			tb.Errorf("userdel %s: %v: %s", name, err, out)
		})
		if u, err = user.Lookup(name); err != nil {
			tb.Fatal(err)
		}
	}
	s.Home = u.HomeDir
	s.UID, _ = strconv.Atoi(u.Uid)
	s.GID, _ = strconv.Atoi(u.Gid)
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("chpasswd: %v: %s", err, out)
	}

	dir := tb.TempDir()
	hk := filepath.Join(dir, "host_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hk).CombinedOutput(); err != nil {
		tb.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	out, err := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", hk+".pub").Output()
	if f := strings.Fields(string(out)); err != nil || len(f) < 2 || !strings.HasPrefix(f[1], "SHA256:") {
		tb.Fatalf("ssh-keygen -lf: %v: %s", err, out)
	} else {
		s.HostKey = f[1]
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		tb.Fatal(err)
	}
	port := freeLowPort()
	cfg := filepath.Join(dir, "sshd_config")
	text := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers %s
StrictModes no
Subsystem sftp internal-sftp
`, port, hk, filepath.Join(dir, "sshd.pid"), name)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command(sshd, "-t", "-f", cfg).CombinedOutput(); err != nil {
		tb.Fatalf("sshd -t: %v: %s", err, out)
	}
	logPath := filepath.Join(dir, "sshd.log")
	run := exec.Command(sshd, "-D", "-f", cfg, "-E", logPath)
	if err := run.Start(); err != nil {
		tb.Fatalf("start sshd: %v", err)
	}
	tb.Cleanup(func() {
		_ = run.Process.Kill()
		_ = run.Wait()
		if tb.Failed() {
			log, _ := os.ReadFile(logPath)
			tb.Logf("sshd log:\n%s", log)
		}
	})
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			tb.Fatalf("sshd did not listen on %s: %v\n%s", s.Addr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
