//go:build linux

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Issue 6, done when: a bot in a network namespace that can reach only a
// connector bot activates and reports its findings through it.
//
// Two namespaces made (and removed) by the test, joined by a veth pair
// with 10.254.X.0/30 addresses that exist only inside them. The edge
// namespace runs the control plane on its own loopback and the connector
// bot (--listen); the inner namespace runs the scanning bot (--via the
// connector's veth address), which has no route to the control plane. The
// relay is killed in the middle of the scan and started again: every
// certificate arrives exactly once and the scan completes.
func TestNetnsBotBehindRelay(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both programs and needs root for ip netns")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("this test needs iproute2's ip (ip netns) and root: %v", err)
	}
	cpBin, botBin := binaries(t)

	pid := os.Getpid()
	edge, inner := fmt.Sprintf("emsign-edge-%d", pid), fmt.Sprintf("emsign-inner-%d", pid)
	x := pid%250 + 1
	edgeIP, innerIP := fmt.Sprintf("10.254.%d.1", x), fmt.Sprintf("10.254.%d.2", x)
	makeNetns(t, edge, inner, edgeIP, innerIP)

	// Fresh namespaces have no listeners: fixed ports are free in them.
	const cpAddr, relayPort = "127.0.0.1:8443", 7443
	via := fmt.Sprintf("%s:%d", edgeIP, relayPort)
	logs := t.TempDir()

	data := t.TempDir()
	account := runJSON(t, cpBin, "account", "create", "--data", data, "--name", "Example Corp")["account"].(string)
	runJSON(t, cpBin, "account", "set-limit", "--data", data, "--account", account, "--bots", "2")
	apiKey := runJSON(t, cpBin, "apikey", "create", "--data", data, "--account", account, "--role", "administrator")["api_key"].(string)
	conn := runJSON(t, cpBin, "bot", "create", "--data", data, "--account", account, "--name", "connector")
	scanner := runJSON(t, cpBin, "bot", "create", "--data", data, "--account", account, "--name", "inner")
	connID, innerID := conn["bot_id"].(string), scanner["bot_id"].(string)

	startInNetns(t, edge, filepath.Join(logs, "cp.log"), cpBin, "serve", "--data", data, "--listen", cpAddr)
	caFile := filepath.Join(data, "ca.pem")
	cp := &controlPlane{t: t, listen: cpAddr, apiKey: apiKey}
	waitUntil(t, "the control plane in "+edge, 30*time.Second, func() bool {
		pemCA, err := os.ReadFile(caFile)
		if err != nil {
			return false
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pemCA)
		cp.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dialInNetns(ctx, edge, addr)
			},
		}}
		resp, err := cp.client.Get("https://" + cpAddr + "/api/v1/bots")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	}, filepath.Join(logs, "cp.log"))

	// The connector bot: in the edge namespace, direct to the control
	// plane, relaying on every address of that namespace.
	connState := t.TempDir()
	if out, err := netnsCommand(edge, botBin, "activate", "--state", connState, "--account", account,
		"--token", conn["token"].(string), "--url", "https://"+cpAddr, "--ca-file", caFile,
		"--listen", fmt.Sprint(relayPort)).CombinedOutput(); err != nil {
		t.Fatalf("activate the connector bot: %v: %s", err, out)
	}
	relay1Log := filepath.Join(logs, "relay1.log")
	relay := startInNetns(t, edge, relay1Log, botBin, "run", "--state", connState)
	waitUntil(t, "the relay at "+via+" from "+inner, 20*time.Second, func() bool {
		c, err := dialInNetns(context.Background(), inner, via)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, relay1Log)

	// From the inner namespace the control plane is out of reach, on the
	// edge's loopback as on its veth address; only the relay answers.
	for _, addr := range []string{cpAddr, fmt.Sprintf("%s:8443", edgeIP)} {
		if c, err := dialInNetns(context.Background(), inner, addr); err == nil {
			c.Close()
			t.Fatalf("%s reaches %s: the scanning bot is not cut off from the control plane", inner, addr)
		}
	}
	innerState := t.TempDir()
	activateInner := func(args ...string) ([]byte, error) {
		return netnsCommand(inner, botBin, append([]string{"activate", "--state", innerState, "--account", account,
			"--token", scanner["token"].(string), "--url", "https://" + cpAddr, "--ca-file", caFile}, args...)...).CombinedOutput()
	}
	if out, err := activateInner(); err == nil {
		t.Fatalf("the inner bot activated without --via: %s", out)
	}
	if out, err := activateInner("--via", via); err != nil {
		t.Fatalf("activate the inner bot --via %s: %v: %s", via, err, out)
	}
	var bot map[string]any
	cp.api("GET", "/bots/"+innerID, nil, &bot)
	if bot["status"] != "active" || bot["path"] != "via "+via {
		t.Fatalf("inner bot after activation: status %v, path %v (want active, via %s)", bot["status"], bot["path"], via)
	}
	cp.api("GET", "/bots/"+connID, nil, &bot)
	if bot["path"] != "direct" {
		t.Errorf("connector bot path %v, want direct", bot["path"])
	}

	// What the inner bot finds: many files between two servers (in its own
	// namespace) that accept and never answer, each holding the scan for
	// the bot's 5 s handshake timeout, so that the relay can die before the
	// files are read and come back before the scan ends.
	certDir := t.TempDir()
	want := map[string]bool{}
	for i := range 500 {
		der, _ := selfSigned(t, fmt.Sprintf("inner%d.example.com", i))
		want[fingerprint(der)] = true
		if err := os.WriteFile(filepath.Join(certDir, fmt.Sprintf("c%03d.pem", i)), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stall1, stall2 := stallingListenerInNetns(t, inner), stallingListenerInNetns(t, inner)
	targets := map[string]any{
		"targets": []string{
			fmt.Sprintf("tls://127.0.0.1:%d", stall1),
			"file://" + certDir,
			fmt.Sprintf("tls://127.0.0.1:%d", stall2),
		},
		"schedule": map[string]any{"kind": "on_demand"},
	}
	if code := cp.api("PUT", "/bots/"+innerID+"/targets", targets, nil); code != http.StatusOK {
		t.Fatalf("PUT targets: %d", code)
	}
	innerLog := filepath.Join(logs, "inner.log")
	startInNetns(t, inner, innerLog, botBin, "run", "--state", innerState)
	var queued map[string]any
	if code := cp.api("POST", "/bots/"+innerID+"/scans", nil, &queued); code != http.StatusAccepted {
		t.Fatalf("POST scan: %d %v", code, queued)
	}
	scanID := queued["scan_id"].(string)
	waitUntil(t, "the scan to start", 30*time.Second, func() bool {
		var sc map[string]any
		cp.api("GET", "/bots/"+innerID+"/scans/"+scanID, nil, &sc)
		return sc["started"] != nil
	}, innerLog)

	// The relay dies (SIGKILL, its tunnels cut) while the bot is held by
	// the first server; it stays down until the bot has read the files,
	// failed to upload them and is held by the second.
	relay.kill()
	waitUntil(t, "the inner bot to fail an upload and reach its last target", 30*time.Second, func() bool {
		b, _ := os.ReadFile(innerLog)
		return strings.Count(string(b), "msg=scanning") >= 3 && strings.Contains(string(b), `call="upload findings"`)
	}, innerLog)
	if got := listCertificates(t, cp); len(got) != 0 {
		t.Fatalf("%d certificates arrived while the relay was down", len(got))
	}
	relay2Log := filepath.Join(logs, "relay2.log")
	startInNetns(t, edge, relay2Log, botBin, "run", "--state", connState)

	waitScanFinished(t, cp, innerID, scanID)
	got := listCertificates(t, cp)
	missing := 0
	for fp := range want {
		locs, ok := got[fp]
		if !ok {
			missing++
			continue
		}
		if len(locs) != 1 {
			t.Errorf("certificate %s has %d locations, want 1: %v", fp, len(locs), locs)
		}
	}
	if missing > 0 || len(got) != len(want) {
		b, _ := os.ReadFile(innerLog)
		t.Fatalf("%d certificates missing, %d listed, %d expected\ninner bot log:\n%s", missing, len(got), len(want), tail(string(b)))
	}
	var sc map[string]any
	cp.api("GET", "/bots/"+innerID+"/scans/"+scanID, nil, &sc)
	if n, _ := sc["certificates"].(float64); int(n) != len(want) {
		t.Errorf("the scan counts %v certificates, want %d (each once): %v", sc["certificates"], len(want), sc)
	}
	innerOut, _ := os.ReadFile(innerLog)
	for _, s := range []string{`path="via ` + via + `"`, "call to the control plane failed; retrying"} {
		if !strings.Contains(string(innerOut), s) {
			t.Errorf("the inner bot's log lacks %q:\n%s", s, tail(string(innerOut)))
		}
	}
	relayOut, _ := os.ReadFile(relay2Log)
	if !strings.Contains(string(relayOut), "relay listening") {
		t.Errorf("the restarted connector bot did not relay:\n%s", tail(string(relayOut)))
	}
	cp.api("GET", "/bots/"+innerID, nil, &bot)
	if bot["path"] != "via "+via {
		t.Errorf("inner bot path %v after the scan, want via %s", bot["path"], via)
	}
}

// makeNetns creates the namespaces edge and inner joined by a veth pair
// (made inside edge, so the host never holds either end) with the given
// /30 addresses, loopbacks up; the test's cleanup deletes both.
func makeNetns(t *testing.T, edge, inner, edgeIP, innerIP string) {
	t.Helper()
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s (this test needs root and network namespaces)", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{edge, inner} {
		ip("netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
	}
	ip("-n", edge, "link", "add", "emsign0", "type", "veth", "peer", "name", "emsign1", "netns", inner)
	ip("-n", edge, "addr", "add", edgeIP+"/30", "dev", "emsign0")
	ip("-n", inner, "addr", "add", innerIP+"/30", "dev", "emsign1")
	for _, l := range [][2]string{{edge, "lo"}, {edge, "emsign0"}, {inner, "lo"}, {inner, "emsign1"}} {
		ip("-n", l[0], "link", "set", l[1], "up")
	}
}

// netnsCommand is bin run inside the namespace ns (ip netns exec execs it,
// so the process is the program itself), with no proxy in its environment.
func netnsCommand(ns, bin string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, bin}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.Contains(strings.ToLower(strings.SplitN(kv, "=", 2)[0]), "proxy") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

type nsProcess struct{ cmd *exec.Cmd }

func (p *nsProcess) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

// startInNetns starts bin in the namespace ns, its output in logPath; the
// test's cleanup kills it (before the namespaces go).
func startInNetns(t *testing.T, ns, logPath, bin string, args ...string) *nsProcess {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	p := &nsProcess{cmd: netnsCommand(ns, bin, args...)}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)
	return p
}

// inNetns runs fn on an OS thread that has entered the named network
// namespace; sockets made by fn stay in that namespace. A thread that
// cannot go back is left locked, so it ends with its goroutine.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("setns back: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// dialInNetns dials addr over TCP from inside the namespace ns.
func dialInNetns(ctx context.Context, ns, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(ns, func() error {
		var err error
		c, err = (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}

// stallingListenerInNetns is stallingListener inside the namespace ns: it
// returns the port, on 127.0.0.1 of that namespace.
func stallingListenerInNetns(t *testing.T, ns string) int {
	t.Helper()
	var ln net.Listener
	if err := inNetns(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", ns, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitUntil polls cond until it holds, or fails the test showing logPath.
func waitUntil(t *testing.T, what string, limit time.Duration, cond func() bool, logPath string) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("timed out waiting for %s; %s:\n%s", what, filepath.Base(logPath), tail(string(b)))
		}
	}
}
