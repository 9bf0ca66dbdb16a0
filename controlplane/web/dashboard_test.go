package web

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/store"
)

// stat reads the number of a data-stat element.
func stat(t *testing.T, body []byte, name string) string {
	t.Helper()
	m := regexp.MustCompile(`data-stat="` + regexp.QuoteMeta(name) + `"[^>]*>(\d+)<`).FindSubmatch(body)
	if m == nil {
		t.Errorf("no data-stat %q", name)
		return ""
	}
	return string(m[1])
}

func TestDashboardNumbers(t *testing.T) {
	e := newCertEnv(t)
	r := e.get("/")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	want := map[string]int{
		"certificates.discovered": 65, "certificates.expired": 1, "certificates.gone": 0,
		"certificates.not_configured": 65, "certificates.configured": 0, "certificates.initiated": 0,
		"certificates.issued": 0, "certificates.deployed": 0, "certificates.revoked": 0, "certificates.rotated": 0,
		"certificates.rekeyed": 0, "certificates.suspended": 0, "certificates.vulnerable": 0,
		"endpoints.scanned": 3, "endpoints.protected": 2, "endpoints.unprotected": 1,
		"keys.total": 1, "keys.symmetric": 0, "keys.asymmetric": 1, "keys.in_templates": 0, "keys.rotated": 0,
		"templates.csr": 0, "templates.provisioning": 0, "templates.key_profiles": 0, "templates.email": 0,
		"templates.csrs": 0, "templates.keystores": 0,
		"bots.total": 2, "bots.online": 2, "bots.active": 1, "bots.pending": 1, "bots.suspended": 0, "bots.inactive": 0,
	}
	for name, n := range want {
		if got := stat(t, r.body, name); got != fmt.Sprint(n) {
			t.Errorf("%s = %s, want %d", name, got, n)
		}
	}
	body := string(r.body)
	if strings.Contains(body, "style=") {
		t.Errorf("an inline style attribute (the CSP forbids it)")
	}
	for _, id := range []string{"chart-expiring", "chart-issuer", "chart-key", "chart-source"} {
		if !strings.Contains(body, `<svg id="`+id+`" class="chart" role="img" aria-labelledby="`+id+`-title"`) ||
			!strings.Contains(body, `<title id="`+id+`-title">`) {
			t.Errorf("%s: no svg with role=img and its title", id)
		}
		if !strings.Contains(body, `<table id="`+id+`-table">`) {
			t.Errorf("%s: no table fallback", id)
		}
	}
	// The table fallback of the expiry chart has the same numbers.
	expiring := regexp.MustCompile(`(?s)<table id="chart-expiring-table">.*?</table>`).FindString(body)
	var counts []string
	for _, m := range regexp.MustCompile(`<td class="num">(\d+)</td>`).FindAllStringSubmatch(expiring, -1) {
		counts = append(counts, m[1])
	}
	if got := strings.Join(counts, " "); got != "1 1 0 1 0 62" {
		t.Errorf("expiry table %q, want 1 1 0 1 0 62", got)
	}
	// The ≤ 7 days bar links to the search of that window, which finds it.
	day := e.now.UTC().Truncate(24 * time.Hour)
	link := "/certificates?expires_after=" + day.Format(dateLayout) + "&amp;expires_before=" + day.AddDate(0, 0, 8).Format(dateLayout) +
		"&amp;sort=not_after"
	if !strings.Contains(body, `href="`+link+`"`) {
		t.Errorf("no link %s", link)
	} else if fps := listed(e.get(html.UnescapeString(link)).body); len(fps) != 1 || fps[0] != e.fp["xss"] {
		t.Errorf("the ≤ 7 days link lists %v", fps)
	}
	// The bots and their last scans.
	table := regexp.MustCompile(`(?s)<table id="dashboard-bots".*?</table>`).FindString(body)
	for _, want := range []string{`<a href="/bots/` + e.botA + `">web-bot</a>`, `file-bot &lt;b&gt;`, "active",
		`<td class="num">63</td>`, `waiting for activation`, e.now.UTC().Format("2006-01-02 15:04 UTC")} {
		if !strings.Contains(table, want) {
			t.Errorf("bots table lacks %q:\n%s", want, table)
		}
	}
}

func TestDashboardEmptyAccount(t *testing.T) {
	e := newCertEnv(t)
	ctx := context.Background()
	other, err := e.st.CreateAccount(ctx, "Empty")
	if err != nil {
		t.Fatal(err)
	}
	tok := loginAs(t, e.st, other.ID, "empty@example.com", "discovery_user", e.now)
	r := getPage(t, e.srv, tok, "/")
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	for _, name := range []string{"certificates.discovered", "endpoints.scanned", "bots.total", "keys.total"} {
		if got := stat(t, r.body, name); got != "0" {
			t.Errorf("%s = %s in an empty account", name, got)
		}
	}
	if strings.Contains(string(r.body), "www.example.com") || strings.Contains(string(r.body), "web-bot") {
		t.Errorf("another account's data shows")
	}
}

func TestBarChart(t *testing.T) {
	tests := []struct {
		name string
		bars []bar
	}{
		{"none", nil},
		{"escaped", []bar{{Label: xssCN, Count: 3, Href: `/certificates?issuer=a&b="c"`}, {Label: `O'Brien & <Sons>`, Count: 0}}},
		{"many", []bar{{Label: "a", Count: 1}, {Label: "b", Count: 1000000}, {Label: strings.Repeat("é", 40), Count: 5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svg := string(barChart("chart-x", `Title <&>`, tt.bars))
			// Well-formed XML: every text escaped, every element closed.
			d := xml.NewDecoder(strings.NewReader(svg))
			for {
				_, err := d.Token()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("not well-formed: %v\n%s", err, svg)
				}
			}
			if strings.Contains(svg, "<script") || strings.Contains(svg, "<Sons>") || strings.Contains(svg, "style=") {
				t.Errorf("unescaped text or a style attribute: %s", svg)
			}
			if !strings.HasPrefix(svg, `<svg id="chart-x" class="chart" role="img" aria-labelledby="chart-x-title"`) {
				t.Errorf("no role/aria-labelledby: %s", svg)
			}
			if !strings.Contains(svg, `<title id="chart-x-title">Title &lt;&amp;&gt;`) {
				t.Errorf("title not escaped: %s", svg)
			}
		})
	}
	if svg := string(barChart("c", "t", []bar{{Label: xssCN, Count: 1}})); !strings.Contains(svg, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the label is not in the chart escaped: %s", svg)
	}
}

// The store gives the dashboard what it has; a failure is a 500 page that
// does not repeat the error.
type failingDashboardStore struct{ store.Store }

func (failingDashboardStore) Dashboard(context.Context, string, time.Time) (store.Dashboard, error) {
	return store.Dashboard{}, errors.New("disk on fire")
}

func TestDashboardStoreFailure(t *testing.T) {
	e := newCertEnv(t)
	srv := newTestWebServer(t, failingDashboardStore{e.st}, func() time.Time { return e.now })
	r := getPage(t, srv, e.token, "/")
	if r.status != http.StatusInternalServerError || strings.Contains(string(r.body), "disk on fire") {
		t.Errorf("status %d, body repeats the error: %v", r.status, strings.Contains(string(r.body), "disk on fire"))
	}
}
