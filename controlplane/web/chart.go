package web

import (
	"html"
	"strconv"
	"strings"
)

// bar is one bar of a chart: its label, its count and, when set, the page
// it links to (the certificate search that lists what it counts).
type bar struct {
	Label string
	Count int
	Href  string
}

// Chart sizes, in SVG user units (the SVG scales to its box through
// viewBox, so these are proportions rather than pixels).
const (
	chartWidth  = 420
	chartLabelW = 150 // room for the labels at the left
	chartCountW = 60  // room for the count at the right of the longest bar
	chartRowH   = 24
	chartBarH   = 16
	chartPad    = 6
)

// chartColors are the bars' fills, in turn; each has AA contrast against
// the white background for the bar itself (the text is drawn beside it).
var chartColors = [...]string{"#0a58ca", "#1a7f37", "#9a6700", "#8250df", "#b42318", "#0e7490", "#57606a"}

// barChart draws a horizontal bar chart as inline SVG: role="img" and
// aria-labelledby its <title>, every text (labels come from certificates:
// attacker-chosen) escaped here, because the template takes the result as
// trusted markup. Presentation goes in attributes, never style=, which the
// CSP forbids. The page puts the same numbers in a table next to it.
func barChart(id, title string, bars []bar) SVG {
	maxCount := 0
	for _, b := range bars {
		maxCount = max(maxCount, b.Count)
	}
	rows := max(len(bars), 1)
	height := rows*chartRowH + 2*chartPad
	span := chartWidth - chartLabelW - chartCountW
	var sb strings.Builder
	esc := html.EscapeString
	titleID := id + "-title"
	sb.WriteString(`<svg id="` + esc(id) + `" class="chart" role="img" aria-labelledby="` + esc(titleID) +
		`" viewBox="0 0 ` + strconv.Itoa(chartWidth) + ` ` + strconv.Itoa(height) +
		`" width="100%" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">`)
	sb.WriteString(`<title id="` + esc(titleID) + `">` + esc(chartSummary(title, bars)) + `</title>`)
	if len(bars) == 0 {
		sb.WriteString(`<text x="` + strconv.Itoa(chartPad) + `" y="` + strconv.Itoa(chartPad+chartRowH/2+4) +
			`">Nothing to show yet</text></svg>`)
		return SVG(sb.String())
	}
	for i, b := range bars {
		y := chartPad + i*chartRowH
		w := 0
		if maxCount > 0 {
			w = b.Count * span / maxCount
		}
		if b.Count > 0 {
			w = max(w, 2) // a small count still shows
		}
		textY := strconv.Itoa(y + chartRowH/2 + 4)
		if b.Href != "" {
			sb.WriteString(`<a href="` + esc(b.Href) + `">`)
		}
		sb.WriteString(`<text x="` + strconv.Itoa(chartLabelW-chartPad) + `" y="` + textY + `" text-anchor="end">` +
			esc(cutLabel(b.Label, 22)) + `</text>`)
		sb.WriteString(`<rect x="` + strconv.Itoa(chartLabelW) + `" y="` + strconv.Itoa(y+(chartRowH-chartBarH)/2) +
			`" width="` + strconv.Itoa(w) + `" height="` + strconv.Itoa(chartBarH) + `" fill="` + chartColors[i%len(chartColors)] +
			`"><title>` + esc(b.Label+": "+strconv.Itoa(b.Count)) + `</title></rect>`)
		sb.WriteString(`<text x="` + strconv.Itoa(chartLabelW+w+chartPad) + `" y="` + textY + `">` + strconv.Itoa(b.Count) + `</text>`)
		if b.Href != "" {
			sb.WriteString(`</a>`)
		}
	}
	sb.WriteString(`</svg>`)
	return SVG(sb.String())
}

// chartSummary is the chart's accessible name: its title and its numbers,
// so that a screen reader hears what the bars show.
func chartSummary(title string, bars []bar) string {
	if len(bars) == 0 {
		return title + ": nothing yet"
	}
	parts := make([]string, 0, len(bars))
	for _, b := range bars {
		parts = append(parts, b.Label+" "+strconv.Itoa(b.Count))
	}
	return title + ": " + strings.Join(parts, ", ")
}

// cutLabel shortens a long label (an issuer's name) to n characters,
// counted in runes so that a multi-byte character is never split.
func cutLabel(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
