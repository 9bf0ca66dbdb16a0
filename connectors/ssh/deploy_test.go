package ssh

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/internal/testsvc"
	"github.com/emsign/bot/protocol"
)

const (
	deployUser = "certdeploy"
	deployPW   = "Dpl-9xq!ssh-login"
)

// deployPKI is a test CA issuing leaves with their keys.
type deployPKI struct {
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
}

type deployLeaf struct {
	m  deploy.Material
	fp string
}

func newDeployPKI(t *testing.T) *deployPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Deploy Test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return &deployPKI{ca: ca, caKey: key}
}

func (p *deployPKI) issue(t *testing.T, cn string, lifetime time.Duration) deployLeaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(lifetime), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return deployLeaf{m: deploy.Material{Certificate: c, Chain: []*x509.Certificate{p.ca}, Key: key,
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})}, fp: deploy.Fingerprint(c)}
}

// remoteSite is a directory of the test user's with the PEM files an
// `openssl s_server` serves, and the reload script that restarts it. Like
// `nginx -t`, the script refuses a certificate that expires within ten
// minutes: a reload that fails because of the new files. It writes its
// first argument to arg.txt, to show the argv arrived as it was sent.
type remoteSite struct {
	dir, cert, key, script, addr string
	uid, gid                     int
}

// Site layouts: nginx's two files, HAProxy's one, certbot's live/ links
// to archive/ files.
const (
	layoutSplit    = "split"
	layoutCombined = "combined"
	layoutCertbot  = "certbot"
)

func newRemoteSite(t *testing.T, sd *testsvc.SSHD, name, layout string, certPEM, keyPEM []byte) *remoteSite {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is needed for this test: ", err)
	}
	dir := filepath.Join(sd.Home, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, sd.UID, sd.GID); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &remoteSite{dir: dir, cert: filepath.Join(dir, "fullchain.pem"), key: filepath.Join(dir, "privkey.pem"),
		script: filepath.Join(dir, "reload.sh"), addr: l.Addr().String(), uid: sd.UID, gid: sd.GID}
	l.Close()
	keyArg := "-key " + s.key
	switch layout {
	case layoutCombined:
		s.cert = filepath.Join(dir, "site.pem")
		s.key = s.cert
		keyArg = ""
		s.put(t, s.cert, append(append([]byte{}, certPEM...), keyPEM...), 0o600)
	case layoutCertbot:
		archive := filepath.Join(dir, "archive")
		if err := os.Mkdir(archive, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(archive, sd.UID, sd.GID); err != nil {
			t.Fatal(err)
		}
		s.put(t, filepath.Join(archive, "fullchain1.pem"), certPEM, 0o644)
		s.put(t, filepath.Join(archive, "privkey1.pem"), keyPEM, 0o640)
		for link, target := range map[string]string{s.cert: "archive/fullchain1.pem", s.key: "archive/privkey1.pem"} {
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(link, sd.UID, sd.GID); err != nil {
				t.Fatal(err)
			}
		}
	default:
		s.put(t, s.cert, certPEM, 0o644)
		s.put(t, s.key, keyPEM, 0o640)
	}
	script := fmt.Sprintf(`#!/bin/sh
D=%[1]s
printf '%%s' "$1" > $D/arg.txt
%[2]s x509 -in %[3]s -noout -checkend 600 >/dev/null || { echo "config test failed: %[3]s expires within 10 minutes" >&2; exit 1; }
if [ -f $D/server.pid ]; then
	pid=$(cat $D/server.pid)
	kill $pid 2>/dev/null
	i=0; while kill -0 $pid 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
fi
setsid %[2]s s_server -cert %[3]s %[4]s -accept %[5]s -www -quiet </dev/null >>$D/server.log 2>&1 &
echo $! > $D/server.pid
echo restarted
`, dir, openssl, s.cert, keyArg, s.addr)
	s.put(t, s.script, []byte(script), 0o755)
	for _, p := range []string{filepath.Join(dir, "arg.txt"), filepath.Join(dir, "server.log")} {
		s.put(t, p, nil, 0o644)
	}
	// Started as the test user, so that the reload over ssh may stop it.
	if out, err := exec.Command("runuser", "-u", sd.User, "--", s.script, "start").CombinedOutput(); err != nil {
		t.Fatalf("start s_server: %v\n%s", err, out)
	}
	return s
}

func (s *remoteSite) put(t *testing.T, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, s.uid, s.gid); err != nil {
		t.Fatal(err)
	}
}

// served is the SHA-256 of the leaf the site serves ("" and the error when
// it does not answer).
func (s *remoteSite) served() (string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", s.addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // fingerprint compared
	if err != nil {
		return "", err
	}
	defer c.Close()
	return deploy.Fingerprint(c.ConnectionState().PeerCertificates[0]), nil
}

func (s *remoteSite) waitServes(t *testing.T, fp string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got string
	var err error
	for time.Now().Before(deadline) {
		if got, err = s.served(); err == nil && got == fp {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	t.Fatalf("%s serves %.16s (%v), want %.16s; log:\n%s", s.addr, got, err, fp, log)
}

// snapshot is every file below a directory: relative path → mode and
// content (a symlink's target for a link).
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		switch e.Name() {
		case "server.log", "server.pid", "arg.txt":
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			out[rel] = fmt.Sprintf("%v\n%s", fi.Mode(), target)
			return err
		}
		b, err := os.ReadFile(p)
		out[rel] = fmt.Sprintf("%v\n%s", fi.Mode(), b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameSnap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func deploySteps(steps []deploy.Step) string {
	var parts []string
	for _, s := range steps {
		ok := "ok"
		if !s.OK {
			ok = "fail"
		}
		parts = append(parts, s.Name+":"+ok)
	}
	return strings.Join(parts, " ")
}

// sftpServerFor says how the tests reach SFTP: the sftp subsystem when the
// test sshd has one, else OpenSSH's sftp-server run as a command (the
// same server; internal/testsvc's sshd_config has no Subsystem line).
func sftpServerFor(t *testing.T, sd *testsvc.SSHD) string {
	t.Helper()
	c, err := ssh.Dial("tcp", sd.Addr, &ssh.ClientConfig{User: sd.User, Auth: []ssh.AuthMethod{ssh.Password(sd.Password)},
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			if ssh.FingerprintSHA256(k) != sd.HostKey {
				return errors.New("host key mismatch")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if sc, err := sftp.NewClient(c); err == nil {
		sc.Close()
		return ""
	}
	const server = "/usr/lib/openssh/sftp-server"
	if _, err := os.Stat(server); err != nil {
		t.Fatalf("the test sshd has no sftp subsystem and %s is missing (package openssh-sftp-server): %v", server, err)
	}
	t.Logf("the test sshd has no sftp subsystem: running %s as a command", server)
	return server
}

// TestDeploySSH rotates remote PEM files over SSH/SFTP and checks, from
// here, what the remote `openssl s_server` serves (P8, B9).
func TestDeploySSH(t *testing.T) {
	if testing.Short() {
		t.Skip("starts sshd and openssl s_server")
	}
	sd := testsvc.StartSSHD(t, deployUser, deployPW)
	sftpServer := sftpServerFor(t, sd)
	p := newDeployPKI(t)
	base := "ssh://" + sd.User + "@" + sd.Addr + "/?password=" + url.QueryEscape(sd.Password)
	pin := "&host_key=" + url.QueryEscape(sd.HostKey)

	// A known_hosts file that lists another key for this host.
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherPub, _ := ssh.NewPublicKey(otherKey.Public())
	wrongKH := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(wrongKH, []byte(knownhosts.Line([]string{knownhosts.Normalize(sd.Addr)}, otherPub)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const weirdArg = `it's "quoted" $HOME; echo x`
	cases := []struct {
		name     string
		target   string
		layout   string // layoutSplit when empty
		short    bool   // the new certificate expires in 5 minutes: the reload script refuses it
		allow    func([]string) error
		noVerify bool // no endpoint: the remote file is the check
		// reload replaces the restart script (a reload that does not make
		// the server reread); newChain adds a chain_path that does not
		// exist yet.
		reload   []string
		newChain bool
		// cancel cancels the job's context after this long: the rollback
		// still runs, on a new connection.
		cancel  time.Duration
		outcome string
		errIs   error
		steps   string
		errHas  string
	}{
		{name: "rotate", target: base + pin, outcome: deploy.OutcomeDeployed, steps: "prepare:ok backup:ok write:ok reload:ok verify:ok"},
		{name: "rotate combined file, no endpoint", target: base + pin, layout: layoutCombined, noVerify: true, outcome: deploy.OutcomeDeployed,
			steps: "prepare:ok backup:ok write:ok reload:ok verify:ok"},
		{name: "rotate certbot symlinks", target: base + pin, layout: layoutCertbot, outcome: deploy.OutcomeDeployed,
			steps: "prepare:ok backup:ok write:ok reload:ok verify:ok"},
		{name: "reload exits 1", target: base + pin, short: true, outcome: deploy.OutcomeRolledBack, errIs: deploy.ErrRolledBack,
			steps: "prepare:ok backup:ok write:ok reload:fail rollback:ok", errHas: "exited 1"},
		{name: "verify fails, new chain file", target: base + pin, reload: []string{"/bin/true"}, newChain: true,
			allow: func([]string) error { return nil }, outcome: deploy.OutcomeRolledBack, errIs: deploy.ErrRolledBack,
			steps: "prepare:ok backup:ok write:ok reload:ok verify:fail rollback:ok", errHas: "does not serve"},
		{name: "job cancelled during verify", target: base + pin, reload: []string{"/bin/true"}, cancel: 1500 * time.Millisecond,
			allow: func([]string) error { return nil }, outcome: deploy.OutcomeRolledBack, errIs: deploy.ErrRolledBack,
			steps: "prepare:ok backup:ok write:ok reload:ok verify:fail rollback:ok", errHas: "does not serve"},
		{name: "reload not allowed", target: base + pin, allow: func([]string) error { return errors.New("not in allowed_reload") },
			outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused, steps: "prepare:fail", errHas: "not in allowed_reload"},
		{name: "host key pin mismatch", target: base + "&host_key=" + url.QueryEscape(ssh.FingerprintSHA256(otherPub)),
			outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused, steps: "prepare:fail", errHas: "host key mismatch"},
		{name: "known_hosts mismatch", target: base + "&known_hosts=" + url.QueryEscape(wrongKH),
			outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused, steps: "prepare:fail", errHas: "host key mismatch"},
		{name: "wrong password", target: "ssh://" + sd.User + "@" + sd.Addr + "/?password=Wr0ng-Secret-pw" + pin,
			outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused, steps: "prepare:fail", errHas: "unable to authenticate"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			old := p.issue(t, "old.test", 24*time.Hour)
			lifetime := 24 * time.Hour
			if c.short {
				lifetime = 5 * time.Minute
			}
			nw := p.issue(t, "new.test", lifetime)
			oldCert := append(old.m.CertPEM(), old.m.ChainPEM()...)
			layout := c.layout
			if layout == "" {
				layout = layoutSplit
			}
			combined := layout == layoutCombined
			site := newRemoteSite(t, sd, fmt.Sprintf("site%d", i), layout, oldCert, old.m.KeyPEM)
			site.waitServes(t, old.fp)
			before := snapshot(t, site.dir)

			spec := protocol.DeploySpec{Kind: protocol.DeploySSH, Target: c.target, CertPath: site.cert, KeyPath: site.key, ChainInCert: true,
				Reload: []string{"/bin/sh", site.script, weirdArg}, VerifyTimeout: protocol.Duration(10 * time.Second)}
			ctx := context.Background()
			if c.reload != nil {
				spec.Reload, spec.VerifyTimeout = c.reload, protocol.Duration(time.Second)
			}
			if c.cancel > 0 {
				spec.VerifyTimeout = protocol.Duration(time.Minute)
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, c.cancel)
				defer cancel()
			}
			if c.newChain {
				spec.ChainPath = filepath.Join(site.dir, "chain.pem")
			}
			if !c.noVerify {
				spec.Verify = []protocol.VerifyEndpoint{{Address: site.addr, ServerName: "new.test"}}
			}
			allow := c.allow
			if allow == nil {
				allow = func(argv []string) error {
					if len(argv) == 3 && argv[1] == site.script {
						return nil
					}
					return fmt.Errorf("%v is not allowed", argv)
				}
			}
			var logs bytes.Buffer
			env := deploy.Env{BackupDir: filepath.Join(t.TempDir(), "backups"), AllowReload: allow,
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			tg, err := NewDeployer(spec, env)
			if err != nil {
				t.Fatal(err)
			}
			tg.(*Deployer).sftpServer = sftpServer
			var steps []deploy.Step
			res, err := tg.Deploy(ctx, nw.m, func(s deploy.Step) { steps = append(steps, s) })
			for _, s := range steps {
				t.Logf("%s ok=%v: %s", s.Name, s.OK, s.Message)
			}
			if res.Outcome != c.outcome || (c.errIs == nil) != (err == nil) || (c.errIs != nil && !errors.Is(err, c.errIs)) {
				t.Fatalf("outcome %s, err %v; want %s, %v", res.Outcome, err, c.outcome, c.errIs)
			}
			if got := deploySteps(steps); got != c.steps {
				t.Errorf("steps %s, want %s", got, c.steps)
			}
			if c.errHas != "" && !strings.Contains(err.Error(), c.errHas) {
				t.Errorf("error %q does not say %q", err, c.errHas)
			}
			// No secret or key in steps, errors or logs.
			text := logs.String()
			if err != nil {
				text += err.Error()
			}
			for _, s := range steps {
				text += s.Message
			}
			for _, secret := range []string{sd.Password, "Wr0ng-Secret-pw", "PRIVATE KEY"} {
				if strings.Contains(text, secret) {
					t.Errorf("%q leaked: %s", secret, text)
				}
			}

			if c.cancel > 0 && !strings.Contains(logs.String(), "logging in again for the rollback") {
				t.Error("the rollback did not log in again after the job's context ended")
			}
			switch c.outcome {
			case deploy.OutcomeDeployed:
				site.waitServes(t, nw.fp)
				wantCert := append(nw.m.CertPEM(), nw.m.ChainPEM()...)
				if combined {
					wantCert = append(wantCert, nw.m.KeyPEM...)
				}
				if got, _ := os.ReadFile(site.cert); !bytes.Equal(got, wantCert) {
					t.Errorf("the certificate file holds\n%s", got)
				}
				if got, _ := os.ReadFile(site.key); !combined && !bytes.Equal(got, nw.m.KeyPEM) {
					t.Error("the key file does not hold the new key")
				}
				// Modes kept: the key 0640, the combined file 0600.
				wantMode := os.FileMode(0o640)
				if combined {
					wantMode = 0o600
				}
				if fi, _ := os.Stat(site.key); fi.Mode().Perm() != wantMode {
					t.Errorf("key mode %v, want %v", fi.Mode().Perm(), wantMode)
				}
				if arg, _ := os.ReadFile(filepath.Join(site.dir, "arg.txt")); string(arg) != weirdArg {
					t.Errorf("the remote command got %q, want %q", arg, weirdArg)
				}
				// The remote backups hold the old files, mode kept; the
				// local copies too.
				wantBackups := 2
				if combined {
					wantBackups = 1
				}
				now := snapshot(t, site.dir)
				var backups []string
				for rel := range now {
					if strings.Contains(rel, backupInfix) {
						backups = append(backups, rel)
					}
				}
				if len(backups) != wantBackups {
					t.Errorf("remote backups %v", backups)
				}
				for _, b := range backups {
					orig := b[:strings.Index(b, backupInfix)]
					if now[b] != before[orig] {
						t.Errorf("remote backup %s differs from the old %s", b, orig)
					}
				}
				if layout == layoutCertbot {
					for _, l := range []string{site.cert, site.key} {
						if fi, err := os.Lstat(l); err != nil || fi.Mode()&os.ModeSymlink == 0 {
							t.Errorf("%s is no longer a symlink", l)
						}
					}
				}
				local, _ := filepath.Glob(filepath.Join(res.BackupDir, "*"))
				if len(local) != wantBackups+1 { // the copies and manifest.json
					t.Errorf("local backup %v", local)
				}
				for rel := range now {
					if strings.Contains(rel, tempPrefix) {
						t.Errorf("staged file left: %s", rel)
					}
				}

				// Delivered again: already deployed, nothing written.
				after := snapshot(t, site.dir)
				steps = nil
				res, err = tg.Deploy(context.Background(), nw.m, func(s deploy.Step) { steps = append(steps, s) })
				if err != nil || res.Outcome != deploy.OutcomeAlreadyDeployed || deploySteps(steps) != "prepare:ok verify:ok" {
					t.Fatalf("again: %s %v %s", res.Outcome, err, deploySteps(steps))
				}
				if !sameSnap(after, snapshot(t, site.dir)) {
					t.Error("the second delivery changed files")
				}
			default:
				// Nothing left changed: the old files byte for byte, with
				// their modes, no backup or staged file, the old
				// certificate served.
				if got := snapshot(t, site.dir); !sameSnap(before, got) {
					t.Errorf("files changed:\nbefore %v\nafter  %v", keys(before), keys(got))
				}
				site.waitServes(t, old.fp)
				if c.outcome == deploy.OutcomeFailed && res.BackupDir != "" {
					t.Errorf("a refused deployment made a backup: %s", res.BackupDir)
				}
			}
		})
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestNewDeployerSSH checks the spec before any I/O (P8).
func TestNewDeployerSSH(t *testing.T) {
	const target = "ssh://deploy@web1.example.com/?password=pw&host_key=SHA256:abc"
	env := deploy.Env{BackupDir: "/var/lib/emsign-bot/backups"}
	good := protocol.DeploySpec{Kind: "ssh", Target: target, CertPath: "/etc/nginx/site.pem", KeyPath: "/etc/nginx/site.key"}
	with := func(f func(*protocol.DeploySpec)) protocol.DeploySpec { s := good; f(&s); return s }
	cases := []struct {
		name   string
		spec   protocol.DeploySpec
		errHas string
	}{
		{"good", good, ""},
		{"combined", with(func(s *protocol.DeploySpec) { s.KeyPath = s.CertPath }), ""},
		{"no key path", with(func(s *protocol.DeploySpec) { s.KeyPath = "" }), "key_path: required"},
		{"relative cert path", with(func(s *protocol.DeploySpec) { s.CertPath = "site.pem" }), `cert_path "site.pem": want an absolute remote path`},
		{"chain is the key", with(func(s *protocol.DeploySpec) { s.ChainPath = s.KeyPath }), "chain_path: it is the key file"},
		{"insecure host key", with(func(s *protocol.DeploySpec) { s.Target = "ssh://deploy@web1/?password=pw&insecure_host_key=true" }), "never skips the host key check"},
		{"sudo", with(func(s *protocol.DeploySpec) { s.Target = target + "&sudo=true" }), "sudo=true: not supported"},
		{"ldap target", with(func(s *protocol.DeploySpec) { s.Target = "ldap://dc1/dc=example,dc=com" }), "want ssh"},
		{"empty reload", with(func(s *protocol.DeploySpec) { s.Reload = []string{""} }), "reload: argv[0] is empty"},
		{"verify address", with(func(s *protocol.DeploySpec) { s.Verify = []protocol.VerifyEndpoint{{Address: "web1"}} }), `verify[0] address "web1"`},
		{"kind", with(func(s *protocol.DeploySpec) { s.Kind = "ldap" }), `kind "ldap"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewDeployer(c.spec, env)
			if (err == nil) != (c.errHas == "") || (err != nil && !strings.Contains(err.Error(), c.errHas)) {
				t.Fatalf("err %v, want %q", err, c.errHas)
			}
		})
	}
	if _, err := NewDeployer(good, deploy.Env{}); err == nil || !strings.Contains(err.Error(), "backup dir") {
		t.Errorf("no backup dir: %v", err)
	}
}

// TestShellCommand: the remote shell gets each argv word as one literal
// word.
func TestShellCommand(t *testing.T) {
	got := shellCommand([]string{"systemctl", "reload", "nginx"})
	if got != `'systemctl' 'reload' 'nginx'` {
		t.Errorf("%s", got)
	}
	out, err := exec.Command("/bin/sh", "-c", "printf '%s|' "+shellCommand([]string{`a b`, `it's`, `$HOME`, "x;y", ""})).Output()
	if err != nil || string(out) != `a b|it's|$HOME|x;y||` {
		t.Errorf("%q %v", out, err)
	}
}

// TestCheckKey refuses material the remote files must not get.
func TestCheckKey(t *testing.T) {
	p := newDeployPKI(t)
	a, b := p.issue(t, "a.test", time.Hour), p.issue(t, "b.test", time.Hour)
	mixed := a.m
	mixed.Key, mixed.KeyPEM = b.m.Key, b.m.KeyPEM
	noKey := a.m
	noKey.Key, noKey.KeyPEM = nil, nil
	pemOnly := a.m
	pemOnly.Key = nil
	cases := []struct {
		name   string
		m      deploy.Material
		errHas string
	}{
		{"good", a.m, ""},
		{"key from the PEM", pemOnly, ""},
		{"other key", mixed, "not for the new key"},
		{"no key", noKey, "no key to write"},
	}
	for _, c := range cases {
		err := checkKey(c.m)
		if (err == nil) != (c.errHas == "") || (err != nil && !strings.Contains(err.Error(), c.errHas)) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}
