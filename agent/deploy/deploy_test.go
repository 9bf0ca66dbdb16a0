//go:build !windows

package deploy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/agent/keygen"
)

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no paths", Config{BackupDir: "/b"}, "cert_path and key_path are required"},
		{"no backup", Config{CertPath: "/c", KeyPath: "/k"}, "backup_dir is required"},
		{"relative", Config{CertPath: "c.pem", KeyPath: "/k", BackupDir: "/b"}, "not an absolute path"},
		{"chain is key", Config{CertPath: "/c", KeyPath: "/k", ChainPath: "/k", BackupDir: "/b"}, "chain_path is the key file"},
		{"empty reload", Config{CertPath: "/c", KeyPath: "/k", BackupDir: "/b", Reload: &Command{}}, "reload.argv is empty"},
		{"shell with args", Config{CertPath: "/c", KeyPath: "/k", BackupDir: "/b", Reload: &Command{Argv: []string{"a", "b"}, Shell: true}}, "one string"},
		{"bad endpoint", Config{CertPath: "/c", KeyPath: "/k", BackupDir: "/b", Verify: []Endpoint{{Address: "nohost"}}}, "verify[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "deploy: ") {
				t.Errorf("err %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := New(Config{CertPath: "/c", KeyPath: "/c", BackupDir: "/b"}); err != nil {
		t.Errorf("combined file: %v", err)
	}
}

// TestLayoutsAndModes deploys without a server (no reload, no endpoint):
// the files' content per layout, the modes kept, the backup.
func TestLayoutsAndModes(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name      string
		combined  bool
		chainIn   bool
		chainFile bool
		certMode  fs.FileMode
		keyMode   fs.FileMode
		format    keygen.KeyFormat
	}{
		{"nginx fullchain, key 0600", false, true, false, 0o644, 0o600, keygen.PKCS8},
		{"apache separate chain file (new), key 0640", false, false, true, 0o644, 0o640, keygen.PKCS1},
		{"haproxy combined 0600", true, false, false, 0o600, 0o600, keygen.SEC1},
		{"haproxy combined 0640", true, false, false, 0o640, 0o640, keygen.PKCS8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alg := keygen.ECDSAP256
			if tt.format == keygen.PKCS1 {
				alg = keygen.RSA2048
			}
			old := p.issue(t, "old.test", 24*time.Hour, alg, tt.format)
			nw := p.issue(t, "new.test", 24*time.Hour, alg, tt.format)
			dir := t.TempDir()
			cfg := Config{CertPath: filepath.Join(dir, "cert.pem"), KeyPath: filepath.Join(dir, "key.pem"),
				ChainInCert: tt.chainIn, BackupDir: filepath.Join(t.TempDir(), "backups")}
			if tt.combined {
				cfg.KeyPath = cfg.CertPath
				writeFile(t, cfg.CertPath, cat(old.certPEM, p.chainPEM, old.keyPEM), tt.certMode)
			} else {
				writeFile(t, cfg.CertPath, cat(old.certPEM, p.chainPEM), tt.certMode)
				writeFile(t, cfg.KeyPath, old.keyPEM, tt.keyMode)
			}
			if tt.chainFile {
				cfg.ChainPath = filepath.Join(dir, "chain.pem")
			}
			before := snap(t, dir)
			d, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			report, steps := collect()
			res, err := d.Run(context.Background(), nw.certPEM, p.chainPEM, nw.keyPEM, report)
			if err != nil || res.Outcome != OutcomeDeployed {
				t.Fatalf("outcome %s, %v; steps %s", res.Outcome, err, stepNames(*steps))
			}
			if got := stepNames(*steps); got != "prepare:ok backup:ok write:ok verify:ok" {
				t.Errorf("steps %s", got)
			}
			noKey(t, *steps, err, old.keyPEM, nw.keyPEM)

			certFile, _ := os.ReadFile(cfg.CertPath)
			var want []byte
			switch {
			case tt.combined:
				want = cat(nw.certPEM, p.chainPEM, nw.keyPEM)
			case tt.chainIn:
				want = cat(nw.certPEM, p.chainPEM)
			default:
				want = nw.certPEM
			}
			if string(certFile) != string(want) {
				t.Errorf("cert file:\n%s\nwant:\n%s", certFile, want)
			}
			if !tt.combined {
				if k, _ := os.ReadFile(cfg.KeyPath); string(k) != string(nw.keyPEM) {
					t.Error("key file is not the new key")
				}
				if f, _ := keygen.FormatOf(nw.keyPEM); f != tt.format {
					t.Errorf("key format %s", f)
				}
			}
			modes := map[string]fs.FileMode{cfg.CertPath: tt.certMode, cfg.KeyPath: tt.keyMode}
			if tt.chainFile {
				modes[cfg.ChainPath] = 0o644
				if c, _ := os.ReadFile(cfg.ChainPath); string(c) != string(p.chainPEM) {
					t.Error("chain file is not the chain")
				}
			}
			for path, m := range modes {
				fi, err := os.Stat(path)
				if err != nil || fi.Mode().Perm() != m {
					t.Errorf("%s mode %v (%v), want %v", path, fi.Mode().Perm(), err, m)
				}
			}
			// The backup holds the old files byte for byte, with their modes.
			var manifest []manifestEntry
			mb, err := os.ReadFile(filepath.Join(res.BackupDir, "manifest.json"))
			if err != nil || json.Unmarshal(mb, &manifest) != nil {
				t.Fatalf("manifest: %v", err)
			}
			for _, e := range manifest {
				if e.Backup == "" {
					if !tt.chainFile || e.Role != "chain" {
						t.Errorf("no backup of %s", e.Original)
					}
					continue
				}
				b, _ := os.ReadFile(filepath.Join(res.BackupDir, e.Backup))
				fi, _ := os.Stat(filepath.Join(res.BackupDir, e.Backup))
				orig := before[filepath.Base(e.Original)]
				if fi.Mode().Perm().String()+"\n"+string(b) != orig {
					t.Errorf("backup of %s differs from the old file", e.Original)
				}
			}
			if fi, _ := os.Stat(res.BackupDir); fi.Mode().Perm() != 0o700 {
				t.Errorf("backup dir mode %v", fi.Mode().Perm())
			}
			// No temp file left beside the targets.
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), tmpPrefix) {
					t.Errorf("left %s", e.Name())
				}
			}
		})
	}
}

// TestRefusedBeforeTouching covers what prepare refuses: nothing is
// written, no backup made, the reload never runs.
func TestRefusedBeforeTouching(t *testing.T) {
	p := newPKI(t)
	old := p.issue(t, "old.test", 24*time.Hour, keygen.ECDSAP256, keygen.PKCS8)
	nw := p.issue(t, "new.test", 24*time.Hour, keygen.ECDSAP256, keygen.PKCS8)
	other := p.issue(t, "other.test", 24*time.Hour, keygen.ECDSAP256, keygen.PKCS8)
	tests := []struct {
		name     string
		cert     []byte
		key      []byte
		setup    func(dir string)
		chainDir bool
		want     string
	}{
		{"cert does not match key", nw.certPEM, other.keyPEM, nil, false, "does not match the new key"},
		{"no certificate", []byte("junk"), nw.keyPEM, nil, false, "no CERTIFICATE block"},
		{"no key", nw.certPEM, nw.certPEM, nil, false, "new key"},
		{"old cert file missing", nw.certPEM, nw.keyPEM, func(dir string) { os.Remove(filepath.Join(dir, "cert.pem")) }, false, "cert_path: lstat"},
		{"old cert file holds no certificate", nw.certPEM, nw.keyPEM, func(dir string) { writeFile(t, filepath.Join(dir, "cert.pem"), []byte("x"), 0o644) }, false, "holds no readable certificate"},
		{"old key file holds no key", nw.certPEM, nw.keyPEM, func(dir string) { writeFile(t, filepath.Join(dir, "key.pem"), old.certPEM, 0o600) }, false, "holds no private key"},
		{"chain_path with no chain", nw.certPEM, nw.keyPEM, nil, true, "came with no chain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			marker := filepath.Join(t.TempDir(), "reloaded")
			cfg := Config{CertPath: filepath.Join(dir, "cert.pem"), KeyPath: filepath.Join(dir, "key.pem"),
				BackupDir: filepath.Join(t.TempDir(), "b"), Reload: &Command{Argv: []string{"touch", marker}}}
			if tt.chainDir {
				cfg.ChainPath = filepath.Join(dir, "chain.pem")
			}
			writeFile(t, cfg.CertPath, old.certPEM, 0o644)
			writeFile(t, cfg.KeyPath, old.keyPEM, 0o600)
			if tt.setup != nil {
				tt.setup(dir)
			}
			before := snap(t, dir)
			d, _ := New(cfg)
			report, steps := collect()
			chain := p.chainPEM
			if tt.chainDir {
				chain = nil
			}
			res, err := d.Run(context.Background(), tt.cert, chain, tt.key, report)
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.want) || res.Outcome != OutcomeFailed {
				t.Fatalf("outcome %s err %v, want %q", res.Outcome, err, tt.want)
			}
			if got := stepNames(*steps); got != "prepare:FAILED" {
				t.Errorf("steps %s", got)
			}
			if !snap(t, dir).equal(before) {
				t.Error("files changed")
			}
			if _, err := os.Stat(cfg.BackupDir); !errors.Is(err, fs.ErrNotExist) {
				t.Error("a backup directory was made")
			}
			if _, err := os.Stat(marker); !errors.Is(err, fs.ErrNotExist) {
				t.Error("the reload ran")
			}
			noKey(t, *steps, err, old.keyPEM, nw.keyPEM, other.keyPEM)
		})
	}
}

// TestRollbackFailsLoudly: a reload that always fails fails the rollback
// too; the files are restored anyway and the report says where the
// backups are.
func TestRollbackFailsLoudly(t *testing.T) {
	p := newPKI(t)
	old := p.issue(t, "old.test", 24*time.Hour, keygen.ECDSAP256, keygen.PKCS8)
	nw := p.issue(t, "new.test", 24*time.Hour, keygen.ECDSAP256, keygen.PKCS8)
	dir := t.TempDir()
	cfg := Config{CertPath: filepath.Join(dir, "cert.pem"), KeyPath: filepath.Join(dir, "key.pem"),
		BackupDir: filepath.Join(t.TempDir(), "b"),
		// The script cats the key file: its output must come out redacted.
		Reload: &Command{Argv: []string{"cat " + filepath.Join(dir, "key.pem") + "; echo nginx: [emerg] broken; exit 3"}, Shell: true}}
	writeFile(t, cfg.CertPath, old.certPEM, 0o644)
	writeFile(t, cfg.KeyPath, old.keyPEM, 0o600)
	before := snap(t, dir)
	d, _ := New(cfg)
	report, steps := collect()
	res, err := d.Run(context.Background(), nw.certPEM, nil, nw.keyPEM, report)
	if !errors.Is(err, ErrRollbackFailed) || res.Outcome != OutcomeRollbackFailed {
		t.Fatalf("outcome %s, %v", res.Outcome, err)
	}
	if got := stepNames(*steps); got != "prepare:ok backup:ok write:ok reload:FAILED rollback:FAILED" {
		t.Errorf("steps %s", got)
	}
	last := (*steps)[len(*steps)-1].Message
	for _, want := range []string{"ROLLBACK FAILED", res.BackupDir, "manifest.json", "exit status 3", "[emerg] broken", "[private key redacted]"} {
		if !strings.Contains(last, want) {
			t.Errorf("rollback message lacks %q: %s", want, last)
		}
	}
	if !strings.Contains(err.Error(), res.BackupDir) {
		t.Errorf("error lacks the backup dir: %v", err)
	}
	if !snap(t, dir).equal(before) {
		t.Error("old files not restored")
	}
	noKey(t, *steps, err, old.keyPEM, nw.keyPEM)
}

func TestReloadTimeoutKillsGroup(t *testing.T) {
	dir := t.TempDir()
	d, _ := New(Config{CertPath: "/c", KeyPath: "/k", BackupDir: "/b",
		Reload: &Command{Argv: []string{"sleep 30 & sleep 30; echo never"}, Shell: true, Timeout: 300 * time.Millisecond, Dir: dir}})
	start := time.Now()
	_, err := d.reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "timed out after 300ms") {
		t.Errorf("err %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %s", time.Since(start))
	}
	d, _ = New(Config{CertPath: "/c", KeyPath: "/k", BackupDir: "/b",
		Reload: &Command{Argv: []string{"sh", "-c", "head -c 5000 /dev/zero | tr '\\0' x; echo END"}}})
	msg, err := d.reload(context.Background())
	if err != nil || !strings.Contains(msg, "bytes cut") || !strings.HasSuffix(msg, "END") || len(msg) > 1500 {
		t.Errorf("msg %d bytes %q, %v", len(msg), msg, err)
	}
}

// TestSymlinkedFiles: certbot-style links are followed; the link stays a
// link and the file it points to is replaced.
func TestSymlinkedFiles(t *testing.T) {
	p := newPKI(t)
	old := p.issue(t, "old.test", 24*time.Hour, keygen.ECDSAP256, keygen.PKCS8)
	nw := p.issue(t, "new.test", 24*time.Hour, keygen.ECDSAP256, keygen.PKCS8)
	archive, live := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(archive, "cert1.pem"), old.certPEM, 0o644)
	writeFile(t, filepath.Join(archive, "privkey1.pem"), old.keyPEM, 0o600)
	_ = os.Symlink(filepath.Join(archive, "cert1.pem"), filepath.Join(live, "cert.pem"))
	_ = os.Symlink(filepath.Join(archive, "privkey1.pem"), filepath.Join(live, "privkey.pem"))
	d, _ := New(Config{CertPath: filepath.Join(live, "cert.pem"), KeyPath: filepath.Join(live, "privkey.pem"), BackupDir: filepath.Join(t.TempDir(), "b")})
	if _, err := d.Run(context.Background(), nw.certPEM, nil, nw.keyPEM, nil); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(filepath.Join(live, "cert.pem")); fi.Mode()&fs.ModeSymlink == 0 {
		t.Error("the link was replaced by a file")
	}
	if b, _ := os.ReadFile(filepath.Join(archive, "cert1.pem")); string(b) != string(nw.certPEM) {
		t.Error("the link's target was not replaced")
	}
}

// TestOwnerKept: the new files get the old files' uid and gid. As root
// (make test) the old key belongs to another user; otherwise to one's own
// uid and a group one is in, which is all a non-root chown may do.
func TestOwnerKept(t *testing.T) {
	uid, gid := 1234, 5678
	if os.Geteuid() != 0 {
		uid, gid = os.Getuid(), os.Getgid()
	}
	p := newPKI(t)
	old := p.issue(t, "old.test", 24*time.Hour, keygen.ECDSAP256, keygen.PKCS8)
	nw := p.issue(t, "new.test", 24*time.Hour, keygen.ECDSAP256, keygen.PKCS8)
	dir := t.TempDir()
	cfg := Config{CertPath: filepath.Join(dir, "cert.pem"), KeyPath: filepath.Join(dir, "key.pem"), BackupDir: filepath.Join(t.TempDir(), "b")}
	writeFile(t, cfg.CertPath, old.certPEM, 0o644)
	writeFile(t, cfg.KeyPath, old.keyPEM, 0o640)
	if err := os.Chown(cfg.KeyPath, uid, gid); err != nil {
		t.Fatal(err)
	}
	d, _ := New(cfg)
	res, err := d.Run(context.Background(), nw.certPEM, nil, nw.keyPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{cfg.KeyPath, filepath.Join(res.BackupDir, "2-key.pem")} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if o := OwnerOf(fi); o.uid != uid || o.gid != gid || fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: owner%s mode %v, want %d:%d 0640", path, o, fi.Mode().Perm(), uid, gid)
		}
	}
}

// TestCancelledJobStillRollsBack: the job's context ends during verify;
// the rollback runs anyway, on its own budget.
func TestCancelledJobStillRollsBack(t *testing.T) {
	p := newPKI(t)
	old := p.issue(t, "old.test", 24*time.Hour, keygen.ECDSAP256, keygen.PKCS8)
	nw := p.issue(t, "new.test", 24*time.Hour, keygen.ECDSAP256, keygen.PKCS8)
	pair, err := tls.X509KeyPair(old.certPEM, old.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	dir := t.TempDir()
	cfg := Config{CertPath: filepath.Join(dir, "cert.pem"), KeyPath: filepath.Join(dir, "key.pem"), BackupDir: filepath.Join(t.TempDir(), "b"),
		Verify: []Endpoint{{Address: l.Addr().String()}}, VerifyTimeout: time.Minute, VerifyInterval: 50 * time.Millisecond}
	writeFile(t, cfg.CertPath, old.certPEM, 0o644)
	writeFile(t, cfg.KeyPath, old.keyPEM, 0o600)
	before := snap(t, dir)
	d, _ := New(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	report, steps := collect()
	res, err := d.Run(ctx, nw.certPEM, nil, nw.keyPEM, report)
	if !errors.Is(err, ErrRolledBack) || res.Outcome != OutcomeRolledBack {
		t.Fatalf("outcome %s, %v; %s", res.Outcome, err, stepNames(*steps))
	}
	if !snap(t, dir).equal(before) {
		t.Error("files not restored")
	}
}
