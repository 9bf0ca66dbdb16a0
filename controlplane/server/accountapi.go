package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/store"
)

// ---- dashboard

// DashboardView is GET /api/v1/dashboard: store.Dashboard in snake_case.
type DashboardView struct {
	Certificates struct {
		Discovered    int `json:"discovered"`
		Configured    int `json:"configured"`
		NotConfigured int `json:"not_configured"`
		Initiated     int `json:"initiated"`
		Issued        int `json:"issued"`
		Deployed      int `json:"deployed"`
		Revoked       int `json:"revoked"`
		Rotated       int `json:"rotated"`
		Rekeyed       int `json:"rekeyed"`
		Suspended     int `json:"suspended"`
		Vulnerable    int `json:"vulnerable"`
		Expired       int `json:"expired"`
		Gone          int `json:"gone"`
	} `json:"certificates"`
	Endpoints struct {
		Scanned     int `json:"scanned"`
		Protected   int `json:"protected"`
		Unprotected int `json:"unprotected"`
	} `json:"endpoints"`
	Keys struct {
		Total       int `json:"total"`
		Symmetric   int `json:"symmetric"`
		Asymmetric  int `json:"asymmetric"`
		InTemplates int `json:"in_templates"`
		Rotated     int `json:"rotated"`
	} `json:"keys"`
	Templates struct {
		CSRTemplates          int `json:"csr_templates"`
		ProvisioningTemplates int `json:"provisioning_templates"`
		KeyProfiles           int `json:"key_profiles"`
		EmailTemplates        int `json:"email_templates"`
		CSRs                  int `json:"csrs"`
		Keystores             int `json:"keystores"`
	} `json:"templates"`
	Expiring struct {
		Expired  int `json:"expired"`
		Within7  int `json:"within_7_days"`
		Within30 int `json:"within_30_days"`
		Within60 int `json:"within_60_days"`
		Within90 int `json:"within_90_days"`
		Later    int `json:"later"`
	} `json:"expiring"`
	ByIssuer []BucketView `json:"by_issuer"`
	ByKey    []BucketView `json:"by_key"`
	BySource []BucketView `json:"by_source"`
	Bots     struct {
		Total     int `json:"total"`
		Active    int `json:"active"`
		Pending   int `json:"pending"`
		Suspended int `json:"suspended"`
		Inactive  int `json:"inactive"`
		Online    int `json:"online"`
	} `json:"bots"`
	At time.Time `json:"at"`
}

// BucketView is one bar of a chart.
type BucketView struct {
	Label string `json:"label"`
	Count int    `json:"count"`
}

func buckets(bs []store.Bucket) []BucketView {
	out := make([]BucketView, 0, len(bs))
	for _, b := range bs {
		out = append(out, BucketView{Label: b.Label, Count: b.Count})
	}
	return out
}

func viewDashboard(d store.Dashboard, at time.Time) DashboardView {
	var v DashboardView
	c := d.Certificates
	v.Certificates.Discovered, v.Certificates.Configured, v.Certificates.NotConfigured = c.Discovered, c.Configured, c.NotConfigured
	v.Certificates.Initiated, v.Certificates.Issued, v.Certificates.Deployed = c.Initiated, c.Issued, c.Deployed
	v.Certificates.Revoked, v.Certificates.Rotated, v.Certificates.Rekeyed = c.Revoked, c.Rotated, c.Rekeyed
	v.Certificates.Suspended, v.Certificates.Vulnerable, v.Certificates.Expired = c.Suspended, c.Vulnerable, c.Expired
	v.Certificates.Gone = c.Gone
	v.Endpoints.Scanned, v.Endpoints.Protected, v.Endpoints.Unprotected = d.Endpoints.Scanned, d.Endpoints.Protected, d.Endpoints.Unprotected
	k := d.Keys
	v.Keys.Total, v.Keys.Symmetric, v.Keys.Asymmetric, v.Keys.InTemplates, v.Keys.Rotated = k.Total, k.Symmetric, k.Asymmetric,
		k.InTemplates, k.Rotated
	t := d.Templates
	v.Templates.CSRTemplates, v.Templates.ProvisioningTemplates, v.Templates.KeyProfiles = t.CSRTemplates, t.ProvisioningTemplates,
		t.KeyProfiles
	v.Templates.EmailTemplates, v.Templates.CSRs, v.Templates.Keystores = t.EmailTemplates, t.CSRs, t.Keystores
	e := d.Expiring
	v.Expiring.Expired, v.Expiring.Within7, v.Expiring.Within30 = e.Expired, e.Within7, e.Within30
	v.Expiring.Within60, v.Expiring.Within90, v.Expiring.Later = e.Within60, e.Within90, e.Later
	v.ByIssuer, v.ByKey, v.BySource = buckets(d.ByIssuer), buckets(d.ByKey), buckets(d.BySource)
	b := d.Bots
	v.Bots.Total, v.Bots.Active, v.Bots.Pending, v.Bots.Suspended, v.Bots.Inactive, v.Bots.Online = b.Total, b.Active, b.Pending,
		b.Suspended, b.Inactive, b.Online
	v.At = at
	return v
}

func (s *Server) getDashboard(w http.ResponseWriter, r *http.Request, k store.APIKey, _ ops.Actor) {
	now := s.now().UTC()
	d, err := s.st.Dashboard(r.Context(), k.Account, now)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewDashboard(d, now))
}

// ---- audit

// AuditEntryView is one entry of GET /api/v1/audit.
type AuditEntryView struct {
	ID        int64     `json:"id"`
	At        time.Time `json:"at"`
	ActorKind string    `json:"actor_kind"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	Object    string    `json:"object"`
	Detail    string    `json:"detail"`
	Remote    string    `json:"remote"`
}

// AuditResponse answers GET /api/v1/audit; Next is the "before" of the
// following page, 0 at the end.
type AuditResponse struct {
	Entries []AuditEntryView `json:"entries"`
	Next    int64            `json:"next"`
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, k store.APIKey, _ ops.Actor) {
	q := r.URL.Query()
	f := store.AuditFilter{Actor: q.Get("actor"), Action: q.Get("action"), Object: q.Get("object")}
	limit, err := intParam(r, "limit", store.DefaultPageSize, store.MaxPageSize)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	f.Limit = limit
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "before: want the next value a previous page returned")
			return
		}
		f.Before = n
	}
	entries, next, err := s.st.Audit(r.Context(), k.Account, f)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	out := AuditResponse{Entries: make([]AuditEntryView, 0, len(entries)), Next: next}
	for _, e := range entries {
		out.Entries = append(out.Entries, AuditEntryView{ID: e.ID, At: e.At, ActorKind: e.ActorKind, Actor: e.Actor,
			Action: e.Action, Object: e.Object, Detail: e.Detail, Remote: e.Remote})
	}
	writeJSON(w, http.StatusOK, out)
}

// ---- users

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, k store.APIKey, _ ops.Actor) {
	users, err := s.st.Users(r.Context(), k.Account)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	out := make([]admin.UserView, 0, len(users))
	for _, u := range users {
		out = append(out, admin.ViewUser(u))
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
	var req struct {
		Email    string `json:"email"`
		Name     string `json:"name"`
		Role     string `json:"role"`
		Password string `json:"password"`
	}
	if err := readJSON(w, r, &req, maxBody, true); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	u, err := s.ops.CreateUser(r.Context(), a, req.Email, req.Name, req.Role, req.Password)
	if err != nil {
		s.opsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, admin.ViewUser(u))
}

// ---- API keys

// APIKeyView is an API key as listed: never its secret or hash.
type APIKeyView struct {
	ID      string    `json:"id"`
	Role    string    `json:"role"`
	Created time.Time `json:"created"`
}

func (s *Server) listAPIKeys(w http.ResponseWriter, r *http.Request, k store.APIKey, _ ops.Actor) {
	keys, err := s.st.APIKeys(r.Context(), k.Account)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	out := make([]APIKeyView, 0, len(keys))
	for _, k := range keys {
		out = append(out, APIKeyView{ID: k.ID, Role: k.Role, Created: k.CreatedAt})
	}
	writeJSON(w, http.StatusOK, map[string]any{"api_keys": out})
}

func (s *Server) createAPIKey(w http.ResponseWriter, r *http.Request, k store.APIKey, a ops.Actor) {
	var req struct {
		Role string `json:"role"`
	}
	if err := readJSON(w, r, &req, maxBody, true); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	key, err := s.ops.CreateAPIKey(r.Context(), a, req.Role)
	if err != nil {
		s.opsError(w, r, err)
		return
	}
	// Shown once: only its hash is kept.
	writeJSON(w, http.StatusCreated, map[string]string{"api_key": key, "id": admin.APIKeyID(key), "account": k.Account,
		"role": req.Role})
}

func (s *Server) revokeAPIKey(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
	id := r.PathValue("id")
	if err := s.ops.RevokeAPIKey(r.Context(), a, id); err != nil {
		s.opsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "revoked": true})
}
