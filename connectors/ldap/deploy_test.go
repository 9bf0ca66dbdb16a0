package ldap

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/internal/testsvc"
	"github.com/emsign/bot/protocol"
)

// deployCert makes a self-signed certificate for cn (and dns names).
func deployCert(t *testing.T, cn string, dns ...string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), DNSNames: dns}
	if cn != "" {
		tmpl.Subject = pkix.Name{CommonName: cn, Organization: []string{"Example"}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// attrValues reads an attribute afresh, as the root DN.
func attrValues(t *testing.T, s *testsvc.Slapd, dn, attr string) [][]byte {
	t.Helper()
	c, err := goldap.DialURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(s.RootDN, s.RootPW); err != nil {
		t.Fatal(err)
	}
	res, err := c.Search(goldap.NewSearchRequest(dn, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{attr}, nil))
	if err != nil {
		t.Fatalf("search %s: %v", dn, err)
	}
	var out [][]byte
	for _, a := range res.Entries[0].Attributes {
		out = append(out, a.ByteValues...)
	}
	return out
}

func holds(vals [][]byte, der []byte) bool {
	return slices.ContainsFunc(vals, func(v []byte) bool { return bytes.Equal(v, der) })
}

func ldapTarget(s *testsvc.Slapd, bindDN, pw string) string {
	return s.URL() + "/" + testsvc.Suffix + "?bind_dn=" + url.QueryEscape(bindDN) + "&password=" + url.QueryEscape(pw)
}

func stepLine(steps []deploy.Step) string {
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

// TestDeployLDAP deploys to a real slapd (P8): the value for the same
// subject is replaced, an unrelated certificate in the same multi-valued
// attribute is kept; failures change nothing or are rolled back.
func TestDeployLDAP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts slapd")
	}
	s := testsvc.StartSlapd(t)
	const readerPW = "R3ader-only_pw9"
	s.Add("cn=reader,"+testsvc.Suffix, map[string][]string{"objectClass": {"person"}, "cn": {"reader"}, "sn": {"reader"}, "userPassword": {readerPW}})
	ou := s.AddOU("servers", testsvc.Suffix)
	const attr = "userCertificate;binary"

	cases := []struct {
		name    string
		bindDN  string
		pw      string
		object  func(dn string) string
		hook    func(t *testing.T, dn string, nw *x509.Certificate) func(context.Context)
		newCN   string
		outcome string
		errIs   error
		steps   string
		errHas  string
		// after says what the entry holds after the deployment.
		after string // "new" or "old"
	}{
		{name: "rotate", bindDN: s.RootDN, pw: s.RootPW, newCN: "web.example.com", outcome: deploy.OutcomeDeployed,
			steps: "prepare:ok backup:ok write:ok verify:ok", after: "new"},
		{name: "write refused by the server", bindDN: "cn=reader," + testsvc.Suffix, pw: readerPW, newCN: "web.example.com",
			outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused, steps: "prepare:ok backup:ok write:fail",
			errHas: "insufficient access", after: "old"},
		{name: "second writer before verify", bindDN: s.RootDN, pw: s.RootPW, newCN: "web.example.com",
			hook: func(t *testing.T, dn string, _ *x509.Certificate) func(context.Context) {
				stray := deployCert(t, "stray.example.com")
				return func(context.Context) {
					c, err := goldap.DialURL(s.URL())
					if err != nil {
						t.Error(err)
						return
					}
					defer c.Close()
					if err := c.Bind(s.RootDN, s.RootPW); err != nil {
						t.Error(err)
						return
					}
					req := goldap.NewModifyRequest(dn, nil)
					req.Add(attr, []string{string(stray.Raw)})
					if err := c.Modify(req); err != nil {
						t.Error(err)
					}
				}
			},
			outcome: deploy.OutcomeRolledBack, errIs: deploy.ErrRolledBack, steps: "prepare:ok backup:ok write:ok verify:fail rollback:ok",
			errHas: "not expected are there", after: "old"},
		{name: "wrong DN", bindDN: s.RootDN, pw: s.RootPW, newCN: "web.example.com",
			object:  func(string) string { return "cn=nosuch," + ou + "#" + attr },
			outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused, steps: "prepare:fail", errHas: "entry cn=nosuch," + ou + " does not exist", after: "old"},
		{name: "attribute missing", bindDN: s.RootDN, pw: s.RootPW, newCN: "web.example.com",
			object:  func(dn string) string { return dn + "#cACertificate;binary" },
			outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused, steps: "prepare:fail", errHas: "has no cACertificate;binary value", after: "old"},
		{name: "no value for the subject", bindDN: s.RootDN, pw: s.RootPW, newCN: "elsewhere.example.com",
			outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused, steps: "prepare:fail", errHas: "refusing to add one without replacing", after: "old"},
		{name: "wrong password", bindDN: s.RootDN, pw: "Wr0ng-pw_Secret", newCN: "web.example.com",
			outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused, steps: "prepare:fail", errHas: "invalid credentials", after: "old"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			old := deployCert(t, "web.example.com", "web.example.com")
			other := deployCert(t, "other.example.com")
			dn := s.AddUser("web"+string(rune('a'+i)), ou, old.Raw, other.Raw)
			nw := deployCert(t, c.newCN, "web.example.com")
			spec := protocol.DeploySpec{Kind: protocol.DeployLDAP, Target: ldapTarget(s, c.bindDN, c.pw), Object: dn + "#" + attr}
			if c.object != nil {
				spec.Object = c.object(dn)
			}
			var logs bytes.Buffer
			backups := filepath.Join(t.TempDir(), "backups")
			tg, err := NewDeployer(spec, deploy.Env{BackupDir: backups, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			if err != nil {
				t.Fatal(err)
			}
			if c.hook != nil {
				tg.(*Deployer).afterWrite = c.hook(t, dn, nw)
			}
			var steps []deploy.Step
			res, err := tg.Deploy(context.Background(), deploy.Material{Certificate: nw}, func(s deploy.Step) { steps = append(steps, s) })
			for _, s := range steps {
				t.Logf("%s ok=%v: %s", s.Name, s.OK, s.Message)
			}
			if res.Outcome != c.outcome || (c.errIs == nil) != (err == nil) || (c.errIs != nil && !errors.Is(err, c.errIs)) {
				t.Fatalf("outcome %s, err %v; want %s, %v", res.Outcome, err, c.outcome, c.errIs)
			}
			if got := stepLine(steps); got != c.steps || !slices.Equal(res.Steps, steps) {
				t.Errorf("steps %s, want %s", got, c.steps)
			}
			if c.errHas != "" && !strings.Contains(err.Error(), c.errHas) {
				t.Errorf("error %q does not say %q", err, c.errHas)
			}
			// Secrets never leave (S: no password in steps, errors, logs).
			text := logs.String() + res.Steps[len(res.Steps)-1].Message
			if err != nil {
				text += err.Error()
			}
			for _, s := range res.Steps {
				text += s.Message
			}
			if strings.Contains(text, c.pw) {
				t.Errorf("the password leaked: %s", text)
			}

			vals := attrValues(t, s, dn, attr)
			if !holds(vals, other.Raw) {
				t.Error("the unrelated certificate is gone")
			}
			switch c.after {
			case "new":
				if !holds(vals, nw.Raw) || holds(vals, old.Raw) || len(vals) != 2 {
					t.Errorf("after: new %v, old %v, %d values", holds(vals, nw.Raw), holds(vals, old.Raw), len(vals))
				}
			case "old":
				if holds(vals, nw.Raw) || !holds(vals, old.Raw) {
					t.Errorf("after: new %v, old %v", holds(vals, nw.Raw), holds(vals, old.Raw))
				}
			}
			if res.BackupDir != "" {
				checkBackup(t, res.BackupDir, old, other)
			} else if strings.Contains(c.steps, "backup:ok") {
				t.Error("no backup dir in the result")
			}
			if c.name != "rotate" {
				return
			}
			if res.Fingerprint != deploy.Fingerprint(nw) || res.OldFingerprint != deploy.Fingerprint(old) {
				t.Errorf("fingerprints %s %s", res.Fingerprint, res.OldFingerprint)
			}
			// Delivered again: already deployed, only verified.
			steps = nil
			res, err = tg.Deploy(context.Background(), deploy.Material{Certificate: nw}, func(s deploy.Step) { steps = append(steps, s) })
			if err != nil || res.Outcome != deploy.OutcomeAlreadyDeployed || stepLine(steps) != "prepare:ok verify:ok" || res.BackupDir != "" {
				t.Fatalf("again: %s %v %s", res.Outcome, err, stepLine(steps))
			}
		})
	}
}

// checkBackup reads the backup JSON: every old value, base64 DER, and the
// replaced one.
func checkBackup(t *testing.T, dir string, old, other *x509.Certificate) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "ldap-*.json"))
	if len(files) != 1 {
		t.Fatalf("backup files %v", files)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var b backupFile
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	enc := base64.StdEncoding.EncodeToString
	if !slices.Contains(b.Values, enc(old.Raw)) || !slices.Contains(b.Values, enc(other.Raw)) || !slices.Equal(b.Replaced, []string{enc(old.Raw)}) {
		t.Errorf("backup holds %d values, replaced %d", len(b.Values), len(b.Replaced))
	}
	if fi, err := os.Stat(files[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %v %v", fi.Mode(), err)
	}
}

// TestNewDeployerLDAP checks the spec before any I/O (P8).
func TestNewDeployerLDAP(t *testing.T) {
	const target = "ldap://127.0.0.1:3890/dc=example,dc=com?bind_dn=cn%3Dadmin%2Cdc%3Dexample%2Cdc%3Dcom&password=pw"
	env := deploy.Env{BackupDir: "/var/lib/emsign-bot/backups"}
	cases := []struct {
		name   string
		spec   protocol.DeploySpec
		env    *deploy.Env
		errHas string
	}{
		{"good", protocol.DeploySpec{Kind: "ldap", Target: target, Object: "cn=web,ou=servers,dc=example,dc=com#userCertificate;binary"}, nil, ""},
		{"hash in the DN", protocol.DeploySpec{Target: target, Object: `cn=#04024869,dc=example,dc=com#cACertificate`}, nil, ""},
		{"no attribute", protocol.DeploySpec{Target: target, Object: "cn=web,dc=example,dc=com"}, nil, "want ENTRY-DN#ATTRIBUTE"},
		{"bad DN", protocol.DeploySpec{Target: target, Object: "web#userCertificate"}, nil, `entry DN "web"`},
		{"not a certificate attribute", protocol.DeploySpec{Target: target, Object: "cn=web,dc=example,dc=com#crossCertificatePair"}, nil, "want userCertificate or cACertificate"},
		{"reload", protocol.DeploySpec{Target: target, Object: "cn=web,dc=example,dc=com#userCertificate", Reload: []string{"true"}}, nil, "reload: not supported"},
		{"ssh target", protocol.DeploySpec{Target: "ssh://u@h/x?password=p&insecure_host_key=true", Object: "cn=web,dc=example,dc=com#userCertificate"}, nil, "want ldap or ldaps"},
		{"kind", protocol.DeploySpec{Kind: "pem", Target: target, Object: "cn=web,dc=example,dc=com#userCertificate"}, nil, `kind "pem"`},
		{"no backup dir", protocol.DeploySpec{Target: target, Object: "cn=web,dc=example,dc=com#userCertificate"}, &deploy.Env{}, "backup dir"},
		{"verify address", protocol.DeploySpec{Target: target, Object: "cn=web,dc=example,dc=com#userCertificate", Verify: []protocol.VerifyEndpoint{{Address: "x"}}}, nil, `verify[0] address "x"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := env
			if c.env != nil {
				e = *c.env
			}
			_, err := NewDeployer(c.spec, e)
			if (err == nil) != (c.errHas == "") || (err != nil && !strings.Contains(err.Error(), c.errHas)) {
				t.Fatalf("err %v, want %q", err, c.errHas)
			}
			if err != nil && strings.Contains(err.Error(), "password=pw") {
				t.Errorf("the password leaked: %v", err)
			}
		})
	}
}

// TestDeployObject maps a discovered location to the spec's object.
func TestDeployObject(t *testing.T) {
	loc, err := protocol.ParseLocation("ldap://dc1.example.com/cn=web01,ou=Servers,dc=example,dc=com?userCertificate;binary#0")
	if err != nil {
		t.Fatal(err)
	}
	got, err := DeployObject(loc)
	if err != nil || got != "cn=web01,ou=Servers,dc=example,dc=com#userCertificate;binary" {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := DeployObject(protocol.Location{Scheme: "file", Path: "/x"}); err == nil {
		t.Error("a file location gave an object")
	}
}

// TestSameIdentity is the rule for which values are replaced.
func TestSameIdentity(t *testing.T) {
	a := deployCert(t, "web.example.com", "web.example.com")
	cases := []struct {
		name string
		b    *x509.Certificate
		want bool
	}{
		{"same subject", deployCert(t, "web.example.com"), true},
		{"other subject", deployCert(t, "other.example.com", "web.example.com"), false},
		{"no subject, same names", deployCert(t, "", "web.example.com"), true},
		{"no subject, other names", deployCert(t, "", "web.example.com", "www.example.com"), false},
	}
	for _, c := range cases {
		if got := sameIdentity(a, c.b); got != c.want {
			t.Errorf("%s: %v", c.name, got)
		}
	}
}
