package deploy

import (
	"bytes"
	"encoding/pem"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/agent/keygen"
	"github.com/emsign/bot/protocol"
)

// The helpers the targets share (P8): connectors/aws, f5, cloudflare,
// ldap, ssh, pkcs11 and agent/deploy/keystore call these instead of their
// own copies.

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "manifest.json")
	for _, tt := range []struct {
		name string
		data string
		mode fs.FileMode
	}{
		{"new file", "first", 0o600},
		{"replaced, mode changed", "second, longer", 0o644},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := WriteFileAtomic(path, []byte(tt.data), tt.mode); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != tt.data {
				t.Fatalf("read %q, %v; want %q", got, err, tt.data)
			}
			fi, _ := os.Stat(path)
			if runtime.GOOS != "windows" && fi.Mode().Perm() != tt.mode {
				t.Errorf("mode %04o, want %04o", fi.Mode().Perm(), tt.mode)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("%d entries left in the directory, want 1 (no temp file)", len(entries))
			}
		})
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Error("a write into a missing directory succeeded")
	}
}

func TestNewBackupDir(t *testing.T) {
	base := filepath.Join(t.TempDir(), "backups") // made by the first call
	now := time.Date(2026, 11, 25, 8, 30, 0, 123456789, time.FixedZone("x", 3600))
	stamp := "20261125T073000.123456789Z"
	for _, tt := range []struct {
		name, prefix, want string
	}{
		{"stamp only (PEM, keystore, token, ldap, ssh)", "", stamp},
		{"same nanosecond", "", stamp + "-2"},
		{"again", "", stamp + "-3"},
		{"with a prefix (acm, f5, cloudflare)", "acm", "acm-" + stamp},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir, err := NewBackupDir(base, tt.prefix, now)
			if err != nil {
				t.Fatal(err)
			}
			if dir != filepath.Join(base, tt.want) {
				t.Errorf("dir %s, want %s", dir, filepath.Join(base, tt.want))
			}
			for _, d := range []string{base, dir} {
				fi, err := os.Stat(d)
				if err != nil || !fi.IsDir() {
					t.Fatalf("%s: %v", d, err)
				}
				if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o700 {
					t.Errorf("%s mode %04o, want 0700 (backups hold keys)", d, fi.Mode().Perm())
				}
			}
		})
	}
	if BackupStamp(now) != stamp {
		t.Errorf("BackupStamp %s, want %s", BackupStamp(now), stamp)
	}
	file := filepath.Join(t.TempDir(), "file")
	writeFile(t, file, []byte("x"), 0o600)
	if _, err := NewBackupDir(filepath.Join(file, "sub"), "", now); err == nil {
		t.Error("a backup directory under a file was made")
	}
}

func TestReplaceFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keystore.p12")
	writeFile(t, path, []byte("old"), 0o640)
	fi, _ := os.Stat(path)
	own := OwnerOf(fi)
	for _, tt := range []struct {
		name        string
		path        string
		mode        fs.FileMode
		wantChanged bool
	}{
		{"replaced, mode and owner kept", path, 0o640, true},
		{"new mode", path, 0o600, true},
		{"missing directory: nothing changed", filepath.Join(dir, "missing", "f"), 0o600, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			changed, err := ReplaceFile(tt.path, []byte("new "+tt.name), tt.mode, own)
			if changed != tt.wantChanged || (err == nil) != tt.wantChanged {
				t.Fatalf("changed %v, err %v; want changed %v", changed, err, tt.wantChanged)
			}
			if !tt.wantChanged {
				return
			}
			got, _ := os.ReadFile(tt.path)
			if string(got) != "new "+tt.name {
				t.Errorf("content %q", got)
			}
			fi, _ := os.Stat(tt.path)
			if runtime.GOOS != "windows" && fi.Mode().Perm() != tt.mode {
				t.Errorf("mode %04o, want %04o", fi.Mode().Perm(), tt.mode)
			}
			if OwnerOf(fi) != own {
				t.Errorf("owner%s, want%s", OwnerOf(fi), own)
			}
		})
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d entries left, want 1 (no temp file)", len(entries))
	}
	if err := ProbeWritable(dir); err != nil {
		t.Errorf("probe of a writable directory: %v", err)
	}
	if err := ProbeWritable(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "not writable") {
		t.Errorf("probe of a missing directory: %v", err)
	}
}

func TestKeysAndCertificates(t *testing.T) {
	p := newPKI(t)
	a := p.issue(t, "a.test", time.Hour, keygen.ECDSAP256, keygen.SEC1)
	b := p.issue(t, "b.test", time.Hour, keygen.ECDSAP256, keygen.PKCS8)
	keyA, _ := keygen.ParsePEM(a.keyPEM)
	keyB, _ := keygen.ParsePEM(b.keyPEM)
	if !KeyMatches(a.cert, keyA) || KeyMatches(a.cert, keyB) {
		t.Error("KeyMatches does not tell a's key from b's")
	}

	certs, err := ParseCertificatesPEM(cat(a.certPEM, a.keyPEM, p.chainPEM))
	if err != nil || len(certs) != 2 || !certs[0].Equal(a.cert) || !certs[1].Equal(p.inter) {
		t.Errorf("ParseCertificatesPEM: %d certificates, %v; want leaf and intermediate, the key skipped", len(certs), err)
	}
	bad := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})
	if _, err := ParseCertificatesPEM(cat(a.certPEM, bad)); err == nil || !strings.Contains(err.Error(), "certificate 2") {
		t.Errorf("a broken second certificate: %v", err)
	}

	rsaLeaf := p.issue(t, "rsa.test", time.Hour, keygen.RSA2048, keygen.PKCS1)
	rsaKey, _ := keygen.ParsePEM(rsaLeaf.keyPEM)
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("x")})
	for _, tt := range []struct {
		name     string
		m        Material
		wantType string // the PEM block returned
		wantErr  string
	}{
		{"SEC1 PEM kept", Material{Certificate: a.cert, Key: keyA, KeyPEM: a.keyPEM}, "EC PRIVATE KEY", ""},
		{"PKCS#1 PEM kept", Material{Certificate: rsaLeaf.cert, Key: rsaKey, KeyPEM: rsaLeaf.keyPEM}, "RSA PRIVATE KEY", ""},
		{"no PEM: PKCS#8", Material{Certificate: a.cert, Key: keyA}, "PRIVATE KEY", ""},
		{"encrypted PEM: PKCS#8", Material{Certificate: a.cert, Key: keyA, KeyPEM: encrypted}, "PRIVATE KEY", ""},
		{"no certificate", Material{Key: keyA}, "", "no certificate"},
		{"token key", Material{Certificate: a.cert, KeyRef: &TokenKey{Label: "web", ID: "01"}}, "", `not in software (token key "web")`},
		{"wrong key", Material{Certificate: a.cert, Key: keyB, KeyPEM: b.keyPEM}, "", "does not match"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := SoftwareKeyPEM(tt.m)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				noKey(t, nil, err, a.keyPEM, b.keyPEM)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			blk, _ := pem.Decode(out)
			if blk == nil || blk.Type != tt.wantType {
				t.Fatalf("block %v, want %s", blk, tt.wantType)
			}
			k, err := keygen.ParsePEM(out)
			if err != nil || !KeyMatches(tt.m.Certificate, k) {
				t.Errorf("the returned key does not match the certificate: %v", err)
			}
		})
	}
}

func TestStepsRecordsReportsAndRedacts(t *testing.T) {
	var logs bytes.Buffer
	report, seen := collect()
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	s := &Steps{Result: &Result{}, Report: report, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Now: func() time.Time { return now }, LogPrefix: "aws: deploy ", LogAttrs: []any{"path", "/x"}}
	key := "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----"
	s.Add(StepBackup, true, "copied to %s", "/b")
	s.Add(StepReload, false, "output: %s", key)
	res, err := s.Refuse("aws", errors.New("no such ARN"))

	if !errors.Is(err, ErrRefused) || err.Error() != "aws: refused before any change: no such ARN" {
		t.Errorf("Refuse error %q", err)
	}
	if res != s.Result || res.Outcome != OutcomeFailed || stepNames(res.Steps) != "backup:ok reload:FAILED prepare:FAILED" {
		t.Errorf("result %s %s", res.Outcome, stepNames(res.Steps))
	}
	if len(*seen) != 3 || (*seen)[0] != res.Steps[0] || !(*seen)[0].Time.Equal(now) {
		t.Errorf("reported %v", *seen)
	}
	if strings.Contains(res.Steps[1].Message, "MIGHAgEA") || !strings.Contains(res.Steps[1].Message, "[private key redacted]") {
		t.Errorf("step message %q holds the key", res.Steps[1].Message)
	}
	for _, want := range []string{`level=INFO msg="aws: deploy backup" path=/x message="copied to /b"`, `level=WARN msg="aws: deploy reload failed" path=/x`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "MIGHAgEA") {
		t.Errorf("the log holds the key:\n%s", logs.String())
	}
	// No logger, no clock: still recorded.
	quiet := &Steps{Result: &Result{}}
	quiet.Add(StepVerify, true, "ok")
	if len(quiet.Result.Steps) != 1 || quiet.Result.Steps[0].Time.IsZero() {
		t.Errorf("steps without logger or clock: %v", quiet.Result.Steps)
	}
}

func TestSpecAndEnvChecks(t *testing.T) {
	eps, err := EndpointsHostPort([]protocol.VerifyEndpoint{{Address: "127.0.0.1:443", ServerName: "www.test"}, {Address: "[::1]:8443"}})
	if err != nil || len(eps) != 2 || eps[0].ServerName != "www.test" || eps[1].Address != "[::1]:8443" {
		t.Errorf("EndpointsHostPort: %v, %v", eps, err)
	}
	for _, addr := range []string{"", "host", ":443", "host:"} {
		if _, err := EndpointsHostPort([]protocol.VerifyEndpoint{{Address: "127.0.0.1:1"}, {Address: addr}}); err == nil || !strings.Contains(err.Error(), "verify[1].address") {
			t.Errorf("address %q: %v", addr, err)
		}
	}

	env, err := CheckEnv(Env{BackupDir: "/var/lib/emsign-bot/backups"})
	if err != nil || env.Logger == nil || env.Now == nil {
		t.Errorf("CheckEnv fills nothing in: %v", err)
	}
	for _, dir := range []string{"", "relative/backups"} {
		if _, err := CheckEnv(Env{BackupDir: dir}); err == nil || !strings.Contains(err.Error(), "backup directory") {
			t.Errorf("backup dir %q: %v", dir, err)
		}
	}

	for _, tt := range []struct {
		name, kind, target, want string
	}{
		{"good", protocol.DeployF5, "f5://127.0.0.1:8443?user=admin&password=pw", ""},
		{"wrong kind", protocol.DeployACM, "f5://127.0.0.1:8443?user=admin&password=pw", `deploy kind "aws-acm" is not f5`},
		{"no target", protocol.DeployF5, "", "want the f5:// target"},
		{"bad target", protocol.DeployF5, "f5://", "deploy target:"},
		{"other scheme", protocol.DeployF5, "tls://127.0.0.1:443", `deploy target scheme "tls" is not f5`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tg, err := ParseDeployTarget(protocol.DeploySpec{Kind: tt.kind, Target: tt.target}, protocol.DeployF5, protocol.SchemeF5)
			if tt.want == "" {
				if err != nil || tg.Scheme != protocol.SchemeF5 {
					t.Fatalf("%v, %v", tg, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

// P8: the checks a remote service's target starts with, in one place.
func TestCheckService(t *testing.T) {
	ok := protocol.DeploySpec{Kind: protocol.DeployCloudflare, Target: "cloudflare://023e105f4ecef8ad9ca31a8372d0c353?api_token=env:CF_TOKEN",
		Verify: []protocol.VerifyEndpoint{{Address: "127.0.0.1:443"}}}
	env := Env{BackupDir: "/var/lib/emsign-bot/backups"}
	for _, tt := range []struct {
		name string
		spec func(protocol.DeploySpec) protocol.DeploySpec
		env  Env
		want string
	}{
		{"ok", func(s protocol.DeploySpec) protocol.DeploySpec { return s }, env, ""},
		{"kind", func(s protocol.DeploySpec) protocol.DeploySpec { s.Kind = protocol.DeployF5; return s }, env, `deploy kind "f5"`},
		{"scheme", func(s protocol.DeploySpec) protocol.DeploySpec { s.Target = "file:///etc/ssl"; return s }, env, `scheme "file"`},
		{"reload", func(s protocol.DeploySpec) protocol.DeploySpec { s.Reload = []string{"true"}; return s }, env, "deploy reload: the edge picks it up"},
		{"verify", func(s protocol.DeploySpec) protocol.DeploySpec {
			s.Verify = []protocol.VerifyEndpoint{{Address: "no-port"}}
			return s
		}, env, "no-port"},
		{"env", func(s protocol.DeploySpec) protocol.DeploySpec { return s }, Env{BackupDir: "rel"}, "absolute"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, eps, err := CheckService(tt.spec(ok), tt.env, protocol.DeployCloudflare, protocol.SchemeCloudflare, "the edge picks it up")
			if tt.want == "" {
				if err != nil || len(eps) != 1 || got.Logger == nil || got.Now == nil {
					t.Fatalf("got %v %v %v", eps, got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}
