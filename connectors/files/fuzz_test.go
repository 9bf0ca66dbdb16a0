package files

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/emsign/bot/protocol"
)

// FuzzParse feeds arbitrary bytes to the content parsers: they read files
// anyone may have written, so they must never panic, hang or allocate what
// a length field claims. Seeds: a file of each format from the corpus, plus
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, name := range []string{
		"pem/junk-crlf.pem", "pem/rsa-enckey.pem", "pem/trusted.pem", "pem/truncated.pem",
		"der/rsa.cer", "p7/bundle-der.p7c", "p7/bundle.p7b",
		"p12/openssl-aes.p12", "p12/openssl-legacy.pfx", "p12/nomac.p12", "p12/keytool-truststore.p12",
		"p12/bouncycastle.p12", "p12/bouncycastle-nopass.p12",
		"jks/keystore.jks", "jceks/keystore.jceks",
	} {
		b, err := os.ReadFile(filepath.Join("testdata", "corpus", filepath.FromSlash(name)))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	pws := []protocol.Secret{protocol.NewSecret("changeit")}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, parse := range []func([]byte, []protocol.Secret) ([]Entry, error){Parse, ParseKeystore} {
			entries, err := parse(data, pws)
			if err != nil && len(entries) > 0 {
				t.Fatalf("entries and an error: %v", err)
			}
			for _, e := range entries {
				if len(e.Chain) == 0 && e.Err == "" {
					t.Fatalf("entry %q has neither a certificate nor a problem", e.Name)
				}
				if len(e.Chain) > 0 && (e.Name == "" || len(e.Chain[0]) == 0) {
					t.Fatalf("certificate entry without a name or DER: %+v", e)
				}
				if e.Format == "" {
					t.Fatalf("entry %q without a format", e.Name)
				}
			}
		}
	})
}
