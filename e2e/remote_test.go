package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	fakeaws "github.com/emsign/bot/internal/fakes/aws"
	fakecloudflare "github.com/emsign/bot/internal/fakes/cloudflare"
	fakef5 "github.com/emsign/bot/internal/fakes/f5"
	"github.com/emsign/bot/internal/testsvc"
)

const (
	sshUser      = "emsign-e2e"
	sshPassword  = "Ssh-e2e_login-9Kq2"
	cfToken      = "cf-e2e-TOKEN-51d7a0"
	keystorePass = "changeit" // the corpus keystores' password
)

// remote is what the remote and cloud targets hold: per target, the
// fingerprints expected and the location prefix they are found at.
type remote struct {
	sshd        *testsvc.SSHD
	certDir     string
	aws         *fakeaws.Fake
	f5          *fakef5.Fake
	f5CA        string
	cf          *fakecloudflare.Fake
	want        map[string]map[string]bool // location prefix -> fingerprints
	keystoreFPs map[string]bool            // only in the (encrypted) PKCS#12
	secrets     []string
}

// remoteFixture starts sshd with a tree of corpus files (a PEM bundle, a
// PKCS#12 and a JKS, all with the password changeit), a fake ACM/IAM with
// every key type paged two at a time, a fake BIG-IP with its own CA and a
// fake Cloudflare API.
func remoteFixture(t *testing.T) *remote {
	t.Helper()
	r := &remote{want: map[string]map[string]bool{}, keystoreFPs: map[string]bool{},
		secrets: []string{sshPassword, fakeaws.Secret, fakef5.Password, cfToken}}

	// SSH: the corpus files, owned by the test user.
	r.sshd = testsvc.StartSSHD(t, sshUser, sshPassword)
	dir, err := os.MkdirTemp(r.sshd.Home, "certs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	r.certDir = dir
	corpus := filepath.Join("..", "connectors", "files", "testdata")
	var expected struct {
		Certificates []struct {
			Location string `json:"location"`
			SHA256   string `json:"sha256"`
		} `json:"certificates"`
	}
	b, err := os.ReadFile(filepath.Join(corpus, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &expected); err != nil {
		t.Fatal(err)
	}
	sshWant := map[string]bool{}
	plain := map[string]bool{} // readable without a password (PEM, and JKS, whose certificates are not encrypted)
	files := map[string]string{"pem/bundle.pem": "etc/bundle.pem", "p12/keytool.p12": "app/keytool.p12", "jks/keystore.jks": "app/keystore.jks"}
	for src, dst := range files {
		data, err := os.ReadFile(filepath.Join(corpus, "corpus", src))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, dst)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, c := range expected.Certificates {
			if strings.HasPrefix(c.Location, src+"#") {
				sshWant[c.SHA256] = true
				if !strings.HasPrefix(src, "p12/") {
					plain[c.SHA256] = true
				}
			}
		}
	}
	for fp := range sshWant {
		if !plain[fp] {
			r.keystoreFPs[fp] = true
		}
	}
	if len(sshWant) < 4 || len(r.keystoreFPs) < 1 {
		t.Fatalf("the corpus gives %d certificates, %d only in the PKCS#12", len(sshWant), len(r.keystoreFPs))
	}
	if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, r.sshd.UID, r.sshd.GID)
	}); err != nil {
		t.Fatal(err)
	}
	r.want["ssh://"] = sshWant

	// AWS: every ACM certificate of eu-west-1 whose PEM ACM returns, of
	// every key type, and the IAM server certificates.
	r.aws = fakeaws.Start(t, 2)
	awsWant := map[string]bool{}
	keyTypes := map[string]bool{}
	for _, c := range r.aws.Certs() {
		if c.PEM == "" || (c.Service == "acm" && c.Region != "eu-west-1") {
			continue
		}
		blk, _ := pem.Decode([]byte(c.PEM))
		awsWant[fingerprint(blk.Bytes)] = true
		if c.Service == "acm" {
			keyTypes[c.KeyAlgorithm] = true
		}
	}
	if len(keyTypes) < 3 {
		t.Fatalf("the fake ACM has key types %v only", keyTypes)
	}
	r.want["aws://"] = awsWant

	// F5: every certificate of every partition (a bundle's CA is its
	// leaf's chain, not a certificate of its own).
	r.f5 = fakef5.Start(t)
	r.f5CA = r.f5.CAFile()
	f5Want := map[string]bool{}
	for _, chain := range r.f5.Certs() {
		f5Want[fingerprint(chain[0])] = true
	}
	r.want["f5://"] = f5Want

	// Cloudflare: the Origin CA certificates, whose PEM the API returns.
	r.cf = fakecloudflare.Start(t, cfToken)
	cfWant := map[string]bool{}
	for _, c := range r.cf.Origin {
		cfWant[fingerprint(c.Raw)] = true
	}
	r.want["cloudflare://"] = cfWant
	return r
}

// targets are the four targets; keystorePW adds the keystores' password
// to the ssh target (the bot run through the control plane has no
// --password flag).
func (r *remote) targets(keystorePW bool) map[string]string {
	q := url.QueryEscape
	ssh := fmt.Sprintf("ssh://%s@%s%s?password=%s&host_key=%s", sshUser, r.sshd.Addr, r.certDir, q(sshPassword), q(r.sshd.HostKey))
	if keystorePW {
		ssh += "&password=" + keystorePass
	}
	return map[string]string{
		"ssh://": ssh,
		"aws://": "aws://eu-west-1?" + url.Values{"access_key": {fakeaws.AccessKey}, "secret_key": {fakeaws.Secret},
			"endpoint": {r.aws.URL()}}.Encode(),
		"f5://": fmt.Sprintf("f5://%s?user=%s&password=%s&ca_file=%s", r.f5.Host(), fakef5.User, q(fakef5.Password), q(r.f5CA)),
		"cloudflare://": fmt.Sprintf("cloudflare://%s?api_token=%s&endpoint=%s", fakecloudflare.ZoneID, q(cfToken),
			q(r.cf.URL())),
	}
}

// awsEnv keeps the developer's own AWS setup away from the bot.
var awsEnv = []string{"AWS_CONFIG_FILE=/nonexistent", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent", "AWS_PROFILE=",
	"AWS_ENDPOINT_URL=", "AWS_EC2_METADATA_DISABLED=true", "AWS_CA_BUNDLE="}

// scanLines runs `emsign-bot scan --format json ARGS...` and returns its
// JSON lines, stdout and stderr.
func scanLines(t *testing.T, bot string, args ...string) ([]map[string]any, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bot, append([]string{"scan", "--format", "json", "--progress", "never"}, args...)...)
	cmd.Env = append(os.Environ(), awsEnv...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Logf("emsign-bot scan: %v (the findings are checked below)", err)
	}
	var lines []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(stdout.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("a line of output is not one JSON object: %q", sc.Text())
		}
		lines = append(lines, m)
	}
	return lines, stdout.String(), stderr.String()
}

// Issue 5, done when: `emsign-bot scan --format json` finds every
// certificate on a remote host over SSH (keystores included with
// --password), every ACM certificate of any key type across pages, and the
// F5 and Cloudflare certificates in their fakes.
func TestScanRemoteAndCloudCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the bot and runs sshd and fake AWS, F5 and Cloudflare APIs")
	}
	_, botBin := binaries(t)
	r := remoteFixture(t)
	targets := r.targets(false)

	for _, prefix := range []string{"ssh://", "aws://", "f5://", "cloudflare://"} {
		t.Run(strings.TrimSuffix(prefix, "://"), func(t *testing.T) {
			lines, stdout, stderr := scanLines(t, botBin, "--password", keystorePass, targets[prefix])
			seen := map[string]bool{}
			for _, l := range lines {
				fp, _ := l["fingerprint_sha256"].(string)
				if fp == "" {
					continue
				}
				seen[fp] = true
				if loc, _ := l["location"].(string); !strings.HasPrefix(loc, prefix) {
					t.Errorf("location %q, want a %s one", loc, prefix)
				}
				if l["source"] != strings.TrimSuffix(prefix, "://") {
					t.Errorf("%s: source %v", l["location"], l["source"])
				}
				for _, f := range []string{"subject", "issuer", "serial", "not_before", "not_after", "key_algorithm"} {
					if s, _ := l[f].(string); s == "" {
						t.Errorf("%s: field %s missing: %v", l["location"], f, l)
					}
				}
			}
			for fp := range r.want[prefix] {
				if !seen[fp] {
					t.Errorf("%s not found", fp)
				}
			}
			if prefix == "ssh://" {
				for _, l := range lines {
					fp, _ := l["fingerprint_sha256"].(string)
					if loc, _ := l["location"].(string); fp != "" && !strings.Contains(loc, r.certDir) {
						t.Errorf("location %q is not under %s", loc, r.certDir)
					}
				}
				// Without --password the PKCS#12's own certificate stays
				// hidden, so --password is what found it.
				bare, _, _ := scanLines(t, botBin, targets[prefix])
				for _, l := range bare {
					if fp, _ := l["fingerprint_sha256"].(string); r.keystoreFPs[fp] {
						t.Errorf("%s found in a keystore without its password", fp)
					}
				}
			}
			if prefix == "aws://" && r.aws.Calls("ListCertificates eu-west-1") < 2 {
				t.Errorf("ACM was listed in %d pages, want several", r.aws.Calls("ListCertificates eu-west-1"))
			}
			if prefix == "cloudflare://" {
				// The custom certificates' hosts cannot be reached: their
				// metadata is still reported, with why the PEM is missing.
				meta := false
				for _, l := range lines {
					if e, _ := l["error"].(string); strings.Contains(e, "handshake") {
						meta = true
					}
				}
				if !meta {
					t.Errorf("no line reports the unreachable custom certificates:\n%s", stdout)
				}
			}
			for _, s := range r.secrets {
				if strings.Contains(stdout, s) || strings.Contains(stderr, s) {
					t.Errorf("a secret (%.4s...) is in the scan's output", s)
				}
			}
			if t.Failed() {
				t.Logf("stdout:\n%s\nstderr:\n%s", tail(stdout), tail(stderr))
			}
		})
	}
}

// Issue 5: the same targets set on a bot through the control plane, with
// their secrets in no file, API answer or log.
func TestRemoteAndCloudThroughControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs both programs with sshd and fake AWS, F5 and Cloudflare APIs")
	}
	cpBin, botBin := binaries(t)
	r := remoteFixture(t)
	targets := r.targets(true)

	cp, _, botID, state := activatedBot(t, cpBin, botBin, "remote-1")
	data := cp.data

	body := map[string]any{
		"targets":  []string{targets["ssh://"], targets["aws://"], targets["f5://"], targets["cloudflare://"]},
		"schedule": map[string]any{"kind": "on_demand"},
	}
	var put any
	if code := cp.api("PUT", "/bots/"+botID+"/targets", body, &put); code != http.StatusOK {
		t.Fatalf("PUT targets: %d %v", code, put)
	}

	runLog := &bytes.Buffer{}
	run := exec.Command(botBin, "run", "--state", state)
	run.Env = append(os.Environ(), awsEnv...)
	run.Stdout, run.Stderr = runLog, runLog
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = run.Process.Kill(); _ = run.Wait() }()

	var scan map[string]any
	if code := cp.api("POST", "/bots/"+botID+"/scans", nil, &scan); code != http.StatusAccepted {
		t.Fatalf("POST scan: %d %v", code, scan)
	}
	waitScanFinished(t, cp, botID, scan["scan_id"].(string))

	got := listCertificates(t, cp)
	for prefix, want := range r.want {
		for fp := range want {
			found := false
			for _, l := range got[fp] {
				if uri, _ := l.(map[string]any)["uri"].(string); strings.HasPrefix(uri, prefix) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s is not listed with a %s location: %v", fp, prefix, got[fp])
			}
		}
	}
	if t.Failed() {
		t.Fatalf("bot log:\n%s", tail(runLog.String()))
	}

	var answers bytes.Buffer
	for _, p := range []string{"/bots/" + botID + "/targets", "/bots/" + botID, "/bots/" + botID + "/scans", "/bots", "/certificates?limit=1000"} {
		var v any
		if code := cp.api("GET", p, nil, &v); code != http.StatusOK {
			t.Fatalf("GET %s: %d", p, code)
		}
		b, _ := json.Marshal(v)
		answers.Write(b)
	}
	b, _ := json.Marshal(put)
	answers.Write(b)
	assertNoSecrets(t, data, answers.Bytes(), map[string]string{"control plane's log": cp.log.String(), "bot's log": runLog.String()}, r.secrets...)
}
