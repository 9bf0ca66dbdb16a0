package imports_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/agent/export"
	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/imports"
	"github.com/emsign/bot/controlplane/internal/testcert"
	"github.com/emsign/bot/controlplane/pki"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

type env struct {
	st      store.Store
	ca      *pki.CA
	account string
	botID   string
	id      export.Identity
	dir     string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreate(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "cp.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	acc, err := st.CreateAccount(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, ca: ca, account: acc.ID, dir: dir}
	e.botID, e.id = e.activate(t, acc.ID, "web")
	return e
}

// activate creates a bot and activates it as the server does.
func (e *env) activate(t *testing.T, account, name string) (string, export.Identity) {
	t.Helper()
	ctx := context.Background()
	id, token, err := admin.CreateBot(ctx, e.st, account, name, "")
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := e.ca.SignBot(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})), id, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.ActivateBot(ctx, account, id, admin.Hash(token), store.Activation{Hostname: "h", CertSerial: pki.SerialString(cert)}); err != nil {
		t.Fatal(err)
	}
	return id, export.Identity{BotID: id, Account: account, CertDER: cert.Raw, Signer: key}
}

// bundle exports n certificate findings and one error finding.
func (e *env) bundle(t *testing.T, id export.Identity, n int) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "scan.bundle")
	x, err := export.New(path, id)
	if err != nil {
		t.Fatal(err)
	}
	g := testcert.NewGenerator(t)
	now := time.Now().UTC()
	for i := range n {
		der := g.New(t, testcert.Options{CN: fmt.Sprintf("host%d.example.com", i)})
		if err := x.Write(protocol.Finding{Location: protocol.Location{Scheme: "file", Path: fmt.Sprintf("/etc/ssl/c%d.pem", i)},
			Source: "file", Format: protocol.FormatPEM, Chain: [][]byte{der}, SeenAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.Write(protocol.Finding{Location: protocol.Location{Scheme: "file", Path: "/etc/ssl/bad.p12"},
		Source: "file", Error: "no password fits", SeenAt: now}); err != nil {
		t.Fatal(err)
	}
	hdr, err := x.Finish(export.Summary{Started: now.Add(-time.Minute), Finished: now, Targets: 1, Complete: true})
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Count != n+1 || hdr.Certificates != n || hdr.Errors != 1 {
		t.Fatalf("header %+v", hdr)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Nothing but the bundle is left in the directory.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("directory holds %d files", len(ents))
	}
	return b
}

func (e *env) count(t *testing.T) int {
	t.Helper()
	certs, _, err := e.st.Certificates(context.Background(), e.account, store.CertificateFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(certs)
}

func TestVerifyRoundTrip(t *testing.T) {
	e := newEnv(t)
	data := e.bundle(t, e.id, 3)
	b, err := imports.Verify(data, e.ca.Pool(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if b.Header.BotID != e.botID || b.Header.Account != e.account || b.Header.Count != 4 || !b.Header.Complete {
		t.Fatalf("header %+v", b.Header)
	}
	var n int
	if err := b.Findings(func(f protocol.Finding) error { n++; return nil }); err != nil || n != 4 {
		t.Fatalf("findings %d, %v", n, err)
	}
	// Another CA's control plane refuses it.
	other, err := pki.LoadOrCreate(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imports.Verify(data, other.Pool(), time.Now()); !errors.Is(err, imports.ErrRefused) {
		t.Fatalf("foreign CA: %v", err)
	}
}

func TestImportIdempotent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	data := e.bundle(t, e.id, 5)
	res, err := imports.Import(ctx, e.st, e.ca.Pool(), e.account, data, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Imported || res.Findings != 6 || res.BotID != e.botID {
		t.Fatalf("first import %+v", res)
	}
	if n := e.count(t); n != 5 {
		t.Fatalf("%d certificates, want 5", n)
	}
	sc, err := e.st.Scan(ctx, e.account, e.botID, res.ScanID)
	if err != nil || !sc.Complete || sc.Certificates != 5 || sc.Errors != 1 || sc.Trigger != protocol.TriggerImport {
		t.Fatalf("scan %+v, %v", sc, err)
	}
	again, err := imports.Import(ctx, e.st, e.ca.Pool(), e.account, data, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if again.Imported || again.ScanID != res.ScanID {
		t.Fatalf("second import %+v", again)
	}
	if n := e.count(t); n != 5 {
		t.Fatalf("%d certificates after the second import", n)
	}
	sc2, _ := e.st.Scan(ctx, e.account, e.botID, res.ScanID)
	if fmt.Sprint(sc2) != fmt.Sprint(sc) {
		t.Fatalf("scan changed: %+v → %+v", sc, sc2)
	}
}

// Every single byte altered makes the bundle refused, and nothing is
// ingested.
func TestTamperedRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	data := e.bundle(t, e.id, 2)
	positions := map[string]int{}
	for i := range data {
		bad := append([]byte(nil), data...)
		bad[i] ^= 0x01
		_, err := imports.Import(ctx, e.st, e.ca.Pool(), e.account, bad, time.Now())
		if !errors.Is(err, imports.ErrRefused) {
			t.Fatalf("byte %d of %d altered: %v", i, len(data), err)
		}
		positions[strings.SplitN(err.Error(), ":", 3)[1]]++
	}
	t.Logf("refusals: %v", positions)
	if n := e.count(t); n != 0 {
		t.Fatalf("%d certificates ingested from altered bundles", n)
	}
	for _, bad := range [][]byte{nil, data[:len(data)-1], append(append([]byte(nil), data...), 0)} {
		if _, err := imports.Verify(bad, e.ca.Pool(), time.Now()); !errors.Is(err, imports.ErrRefused) {
			t.Fatalf("truncated or extended: %v", err)
		}
	}
	// The untouched bundle still imports.
	if res, err := imports.Import(ctx, e.st, e.ca.Pool(), e.account, data, time.Now()); err != nil || !res.Imported {
		t.Fatalf("%+v, %v", res, err)
	}
}

func TestImportRefusesOtherAccountAndRevoked(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	data := e.bundle(t, e.id, 1)
	other, err := e.st.CreateAccount(ctx, "Other")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imports.Import(ctx, e.st, e.ca.Pool(), other.ID, data, time.Now()); !errors.Is(err, imports.ErrRefused) {
		t.Fatalf("other account: %v", err)
	}
	// A bot of another account signing a bundle that claims this account.
	_, oid := e.activate(t, other.ID, "theirs")
	oid.Account = e.account
	if _, err := imports.Import(ctx, e.st, e.ca.Pool(), e.account, e.bundle(t, oid, 1), time.Now()); !errors.Is(err, imports.ErrRefused) ||
		!strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("foreign bot: %v", err)
	}
	// A regenerated token revokes the certificate.
	if _, err := admin.RegenerateToken(ctx, e.st, e.account, e.botID); err != nil {
		t.Fatal(err)
	}
	if _, err := imports.Import(ctx, e.st, e.ca.Pool(), e.account, data, time.Now()); !errors.Is(err, imports.ErrRefused) ||
		!strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked: %v", err)
	}
	if n := e.count(t); n != 0 {
		t.Fatalf("%d certificates ingested", n)
	}
}
