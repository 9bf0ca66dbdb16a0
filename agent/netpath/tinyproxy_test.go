package netpath_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/agent/activation"
	"github.com/emsign/bot/agent/client"
	"github.com/emsign/bot/agent/internal/fakecp"
	"github.com/emsign/bot/agent/netpath"
	"github.com/emsign/bot/agent/state"
	"github.com/emsign/bot/internal/testsvc"
	"github.com/emsign/bot/protocol"
)

const (
	account   = "1234567890"
	token     = "0b7c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3"
	proxyUser = "botuser"
	proxyPass = "Pr0xyS3cret-9d1"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startTinyproxy runs a real tinyproxy with basic auth that may CONNECT to
// connectPort only; it returns its address and its log file.
func startTinyproxy(t *testing.T, connectPort string) (addr, logFile string) {
	t.Helper()
	p, err := strconv.Atoi(connectPort)
	if err != nil {
		t.Fatal(err)
	}
	return testsvc.StartTinyproxy(t, proxyUser, proxyPass, p)
}

func activationOptions(t *testing.T, cp *fakecp.Server, proxy string, log *bytes.Buffer) activation.Options {
	t.Helper()
	cp.AddToken(account, token)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, cp.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return activation.Options{
		Dir: filepath.Join(t.TempDir(), "state"), Account: account, Token: protocol.NewSecret(token),
		URL: cp.URL, CAFile: caFile, Proxy: proxy, Version: "1.0.0",
		Logger: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func cpPort(t *testing.T, cp *fakecp.Server) string {
	u, err := url.Parse(cp.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

func TestThroughTinyproxy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs tinyproxy")
	}
	cp := fakecp.New(t)
	addr, logFile := startTinyproxy(t, cpPort(t, cp))
	proxy := fmt.Sprintf("http://%s:%s@%s", proxyUser, proxyPass, addr)
	var log bytes.Buffer
	o := activationOptions(t, cp, proxy, &log)
	s, err := activation.Activate(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(o.Dir, state.SettingsFile))
	if err != nil || !strings.Contains(string(raw), proxyPass) {
		t.Fatalf("the proxy is not stored: %v", err)
	}
	st, err := state.Load(o.Dir)
	if err != nil {
		t.Fatal(err)
	}
	np, err := netpath.New(netpath.Settings{URL: s.URL, Proxy: s.Proxy, Via: s.Via})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{URL: s.URL, TLS: st.TLSConfig(), Version: "1.0.0", Dial: np.DialContext, Path: np.Describe(),
		Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.StartScan(ctx, protocol.ScanStart{ScanID: "scan-p", Trigger: protocol.TriggerJob, Started: time.Now(), Targets: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PostFindings(ctx, "scan-p", json.RawMessage(`{"seq":1,"findings":[]}`)); err != nil {
		t.Fatal(err)
	}
	cp.Do(func(cp *fakecp.Server) {
		if len(cp.Activations) != 1 || cp.Activations[0].Path != "proxy" {
			t.Errorf("activations %+v", cp.Activations)
		}
	})
	if _, gapless := cp.FindingsOf("scan-p"); !gapless {
		t.Error("the batch did not arrive")
	}
	if !strings.Contains(log.String(), "http://"+proxyUser+":REDACTED@"+addr) {
		t.Errorf("the activation log does not name the proxy, redacted: %s", log.String())
	}
	if strings.Contains(log.String(), proxyPass) {
		t.Errorf("the bot's log shows the proxy password: %s", log.String())
	}
	// tinyproxy logs asynchronously to its file.
	var plog []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		plog, _ = os.ReadFile(logFile)
		if bytes.Contains(plog, []byte("CONNECT")) {
			break
		}
	}
	if !bytes.Contains(plog, []byte("CONNECT")) || !bytes.Contains(plog, []byte(cpPort(t, cp))) {
		t.Errorf("tinyproxy's log shows no CONNECT to the control plane:\n%s", plog)
	}
	if bytes.Contains(plog, []byte(proxyPass)) {
		t.Error("tinyproxy's log shows the password")
	}
}

func TestTinyproxyWrongPassword(t *testing.T) {
	if testing.Short() {
		t.Skip("runs tinyproxy")
	}
	cp := fakecp.New(t)
	addr, _ := startTinyproxy(t, cpPort(t, cp))
	var log bytes.Buffer
	o := activationOptions(t, cp, fmt.Sprintf("http://%s:wrong-pw-55@%s", proxyUser, addr), &log)
	_, err := activation.Activate(context.Background(), o)
	var pe *netpath.ProxyAuthError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v, want a ProxyAuthError", err)
	}
	want := "proxy http://" + proxyUser + ":REDACTED@" + addr + " refused the credentials (40"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	if strings.Contains(err.Error()+log.String(), "wrong-pw-55") {
		t.Errorf("the password shows: %v / %s", err, log.String())
	}
	if _, err := os.Stat(filepath.Join(o.Dir, state.SettingsFile)); err == nil {
		t.Error("a failed activation wrote settings")
	}
	cp.Do(func(cp *fakecp.Server) {
		if len(cp.Activations) != 0 {
			t.Error("the activation got through")
		}
	})
}
