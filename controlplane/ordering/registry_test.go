package ordering_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/ordering"
	"github.com/emsign/bot/internal/testsvc"
	"github.com/emsign/bot/protocol"
)

// Pebble's EAB key (its test configuration's).
const (
	eabKID  = "kid-1"
	eabHMAC = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeJSON(t *testing.T, dir string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "ca.json", string(b))
}

// P7: the registry file's mistakes are named by connector and field, and
// secrets are never accepted inline.
func TestLoadRegistryErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "dc.key", "dc-api-key-123\n")
	tests := []struct {
		name string
		conf string
		want string
	}{
		{"inline secret", `{"connectors":{"dc":{"kind":"digicert","api_key":"abc","organization_id":1}}}`,
			`connector "dc": json: unknown field "api_key" (secrets are given as files`},
		{"unknown kind", `{"connectors":{"x":{"kind":"adcs"}}}`, `connector "x": kind: "adcs"`},
		{"local is reserved", `{"connectors":{"local":{"kind":"acme"}}}`, `connector "local"`},
		{"acme without key file", `{"connectors":{"a":{"kind":"acme","directory_url":"https://127.0.0.1/dir"}}}`,
			`connector "a": account_key_file: required`},
		{"acme without http01", `{"connectors":{"a":{"kind":"acme","directory_url":"https://127.0.0.1/dir","account_key_file":"a.key"}}}`,
			`connector "a": http01_listen: required unless pre_validated`},
		{"acme plain http directory", `{"connectors":{"a":{"kind":"acme","directory_url":"http://127.0.0.1/dir","account_key_file":"a.key","pre_validated":true}}}`,
			`connector "a": acme: directory URL`},
		{"digicert without org", `{"connectors":{"dc":{"kind":"digicert","api_key_file":"dc.key"}}}`,
			`connector "dc": organization_id: required`},
		{"digicert missing key file", `{"connectors":{"dc":{"kind":"digicert","api_key_file":"nope.key","organization_id":1}}}`,
			`connector "dc": api_key_file:`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ordering.LoadRegistry(writeFile(t, dir, "ca.json", tt.conf), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "dc-api-key-123") {
				t.Fatal("the error holds the API key")
			}
		})
	}
	reg, err := ordering.LoadRegistry(writeFile(t, dir, "ca.json",
		`{"connectors":{"dc":{"kind":"digicert","api_key_file":"dc.key","organization_id":7,"base_url":"http://127.0.0.1:1/services/v2"}}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.Kinds(); strings.Join(got, ",") != "local,digicert" {
		t.Fatalf("kinds %v", got)
	}
	if got := reg.Names("digicert"); len(got) != 1 || got[0] != "dc" {
		t.Fatalf("names %v", got)
	}
}

// P7, B9: an ACME connector loaded from the registry file orders through
// Pebble (EAB required, HTTP-01 validated for real against the listener
// the registry asks the control plane to serve) for a bot's CSR.
func TestACMEThroughPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Pebble")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	p := testsvc.StartPebble(t, testsvc.PebbleOptions{HTTPPort: port, EABKeys: map[string]string{eabKID: eabHMAC}})

	dir := t.TempDir()
	writeFile(t, dir, "eab.hmac", eabHMAC+"\n")
	conf := writeJSON(t, dir, map[string]any{"connectors": map[string]any{"pebble": map[string]any{
		"kind": "acme", "directory_url": p.DirectoryURL, "ca_bundle_file": p.MinicaFile,
		"account_key_file": "acme/pebble.key", "contact": "pki@example.com", "eab_kid": eabKID,
		"eab_hmac_file": "eab.hmac", "terms_agreed": true, "http01_listen": ln.Addr().String(),
	}}})
	if err := os.Mkdir(filepath.Join(dir, "acme"), 0o700); err != nil {
		t.Fatal(err)
	}
	reg, err := ordering.LoadRegistry(conf, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "acme/pebble.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("account key file: %v (mode %v), want made 0600", err, fi)
	}
	hs := reg.HTTP01()
	if len(hs) != 1 || hs[0].Addr != ln.Addr().String() || hs[0].Connector != "pebble" {
		t.Fatalf("HTTP-01 listeners %+v", hs)
	}
	srv := &http.Server{Handler: hs[0].Handler, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	e := newEnv(t, func(c *ordering.Config) { c.Registry = reg; c.IssueWait = 2 * time.Minute })
	ctx := context.Background()
	all, _ := e.st.ProvisioningTemplates(ctx, e.account)
	all[0].CAConnector, all[0].CASettings = "acme", "pebble"
	if err := e.st.UpdateProvisioningTemplate(ctx, all[0]); err != nil {
		t.Fatal(err)
	}
	o, _, r := e.rotate()
	res, err := e.svc.OrderCSR(ctx, e.bot_(e.bot), o.ID, csrFor(t, r, newKey(t), nil))
	if err != nil || res.Status != protocol.OrderIssued {
		t.Fatalf("csr: %+v %v\n%s", res, err, p.Log())
	}
	blk, _ := pem.Decode([]byte(res.Certificate))
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	inter := x509.NewCertPool()
	for rest := []byte(res.Chain); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, _ := x509.ParseCertificate(b.Bytes)
		inter.AddCert(c)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.Root(t))
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "www.example.com"}); err != nil {
		t.Fatalf("the certificate does not verify against Pebble's root: %v", err)
	}
	got, _ := e.st.Order(ctx, e.account, o.ID)
	if !strings.HasPrefix(got.CAOrderID, strings.TrimSuffix(p.DirectoryURL, "/dir")) {
		t.Fatalf("CA order ID %q is not Pebble's order URL", got.CAOrderID)
	}
}
