package aws

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
	awsfake "github.com/emsign/bot/internal/fakes/aws"
	"github.com/emsign/bot/protocol"
)

const (
	importedARN = "arn:aws:acm:eu-west-1:123456789012:certificate/22222222-2222-2222-2222-222222222222"
	amazonARN   = "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-1111-1111-1111-111111111111"
	missingARN  = "arn:aws:acm:eu-west-1:123456789012:certificate/99999999-9999-9999-9999-999999999999"
)

// testCA issues the certificates a deployment test deploys.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Deploy Test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key}
}

// material issues a leaf for names, valid from notBefore for a day.
func (ca *testCA) material(t *testing.T, notBefore time.Time, names ...string) deploy.Material {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: notBefore, NotAfter: notBefore.Add(24 * time.Hour).Truncate(time.Second)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	return deploy.Material{Certificate: c, Chain: []*x509.Certificate{ca.cert}, Key: key,
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})}
}

// serveTLS serves m's certificate on 127.0.0.1 until the test ends.
func serveTLS(t *testing.T, m deploy.Material) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{m.Certificate.Raw}, PrivateKey: m.Key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func deploySpec(f *awsfake.Fake, arn string, verify ...string) protocol.DeploySpec {
	q := url.Values{"access_key": {awsfake.AccessKey}, "secret_key": {awsfake.Secret}, "endpoint": {f.URL()}}
	spec := protocol.DeploySpec{Kind: protocol.DeployACM, Target: "aws://eu-west-1?" + q.Encode(), Object: arn,
		VerifyTimeout: protocol.Duration(700 * time.Millisecond)}
	for _, a := range verify {
		spec.Verify = append(spec.Verify, protocol.VerifyEndpoint{Address: a})
	}
	return spec
}

func names(steps []deploy.Step) []string {
	var out []string
	for _, s := range steps {
		out = append(out, s.Name)
	}
	return out
}

// P8: ACM re-import to the same ARN, against the fake ACM through the SDK.
func TestDeployACM_P8(t *testing.T) {
	newSource(t, 1) // sets the environment the SDK must not read from
	ca := newTestCA(t)
	now := time.Now().Add(-time.Minute)
	type tc struct {
		name    string
		arn     string
		mat     func(t *testing.T) deploy.Material
		verify  func(t *testing.T, m deploy.Material) []string
		outcome string
		errIs   error
		steps   []string
		ops     []string // the ACM requests, in order
		msg     string   // in the last step's message
		holds   bool     // ACM holds the new certificate at the end
	}
	good := func(t *testing.T) deploy.Material { return ca.material(t, now, "api.example.com") }
	self := func(t *testing.T, m deploy.Material) []string { return []string{serveTLS(t, m)} }
	other := func(t *testing.T, _ deploy.Material) []string { return []string{serveTLS(t, good(t))} }
	describeGet := []string{"DescribeCertificate " + importedARN, "GetCertificate " + importedARN}
	for _, c := range []tc{
		{name: "re-import over the same ARN, endpoint verified", arn: importedARN, mat: good, verify: self,
			outcome: deploy.OutcomeDeployed, steps: []string{"prepare", "backup", "write", "verify", "verify"},
			ops: append(slices.Clone(describeGet), "ImportCertificate "+importedARN, "DescribeCertificate "+importedARN), holds: true},
		{name: "re-import without endpoints", arn: importedARN, mat: good,
			outcome: deploy.OutcomeDeployed, steps: []string{"prepare", "backup", "write", "verify"},
			ops: append(slices.Clone(describeGet), "ImportCertificate "+importedARN, "DescribeCertificate "+importedARN), holds: true},
		{name: "AMAZON_ISSUED refused", arn: amazonARN, mat: good, outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused,
			steps: []string{"prepare"}, ops: []string{"DescribeCertificate " + amazonARN}, msg: "AMAZON_ISSUED, not IMPORTED"},
		{name: "unknown ARN refused", arn: missingARN, mat: good, outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused,
			steps: []string{"prepare"}, ops: []string{"DescribeCertificate " + missingARN}, msg: "ResourceNotFoundException"},
		{name: "key on a token refused before any request", arn: importedARN, outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused,
			mat: func(t *testing.T) deploy.Material {
				m := good(t)
				m.Key, m.KeyPEM, m.KeyRef = nil, nil, &deploy.TokenKey{Label: "web"}
				return m
			}, steps: []string{"prepare"}, msg: "not in software"},
		{name: "ACM refuses the import: nothing changed", arn: importedARN, outcome: deploy.OutcomeFailed,
			mat: func(t *testing.T) deploy.Material {
				return ca.material(t, time.Now().Add(time.Hour), "api.example.com")
			},
			steps: []string{"prepare", "backup", "write"},
			ops:   append(slices.Clone(describeGet), "ImportCertificate "+importedARN, "DescribeCertificate "+importedARN),
			msg:   "not valid at the current time"},
		{name: "endpoint keeps the old certificate: no rollback possible", arn: importedARN, mat: good, verify: other,
			outcome: deploy.OutcomeRollbackFailed, errIs: deploy.ErrRollbackFailed,
			steps: []string{"prepare", "backup", "write", "verify", "verify", "rollback"},
			ops:   append(slices.Clone(describeGet), "ImportCertificate "+importedARN, "DescribeCertificate "+importedARN),
			msg:   "ACM keeps no private key", holds: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := awsfake.Start(t, 2)
			oldLeaf, _ := f.Current(c.arn)
			m := c.mat(t)
			var verify []string
			if c.verify != nil {
				verify = c.verify(t, m)
			}
			backups := t.TempDir()
			tgt, err := NewDeployer(deploySpec(f, c.arn, verify...), deploy.Env{BackupDir: backups})
			if err != nil {
				t.Fatal(err)
			}
			var reported []deploy.Step
			res, err := tgt.Deploy(context.Background(), m, func(s deploy.Step) { reported = append(reported, s) })
			if res.Outcome != c.outcome {
				t.Fatalf("outcome %s, want %s (err %v, steps %+v)", res.Outcome, c.outcome, err, res.Steps)
			}
			if (err == nil) != (c.outcome == deploy.OutcomeDeployed) || (c.errIs != nil && !errors.Is(err, c.errIs)) {
				t.Fatalf("err %v, want errors.Is %v", err, c.errIs)
			}
			if got := names(res.Steps); !slices.Equal(got, c.steps) || len(reported) != len(res.Steps) {
				t.Errorf("steps %v (%d reported), want %v", got, len(reported), c.steps)
			}
			if got := f.Operations(); !slices.Equal(got, c.ops) {
				t.Errorf("ACM saw %q\nwant %q", got, c.ops)
			}
			last := res.Steps[len(res.Steps)-1]
			if !strings.Contains(last.Message, c.msg) {
				t.Errorf("last step %q does not say %q", last.Message, c.msg)
			}
			leaf, chain := f.Current(c.arn)
			newPEM := string(m.CertPEM())
			if c.holds != (leaf == newPEM) || (!c.holds && leaf != oldLeaf) {
				t.Errorf("ACM holds the new certificate: %v, want %v", leaf == newPEM, c.holds)
			}
			if c.holds && chain != string(m.ChainPEM()) {
				t.Errorf("ACM chain %q, want the material's chain", chain)
			}
			if slices.Contains(c.steps, "backup") {
				got, err := os.ReadFile(filepath.Join(res.BackupDir, "certificate.pem"))
				if err != nil || string(got) != oldLeaf {
					t.Errorf("backup certificate.pem: %v (matches old: %v)", err, string(got) == oldLeaf)
				}
			}
			// Credentials never in a step or an error.
			text := ""
			if err != nil {
				text = err.Error()
			}
			for _, s := range res.Steps {
				text += "\n" + s.Message
			}
			if strings.Contains(text, awsfake.Secret) || strings.Contains(text, "PRIVATE KEY") {
				t.Errorf("a secret leaked into the steps or the error:\n%s", text)
			}
		})
	}
}

// P8: a rotation delivered twice imports once; the second run only verifies.
func TestDeployACMAlreadyDeployed_P8(t *testing.T) {
	newSource(t, 1)
	f := awsfake.Start(t, 2)
	m := newTestCA(t).material(t, time.Now().Add(-time.Minute), "api.example.com")
	for i, want := range []string{deploy.OutcomeDeployed, deploy.OutcomeAlreadyDeployed} {
		tgt, err := NewDeployer(deploySpec(f, importedARN), deploy.Env{BackupDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		res, err := tgt.Deploy(context.Background(), m, nil)
		if err != nil || res.Outcome != want {
			t.Fatalf("run %d: %s, %v; want %s", i+1, res.Outcome, err, want)
		}
	}
	if n := len(f.Imports()); n != 1 {
		t.Errorf("%d imports, want 1", n)
	}
}

func TestNewDeployerACMValidates(t *testing.T) {
	good := protocol.DeploySpec{Kind: protocol.DeployACM, Target: "aws://eu-west-1?access_key=A&secret_key=B", Object: importedARN}
	env := deploy.Env{BackupDir: "/var/lib/emsign/backups"}
	for _, c := range []struct {
		name string
		edit func(*protocol.DeploySpec, *deploy.Env)
		want string
	}{
		{"valid", func(*protocol.DeploySpec, *deploy.Env) {}, ""},
		{"kind", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Kind = protocol.DeployF5 }, "is not aws-acm"},
		{"target scheme", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Target = "f5://h?user=u&password=p" }, "scheme"},
		{"no target", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Target = "" }, "target is empty"},
		{"object not an ARN", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Object = "www.example.com" }, "not an ACM certificate ARN"},
		{"IAM ARN", func(s *protocol.DeploySpec, _ *deploy.Env) {
			s.Object = "arn:aws:iam::123456789012:server-certificate/web"
		}, "not an ACM certificate ARN"},
		{"reload", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Reload = []string{"true"} }, "reload"},
		{"relative backup", func(_ *protocol.DeploySpec, e *deploy.Env) { e.BackupDir = "backups" }, "absolute"},
		{"verify address", func(s *protocol.DeploySpec, _ *deploy.Env) {
			s.Verify = []protocol.VerifyEndpoint{{Address: "nohost"}}
		}, "verify[0].address"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, e := good, env
			c.edit(&s, &e)
			_, err := NewDeployer(s, e)
			if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
			if err != nil && (strings.Contains(err.Error(), "=B") || !strings.HasPrefix(err.Error(), "aws: ")) {
				t.Errorf("error %q: want the aws: prefix and no secret", err)
			}
		})
	}
}
