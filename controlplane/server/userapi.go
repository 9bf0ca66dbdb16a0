package server

import (
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/iprules"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

// userHandler serves a user API route for an authenticated API key, as
// the actor ops sees.
type userHandler func(w http.ResponseWriter, r *http.Request, k store.APIKey, a ops.Actor)

// user authenticates an API key (Authorization: Bearer KEY) and checks
// that its role has perm; the handler works within the key's account only.
// A refusal is audited: action names the change attempted ("" for a
// read, which the audit entry names by method and route).
func (s *Server) user(perm rbac.Permission, action string, h userHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		scheme, key, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(key) == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="emsign-cp"`)
			writeError(w, http.StatusUnauthorized, "API key required: Authorization: Bearer KEY")
			return
		}
		k, err := admin.CheckAPIKey(r.Context(), s.st, strings.TrimSpace(key))
		if errors.Is(err, admin.ErrBadAPIKey) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="emsign-cp", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid API key")
			return
		}
		if err != nil {
			s.storeError(w, r, err)
			return
		}
		a := ops.Actor{Account: k.Account, Kind: ops.ActorAPIKey, ID: k.ID, Name: k.ID, Role: rbac.Role(k.Role),
			Remote: remoteIP(r)}
		what := action
		if what == "" {
			what = r.Pattern
		}
		// IP restrictions (A4): an API key is held to the account's rules
		// for all users. The address is r.RemoteAddr's only, never
		// X-Forwarded-For, which any client can set; behind a reverse proxy
		// every client has the proxy's address (honouring a configured
		// proxy's header is future work).
		rules, err := s.st.IPRules(r.Context(), k.Account)
		if err != nil {
			s.storeError(w, r, err)
			return
		}
		if !iprules.Allowed(rules, "", a.Remote) {
			why := "access from " + a.Remote + " is not allowed for this account"
			if err := s.ops.Record(r.Context(), a, ops.ActionDenied, r.PathValue("id"), what+": "+why); err != nil {
				s.log.Error("audit entry not written", "account", a.Account, "actor", a.Name, "err", err)
			}
			writeError(w, http.StatusForbidden, why)
			return
		}
		if !rbac.Can(a.Role, perm) {
			why := fmt.Sprintf("your role (%s) lacks %s", a.Role, perm)
			if err := s.ops.Record(r.Context(), a, ops.ActionDenied, r.PathValue("id"), what+": "+why); err != nil {
				s.log.Error("audit entry not written", "account", a.Account, "actor", a.Name, "err", err)
			}
			writeError(w, http.StatusForbidden, ops.ErrForbidden.Error()+": "+why)
			return
		}
		h(w, r, k, a)
	})
}

// remoteIP is the client's address without the port.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ---- bots

func (s *Server) listBots(w http.ResponseWriter, r *http.Request, k store.APIKey, _ ops.Actor) {
	bots, err := s.st.Bots(r.Context(), k.Account)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	out := []admin.BotView{}
	for _, b := range bots {
		v, err := admin.ViewBot(r.Context(), s.st, b, s.now())
		if err != nil {
			s.storeError(w, r, err)
			return
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"bots": out})
}

func (s *Server) getBot(w http.ResponseWriter, r *http.Request, k store.APIKey, _ ops.Actor) {
	b, err := s.st.Bot(r.Context(), k.Account, r.PathValue("id"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	s.writeBot(w, r, b, http.StatusOK)
}

func (s *Server) writeBot(w http.ResponseWriter, r *http.Request, b store.Bot, status int) {
	v, err := admin.ViewBot(r.Context(), s.st, b, s.now())
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, status, v)
}

func (s *Server) createBot(w http.ResponseWriter, r *http.Request, k store.APIKey, a ops.Actor) {
	var req struct {
		Name  string `json:"name"`
		Group string `json:"group"`
	}
	if err := readJSON(w, r, &req, maxBody, true); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	id, token, err := s.ops.CreateBot(r.Context(), a, req.Name, req.Group)
	if err != nil {
		s.opsError(w, r, err)
		return
	}
	s.log.Info("bot created", "account", k.Account, "bot", id)
	writeJSON(w, http.StatusCreated, map[string]string{"bot_id": id, "account": k.Account, "token": token})
}

func (s *Server) patchBot(w http.ResponseWriter, r *http.Request, k store.APIKey, a ops.Actor) {
	var req struct {
		Name  *string      `json:"name"`
		Group *string      `json:"group"`
		Tags  *[]store.Tag `json:"tags"`
	}
	if err := readJSON(w, r, &req, maxBody, true); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	b, err := s.ops.UpdateBot(r.Context(), a, r.PathValue("id"), store.BotPatch{Name: req.Name, Group: req.Group, Tags: req.Tags})
	if err != nil {
		s.opsError(w, r, err)
		return
	}
	s.writeBot(w, r, b, http.StatusOK)
}

func (s *Server) setStatus(status string) userHandler {
	return func(w http.ResponseWriter, r *http.Request, k store.APIKey, a ops.Actor) {
		id := r.PathValue("id")
		if err := s.ops.SetBotStatus(r.Context(), a, id, status); err != nil {
			s.opsError(w, r, err)
			return
		}
		s.log.Info("bot status changed", "account", k.Account, "bot", id, "status", status)
		writeJSON(w, http.StatusOK, map[string]string{"bot_id": id, "status": status})
	}
}

func (s *Server) regenerateToken(w http.ResponseWriter, r *http.Request, k store.APIKey, a ops.Actor) {
	id := r.PathValue("id")
	token, err := s.ops.RegenerateToken(r.Context(), a, id)
	if err != nil {
		s.opsError(w, r, err)
		return
	}
	s.log.Info("bot token regenerated; certificate revoked", "account", k.Account, "bot", id)
	writeJSON(w, http.StatusOK, map[string]string{"bot_id": id, "token": token})
}

// ---- targets

// TargetsRequest is the body of PUT /api/v1/bots/{id}/targets, and the
// answer of the targets routes (secrets redacted).
type TargetsRequest = ops.TargetSettings

func (s *Server) getTargets(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
	ts, err := s.ops.Targets(r.Context(), a, r.PathValue("id"))
	if err != nil {
		s.opsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ts)
}

func (s *Server) putTargets(w http.ResponseWriter, r *http.Request, k store.APIKey, a ops.Actor) {
	var req TargetsRequest
	if err := readJSON(w, r, &req, maxBody, true); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ts, err := s.ops.SetTargets(r.Context(), a, r.PathValue("id"), req)
	if err != nil {
		s.opsError(w, r, err)
		return
	}
	s.log.Info("bot targets changed", "account", k.Account, "bot", r.PathValue("id"), "targets", len(ts.Targets))
	writeJSON(w, http.StatusOK, ts)
}

func (s *Server) importTargets(w http.ResponseWriter, r *http.Request, k store.APIKey, a ops.Actor) {
	var req struct {
		FromBot string `json:"from_bot"`
	}
	if err := readJSON(w, r, &req, maxBody, true); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ts, err := s.ops.ImportTargets(r.Context(), a, r.PathValue("id"), req.FromBot)
	if err != nil {
		s.opsError(w, r, err)
		return
	}
	s.log.Info("bot targets imported", "account", k.Account, "bot", r.PathValue("id"), "from", req.FromBot,
		"targets", len(ts.Targets))
	writeJSON(w, http.StatusOK, ts)
}

// ---- scans

func (s *Server) runScan(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
	scanID, err := s.ops.RunScan(r.Context(), a, r.PathValue("id"))
	if err != nil {
		s.opsError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"scan_id": scanID})
}

func (s *Server) listScans(w http.ResponseWriter, r *http.Request, k store.APIKey, a ops.Actor) {
	limit, err := intParam(r, "limit", 100, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if _, err := s.st.Bot(r.Context(), k.Account, r.PathValue("id")); err != nil {
		s.storeError(w, r, err)
		return
	}
	scans, err := s.st.Scans(r.Context(), k.Account, r.PathValue("id"), limit)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	out := []admin.ScanView{}
	for _, sc := range scans {
		out = append(out, admin.ViewScan(sc))
	}
	writeJSON(w, http.StatusOK, map[string]any{"scans": out})
}

func (s *Server) getScan(w http.ResponseWriter, r *http.Request, k store.APIKey, a ops.Actor) {
	sc, err := s.st.Scan(r.Context(), k.Account, r.PathValue("id"), r.PathValue("scan"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	errs, err := s.st.ScanErrors(r.Context(), k.Account, sc.BotID, sc.ID, 1000)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	v := admin.ViewScan(sc)
	v.ErrorList = errs
	writeJSON(w, http.StatusOK, v)
}

func intParam(r *http.Request, name string, def, max int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, fmt.Errorf("%s: want a number from 1 to %d", name, max)
	}
	return n, nil
}

// ---- certificates

// CertificateView is a certificate as the user API shows it.
type CertificateView struct {
	Fingerprint        string         `json:"fingerprint_sha256"`
	Subject            string         `json:"subject"`
	CommonName         string         `json:"common_name"`
	SANs               []string       `json:"sans"`
	Issuer             string         `json:"issuer"`
	Serial             string         `json:"serial"`
	NotBefore          time.Time      `json:"not_before"`
	NotAfter           time.Time      `json:"not_after"`
	KeyAlgorithm       string         `json:"key_algorithm"`
	KeyBits            int            `json:"key_bits"`
	SignatureAlgorithm string         `json:"signature_algorithm"`
	IsCA               bool           `json:"is_ca"`
	FirstSeen          time.Time      `json:"first_seen"`
	Locations          []LocationView `json:"locations"`
}

// LocationView is one place a certificate is (or was).
type LocationView struct {
	URI       string     `json:"uri"`
	Bot       string     `json:"bot"`
	Source    string     `json:"source"`
	Format    string     `json:"format,omitempty"`
	FirstSeen time.Time  `json:"first_seen"`
	LastSeen  time.Time  `json:"last_seen"`
	Present   bool       `json:"present"`
	GoneAt    *time.Time `json:"gone_at,omitempty"`
	// Attributes describe the place beyond its identity (F5 virtual
	// servers, ACM status, Cloudflare hosts...), as the latest scan saw it.
	Attributes map[string]string `json:"attributes,omitempty"`
}

func viewCertificate(c store.Certificate) CertificateView {
	v := CertificateView{
		Fingerprint: c.Fingerprint, Subject: c.Subject, CommonName: c.CommonName, SANs: c.SANs, Issuer: c.Issuer,
		Serial: c.Serial, NotBefore: c.NotBefore, NotAfter: c.NotAfter, KeyAlgorithm: c.KeyAlgorithm, KeyBits: c.KeyBits,
		SignatureAlgorithm: c.SignatureAlgorithm, IsCA: c.IsCA, FirstSeen: c.FirstSeen, Locations: []LocationView{},
	}
	if v.SANs == nil {
		v.SANs = []string{}
	}
	for _, l := range c.Locations {
		v.Locations = append(v.Locations, LocationView{URI: l.URI, Bot: l.BotID, Source: l.Source, Format: l.Format,
			FirstSeen: l.FirstSeen, LastSeen: l.LastSeen, Present: l.Present, GoneAt: l.GoneAt, Attributes: l.Attributes})
	}
	return v
}

// CertificatesResponse answers GET /api/v1/certificates.
type CertificatesResponse struct {
	Certificates []CertificateView `json:"certificates"`
	Next         string            `json:"next,omitempty"`
}

func (s *Server) listCertificates(w http.ResponseWriter, r *http.Request, k store.APIKey, a ops.Actor) {
	q := r.URL.Query()
	f := store.CertificateFilter{Q: q.Get("q"), Issuer: q.Get("issuer"), Source: q.Get("source"), Location: q.Get("location"),
		BotID: q.Get("bot")}
	for _, p := range []struct {
		name string
		into *time.Time
	}{{"expires_before", &f.ExpiresBefore}, {"expires_after", &f.ExpiresAfter}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				writeError(w, http.StatusBadRequest, p.name+": want an RFC 3339 time such as 2026-01-02T15:04:05Z")
				return
			}
			*p.into = t
		}
	}
	limit, err := intParam(r, "limit", store.DefaultPageSize, store.MaxPageSize)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	f.Limit = limit
	if next := q.Get("next"); next != "" {
		if !isFingerprint(next) {
			writeError(w, http.StatusBadRequest, "next: not a cursor this API returned")
			return
		}
		f.After = next
	}
	certs, next, err := s.st.Certificates(r.Context(), k.Account, f)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	out := CertificatesResponse{Certificates: make([]CertificateView, 0, len(certs)), Next: next}
	for _, c := range certs {
		out.Certificates = append(out.Certificates, viewCertificate(c))
	}
	writeJSON(w, http.StatusOK, out)
}

func isFingerprint(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32
}

func (s *Server) getCertificate(w http.ResponseWriter, r *http.Request, k store.APIKey, a ops.Actor) {
	fp := strings.ToLower(r.PathValue("fp"))
	if !isFingerprint(fp) {
		writeError(w, http.StatusBadRequest, "fingerprint: want 64 hex digits (SHA-256)")
		return
	}
	c, err := s.st.Certificate(r.Context(), k.Account, fp)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewCertificate(c))
}

func (s *Server) downloadCertificate(w http.ResponseWriter, r *http.Request, k store.APIKey, a ops.Actor) {
	fp := strings.ToLower(r.PathValue("fp"))
	if !isFingerprint(fp) {
		writeError(w, http.StatusBadRequest, "fingerprint: want 64 hex digits (SHA-256)")
		return
	}
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "pem"
	}
	if format != "pem" && format != "der" && format != "p7b" {
		writeError(w, http.StatusBadRequest, "format: want pem, der or p7b")
		return
	}
	der, chain, err := s.st.CertificateDER(r.Context(), k.Account, fp)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	var body []byte
	var ctype string
	switch format {
	case "pem":
		body, ctype = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), "application/x-pem-file"
		// With ?chain=true, the certificates found with it follow.
		if r.URL.Query().Get("chain") == "true" {
			for _, c := range chain {
				body = append(body, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
			}
		}
	case "der":
		body, ctype = der, "application/pkix-cert"
	case "p7b":
		all := slices.Clone(der)
		for _, c := range chain {
			all = append(all, c...)
		}
		body, err = pkcs7.DegenerateCertificate(all)
		if err != nil {
			s.storeError(w, r, fmt.Errorf("p7b: %w", err))
			return
		}
		ctype = "application/x-pkcs7-certificates"
	}
	if err := s.ops.Record(r.Context(), a, "certificate.download", fp, "format "+format); err != nil {
		s.log.Error("audit entry not written", "account", a.Account, "actor", a.Name, "err", err)
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.%s"`, fp[:16], format))
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}
