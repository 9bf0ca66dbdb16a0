package web

import (
	"net/http"
	"net/url"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

func (s *Server) dashboardRoutes() {
	s.mux.Handle("GET /{$}", s.page(rbac.ViewDashboard, s.dashboard))
	// Any other path nobody registered: the error page rather than the
	// mux's plain text.
	s.mux.Handle("/", http.HandlerFunc(s.notFound))
}

// notFound answers a path no page has, in the layout (with the viewer
// when there is a session, so that the navigation stays).
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	v, ok, err := s.session(r.Context(), r)
	if err != nil || !ok || v.Session.Stage != store.SessionOK {
		v = nil
	}
	s.fail(w, r, v, http.StatusNotFound, "There is no such page.")
}

// maxDashboardBots bounds the bots table (each row reads its scans).
const maxDashboardBots = 100

// dashboardData is what templates/dashboard.html shows.
type dashboardData struct {
	D      store.Dashboard
	Charts []chartData
	Bots   []dashboardBot
	// MoreBots is how many bots the table leaves out.
	MoreBots int
	// Provisioning are the certificates by order status (S5), each
	// linking to the orders in that status.
	Provisioning []provisioningStat
}

// provisioningStat is one of the S5 numbers: Stat names it in the page
// (data-stat certificates.STAT, id count-STAT), Status is the order
// status it counts.
type provisioningStat struct {
	Label, Stat, Status string
	Count               int
}

// provisioningStats are the S5 numbers in the order an order moves.
func provisioningStats(c store.CertificateCounts) []provisioningStat {
	return []provisioningStat{
		{"Initiated", "initiated", store.OrderInitiated, c.Initiated},
		{"Issued", "issued", store.OrderIssued, c.Issued},
		{"Deployed", "deployed", store.OrderDeployed, c.Deployed},
		{"Rotated", "rotated", store.OrderRotated, c.Rotated},
		{"Re-keyed", "rekeyed", store.OrderRekeyed, c.Rekeyed},
		{"Revoked", "revoked", store.OrderRevoked, c.Revoked},
		{"Suspended", "suspended", store.OrderSuspended, c.Suspended},
	}
}

// chartData is one chart and its numbers as a table.
type chartData struct {
	ID, Title string
	SVG       SVG
	Bars      []bar
	// Caption explains what the chart counts.
	Caption string
}

func (s *Server) dashboard(w http.ResponseWriter, r *http.Request, v *Viewer) {
	ctx := r.Context()
	now := s.now()
	account := v.User.Account
	d, err := s.st.Dashboard(ctx, account, now)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	data := dashboardData{D: d, Provisioning: provisioningStats(d.Certificates)}
	data.Charts = dashboardCharts(d, now)
	if v.Can(string(rbac.ViewBots)) {
		bots, err := s.st.Bots(ctx, account)
		if err != nil {
			s.serverError(w, r, v, err)
			return
		}
		if len(bots) > maxDashboardBots {
			data.MoreBots = len(bots) - maxDashboardBots
			bots = bots[:maxDashboardBots]
		}
		for _, b := range bots {
			bv, err := admin.ViewBot(ctx, s.st, b, now)
			if err != nil {
				s.serverError(w, r, v, err)
				return
			}
			data.Bots = append(data.Bots, dashboardBot{BotView: bv, StatusLabel: botStatusLabel(bv.Status)})
		}
	}
	s.render(w, r, v, http.StatusOK, "dashboard", "Dashboard", data)
}

// dashboardCharts turns the numbers into the four charts. The expiry bars
// link to the certificate search for the same window; its filters work on
// whole UTC days, so a bar's list is the day-rounded version of its count
// (and also lists certificates no longer found, which the count leaves
// out).
func dashboardCharts(d store.Dashboard, now time.Time) []chartData {
	today := now.UTC().Truncate(24 * time.Hour)
	day := func(n int) string { return today.AddDate(0, 0, n).Format(dateLayout) }
	search := func(after, before string) string {
		q := url.Values{}
		if after != "" {
			q.Set("expires_after", after)
		}
		if before != "" {
			q.Set("expires_before", before)
		}
		q.Set("sort", store.SortNotAfter)
		return "/certificates?" + q.Encode()
	}
	e := d.Expiring
	expiring := []bar{
		{Label: "Expired", Count: e.Expired, Href: search("", day(1))},
		{Label: "≤ 7 days", Count: e.Within7, Href: search(day(0), day(8))},
		{Label: "8–30 days", Count: e.Within30, Href: search(day(7), day(31))},
		{Label: "31–60 days", Count: e.Within60, Href: search(day(30), day(61))},
		{Label: "61–90 days", Count: e.Within90, Href: search(day(60), day(91))},
		{Label: "Later", Count: e.Later, Href: search(day(90), "")},
	}
	toBars := func(bs []store.Bucket, link func(string) string) []bar {
		out := make([]bar, 0, len(bs))
		for _, b := range bs {
			label := b.Label
			if label == "" {
				label = "(none)"
			}
			br := bar{Label: label, Count: b.Count}
			if link != nil && b.Label != "" && b.Label != "Other" {
				br.Href = link(b.Label)
			}
			out = append(out, br)
		}
		return out
	}
	issuerLink := func(l string) string { return "/certificates?" + url.Values{"issuer": {l}}.Encode() }
	sourceLink := func(l string) string { return "/certificates?" + url.Values{"source": {l}}.Encode() }
	issuers := toBars(d.ByIssuer, issuerLink)
	// The issuer chart names the issuer by its CN (the bar's link and
	// tooltip keep the whole name).
	for i := range issuers {
		if cn := dnCommonName(issuers[i].Label); cn != "" && issuers[i].Label != "Other" {
			issuers[i].Label = cn
		}
	}
	charts := []chartData{
		{ID: "chart-expiring", Title: "Certificates by time left", Bars: expiring,
			Caption: "Certificates still found, by the days left before they expire."},
		{ID: "chart-issuer", Title: "Certificates by issuer", Bars: issuers,
			Caption: "The ten most common issuers; the rest as Other."},
		{ID: "chart-key", Title: "Certificates by key", Bars: toBars(d.ByKey, nil),
			Caption: "Key algorithm and size of the certificates still found."},
		{ID: "chart-source", Title: "Certificates by source", Bars: toBars(d.BySource, sourceLink),
			Caption: "Where certificates were found; one found in two kinds of place counts in both."},
	}
	for i := range charts {
		charts[i].SVG = barChart(charts[i].ID, charts[i].Title, charts[i].Bars)
	}
	return charts
}

// dashboardBot is a row of the bots table.
type dashboardBot struct {
	admin.BotView
	StatusLabel string
}

// botStatusLabel says a bot's status in words.
func botStatusLabel(status string) string {
	switch status {
	case protocol.BotActive:
		return "active"
	case protocol.BotActivationPending:
		return "waiting for activation"
	case protocol.BotSuspended:
		return "suspended"
	case protocol.BotInactive:
		return "inactive"
	}
	return status
}
