package cloudflare

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
	fake "github.com/emsign/bot/internal/fakes/cloudflare"
	"github.com/emsign/bot/protocol"
)

// customID is the active custom certificate of the testdata, for
// www.example.com and example.com.
const customID = "2458ce5a0c1c4d7f8a6e1b2c3d4e5f60"

// issueFor makes a leaf for names under a CA of its own, and the CA.
func issueFor(t *testing.T, names ...string) deploy.Material {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Deploy CA", Organization: []string{"emSign Test"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour).Truncate(time.Second)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	return deploy.Material{Certificate: leaf, Chain: []*x509.Certificate{ca}, Key: key,
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})}
}

// serveCert serves m's certificate over TLS on 127.0.0.1 (the edge).
func serveCert(t *testing.T, m deploy.Material) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{m.Certificate.Raw}, PrivateKey: m.Key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func cfSpec(f *fake.Fake, token, object string, verify ...string) protocol.DeploySpec {
	q := url.Values{"api_token": {token}, "endpoint": {f.URL()}}
	s := protocol.DeploySpec{Kind: protocol.DeployCloudflare, Target: "cloudflare://" + zoneID + "?" + q.Encode(), Object: object,
		VerifyTimeout: protocol.Duration(600 * time.Millisecond)}
	for _, a := range verify {
		s.Verify = append(s.Verify, protocol.VerifyEndpoint{Address: a})
	}
	return s
}

// P8: a Cloudflare custom certificate update, through cloudflare-go against
// the fake API.
func TestDeployCloudflare_P8(t *testing.T) {
	const item = "/client/v4/zones/" + zoneID + "/custom_certificates/"
	good := func(t *testing.T) deploy.Material { return issueFor(t, "www.example.com", "example.com") }
	self := func(t *testing.T, m deploy.Material) []string { return []string{serveCert(t, m)} }
	other := func(t *testing.T, _ deploy.Material) []string { return []string{serveCert(t, good(t))} }
	for _, c := range []struct {
		name     string
		object   string
		token    string // "" is the accepted one
		newID    bool
		fail     string // a Fail mode of ListCustomEdit
		mat      func(t *testing.T) deploy.Material
		verify   func(t *testing.T, m deploy.Material) []string
		outcome  string
		errIs    error
		steps    []string
		requests []string // "" stands for the new id
		msg      string
		edited   bool
	}{
		{name: "update, edge verified", object: zoneID + "#" + customID, mat: good, verify: self, outcome: deploy.OutcomeDeployed,
			steps:    []string{"prepare", "backup", "write", "verify", "verify"},
			requests: []string{"GET " + item + customID, "PATCH " + item + customID, "GET " + item + customID}, edited: true},
		{name: "sni_custom gets a new id, followed", object: zoneID + "#" + customID, newID: true, mat: good, outcome: deploy.OutcomeDeployed,
			steps:    []string{"prepare", "backup", "write", "verify"},
			requests: []string{"GET " + item + customID, "PATCH " + item + customID, "GET " + item}, edited: true, msg: "expires"},
		{name: "edit refused: nothing changed", object: zoneID + "#" + customID, fail: fake.Fail400, mat: good, outcome: deploy.OutcomeFailed,
			steps:    []string{"prepare", "backup", "write"},
			requests: []string{"GET " + item + customID, "PATCH " + item + customID}, msg: "Invalid certificate (code 1002)"},
		{name: "edit answered 500: unknown, no rollback possible", object: zoneID + "#" + customID, fail: fake.Fail500, mat: good,
			outcome: deploy.OutcomeRollbackFailed, errIs: deploy.ErrRollbackFailed, steps: []string{"prepare", "backup", "write", "rollback"},
			requests: []string{"GET " + item + customID, "PATCH " + item + customID}, msg: "ROLLBACK NOT POSSIBLE"},
		{name: "edge keeps the old certificate: no rollback possible", object: zoneID + "#" + customID, mat: good, verify: other,
			outcome: deploy.OutcomeRollbackFailed, errIs: deploy.ErrRollbackFailed,
			steps:    []string{"prepare", "backup", "write", "verify", "verify", "rollback"},
			requests: []string{"GET " + item + customID, "PATCH " + item + customID, "GET " + item + customID},
			msg:      "returns neither the old certificate nor its key", edited: true},
		{name: "hosts not covered refused", object: zoneID + "#" + customID, outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused,
			mat:   func(t *testing.T) deploy.Material { return issueFor(t, "www.example.com") },
			steps: []string{"prepare"}, requests: []string{"GET " + item + customID}, msg: "does not cover example.com"},
		{name: "unknown custom certificate refused", object: zoneID + "#ffff", mat: good, outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused,
			steps: []string{"prepare"}, requests: []string{"GET " + item + "ffff"}, msg: "HTTP 404: Certificate not found"},
		{name: "token refused", object: zoneID + "#" + customID, token: "tok-WRONG-99", mat: good, outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused,
			steps: []string{"prepare"}, requests: []string{"GET " + item + customID}, msg: "refused the credentials (HTTP 401)"},
		{name: "key on a token refused", object: zoneID + "#" + customID, outcome: deploy.OutcomeFailed, errIs: deploy.ErrRefused,
			mat: func(t *testing.T) deploy.Material {
				m := good(t)
				m.Key, m.KeyPEM = nil, nil
				return m
			}, steps: []string{"prepare"}, msg: "not in software"},
	} {
		t.Run(c.name, func(t *testing.T) {
			const token = "tok-DEPLOY-SECRET-42"
			f := fake.StartWith(t, fake.Options{Token: token, DocumentedHosts: true})
			f.SetNewIDOnEdit(c.newID)
			if c.fail != "" {
				f.Fail(fake.ListCustomEdit, c.fail)
			}
			m := c.mat(t)
			var verify []string
			if c.verify != nil {
				verify = c.verify(t, m)
			}
			tok := token
			if c.token != "" {
				tok = c.token
			}
			tgt, err := NewDeployerConfig(cfSpec(f, tok, c.object, verify...), deploy.Env{BackupDir: t.TempDir()}, Config{MaxRetries: -1})
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
			edits := f.Edits()
			want := slices.Clone(c.requests)
			if c.newID && len(edits) == 1 {
				want[len(want)-1] += edits[0].NewID
			}
			if got := f.Requests(); !slices.Equal(got, want) {
				t.Errorf("the API saw %q\nwant %q", got, want)
			}
			if c.edited {
				if len(edits) != 1 || edits[0].Certificate != string(m.CertPEM())+string(m.ChainPEM()) || edits[0].BundleMethod != "ubiquitous" {
					t.Fatalf("edits %+v, want one with leaf+chain and bundle_method ubiquitous", edits)
				}
				if got := f.CustomPEM(edits[0].NewID); got != edits[0].Certificate {
					t.Errorf("custom certificate %s holds %q", edits[0].NewID, got)
				}
				if c.newID && (edits[0].NewID == customID || !slices.Contains(f.CustomIDs(), edits[0].NewID)) {
					t.Errorf("new id %s, ids %q", edits[0].NewID, f.CustomIDs())
				}
				if b, err := os.ReadFile(filepath.Join(res.BackupDir, "custom-certificate.json")); err != nil || !strings.Contains(string(b), "GlobalSign") {
					t.Errorf("backup: %v %s", err, b)
				}
			} else if len(edits) != 0 {
				t.Errorf("edits %+v, want none", edits)
			}
			if last := res.Steps[len(res.Steps)-1]; !strings.Contains(last.Message, c.msg) {
				t.Errorf("last step %q does not say %q", last.Message, c.msg)
			}
			text := ""
			if err != nil {
				text = err.Error()
			}
			for _, s := range res.Steps {
				text += "\n" + s.Message
			}
			for _, secret := range []string{token, tok, "PRIVATE KEY"} {
				if strings.Contains(text, secret) {
					t.Errorf("%q leaked into the steps or the error:\n%s", secret, text)
				}
			}
		})
	}
}

func TestNewDeployerCloudflareValidates(t *testing.T) {
	good := protocol.DeploySpec{Kind: protocol.DeployCloudflare, Target: "cloudflare://" + zoneID + "?api_token=tok-X", Object: zoneID + "#" + customID}
	for _, c := range []struct {
		name string
		edit func(*protocol.DeploySpec, *deploy.Env)
		want string
	}{
		{"valid", func(*protocol.DeploySpec, *deploy.Env) {}, ""},
		{"kind", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Kind = protocol.DeployPEM }, "is not cloudflare"},
		{"scheme", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Target = "aws://eu-west-1" }, "scheme"},
		{"object without #", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Object = customID }, "ZONE_ID#CUSTOM_CERTIFICATE_ID"},
		{"object with a path", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Object = zoneID + "#a/b" }, "ZONE_ID#CUSTOM_CERTIFICATE_ID"},
		{"reload", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Reload = []string{"x"} }, "reload"},
		{"backup", func(_ *protocol.DeploySpec, e *deploy.Env) { e.BackupDir = "rel" }, "absolute"},
		{"verify", func(s *protocol.DeploySpec, _ *deploy.Env) { s.Verify = []protocol.VerifyEndpoint{{Address: "x"}} }, "verify[0]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, e := good, deploy.Env{BackupDir: "/var/lib/emsign/backups"}
			c.edit(&s, &e)
			_, err := NewDeployer(s, e)
			if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
			if err != nil && (strings.Contains(err.Error(), "tok-X") || !strings.HasPrefix(err.Error(), "cloudflare: ")) {
				t.Errorf("error %q: want the cloudflare: prefix and no secret", err)
			}
		})
	}
}
