package e2e

import (
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The bot is killed (SIGKILL, as a power loss would) in the middle of a
// scan and started again on the same state. What a user sees: the killed
// scan is closed, incomplete, saying the bot stopped, as soon as the bot is
// back, with what it had found delivered; a new scan then completes; every
// certificate is listed once, each with its one location.
func TestBotKilledMidScan(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs both programs")
	}
	cpBin, botBin := binaries(t)
	cp, _, botID, state := activatedBot(t, cpBin, botBin, "edge-1")

	// Many files, so that the bot spools batches, and a server that
	// accepts and never answers, which holds every scan for the bot's 5 s
	// handshake timeout: the kill lands in the middle of the scan.
	certDir := t.TempDir()
	want := map[string]string{} // fingerprint → file name
	for i := range 3000 {
		der, _ := selfSigned(t, fmt.Sprintf("host%d.example.com", i))
		name := fmt.Sprintf("c%04d.pem", i)
		want[fingerprint(der)] = name
		if err := os.WriteFile(filepath.Join(certDir, name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stall := stallingListener(t)
	targets := map[string]any{
		"targets":  []string{"file://" + certDir, fmt.Sprintf("tls://127.0.0.1:%d", stall.Addr().(*net.TCPAddr).Port)},
		"schedule": map[string]any{"kind": "on_demand"},
	}
	if code := cp.api("PUT", "/bots/"+botID+"/targets", targets, nil); code != http.StatusOK {
		t.Fatalf("PUT targets: %d", code)
	}

	// runBot starts `emsign-bot run`, its output in a file.
	logs := t.TempDir()
	runBot := func(name string) (*exec.Cmd, string) {
		t.Helper()
		logPath := filepath.Join(logs, name+".log")
		f, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		cmd := exec.Command(botBin, "run", "--state", state)
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd, logPath
	}
	readLog := func(p string) string {
		b, _ := os.ReadFile(p)
		return string(b)
	}
	// waitFor polls cond for up to a minute.
	waitFor := func(what string, cond func() bool, logPath string) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\nbot log:\n%s", what, tail(readLog(logPath)))
			}
		}
	}
	type scanView struct {
		ID       string     `json:"id"`
		Finished *time.Time `json:"finished"`
		Complete bool       `json:"complete"`
		Stopped  string     `json:"stopped"`
		Batches  int64      `json:"batches"`
	}
	getScan := func(id string) scanView {
		t.Helper()
		var s scanView
		if code := cp.api("GET", "/bots/"+botID+"/scans/"+id, nil, &s); code != http.StatusOK {
			t.Fatalf("GET scan %s: %d", id, code)
		}
		return s
	}
	postScan := func() string {
		t.Helper()
		var s map[string]any
		if code := cp.api("POST", "/bots/"+botID+"/scans", nil, &s); code != http.StatusAccepted {
			t.Fatalf("POST scan: %d %v", code, s)
		}
		return s["scan_id"].(string)
	}

	bot1, log1 := runBot("run1")
	scan1 := postScan()
	waitFor("the first scan to start", func() bool { return strings.Contains(readLog(log1), "scan started") }, log1)
	time.Sleep(time.Second)
	if err := bot1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = bot1.Wait()
	if strings.Contains(readLog(log1), "scan finished") {
		t.Fatalf("the scan finished before the kill; the test proves nothing:\n%s", tail(readLog(log1)))
	}
	if s := getScan(scan1); s.Finished != nil {
		t.Fatalf("the killed scan is already closed: %+v", s)
	}

	// Back on the same state: the killed scan is closed, with no new scan
	// asked for.
	_, log2 := runBot("run2")
	waitFor("the killed scan to be closed", func() bool { return getScan(scan1).Finished != nil }, log2)
	if s := getScan(scan1); s.Complete || !strings.Contains(s.Stopped, "bot stopped") {
		t.Errorf("killed scan %+v, want incomplete and stopped because the bot stopped", s)
	} else {
		t.Logf("killed scan: %d batches, stopped: %s", s.Batches, s.Stopped)
	}

	scan2 := postScan()
	waitFor("the second scan to finish", func() bool { return getScan(scan2).Finished != nil }, log2)
	if s := getScan(scan2); !s.Complete || s.Stopped != "" {
		t.Errorf("second scan %+v, want complete\nbot log:\n%s", s, tail(readLog(log2)))
	}

	// Every certificate once (the store keys a certificate by its
	// fingerprint), each at its one file, listed once, present.
	got := listCertificates(t, cp)
	missing := 0
	for fp := range want {
		if _, ok := got[fp]; !ok {
			missing++
		}
	}
	if missing > 0 || len(got) != len(want) {
		t.Fatalf("%d certificates missing, %d listed, %d expected", missing, len(got), len(want))
	}
	uris := map[string]bool{}
	for fp, locs := range got {
		if len(locs) != 1 {
			t.Errorf("certificate %s has %d locations, want 1: %v", fp, len(locs), locs)
			continue
		}
		loc, _ := locs[0].(map[string]any)
		uri, _ := loc["uri"].(string)
		path, _, _ := strings.Cut(uri, "#") // the fragment numbers the certificate in its file
		if !strings.HasSuffix(path, "/"+want[fp]) || loc["present"] != true {
			t.Errorf("certificate %s (%s): location %v", fp, want[fp], loc)
		}
		if uris[uri] {
			t.Errorf("location %s listed twice", uri)
		}
		uris[uri] = true
	}
	if !strings.Contains(readLog(log2), "closing a scan the bot did not finish") {
		t.Errorf("the restarted bot does not say it closed the killed scan:\n%s", tail(readLog(log2)))
	}
}
