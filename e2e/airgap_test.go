package e2e

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 6, air gap, done when: an exported bundle imports once, twice
// without change, and not at all when altered.
func TestAirgapExportImport(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs both programs")
	}
	cpBin, botBin := binaries(t)
	cp, account, botID, state := activatedBot(t, cpBin, botBin, "isolated-1")
	data := cp.data
	media := t.TempDir()

	// export scans a folder of certificates into a bundle on the "media".
	export := func(name string, n int) (string, map[string]bool) {
		t.Helper()
		dir := t.TempDir()
		want := map[string]bool{}
		for i := range n {
			der, _ := selfSigned(t, fmt.Sprintf("%s-%d.internal", name, i))
			want[fingerprint(der)] = true
			_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("c%02d.pem", i)), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
		}
		file := filepath.Join(media, name+".bundle")
		cmd := exec.Command(botBin, "scan", "--export", file, "--state", state, "--format", "json", "file://"+filepath.ToSlash(dir))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("scan --export: %v\n%s", err, stderr.String())
		}
		if lines := strings.Count(stdout.String(), "\n"); lines != n {
			t.Fatalf("scan printed %d lines, want %d", lines, n)
		}
		return file, want
	}
	importCLI := func(file string) (map[string]any, error) {
		out, err := exec.Command(cpBin, "import", "--data", data, "--account", account, file).Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				return nil, fmt.Errorf("%v: %s", err, ee.Stderr)
			}
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("import printed %q", out)
		}
		return m, nil
	}
	importAPI := func(file string) (int, map[string]any) {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("POST", "https://"+cp.listen+"/api/v1/imports", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+cp.apiKey)
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := cp.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("POST imports: %d %q", resp.StatusCode, body)
		}
		return resp.StatusCode, m
	}
	alter := func(file string, at int) string {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		b[at%len(b)] ^= 0x20
		bad := file + ".altered"
		if err := os.WriteFile(bad, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return bad
	}
	sameSet := func(got map[string][]any, want ...map[string]bool) {
		t.Helper()
		n := 0
		for _, w := range want {
			n += len(w)
			for fp := range w {
				if _, ok := got[fp]; !ok {
					t.Fatalf("certificate %s not listed", fp)
				}
			}
		}
		if len(got) != n {
			t.Fatalf("%d certificates listed, want %d", len(got), n)
		}
	}

	// Once through the command, then again (command and API): no change.
	first, wantFirst := export("first", 12)
	res, err := importCLI(first)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if res["imported"] != true || res["findings"] != float64(12) || res["bot_id"] != botID {
		t.Fatalf("first import %v", res)
	}
	scanID := res["scan_id"].(string)
	before := listCertificates(t, cp)
	sameSet(before, wantFirst)
	var scan map[string]any
	cp.api("GET", "/bots/"+botID+"/scans/"+scanID, nil, &scan)

	again, err := importCLI(first)
	if err != nil || again["imported"] != false || again["scan_id"] != scanID {
		t.Fatalf("second import %v, %v", again, err)
	}
	if code, m := importAPI(first); code != http.StatusOK || m["imported"] != false || m["scan_id"] != scanID {
		t.Fatalf("API re-import %d %v", code, m)
	}
	after := listCertificates(t, cp)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("certificates changed on re-import")
	}
	var scanAfter map[string]any
	cp.api("GET", "/bots/"+botID+"/scans/"+scanID, nil, &scanAfter)
	if fmt.Sprint(scanAfter) != fmt.Sprint(scan) {
		t.Fatalf("scan changed on re-import: %v → %v", scan, scanAfter)
	}

	// A new bundle altered by one byte (header area, middle, signature) is
	// refused by both, and nothing of it is ingested.
	second, wantSecond := export("second", 7)
	size := func() int { st, _ := os.Stat(second); return int(st.Size()) }()
	for _, at := range []int{20, size / 2, size - 30} {
		bad := alter(second, at)
		if _, err := importCLI(bad); err == nil || !strings.Contains(err.Error(), "bundle refused") {
			t.Fatalf("altered at %d: CLI import: %v", at, err)
		}
		if code, m := importAPI(bad); code != http.StatusUnprocessableEntity || !strings.Contains(fmt.Sprint(m["error"]), "bundle refused") {
			t.Fatalf("altered at %d: API import %d %v", at, code, m)
		}
	}
	sameSet(listCertificates(t, cp), wantFirst)

	// The untouched bundle imports through the API, once.
	if code, m := importAPI(second); code != http.StatusOK || m["imported"] != true || m["findings"] != float64(7) {
		t.Fatalf("API import %d %v", code, m)
	}
	sameSet(listCertificates(t, cp), wantFirst, wantSecond)
	if code, m := importAPI(second); code != http.StatusOK || m["imported"] != false {
		t.Fatalf("API re-import %d %v", code, m)
	}
	sameSet(listCertificates(t, cp), wantFirst, wantSecond)
}
