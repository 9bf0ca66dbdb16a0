package runner

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/emsign/bot/agent/client"
	"github.com/emsign/bot/agent/export"
	"github.com/emsign/bot/agent/internal/fakecp"
	"github.com/emsign/bot/agent/spool"
	"github.com/emsign/bot/agent/state"
	"github.com/emsign/bot/protocol"
)

// With an export directory, a scan is uploaded as ever and also written as
// a signed bundle named by the scan, which verifies with the bot's
// certificate (issued by the control plane's CA).
func TestScanExportDir(t *testing.T) {
	b := newBot(t)
	st, err := state.Load(b.dir)
	if err != nil {
		t.Fatal(err)
	}
	id, err := export.FromState(st)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	b.tweak = func(c *Config) { c.ExportDir, c.ExportIdentity = dir, id }
	b.cp.SetConfig(scanConfig("v1", certDir(t, 25)))
	b.start(0)
	b.cp.AddJob(protocol.Job{ID: "job-1", Kind: protocol.JobScan, ScanID: "scan-1"})
	waitFor(t, "the job's result", func() bool {
		var ok bool
		b.cp.Do(func(cp *fakecp.Server) { _, ok = cp.Results["job-1"] })
		return ok
	})
	// The upload is unchanged.
	if c := checkScan(t, b.cp, "scan-1", 25); !c.Complete {
		t.Errorf("completion %+v", c)
	}

	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 || ents[0].Name() != "scan-1"+BundleExt {
		t.Fatalf("export directory holds %v (%v), want only scan-1%s", ents, err, BundleExt)
	}
	data, err := os.ReadFile(filepath.Join(dir, ents[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	signed, payload, sig, err := protocol.SplitBundle(data)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 1<<20)
	var hdr protocol.BundleHeader
	var certs, n int
	for ; sc.Scan(); n++ {
		if n == 0 {
			if err := json.Unmarshal(sc.Bytes(), &hdr); err != nil {
				t.Fatalf("header line %s: %v", sc.Bytes(), err)
			}
			continue
		}
		var f protocol.Finding
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatalf("finding line %s: %v", sc.Bytes(), err)
		}
		if len(f.Chain) > 0 {
			certs++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if hdr.Version != protocol.BundleVersion || hdr.BotID != id.BotID || hdr.Account != id.Account ||
		!hdr.Complete || hdr.Certificates != 25 || certs != 25 || hdr.Targets != 1 || hdr.ScanID == "" || hdr.Count != n-1 || hdr.Started.IsZero() {
		t.Fatalf("bundle header %+v, %d certificates", hdr, certs)
	}

	// Signed by the bot, whose certificate the control plane's CA issued.
	blk, _ := pem.Decode([]byte(hdr.Certificate))
	if blk == nil {
		t.Fatal("no certificate in the bundle header")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(b.cp.CAPEM) {
		t.Fatal("fake CA")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("bundle certificate: %v", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !ecdsa.VerifyASN1(pub, protocol.BundleDigest(signed), sig) {
		t.Fatal("the bundle's signature does not verify")
	}
}

func TestExportDirNeedsIdentity(t *testing.T) {
	b := newBot(t)
	st, err := state.Load(b.dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{URL: st.Settings.URL, TLS: st.TLSConfig(), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Client: c, Spool: sp, ExportDir: t.TempDir()}); err == nil {
		t.Error("an export directory without the bot's identity was accepted")
	}
}
