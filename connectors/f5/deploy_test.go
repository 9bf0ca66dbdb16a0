package f5

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/agent/deploy"
	fakef5 "github.com/emsign/bot/internal/fakes/f5"
	"github.com/emsign/bot/protocol"
)

// deployNow names the new objects: /Common/site_ssl-emsign-20261125070000.
var deployNow = time.Date(2026, 11, 25, 7, 0, 0, 0, time.UTC)

const (
	siteProfile = "/Common/site_ssl"
	newBase     = "/Common/site_ssl-emsign-20261125070000"
	uploadBase  = "/mgmt/shared/file-transfer/uploads/site_ssl-emsign-20261125070000"
)

// issue makes a leaf (and its CA) to deploy.
func issue(t *testing.T, name string) deploy.Material {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Deploy CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	return deploy.Material{Certificate: leaf, Chain: []*x509.Certificate{ca}, Key: key,
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})}
}

// serve serves m's certificate over TLS on 127.0.0.1 (a virtual server).
func serve(t *testing.T, m deploy.Material) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{m.Certificate.Raw}, PrivateKey: m.Key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func f5Spec(f *fakef5.Fake, object string, verify ...string) protocol.DeploySpec {
	s := protocol.DeploySpec{Kind: protocol.DeployF5, Object: object, VerifyTimeout: protocol.Duration(600 * time.Millisecond),
		Target: "f5://" + f.Host() + "?user=" + fakef5.User + "&password=" + url.QueryEscape(fakef5.Password) + "&ca_file=" + url.QueryEscape(f.CAFile())}
	for _, a := range verify {
		s.Verify = append(s.Verify, protocol.VerifyEndpoint{Address: a})
	}
	return s
}

// writes are the requests that change the device, in order.
func writes(f *fakef5.Fake) []string {
	var out []string
	for _, r := range f.Requests() {
		if !strings.HasPrefix(r, "GET ") && !strings.HasPrefix(r, "POST /mgmt/shared/authn/login") {
			out = append(out, r)
		}
	}
	return out
}

var (
	switchWrites = []string{
		"POST " + uploadBase + ".crt", "POST " + uploadBase + ".key", "POST " + uploadBase + "-chain.crt",
		"POST /mgmt/tm/sys/crypto/cert", "POST /mgmt/tm/sys/crypto/key", "POST /mgmt/tm/sys/crypto/cert",
		"POST /mgmt/tm/util/unix-rm", "POST /mgmt/tm/util/unix-rm", "POST /mgmt/tm/util/unix-rm",
		"PATCH /mgmt/tm/ltm/profile/client-ssl/~Common~site_ssl", "POST /mgmt/tm/sys/config",
	}
	deleteNew = []string{
		"DELETE /mgmt/tm/sys/file/ssl-cert/~Common~site_ssl-emsign-20261125070000-chain",
		"DELETE /mgmt/tm/sys/file/ssl-key/~Common~site_ssl-emsign-20261125070000",
		"DELETE /mgmt/tm/sys/file/ssl-cert/~Common~site_ssl-emsign-20261125070000",
		"POST /mgmt/tm/sys/config",
	}
)

// P8: F5 BIG-IP: upload, install, switch the client-ssl profile; roll back
// by switching back and deleting the new objects.
func TestDeployF5_P8(t *testing.T) {
	oldChain := []fakef5.CertKeyChain{{Name: "site_ecdsa", Cert: "/Common/site.crt", Key: "/Common/site.key", Chain: "/Common/bundle.crt"}}
	newChain := []fakef5.CertKeyChain{{Name: "site_ecdsa", Cert: newBase, Key: newBase, Chain: newBase + "-chain"}}
	type tc struct {
		name      string
		object    string
		fault     map[string]fakef5.Fault
		mat       func(t *testing.T) deploy.Material
		verify    func(t *testing.T, m deploy.Material) []string
		outcome   string
		errIs     error
		steps     []string
		writes    []string
		profile   []fakef5.CertKeyChain
		installed []string
		msg       string
	}
	good := func(t *testing.T) deploy.Material { return issue(t, "www.example.com") }
	self := func(t *testing.T, m deploy.Material) []string { return []string{serve(t, m)} }
	other := func(t *testing.T, _ deploy.Material) []string { return []string{serve(t, good(t))} }
	installedNew := []string{"cert " + newBase, "cert " + newBase + "-chain", "key " + newBase}
	for _, c := range []tc{
		{name: "switch the profile, endpoint verified", object: siteProfile, mat: good, verify: self,
			outcome: deploy.OutcomeDeployed, steps: []string{"prepare", "backup", "write", "verify", "verify"},
			writes: switchWrites, profile: newChain, installed: installedNew},
		{name: "CERT#PROFILE names the entry", object: "/Common/site.crt#" + siteProfile, mat: good,
			outcome: deploy.OutcomeDeployed, steps: []string{"prepare", "backup", "write", "verify"},
			writes: switchWrites, profile: newChain, installed: installedNew},
		{name: "profile switch refused (400): new objects deleted", object: siteProfile, mat: good,
			fault:   map[string]fakef5.Fault{"/mgmt/tm/ltm/profile/client-ssl/~Common~site_ssl": {Status: 400, Method: http.MethodPatch}},
			outcome: deploy.OutcomeRolledBack, errIs: deploy.ErrRolledBack, steps: []string{"prepare", "backup", "write", "rollback"},
			writes: append(slices.Clone(switchWrites[:10]), deleteNew...), profile: oldChain, msg: "nothing was switched; 3 new objects deleted"},
		{name: "endpoint keeps the old certificate: switched back", object: siteProfile, mat: good, verify: other,
			outcome: deploy.OutcomeRolledBack, errIs: deploy.ErrRolledBack, steps: []string{"prepare", "backup", "write", "verify", "verify", "rollback"},
			writes:  append(append(slices.Clone(switchWrites), "PATCH /mgmt/tm/ltm/profile/client-ssl/~Common~site_ssl"), deleteNew...),
			profile: oldChain, msg: "uses cert /Common/site.crt, key /Common/site.key again; 3 new objects deleted"},
		{name: "key install fails: the certificate goes again", object: siteProfile, mat: good,
			fault:   map[string]fakef5.Fault{"/mgmt/tm/sys/crypto/key": {Status: 400}},
			outcome: deploy.OutcomeRolledBack, errIs: deploy.ErrRolledBack, steps: []string{"prepare", "backup", "write", "rollback"},
			writes: append(slices.Clone(switchWrites[:5]), "POST /mgmt/tm/util/unix-rm", "POST /mgmt/tm/util/unix-rm", "POST /mgmt/tm/util/unix-rm",
				"DELETE /mgmt/tm/sys/file/ssl-cert/~Common~site_ssl-emsign-20261125070000", "POST /mgmt/tm/sys/config"),
			profile: oldChain, msg: "1 new objects deleted"},
		{name: "upload fails: nothing installed", object: siteProfile, mat: good,
			fault:   map[string]fakef5.Fault{uploadBase + ".key": {Status: 403}},
			outcome: deploy.OutcomeFailed, steps: []string{"prepare", "backup", "write"},
			writes:  []string{"POST " + uploadBase + ".crt", "POST " + uploadBase + ".key", "POST /mgmt/tm/util/unix-rm"},
			profile: oldChain, msg: "login as admin: 403"},
		{name: "unknown profile refused", object: "/Common/nope", mat: good, outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused,
			steps: []string{"prepare"}, msg: "client-ssl profile /Common/nope not found"},
		{name: "certificate not in the profile refused", object: "/Common/other.crt#" + siteProfile, mat: good,
			outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused, steps: []string{"prepare"}, profile: oldChain,
			msg: "does not use certificate /Common/other.crt"},
		{name: "key on a token refused", object: siteProfile, outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused,
			mat: func(t *testing.T) deploy.Material {
				m := good(t)
				m.Key, m.KeyPEM, m.KeyRef = nil, nil, &deploy.TokenKey{Label: "web"}
				return m
			}, steps: []string{"prepare"}, profile: oldChain, msg: "not in software"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := fakef5.Start(t)
			for path, ft := range c.fault {
				f.SetFault(path, ft)
			}
			m := c.mat(t)
			var verify []string
			if c.verify != nil {
				verify = c.verify(t, m)
			}
			tgt, err := NewDeployerConfig(f5Spec(f, c.object, verify...),
				deploy.Env{BackupDir: t.TempDir(), Now: func() time.Time { return deployNow }}, Config{RetryBackoff: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			res, err := tgt.Deploy(context.Background(), m, nil)
			if res.Outcome != c.outcome {
				t.Fatalf("outcome %s, want %s (err %v, steps %+v)", res.Outcome, c.outcome, err, res.Steps)
			}
			if (err == nil) != (c.outcome == deploy.OutcomeDeployed) || (c.errIs != nil && !errors.Is(err, c.errIs)) {
				t.Fatalf("err %v, want errors.Is %v", err, c.errIs)
			}
			var names []string
			for _, s := range res.Steps {
				names = append(names, s.Name)
			}
			if !slices.Equal(names, c.steps) {
				t.Errorf("steps %v, want %v", names, c.steps)
			}
			if got := writes(f); !slices.Equal(got, c.writes) {
				t.Errorf("the device saw\n%q\nwant\n%q", got, c.writes)
			}
			if c.profile != nil {
				if got := f.Profile(siteProfile); !slices.Equal(got, c.profile) {
					t.Errorf("profile %+v, want %+v", got, c.profile)
				}
			}
			if got := f.Installed(); !slices.Equal(got, c.installed) {
				t.Errorf("installed %q, want %q", got, c.installed)
			}
			if got := f.Uploads(); len(got) > 0 {
				t.Errorf("uploaded files left on the device: %q", got)
			}
			if c.outcome == deploy.OutcomeDeployed {
				if got := f.CertPEM(newBase); got != string(m.CertPEM()) {
					t.Errorf("the new certificate object holds %q", got)
				}
				b, err := os.ReadFile(filepath.Join(res.BackupDir, "profile.json"))
				if err != nil || !strings.Contains(string(b), "/Common/site.crt") {
					t.Errorf("backup profile.json: %v %s", err, b)
				}
			}
			last := res.Steps[len(res.Steps)-1]
			if !strings.Contains(last.Message, c.msg) {
				t.Errorf("last step %q does not say %q", last.Message, c.msg)
			}
			text := ""
			if err != nil {
				text = err.Error()
			}
			for _, s := range res.Steps {
				text += "\n" + s.Message
			}
			for _, secret := range []string{fakef5.Password, fakef5.Token, "PRIVATE KEY"} {
				if strings.Contains(text, secret) {
					t.Errorf("%q leaked into the steps or the error:\n%s", secret, text)
				}
			}
		})
	}
}

// P8: the same certificate deployed again is only verified.
func TestDeployF5AlreadyDeployed_P8(t *testing.T) {
	f := fakef5.Start(t)
	m := issue(t, "www.example.com")
	for i, want := range []string{deploy.OutcomeDeployed, deploy.OutcomeAlreadyDeployed} {
		now := deployNow.Add(time.Duration(i) * time.Minute)
		tgt, err := NewDeployerConfig(f5Spec(f, siteProfile), deploy.Env{BackupDir: t.TempDir(), Now: func() time.Time { return now }}, Config{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := tgt.Deploy(context.Background(), m, nil)
		if err != nil || res.Outcome != want {
			t.Fatalf("run %d: %s, %v; want %s", i+1, res.Outcome, err, want)
		}
	}
	if got := f.Installed(); len(got) != 3 {
		t.Errorf("installed %q, want one cert, chain and key", got)
	}
}

func TestNewDeployerF5Validates(t *testing.T) {
	good := protocol.DeploySpec{Kind: protocol.DeployF5, Target: "f5://bigip.example:443?user=admin&password=pw", Object: siteProfile}
	for _, c := range []struct {
		name string
		edit func(*protocol.DeploySpec, *deploy.Env)
		want string
	}{
		{"valid", func(*protocol.DeploySpec, *deploy.Env) {}, ""},
		{"contract form", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Object = "/Common/site.crt#/Common/site_ssl" }, ""},
		{"kind", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Kind = protocol.DeployACM }, "is not f5"},
		{"scheme", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Target = "aws://eu-west-1" }, "scheme"},
		{"object not a full path", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Object = "site_ssl" }, "full path"},
		{"object with a shell character", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Object = "/Common/a;b" }, "segment"},
		{"bad certificate", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Object = "x#/Common/site_ssl" }, "certificate \"x\""},
		{"reload", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Reload = []string{"tmsh"} }, "reload"},
		{"backup", func(_ *protocol.DeploySpec, e *deploy.Env) { e.BackupDir = "" }, "absolute"},
		{"verify", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Verify = []protocol.VerifyEndpoint{{Address: ":443"}} }, "verify[0]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, e := good, deploy.Env{BackupDir: "/var/lib/emsign/backups"}
			c.edit(&s, &e)
			_, err := NewDeployer(s, e)
			if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
			if err != nil && (strings.Contains(err.Error(), "pw") || !strings.HasPrefix(err.Error(), "f5: ")) {
				t.Errorf("error %q: want the f5: prefix and no secret", err)
			}
		})
	}
}
