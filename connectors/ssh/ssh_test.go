package ssh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/emsign/bot/connectors/files"
	"github.com/emsign/bot/protocol"
)

const (
	testUser       = "certscan"
	testPassword   = "Pw-3xq!ssh-login"
	testPassphrase = "Pp-7kd-key-secret"
)

// server is a real OpenSSH sshd on 127.0.0.1 for the tests.
type server struct {
	addr       string // 127.0.0.1:PORT
	hostKey    ssh.PublicKey
	pin        string // of the ed25519 host key
	rsaPin     string // of the RSA host key, which x/crypto prefers
	knownHosts string
	home       string
}

// ensureUser makes sure the test user exists with testPassword; it deletes
// the user in cleanup only if it created it.
func ensureUser(t *testing.T) string {
	t.Helper()
	u, err := user.Lookup(testUser)
	if err != nil {
		out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", testUser).CombinedOutput()
		if err != nil {
			t.Fatalf("useradd %s: %v: %s", testUser, err, out)
		}
		t.Cleanup(func() {
			// Sessions may outlive sshd by a moment.
			var out []byte
			var err error
			for range 50 {
				_ = exec.Command("pkill", "-KILL", "-u", testUser).Run()
				if out, err = exec.Command("userdel", "-r", testUser).CombinedOutput(); err == nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Errorf("userdel %s: %v: %s", testUser, err, out)
		})
		if u, err = user.Lookup(testUser); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(testUser + ":" + testPassword + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v: %s", err, out)
	}
	return u.HomeDir
}

// freePort picks a port below 32768 (the ephemeral range starts there).
func freePort(t *testing.T) int {
	t.Helper()
	for range 200 {
		n, err := rand.Int(rand.Reader, big.NewInt(32767-20000))
		if err != nil {
			t.Fatal(err)
		}
		port := 20000 + int(n.Int64())
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port below 32768")
	return 0
}

// startSSHD starts sshd; with hostCert it presents an ssh host
// certificate signed by a test CA.
func startSSHD(t *testing.T, hostCert bool) *server {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the ssh tests run sshd and add a user: run them as root")
	}
	const sshd = "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		t.Fatalf("%s is missing: install the openssh-server package (apt-get install openssh-server): %v", sshd, err)
	}
	home := ensureUser(t)
	dir := t.TempDir()
	hk := filepath.Join(dir, "host_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hk).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	rsaHK := filepath.Join(dir, "host_rsa")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", rsaHK).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	rsaText, err := os.ReadFile(rsaHK + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, _, _, _, err := ssh.ParseAuthorizedKey(rsaText)
	if err != nil {
		t.Fatal(err)
	}
	pubText, err := os.ReadFile(hk + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(pubText)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	extra := ""
	if hostCert {
		ca := filepath.Join(dir, "host_ca")
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", ca).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
		if out, err := exec.Command("ssh-keygen", "-q", "-s", ca, "-I", "test-host", "-h", "-n", "127.0.0.1,localhost", "-V", "-1h:+1d", hk+".pub").CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen -s: %v: %s", err, out)
		}
		extra = "HostCertificate " + hk + "-cert.pub\n"
	}
	port := freePort(t)
	cfgPath := filepath.Join(dir, "sshd_config")
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
HostKey %s
PidFile %s
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
UsePAM no
PermitRootLogin no
AllowUsers %s
StrictModes no
%s`, port, hk, rsaHK, filepath.Join(dir, "sshd.pid"), testUser, extra)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "sshd.log")
	cmd := exec.Command(sshd, "-D", "-f", cfgPath, "-E", logPath)
	if out, err := exec.Command(sshd, "-t", "-f", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("sshd -t: %v: %s", err, out)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("sshd log:\n%s", log)
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("sshd did not listen on %s: %v\n%s", addr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(knownhosts.Line([]string{knownhosts.Normalize(addr)}, pub)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &server{addr: addr, hostKey: pub, pin: ssh.FingerprintSHA256(pub), rsaPin: ssh.FingerprintSHA256(rsaPub), knownHosts: kh, home: home}
}

// clientKeys are the two keys put in authorized_keys: an ed25519 key
// (line 1) and an RSA key with options and a comment, whose private key is
// encrypted with testPassphrase (line 2).
type clientKeys struct {
	ed25519File, rsaFile string
	rsaBits              int
}

func writeClientKeys(t *testing.T, home string, uid, gid int) clientKeys {
	t.Helper()
	dir := t.TempDir()
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaPriv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edBlock, err := ssh.MarshalPrivateKey(edPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	rsaBlock, err := ssh.MarshalPrivateKeyWithPassphrase(rsaPriv, "", []byte(testPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	k := clientKeys{ed25519File: filepath.Join(dir, "id_ed25519"), rsaFile: filepath.Join(dir, "id_rsa"), rsaBits: 2048}
	for f, b := range map[string]*pem.Block{k.ed25519File: edBlock, k.rsaFile: rsaBlock} {
		if err := os.WriteFile(f, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	edPub, _ := ssh.NewPublicKey(edPriv.Public())
	rsaPub, _ := ssh.NewPublicKey(&rsaPriv.PublicKey)
	lines := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(edPub))) + " deploy@ci\n" +
		`from="127.0.0.1",no-pty ` + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(rsaPub))) + " backup key\n"
	sshDir := filepath.Join(home, ".ssh")
	ak := filepath.Join(sshDir, "authorized_keys")
	old, oldErr := os.ReadFile(ak)
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ak, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if oldErr == nil {
			_ = os.WriteFile(ak, old, 0o600)
		} else {
			_ = os.Remove(ak)
		}
	})
	for _, p := range []string{sshDir, ak} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// tree is the remote tree scanned: the corpus files the user owns and a
// folder only root can read.
type tree struct {
	root, locked string
	files        map[string]string // remote path -> corpus file
}

func writeTree(t *testing.T, home string, uid, gid int) tree {
	t.Helper()
	root, err := os.MkdirTemp(home, "scan-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	corpus := filepath.Join("..", "files", "testdata", "corpus")
	tr := tree{root: root, locked: filepath.Join(root, "locked"), files: map[string]string{}}
	for name, src := range map[string]string{
		"etc/bundle.pem":        "pem/bundle.pem",
		"etc/rsa-key-chain.pem": "pem/rsa-key-chain.pem",
		"etc/rsa.cer":           "der/rsa.cer",
		"app/keytool.p12":       "p12/keytool.p12",
		"app/keystore.jks":      "jks/keystore.jks",
		"app/cacerts":           "jks/keystore.jks",
		"etc/fullchain":         "pem/rsa-key-chain.pem",
	} {
		data, err := os.ReadFile(filepath.Join(corpus, src))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
		tr.files[dst] = filepath.Join(corpus, src)
	}
	if err := os.WriteFile(filepath.Join(root, "notes.txt"), []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Everything but the locked folder belongs to the user.
	if err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, gid)
	}); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(tr.locked, 0o755); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(corpus, "pem", "leaf-rsa.pem"))
	if err := os.WriteFile(filepath.Join(tr.locked, "hidden.pem"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tr.locked, 0); err != nil {
		t.Fatal(err)
	}
	return tr
}

func target(t *testing.T, raw string) protocol.Target {
	t.Helper()
	tg, err := protocol.ParseTarget(raw)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func q(s string) string { return url.QueryEscape(s) }

type result struct {
	findings []protocol.Finding
	err      error
	log      string
}

func discover(t *testing.T, raw string) result {
	t.Helper()
	var logBuf bytes.Buffer
	c, err := New(Config{
		Passwords: []protocol.Secret{protocol.NewSecret("changeit")},
		Logger:    slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	var r result
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r.err = c.Discover(ctx, target(t, raw), func(f protocol.Finding) error {
		r.findings = append(r.findings, f)
		return nil
	})
	r.log = logBuf.String()
	// No secret ever leaves the connector.
	all, _ := json.Marshal(r.findings)
	for _, secret := range []string{testPassword, testPassphrase} {
		for what, s := range map[string]string{"log": r.log, "findings": string(all), "error": fmt.Sprint(r.err)} {
			if strings.Contains(s, secret) {
				t.Errorf("a secret appears in the %s: %s", what, s)
			}
		}
	}
	return r
}

func fp(der []byte) string { s := sha256.Sum256(der); return hex.EncodeToString(s[:]) }

func TestSSH(t *testing.T) {
	if testing.Short() {
		t.Skip("starts sshd and adds a user")
	}
	srv := startSSHD(t, false)
	u, err := user.Lookup(testUser)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	keys := writeClientKeys(t, srv.home, uid, gid)
	tr := writeTree(t, srv.home, uid, gid)
	base := "ssh://" + testUser + "@" + srv.addr + tr.root
	pw := "password=" + q(testPassword)
	pin := "host_key=" + q(srv.pin)
	ak := filepath.Join(srv.home, ".ssh", "authorized_keys")

	t.Run("password login finds every certificate", func(t *testing.T) {
		r := discover(t, base+"?"+pw+"&"+pin)
		if r.err != nil {
			t.Fatal(r.err)
		}
		if testing.Verbose() {
			for _, f := range r.findings {
				t.Logf("%s chain=%d key=%+v err=%q", f.Location, len(f.Chain), f.Key, f.Error)
			}
		}
		checkCertificates(t, r, tr, srv.addr)
		checkLocked(t, r, tr)
		checkHostKeyFiles(t, r)
		checkAuthorizedKeys(t, r, ak, keys)
		checkHostKey(t, r, "ssh-ed25519", srv.pin)
	})
	t.Run("key login", func(t *testing.T) {
		r := discover(t, base+"?key_file="+q(keys.ed25519File)+"&"+pin)
		if r.err != nil {
			t.Fatal(r.err)
		}
		checkCertificates(t, r, tr, srv.addr)
	})
	t.Run("encrypted key login with passphrase", func(t *testing.T) {
		r := discover(t, base+"?key_file="+q(keys.rsaFile)+"&passphrase="+q(testPassphrase)+"&"+pin)
		if r.err != nil {
			t.Fatal(r.err)
		}
		checkCertificates(t, r, tr, srv.addr)
		r = discover(t, base+"?key_file="+q(keys.rsaFile)+"&passphrase=wrong&"+pin)
		if r.err == nil || !strings.Contains(r.err.Error(), "wrong passphrase") {
			t.Fatalf("wrong passphrase: err = %v", r.err)
		}
	})
	t.Run("known_hosts", func(t *testing.T) {
		r := discover(t, base+"?"+pw+"&known_hosts="+q(srv.knownHosts))
		if r.err != nil {
			t.Fatal(r.err)
		}
		checkCertificates(t, r, tr, srv.addr)
		other := filepath.Join(t.TempDir(), "known_hosts")
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		wrong, _ := ssh.NewPublicKey(priv.Public())
		_ = os.WriteFile(other, []byte(knownhosts.Line([]string{knownhosts.Normalize(srv.addr)}, wrong)+"\n"), 0o600)
		r = discover(t, base+"?"+pw+"&known_hosts="+q(other))
		if r.err == nil || !strings.Contains(r.err.Error(), ssh.FingerprintSHA256(wrong)) || !strings.Contains(r.err.Error(), srv.pin) {
			t.Fatalf("known_hosts with another key: err = %v", r.err)
		}
		if len(r.findings) != 0 {
			t.Fatalf("findings from a refused host: %v", r.findings)
		}
	})
	t.Run("wrong pin refused", func(t *testing.T) {
		wrongPin := "SHA256:" + strings.Repeat("A", 43)
		r := discover(t, base+"?"+pw+"&host_key="+q(wrongPin))
		if r.err == nil {
			t.Fatal("a wrong host key pin was accepted")
		}
		for _, want := range []string{wrongPin, srv.pin, srv.rsaPin, "mismatch"} {
			if !strings.Contains(r.err.Error(), want) {
				t.Errorf("error %q does not name %q", r.err, want)
			}
		}
		if len(r.findings) != 0 {
			t.Fatalf("findings from a refused host: %v", r.findings)
		}
	})
	t.Run("insecure_host_key", func(t *testing.T) {
		r := discover(t, base+"?"+pw+"&insecure_host_key=true")
		if r.err != nil {
			t.Fatal(r.err)
		}
		checkHostKey(t, r, "ssh-rsa", srv.rsaPin)
	})
	t.Run("rsa pin", func(t *testing.T) {
		r := discover(t, base+"?"+pw+"&host_key="+q(srv.rsaPin))
		if r.err != nil {
			t.Fatal(r.err)
		}
		checkHostKey(t, r, "ssh-rsa", srv.rsaPin)
	})
	t.Run("wrong password", func(t *testing.T) {
		r := discover(t, base+"?password="+q(testPassword+"x")+"&"+pin)
		if r.err == nil || !strings.Contains(r.err.Error(), "unable to authenticate") {
			t.Fatalf("err = %v", r.err)
		}
		if strings.Contains(r.err.Error(), testPassword) {
			t.Fatal("the password is in the error")
		}
	})
	t.Run("max_size", func(t *testing.T) {
		r := discover(t, base+"?"+pw+"&"+pin+"&max_size=1000")
		if r.err != nil {
			t.Fatal(r.err)
		}
		for _, f := range r.findings {
			if strings.HasSuffix(f.Location.Path, ".jks") || strings.HasSuffix(f.Location.Path, "bundle.pem") {
				t.Errorf("a file over max_size was read: %v", f.Location)
			}
		}
	})
	t.Run("sudo", func(t *testing.T) {
		if _, err := exec.LookPath("sudo"); err != nil {
			t.Fatal("sudo is missing: install the sudo package (apt-get install sudo)")
		}
		rule := "/etc/sudoers.d/certscan-test"
		if err := os.WriteFile(rule, []byte(testUser+" ALL=(root) NOPASSWD: ALL\n"), 0o440); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Remove(rule) })
		r := discover(t, base+"?"+pw+"&"+pin+"&sudo=true")
		if r.err != nil {
			t.Fatal(r.err)
		}
		hidden := false
		for _, f := range r.findings {
			if f.Location.Path == tr.locked+"/hidden.pem" && len(f.Chain) > 0 {
				hidden = true
			}
			if strings.HasPrefix(f.Location.Path, tr.root) && f.Error != "" {
				t.Errorf("error under sudo: %v %s", f.Location, f.Error)
			}
		}
		if !hidden {
			t.Error("sudo did not read the locked folder")
		}
		withHidden := tr
		withHidden.files = map[string]string{tr.locked + "/hidden.pem": filepath.Join("..", "files", "testdata", "corpus", "pem", "leaf-rsa.pem")}
		for k, v := range tr.files {
			withHidden.files[k] = v
		}
		checkCertificates(t, r, withHidden, srv.addr)
	})
	t.Run("cancel", func(t *testing.T) {
		c, _ := New(Config{})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		n := 0
		err := c.Discover(ctx, target(t, base+"?"+pw+"&"+pin), func(protocol.Finding) error {
			n++
			cancel()
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v after %d findings", err, n)
		}
	})
}

// checkCertificates compares what came over ssh with the local parse of
// the same files.
func checkCertificates(t *testing.T, r result, tr tree, host string) {
	t.Helper()
	got := map[string]protocol.Finding{}
	for _, f := range r.findings {
		if f.Location.Scheme != "ssh" || f.Location.Host != host || f.Source != "ssh" {
			t.Errorf("bad location or source: %+v", f)
		}
		if len(f.Chain) > 0 {
			got[f.Location.Path+"#"+f.Location.Entry] = f
		}
	}
	keys := 0
	want := 0
	for remote, local := range tr.files {
		data, err := os.ReadFile(local)
		if err != nil {
			t.Fatal(err)
		}
		entries, err := files.Parse(data, []protocol.Secret{protocol.NewSecret("changeit")})
		if err != nil {
			t.Fatalf("%s: %v", local, err)
		}
		for _, e := range entries {
			if len(e.Chain) == 0 {
				continue
			}
			want++
			f, ok := got[remote+"#"+e.Name]
			if !ok {
				t.Errorf("not found over ssh: %s#%s", remote, e.Name)
				continue
			}
			if fp(f.Chain[0]) != fp(e.Chain[0]) || f.Format != e.Format || len(f.Chain) != len(e.Chain) {
				t.Errorf("%s#%s: got %s %s (%d), want %s %s (%d)", remote, e.Name, f.Format, fp(f.Chain[0]), len(f.Chain), e.Format, fp(e.Chain[0]), len(e.Chain))
			}
			if (f.Key != nil) != (e.Key != nil) {
				t.Errorf("%s#%s: has private key %v, want %v", remote, e.Name, f.Key != nil, e.Key != nil)
			}
			if f.Key != nil && (strings.HasSuffix(remote, ".p12") || strings.HasSuffix(remote, ".jks")) {
				keys++
			}
		}
	}
	for _, f := range r.findings {
		if strings.HasSuffix(f.Location.Path, "notes.txt") {
			t.Errorf("a file that is no certificate was reported: %+v", f)
		}
	}
	if len(got) != want {
		t.Errorf("found %d certificates, want %d", len(got), want)
	}
	if keys < 2 {
		t.Errorf("only %d keystore entries with a private key", keys)
	}
}

func checkLocked(t *testing.T, r result, tr tree) {
	t.Helper()
	reported := false
	for _, f := range r.findings {
		if strings.HasPrefix(f.Location.Path, tr.locked+"/") && f.Error == "" {
			t.Errorf("read inside the unreadable folder: %v", f.Location)
		}
		if f.Location.Path == tr.locked && strings.Contains(f.Error, "Permission denied") {
			reported = true
		}
	}
	if !reported {
		t.Errorf("the unreadable folder %s is not reported", tr.locked)
	}
}

func checkAuthorizedKeys(t *testing.T, r result, ak string, keys clientKeys) {
	t.Helper()
	byLine := map[string]protocol.Finding{}
	for _, f := range r.findings {
		if f.Location.Path == ak {
			byLine[f.Location.Entry] = f
		}
	}
	if len(byLine) != 2 {
		t.Fatalf("authorized_keys findings: %+v", byLine)
	}
	ed, rs := byLine["1"], byLine["2"]
	if ed.Key == nil || ed.Key.Algorithm != "ssh-ed25519" || ed.Key.Bits != 256 || ed.Key.Class != "public" ||
		!strings.Contains(ed.Key.Label, "deploy@ci") || !strings.Contains(ed.Key.Label, "account="+testUser) || len(ed.Chain) != 0 {
		t.Errorf("ed25519 line: %+v %+v", ed, ed.Key)
	}
	if rs.Key == nil || rs.Key.Algorithm != "ssh-rsa" || rs.Key.Bits != keys.rsaBits ||
		!strings.Contains(rs.Key.Label, "backup key") || !strings.Contains(rs.Key.Label, `from="127.0.0.1"`) ||
		!strings.Contains(rs.Key.Label, "no-pty") || rs.Attributes["account"] != testUser {
		t.Errorf("rsa line: %+v %+v", rs, rs.Key)
	}
}

func checkHostKey(t *testing.T, r result, algorithm, pin string) {
	t.Helper()
	bits := map[string]int{"ssh-ed25519": 256, "ssh-rsa": 2048}[algorithm]
	for _, f := range r.findings {
		if f.Location.Entry == "host-key:"+algorithm {
			if f.Key == nil || f.Key.Bits != bits || !strings.Contains(f.Key.Label, pin) || f.Attributes["fingerprint"] != pin {
				t.Errorf("host key finding: %+v %+v", f, f.Key)
			}
			return
		}
	}
	t.Error("host key not reported")
}

func checkHostKeyFiles(t *testing.T, r result) {
	t.Helper()
	pubs, _ := filepath.Glob("/etc/ssh/ssh_host_*.pub")
	seen := map[string]bool{}
	for _, f := range r.findings {
		if f.Key != nil && strings.HasPrefix(f.Location.Path, "/etc/ssh/ssh_host_") && f.Location.Entry == "1" {
			if f.Key.Bits == 0 || !strings.Contains(f.Key.Label, "host key") {
				t.Errorf("host key file finding: %+v", f.Key)
			}
			seen[f.Location.Path] = true
		}
	}
	for _, p := range pubs {
		if !seen[p] {
			t.Errorf("host key file %s not reported", p)
		}
	}
}

func TestHostCertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts sshd and adds a user")
	}
	srv := startSSHD(t, true)
	base := "ssh://" + testUser + "@" + srv.addr + "/nonexistent?password=" + q(testPassword)
	for name, check := range map[string]string{
		"pin":         "host_key=" + q(srv.pin),
		"known_hosts": "known_hosts=" + q(srv.knownHosts),
	} {
		t.Run(name, func(t *testing.T) {
			r := discover(t, base+"&"+check)
			if r.err != nil {
				t.Fatal(r.err)
			}
			found := false
			for _, f := range r.findings {
				if f.Location.Entry == "host-key:"+ssh.CertAlgoED25519v01 {
					found = true
					for _, want := range []string{"host certificate", "test-host", "127.0.0.1,localhost", srv.pin} {
						if !strings.Contains(f.Key.Label, want) {
							t.Errorf("label %q lacks %q", f.Key.Label, want)
						}
					}
					if f.Attributes["key_fingerprint"] != srv.pin || f.Attributes["principals"] != "127.0.0.1,localhost" {
						t.Errorf("attributes %v", f.Attributes)
					}
				}
				if f.Location.Path == "/nonexistent" && !strings.Contains(f.Error, "No such file") {
					t.Errorf("missing path: %+v", f)
				}
			}
			if !found {
				t.Errorf("host certificate not reported: %+v", r.findings)
			}
		})
	}
}

func TestTrustedCAFiles(t *testing.T) {
	cfg := "# TrustedUserCAKeys /no\nPort 22\ntrustedusercakeys /etc/ssh/user_ca.pub\nTrustedUserCAKeys=/etc/ssh/b.pub\nTrustedUserCAKeys none\n"
	got := strings.Join(trustedCAFiles([]byte(cfg)), " ")
	if got != "/etc/ssh/user_ca.pub /etc/ssh/b.pub" {
		t.Fatalf("got %q", got)
	}
}
