package testsvc

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/emsign/bot/internal/testlog"
)

// ChromiumPath is where Debian's chromium package installs the browser
// (scripts/deps.sh chromium, run by `make test`).
const ChromiumPath = "/usr/bin/chromium"

// BrowserConfig says which HTTPS server the browser trusts.
type BrowserConfig struct {
	// TrustAddr is the host:port of an HTTPS server whose certificate
	// TrustRoots verifies (the control plane and its own CA). The browser
	// accepts that server's key and no other certificate outside its own
	// roots: the certificate's SPKI is pinned with
	// --ignore-certificate-errors-spki-list, rather than every certificate
	// error being ignored.
	TrustAddr  string
	TrustRoots *x509.CertPool
}

// Chromium is a headless Chromium with one tab, for browser tests.
type Chromium struct {
	// Ctx is the tab's chromedp context: the browser is already started,
	// so a context derived from it with a timeout limits one action without
	// ending the browser when the timeout fires.
	Ctx context.Context
	// DownloadDir receives the files the pages download.
	DownloadDir string
	log         *testlog.Buffer
}

// StartChromium starts Chromium headless with a fresh profile until the
// test ends. A missing /usr/bin/chromium fails the test, naming the Debian
// package: `make test` installs it.
func StartChromium(tb testing.TB, cfg BrowserConfig) *Chromium {
	tb.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		tb.Fatalf("%s is missing: install the Debian package chromium (./scripts/deps.sh chromium, or apt-get install chromium): %v", ChromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath),
		// The flags of COOKBOOK.md "Headless Chromium and chromedp".
		chromedp.Headless,
		chromedp.NoSandbox, // root in a container has no user namespaces for the sandbox
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		// Traffic stays on this machine: no name resolves, so nothing
		// leaves for the internet (the tests use 127.0.0.1, which the rules
		// must name: they apply to IP literals too).
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(tb.TempDir()),
	}
	if cfg.TrustAddr != "" {
		pin, err := SPKIPin(cfg.TrustAddr, cfg.TrustRoots)
		if err != nil {
			tb.Fatalf("pin the certificate of %s for the browser: %v", cfg.TrustAddr, err)
		}
		opts = append(opts, chromedp.Flag("ignore-certificate-errors-spki-list", pin))
	}
	out := &testlog.Buffer{}
	opts = append(opts, chromedp.CombinedOutput(out))

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithErrorf(func(format string, args ...any) {
		fmt.Fprintf(out, "chromedp: "+format+"\n", args...)
	}))
	tb.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	c := &Chromium{Ctx: ctx, DownloadDir: tb.TempDir(), log: out}
	// The first Do starts the browser and binds it to ctx, which must have
	// no timeout so that later actions may have their own: wait for it
	// here instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			tb.Fatalf("start chromium: %v\n%s", err, c.Log())
		}
	case <-time.After(30 * time.Second):
		tb.Fatalf("chromium did not start in 30 s\n%s", c.Log())
	}
	start, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	events := true
	if _, err := chromedp.CallBrowser(start, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: c.DownloadDir, EventsEnabled: &events,
	}); err != nil {
		tb.Fatalf("chromium: set the download folder: %v", err)
	}
	return c
}

// Log is what Chromium wrote on its standard output and error, for a
// failure message, without the lines about D-Bus (there is none in a
// container, and Chromium says so many times).
func (c *Chromium) Log() string {
	var keep []string
	for _, l := range strings.Split(c.log.String(), "\n") {
		if !strings.Contains(l, "dbus") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// Download runs trigger (a click on a download link, say) and waits, up to
// timeout, for the file it downloads to be complete. It returns the file's
// contents and the name the server suggested (Content-Disposition).
func (c *Chromium) Download(trigger chromedp.Action[chromedp.Void], timeout time.Duration) (data []byte, suggested string, err error) {
	ctx, cancel := context.WithTimeout(c.Ctx, timeout)
	defer cancel()
	// Subscribe before the trigger, so no event is missed.
	begins := chromedp.BrowserEvents(ctx, browser.DownloadWillBegin)
	progress := chromedp.BrowserEvents(ctx, browser.DownloadProgress)
	if err := chromedp.Do(ctx, trigger); err != nil {
		return nil, "", fmt.Errorf("start the download: %w", err)
	}
	var guid string
	for ev, err := range begins {
		if err != nil {
			return nil, "", fmt.Errorf("no download began: %w", err)
		}
		guid, suggested = ev.GUID, ev.SuggestedFilename
		break
	}
	for ev, err := range progress {
		if err != nil {
			return nil, suggested, fmt.Errorf("download of %s did not finish: %w", suggested, err)
		}
		if ev.GUID != guid {
			continue
		}
		switch ev.State {
		case browser.DownloadProgressStateCompleted:
			// allowAndName saves the file under its GUID.
			data, err := os.ReadFile(filepath.Join(c.DownloadDir, guid))
			if err != nil {
				return nil, suggested, fmt.Errorf("read the download: %w", err)
			}
			return data, suggested, nil
		case browser.DownloadProgressStateCanceled:
			return nil, suggested, errors.New("the download was canceled")
		}
	}
	return nil, suggested, fmt.Errorf("download of %s did not finish", suggested)
}

// SPKIPin connects to addr, verifies its certificate with roots, and
// returns the base64 SHA-256 of the leaf's SubjectPublicKeyInfo: the value
// --ignore-certificate-errors-spki-list takes.
func SPKIPin(addr string, roots *x509.CertPool) (string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", addr, err)
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12})
	if err != nil {
		return "", fmt.Errorf("tls to %s: %w", addr, err)
	}
	defer conn.Close()
	leaf := conn.ConnectionState().PeerCertificates[0]
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}
