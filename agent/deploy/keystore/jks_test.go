package keystore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jks "github.com/pavlo-v-chernykh/keystore-go/v4"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/agent/keygen"
	"github.com/emsign/bot/protocol"
)

// TestJKSDeployKeytool (P8, B9): a keystore made by keytool gets a new key
// and chain under its alias; keytool lists the new certificate, the
// trusted entry is kept, the backup holds the old file, a second run is
// already deployed.
func TestJKSDeployKeytool(t *testing.T) {
	t.Parallel() // keytool starts a JVM per call
	need(t, "keytool")
	ca := newPKI(t)
	for _, tc := range []struct {
		name string
		spec protocol.DeploySpec
		pws  []string
		alg  keygen.Algorithm
	}{
		{"job password, alias found alone", protocol.DeploySpec{KeystorePassword: protocol.NewTransitSecret("changeit")}, nil, keygen.ECDSAP256},
		{"bot passwords tried in order, alias named", protocol.DeploySpec{Alias: "server"}, []string{"wrong", "changeit"}, keygen.RSA2048},
		{"alias in another case", protocol.DeploySpec{Alias: "SERVER"}, []string{"changeit"}, keygen.ECDSAP384},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := fixture(t, "server.jks")
			old, _ := os.ReadFile(path)
			before := keytoolList(t, path, "JKS", "changeit")
			spec := tc.spec
			spec.Kind, spec.KeystorePath = protocol.DeployJKS, path
			e := env(t, tc.pws...)
			d, err := NewDeployer(spec, e)
			if err != nil {
				t.Fatal(err)
			}
			m := ca.material(t, "jks.example.com", tc.alg)
			var reported []deploy.Step
			res, err := d.Deploy(context.Background(), m, func(s deploy.Step) { reported = append(reported, s) })
			if err != nil {
				t.Fatalf("deploy: %v (steps %s)", err, stepNames(res))
			}
			if res.Outcome != deploy.OutcomeDeployed || stepNames(res) != "prepare,backup,write,verify" || len(reported) != 4 {
				t.Fatalf("outcome %s, steps %s, reported %d", res.Outcome, stepNames(res), len(reported))
			}
			if res.Fingerprint != fpOf(m.Certificate) || res.OldFingerprint != before["server"][0] {
				t.Errorf("fingerprints %s / %s, want new %s old %s", res.Fingerprint, res.OldFingerprint, fpOf(m.Certificate), before["server"][0])
			}
			after := keytoolList(t, path, "JKS", "changeit")
			if after["server"] != [2]string{fpOf(m.Certificate), "PrivateKeyEntry"} {
				t.Errorf("keytool lists server as %v, want the new certificate %s", after["server"], fpOf(m.Certificate))
			}
			if after["testca"] != before["testca"] || after["testca"][1] != "trustedCertEntry" {
				t.Errorf("trusted entry changed: %v → %v", before["testca"], after["testca"])
			}
			if len(after) != 2 {
				t.Errorf("entries after: %v", after)
			}
			// The key is under the store password, the chain leaf + intermediate.
			ks := jks.New()
			data, _ := os.ReadFile(path)
			if err := ks.Load(bytes.NewReader(data), []byte("changeit")); err != nil {
				t.Fatal(err)
			}
			entry, err := ks.GetPrivateKeyEntry("server", []byte("changeit"))
			if err != nil || len(entry.CertificateChain) != 2 || !bytes.Equal(entry.CertificateChain[1].Content, ca.inter.Raw) {
				t.Errorf("entry: %v, chain %d", err, len(entry.CertificateChain))
			}
			if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want 0640 kept", fi.Mode().Perm())
			}
			checkBackup(t, res.BackupDir, path, old)

			// Again: already deployed, nothing written.
			res2, err := d.Deploy(context.Background(), m, nil)
			if err != nil || res2.Outcome != deploy.OutcomeAlreadyDeployed || stepNames(res2) != "prepare,verify" {
				t.Fatalf("second deploy: %v, %s, %s", err, res2.Outcome, stepNames(res2))
			}
			if again, _ := os.ReadFile(path); !bytes.Equal(again, data) {
				t.Error("already deployed rewrote the keystore")
			}
		})
	}
}

// checkBackup checks agent/deploy's layout: <dir>/1-<name> is the old file,
// manifest.json says where it goes.
func checkBackup(t *testing.T, dir, path string, old []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "1-"+filepath.Base(path)))
	if err != nil || !bytes.Equal(b, old) {
		t.Errorf("backup copy: %v, equal %v", err, bytes.Equal(b, old))
	}
	var man []manifestEntry
	raw, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err := json.Unmarshal(raw, &man); err != nil || len(man) != 1 || man[0].Original != path || man[0].Mode != "0640" {
		t.Errorf("manifest %s: %v", raw, err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("backup dir: %v", err)
	}
}

// TestRefusedBeforeWriting (P8): what is wrong is found in prepare, and
// nothing is written, backed up or run.
func TestRefusedBeforeWriting(t *testing.T) {
	ca := newPKI(t)
	good := ca.material(t, "jks.example.com", keygen.ECDSAP256)
	other := ca.material(t, "other.example.com", keygen.ECDSAP256)
	mismatched := good
	mismatched.Key = other.Key
	onToken := good
	onToken.Key, onToken.KeyRef = nil, &deploy.TokenKey{Label: "web", ID: "01"}
	ran := false
	for _, tc := range []struct {
		name    string
		file    string
		spec    protocol.DeploySpec
		pws     []string
		m       deploy.Material
		deny    bool
		wantErr string
	}{
		{"wrong job password", "server.jks", protocol.DeploySpec{KeystorePassword: protocol.NewTransitSecret("Pw-Not-This-1")}, []string{"changeit"}, good, false, "keystore_password does not open"},
		{"no known password", "server.jks", protocol.DeploySpec{}, []string{"Pw-Not-This-2", "Pw-Not-This-3"}, good, false, "no known password opens"},
		{"several keys, no alias", "two-keys.jks", protocol.DeploySpec{}, []string{"changeit"}, good, false, "2 private-key entries (other, server)"},
		{"alias missing", "server.jks", protocol.DeploySpec{Alias: "tomcat"}, []string{"changeit"}, good, false, `alias "tomcat" is not in the keystore`},
		{"alias of a trusted entry", "server.jks", protocol.DeploySpec{Alias: "testca"}, []string{"changeit"}, good, false, "trusted-certificate entry"},
		{"reload not allowed", "server.jks", protocol.DeploySpec{Reload: []string{"/bin/touch", "/tmp/x"}}, []string{"changeit"}, good, true, "not allowed"},
		{"key does not match", "server.jks", protocol.DeploySpec{}, []string{"changeit"}, mismatched, false, "does not match the new key"},
		{"key on a token", "server.jks", protocol.DeploySpec{}, []string{"changeit"}, onToken, false, "PKCS#11 token"},
		{"key password unknown", "keypass.jks", protocol.DeploySpec{}, []string{"changeit"}, good, false, "none of the known ones opens"},
		{"PKCS#12 given as JKS", "server.p12", protocol.DeploySpec{}, []string{"changeit"}, good, false, "looks like PKCS#12"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := fixture(t, tc.file)
			old, _ := os.ReadFile(path)
			spec := tc.spec
			spec.Kind, spec.KeystorePath = protocol.DeployJKS, path
			e := env(t, tc.pws...)
			if tc.deny {
				e.AllowReload = func([]string) error { return errors.New("not in allowed_reload") }
			} else {
				e.AllowReload = func([]string) error { ran = true; return nil }
			}
			d, err := NewJKSDeployer(spec, e)
			if err != nil {
				t.Fatal(err)
			}
			res, err := d.Deploy(context.Background(), tc.m, nil)
			if !errors.Is(err, deploy.ErrRefused) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want refused with %q", err, tc.wantErr)
			}
			if res.Outcome != deploy.OutcomeFailed || stepNames(res) != "prepare!" {
				t.Errorf("outcome %s, steps %s", res.Outcome, stepNames(res))
			}
			if strings.Contains(err.Error(), "Pw-Not-This") || strings.Contains(res.Steps[0].Message, "Pw-Not-This") {
				t.Errorf("error shows a password: %v", err)
			}
			if now, _ := os.ReadFile(path); !bytes.Equal(now, old) {
				t.Error("keystore changed")
			}
			if _, err := os.Stat(e.BackupDir); !errors.Is(err, os.ErrNotExist) {
				t.Error("a backup was made")
			}
			if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
				t.Errorf("left files: %v", entries)
			}
		})
	}
	if ran {
		t.Error("a reload ran")
	}
}

// TestJKSKeyPasswordKept: an entry whose key had its own password, which
// the bot knows, keeps it (a Tomcat keyPass stays right).
func TestJKSKeyPasswordKept(t *testing.T) {
	ca := newPKI(t)
	path := fixture(t, "keypass.jks")
	d, err := NewJKSDeployer(protocol.DeploySpec{Kind: protocol.DeployJKS, KeystorePath: path}, env(t, "changeit", "keypass1"))
	if err != nil {
		t.Fatal(err)
	}
	m := ca.material(t, "keypass.example.com", keygen.ECDSAP256)
	res, err := d.Deploy(context.Background(), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Steps[0].Message, "keeps its own key password") {
		t.Errorf("prepare says %q", res.Steps[0].Message)
	}
	ks := jks.New()
	data, _ := os.ReadFile(path)
	if err := ks.Load(bytes.NewReader(data), []byte("changeit")); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.GetPrivateKeyEntry("tomcat", []byte("keypass1")); err != nil {
		t.Errorf("key not under keypass1: %v", err)
	}
	if _, err := ks.GetPrivateKeyEntry("tomcat", []byte("changeit")); err == nil {
		t.Error("key under the store password")
	}
}

// TestJKSReloadFailsRollsBack (B9, P8): a reload that fails puts the old
// keystore back byte for byte, and keytool lists the old certificate.
func TestJKSReloadFailsRollsBack(t *testing.T) {
	t.Parallel() // keytool starts a JVM per call
	need(t, "keytool", "sh")
	ca := newPKI(t)
	// The reload fails once (a broken config), then works: the rollback's
	// reload is the second run.
	script := filepath.Join(t.TempDir(), "reload.sh")
	marker := script + ".ran"
	body := "#!/bin/sh\nif [ -e " + marker + " ]; then exit 0; fi\ntouch " + marker + "\necho 'config broken' >&2\nexit 1\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		spec    protocol.DeploySpec
		steps   string
		message string
	}{
		{"reload exits 1", protocol.DeploySpec{Reload: []string{script}}, "prepare,backup,write,reload!,rollback", "config broken"},
		{"endpoint never serves it", protocol.DeploySpec{Verify: []protocol.VerifyEndpoint{{Address: "127.0.0.1:1"}}, VerifyTimeout: protocol.Duration(300e6)},
			"prepare,backup,write,verify!,rollback!", "old certificate not served again"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := fixture(t, "server.jks")
			old, _ := os.ReadFile(path)
			before := keytoolList(t, path, "JKS", "changeit")
			spec := tc.spec
			spec.Kind, spec.KeystorePath, spec.KeystorePassword = protocol.DeployJKS, path, protocol.NewTransitSecret("changeit")
			var allowed []string
			e := env(t)
			e.AllowReload = func(argv []string) error { allowed = argv; return nil }
			d, err := NewJKSDeployer(spec, e)
			if err != nil {
				t.Fatal(err)
			}
			res, err := d.Deploy(context.Background(), ca.material(t, "jks.example.com", keygen.ECDSAP256), nil)
			if err == nil || stepNames(res) != tc.steps {
				t.Fatalf("err %v, steps %s, want %s", err, stepNames(res), tc.steps)
			}
			if last := res.Steps[len(res.Steps)-1]; !strings.Contains(last.Message, tc.message) && !strings.Contains(err.Error(), tc.message) {
				t.Errorf("rollback says %q", last.Message)
			}
			if now, _ := os.ReadFile(path); !bytes.Equal(now, old) {
				t.Error("the keystore is not the old one byte for byte")
			}
			if after := keytoolList(t, path, "JKS", "changeit"); after["server"] != before["server"] {
				t.Errorf("keytool lists %v, want the old %v", after["server"], before["server"])
			}
			if len(spec.Reload) > 0 {
				if !errors.Is(err, deploy.ErrRolledBack) || res.Outcome != deploy.OutcomeRolledBack || allowed == nil {
					t.Errorf("err %v outcome %s allowed %v", err, res.Outcome, allowed)
				}
			} else if !errors.Is(err, deploy.ErrRollbackFailed) || res.Outcome != deploy.OutcomeRollbackFailed {
				// Nothing serves the old certificate either at 127.0.0.1:1:
				// the rollback restored the file but cannot prove the server
				// took it, and says so.
				t.Errorf("err %v outcome %s", err, res.Outcome)
			}
		})
	}
}

// TestNewValidates: constructors check the spec and env without I/O.
func TestNewValidates(t *testing.T) {
	good := protocol.DeploySpec{Kind: protocol.DeployJKS, KeystorePath: "/x/ks.jks"}
	e := deploy.Env{BackupDir: "/var/backups"}
	for _, tc := range []struct {
		name string
		spec protocol.DeploySpec
		env  deploy.Env
		want string
	}{
		{"no path", protocol.DeploySpec{Kind: protocol.DeployJKS}, e, "keystore_path is required"},
		{"relative path", protocol.DeploySpec{Kind: protocol.DeployJKS, KeystorePath: "ks.jks"}, e, "not an absolute path"},
		{"no backup dir", good, deploy.Env{}, "backup directory"},
		{"reload without a rule", protocol.DeploySpec{Kind: protocol.DeployJKS, KeystorePath: "/x", Reload: []string{"x"}}, e, "allowed_reload"},
		{"empty verify address", protocol.DeploySpec{Kind: protocol.DeployJKS, KeystorePath: "/x", Verify: []protocol.VerifyEndpoint{{}}}, e, "verify[0].address"},
		{"unknown kind", protocol.DeploySpec{Kind: "pem", KeystorePath: "/x"}, e, `kind "pem"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewDeployer(tc.spec, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "keystore: ") {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := NewDeployer(good, e); err != nil {
		t.Error(err)
	}
}
