package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
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

// binaries builds emsign-cp and emsign-bot for a test or a benchmark.
func binaries(t testing.TB) (cp, bot string) {
	t.Helper()
	dir := t.TempDir()
	cp, bot = filepath.Join(dir, "emsign-cp"), filepath.Join(dir, "emsign-bot")
	for out, pkg := range map[string]string{cp: "../controlplane/cmd/emsign-cp", bot: "../agent/cmd/emsign-bot"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, b)
		}
	}
	return cp, bot
}

// runJSON runs an admin command and decodes the one JSON object it prints.
func runJSON(t testing.TB, bin string, args ...string) map[string]any {
	t.Helper()
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("%s %s printed %q, not one JSON object", filepath.Base(bin), strings.Join(args, " "), out)
	}
	return m
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// controlPlane is a running emsign-cp.
type controlPlane struct {
	t      *testing.T
	bin    string
	data   string
	listen string
	cmd    *exec.Cmd
	log    *bytes.Buffer
	client *http.Client
	apiKey string
	// args are added to serve's command line (e.g. --ca-config).
	args []string
}

func (c *controlPlane) start() {
	c.t.Helper()
	c.log = &bytes.Buffer{}
	c.cmd = exec.Command(c.bin, append([]string{"serve", "--data", c.data, "--listen", c.listen}, c.args...)...)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { c.kill() })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if pemCA, err := os.ReadFile(filepath.Join(c.data, "ca.pem")); err == nil {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pemCA)
			c.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
			if resp, err := c.client.Get("https://" + c.listen + "/api/v1/bots"); err == nil {
				resp.Body.Close()
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("emsign-cp did not come up on %s:\n%s", c.listen, c.log)
}

// kill stops the control plane as a crash would.
func (c *controlPlane) kill() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		_ = c.cmd.Wait()
		c.cmd = nil
	}
}

// api calls the user API and decodes the answer into out (if not nil).
func (c *controlPlane) api(method, path string, body any, out any) int {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "https://"+c.listen+"/api/v1"+path, r)
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// selfSigned makes a certificate for name and returns its DER and key.
func selfSigned(t *testing.T, name string) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func fingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// Issue 3, done when: create account, API key and bot; the bot is activation
// pending; activate; it is active; set targets; POST a scan; the certificates
// appear, one row per fingerprint with each location; the control plane
// killed and restarted mid-scan loses nothing; a used token activates
// nothing; the token is nowhere in the data directory in clear.
func TestLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs both programs")
	}
	cpBin, botBin := binaries(t)
	data, state := t.TempDir(), t.TempDir()

	account := runJSON(t, cpBin, "account", "create", "--data", data, "--name", "Example Corp")["account"].(string)
	if len(account) != 10 {
		t.Fatalf("account %q is not 10 digits", account)
	}
	apiKey := runJSON(t, cpBin, "apikey", "create", "--data", data, "--account", account, "--role", "administrator")["api_key"].(string)
	created := runJSON(t, cpBin, "bot", "create", "--data", data, "--account", account, "--name", "edge-1")
	botID, token := created["bot_id"].(string), created["token"].(string)

	cp := &controlPlane{t: t, bin: cpBin, data: data, listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), apiKey: apiKey}
	cp.start()

	var bot map[string]any
	cp.api("GET", "/bots/"+botID, nil, &bot)
	if bot["status"] != "activation_pending" {
		t.Fatalf("new bot status %v", bot["status"])
	}

	activate := func(stateDir, tok string) error {
		cmd := exec.Command(botBin, "activate", "--state", stateDir, "--account", account, "--token", tok,
			"--url", "https://"+cp.listen, "--ca-file", filepath.Join(data, "ca.pem"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := activate(t.TempDir(), "f8368fea-d5da-4502-a39b-43e6752f3b5e"); err == nil {
		t.Fatal("a wrong token activated a bot")
	}
	if err := activate(state, token); err != nil {
		t.Fatalf("activate: %v", err)
	}
	if err := activate(t.TempDir(), token); err == nil {
		t.Fatal("a used token activated a bot again")
	}
	cp.api("GET", "/bots/"+botID, nil, &bot)
	if bot["status"] != "active" {
		t.Fatalf("activated bot status %v", bot["status"])
	}

	// What the bot will find: one certificate served over TLS and also kept
	// in a file (one row, two locations), and many files, so that the scan
	// lasts long enough to kill the control plane in the middle of it.
	shared, key := selfSigned(t, "shared.example.com")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{shared}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	certDir := t.TempDir()
	want := map[string]bool{fingerprint(shared): true}
	_ = os.WriteFile(filepath.Join(certDir, "shared.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: shared}), 0o600)
	for i := range 1500 {
		der, _ := selfSigned(t, fmt.Sprintf("host%d.example.com", i))
		want[fingerprint(der)] = true
		_ = os.WriteFile(filepath.Join(certDir, fmt.Sprintf("c%04d.pem", i)), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	}
	// A server that accepts and never answers holds the scan for the bot's
	// 5 s handshake timeout, so the control plane dies in the middle of it.
	stall := stallingListener(t)
	const secret = "hunter2-e2e-secret"
	targets := map[string]any{
		"targets": []string{
			"file://" + certDir + "?password=" + secret,
			fmt.Sprintf("tls://127.0.0.1:%d", stall.Addr().(*net.TCPAddr).Port),
			fmt.Sprintf("tls://127.0.0.1:%d", ln.Addr().(*net.TCPAddr).Port),
		},
		"schedule": map[string]any{"kind": "on_demand"},
	}
	if code := cp.api("PUT", "/bots/"+botID+"/targets", targets, nil); code != http.StatusOK {
		t.Fatalf("PUT targets: %d", code)
	}

	runLog := &bytes.Buffer{}
	run := exec.Command(botBin, "run", "--state", state)
	run.Stdout, run.Stderr = runLog, runLog
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = run.Process.Kill(); _ = run.Wait() }()

	var scan map[string]any
	if code := cp.api("POST", "/bots/"+botID+"/scans", nil, &scan); code != http.StatusAccepted {
		t.Fatalf("POST scan: %d %v", code, scan)
	}
	// Kill the control plane while the bot is scanning and sending, then
	// bring it back on the same data: the bot's spool makes up the gap.
	time.Sleep(1500 * time.Millisecond)
	cp.kill()
	time.Sleep(3 * time.Second)
	cp.start()

	// The scan's completion comes after all its batches, so once it is
	// finished everything it found has been ingested.
	waitScanFinished(t, cp, botID, scan["scan_id"].(string))
	got := listCertificates(t, cp)
	missing := 0
	for fp := range want {
		if _, ok := got[fp]; !ok {
			missing++
		}
	}
	if missing > 0 || len(got) != len(want) {
		t.Fatalf("%d certificates missing, %d listed, %d expected\nbot log:\n%s", missing, len(got), len(want), tail(runLog.String()))
	}
	// The outage must have happened while the bot had work to send, or this
	// test proves nothing about the spool.
	if !strings.Contains(runLog.String(), "call to the control plane failed; retrying") {
		t.Errorf("the bot never saw the control plane down:\n%s", tail(runLog.String()))
	}
	if locs := got[fingerprint(shared)]; len(locs) != 2 {
		t.Errorf("the shared certificate has %d locations, want 2 (TLS and file): %v", len(locs), locs)
	}

	// D1: the next complete scan closes the places a certificate left, and
	// says when it went; the places it still lives stay present.
	if err := os.Remove(filepath.Join(certDir, "shared.pem")); err != nil {
		t.Fatal(err)
	}
	var second map[string]any
	if code := cp.api("POST", "/bots/"+botID+"/scans", nil, &second); code != http.StatusAccepted {
		t.Fatalf("POST second scan: %d", code)
	}
	waitScanFinished(t, cp, botID, second["scan_id"].(string))
	present := map[string]bool{}
	for _, l := range listCertificates(t, cp)[fingerprint(shared)] {
		loc := l.(map[string]any)
		uri, _ := loc["uri"].(string)
		present[uri], _ = loc["present"].(bool)
		if !present[uri] && loc["gone_at"] == nil {
			t.Errorf("%s is gone but has no gone_at", uri)
		}
	}
	filePresent, tlsPresent := false, false
	for uri, p := range present {
		switch {
		case strings.HasPrefix(uri, "file://"):
			filePresent = p
		case strings.HasPrefix(uri, "tls://"):
			tlsPresent = p
		}
	}
	if filePresent || !tlsPresent || len(present) != 2 {
		t.Errorf("after the file was removed: %v (want the file location gone and the TLS one present)", present)
	}

	// Secrets: the token and the target password are nowhere in clear.
	assertNoSecrets(t, data, nil, map[string]string{"control plane's log": cp.log.String(), "bot's log": runLog.String()}, token, secret)
	var listed map[string]any
	cp.api("GET", "/bots/"+botID+"/targets", nil, &listed)
	if b, _ := json.Marshal(listed); bytes.Contains(b, []byte(secret)) {
		t.Error("GET targets shows the password")
	}
}

// activatedBot creates an account, an API key and a bot named name, starts
// emsign-cp and activates the bot into a fresh state directory: the start of
// every test that runs a bot against the control plane.
func activatedBot(t *testing.T, cpBin, botBin, name string) (cp *controlPlane, account, botID, state string) {
	t.Helper()
	data, state := t.TempDir(), t.TempDir()
	account = runJSON(t, cpBin, "account", "create", "--data", data, "--name", "Example Corp")["account"].(string)
	apiKey := runJSON(t, cpBin, "apikey", "create", "--data", data, "--account", account, "--role", "administrator")["api_key"].(string)
	created := runJSON(t, cpBin, "bot", "create", "--data", data, "--account", account, "--name", name)
	botID, token := created["bot_id"].(string), created["token"].(string)

	cp = &controlPlane{t: t, bin: cpBin, data: data, listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), apiKey: apiKey}
	cp.start()
	if out, err := exec.Command(botBin, "activate", "--state", state, "--account", account, "--token", token,
		"--url", "https://"+cp.listen, "--ca-file", filepath.Join(data, "ca.pem")).CombinedOutput(); err != nil {
		t.Fatalf("activate: %v: %s", err, out)
	}
	return cp, account, botID, state
}

// assertNoSecrets checks that no secret is in clear in any file of the
// control plane's data directory, in the API answers collected, or in the
// logs given.
func assertNoSecrets(t *testing.T, data string, answers []byte, logs map[string]string, secrets ...string) {
	t.Helper()
	files := 0
	for _, secret := range secrets {
		if bytes.Contains(answers, []byte(secret)) {
			t.Errorf("an API answer shows a secret (%.4s...)", secret)
		}
		_ = filepath.WalkDir(data, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			files++
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds a secret (%.4s...) in clear", p, secret)
			}
			return nil
		})
		for name, log := range logs {
			if strings.Contains(log, secret) {
				t.Errorf("the %s shows a secret (%.4s...)", name, secret)
			}
		}
	}
	if files == 0 {
		t.Error("the control plane's data directory is empty")
	}
}

// stallingListener accepts connections and never answers, until the test
// ends: a TLS target on it holds a scan for the bot's handshake timeout.
func stallingListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
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
	return ln
}

// waitScanFinished waits until the bot's scan has finished.
func waitScanFinished(t *testing.T, cp *controlPlane, botID, scanID string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var scans struct {
			Scans []map[string]any `json:"scans"`
		}
		cp.api("GET", "/bots/"+botID+"/scans", nil, &scans)
		for _, sc := range scans.Scans {
			if sc["id"] == scanID && sc["finished"] != nil {
				if sc["complete"] != true {
					t.Fatalf("scan %s finished incomplete: %v", scanID, sc)
				}
				return
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("scan %s did not finish", scanID)
}

// listCertificates pages through GET /certificates: fingerprint → locations.
func listCertificates(t *testing.T, cp *controlPlane) map[string][]any {
	t.Helper()
	got := map[string][]any{}
	next := ""
	for {
		var page struct {
			Certificates []map[string]any `json:"certificates"`
			Next         string           `json:"next"`
		}
		path := "/certificates?limit=1000"
		if next != "" {
			path += "&next=" + next
		}
		if code := cp.api("GET", path, nil, &page); code != http.StatusOK {
			t.Fatalf("GET certificates: %d", code)
		}
		for _, c := range page.Certificates {
			locs, _ := c["locations"].([]any)
			got[c["fingerprint_sha256"].(string)] = locs
		}
		if page.Next == "" {
			return got
		}
		next = page.Next
	}
}

func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}
