package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/agent/state"
)

// writeSettings makes a state directory holding only settings (configure
// touches nothing else).
func writeSettings(t *testing.T, s state.Settings) string {
	t.Helper()
	dir := t.TempDir()
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, state.SettingsFile), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func readSettings(t *testing.T, dir string) state.Settings {
	t.Helper()
	s, err := state.LoadSettings(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConfigureChangesOnlyGivenSettings(t *testing.T) {
	orig := state.Settings{URL: "https://cp.example:8443", BotID: "b1", Account: testAccount, Proxy: "http://u:oldpw@p:3128", Via: "10.0.0.9:7443", Listen: 7443, ActivatedAt: time.Unix(1700000000, 0).UTC()}
	dir := writeSettings(t, orig)

	code, stdout, stderr := runBot(t, "configure", "--state", dir, "--proxy", "http://user:newsecret@proxy.example:3128", "--via", "")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.Contains(stdout+stderr, "newsecret") || !strings.Contains(stdout, "http://user:REDACTED@proxy.example:3128") {
		t.Errorf("output %q / %q", stdout, stderr)
	}
	s := readSettings(t, dir)
	want := orig
	want.Proxy, want.Via = "http://user:newsecret@proxy.example:3128", ""
	if !reflect.DeepEqual(s, want) {
		t.Errorf("settings %+v, want %+v", s, want)
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(filepath.Join(dir, state.SettingsFile))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("settings file mode %v %v", fi.Mode(), err)
		}
	}

	code, _, stderr = runBot(t, "configure", "--state", dir, "--listen", "0", "--url", "https://cp2.example", "--proxy", "")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	s = readSettings(t, dir)
	if s.Listen != 0 || s.URL != "https://cp2.example" || s.Proxy != "" || s.BotID != "b1" {
		t.Errorf("settings %+v", s)
	}
	// No temporary files left behind by the atomic write.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("state directory holds %v", entries)
	}
}

func TestConfigureRejectsBadFlags(t *testing.T) {
	orig := state.Settings{URL: "https://cp.example", BotID: "b1", Account: testAccount}
	dir := writeSettings(t, orig)
	before, _ := os.ReadFile(filepath.Join(dir, state.SettingsFile))
	tests := []struct {
		args []string
		want string
	}{
		{nil, "nothing to change"},
		{[]string{"--url", "http://cp.example"}, "--url"},
		{[]string{"--proxy", "socks5://u:pw-secret@h:1"}, "--proxy"},
		{[]string{"--via", "nohost"}, "--via"},
		{[]string{"--listen", "70000"}, "--listen"},
		{[]string{"--listen", "x"}, "invalid argument"},
		{[]string{"--bogus"}, "unknown flag"},
	}
	for _, tc := range tests {
		code, stdout, stderr := runBot(t, append([]string{"configure", "--state", dir}, tc.args...)...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) || stdout != "" {
			t.Errorf("%v: exit %d, stderr %q, stdout %q", tc.args, code, stderr, stdout)
		}
		if strings.Contains(stderr, "pw-secret") {
			t.Errorf("stderr shows the proxy password: %s", stderr)
		}
	}
	after, _ := os.ReadFile(filepath.Join(dir, state.SettingsFile))
	if string(before) != string(after) {
		t.Error("a refused configure changed the settings")
	}
	code, _, stderr := runBot(t, "configure", "--state", t.TempDir(), "--via", "h:1")
	if code != exitInternal || !strings.Contains(stderr, "not activated") {
		t.Errorf("unactivated: exit %d, %s", code, stderr)
	}
}

// TestConfigureAllowReload: --allow-reload adds (normalized to single
// spaces, no duplicates), --clear-allowed-reload empties first; the other
// settings stay (B9: the control plane runs only commands the bot allows).
func TestConfigureAllowReload(t *testing.T) {
	orig := state.Settings{URL: "https://cp.example", BotID: "b1", Account: testAccount, Proxy: "http://u:pw@p:3128"}
	dir := writeSettings(t, orig)
	steps := []struct {
		args []string
		want []string
	}{
		{[]string{"--allow-reload", "systemctl  reload nginx"}, []string{"systemctl reload nginx"}},
		{[]string{"--allow-reload", "/usr/sbin/nginx -s reload", "--allow-reload", "systemctl reload nginx"},
			[]string{"systemctl reload nginx", "/usr/sbin/nginx -s reload"}},
		{[]string{"--clear-allowed-reload", "--allow-reload", "haproxy -c"}, []string{"haproxy -c"}},
		{[]string{"--clear-allowed-reload"}, nil},
	}
	for i, st := range steps {
		code, stdout, stderr := runBot(t, append([]string{"configure", "--state", dir}, st.args...)...)
		if code != exitOK {
			t.Fatalf("step %d %v: exit %d: %s", i, st.args, code, stderr)
		}
		s := readSettings(t, dir)
		if !reflect.DeepEqual(s.AllowedReload, st.want) {
			t.Errorf("step %d %v: allowed_reload %q, want %q", i, st.args, s.AllowedReload, st.want)
		}
		want := orig
		want.AllowedReload = s.AllowedReload
		if !reflect.DeepEqual(s, want) {
			t.Errorf("step %d: other settings changed: %+v", i, s)
		}
		if len(st.want) > 0 && !strings.Contains(stdout, st.want[len(st.want)-1]) {
			t.Errorf("step %d: output %q does not show the allowed commands", i, stdout)
		}
	}
	code, _, stderr := runBot(t, "configure", "--state", dir, "--allow-reload", "  ")
	if code != exitUsage || !strings.Contains(stderr, "--allow-reload") {
		t.Errorf("empty command: exit %d, %s", code, stderr)
	}
}
