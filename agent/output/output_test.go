package output

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/protocol"
)

var now = time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)

func cert(t *testing.T, cn string, notAfter time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: notAfter.AddDate(-1, 0, 0), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func finding(path string, der []byte, errText string) protocol.Finding {
	f := protocol.Finding{Location: protocol.FileLocation("file", path, ""), Source: "file", Error: errText, SeenAt: now}
	if der != nil {
		f.Chain = [][]byte{der}
	}
	return f
}

// The table puts expired and soonest-expiring certificates first, then the
// errors (Journey 1).
func TestTableSortsWorstFirst(t *testing.T) {
	var buf bytes.Buffer
	w, err := New(FormatTable, &buf, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []protocol.Finding{
		finding("/later.pem", cert(t, "later.example.com", now.AddDate(0, 6, 0)), ""),
		finding("/expired.pem", cert(t, "expired.example.com", now.AddDate(0, 0, -3)), ""),
		finding("/soon.pem", cert(t, "soon.example.com", now.AddDate(0, 0, 10)), ""),
		finding("/broken.pem", nil, "truncated PEM block"),
	} {
		if err := w.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	order := []string{"expired.example.com", "soon.example.com", "later.example.com", "ERRORS (1)", "file:///broken.pem", "truncated PEM block"}
	last := -1
	for _, s := range order {
		i := strings.Index(out, s)
		if i < 0 || i < last {
			t.Fatalf("%q missing or out of order in:\n%s", s, out)
		}
		last = i
	}
	if !strings.Contains(out, "expired 3d ago") || !strings.Contains(out, "\n10 ") {
		t.Errorf("days left not shown:\n%s", out)
	}
}

func TestCSVHeaderEvenWhenEmpty(t *testing.T) {
	var buf bytes.Buffer
	w, _ := New(FormatCSV, &buf, time.Now)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "location,source,format,fingerprint_sha256") {
		t.Errorf("csv header %q", buf.String())
	}
}

func TestJSONOneLinePerFinding(t *testing.T) {
	var buf bytes.Buffer
	w, _ := New(FormatJSON, &buf, time.Now)
	_ = w.Write(finding("/a.pem", cert(t, "a", now), ""))
	_ = w.Write(finding("/b.pem", nil, "no password fits"))
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Errorf("%d lines:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), `"error":"no password fits"`) {
		t.Errorf("error line: %s", buf.String())
	}
}

func TestUnknownFormat(t *testing.T) {
	if _, err := New("xml", &bytes.Buffer{}, time.Now); err == nil {
		t.Error("xml accepted")
	}
}

// Key objects found on their own (an HSM's keys, B4.2) are listed as keys,
// not as errors.
func TestTableListsKeys(t *testing.T) {
	var buf bytes.Buffer
	w, _ := New(FormatTable, &buf, func() time.Time { return now })
	loc, _ := protocol.ParseLocation("pkcs11:token=prod;object=wrap;type=secret-key")
	if err := w.Write(protocol.Finding{Location: loc, Source: "pkcs11", Key: &protocol.KeyInfo{Algorithm: "AES", Bits: 256, Class: "secret-key", Label: "wrap"}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "KEYS (1)") || !strings.Contains(out, "AES 256") || strings.Contains(out, "ERRORS") {
		t.Errorf("table:\n%s", out)
	}
}
