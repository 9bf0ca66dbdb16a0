package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

// The key inventory (P4): the keys scans found, and the keys rotations
// made with each location's history. Reading it needs what reading the
// certificate inventory needs; the links to orders show only to a viewer
// who may see orders.

func (s *Server) keyRoutes() {
	s.mux.Handle("GET /keys", s.page(rbac.ViewCertificates, s.keys))
}

// keyPageSize is the rows each table of the page shows.
const keyPageSize = 50

// maxKeyLocation bounds the location filter (a location URI).
const maxKeyLocation = 2048

// keyQuery is the page's filter as the query string says it.
type keyQuery struct {
	Location, Bot string
	Page          int
	Filter        store.KeyFilter
}

func parseKeyQuery(q url.Values) (keyQuery, error) {
	kq := keyQuery{Location: strings.TrimSpace(q.Get("location")), Bot: strings.TrimSpace(q.Get("bot")), Page: 1}
	if err := oneLine("location", kq.Location, maxKeyLocation); err != nil {
		return kq, err
	}
	if err := oneLine("bot", kq.Bot, maxOrderText); err != nil {
		return kq, err
	}
	if p := q.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 1_000_000 {
			return kq, &fieldError{"page", "want a page number from 1"}
		}
		kq.Page = n
	}
	// One more than a page, to know whether there is a next one.
	kq.Filter = store.KeyFilter{Location: kq.Location, BotID: kq.Bot, Limit: keyPageSize + 1,
		Offset: (kq.Page - 1) * keyPageSize}
	return kq, nil
}

// Link is the page at another page number, same filter.
func (q keyQuery) Link(page int) string {
	v := url.Values{}
	if q.Location != "" {
		v.Set("location", q.Location)
	}
	if q.Bot != "" {
		v.Set("bot", q.Bot)
	}
	if page > 1 {
		v.Set("page", strconv.Itoa(page))
	}
	if len(v) == 0 {
		return "/keys"
	}
	return "/keys?" + v.Encode()
}

// HistoryLink is the page filtered on one location of one bot.
func (q keyQuery) HistoryLink(botID, location string) string {
	return keyQuery{Location: location, Bot: botID}.Link(1)
}

type keysData struct {
	Query      keyQuery
	Error      string
	Found      []foundKeyRow
	Locations  []keyLocation
	Prev, Next string
	// Orders: the viewer may open orders (the order IDs link).
	Orders bool
}

type foundKeyRow struct {
	store.Key
	BotName string
}

// Size is the key's algorithm and size ("RSA 2048").
func (r foundKeyRow) Size() string { return keyLabel(r.Algorithm, r.Bits) }

// keyLocation is one location's rotations, newest first.
type keyLocation struct {
	BotID, BotName, URI string
	Rows                []keyOrderRow
}

type keyOrderRow struct {
	store.Order
	Class string
	// OldKey is the key of the certificate the order replaced ("" when
	// unknown).
	OldKey string
}

// keyLabel names a key: "RSA 2048", "Ed25519", "" when unknown.
func keyLabel(alg string, bits int) string {
	if alg == "" || bits <= 0 {
		return alg
	}
	return alg + " " + strconv.Itoa(bits)
}

func (s *Server) keys(w http.ResponseWriter, r *http.Request, v *Viewer) {
	ctx, account := r.Context(), v.User.Account
	kq, err := parseKeyQuery(r.URL.Query())
	data := keysData{Query: kq, Orders: rbac.Can(v.Role, rbac.ViewOrders)}
	if err != nil {
		data.Error, _, _ = opsMessage(err)
		s.render(w, r, v, http.StatusBadRequest, "keys", "Keys", data)
		return
	}
	inv := s.st
	page, err := store.ReadKeyPage(ctx, inv, account, kq.Filter)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	names, err := s.botNames(ctx, account)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	page, more := store.TrimKeyPage(page, keyPageSize)
	if more {
		data.Next = kq.Link(kq.Page + 1)
	}
	if kq.Page > 1 {
		data.Prev = kq.Link(kq.Page - 1)
	}
	for _, k := range page.Found {
		data.Found = append(data.Found, foundKeyRow{Key: k, BotName: names[k.BotID]})
	}
	for _, l := range page.Locations {
		kl := keyLocation{BotID: l.BotID, BotName: names[l.BotID], URI: l.URI}
		// Newest first, as the rest of the page.
		for i := len(l.Orders) - 1; i >= 0; i-- {
			o := l.Orders[i]
			kl.Rows = append(kl.Rows, keyOrderRow{Order: o.Order, Class: statusClass(o.Order.Status),
				OldKey: keyLabel(o.OldKeyAlgorithm, o.OldKeyBits)})
		}
		data.Locations = append(data.Locations, kl)
	}
	s.render(w, r, v, http.StatusOK, "keys", "Keys", data)
}
