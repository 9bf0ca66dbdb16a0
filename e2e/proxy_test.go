package e2e

import (
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/internal/testsvc"
)

// Issue 6, done when: a bot behind an authenticating proxy activates and
// reports through it.
func TestBotBehindAuthenticatingProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs both programs and tinyproxy")
	}
	const (
		proxyUser = "botuser"
		proxyPass = "Pr0xyE2e-7c4f1a"
		wrongPass = "WRONGpass-51e9"
	)
	cpBin, botBin := binaries(t)
	data, state := t.TempDir(), t.TempDir()

	account := runJSON(t, cpBin, "account", "create", "--data", data, "--name", "Proxy Corp")["account"].(string)
	apiKey := runJSON(t, cpBin, "apikey", "create", "--data", data, "--account", account, "--role", "administrator")["api_key"].(string)
	created := runJSON(t, cpBin, "bot", "create", "--data", data, "--account", account, "--name", "behind-proxy")
	botID, token := created["bot_id"].(string), created["token"].(string)

	cpPort := freePort(t)
	cp := &controlPlane{t: t, bin: cpBin, data: data, listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(cpPort)), apiKey: apiKey}
	cp.start()

	proxyAddr, proxyLog := testsvc.StartTinyproxy(t, proxyUser, proxyPass, cpPort)

	activate := func(stateDir, pass string) (string, error) {
		cmd := exec.Command(botBin, "activate", "--state", stateDir, "--account", account, "--token", token,
			"--url", "https://"+cp.listen, "--ca-file", filepath.Join(data, "ca.pem"),
			"--proxy", "http://"+proxyUser+":"+pass+"@"+proxyAddr)
		// Whatever the environment says, only the explicit proxy counts.
		cmd.Env = append(os.Environ(), "HTTPS_PROXY=", "https_proxy=", "NO_PROXY=", "no_proxy=")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	var botOutput strings.Builder

	// A wrong password: refused, the error names the proxy and does not
	// echo the password; the token stays unused.
	out, err := activate(t.TempDir(), wrongPass)
	botOutput.WriteString(out)
	if err == nil {
		t.Fatalf("activation through the proxy with a wrong password succeeded:\n%s", out)
	}
	if !strings.Contains(out, proxyAddr) || !strings.Contains(strings.ToLower(out), "proxy") {
		t.Errorf("the error does not name the proxy %s:\n%s", proxyAddr, out)
	}
	if strings.Contains(out, wrongPass) {
		t.Errorf("the error shows the wrong password:\n%s", out)
	}

	out, err = activate(state, proxyPass)
	botOutput.WriteString(out)
	if err != nil {
		t.Fatalf("activate through the proxy: %v\n%s\ncontrol plane:\n%s", err, out, tail(cp.log.String()))
	}
	var bot map[string]any
	cp.api("GET", "/bots/"+botID, nil, &bot)
	if bot["status"] != "active" {
		t.Fatalf("activated bot status %v", bot["status"])
	}
	if bot["path"] != "proxy" {
		t.Errorf("the control plane shows path %v, want proxy: %v", bot["path"], bot)
	}

	// The settings file holds the proxy with its password, readable by the
	// owner only.
	settings := filepath.Join(state, "settings.json")
	fi, err := os.Stat(settings)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", settings, fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(settings); !strings.Contains(string(b), proxyPass) {
		t.Errorf("%s does not hold the proxy", settings)
	}

	certDir := t.TempDir()
	want := map[string]bool{}
	for i := range 20 {
		der, _ := selfSigned(t, fmt.Sprintf("proxied%d.example.com", i))
		want[fingerprint(der)] = true
		if err := os.WriteFile(filepath.Join(certDir, fmt.Sprintf("c%02d.pem", i)), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	targets := map[string]any{
		"targets":  []string{"file://" + certDir},
		"schedule": map[string]any{"kind": "on_demand"},
	}
	if code := cp.api("PUT", "/bots/"+botID+"/targets", targets, nil); code != http.StatusOK {
		t.Fatalf("PUT targets: %d", code)
	}

	runLogFile := filepath.Join(t.TempDir(), "run.log")
	lf, err := os.Create(runLogFile)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	run := exec.Command(botBin, "run", "--state", state)
	run.Env = append(os.Environ(), "HTTPS_PROXY=", "https_proxy=", "NO_PROXY=", "no_proxy=")
	run.Stdout, run.Stderr = lf, lf
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = run.Process.Kill()
			_ = run.Wait()
		}
	}
	defer stop()
	runLog := func() string { b, _ := os.ReadFile(runLogFile); return string(b) }

	var scan map[string]any
	if code := cp.api("POST", "/bots/"+botID+"/scans", nil, &scan); code != http.StatusAccepted {
		t.Fatalf("POST scan: %d %v\nbot log:\n%s", code, scan, tail(runLog()))
	}
	waitScanFinished(t, cp, botID, scan["scan_id"].(string))
	got := listCertificates(t, cp)
	for fp := range want {
		if _, ok := got[fp]; !ok {
			t.Errorf("certificate %s not listed", fp)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d certificates listed, want %d", len(got), len(want))
	}
	stop()

	// tinyproxy logs asynchronously to its file.
	var plog string
	deadline := time.Now().Add(5 * time.Second)
	connectLine := fmt.Sprintf("CONNECT 127.0.0.1:%d", cpPort)
	for {
		b, _ := os.ReadFile(proxyLog)
		plog = string(b)
		if strings.Contains(plog, connectLine) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(plog, connectLine) {
		t.Errorf("tinyproxy's log shows no %q:\n%s", connectLine, tail(plog))
	}

	botOutput.WriteString(runLog())
	for name, text := range map[string]string{"tinyproxy's log": plog, "the control plane's log": cp.log.String(), "the bot's output": botOutput.String()} {
		if strings.Contains(text, proxyPass) {
			t.Errorf("%s shows the proxy password", name)
		}
	}
}
