package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

// The audit log (A2): who did what, when, from where; newest first.

// auditPageSize is how many entries one page shows.
const auditPageSize = 100

func (s *Server) auditRoutes() {
	s.mux.Handle("GET /audit", s.page(rbac.ViewAudit, s.auditPage))
}

type auditData struct {
	Entries []auditRow
	Actor   string
	Action  string
	// Older is the link to the next page, "" at the end; Newest is the
	// link back to the first page, "" on it.
	Older  string
	Newest string
}

// auditRow is an entry with its time to the second (an audit trail
// orders events closer than a minute apart).
type auditRow struct {
	store.AuditEntry
	When string
	ISO  string
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, v *Viewer) {
	q := r.URL.Query()
	d := auditData{Actor: strings.TrimSpace(q.Get("actor")), Action: strings.TrimSpace(q.Get("action"))}
	f := store.AuditFilter{Actor: d.Actor, Action: d.Action, Limit: auditPageSize}
	if b := q.Get("before"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			s.fail(w, r, v, http.StatusBadRequest, "The page link is not valid: go back to the newest entries.")
			return
		}
		f.Before = n
	}
	entries, next, err := s.st.Audit(r.Context(), v.User.Account, f)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	for _, en := range entries {
		d.Entries = append(d.Entries, auditRow{AuditEntry: en, When: en.At.UTC().Format("2006-01-02 15:04:05 UTC"),
			ISO: en.At.UTC().Format(time.RFC3339)})
	}
	filters := url.Values{}
	if d.Actor != "" {
		filters.Set("actor", d.Actor)
	}
	if d.Action != "" {
		filters.Set("action", d.Action)
	}
	if next > 0 {
		older := url.Values{}
		for k, vs := range filters {
			older[k] = vs
		}
		older.Set("before", strconv.FormatInt(next, 10))
		d.Older = "/audit?" + older.Encode()
	}
	if f.Before > 0 {
		d.Newest = "/audit"
		if len(filters) > 0 {
			d.Newest += "?" + filters.Encode()
		}
	}
	s.render(w, r, v, http.StatusOK, "audit", "Audit log", d)
}
