package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/emsign/bot/internal/testsvc"
)

// actionTimeout bounds every browser action, so that a broken page fails
// the test in seconds rather than at go test's timeout.
const actionTimeout = 10 * time.Second

// browserUI drives the dashboard in Chromium as a person would, saving a
// screenshot of each page it looks at.
type browserUI struct {
	t     *testing.T
	b     *testsvc.Chromium
	base  string // https://127.0.0.1:PORT
	shots string // the screenshot folder
	step  int
	// seen holds the HTML of the pages looked at, for the secrets check.
	seen bytes.Buffer

	mu sync.Mutex
	// alerts are the alert and prompt dialogs that opened: a page's own
	// dialogs are confirmations, so any other means script ran that the
	// page did not ship (the <script> CN).
	alerts []string
}

// screenshotDir is $EMSIGN_SCREENSHOTS, or test-artifacts/screenshots at
// the repository's root; it is created, and emptied of an earlier run's
// pictures.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("EMSIGN_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("..", "test-artifacts", "screenshots")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("screenshot folder: %v", err)
	}
	// The pictures of an earlier run go; nothing else in the folder (it
	// may be one of the user's) is touched.
	for _, pattern := range []string{"[0-9][0-9]-*.png", "FAIL-*.png", "FAIL-*.html"} {
		old, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, f := range old {
			_ = os.Remove(f)
		}
	}
	return dir
}

func newBrowserUI(t *testing.T, b *testsvc.Chromium, base string) *browserUI {
	t.Helper()
	u := &browserUI{t: t, b: b, base: base, shots: screenshotDir(t)}
	t.Logf("screenshots in %s", u.shots)
	// Dialogs: confirmations (forms with data-confirm) are accepted; an
	// alert is recorded and dismissed so that the page goes on.
	dialogs := make(chan *page.EventJavascriptDialogOpening, 16)
	if err := chromedp.Listen(b.Ctx, func(ev any) {
		if ev, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			select {
			case dialogs <- ev:
			default:
			}
		}
	}); err != nil {
		t.Fatalf("listen for dialogs: %v", err)
	}
	go func() {
		for {
			select {
			case <-b.Ctx.Done():
				return
			case ev := <-dialogs:
				accept := ev.Type == page.DialogTypeConfirm || ev.Type == page.DialogTypeBeforeunload
				if !accept {
					u.mu.Lock()
					u.alerts = append(u.alerts, fmt.Sprintf("%s %q on %s", ev.Type, ev.Message, ev.URL))
					u.mu.Unlock()
				}
				ctx, cancel := context.WithTimeout(b.Ctx, 5*time.Second)
				_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: accept})
				cancel()
			}
		}
	}()
	return u
}

func (u *browserUI) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(u.b.Ctx, actionTimeout)
}

// fatalf fails the test after saving a screenshot and the HTML of the
// page as it is, named in the message.
func (u *browserUI) fatalf(format string, args ...any) {
	u.t.Helper()
	u.t.Fatalf("%s%s", fmt.Sprintf(format, args...), u.evidence())
}

// errorf is fatalf that lets the test go on.
func (u *browserUI) errorf(format string, args ...any) {
	u.t.Helper()
	u.t.Errorf("%s%s", fmt.Sprintf(format, args...), u.evidence())
}

// evidence saves the page's screenshot and HTML for a failure and says
// where they are.
func (u *browserUI) evidence() string {
	ctx, cancel := context.WithTimeout(u.b.Ctx, 5*time.Second)
	defer cancel()
	name := fmt.Sprintf("FAIL-%02d", u.step+1)
	for i := 2; ; i++ { // several failures at one step keep their files
		if _, err := os.Stat(filepath.Join(u.shots, name+".png")); err != nil {
			break
		}
		name = fmt.Sprintf("FAIL-%02d-%d", u.step+1, i)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	var saved []string
	if png, err := chromedp.Run(ctx, fullScreenshotPNG); err == nil {
		p := filepath.Join(u.shots, name+".png")
		if os.WriteFile(p, png, 0o644) == nil {
			saved = append(saved, p)
		}
	}
	if html, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`)); err == nil {
		p := filepath.Join(u.shots, name+".html")
		if os.WriteFile(p, []byte(html), 0o644) == nil {
			saved = append(saved, p)
		}
	}
	return fmt.Sprintf("\n  page %s; saved %s", loc, strings.Join(saved, ", "))
}

// shot saves a full-page screenshot as NN-name.png and keeps the page's
// HTML for the secrets check.
func (u *browserUI) shot(name string) {
	u.t.Helper()
	ctx, cancel := u.ctx()
	defer cancel()
	u.step++
	png, err := chromedp.Run(ctx, fullScreenshotPNG)
	if err != nil {
		u.fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(u.shots, fmt.Sprintf("%02d-%s.png", u.step, name)), png, 0o644); err != nil {
		u.t.Fatal(err)
	}
	u.seen.WriteString(u.html())
	u.checkAlerts()
}

func (u *browserUI) checkAlerts() {
	u.t.Helper()
	u.mu.Lock()
	alerts := u.alerts
	u.alerts = nil
	u.mu.Unlock()
	for _, a := range alerts {
		u.errorf("a dialog opened that no page of the dashboard opens (script from the data ran?): %s", a)
	}
}

// open navigates to path and returns the HTTP status of the page.
func (u *browserUI) open(path string) int64 {
	u.t.Helper()
	ctx, cancel := u.ctx()
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(u.base+path))
	if err != nil {
		u.fatalf("open %s: %v", path, err)
	}
	return resp.Status
}

// path is the path (and query) of the page shown.
func (u *browserUI) path() string {
	u.t.Helper()
	return jsValue[string](u, `location.pathname + location.search`)
}

// jsValue evaluates a JavaScript expression in the page.
func jsValue[T any](u *browserUI, expr string) T {
	u.t.Helper()
	ctx, cancel := u.ctx()
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		u.fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// jsString quotes s for JavaScript.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// has reports whether the page has an element matching sel (no waiting:
// the pages are rendered on the server).
func (u *browserUI) has(sel string) bool {
	u.t.Helper()
	return jsValue[bool](u, `document.querySelector(`+jsString(sel)+`) !== null`)
}

// must fails the test unless the page has an element matching sel.
func (u *browserUI) must(sel string) {
	u.t.Helper()
	if !u.has(sel) {
		u.fatalf("no %s on %s", sel, u.path())
	}
}

// text is the trimmed textContent of the first element matching sel.
func (u *browserUI) text(sel string) string {
	u.t.Helper()
	u.must(sel)
	return strings.TrimSpace(jsValue[string](u, `document.querySelector(`+jsString(sel)+`).textContent`))
}

// count is the number of elements matching sel.
func (u *browserUI) count(sel string) int {
	u.t.Helper()
	return jsValue[int](u, `document.querySelectorAll(`+jsString(sel)+`).length`)
}

// attr is an attribute of the first element matching sel.
func (u *browserUI) attr(sel, name string) string {
	u.t.Helper()
	u.must(sel)
	return jsValue[string](u, `document.querySelector(`+jsString(sel)+`).getAttribute(`+jsString(name)+`) || ""`)
}

func (u *browserUI) html() string {
	u.t.Helper()
	return jsValue[string](u, `document.documentElement.outerHTML`)
}

// fill sets the fields of form (by name): text, password, select and
// textarea values; for a checkbox, "" unchecks and anything else checks;
// for radio buttons, the one with the value is checked.
func (u *browserUI) fill(form string, fields map[string]string) {
	u.t.Helper()
	u.must(form)
	b, _ := json.Marshal(fields)
	problem := jsValue[string](u, `(function (form, fields) {
	const f = document.querySelector(form);
	for (const [name, value] of Object.entries(fields)) {
		const el = f.elements.namedItem(name);
		if (!el) { return "no field " + name; }
		if (el instanceof RadioNodeList) {
			let found = false;
			for (const r of el) {
				if (r.type === "radio") { r.checked = r.value === value; found = found || r.checked; }
			}
			if (!found) { return "field " + name + " has no choice " + value; }
			continue;
		}
		if (el.type === "checkbox") { el.checked = value !== ""; continue; }
		if (el.tagName === "SELECT" && ![...el.options].some(o => o.value === value)) {
			return "field " + name + " has no option " + value;
		}
		el.value = value;
		el.dispatchEvent(new Event("input", {bubbles: true}));
		el.dispatchEvent(new Event("change", {bubbles: true}));
	}
	return "";
})(`+jsString(form)+`, `+string(b)+`)`)
	if problem != "" {
		u.fatalf("form %s: %s", form, problem)
	}
}

// submit fills form and clicks its (first) submit button, as a person
// would, and returns the status of the page that answers.
func (u *browserUI) submit(form string, fields map[string]string) int64 {
	u.t.Helper()
	if fields != nil {
		u.fill(form, fields)
	}
	button := form + ` button:not([type]), ` + form + ` button[type=submit], ` + form + ` input[type=submit]`
	u.must(button)
	ctx, cancel := u.ctx()
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(button)))
	if err != nil {
		u.fatalf("submit %s: %v", form, err)
	}
	return resp.Status
}

// download clicks the link sel and returns the file it downloads and the
// name the server gave it.
func (u *browserUI) download(sel string) ([]byte, string) {
	u.t.Helper()
	u.must(sel)
	data, name, err := u.b.Download(chromedp.Click(chromedp.CSS(sel)), actionTimeout)
	if err != nil {
		u.fatalf("download %s (%s): %v", sel, u.attr(sel, "href"), err)
	}
	return data, name
}

// activeElement describes the focused element: its id, or its name, or
// its tag and type.
func (u *browserUI) activeElement() string {
	u.t.Helper()
	return jsValue[string](u, `(function () {
	const e = document.activeElement;
	if (!e) { return ""; }
	return e.id || e.getAttribute("name") || (e.tagName.toLowerCase() + (e.type ? "[type=" + e.type + "]" : ""));
})()`)
}

// key sends keys (chromedp.KeyEvent: "\t" is Tab, "\r" Enter) to the page.
func (u *browserUI) key(keys string) {
	u.t.Helper()
	ctx, cancel := u.ctx()
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.KeyEvent(keys)); err != nil {
		u.fatalf("keys %q: %v", keys, err)
	}
}

// keyNavigate sends keys that submit a form or follow a link and returns
// the status of the page that answers.
func (u *browserUI) keyNavigate(keys string) int64 {
	u.t.Helper()
	ctx, cancel := u.ctx()
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.KeyEvent(keys))
	if err != nil {
		u.fatalf("keys %q: %v", keys, err)
	}
	return resp.Status
}

// fullScreenshotPNG is chromedp.FullScreenshot(100) (the whole page, as
// PNG) with the encoding optimised for speed: some 25 pages, a few of them
// long, would otherwise take much of the test's time.
func fullScreenshotPNG(ctx context.Context, t *chromedp.Target) ([]byte, error) {
	yes := true
	r, err := cdp.Call(ctx, t, page.CaptureScreenshot, page.CaptureScreenshotParams{
		CaptureBeyondViewport: &yes, FromSurface: &yes, OptimizeForSpeed: &yes, Format: page.CaptureScreenshotFormatPng,
	})
	if err != nil {
		return nil, fmt.Errorf("screenshot: %w", err)
	}
	return r.Data, nil
}
