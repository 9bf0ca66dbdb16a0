package testsvc

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for a process writing while a test
// reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// StartTinyproxy runs a real tinyproxy on 127.0.0.1 that demands basic auth
// user:pass and tunnels (CONNECT) only to connectPorts. It returns its
// address (127.0.0.1:PORT) and its log file; it stops when the test ends.
// A missing tinyproxy fails the test, naming the Debian package.
func StartTinyproxy(tb testing.TB, proxyUser, pass string, connectPorts ...int) (addr, logPath string) {
	tb.Helper()
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		tb.Fatalf("tinyproxy is not installed: install the Debian package tinyproxy (apt-get install tinyproxy): %v", err)
	}
	// tinyproxy drops to an unprivileged user when started as root: its
	// folder and log must be reachable for that user.
	dir, err := os.MkdirTemp("", "tinyproxy-test-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		tb.Fatal(err)
	}
	logPath = filepath.Join(dir, "tinyproxy.log")
	if err := os.WriteFile(logPath, nil, 0o666); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(logPath, 0o666); err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := fmt.Sprintf("Port %d\nListen 127.0.0.1\nTimeout 60\nLogFile %q\nLogLevel Info\nMaxClients 20\nAllow 127.0.0.1\nBasicAuth %s %s\n",
		port, logPath, proxyUser, pass)
	for _, p := range connectPorts {
		conf += "ConnectPort " + strconv.Itoa(p) + "\n"
	}
	if os.Geteuid() == 0 {
		name := "nobody"
		if _, err := user.Lookup("tinyproxy"); err == nil {
			name = "tinyproxy"
		}
		conf += "User " + name + "\n"
	}
	confFile := filepath.Join(dir, "tinyproxy.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	out := &lockedBuffer{}
	cmd := exec.Command(bin, "-d", "-c", confFile)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr, logPath
		}
		select {
		case <-exited:
			tb.Fatalf("tinyproxy exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("tinyproxy does not listen on %s: %s", addr, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
