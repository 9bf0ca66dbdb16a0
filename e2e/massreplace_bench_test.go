package e2e

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Knobs of BenchmarkMassReplacement, read from the environment so that
// scripts/bench.sh measures the issue's figure and a developer can make a
// quick run (EMSIGN_BENCH_LOCATIONS=500).
const (
	envBenchLocations = "EMSIGN_BENCH_LOCATIONS" // default 10,000: issue 8's figure
	envBenchBots      = "EMSIGN_BENCH_BOTS"      // default 4
	envBenchWave      = "EMSIGN_BENCH_WAVE"      // default 500
	envBenchLogDir    = "EMSIGN_BENCH_LOG_DIR"   // keep the processes' logs there (default: a temporary directory)
)

// BenchmarkMassReplacement is issue 8's figure: 10,000 locations replaced
// in under 15 minutes (P9), measured through the real programs on
// loopback: one emsign-cp serve (SQLite in its data directory) and
// EMSIGN_BENCH_BOTS (4) emsign-bot run processes, each holding its share
// of EMSIGN_BENCH_LOCATIONS (10,000) locations laid out as nginx keeps
// them, ROOT/botK/siteNNNNN/{cert.pem,key.pem}, the certificates issued by
// a distrusted intermediate. Only the replacement is timed: POST
// /batches filtered by that issuer, start, and polling every 500 ms until
// the batch is done. Each location is then checked: cert.pem no longer
// issued by the old intermediate, key.pem its new key. Run it with
// -benchtime 1x; EMSIGN_BENCH_LOCATIONS=500 makes a quick run.
//
// Waves of EMSIGN_BENCH_WAVE (500): what a customer replacing a
// distrusted intermediate would choose. 5% of 10,000 locations at a time
// bounds what a bad template or CA breaks before max_failures stops the
// batch, while 20 waves keep the wait between waves (the runner's one
// second pass, the slowest rotation of each wave) a small share of the
// run.
func BenchmarkMassReplacement(b *testing.B) {
	if testing.Short() {
		b.Skip("runs both programs over thousands of locations")
	}
	locations := benchEnvInt(b, envBenchLocations, 10_000)
	bots := benchEnvInt(b, envBenchBots, 4)
	wave := benchEnvInt(b, envBenchWave, 500)
	if bots > locations {
		b.Fatalf("%s=%d: more bots than %s=%d", envBenchBots, bots, envBenchLocations, locations)
	}
	b.StopTimer()
	cpBin, botBin := binaries(b)
	var seconds, cpu, peakMB float64
	for range b.N {
		r := runMassReplacement(b, cpBin, botBin, locations, bots, wave)
		seconds += r.seconds
		cpu += r.cpCPU
		peakMB = max(peakMB, r.cpPeakMB)
	}
	b.ReportMetric(seconds/float64(b.N), "s/replacement-run")
	b.ReportMetric(float64(locations*b.N)/seconds, "locations/s")
	b.ReportMetric(peakMB, "cp-peak-RSS-MB")
	// With the wall time: whether the control plane was the bottleneck.
	b.ReportMetric(cpu/float64(locations*b.N)*1000, "cp-CPU-ms/location")
	b.ReportMetric(float64(locations), "locations")
	b.ReportMetric(float64(wave), "wave-size")
}

type massResult struct {
	seconds  float64
	cpPeakMB float64
	cpCPU    float64 // the control plane's CPU seconds in the timed part
}

// massSite is one location: its directory and the key it held before.
type massSite struct {
	dir    string
	oldKey crypto.PublicKey
}

// runMassReplacement sets up a control plane and bots over fresh
// locations (untimed), replaces every location (timed) and checks each.
func runMassReplacement(b *testing.B, cpBin, botBin string, locations, bots, wave int) massResult {
	logDir := os.Getenv(envBenchLogDir)
	if logDir == "" {
		logDir = b.TempDir()
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		b.Fatal(err)
	}

	// ---- Setup, not timed: locations, control plane, bots, scans, template.
	t0 := time.Now()
	oldCA := newMassCA(b, "Distrusted Intermediate G1")
	root := b.TempDir()
	sites := oldCA.issueSites(b, root, locations, bots)
	b.Logf("setup: %d locations on %d bots issued in %s", locations, bots, time.Since(t0).Round(time.Millisecond))

	data := b.TempDir()
	account := runJSON(b, cpBin, "account", "create", "--data", data, "--name", "Example Corp")["account"].(string)
	runJSON(b, cpBin, "account", "set-limit", "--data", data, "--account", account, "--bots", strconv.Itoa(bots))
	apiKey := runJSON(b, cpBin, "apikey", "create", "--data", data, "--account", account, "--role", "administrator")["api_key"].(string)
	type bot struct{ id, token, state string }
	bs := make([]bot, bots)
	for i := range bs {
		created := runJSON(b, cpBin, "bot", "create", "--data", data, "--account", account, "--name", fmt.Sprintf("web-%d", i))
		bs[i] = bot{id: created["bot_id"].(string), token: created["token"].(string), state: b.TempDir()}
	}
	cp := startMassCP(b, cpBin, data, filepath.Join(logDir, "emsign-cp.log"))
	cp.apiKey = apiKey
	for i, bt := range bs {
		if out, err := exec.Command(botBin, "activate", "--state", bt.state, "--account", account, "--token", bt.token,
			"--url", "https://"+cp.listen, "--ca-file", filepath.Join(data, "ca.pem")).CombinedOutput(); err != nil {
			b.Fatalf("activate bot %d: %v: %s", i, err, out)
		}
		startMassBot(b, botBin, bt.state, filepath.Join(logDir, fmt.Sprintf("emsign-bot-%d.log", i)))
	}
	logs := func() string {
		var s strings.Builder
		for i := range bs {
			l, _ := os.ReadFile(filepath.Join(logDir, fmt.Sprintf("emsign-bot-%d.log", i)))
			fmt.Fprintf(&s, "bot %d log:\n%s\n", i, tail(string(l)))
		}
		l, _ := os.ReadFile(filepath.Join(logDir, "emsign-cp.log"))
		return s.String() + "control plane log:\n" + tail(string(l))
	}

	// One file target per bot over its share, then all the scans at once.
	scans := make([]string, bots)
	for i, bt := range bs {
		targets := map[string]any{"targets": []string{"file://" + filepath.Join(root, fmt.Sprintf("bot%d", i))},
			"schedule": map[string]any{"kind": "on_demand"}}
		if code := cp.api(b, "PUT", "/bots/"+bt.id+"/targets", targets, nil); code != http.StatusOK {
			b.Fatalf("PUT targets of bot %d: %d\n%s", i, code, logs())
		}
	}
	t0 = time.Now()
	for i, bt := range bs {
		var started struct {
			ScanID string `json:"scan_id"`
		}
		if code := cp.api(b, "POST", "/bots/"+bt.id+"/scans", nil, &started); code != http.StatusAccepted && code != http.StatusOK {
			b.Fatalf("POST scans of bot %d: %d\n%s", i, code, logs())
		}
		scans[i] = started.ScanID
	}
	for i, bt := range bs {
		cp.waitScan(b, bt.id, scans[i], 10*time.Minute, logs)
	}
	if n := cp.countIssuedBy(b, oldCA.cert.Subject.CommonName); n != locations {
		b.Fatalf("after the scans the inventory holds %d certificates issued by %s, want %d\n%s",
			n, oldCA.cert.Subject.CommonName, locations, logs())
	}
	b.Logf("setup: %d bots scanned %d locations in %s", bots, locations, time.Since(t0).Round(time.Millisecond))

	var tpl struct {
		ID string `json:"id"`
	}
	if code := cp.api(b, "POST", "/provisioning-templates", map[string]any{
		"name": "Private (local CA)", "default": true, "key_pair": "new", "keystore_password_type": "random",
		"ca_connector": "local",
	}, &tpl); code != http.StatusCreated {
		b.Fatalf("POST provisioning-templates: %d", code)
	}

	// ---- Timed: plan, start, poll until done.
	var batch massBatch
	cpuBefore := cp.cpuSeconds(b)
	b.StartTimer()
	start := time.Now()
	if code := cp.api(b, "POST", "/batches", map[string]any{
		"name": "Replace Distrusted Intermediate G1", "template_id": tpl.ID, "action": "rotate",
		"wave_size": wave, "max_failures": 50,
		"filter": map[string]any{"issuer": oldCA.cert.Subject.CommonName},
	}, &batch); code != http.StatusCreated {
		b.Fatalf("POST batches: %d %+v\n%s", code, batch, logs())
	}
	planned := time.Since(start)
	if batch.Status != "planned" || batch.Counts.Total != locations || batch.Counts.Skipped != 0 {
		b.Fatalf("the plan: %+v, want %d planned locations", batch, locations)
	}
	if code := cp.api(b, "POST", "/batches/"+batch.ID+"/start", nil, nil); code != http.StatusOK && code != http.StatusAccepted {
		b.Fatalf("start batch: %d\n%s", code, logs())
	}
	// No progress lines: go test keeps only the first lines a benchmark
	// logs, and the figures come last.
	deadline := start.Add(time.Hour)
	for batch.Status != "done" && batch.Status != "stopped" {
		time.Sleep(500 * time.Millisecond)
		if code := cp.api(b, "GET", "/batches/"+batch.ID, nil, &batch); code != http.StatusOK {
			b.Fatalf("GET batch: %d", code)
		}
		if time.Now().After(deadline) {
			b.Fatalf("batch not done after an hour: %+v\n%s", batch, logs())
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := cp.cpuSeconds(b) - cpuBefore
	peak := cp.peakRSSMB(b)
	b.Logf("replaced %d locations in %s (plan %s), waves of %d: %.1f locations/s; control plane %.0f s CPU, peak RSS %.0f MB",
		locations, elapsed.Round(time.Millisecond), planned.Round(time.Millisecond), wave,
		float64(locations)/elapsed.Seconds(), cpu, peak)

	// ---- Not timed: the batch's counts and every location's files.
	if batch.Status != "done" || batch.Counts.Done != locations || batch.Counts.Failed != 0 {
		var report struct {
			Failures []struct {
				Location    string `json:"location"`
				OrderStatus string `json:"order_status"`
				Error       string `json:"error"`
			} `json:"failures"`
		}
		cp.api(b, "GET", "/batches/"+batch.ID+"/report", nil, &report)
		if len(report.Failures) > 5 {
			report.Failures = report.Failures[:5]
		}
		b.Fatalf("batch ended %s with %+v, want done with %d done and none failed; first failures %+v\n%s",
			batch.Status, batch.Counts, locations, report.Failures, logs())
	}
	var report struct {
		Waves []struct {
			Wave            int     `json:"wave"`
			DurationSeconds float64 `json:"duration_seconds"`
		} `json:"waves"`
	}
	cp.api(b, "GET", "/batches/"+batch.ID+"/report", nil, &report)
	var waves []string
	for _, w := range report.Waves {
		waves = append(waves, fmt.Sprintf("%d:%.1fs", w.Wave, w.DurationSeconds))
	}
	b.Logf("waves (first order to last end): %s", strings.Join(waves, " "))
	checkMassSites(b, oldCA, sites)
	return massResult{seconds: elapsed.Seconds(), cpPeakMB: peak, cpCPU: cpu}
}

// massBatch is the part of GET /batches/{id} the benchmark reads.
type massBatch struct {
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

// checkMassSites fails the benchmark for any location whose cert.pem is
// still issued by old, keeps the old key, or does not match key.pem.
func checkMassSites(b *testing.B, old *massCA, sites []massSite) {
	var mu sync.Mutex
	var bad []string
	massParallel(len(sites), func(i int) {
		if err := checkMassSite(old, sites[i]); err != nil {
			mu.Lock()
			bad = append(bad, fmt.Sprintf("%s: %v", sites[i].dir, err))
			mu.Unlock()
		}
	})
	if len(bad) > 0 {
		b.Fatalf("%d of %d locations not replaced right, e.g.:\n%s", len(bad), len(sites), strings.Join(bad[:min(len(bad), 10)], "\n"))
	}
}

func checkMassSite(old *massCA, s massSite) error {
	certPEM, err := os.ReadFile(filepath.Join(s.dir, "cert.pem"))
	if err != nil {
		return err
	}
	blk, _ := pem.Decode(certPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return errors.New("cert.pem: no certificate first")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fmt.Errorf("cert.pem: %w", err)
	}
	if bytes.Equal(c.RawIssuer, old.cert.RawSubject) || c.CheckSignatureFrom(old.cert) == nil {
		return fmt.Errorf("cert.pem is still issued by %s", old.cert.Subject.CommonName)
	}
	keyPEM, err := os.ReadFile(filepath.Join(s.dir, "key.pem"))
	if err != nil {
		return err
	}
	key, err := parseMassKey(keyPEM)
	if err != nil {
		return fmt.Errorf("key.pem: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return fmt.Errorf("key.pem: a %T key", key)
	}
	if !pub.Equal(c.PublicKey) {
		return errors.New("key.pem does not hold the key of cert.pem")
	}
	if pub.Equal(s.oldKey) {
		return errors.New("the new certificate kept the old key (template key_pair new)")
	}
	return nil
}

// parseMassKey reads the first private key of a PEM file in any of the
// forms a rotation may write it in.
func parseMassKey(b []byte) (crypto.Signer, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, errors.New("no private key")
		}
		var k any
		var err error
		switch blk.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("a %T key", k)
		}
		return s, nil
	}
}

// massCA is the distrusted intermediate: newIssuingCA's, for a benchmark.
type massCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newMassCA(b testing.TB, cn string) *massCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: []string{"Old PKI"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(5 * 365 * 24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		b.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}
	return &massCA{cert: c, key: key}
}

// issueSites writes n locations, ROOT/botK/siteNNNNN/cert.pem and key.pem
// (PKCS#8), shared round-robin among bots directories, on every CPU.
func (ca *massCA) issueSites(b testing.TB, root string, n, bots int) []massSite {
	sites := make([]massSite, n)
	var mu sync.Mutex
	var first error
	massParallel(n, func(i int) {
		host := fmt.Sprintf("site%05d.example.test", i)
		dir := filepath.Join(root, fmt.Sprintf("bot%d", i%bots), fmt.Sprintf("site%05d", i))
		pub, err := ca.writeSite(dir, host)
		mu.Lock()
		defer mu.Unlock()
		if err != nil && first == nil {
			first = err
		}
		sites[i] = massSite{dir: dir, oldKey: pub}
	})
	if first != nil {
		b.Fatal(first)
	}
	return sites
}

func (ca *massCA) writeSite(dir, host string) (crypto.PublicKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(20 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		return nil, err
	}
	return key.Public(), nil
}

// massParallel runs fn(0..n-1) on every CPU.
func massParallel(n int, fn func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// massCP is a running emsign-cp serve for a benchmark (controlPlane
// holds a *testing.T), its log in a file.
type massCP struct {
	cmd    *exec.Cmd
	listen string
	apiKey string
	client *http.Client
}

func startMassCP(b testing.TB, bin, data, logPath string) *massCP {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	logFile, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { logFile.Close() })
	c := &massCP{listen: listen, cmd: exec.Command(bin, "serve", "--data", data, "--listen", listen)}
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.cmd.Process.Signal(syscall.SIGKILL); _ = c.cmd.Wait() })
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		pemCA, err := os.ReadFile(filepath.Join(data, "ca.pem"))
		if err != nil {
			continue
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pemCA)
		// Planning 10,000 locations is one request: a minute, not
		// controlPlane's 10 s.
		c.client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		if resp, err := c.client.Get("https://" + listen + "/api/v1/bots"); err == nil {
			resp.Body.Close()
			return c
		}
	}
	l, _ := os.ReadFile(logPath)
	b.Fatalf("emsign-cp did not come up on %s:\n%s", listen, tail(string(l)))
	return nil
}

// api calls the user API and decodes the answer into out (if not nil).
func (c *massCP) api(b testing.TB, method, path string, body, out any) int {
	var r io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, "https://"+c.listen+"/api/v1"+path, r)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		b.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	j, _ := io.ReadAll(resp.Body)
	if out != nil && len(j) > 0 {
		if err := json.Unmarshal(j, out); err != nil {
			b.Fatalf("%s %s: %d %.300q: %v", method, path, resp.StatusCode, j, err)
		}
	}
	return resp.StatusCode
}

// waitScan waits until the bot's scan has finished complete.
func (c *massCP) waitScan(b testing.TB, botID, scanID string, within time.Duration, logs func() string) {
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		var scans struct {
			Scans []map[string]any `json:"scans"`
		}
		c.api(b, "GET", "/bots/"+botID+"/scans", nil, &scans)
		for _, sc := range scans.Scans {
			if sc["id"] == scanID && sc["finished"] != nil {
				if sc["complete"] != true {
					b.Fatalf("scan %s finished incomplete: %v\n%s", scanID, sc, logs())
				}
				return
			}
		}
	}
	b.Fatalf("scan %s did not finish within %s\n%s", scanID, within, logs())
}

// countIssuedBy pages through GET /certificates?issuer=.
func (c *massCP) countIssuedBy(b testing.TB, issuer string) int {
	n, next := 0, ""
	for {
		var page struct {
			Certificates []struct {
				Issuer string `json:"issuer"`
			} `json:"certificates"`
			Next string `json:"next"`
		}
		path := "/certificates?limit=1000&issuer=" + url.QueryEscape(issuer)
		if next != "" {
			path += "&next=" + next
		}
		if code := c.api(b, "GET", path, nil, &page); code != http.StatusOK {
			b.Fatalf("GET certificates: %d", code)
		}
		for _, cert := range page.Certificates {
			if strings.Contains(cert.Issuer, issuer) {
				n++
			}
		}
		if page.Next == "" {
			return n
		}
		next = page.Next
	}
}

// cpuSeconds is the CPU time (user and system) the control plane has
// used so far: /proc/PID/stat's utime and stime, in clock ticks of 1/100 s
// (USER_HZ is 100 on every Linux architecture Go supports).
func (c *massCP) cpuSeconds(b testing.TB) float64 {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name (field 2) may hold spaces: count from its ")".
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 13 {
		b.Fatalf("/proc/%d/stat: %q", c.cmd.Process.Pid, stat)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		b.Fatal(err)
	}
	return (utime + stime) / 100
}

// peakRSSMB is the control plane's peak resident memory (VmHWM).
func (c *massCP) peakRSSMB(b testing.TB) float64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" && f[2] == "kB" {
			kb, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("no VmHWM in /proc/%d/status", c.cmd.Process.Pid)
	return 0
}

// startMassBot runs emsign-bot run over an activated state directory
// until the benchmark ends.
func startMassBot(b testing.TB, bin, state, logPath string) {
	logFile, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { logFile.Close() })
	run := exec.Command(bin, "run", "--state", state)
	run.Stdout, run.Stderr = logFile, logFile
	if err := run.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = run.Process.Kill(); _ = run.Wait() })
}

func benchEnvInt(b testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}
