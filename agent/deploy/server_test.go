//go:build !windows

package deploy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/agent/keygen"
	"github.com/emsign/bot/internal/testsvc"
)

// TestRotateOpenSSL covers the real-server cases, in nginx (fullchain +
// key, PKCS#1 key 0640) and HAProxy (one combined file, 0600) layouts.
func TestRotateOpenSSL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts openssl s_server")
	}
	p := newPKI(t)
	layouts := []struct {
		name     string
		combined bool
		format   keygen.KeyFormat
		alg      keygen.Algorithm
		keyMode  os.FileMode
	}{
		{"nginx", false, keygen.PKCS1, keygen.RSA2048, 0o640},
		{"haproxy", true, keygen.SEC1, keygen.ECDSAP256, 0o600},
	}
	cases := []string{"rotate", "reload fails", "verify fails"}
	for _, lay := range layouts {
		for _, c := range cases {
			t.Run(lay.name+"/"+c, func(t *testing.T) {
				old := p.issue(t, "old.test", 24*time.Hour, lay.alg, lay.format)
				lifetime := 24 * time.Hour
				if c == "reload fails" {
					lifetime = 5 * time.Minute // the reload script's check refuses it
				}
				nw := p.issue(t, "new.test", lifetime, lay.alg, lay.format)
				dir := t.TempDir()
				cfg := Config{CertPath: filepath.Join(dir, "fullchain.pem"), KeyPath: filepath.Join(dir, "privkey.pem"),
					ChainInCert: true, BackupDir: filepath.Join(t.TempDir(), "backups"),
					VerifyTimeout: 10 * time.Second, VerifyInterval: 100 * time.Millisecond}
				if lay.combined {
					cfg.CertPath = filepath.Join(dir, "site.pem")
					cfg.KeyPath = cfg.CertPath
					writeFile(t, cfg.CertPath, cat(old.certPEM, p.chainPEM, old.keyPEM), lay.keyMode)
				} else {
					writeFile(t, cfg.CertPath, cat(old.certPEM, p.chainPEM), 0o644)
					writeFile(t, cfg.KeyPath, old.keyPEM, lay.keyMode)
				}
				srv := testsvc.StartSServer(t, cfg.CertPath, cfg.KeyPath)
				srv.WaitServes(t, "new.test", old.fp)
				cfg.Reload = &Command{Argv: []string{srv.Script}, Timeout: 20 * time.Second}
				if c == "verify fails" {
					// A reload that does not make the server reread: it
					// keeps serving the old certificate.
					cfg.Reload = &Command{Argv: []string{"true"}}
					cfg.VerifyTimeout = time.Second
				}
				cfg.Verify = []Endpoint{{Address: srv.Addr, ServerName: "new.test"}}
				before := snap(t, dir)
				d, err := New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				report, steps := collect()
				res, err := d.Run(context.Background(), nw.certPEM, p.chainPEM, nw.keyPEM, report)
				noKey(t, *steps, err, old.keyPEM, nw.keyPEM)
				for _, s := range *steps {
					t.Logf("%s ok=%v: %s", s.Name, s.OK, s.Message)
				}

				switch c {
				case "rotate":
					if err != nil || res.Outcome != OutcomeDeployed {
						t.Fatalf("outcome %s, %v; %s", res.Outcome, err, stepNames(*steps))
					}
					if got := stepNames(*steps); got != "prepare:ok backup:ok write:ok reload:ok verify:ok" {
						t.Errorf("steps %s", got)
					}
					srv.WaitServes(t, "new.test", nw.fp)
					// The backup holds the old files, byte for byte.
					entries, _ := os.ReadDir(res.BackupDir)
					var found int
					for _, e := range entries {
						b, _ := os.ReadFile(filepath.Join(res.BackupDir, e.Name()))
						for name, v := range before {
							if strings.HasSuffix(e.Name(), "-"+name) && strings.HasSuffix(v, "\n"+string(b)) {
								found++
							}
						}
					}
					if found != len(before) {
						t.Errorf("backup holds %d of the %d old files", found, len(before))
					}
					if fi, _ := os.Stat(cfg.KeyPath); fi.Mode().Perm() != lay.keyMode {
						t.Errorf("key mode %v, want %v", fi.Mode().Perm(), lay.keyMode)
					}
					if f, _ := keygen.FormatOf(mustRead(t, cfg.KeyPath)); f != lay.format {
						t.Errorf("key form %s, want %s", f, lay.format)
					}

					// Delivered again: already deployed, nothing written,
					// no reload, only verified.
					after := snap(t, dir)
					report, steps = collect()
					res2, err := d.Run(context.Background(), nw.certPEM, p.chainPEM, nw.keyPEM, report)
					if err != nil || res2.Outcome != OutcomeAlreadyDeployed || res2.BackupDir != "" {
						t.Fatalf("second run: %s, %v", res2.Outcome, err)
					}
					if got := stepNames(*steps); got != "prepare:ok verify:ok" || !strings.Contains((*steps)[0].Message, "already deployed") {
						t.Errorf("second run steps %s: %s", got, (*steps)[0].Message)
					}
					if !snap(t, dir).equal(after) {
						t.Error("second run changed the files")
					}
				default:
					if !errors.Is(err, ErrRolledBack) || res.Outcome != OutcomeRolledBack {
						t.Fatalf("outcome %s, %v; %s", res.Outcome, err, stepNames(*steps))
					}
					want := "prepare:ok backup:ok write:ok reload:FAILED rollback:ok"
					if c == "verify fails" {
						want = "prepare:ok backup:ok write:ok reload:ok verify:FAILED rollback:ok"
					}
					if got := stepNames(*steps); got != want {
						t.Errorf("steps %s, want %s", got, want)
					}
					if !snap(t, dir).equal(before) {
						t.Error("files are not byte-identical to before")
					}
					srv.WaitServes(t, "new.test", old.fp)
					msg := (*steps)[len(*steps)-1].Message
					if !strings.Contains(msg, "serves "+ShortFingerprint(old.fp)) {
						t.Errorf("rollback did not verify the old certificate: %s", msg)
					}
					if c == "reload fails" && !strings.Contains(err.Error(), "config test failed") {
						t.Errorf("reload output not in the error: %v", err)
					}
				}
			})
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
