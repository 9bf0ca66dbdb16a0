package rotate

import (
	"context"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/agent/keygen"
	"github.com/emsign/bot/protocol"
)

func TestNewValidates(t *testing.T) {
	cp := newFakeCP(t)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no client", Config{StateDir: "/x"}, "no client"},
		{"no state dir", Config{Client: cp}, "state_dir"},
		{"negative timeout", Config{Client: cp, StateDir: "/x", Timeout: -1}, "negative"},
		{"nil factory", Config{Client: cp, StateDir: "/x", Targets: map[string]TargetFactory{"pem": nil}}, `targets["pem"]`},
	}
	for _, tc := range tests {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// pemLocationFiles writes a certificate and key pair with no reload and no
// endpoint: the files are the check.
func pemLocationFiles(t *testing.T, cp *fakeCP) (certPath, keyPath string, old oldLeaf) {
	t.Helper()
	old = cp.oldLeaf(t, keygen.RSA2048, keygen.PKCS1)
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certPath, old.certPEM, 0o644)
	writeFile(t, keyPath, old.keyPEM, 0o600)
	return certPath, keyPath, old
}

func pemRotation(order, certPath, keyPath string, old oldLeaf) protocol.Rotation {
	return protocol.Rotation{
		OrderID: order, Action: protocol.ActionRotate, OldCertificate: old.cert.Raw,
		Key:    protocol.KeySpec{Where: protocol.KeyWhereSoftware, Algorithm: "ecdsa-p384"},
		CSR:    protocol.CSRSpec{CopyFromCertificate: true},
		Deploy: protocol.DeploySpec{Kind: protocol.DeployPEM, CertPath: certPath, KeyPath: keyPath},
	}
}

// TestRestartPostsTheSameCSR: a bot stopped while the CA works keeps the
// key and CSR of the order (0600, in its state directory); started again
// and given the order again, it posts the very same CSR, the CA issues
// once, and the kept key is removed when the rotation ends (B9: a job
// delivered twice orders once).
func TestRestartPostsTheSameCSR(t *testing.T) {
	cp := newFakeCP(t)
	cp.PendingForever = true
	certPath, keyPath, old := pemLocationFiles(t, cp)
	stateDir := t.TempDir()
	rot := pemRotation("order-restart", certPath, keyPath, old)

	r1, _ := newRotator(t, cp, stateDir, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for len(cp.posts(rot.OrderID)) < 3 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel() // the service stops
	}()
	res := r1.Run(ctx, "job-1", rot)
	logSteps(t, res)
	if res.Outcome != protocol.OutcomeFailed || stepNames(res.Steps) != "key:ok csr:ok issued:FAILED" {
		t.Fatalf("stopped run: %s %s", res.Outcome, stepNames(res.Steps))
	}
	if msg := res.Steps[2].Message; !strings.Contains(msg, "the bot stopped") || !strings.Contains(msg, "kept") {
		t.Errorf("message %q", msg)
	}
	kept := keptFile(stateDir, rot.OrderID)
	fi, err := os.Stat(kept)
	if err != nil {
		t.Fatalf("no key kept after the stop: %v", err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("kept key mode %v, want 0600", fi.Mode().Perm())
	}
	keptKey, err := keygen.ParsePEM(readFile(t, kept))
	if err != nil {
		t.Fatal(err)
	}

	cp.mu.Lock()
	cp.PendingForever = false
	cp.mu.Unlock()
	r2, _ := newRotator(t, cp, stateDir, nil, nil) // the restarted bot
	res = r2.Run(context.Background(), "job-1-again", rot)
	logSteps(t, res)
	if res.Outcome != protocol.OutcomeDeployed || stepNames(res.Steps) != "key:ok csr:ok issued:ok prepare:ok backup:ok write:ok verify:ok" {
		t.Fatalf("second run: %s %s", res.Outcome, stepNames(res.Steps))
	}
	if !strings.Contains(res.Steps[0].Message, "made for this order before") {
		t.Errorf("key step %q does not say it used the kept key", res.Steps[0].Message)
	}
	posts := cp.posts(rot.OrderID)
	for i, p := range posts {
		if p != posts[0] {
			t.Fatalf("post %d differs from the first: the CSR changed across the restart", i)
		}
	}
	if cp.issued() != 1 {
		t.Errorf("%d certificates issued for one order", cp.issued())
	}
	written, err := keygen.ParsePEM(readFile(t, keyPath))
	if err != nil {
		t.Fatal(err)
	}
	if !samePublic(written.Public(), keptKey.Public()) || !samePublic(csrOf(t, posts[0]).PublicKey, keptKey.Public()) {
		t.Error("the deployed key is not the key kept across the restart")
	}
	// The old key was PKCS#1 RSA; the new one is ECDSA: PKCS#8.
	if f, _ := keygen.FormatOf(readFile(t, keyPath)); f != keygen.PKCS8 {
		t.Errorf("key form %s", f)
	}
	if _, err := os.Stat(kept); !os.IsNotExist(err) {
		t.Errorf("kept key still there after the rotation ended: %v", err)
	}
}

// TestPendingTimeout: a CA that never answers ends the rotation within
// Timeout, the key kept for the next delivery.
func TestPendingTimeout(t *testing.T) {
	cp := newFakeCP(t)
	cp.PendingForever = true
	certPath, keyPath, old := pemLocationFiles(t, cp)
	stateDir := t.TempDir()
	r, _ := newRotator(t, cp, stateDir, nil, func(c *Config) { c.Timeout = 200 * time.Millisecond })
	res := r.Run(context.Background(), "j", pemRotation("o-timeout", certPath, keyPath, old))
	if res.Outcome != protocol.OutcomeFailed || !strings.Contains(res.Steps[len(res.Steps)-1].Message, "no certificate for order o-timeout within 200ms") {
		t.Fatalf("%s %s: %+v", res.Outcome, stepNames(res.Steps), res.Steps)
	}
	if _, err := os.Stat(keptFile(stateDir, "o-timeout")); err != nil {
		t.Errorf("key not kept: %v", err)
	}
}

// recordingTarget is a deploy kind of the tests: it records the material.
type recordingTarget struct {
	got      *deploy.Material
	onDeploy func()
}

func (rt recordingTarget) Deploy(_ context.Context, m deploy.Material, report func(deploy.Step)) (*deploy.Result, error) {
	*rt.got = m
	if rt.onDeploy != nil {
		rt.onDeploy()
	}
	report(deploy.Step{Name: deploy.StepWrite, OK: true, Message: "recorded", Time: time.Now()})
	return &deploy.Result{Outcome: deploy.OutcomeDeployed}, nil
}

// fakeToken is a TokenKeyMaker whose keys live in memory; it counts the
// signers closed and refuses a PIN other than its own.
type fakeToken struct {
	pin    string
	keys   map[string]crypto.Signer // label → key
	closed atomic.Int32
}

type closingSigner struct {
	crypto.Signer
	closed *atomic.Int32
}

func (c closingSigner) Close() error { c.closed.Add(1); return nil }

func (f *fakeToken) MakeKey(_ context.Context, spec protocol.PKCS11Key, alg string) (crypto.Signer, deploy.TokenKey, error) {
	if spec.PIN.Reveal() != f.pin {
		return nil, deploy.TokenKey{}, errors.New("CKR_PIN_INCORRECT")
	}
	k, err := keygen.Generate(keygen.Algorithm(alg), nil)
	if err != nil {
		return nil, deploy.TokenKey{}, err
	}
	f.keys[spec.Label] = k
	return closingSigner{k, &f.closed}, deploy.TokenKey{Label: spec.Label, ID: "0a0b"}, nil
}

func (f *fakeToken) FindKey(_ context.Context, spec protocol.PKCS11Key) (crypto.Signer, deploy.TokenKey, error) {
	k, ok := f.keys[spec.Label]
	if !ok {
		return nil, deploy.TokenKey{}, errors.New("no such key")
	}
	return closingSigner{k, &f.closed}, deploy.TokenKey{Label: spec.Label, ID: "0a0b"}, nil
}

// TestTokenKey (P3): a key made on a PKCS#11 token reaches the target as
// a reference only; the kept file names it without the PIN, and a restart
// finds it on the token again.
func TestTokenKey(t *testing.T) {
	const pin = "pin-4711-secret"
	cp := newFakeCP(t)
	cp.PendingForever = true
	old := cp.oldLeaf(t, keygen.ECDSAP256, keygen.PKCS8)
	tok := &fakeToken{pin: pin, keys: map[string]crypto.Signer{}}
	var got deploy.Material
	var closedAtDeploy int32
	stateDir := t.TempDir()
	tweak := func(c *Config) {
		c.KeyMaker = tok
		c.Targets = map[string]TargetFactory{protocol.DeployPKCS11: func(protocol.DeploySpec, deploy.Env) (deploy.Target, error) {
			return recordingTarget{&got, func() { closedAtDeploy = tok.closed.Load() }}, nil
		}}
	}
	rot := protocol.Rotation{OrderID: "o-hsm", Action: protocol.ActionRekey, OldCertificate: old.cert.Raw,
		Key: protocol.KeySpec{Where: protocol.KeyWherePKCS11, Algorithm: "ecdsa-p256",
			PKCS11: &protocol.PKCS11Key{Module: "/usr/lib/softhsm/libsofthsm2.so", TokenLabel: "t", PIN: protocol.NewTransitSecret(pin), Label: "web"}},
		CSR:    protocol.CSRSpec{CommonName: "hsm.rotate.test", DNSNames: []string{"hsm.rotate.test"}},
		Deploy: protocol.DeploySpec{Kind: protocol.DeployPKCS11}}

	r1, logs := newRotator(t, cp, stateDir, nil, func(c *Config) { tweak(c); c.Timeout = 100 * time.Millisecond })
	res := r1.Run(context.Background(), "j1", rot)
	if res.Outcome != protocol.OutcomeFailed {
		t.Fatalf("first run %s", res.Outcome)
	}
	kept := string(readFile(t, keptFile(stateDir, "o-hsm")))
	if strings.Contains(kept, pin) || strings.Contains(kept, "PRIVATE KEY") || !strings.Contains(kept, "Label: web") {
		t.Errorf("kept file:\n%s", kept)
	}

	cp.mu.Lock()
	cp.PendingForever = false
	cp.mu.Unlock()
	r2, logs2 := newRotator(t, cp, stateDir, nil, tweak)
	res2 := r2.Run(context.Background(), "j2", rot)
	logSteps(t, res2)
	if res2.Outcome != protocol.OutcomeDeployed || stepNames(res2.Steps) != "key:ok csr:ok issued:ok write:ok" {
		t.Fatalf("second run %s %s", res2.Outcome, stepNames(res2.Steps))
	}
	if got.Key != nil || got.KeyPEM != nil || got.KeyRef == nil || got.KeyRef.Label != "web" || got.KeyRef.ID != "0a0b" {
		t.Errorf("material key %v pem %d ref %+v", got.Key, len(got.KeyPEM), got.KeyRef)
	}
	if !samePublic(got.Certificate.PublicKey, tok.keys["web"].Public()) || cp.issued() != 1 {
		t.Error("the certificate is not for the token's key, or was issued twice")
	}
	if n := tok.closed.Load(); n != 2 || closedAtDeploy != 2 {
		t.Errorf("%d signers closed (%d when the target deployed), want 2: the token's session must be free for the target", n, closedAtDeploy)
	}
	noSecrets(t, res, logs.String(), pin)
	noSecrets(t, res2, logs2.String(), pin)
}

// TestRefusals: what cannot be done fails before any key is made or CSR
// posted, naming the field (or after the key step, for the key).
func TestRefusals(t *testing.T) {
	cp := newFakeCP(t)
	certPath, keyPath, old := pemLocationFiles(t, cp)
	base := pemRotation("o-1", certPath, keyPath, old)
	jks := func(protocol.DeploySpec, deploy.Env) (deploy.Target, error) {
		return recordingTarget{got: &deploy.Material{}}, nil
	}
	tests := []struct {
		name  string
		edit  func(*protocol.Rotation)
		steps string
		want  string
	}{
		{"bad order id", func(r *protocol.Rotation) { r.OrderID = "../etc" }, "prepare:FAILED", `order_id "../etc"`},
		{"bad action", func(r *protocol.Rotation) { r.Action = "burn" }, "prepare:FAILED", `action "burn"`},
		{"bad where", func(r *protocol.Rotation) { r.Key.Where = "cloud" }, "prepare:FAILED", `key.where "cloud"`},
		{"bad algorithm", func(r *protocol.Rotation) { r.Key.Algorithm = "dsa-1024" }, "prepare:FAILED", `key.algorithm "dsa-1024"`},
		{"unknown kind", func(r *protocol.Rotation) { r.Deploy.Kind = "f5" }, "prepare:FAILED", `deploy.kind "f5": this bot deploys to jks, pem only`},
		{"missing cert file", func(r *protocol.Rotation) { r.Deploy.CertPath = filepath.Join(t.TempDir(), "none.pem") }, "prepare:FAILED", "deploy.cert_path"},
		{"bad ip", func(r *protocol.Rotation) { r.CSR = protocol.CSRSpec{CommonName: "x", IPAddresses: []string{"1.2.3"}} }, "key:ok csr:FAILED", `csr.ip_addresses[0] "1.2.3"`},
		{"no pkcs11", func(r *protocol.Rotation) {
			r.Key = protocol.KeySpec{Where: protocol.KeyWherePKCS11, Algorithm: "ecdsa-p256", PKCS11: &protocol.PKCS11Key{Module: "m", Label: "l"}}
		}, "key:FAILED", "no PKCS#11 support in this build"},
		{"existing on jks", func(r *protocol.Rotation) {
			r.Action = protocol.ActionRenew
			r.Deploy = protocol.DeploySpec{Kind: protocol.DeployJKS, KeystorePath: "/ks.jks"}
		}, "key:FAILED", "supported for pem and pkcs11 locations only, not jks"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stateDir := t.TempDir()
			r, _ := newRotator(t, cp, stateDir, nil, func(c *Config) {
				c.Targets = DefaultTargets()
				c.Targets[protocol.DeployJKS] = jks
			})
			rot := base
			tc.edit(&rot)
			res := r.Run(context.Background(), "j", rot)
			if res.Outcome != protocol.OutcomeFailed || stepNames(res.Steps) != tc.steps || !strings.Contains(res.Steps[len(res.Steps)-1].Message, tc.want) {
				t.Errorf("%s %s %+v, want %s %q", res.Outcome, stepNames(res.Steps), res.Steps, tc.steps, tc.want)
			}
			if n := len(cp.posts(rot.OrderID)); n != 0 {
				t.Errorf("%d CSRs posted", n)
			}
		})
	}
}

// TestAllowReload: an argv is allowed only when it matches an entry
// exactly, joined by single spaces (B9).
func TestAllowReload(t *testing.T) {
	allow := AllowReload([]string{"systemctl reload nginx", "/usr/sbin/nginx  -s reload"})
	tests := []struct {
		argv []string
		ok   bool
	}{
		{[]string{"systemctl", "reload", "nginx"}, true},
		{[]string{"/usr/sbin/nginx", "-s", "reload"}, true},
		{[]string{"systemctl", "reload", "nginx", ";", "rm"}, false},
		{[]string{"systemctl", "restart", "nginx"}, false},
		{[]string{"systemctl"}, false},
		{nil, false},
	}
	for _, tc := range tests {
		err := allow(tc.argv)
		if (err == nil) != tc.ok {
			t.Errorf("%q: %v", tc.argv, err)
		}
		if err != nil && !strings.Contains(err.Error(), "emsign-bot configure --allow-reload") {
			t.Errorf("%q: message %v", tc.argv, err)
		}
	}
}

func TestKeystorePasswords(t *testing.T) {
	got := KeystorePasswords([]string{
		"jks:///opt/ks.jks?password=one", "file:///etc/ssl?password=two&password=one",
		"ldap://127.0.0.1:389?bind_dn=cn%3Dx&password=ldap-pw", "tls://127.0.0.1:443", "::bad::",
	})
	var vals []string
	for _, s := range got {
		vals = append(vals, s.Reveal())
	}
	if strings.Join(vals, ",") != "one,two" {
		t.Errorf("passwords %v, want one,two", vals)
	}
}

// TestResolvePEM: key_path "" finds the key in the certificate file
// (HAProxy), else the one file beside it holding it; two candidates or
// none are errors naming key_path.
func TestResolvePEM(t *testing.T) {
	cp := newFakeCP(t)
	old := cp.oldLeaf(t, keygen.ECDSAP256, keygen.SEC1)
	other := cp.oldLeaf(t, keygen.ECDSAP256, keygen.SEC1)
	tests := []struct {
		name    string
		files   map[string][]byte
		want    string // key file found, relative
		wantErr string
	}{
		{"combined", map[string][]byte{"site.pem": append(append([]byte{}, old.certPEM...), old.keyPEM...)}, "site.pem", ""},
		{"beside", map[string][]byte{"c.crt": old.certPEM, "a.key": other.keyPEM, "b.pem": old.keyPEM, "c.txt": old.keyPEM}, "b.pem", ""},
		{"two", map[string][]byte{"c.crt": old.certPEM, "a.key": old.keyPEM, "b.key": old.keyPEM}, "", "all hold the key"},
		{"none", map[string][]byte{"c.crt": old.certPEM, "a.key": other.keyPEM}, "", "set key_path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var cert string
			for name, data := range tc.files {
				writeFile(t, filepath.Join(dir, name), data, 0o600)
				if strings.HasSuffix(name, ".crt") || name == "site.pem" {
					cert = filepath.Join(dir, name)
				}
			}
			loc, err := resolvePEM(protocol.DeploySpec{Kind: protocol.DeployPEM, CertPath: cert})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("%v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || loc.keyPath != filepath.Join(dir, tc.want) || !matches(loc.leaf, loc.key) {
				t.Fatalf("%+v %v, want %s", loc, err, tc.want)
			}
		})
	}
}
