package local

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emsign/bot/connectors/ca"
	"golang.org/x/crypto/ocsp"
)

func TestOCSP(t *testing.T) {
	ctx := context.Background()
	for _, kind := range []string{"p256", "rsa2048"} {
		t.Run(kind, func(t *testing.T) {
			p := newPKI(t, kind, true)
			a, _ := newCA(t, p, nil)
			issue := func() *x509.Certificate {
				r, err := a.Issue(ctx, &ca.IssueRequest{CSR: makeCSR(t, genKey(t, "p256"), "", "o.example.com")})
				if err != nil {
					t.Fatal(err)
				}
				return r.Certificate
			}
			good, revoked, held := issue(), issue(), issue()
			if err := a.Revoke(ctx, &ca.RevokeRequest{Certificate: revoked, Reason: ca.ReasonKeyCompromise}); err != nil {
				t.Fatal(err)
			}
			if err := a.Suspend(ctx, &ca.RevokeRequest{Certificate: held}); err != nil {
				t.Fatal(err)
			}
			// Same issuer, serial not in the ledger.
			unknown := *good
			unknown.SerialNumber = bigHex("123456789abcdef")
			other := newPKI(t, "p256", false)
			b, _ := newCA(t, other, nil)
			foreign, err := b.Issue(ctx, &ca.IssueRequest{CSR: makeCSR(t, genKey(t, "p256"), "", "o.example.com")})
			if err != nil {
				t.Fatal(err)
			}

			tests := []struct {
				name       string
				cert       *x509.Certificate
				issuer     *x509.Certificate
				hash       crypto.Hash
				wantStatus int
				wantReason int
				wantErr    ocsp.ResponseStatus
			}{
				{"good", good, p.issuer, crypto.SHA1, ocsp.Good, 0, 0},
				{"good sha256", good, p.issuer, crypto.SHA256, ocsp.Good, 0, 0},
				{"revoked", revoked, p.issuer, crypto.SHA1, ocsp.Revoked, ocsp.KeyCompromise, 0},
				{"suspended", held, p.issuer, crypto.SHA1, ocsp.Revoked, ocsp.CertificateHold, 0},
				{"unknown", &unknown, p.issuer, crypto.SHA1, ocsp.Unknown, 0, 0},
				{"other issuer", foreign.Certificate, other.issuer, crypto.SHA1, 0, 0, ocsp.Unauthorized},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					req, err := ocsp.CreateRequest(tt.cert, tt.issuer, &ocsp.RequestOptions{Hash: tt.hash})
					if err != nil {
						t.Fatal(err)
					}
					der, err := a.OCSP(ctx, req)
					if err != nil {
						t.Fatal(err)
					}
					resp, err := ocsp.ParseResponseForCert(der, tt.cert, p.issuer)
					if tt.wantErr != 0 {
						var re ocsp.ResponseError
						if !errors.As(err, &re) || re.Status != tt.wantErr {
							t.Fatalf("error %v, want %v", err, tt.wantErr)
						}
						return
					}
					if err != nil {
						t.Fatalf("parse (and signature check): %v", err)
					}
					if resp.Status != tt.wantStatus || resp.SerialNumber.Cmp(tt.cert.SerialNumber) != 0 {
						t.Fatalf("status %d serial %x, want %d", resp.Status, resp.SerialNumber, tt.wantStatus)
					}
					if tt.wantStatus == ocsp.Revoked && (resp.RevocationReason != tt.wantReason || resp.RevokedAt.IsZero()) {
						t.Fatalf("reason %d at %s", resp.RevocationReason, resp.RevokedAt)
					}
					if resp.NextUpdate.Sub(resp.ThisUpdate) != DefaultOCSPValid {
						t.Fatalf("validity %s", resp.NextUpdate.Sub(resp.ThisUpdate))
					}
				})
			}
			if der, err := a.OCSP(ctx, []byte("not an ocsp request")); err != nil || !bytes.Equal(der, ocsp.MalformedRequestErrorResponse) {
				t.Fatalf("garbage: %x %v", der, err)
			}
		})
	}

	// golang.org/x/crypto/ocsp cannot sign with Ed25519; the CA says so
	// rather than answering wrongly.
	p := newPKI(t, "ed25519", false)
	a, _ := newCA(t, p, nil)
	r, err := a.Issue(ctx, &ca.IssueRequest{CSR: makeCSR(t, genKey(t, "p256"), "", "o.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := ocsp.CreateRequest(r.Certificate, p.issuer, nil)
	if _, err := a.OCSP(ctx, req); !errors.Is(err, ca.ErrNotSupported) {
		t.Fatalf("ed25519 ocsp: %v", err)
	}
	if _, err := a.CRL(ctx); err != nil {
		t.Fatalf("ed25519 crl: %v", err)
	}
}

func TestHandler(t *testing.T) {
	ctx := context.Background()
	p := newPKI(t, "p256", false)
	a, _ := newCA(t, p, nil)
	r, err := a.Issue(ctx, &ca.IssueRequest{CSR: makeCSR(t, genKey(t, "p256"), "", "h.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	req, _ := ocsp.CreateRequest(r.Certificate, p.issuer, nil)
	b64 := base64.StdEncoding.EncodeToString(req)

	tests := []struct {
		name, method, path, ctype string
		body                      []byte
		wantCode                  int
		wantType                  string
		check                     func(t *testing.T, body []byte)
	}{
		{"crl", "GET", "/crl", "", nil, 200, "application/pkix-crl", func(t *testing.T, body []byte) {
			if _, err := x509.ParseRevocationList(body); err != nil {
				t.Fatal(err)
			}
		}},
		{"ocsp post", "POST", "/ocsp", "application/ocsp-request", req, 200, "application/ocsp-response", checkGood(r.Certificate, p.issuer)},
		{"ocsp get", "GET", "/ocsp/" + url.PathEscape(b64), "", nil, 200, "application/ocsp-response", checkGood(r.Certificate, p.issuer)},
		{"ocsp get unescaped", "GET", "/ocsp/" + b64, "", nil, 200, "application/ocsp-response", checkGood(r.Certificate, p.issuer)},
		{"ocsp get garbage", "GET", "/ocsp/%%%", "", nil, 400, "", nil},
		{"ocsp get not base64", "GET", "/ocsp/!!!!", "", nil, 200, "application/ocsp-response", func(t *testing.T, body []byte) {
			if !bytes.Equal(body, ocsp.MalformedRequestErrorResponse) {
				t.Fatalf("body %x", body)
			}
		}},
		{"crl post", "POST", "/crl", "", nil, 405, "", nil},
		{"ocsp put", "PUT", "/ocsp", "", nil, 405, "", nil},
		{"elsewhere", "GET", "/other", "", nil, 404, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hr, err := http.NewRequest(tt.method, srv.URL+tt.path, bytes.NewReader(tt.body))
			if err != nil {
				// "%%%" is refused by the client; send it raw.
				hr, _ = http.NewRequest(tt.method, srv.URL, nil)
				hr.URL.Opaque = "//" + hr.URL.Host + tt.path
			}
			if tt.ctype != "" {
				hr.Header.Set("Content-Type", tt.ctype)
			}
			resp, err := srv.Client().Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.wantCode, body)
			}
			if tt.wantType != "" && resp.Header.Get("Content-Type") != tt.wantType {
				t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
			}
			if tt.check != nil {
				tt.check(t, body)
			}
		})
	}
}

func checkGood(cert, issuer *x509.Certificate) func(t *testing.T, body []byte) {
	return func(t *testing.T, body []byte) {
		t.Helper()
		resp, err := ocsp.ParseResponseForCert(body, cert, issuer)
		if err != nil || resp.Status != ocsp.Good {
			t.Fatalf("ocsp %v %+v", err, resp)
		}
	}
}

// TestOpenSSL is the real-system test: openssl asks the Handler over HTTP
// and verifies the answers and the CRL against the CA.
func TestOpenSSL(t *testing.T) {
	if testing.Short() {
		t.Skip("runs openssl")
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("openssl is needed: %v", err)
	}
	ctx := context.Background()
	for _, kind := range []string{"p256", "rsa2048"} {
		t.Run(kind, func(t *testing.T) {
			p := newPKI(t, kind, false)
			a, _ := newCA(t, p, nil)
			srv := httptest.NewServer(a.Handler())
			defer srv.Close()
			dir := t.TempDir()
			writePEM(t, filepath.Join(dir, "ca.pem"), p.issuer.Raw)
			var leaves []string
			var certs []*x509.Certificate
			for i, name := range []string{"good", "revoked", "held"} {
				r, err := a.Issue(ctx, &ca.IssueRequest{CSR: makeCSR(t, genKey(t, []string{"p256", "rsa2048", "ed25519"}[i]), "", name+".example.com")})
				if err != nil {
					t.Fatal(err)
				}
				f := filepath.Join(dir, name+".pem")
				writePEM(t, f, r.Certificate.Raw)
				leaves, certs = append(leaves, f), append(certs, r.Certificate)
			}
			askAll := func() []string {
				var out []string
				for _, f := range leaves {
					cmd := exec.Command("openssl", "ocsp", "-issuer", filepath.Join(dir, "ca.pem"), "-cert", f,
						"-url", srv.URL+"/ocsp", "-CAfile", filepath.Join(dir, "ca.pem"), "-resp_text")
					b, err := cmd.CombinedOutput()
					if err != nil {
						t.Fatalf("openssl ocsp: %v\n%s", err, b)
					}
					if !strings.Contains(string(b), "Response verify OK") {
						t.Fatalf("openssl did not verify the response:\n%s", b)
					}
					out = append(out, string(b))
				}
				return out
			}
			for i, o := range askAll() {
				if !strings.Contains(o, leaves[i]+": good") {
					t.Fatalf("before revocation, %s:\n%s", leaves[i], o)
				}
			}
			if err := a.Revoke(ctx, &ca.RevokeRequest{Certificate: certs[1], Reason: ca.ReasonKeyCompromise}); err != nil {
				t.Fatal(err)
			}
			if err := a.Suspend(ctx, &ca.RevokeRequest{Certificate: certs[2]}); err != nil {
				t.Fatal(err)
			}
			out := askAll()
			if !strings.Contains(out[0], leaves[0]+": good") {
				t.Fatalf("good one:\n%s", out[0])
			}
			if !strings.Contains(out[1], leaves[1]+": revoked") || !strings.Contains(out[1], "Reason: keyCompromise") {
				t.Fatalf("revoked one:\n%s", out[1])
			}
			if !strings.Contains(out[2], leaves[2]+": revoked") || !strings.Contains(out[2], "Reason: certificateHold") {
				t.Fatalf("held one:\n%s", out[2])
			}

			resp, err := srv.Client().Get(srv.URL + "/crl")
			if err != nil {
				t.Fatal(err)
			}
			crl, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			crlFile := filepath.Join(dir, "crl.der")
			if err := os.WriteFile(crlFile, crl, 0o644); err != nil {
				t.Fatal(err)
			}
			b, err := exec.Command("openssl", "crl", "-in", crlFile, "-inform", "DER", "-noout", "-text",
				"-CAfile", filepath.Join(dir, "ca.pem")).CombinedOutput()
			if err != nil {
				t.Fatalf("openssl crl: %v\n%s", err, b)
			}
			text := strings.ToUpper(string(b))
			for _, w := range []string{"VERIFY OK", "KEY COMPROMISE", "CERTIFICATE HOLD", "X509V3 CRL NUMBER",
				strings.ToUpper(certs[1].SerialNumber.Text(16)), strings.ToUpper(certs[2].SerialNumber.Text(16))} {
				if !strings.Contains(text, w) {
					t.Fatalf("openssl crl output lacks %q:\n%s", w, b)
				}
			}
			if strings.Contains(text, strings.ToUpper(certs[0].SerialNumber.Text(16))) {
				t.Fatalf("good certificate on the CRL:\n%s", b)
			}
		})
	}
}

func writePEM(t *testing.T, path string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func bigHex(s string) *big.Int {
	n, _ := new(big.Int).SetString(s, 16)
	return n
}
