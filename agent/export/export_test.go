package export_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emsign/bot/agent/export"
	"github.com/emsign/bot/protocol"
)

func identity(t *testing.T) export.Identity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "bot-1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return export.Identity{BotID: "bot-1", Account: "1234567890", CertDER: der, Signer: key}
}

func TestBundleSignedAndReadable(t *testing.T) {
	id := identity(t)
	path := filepath.Join(t.TempDir(), "out.bundle")
	x, err := export.New(path, id)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := x.Write(protocol.Finding{Source: "file", Location: protocol.Location{Scheme: "file", Path: "/x"},
			Chain: [][]byte{{byte(i)}}, SeenAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	hdr, err := x.Finish(export.Summary{Started: time.Now(), Finished: time.Now(), Complete: true})
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Count != 3 || hdr.Certificates != 3 || hdr.ScanID == "" || !hdr.Complete {
		t.Fatalf("header %+v", hdr)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	signed, payload, sig, err := protocol.SplitBundle(data)
	if err != nil {
		t.Fatal(err)
	}
	pub := id.Signer.Public().(*ecdsa.PublicKey)
	if !ecdsa.VerifyASN1(pub, protocol.BundleDigest(signed), sig) {
		t.Fatal("signature does not verify")
	}
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 1<<20)
	var lines int
	for sc.Scan() {
		if lines == 0 {
			var h protocol.BundleHeader
			if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.ScanID != hdr.ScanID || h.Version != protocol.BundleVersion {
				t.Fatalf("header line %s: %v", sc.Bytes(), err)
			}
		}
		lines++
	}
	if err := sc.Err(); err != nil || lines != 4 {
		t.Fatalf("%d lines, %v", lines, err)
	}
	if _, err := x.Finish(export.Summary{}); err == nil {
		t.Fatal("finished twice")
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("%d files left", len(ents))
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	x, err := export.New(filepath.Join(dir, "out.bundle"), identity(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Write(protocol.Finding{Source: "file"}); err != nil {
		t.Fatal(err)
	}
	x.Abort()
	x.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("%d files left", len(ents))
	}
	if _, err := export.New(filepath.Join(dir, "out.bundle"), export.Identity{}); err == nil {
		t.Fatal("empty identity accepted")
	}
}
