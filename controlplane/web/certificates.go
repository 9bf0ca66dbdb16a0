package web

import (
	"crypto/ecdsa"
	"crypto/sha1" //nolint:gosec // SHA-1 fingerprints are shown because tools and people still compare them; nothing is trusted on them.
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

func (s *Server) certRoutes() {
	s.mux.Handle("GET /certificates", s.page(rbac.ViewCertificates, s.certificates))
	s.mux.Handle("GET /certificates/export.csv", s.page(rbac.ViewCertificates, s.exportCSV))
	s.mux.Handle("GET /certificates/export.xlsx", s.page(rbac.ViewCertificates, s.exportXLSX))
	s.mux.Handle("GET /certificates/{fp}", s.page(rbac.ViewCertificates, s.certificate))
	s.mux.Handle("GET /certificates/{fp}/download", s.page(rbac.ViewCertificates, s.downloadCertificate))
}

// dateLayout is how the search's dates are written (an <input type=date>).
const dateLayout = "2006-01-02"

// listPageSize is the certificates a list page shows.
const listPageSize = 50

// maxFilterLen bounds a text filter (a search is a LIKE over every row:
// an enormous pattern is only a way to make it slow).
const maxFilterLen = 200

// certSorts are the orders the list offers, with their labels.
var certSorts = []struct{ Value, Label string }{
	{store.SortNotAfter, "Expiry"},
	{store.SortCommonName, "Common name"},
	{store.SortIssuer, "Issuer"},
	{store.SortFirstSeen, "First seen"},
}

// certQuery is a certificate search as the page's query string says it:
// the form's values as typed (to fill the form again) and the store filter
// they make.
type certQuery struct {
	Q, Issuer, Source, Bot, Location, Type string
	ExpiresAfter, ExpiresBefore            string
	Sort, Order                            string
	Page                                   int
	Filter                                 store.CertificateFilter
}

// fieldError is bad input in one field: the page answers 400 naming it.
type fieldError struct {
	Field, Msg string
}

func (e *fieldError) Error() string { return e.Field + ": " + e.Msg }

// parseCertQuery reads the search from a query string. Unknown values of
// closed fields (sort, order, type) and unparsable dates or pages are
// errors naming the field, never silently ignored: the user would
// otherwise read a list that is not what they asked for.
func parseCertQuery(q url.Values) (certQuery, error) {
	c := certQuery{
		Q: strings.TrimSpace(q.Get("q")), Issuer: strings.TrimSpace(q.Get("issuer")), Source: strings.TrimSpace(q.Get("source")),
		Bot: strings.TrimSpace(q.Get("bot")), Location: strings.TrimSpace(q.Get("location")), Type: q.Get("type"),
		ExpiresAfter: strings.TrimSpace(q.Get("expires_after")), ExpiresBefore: strings.TrimSpace(q.Get("expires_before")),
		Sort: q.Get("sort"), Order: q.Get("order"), Page: 1,
	}
	for _, f := range []struct{ name, v string }{{"q", c.Q}, {"issuer", c.Issuer}, {"source", c.Source}, {"bot", c.Bot}, {"location", c.Location}} {
		if len(f.v) > maxFilterLen {
			return c, &fieldError{f.name, fmt.Sprintf("at most %d characters", maxFilterLen)}
		}
	}
	f := store.CertificateFilter{Q: c.Q, Issuer: c.Issuer, Source: c.Source, BotID: c.Bot, Location: c.Location}
	switch c.Type {
	case "", "any":
		c.Type = ""
	case "ca", "leaf":
		f.Type = c.Type
	default:
		return c, &fieldError{"type", "want any, ca or leaf"}
	}
	for _, d := range []struct {
		name, v string
		to      *time.Time
	}{{"expires_after", c.ExpiresAfter, &f.ExpiresAfter}, {"expires_before", c.ExpiresBefore, &f.ExpiresBefore}} {
		if d.v == "" {
			continue
		}
		t, err := time.Parse(dateLayout, d.v)
		if err != nil {
			return c, &fieldError{d.name, "want a date as YYYY-MM-DD"}
		}
		*d.to = t.UTC() // the start of that day, UTC
	}
	if c.Sort == "" {
		c.Sort = store.SortNotAfter
	}
	if !slices.ContainsFunc(certSorts, func(s struct{ Value, Label string }) bool { return s.Value == c.Sort }) {
		return c, &fieldError{"sort", "want not_after, common_name, issuer or first_seen"}
	}
	f.Sort = c.Sort
	switch c.Order {
	case "", "asc":
		c.Order = "asc"
	case "desc":
		f.Desc = true
	default:
		return c, &fieldError{"order", "want asc or desc"}
	}
	if p := q.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 1_000_000 {
			return c, &fieldError{"page", "want a page number from 1"}
		}
		c.Page = n
	}
	f.Limit = listPageSize
	f.Offset = (c.Page - 1) * listPageSize
	c.Filter = f
	return c, nil
}

// values is the search as a query string, with the page and the order
// changed as asked ("" keeps the current one); empty fields are left out
// so that links stay short.
func (c certQuery) values(sortBy, order string, page int) url.Values {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("q", c.Q)
	set("issuer", c.Issuer)
	set("source", c.Source)
	set("bot", c.Bot)
	set("location", c.Location)
	set("type", c.Type)
	set("expires_after", c.ExpiresAfter)
	set("expires_before", c.ExpiresBefore)
	if sortBy == "" {
		sortBy = c.Sort
	}
	if order == "" {
		order = c.Order
	}
	set("sort", sortBy)
	set("order", order)
	if page > 1 {
		v.Set("page", strconv.Itoa(page))
	}
	return v
}

// Link is the list's URL at another page, same search.
func (c certQuery) Link(page int) string { return "/certificates?" + c.values("", "", page).Encode() }

// Export is the URL of an export of the same search (every page).
func (c certQuery) Export(ext string) string {
	v := c.values("", "", 1)
	return "/certificates/export." + ext + "?" + v.Encode()
}

// SortLink is a column header's link: that column ascending, or the other
// way when it is already the order.
func (c certQuery) SortLink(col string) string {
	order := "asc"
	if c.Sort == col && c.Order == "asc" {
		order = "desc"
	}
	return "/certificates?" + c.values(col, order, 1).Encode()
}

// AriaSort is a column header's aria-sort value; "" for a column the list
// is not sorted by.
func (c certQuery) AriaSort(col string) string {
	if c.Sort != col {
		return ""
	}
	if c.Order == "desc" {
		return "descending"
	}
	return "ascending"
}

// Summary describes the search in words, for the audit log of an export.
func (c certQuery) Summary() string {
	v := c.values("", "", 0)
	v.Del("page")
	if len(v) == 0 {
		return "all certificates"
	}
	return v.Encode()
}

// certRow is one line of the list.
type certRow struct {
	store.Certificate
	IssuerCN  string
	SANsShown []string
	SANsMore  int
	DaysLeft  int
	Class     string // bad (expired), warn (30 days or fewer), ""
	FirstURI  string
	BotNames  []namedBot
}

// namedBot is a bot as a list shows it.
type namedBot struct{ ID, Name string }

// certListData is what templates/certificates.html shows.
type certListData struct {
	Query   certQuery
	Error   *fieldError
	Rows    []certRow
	Count   int
	Pages   []pageLink
	Prev    string
	Next    string
	Issuers []string
	Sources []string
	Bots    []namedBot
	Sorts   []struct{ Value, Label string }
	// First and Last number the rows shown (1-based).
	First, Last int
}

// pageLink is one entry of the pager; Gap is an ellipsis.
type pageLink struct {
	N       int
	Href    string
	Current bool
	Gap     bool
}

func (s *Server) certificates(w http.ResponseWriter, r *http.Request, v *Viewer) {
	ctx := r.Context()
	account := v.User.Account
	cq, perr := parseCertQuery(r.URL.Query())
	data := certListData{Query: cq, Sorts: certSorts}
	issuers, sources, err := s.st.FacetValues(ctx, account)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	data.Issuers, data.Sources = issuers, sources
	bots, err := s.st.Bots(ctx, account)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	names := map[string]string{}
	for _, b := range bots {
		names[b.ID] = b.Name
		data.Bots = append(data.Bots, namedBot{ID: b.ID, Name: b.Name})
	}
	if perr != nil {
		var fe *fieldError
		errors.As(perr, &fe)
		data.Error = fe
		s.render(w, r, v, http.StatusBadRequest, "certificates", "Certificates", data)
		return
	}
	n, err := s.st.CountCertificates(ctx, account, cq.Filter)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	data.Count = n
	certs, _, err := s.st.Certificates(ctx, account, cq.Filter)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	now := s.now()
	for _, c := range certs {
		data.Rows = append(data.Rows, newCertRow(c, now, names))
	}
	if len(data.Rows) > 0 {
		data.First = cq.Filter.Offset + 1
		data.Last = cq.Filter.Offset + len(data.Rows)
	}
	pages := (n + listPageSize - 1) / listPageSize
	data.Pages = pager(cq, pages)
	if cq.Page > 1 && pages > 0 {
		data.Prev = cq.Link(min(cq.Page-1, pages))
	}
	if cq.Page < pages {
		data.Next = cq.Link(cq.Page + 1)
	}
	s.render(w, r, v, http.StatusOK, "certificates", "Certificates", data)
}

// pager lists the page numbers to offer: the first, the last, and two
// either side of the current one, with gaps between.
func pager(cq certQuery, pages int) []pageLink {
	if pages <= 1 {
		return nil
	}
	nums := []int{1}
	for p := max(2, cq.Page-2); p <= min(pages-1, cq.Page+2); p++ {
		nums = append(nums, p)
	}
	nums = append(nums, pages)
	var out []pageLink
	for i, p := range nums {
		if i > 0 && p > nums[i-1]+1 {
			out = append(out, pageLink{Gap: true})
		}
		out = append(out, pageLink{N: p, Href: cq.Link(p), Current: p == cq.Page})
	}
	return out
}

func newCertRow(c store.Certificate, now time.Time, botNames map[string]string) certRow {
	row := certRow{Certificate: c, IssuerCN: dnCommonName(c.Issuer), DaysLeft: daysLeft(now, c.NotAfter)}
	if row.IssuerCN == "" {
		row.IssuerCN = c.Issuer
	}
	row.SANsShown = c.SANs
	if len(c.SANs) > 3 {
		row.SANsShown, row.SANsMore = c.SANs[:3], len(c.SANs)-3
	}
	switch {
	case !c.NotAfter.After(now):
		row.Class = "bad"
	case row.DaysLeft <= 30:
		row.Class = "warn"
	}
	if len(c.Locations) > 0 {
		row.FirstURI = c.Locations[0].URI
	}
	seen := map[string]bool{}
	for _, l := range c.Locations {
		if l.BotID == "" || seen[l.BotID] {
			continue
		}
		seen[l.BotID] = true
		name := botNames[l.BotID]
		if name == "" {
			name = l.BotID
		}
		row.BotNames = append(row.BotNames, namedBot{ID: l.BotID, Name: name})
	}
	return row
}

// daysLeft is the whole days from now to t, rounded down: negative once t
// is past (-1 during the first day after).
func daysLeft(now, t time.Time) int {
	d := t.Sub(now)
	days := int(d / (24 * time.Hour))
	if d < 0 && d%(24*time.Hour) != 0 {
		days--
	}
	return days
}

// dnCommonName finds the CN in a distinguished name as
// pkix.Name.String writes it ("CN=R11,O=Let's Encrypt,C=US", with
// "\," escapes); "" when it has none.
func dnCommonName(dn string) string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(dn); i++ {
		switch ch := dn[i]; {
		case ch == '\\' && i+1 < len(dn):
			cur.WriteByte(dn[i+1])
			i++
		case ch == ',' || ch == '+':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(ch)
		}
	}
	parts = append(parts, cur.String())
	for _, p := range parts {
		if v, ok := strings.CutPrefix(p, "CN="); ok {
			return v
		}
	}
	return ""
}

// isFingerprint is 64 hex digits: a SHA-256.
func isFingerprint(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32
}

// ---- one certificate

// certViewData is what templates/certificate.html shows.
type certViewData struct {
	Fingerprint string
	Title       string
	Details     []detail
	Chain       []chainCert
	Locations   []locationRow
	IssuerLink  string
	HasChain    bool
	// ParseError is set when the stored DER no longer parses (the
	// inventory row still shows what was read at ingestion).
	ParseError string
	// CanOrders: the viewer sees the certificate's orders (Orders);
	// Act is the Actions forms, for a viewer who may order (orders.go).
	CanOrders bool
	Orders    []certOrderRow
	Act       *certActions
}

// detail is one dt/dd pair; Values are shown one per line, Class marks
// the validity's state.
type detail struct {
	Term   string
	Values []string
	Mono   bool
	Class  string
}

// chainCert is one certificate of the chain as found.
type chainCert struct {
	Subject, Issuer string
	NotAfter        time.Time
	Fingerprint     string
	Error           string
}

// locationRow is a location with its bot's name.
type locationRow struct {
	store.Location
	BotName    string
	BotLink    bool
	Attributes []attribute
}

type attribute struct{ Name, Value string }

func (s *Server) certificate(w http.ResponseWriter, r *http.Request, v *Viewer) {
	s.showCertificate(w, r, v, http.StatusOK, nil)
}

// showCertificate renders the certificate page; failed is an action form
// that was refused (orders.go), shown again with its message.
func (s *Server) showCertificate(w http.ResponseWriter, r *http.Request, v *Viewer, status int, failed *certActions) {
	ctx := r.Context()
	account := v.User.Account
	fp := strings.ToLower(r.PathValue("fp"))
	if !isFingerprint(fp) {
		s.fail(w, r, v, http.StatusBadRequest, "fingerprint: want 64 hexadecimal digits (a SHA-256).")
		return
	}
	c, err := s.st.Certificate(ctx, account, fp)
	if errors.Is(err, store.ErrNotFound) {
		s.fail(w, r, v, http.StatusNotFound, "There is no certificate with this fingerprint in your account.")
		return
	}
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	der, chain, err := s.st.CertificateDER(ctx, account, fp)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.serverError(w, r, v, err)
		return
	}
	bots, err := s.st.Bots(ctx, account)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	names := map[string]string{}
	for _, b := range bots {
		names[b.ID] = b.Name
	}
	now := s.now()
	data := certViewData{Fingerprint: fp, HasChain: len(chain) > 0,
		IssuerLink: "/certificates?" + url.Values{"issuer": {c.Issuer}}.Encode()}
	cert, perr := x509.ParseCertificate(der)
	if perr != nil {
		data.ParseError = "The stored certificate does not parse: " + perr.Error()
		data.Title = c.CommonName
		if data.Title == "" {
			data.Title = c.Subject
		}
		data.Details = storedDetails(c, now)
	} else {
		data.Title = cert.Subject.CommonName
		if data.Title == "" {
			data.Title = cert.Subject.String()
		}
		data.Details = certDetails(cert, der, now)
	}
	if data.Title == "" {
		data.Title = fp
	}
	for _, d := range chain {
		cc := chainCert{Fingerprint: fingerprintHex(sha256Sum(d))}
		if pc, err := x509.ParseCertificate(d); err != nil {
			cc.Error = "does not parse: " + err.Error()
		} else {
			cc.Subject, cc.Issuer, cc.NotAfter = pc.Subject.String(), pc.Issuer.String(), pc.NotAfter
		}
		data.Chain = append(data.Chain, cc)
	}
	canBots := v.Can(string(rbac.ViewBots))
	for _, l := range c.Locations {
		lr := locationRow{Location: l, BotName: names[l.BotID], BotLink: canBots && l.BotID != ""}
		if lr.BotName == "" {
			lr.BotName = l.BotID
		}
		keys := make([]string, 0, len(l.Attributes))
		for k := range l.Attributes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			lr.Attributes = append(lr.Attributes, attribute{k, l.Attributes[k]})
		}
		data.Locations = append(data.Locations, lr)
	}
	if err := s.certOrders(ctx, v, c, &data, failed); err != nil {
		s.serverError(w, r, v, err)
		return
	}
	s.render(w, r, v, status, "certificate", data.Title, data)
}

// storedDetails are the inventory's fields, for a certificate whose DER
// cannot be read again.
func storedDetails(c store.Certificate, now time.Time) []detail {
	return []detail{
		{Term: "Subject", Values: []string{c.Subject}},
		{Term: "Subject alternative names", Values: c.SANs},
		{Term: "Issuer", Values: []string{c.Issuer}},
		{Term: "Serial number", Values: []string{c.Serial}, Mono: true},
		{Term: "Not before", Values: []string{c.NotBefore.UTC().Format(time.RFC3339)}},
		validity(c.NotAfter, now),
		{Term: "Key", Values: []string{keyText(c.KeyAlgorithm, c.KeyBits, "")}},
		{Term: "Signature algorithm", Values: []string{c.SignatureAlgorithm}},
	}
}

// validity is the "Not after" line with the days left.
func validity(notAfter, now time.Time) detail {
	d := detail{Term: "Not after"}
	left := daysLeft(now, notAfter)
	text := notAfter.UTC().Format(time.RFC3339)
	switch {
	case !notAfter.After(now):
		d.Class = "bad"
		ago := int(now.Sub(notAfter) / (24 * time.Hour))
		if ago == 0 {
			text += " (expired today)"
		} else {
			text += fmt.Sprintf(" (expired %d days ago)", ago)
		}
	case left <= 30:
		d.Class = "warn"
		text += fmt.Sprintf(" (%d days left)", left)
	default:
		text += fmt.Sprintf(" (%d days left)", left)
	}
	d.Values = []string{text}
	return d
}

func keyText(alg string, bits int, curve string) string {
	s := alg
	if bits > 0 {
		s += " " + strconv.Itoa(bits) + " bits"
	}
	if curve != "" {
		s += " (" + curve + ")"
	}
	return s
}

func sha256Sum(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

// fingerprintHex writes a hash as lowercase hex.
func fingerprintHex(b []byte) string { return hex.EncodeToString(b) }

// colonHex writes bytes as uppercase hex pairs with colons (how serial
// numbers and key IDs are usually shown).
func colonHex(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	const digits = "0123456789ABCDEF"
	out := make([]byte, 0, len(b)*3-1)
	for i, c := range b {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// certDetails are the rows of dl#cert-details. Every value is text: the
// template escapes it, and URLs (AIA, CRL) are not made links, since the
// certificate's owner chose them.
func certDetails(c *x509.Certificate, der []byte, now time.Time) []detail {
	var sans []string
	sans = append(sans, prefixed("DNS: ", c.DNSNames)...)
	for _, ip := range c.IPAddresses {
		sans = append(sans, "IP: "+ip.String())
	}
	sans = append(sans, prefixed("Email: ", c.EmailAddresses)...)
	for _, u := range c.URIs {
		sans = append(sans, "URI: "+u.String())
	}
	alg, bits, curve := publicKeyInfo(c)
	serial := colonHex(c.SerialNumber.Bytes())
	if c.SerialNumber.Sign() == 0 {
		serial = "00"
	}
	var basic []string
	if c.BasicConstraintsValid {
		if c.IsCA {
			b := "CA: yes"
			switch {
			case c.MaxPathLen > 0 || c.MaxPathLenZero:
				b += ", path length ≤ " + strconv.Itoa(c.MaxPathLen)
			default:
				b += ", path length unlimited"
			}
			basic = []string{b}
		} else {
			basic = []string{"CA: no"}
		}
	}
	var policies []string
	for _, p := range c.Policies {
		policies = append(policies, p.String())
	}
	if len(policies) == 0 {
		for _, p := range c.PolicyIdentifiers {
			policies = append(policies, p.String())
		}
	}
	sha1sum := sha1.Sum(der) //nolint:gosec // shown, not trusted
	d := []detail{
		{Term: "Subject", Values: []string{c.Subject.String()}},
		{Term: "Subject alternative names", Values: sans},
		{Term: "Issuer", Values: []string{c.Issuer.String()}},
		{Term: "Serial number", Values: []string{serial}, Mono: true},
		{Term: "Not before", Values: []string{c.NotBefore.UTC().Format(time.RFC3339)}},
		validity(c.NotAfter, now),
		{Term: "Key", Values: []string{keyText(alg, bits, curve)}},
		{Term: "Signature algorithm", Values: []string{c.SignatureAlgorithm.String()}},
		{Term: "Key usage", Values: keyUsages(c.KeyUsage)},
		{Term: "Extended key usage", Values: extKeyUsages(c)},
		{Term: "Basic constraints", Values: basic},
		{Term: "Subject key ID", Values: nonEmpty(colonHex(c.SubjectKeyId)), Mono: true},
		{Term: "Authority key ID", Values: nonEmpty(colonHex(c.AuthorityKeyId)), Mono: true},
		{Term: "OCSP servers", Values: c.OCSPServer, Mono: true},
		{Term: "CA issuers", Values: c.IssuingCertificateURL, Mono: true},
		{Term: "CRL distribution points", Values: c.CRLDistributionPoints, Mono: true},
		{Term: "Policies", Values: policies, Mono: true},
		{Term: "SHA-256 fingerprint", Values: []string{colonHex(sha256Sum(der))}, Mono: true},
		{Term: "SHA-1 fingerprint", Values: []string{colonHex(sha1sum[:])}, Mono: true},
	}
	return d
}

func prefixed(p string, vs []string) []string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		out = append(out, p+v)
	}
	return out
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

var keyUsageNames = []struct {
	u    x509.KeyUsage
	name string
}{
	{x509.KeyUsageDigitalSignature, "Digital signature"},
	{x509.KeyUsageContentCommitment, "Content commitment"},
	{x509.KeyUsageKeyEncipherment, "Key encipherment"},
	{x509.KeyUsageDataEncipherment, "Data encipherment"},
	{x509.KeyUsageKeyAgreement, "Key agreement"},
	{x509.KeyUsageCertSign, "Certificate signing"},
	{x509.KeyUsageCRLSign, "CRL signing"},
	{x509.KeyUsageEncipherOnly, "Encipher only"},
	{x509.KeyUsageDecipherOnly, "Decipher only"},
}

func keyUsages(ku x509.KeyUsage) []string {
	var out []string
	for _, k := range keyUsageNames {
		if ku&k.u != 0 {
			out = append(out, k.name)
		}
	}
	return out
}

var extKeyUsageNames = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageAny:                            "Any",
	x509.ExtKeyUsageServerAuth:                     "TLS server authentication",
	x509.ExtKeyUsageClientAuth:                     "TLS client authentication",
	x509.ExtKeyUsageCodeSigning:                    "Code signing",
	x509.ExtKeyUsageEmailProtection:                "Email protection",
	x509.ExtKeyUsageIPSECEndSystem:                 "IPsec end system",
	x509.ExtKeyUsageIPSECTunnel:                    "IPsec tunnel",
	x509.ExtKeyUsageIPSECUser:                      "IPsec user",
	x509.ExtKeyUsageTimeStamping:                   "Time stamping",
	x509.ExtKeyUsageOCSPSigning:                    "OCSP signing",
	x509.ExtKeyUsageMicrosoftServerGatedCrypto:     "Microsoft server gated crypto",
	x509.ExtKeyUsageNetscapeServerGatedCrypto:      "Netscape server gated crypto",
	x509.ExtKeyUsageMicrosoftCommercialCodeSigning: "Microsoft commercial code signing",
	x509.ExtKeyUsageMicrosoftKernelCodeSigning:     "Microsoft kernel code signing",
}

func extKeyUsages(c *x509.Certificate) []string {
	var out []string
	for _, u := range c.ExtKeyUsage {
		if n, ok := extKeyUsageNames[u]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("unknown (%d)", u))
		}
	}
	for _, oid := range c.UnknownExtKeyUsage {
		out = append(out, oid.String())
	}
	return out
}

// ---- downloads

func (s *Server) downloadCertificate(w http.ResponseWriter, r *http.Request, v *Viewer) {
	ctx := r.Context()
	account := v.User.Account
	fp := strings.ToLower(r.PathValue("fp"))
	if !isFingerprint(fp) {
		s.fail(w, r, v, http.StatusBadRequest, "fingerprint: want 64 hexadecimal digits (a SHA-256).")
		return
	}
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "pem"
	}
	if format != "pem" && format != "der" && format != "p7b" {
		s.fail(w, r, v, http.StatusBadRequest, "format: want pem, der or p7b.")
		return
	}
	withChain := r.URL.Query().Get("chain") == "1" || r.URL.Query().Get("chain") == "true"
	der, chain, err := s.st.CertificateDER(ctx, account, fp)
	if errors.Is(err, store.ErrNotFound) {
		s.fail(w, r, v, http.StatusNotFound, "There is no certificate with this fingerprint in your account.")
		return
	}
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	var body []byte
	var ctype string
	switch format {
	case "pem":
		body, ctype = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), "application/x-pem-file"
		if withChain {
			for _, c := range chain {
				body = append(body, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
			}
		}
	case "der":
		body, ctype = der, "application/pkix-cert"
	case "p7b":
		// A PKCS#7 bundle carries the chain found with the certificate, as
		// the user API's does.
		all := slices.Clone(der)
		for _, c := range chain {
			all = append(all, c...)
		}
		body, err = pkcs7.DegenerateCertificate(all)
		if err != nil {
			s.serverError(w, r, v, fmt.Errorf("p7b of %s: %w", fp, err))
			return
		}
		ctype = "application/x-pkcs7-certificates"
	}
	name := downloadName(der, fp)
	if format == "pem" && withChain {
		name += "-chain"
	}
	name += "." + format
	detail := "format=" + format
	if withChain {
		detail += " chain"
	}
	// Audited before the file leaves: an export nobody can trace is what
	// the audit log exists to prevent.
	if err := s.ops.Record(ctx, v.Actor(r), "certificate.download", fp, detail); err != nil {
		s.serverError(w, r, v, fmt.Errorf("audit download: %w", err))
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// downloadName is a file name from the certificate's CN, kept to letters,
// digits, '.', '-' and '_' (anything else becomes '_'), so that it is safe
// in a header and on any file system; the fingerprint's start when the CN
// gives nothing usable.
func downloadName(der []byte, fp string) string {
	cn := ""
	if c, err := x509.ParseCertificate(der); err == nil {
		cn = c.Subject.CommonName
	}
	return safeFileName(cn, fp[:16])
}

// safeFileName maps name to the safe characters, at most 64 of them;
// fallback when nothing of it remains.
func safeFileName(name, fallback string) string {
	var b strings.Builder
	useful := false
	for _, r := range name {
		if b.Len() >= 64 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
			useful = true
		case r == '.' || r == '-' || r == '_':
			b.WriteRune(r)
		case r == '*':
			b.WriteString("wildcard")
			useful = true
		default:
			b.WriteByte('_')
		}
	}
	out := strings.Trim(b.String(), "._-")
	if !useful || out == "" {
		return fallback
	}
	return out
}

// publicKeyInfo names the key as the inventory does (protocol's names),
// with the curve of an elliptic-curve key.
func publicKeyInfo(c *x509.Certificate) (alg string, bits int, curve string) {
	alg, bits = protocol.PublicKeyInfo(c.PublicKey)
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); ok && k.Curve != nil {
		curve = k.Curve.Params().Name
	}
	return alg, bits, curve
}
