package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emsign/bot/internal/testsvc"
)

// issuingCA is a CA the test signs "old" certificates with: the
// intermediate a mass replacement moves away from.
type issuingCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newIssuingCA(t *testing.T, cn string) *issuingCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: []string{"Old PKI"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(5 * 365 * 24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &issuingCA{cert: c, key: key}
}

// issue writes DIR/NAME.pem (certificate) and DIR/NAME.key (PKCS#8 key)
// for host, as a web server keeps them.
func (ca *issuingCA) issue(t *testing.T, dir, certFile, keyFile, host string) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(20 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := x509.MarshalPKCS8PrivateKey(key)
	if err := os.WriteFile(filepath.Join(dir, certFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, keyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// site is a web server reading its certificate from PEM files: openssl
// s_server, restarted by the reload command as nginx -s reload would
// make nginx read its files again.
type site struct {
	host   string
	dir    string
	port   int
	old    *x509.Certificate
	reload []string
}

func newSite(t *testing.T, ca *issuingCA, host string, reloadExtra ...string) *site {
	t.Helper()
	s := &site{host: host, dir: t.TempDir(), port: freePort(t)}
	s.old = ca.issue(t, s.dir, "cert.pem", "key.pem", host)
	script, err := filepath.Abs("testdata/restart-s_server.sh")
	if err != nil {
		t.Fatal(err)
	}
	s.reload = append([]string{script, s.dir, fmt.Sprint(s.port)}, reloadExtra...)
	// The server starts with the old files (no refusal at first start).
	if out, err := exec.Command(script, s.dir, fmt.Sprint(s.port)).CombinedOutput(); err != nil {
		t.Fatalf("start s_server for %s: %v: %s", host, err, out)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(s.dir, "pid")); err == nil {
			var pid int
			fmt.Sscan(string(b), &pid)
			if p, err := os.FindProcess(pid); pid > 0 && err == nil {
				_ = p.Signal(syscall.SIGTERM)
			}
		}
	})
	s.waitServes(t, fingerprint(s.old.Raw), 10*time.Second)
	return s
}

// served is the fingerprint of the leaf the site serves now ("" when it
// does not answer).
func (s *site) served() string {
	d := &net.Dialer{Timeout: 2 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", s.port), &tls.Config{ServerName: s.host, InsecureSkipVerify: true})
	if err != nil {
		return ""
	}
	defer c.Close()
	return fingerprint(c.ConnectionState().PeerCertificates[0].Raw)
}

func (s *site) waitServes(t *testing.T, fp string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := s.served()
		if got == fp {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "s_server.log"))
			t.Fatalf("%s serves %q, want %s\ns_server log:\n%s", s.host, got, fp, tail(string(log)))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// orderView is GET /api/v1/orders/{id}.
type orderView struct {
	ID             string `json:"id"`
	Action         string `json:"action"`
	Status         string `json:"status"`
	Fingerprint    string `json:"fingerprint"`
	NewFingerprint string `json:"new_fingerprint"`
	Location       string `json:"location"`
	Outcome        string `json:"outcome"`
	Error          string `json:"error"`
	Events         []struct {
		Status  string `json:"status"`
		Step    string `json:"step"`
		OK      bool   `json:"ok"`
		Message string `json:"message"`
	} `json:"events"`
}

func (o orderView) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "order %s %s: status %s outcome %q error %q", o.ID, o.Action, o.Status, o.Outcome, o.Error)
	for _, e := range o.Events {
		fmt.Fprintf(&b, "\n  %-10s %-8s ok=%-5v %s", e.Status, e.Step, e.OK, e.Message)
	}
	return b.String()
}

// waitOrder polls the order until its status is final.
func waitOrder(t *testing.T, cp *controlPlane, id string, within time.Duration, logs func() string) orderView {
	t.Helper()
	final := map[string]bool{"rotated": true, "re-keyed": true, "deployed": true, "failed": true, "rolled_back": true, "canceled": true}
	deadline := time.Now().Add(within)
	var o orderView
	for {
		o = orderView{}
		if code := cp.api("GET", "/orders/"+id, nil, &o); code != http.StatusOK {
			t.Fatalf("GET /orders/%s: %d", id, code)
		}
		if final[o.Status] {
			return o
		}
		if time.Now().After(deadline) {
			t.Fatalf("order not final after %s: %s\n%s", within, o, logs())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (o orderView) hasSteps(t *testing.T, steps ...string) {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range o.Events {
		if e.OK {
			seen[e.Step] = true
		}
	}
	for _, s := range steps {
		if !seen[s] {
			t.Errorf("order %s has no successful %q step:\n%s", o.ID, s, o)
		}
	}
}

// Issue 8, done when: a discovered certificate on a local TLS endpoint is
// rotated from the API (and, in TestRotationDashboard, from the
// dashboard): new key, order through Pebble, deployment, verification; the
// order shows each step and the dashboard counts move; a broken reload
// rolls back; a mass replacement of 50 locations runs in waves (B9, D7,
// P2, P7, P8, P9, S5).
func TestRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs both programs, Pebble and openssl s_server")
	}
	oldCA := newIssuingCA(t, "Distrusted Intermediate G1")
	good := newSite(t, oldCA, "web.example.test")
	broken := newSite(t, oldCA, "shop.example.test", "refuse-issuer", "Pebble")
	// 50 more certificates in files for the mass replacement, no server.
	bulk := t.TempDir()
	for i := range 50 {
		oldCA.issue(t, bulk, fmt.Sprintf("site%02d.pem", i), fmt.Sprintf("site%02d.key", i), fmt.Sprintf("site%02d.example.test", i))
	}
	env := startRotationEnv(t, []string{"file://" + bulk}, good, broken)
	cp, logs := env.cp, env.logs
	env.scan()
	certs := listCertificates(t, cp)
	for _, c := range []*x509.Certificate{good.old, broken.old} {
		if _, ok := certs[fingerprint(c.Raw)]; !ok {
			t.Fatalf("the scan did not find %s; found %d certificates\n%s", c.Subject.CommonName, len(certs), logs())
		}
	}

	// A provisioning template ordering from Pebble, the account's default.
	var tpl struct {
		ID string `json:"id"`
	}
	if code := cp.api("POST", "/provisioning-templates", map[string]any{
		"name": "Public web (ACME)", "default": true, "key_pair": "new", "keystore_password_type": "random",
		"ca_connector": "acme", "ca_settings": "pebble",
	}, &tpl); code != http.StatusCreated {
		t.Fatalf("POST provisioning-templates: %d", code)
	}

	// ---- Rotate from the API: new key, Pebble, deploy, reload, verify.
	goodLoc := fileLocation(t, cp, good.old)
	var order orderView
	if code := cp.api("POST", "/certificates/"+fingerprint(good.old.Raw)+"/rotate", map[string]any{
		"location": goodLoc,
		"deploy":   map[string]any{"reload": good.reload},
	}, &order); code != http.StatusAccepted {
		t.Fatalf("POST rotate: %d %+v\n%s", code, order, logs())
	}
	order = waitOrder(t, cp, order.ID, 2*time.Minute, logs)
	if order.Status != "rotated" {
		t.Fatalf("rotation ended %s, want rotated:\n%s\n%s", order.Status, order, logs())
	}
	order.hasSteps(t, "key", "csr", "issued", "backup", "write", "reload", "verify")
	good.waitServes(t, order.NewFingerprint, 5*time.Second)
	servedCert := readCert(t, filepath.Join(good.dir, "cert.pem"))
	if pemBlocks(t, filepath.Join(good.dir, "cert.pem")) < 2 {
		t.Error("cert.pem holds no chain after the leaf: clients without Pebble's intermediate would fail")
	}
	if !strings.Contains(servedCert.Issuer.CommonName, "Pebble") {
		t.Errorf("the new certificate's issuer is %q, want Pebble's intermediate", servedCert.Issuer)
	}
	if servedCert.PublicKey.(*ecdsa.PublicKey).Equal(good.old.PublicKey) {
		t.Error("the rotated certificate kept the old key")
	}
	if fmt.Sprint(servedCert.DNSNames) != fmt.Sprint(good.old.DNSNames) {
		t.Errorf("the new certificate names %v, want the old one's %v (SANs copied)", servedCert.DNSNames, good.old.DNSNames)
	}
	// The recheck scan after the rotation puts the new certificate in the
	// inventory at the file and the endpoint, without waiting for a
	// scheduled scan.
	waitLocations(t, cp, order.NewFingerprint, 2, time.Minute, logs)

	// ---- A reload that fails: rolled back, the old certificate served.
	if code := cp.api("POST", "/certificates/"+fingerprint(broken.old.Raw)+"/rotate", map[string]any{
		"location": fileLocation(t, cp, broken.old),
		"deploy":   map[string]any{"reload": broken.reload},
	}, &order); code != http.StatusAccepted {
		t.Fatalf("POST rotate (broken reload): %d\n%s", code, logs())
	}
	order = waitOrder(t, cp, order.ID, 2*time.Minute, logs)
	if order.Status != "rolled_back" {
		t.Fatalf("a rotation whose reload failed ended %s, want rolled_back:\n%s", order.Status, order)
	}
	order.hasSteps(t, "issued", "backup", "write", "rollback")
	broken.waitServes(t, fingerprint(broken.old.Raw), 5*time.Second)
	if got := readCert(t, filepath.Join(broken.dir, "cert.pem")); !got.Equal(broken.old) {
		t.Error("after the rollback cert.pem does not hold the old certificate")
	}

	// ---- The dashboard counts moved (S5).
	var dash DashboardCounts
	cp.api("GET", "/dashboard", nil, &dash)
	if dash.Certificates.Rotated < 1 || dash.Certificates.Issued+dash.Certificates.Deployed+dash.Certificates.Rotated < 1 {
		t.Errorf("dashboard after a rotation: %+v, want rotated >= 1", dash.Certificates)
	}

	// ---- Mass replacement (P9): the 50 bulk certificates, issued by the
	// distrusted intermediate, rotated by the local CA in waves of 10.
	var local struct {
		ID string `json:"id"`
	}
	if code := cp.api("POST", "/provisioning-templates", map[string]any{
		"name": "Private (local CA)", "default": false, "key_pair": "new", "keystore_password_type": "random",
		"ca_connector": "local",
	}, &local); code != http.StatusCreated {
		t.Fatalf("POST provisioning-templates (local): %d", code)
	}
	var batch struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Counts struct {
			Total   int `json:"total"`
			Pending int `json:"pending"`
			Ordered int `json:"ordered"`
			Done    int `json:"done"`
			Failed  int `json:"failed"`
			Skipped int `json:"skipped"`
		} `json:"counts"`
	}
	if code := cp.api("POST", "/batches", map[string]any{
		"name": "Replace Distrusted Intermediate G1", "template_id": local.ID, "action": "rotate", "wave_size": 10,
		"filter": map[string]any{"location": "file://" + bulk},
	}, &batch); code != http.StatusCreated {
		t.Fatalf("POST batches: %d %+v\n%s", code, batch, logs())
	}
	if batch.Status != "planned" || batch.Counts.Total != 50 {
		t.Fatalf("the plan: %+v, want 50 planned locations", batch)
	}
	if code := cp.api("POST", "/batches/"+batch.ID+"/start", nil, nil); code != http.StatusOK && code != http.StatusAccepted {
		t.Fatalf("start batch: %d", code)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		cp.api("GET", "/batches/"+batch.ID, nil, &batch)
		if batch.Counts.Ordered > 10 {
			t.Fatalf("%d orders under way at once, want at most the wave size 10", batch.Counts.Ordered)
		}
		if batch.Status == "done" || batch.Status == "stopped" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch not done after 5 minutes: %+v\n%s", batch, logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if batch.Status != "done" || batch.Counts.Done != 50 {
		t.Fatalf("batch ended %s with %+v, want done with 50 done\n%s", batch.Status, batch.Counts, logs())
	}
	for i := range 50 {
		c := readCert(t, filepath.Join(bulk, fmt.Sprintf("site%02d.pem", i)))
		if c.Issuer.CommonName == oldCA.cert.Subject.CommonName {
			t.Errorf("site%02d.pem is still issued by %s", i, c.Issuer.CommonName)
		}
	}
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// rotationEnv is a control plane ordering from Pebble (connector
// "pebble", HTTP-01 answered by the control plane) and one running bot
// that scans the sites and the extra targets, allowed to run the sites'
// reload commands.
type rotationEnv struct {
	t       *testing.T
	cp      *controlPlane
	account string
	botID   string
	botBin  string
	state   string
	pebble  *testsvc.Pebble
	runLog  *lockedBuffer
}

func startRotationEnv(t *testing.T, extraTargets []string, sites ...*site) *rotationEnv {
	t.Helper()
	return startRotationEnvWith(t, rotationOptions{Targets: extraTargets, Sites: sites})
}

// rotationOptions: what the bot scans besides the sites, and the
// environment it runs in (SOFTHSM2_CONF).
type rotationOptions struct {
	Targets []string
	Sites   []*site
	BotEnv  []string
}

func startRotationEnvWith(t *testing.T, o rotationOptions) *rotationEnv {
	t.Helper()
	extraTargets, sites := o.Targets, o.Sites
	cpBin, botBin := binaries(t)
	// Pebble validates HTTP-01 by fetching from every name on 127.0.0.1 at
	// this port, where the control plane answers the challenges.
	http01 := freePort(t)
	pebble := testsvc.StartPebble(t, testsvc.PebbleOptions{HTTPPort: http01})
	cfgDir := t.TempDir()
	caConfig := filepath.Join(cfgDir, "ca.json")
	writeJSON(t, caConfig, map[string]any{"connectors": map[string]any{
		"pebble": map[string]any{
			"kind": "acme", "directory_url": pebble.DirectoryURL, "ca_bundle_file": pebble.MinicaFile,
			"account_key_file": filepath.Join(cfgDir, "acme-account.key"), "terms_agreed": true,
			"http01_listen": fmt.Sprintf("127.0.0.1:%d", http01),
		},
	}})
	data, state := t.TempDir(), t.TempDir()
	account := runJSON(t, cpBin, "account", "create", "--data", data, "--name", "Example Corp")["account"].(string)
	apiKey := runJSON(t, cpBin, "apikey", "create", "--data", data, "--account", account, "--role", "administrator")["api_key"].(string)
	created := runJSON(t, cpBin, "bot", "create", "--data", data, "--account", account, "--name", "web-1")
	botID, token := created["bot_id"].(string), created["token"].(string)
	cp := &controlPlane{t: t, bin: cpBin, data: data, listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), apiKey: apiKey,
		args: []string{"--ca-config", caConfig}}
	cp.start()
	if out, err := exec.Command(botBin, "activate", "--state", state, "--account", account, "--token", token,
		"--url", "https://"+cp.listen, "--ca-file", filepath.Join(data, "ca.pem")).CombinedOutput(); err != nil {
		t.Fatalf("activate: %v: %s", err, out)
	}
	// The bot runs only the reload commands its administrator allowed.
	for _, s := range sites {
		if out, err := exec.Command(botBin, "configure", "--state", state, "--allow-reload", strings.Join(s.reload, " ")).CombinedOutput(); err != nil {
			t.Fatalf("configure --allow-reload: %v: %s", err, out)
		}
	}
	e := &rotationEnv{t: t, cp: cp, account: account, botID: botID, botBin: botBin, state: state, pebble: pebble, runLog: &lockedBuffer{}}
	run := exec.Command(botBin, "run", "--state", state)
	run.Env = append(os.Environ(), o.BotEnv...)
	run.Stdout, run.Stderr = e.runLog, e.runLog
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = run.Process.Kill(); _ = run.Wait() })
	targets := slices.Clone(extraTargets)
	for _, s := range sites {
		targets = append(targets, "file://"+s.dir, fmt.Sprintf("tls://127.0.0.1:%d?sni=%s", s.port, s.host))
	}
	if code := cp.api("PUT", "/bots/"+botID+"/targets", map[string]any{
		"targets": targets, "schedule": map[string]any{"kind": "on_demand"},
	}, nil); code != http.StatusOK {
		t.Fatalf("PUT targets: %d\n%s", code, e.logs())
	}
	return e
}

// logs is what the bot, the control plane and Pebble printed, for a
// failure's message.
func (e *rotationEnv) logs() string {
	return "bot log:\n" + tail(e.runLog.String()) + "\ncontrol plane log:\n" + tail(e.cp.log.String()) + "\npebble log:\n" + tail(e.pebble.Log())
}

// scan runs a scan of the bot and waits for its end.
func (e *rotationEnv) scan() {
	e.t.Helper()
	var started struct {
		ScanID string `json:"scan_id"`
	}
	if code := e.cp.api("POST", "/bots/"+e.botID+"/scans", nil, &started); code != http.StatusAccepted && code != http.StatusOK {
		e.t.Fatalf("POST scans: %d", code)
	}
	waitScanFinished(e.t, e.cp, e.botID, started.ScanID)
}

// fileLocation is the URI of the file location of c, as the certificate's
// view lists it.
func fileLocation(t *testing.T, cp *controlPlane, c *x509.Certificate) string {
	t.Helper()
	var view struct {
		Locations []struct {
			URI    string `json:"uri"`
			Source string `json:"source"`
		} `json:"locations"`
	}
	cp.api("GET", "/certificates/"+fingerprint(c.Raw), nil, &view)
	for _, l := range view.Locations {
		if l.Source == "file" {
			return l.URI
		}
	}
	t.Fatalf("%s has no file location: %+v", c.Subject.CommonName, view.Locations)
	return ""
}

// waitLocations waits until the certificate is in the inventory with at
// least n present locations.
func waitLocations(t *testing.T, cp *controlPlane, fp string, n int, within time.Duration, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var view struct {
			Locations []struct {
				URI     string `json:"uri"`
				Present bool   `json:"present"`
			} `json:"locations"`
		}
		present := 0
		if cp.api("GET", "/certificates/"+fp, nil, &view) == http.StatusOK {
			for _, l := range view.Locations {
				if l.Present {
					present++
				}
			}
		}
		if present >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("certificate %s has %d present locations after %s, want %d\n%s", fp, present, within, n, logs())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// DashboardCounts is the part of GET /api/v1/dashboard the rotation tests
// read.
type DashboardCounts struct {
	Certificates struct {
		Initiated int `json:"initiated"`
		Issued    int `json:"issued"`
		Deployed  int `json:"deployed"`
		Rotated   int `json:"rotated"`
		Rekeyed   int `json:"rekeyed"`
		Revoked   int `json:"revoked"`
		Suspended int `json:"suspended"`
	} `json:"certificates"`
}

// pemBlocks counts the PEM blocks of a file.
func pemBlocks(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return n
		}
		n++
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s holds no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
