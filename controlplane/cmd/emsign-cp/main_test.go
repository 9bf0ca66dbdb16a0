package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/internal/testcert"
	"github.com/emsign/bot/protocol"
)

// cli runs the command in-process and decodes its one JSON object.
func cli(t *testing.T, wantCode int, args ...string) map[string]any {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb, func(string) string { return "" })
	if code != wantCode {
		t.Fatalf("%v: exit %d, want %d; stderr %s", args, code, wantCode, errb.String())
	}
	if wantCode != exitOK {
		return map[string]any{"stderr": errb.String()}
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil || strings.Count(strings.TrimSpace(out.String()), "\n") != 0 {
		t.Fatalf("%v: stdout %q is not one JSON object: %v", args, out.String(), err)
	}
	return m
}

func TestAdminCommands(t *testing.T) {
	dir := t.TempDir()
	acc := cli(t, exitOK, "account", "create", "--data", dir, "--name", "Acme")["account"].(string)
	if len(acc) != 10 || strings.Trim(acc, "0123456789") != "" {
		t.Fatalf("account %q", acc)
	}
	key := cli(t, exitOK, "apikey", "create", "--data", dir, "--account", acc, "--role", "discovery_user")["api_key"].(string)
	if key == "" {
		t.Fatal("no api key")
	}
	bot := cli(t, exitOK, "bot", "create", "--data", dir, "--account", acc, "--name", "web", "--group", "dmz")
	id, token := bot["bot_id"].(string), bot["token"].(string)
	if len(token) != 36 {
		t.Fatalf("token %q", token)
	}
	// One bot per account until the limit is raised (B8).
	if e := cli(t, exitInternal, "bot", "create", "--data", dir, "--account", acc, "--name", "two")["stderr"].(string); !strings.Contains(e, "bot limit") {
		t.Fatalf("stderr %q", e)
	}
	cli(t, exitOK, "account", "set-limit", "--data", dir, "--account", acc, "--bots", "2")
	cli(t, exitOK, "bot", "create", "--data", dir, "--account", acc, "--name", "two")
	list := cli(t, exitOK, "bot", "list", "--data", dir, "--account", acc)["bots"].([]any)
	if len(list) != 2 || list[0].(map[string]any)["group"] != "dmz" {
		t.Fatalf("bots %v", list)
	}
	newToken := cli(t, exitOK, "bot", "token", "--data", dir, "--account", acc, "--bot", id)["token"].(string)
	if newToken == token {
		t.Fatal("token not regenerated")
	}
	cli(t, exitOK, "bot", "suspend", "--data", dir, "--account", acc, "--bot", id)
	cli(t, exitOK, "bot", "deactivate", "--data", dir, "--account", acc, "--bot", id)
	if st := cli(t, exitOK, "bot", "list", "--data", dir, "--account", acc)["bots"].([]any)[0].(map[string]any)["status"]; st != "inactive" {
		t.Fatalf("status %v", st)
	}

	tests := []struct {
		name string
		code int
		args []string
		want string
	}{
		{"unknown role", exitUsage, []string{"apikey", "create", "--data", dir, "--account", acc, "--role", "king"}, "role"},
		{"unknown account", exitInternal, []string{"bot", "create", "--data", dir, "--account", "0000000000", "--name", "x"}, "not found"},
		{"missing flag", exitUsage, []string{"bot", "create", "--data", dir, "--account", acc}, "name"},
		{"postgres", exitUsage, []string{"bot", "list", "--data", dir, "--account", acc, "--db", "postgres://x"}, "not supported yet"},
		{"bad limit", exitUsage, []string{"account", "set-limit", "--data", dir, "--account", acc, "--bots", "0"}, "--bots"},
		{"unknown bot", exitInternal, []string{"bot", "suspend", "--data", dir, "--account", acc, "--bot", "nope"}, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if e := cli(t, tt.code, tt.args...)["stderr"].(string); !strings.Contains(e, tt.want) {
				t.Fatalf("stderr %q, want %q", e, tt.want)
			}
		})
	}
	// sqlite://PATH puts the database elsewhere.
	other := filepath.Join(t.TempDir(), "other.db")
	cli(t, exitOK, "account", "create", "--data", dir, "--db", "sqlite://"+other, "--name", "B")
	if _, err := os.Stat(other); err != nil {
		t.Fatal(err)
	}
	// No token or key in clear in any file of the data directory.
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, s := range []string{token, newToken, key} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds a secret in clear", f)
			}
		}
	}
}

// process is a running `emsign-cp serve`.
type process struct {
	cmd    *exec.Cmd
	addr   string
	stderr *bytes.Buffer
}

func startServe(t *testing.T, bin, dir string) *process {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--data", dir, "--listen", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, stderr: &bytes.Buffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	lines := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		if s.Scan() {
			lines <- s.Text()
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-lines:
		var m map[string]string
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("serve printed %q: %v", l, err)
		}
		p.addr = m["listening"]
	case <-time.After(20 * time.Second):
		t.Fatalf("serve did not start: %s", p.stderr.String())
	}
	return p
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "emsign-cp")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := filepath.Join(tmp, "data")
	runJSON := func(args ...string) map[string]any {
		t.Helper()
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("%v: %q: %v", args, out, err)
		}
		return m
	}
	acc := runJSON("account", "create", "--data", dir, "--name", "Acme")["account"].(string)
	key := runJSON("apikey", "create", "--data", dir, "--account", acc, "--role", "administrator")["api_key"].(string)
	created := runJSON("bot", "create", "--data", dir, "--account", acc, "--name", "web")
	botID, token := created["bot_id"].(string), created["token"].(string)

	p := startServe(t, bin, dir)
	for _, f := range []string{"ca.pem", "ca.key", "secret.key", "cp.db"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("data directory: %v", err)
		}
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
	}
	call := func(c *http.Client, method, path string, body any, want int) []byte {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, "https://"+p.addr+path, rd)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, b)
		}
		return b
	}
	// Plain HTTP is refused: HTTPS only.
	if resp, err := http.Get("http://" + p.addr + "/api/v1/bots"); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("plain HTTP answered %d", resp.StatusCode)
		}
	}

	call(client(), "PUT", "/api/v1/bots/"+botID+"/targets", map[string]any{"targets": []string{"tls://127.0.0.1:443", "jks:///opt?password=hunter2-secret"},
		"schedule": map[string]string{"kind": "daily", "time": "02:30", "timezone": "Asia/Kolkata"}}, http.StatusOK)

	// Activate and report a scan.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	var ar protocol.ActivateResponse
	json.Unmarshal(call(client(), "POST", protocol.PathActivate, protocol.ActivateRequest{Account: acc, Token: token, Hostname: "h1",
		CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}))}, http.StatusOK), &ar)
	kd, _ := x509.MarshalECPrivateKey(k)
	cert, err := tls.X509KeyPair([]byte(ar.Certificate), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
	if err != nil {
		t.Fatal(err)
	}
	botc := client(cert)
	var cfg protocol.BotConfig
	json.Unmarshal(call(botc, "GET", protocol.PathConfig, nil, http.StatusOK), &cfg)
	if len(cfg.Targets) != 2 || cfg.Targets[1] != "jks:///opt?password=hunter2-secret" {
		t.Fatalf("config %+v", cfg)
	}
	der := testcert.NewGenerator(t).New(t, testcert.Options{CN: "e2e.example.com"})
	call(botc, "POST", protocol.PathScans, protocol.ScanStart{ScanID: "scan-e2e", Trigger: "schedule"}, http.StatusOK)
	call(botc, "POST", protocol.FindingsPath("scan-e2e"), protocol.FindingsBatch{Seq: 1, Findings: []protocol.Finding{
		{Location: protocol.Location{Scheme: "tls", Host: "127.0.0.1:443"}, Source: "tls", Chain: [][]byte{der}}}}, http.StatusOK)
	call(botc, "POST", protocol.ScanCompletePath("scan-e2e"), protocol.ScanComplete{Complete: true}, http.StatusOK)
	call(client(), "POST", "/api/v1/bots/"+botID+"/scans", nil, http.StatusAccepted)

	// Killed without a chance to clean up, then started again.
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()
	p = startServe(t, bin, dir)
	caAgain, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if !bytes.Equal(caPEM, caAgain) {
		t.Fatal("the CA changed on restart")
	}
	var bot struct {
		Status   string
		Host     string
		Targets  int
		LastScan *struct{ ID string } `json:"last_scan"`
		NextScan *time.Time           `json:"next_scan"`
	}
	json.Unmarshal(call(client(), "GET", "/api/v1/bots/"+botID, nil, http.StatusOK), &bot)
	if bot.Status != "active" || bot.Host != "h1" || bot.Targets != 2 || bot.LastScan == nil || bot.LastScan.ID != "scan-e2e" || bot.NextScan == nil {
		t.Fatalf("after restart: %+v", bot)
	}
	var certs struct{ Certificates []map[string]any }
	json.Unmarshal(call(client(), "GET", "/api/v1/certificates?q=e2e", nil, http.StatusOK), &certs)
	if len(certs.Certificates) != 1 || certs.Certificates[0]["fingerprint_sha256"] != protocol.Fingerprint(der) {
		t.Fatalf("certificates after restart: %+v", certs)
	}
	// The bot's certificate still works; the queued scan job is still there.
	var jobs protocol.JobsResponse
	json.Unmarshal(call(botc, "GET", protocol.PathJobs, nil, http.StatusOK), &jobs)
	if len(jobs.Jobs) != 2 { // config_changed and scan
		t.Fatalf("jobs after restart: %+v", jobs)
	}
	json.Unmarshal(call(botc, "GET", protocol.PathConfig, nil, http.StatusOK), &cfg)
	if len(cfg.Targets) != 2 {
		t.Fatalf("targets after restart: %+v", cfg)
	}

	// SIGTERM: a graceful stop, exit 0.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, p.stderr.String())
	}
	if strings.Contains(p.stderr.String(), "hunter2-secret") || strings.Contains(p.stderr.String(), token) {
		t.Fatal("a secret in the server's log")
	}
}
