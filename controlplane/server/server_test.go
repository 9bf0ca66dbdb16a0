package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/pki"
	"github.com/emsign/bot/controlplane/seal"
	"github.com/emsign/bot/controlplane/server"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// syncBuffer collects the server's log lines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is a control plane on an httptest TLS server, over a real SQLite
// store in a temporary data directory.
type env struct {
	t    testing.TB
	dir  string
	st   *store.SQL
	ca   *pki.CA
	ts   *httptest.Server
	logs *syncBuffer
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "cp.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreate(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, err := seal.LoadKey(filepath.Join(dir, "secret.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.New(key)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv, err := server.New(server.Config{Store: st, CA: ca, Sealer: sealer, MaxWait: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCertificate(nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.TLS = srv.TLSConfig(cert)
	ts.StartTLS()
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
		st.Close()
	})
	return &env{t: t, dir: dir, st: st, ca: ca, ts: ts, logs: logs}
}

func (e *env) transport(certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: e.ca.Pool(), Certificates: certs},
	}}
}

// account makes an account with an administrator API key.
func (e *env) account(limit int) (account, key string) {
	e.t.Helper()
	ctx := context.Background()
	a, err := e.st.CreateAccount(ctx, "Acme")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.SetBotLimit(ctx, a.ID, limit); err != nil {
		e.t.Fatal(err)
	}
	key, err = admin.CreateAPIKey(ctx, e.st, a.ID, "administrator")
	if err != nil {
		e.t.Fatal(err)
	}
	return a.ID, key
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

func (r response) errorText(t testing.TB) string {
	t.Helper()
	var e protocol.ErrorResponse
	r.json(t, &e)
	return e.Error
}

func (e *env) do(c *http.Client, method, path, key string, body any, header ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// user calls the user API.
func (e *env) user(method, path, key string, body any) response {
	e.t.Helper()
	return e.do(e.transport(), method, "/api/v1"+path, key, body)
}

func (e *env) want(r response, status int) {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
}

// createBot makes a bot through the user API.
func (e *env) createBot(key, name string) (id, token string) {
	e.t.Helper()
	r := e.user("POST", "/bots", key, map[string]string{"name": name})
	e.want(r, http.StatusCreated)
	var m map[string]string
	r.json(e.t, &m)
	return m["bot_id"], m["token"]
}

// bot is an activated bot's client.
type bot struct {
	e      *env
	id     string
	client *http.Client
	cert   tls.Certificate
}

func csr(t testing.TB) (string, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "bot"}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), k
}

func (e *env) tryActivate(account, token string) (response, *ecdsa.PrivateKey) {
	e.t.Helper()
	c, k := csr(e.t)
	r := e.do(e.transport(), "POST", protocol.PathActivate, "", protocol.ActivateRequest{
		Account: account, Token: token, Hostname: "web01", OS: "linux", Arch: "amd64", IPs: []string{"10.0.0.5"},
		Version: "1.0.0", CSR: c, Capability: protocol.CapabilityVersion,
	})
	return r, k
}

func (e *env) activate(account, token string) *bot {
	e.t.Helper()
	r, k := e.tryActivate(account, token)
	e.want(r, http.StatusOK)
	var ar protocol.ActivateResponse
	r.json(e.t, &ar)
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		e.t.Fatal(err)
	}
	cert, err := tls.X509KeyPair([]byte(ar.Certificate), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
	if err != nil {
		e.t.Fatal(err)
	}
	if !strings.Contains(ar.CABundle, "BEGIN CERTIFICATE") || ar.BotID == "" {
		e.e(ar)
	}
	return &bot{e: e, id: ar.BotID, client: e.transport(cert), cert: cert}
}

func (e *env) e(v any) { e.t.Fatalf("unexpected %+v", v) }

func (b *bot) do(method, path string, body any, header ...string) response {
	b.e.t.Helper()
	return b.e.do(b.client, method, path, "", body, append([]string{protocol.HeaderBotVersion, "1.0.1"}, header...)...)
}

func (b *bot) want(r response, status int) { b.e.t.Helper(); b.e.want(r, status) }

func decode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
