package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emsign/bot/protocol"
)

// corpusExpectations is connectors/files/testdata/expected.json, written by
// the script that generated the corpus with openssl and keytool.
type corpusExpectations struct {
	Password     string `json:"password"`
	Certificates []struct {
		Location string `json:"location"`
		SHA256   string `json:"sha256"`
		KeyAlg   string `json:"key_algorithm"`
	} `json:"certificates"`
	Errors []struct {
		Path     string `json:"path"`
		Contains string `json:"contains"`
	} `json:"errors"`
}

// Issue 2, done when: `emsign-bot scan --format json --password changeit
// file:///DIR` finds every certificate in a folder holding every format, and
// reports a truncated PEM and a random-bytes .crt as errors while the rest
// of the scan goes on (B4.6, B4.7).
func TestScanFolderOfEveryFormat(t *testing.T) {
	corpus, err := filepath.Abs("../../../connectors/files/testdata/corpus")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../../../connectors/files/testdata/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var want corpusExpectations
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if len(want.Certificates) < 20 {
		t.Fatalf("expected.json lists only %d certificates", len(want.Certificates))
	}

	target := "file://" + protocol.FileToURIPath(corpus)
	code, stdout, stderr := runBot(t, "scan", "--format", "json", "--password", want.Password, target)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.Contains(stdout, "PRIVATE KEY") || strings.Contains(stderr, want.Password) {
		t.Error("a private key or the password reached the output")
	}
	got := map[string]map[string]any{}
	var errorLines []map[string]any
	for _, r := range jsonLines(t, stdout) {
		loc, _ := r["location"].(string)
		if e, ok := r["error"].(string); ok && e != "" {
			errorLines = append(errorLines, r)
		}
		if _, ok := r["fingerprint_sha256"]; ok {
			got[loc] = r
		}
	}
	prefix := target + "/"
	for _, c := range want.Certificates {
		r, ok := got[prefix+c.Location]
		if !ok {
			t.Errorf("not found: %s", c.Location)
			continue
		}
		if r["fingerprint_sha256"] != c.SHA256 {
			t.Errorf("%s: fingerprint %v, want %s", c.Location, r["fingerprint_sha256"], c.SHA256)
		}
		hasKey, _ := r["has_private_key"].(bool)
		if hasKey != (c.KeyAlg != "") {
			t.Errorf("%s: has_private_key %v, want key %q", c.Location, hasKey, c.KeyAlg)
		}
	}
	for _, e := range want.Errors {
		found := false
		for _, r := range errorLines {
			if r["location"] == prefix+e.Path && strings.Contains(r["error"].(string), e.Contains) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no error line for %s containing %q", e.Path, e.Contains)
		}
	}
	for _, must := range []string{"pem/truncated.pem", "junk/random.crt"} {
		if !strings.Contains(stdout, prefix+must) {
			t.Errorf("%s is not reported", must)
		}
	}
}
