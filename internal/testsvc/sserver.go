//go:build !windows

package testsvc

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SServer is an `openssl s_server` reading its certificate from PEM
// files, (re)started by its Script as `systemctl restart` would restart a
// web server: the reload command of rotation tests. Like `nginx -t`, the
// script refuses a certificate that expires within ten minutes, so that a
// test can make a reload fail because of the new files.
type SServer struct {
	Dir    string // its scratch directory (server.log, server.pid)
	Script string // the reload script
	Addr   string // 127.0.0.1:PORT
}

// StartSServer writes the script and starts the server on a free port of
// 127.0.0.1. keyPath == certPath serves a combined file (HAProxy layout).
// A missing openssl fails the test.
func StartSServer(tb testing.TB, certPath, keyPath string) *SServer {
	tb.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		tb.Fatal("openssl is needed for this test: ", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &SServer{Dir: tb.TempDir(), Addr: addr}
	keyArg := ""
	if keyPath != certPath {
		keyArg = "-key " + keyPath // without it s_server reads the key from the cert file
	}
	s.Script = filepath.Join(s.Dir, "reload.sh")
	script := fmt.Sprintf(`#!/bin/sh
D=%[1]s
%[2]s x509 -in %[3]s -noout -checkend 600 >/dev/null || { echo "config test failed: %[3]s expires within 10 minutes" >&2; exit 1; }
if [ -f $D/server.pid ]; then
	pid=$(cat $D/server.pid)
	kill $pid 2>/dev/null
	i=0; while kill -0 $pid 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
fi
%[2]s s_server -cert %[3]s %[4]s -accept %[5]s -www -quiet </dev/null >>$D/server.log 2>&1 &
echo $! > $D/server.pid
echo restarted
`, s.Dir, openssl, certPath, keyArg, addr)
	if err := os.WriteFile(s.Script, []byte(script), 0o755); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(s.Dir, "server.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	if out, err := exec.Command(s.Script).CombinedOutput(); err != nil {
		tb.Fatalf("start s_server: %v\n%s", err, out)
	}
	return s
}

// Served is the SHA-256 (hex) of the leaf the server presents for
// serverName.
func (s *SServer) Served(serverName string) (string, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", s.Addr, &tls.Config{InsecureSkipVerify: true, ServerName: serverName})
	if err != nil {
		return "", err
	}
	defer c.Close()
	sum := sha256.Sum256(c.ConnectionState().PeerCertificates[0].Raw)
	return hex.EncodeToString(sum[:]), nil
}

// WaitServes waits up to 10 s until the server presents the leaf fp.
func (s *SServer) WaitServes(tb testing.TB, serverName, fp string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got string
	var err error
	for time.Now().Before(deadline) {
		if got, err = s.Served(serverName); err == nil && got == fp {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
	tb.Fatalf("%s serves %.16s (%v), want %.16s; log:\n%s", s.Addr, got, err, fp, log)
}
