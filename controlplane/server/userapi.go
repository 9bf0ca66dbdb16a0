package server

import (
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// user authenticates an API key (Authorization: Bearer KEY); the handler
// works within the key's account only.
func (s *Server) user(h func(http.ResponseWriter, *http.Request, store.APIKey)) http.Handler {
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
		h(w, r, k)
	})
}

// ---- bots

func (s *Server) listBots(w http.ResponseWriter, r *http.Request, k store.APIKey) {
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

func (s *Server) getBot(w http.ResponseWriter, r *http.Request, k store.APIKey) {
	b, err := s.st.Bot(r.Context(), k.Account, r.PathValue("id"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	v, err := admin.ViewBot(r.Context(), s.st, b, s.now())
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) createBot(w http.ResponseWriter, r *http.Request, k store.APIKey) {
	var req struct {
		Name  string `json:"name"`
		Group string `json:"group"`
	}
	if err := readJSON(w, r, &req, maxBody, true); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if strings.TrimSpace(req.Name) == "" {
		writeError(w, http.StatusBadRequest, "name: required")
		return
	}
	id, token, err := admin.CreateBot(r.Context(), s.st, k.Account, req.Name, req.Group)
	if err != nil {
		if errors.Is(err, store.ErrBotLimit) || errors.Is(err, store.ErrNotFound) {
			s.storeError(w, r, err)
			return
		}
		if strings.HasPrefix(err.Error(), "name: ") {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.storeError(w, r, err)
		return
	}
	s.log.Info("bot created", "account", k.Account, "bot", id)
	writeJSON(w, http.StatusCreated, map[string]string{"bot_id": id, "account": k.Account, "token": token})
}

func (s *Server) patchBot(w http.ResponseWriter, r *http.Request, k store.APIKey) {
	var req struct {
		Name  *string      `json:"name"`
		Group *string      `json:"group"`
		Tags  *[]store.Tag `json:"tags"`
	}
	if err := readJSON(w, r, &req, maxBody, true); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Name != nil {
		n := strings.TrimSpace(*req.Name)
		if n == "" || len(n) > 200 {
			writeError(w, http.StatusBadRequest, "name: want 1 to 200 characters")
			return
		}
		req.Name = &n
	}
	if req.Tags != nil {
		if len(*req.Tags) > 100 {
			writeError(w, http.StatusBadRequest, "tags: at most 100")
			return
		}
		for i, t := range *req.Tags {
			if strings.TrimSpace(t.Name) == "" {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("tags[%d].name: required", i))
				return
			}
		}
	}
	b, err := s.st.UpdateBot(r.Context(), k.Account, r.PathValue("id"), store.BotPatch{Name: req.Name, Group: req.Group, Tags: req.Tags})
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	v, err := admin.ViewBot(r.Context(), s.st, b, s.now())
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) setStatus(status string) func(http.ResponseWriter, *http.Request, store.APIKey) {
	return func(w http.ResponseWriter, r *http.Request, k store.APIKey) {
		id := r.PathValue("id")
		if err := s.st.SetBotStatus(r.Context(), k.Account, id, status); err != nil {
			s.storeError(w, r, err)
			return
		}
		s.log.Info("bot status changed", "account", k.Account, "bot", id, "status", status)
		writeJSON(w, http.StatusOK, map[string]string{"bot_id": id, "status": status})
	}
}

func (s *Server) regenerateToken(w http.ResponseWriter, r *http.Request, k store.APIKey) {
	id := r.PathValue("id")
	token, err := admin.RegenerateToken(r.Context(), s.st, k.Account, id)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	s.log.Info("bot token regenerated; certificate revoked", "account", k.Account, "bot", id)
	writeJSON(w, http.StatusOK, map[string]string{"bot_id": id, "token": token})
}

// ---- targets

// TargetsRequest is the body of PUT /api/v1/bots/{id}/targets.
type TargetsRequest struct {
	Targets    []string          `json:"targets"`
	Schedule   protocol.Schedule `json:"schedule"`
	Threads    int               `json:"threads"`
	MaxRuntime protocol.Duration `json:"max_runtime"`
}

// Limits of a bot's configuration.
const (
	maxTargets = 1000
	maxThreads = 4096
)

// parseTarget validates a target as the bot will read it.
func parseTarget(raw string) (protocol.Target, error) {
	return protocol.ParseTargetUnresolved(raw)
}

// redactTarget is a target safe to show: its secrets replaced.
func redactTarget(raw string) string {
	t, err := parseTarget(raw)
	if err != nil {
		// Stored targets were validated; if the parser changed since, show
		// only the scheme.
		scheme, _, _ := strings.Cut(raw, ":")
		return scheme + "://(not readable: " + "REDACTED" + ")"
	}
	return t.String()
}

func (s *Server) getTargets(w http.ResponseWriter, r *http.Request, k store.APIKey) {
	b, err := s.st.Bot(r.Context(), k.Account, r.PathValue("id"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	s.writeTargets(w, r, b)
}

func (s *Server) writeTargets(w http.ResponseWriter, r *http.Request, b store.Bot) {
	raw, err := s.openTargets(b)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	shown := make([]string, len(raw))
	for i, t := range raw {
		shown[i] = redactTarget(t)
	}
	sched := b.Targets.Schedule
	if sched.Kind == "" {
		sched.Kind = protocol.ScheduleOnDemand
	}
	writeJSON(w, http.StatusOK, TargetsRequest{Targets: shown, Schedule: sched, Threads: b.Targets.Threads,
		MaxRuntime: protocol.Duration(b.Targets.MaxRuntime)})
}

func (s *Server) putTargets(w http.ResponseWriter, r *http.Request, k store.APIKey) {
	var req TargetsRequest
	if err := readJSON(w, r, &req, maxBody, true); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Targets == nil {
		req.Targets = []string{}
	}
	if len(req.Targets) > maxTargets {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("targets: at most %d", maxTargets))
		return
	}
	for i, t := range req.Targets {
		if _, err := parseTarget(t); err != nil {
			// The TargetError shows the target with its secrets redacted.
			writeError(w, http.StatusBadRequest, fmt.Sprintf("targets[%d]: %v", i, err))
			return
		}
	}
	if req.Schedule.Kind == "" {
		req.Schedule.Kind = protocol.ScheduleOnDemand
	}
	if err := req.Schedule.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Threads < 0 || req.Threads > maxThreads {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("threads: want 0 (the bot's default) to %d", maxThreads))
		return
	}
	b, err := s.st.Bot(r.Context(), k.Account, r.PathValue("id"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	s.saveTargets(w, r, k, b, req)
}

func (s *Server) saveTargets(w http.ResponseWriter, r *http.Request, k store.APIKey, b store.Bot, req TargetsRequest) {
	sealed, err := s.sealTargets(b.ID, req.Targets)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	tc := store.TargetConfig{Sealed: sealed, Count: len(req.Targets), Schedule: req.Schedule, Threads: req.Threads,
		MaxRuntime: time.Duration(req.MaxRuntime)}
	if err := s.st.SetTargets(r.Context(), k.Account, b.ID, tc, admin.NewID()); err != nil {
		s.storeError(w, r, err)
		return
	}
	s.notify.Notify(b.ID)
	s.log.Info("bot targets changed", "account", k.Account, "bot", b.ID, "targets", len(req.Targets))
	b, err = s.st.Bot(r.Context(), k.Account, b.ID)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	s.writeTargets(w, r, b)
}

func (s *Server) importTargets(w http.ResponseWriter, r *http.Request, k store.APIKey) {
	var req struct {
		FromBot string `json:"from_bot"`
	}
	if err := readJSON(w, r, &req, maxBody, true); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.FromBot == "" {
		writeError(w, http.StatusBadRequest, "from_bot: required")
		return
	}
	dst, err := s.st.Bot(r.Context(), k.Account, r.PathValue("id"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	src, err := s.st.Bot(r.Context(), k.Account, req.FromBot)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "from_bot: no such bot")
		return
	}
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	have, err := s.openTargets(dst)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	add, err := s.openTargets(src)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	// Imported targets join the bot's own; one already there is not doubled.
	for _, t := range add {
		if !slices.Contains(have, t) {
			have = append(have, t)
		}
	}
	if len(have) > maxTargets {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("targets: at most %d", maxTargets))
		return
	}
	s.saveTargets(w, r, k, dst, TargetsRequest{Targets: have, Schedule: dst.Targets.Schedule, Threads: dst.Targets.Threads,
		MaxRuntime: protocol.Duration(dst.Targets.MaxRuntime)})
}

// ---- scans

func (s *Server) runScan(w http.ResponseWriter, r *http.Request, k store.APIKey) {
	b, err := s.st.Bot(r.Context(), k.Account, r.PathValue("id"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	if b.Status == protocol.BotSuspended || b.Status == protocol.BotInactive {
		writeError(w, http.StatusConflict, "bot is "+b.Status+": it cannot scan")
		return
	}
	scanID := admin.NewID()
	if err := s.st.QueueScan(r.Context(), k.Account, b.ID, scanID, admin.NewID()); err != nil {
		s.storeError(w, r, err)
		return
	}
	s.notify.Notify(b.ID)
	writeJSON(w, http.StatusAccepted, map[string]string{"scan_id": scanID})
}

func (s *Server) listScans(w http.ResponseWriter, r *http.Request, k store.APIKey) {
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

func (s *Server) getScan(w http.ResponseWriter, r *http.Request, k store.APIKey) {
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

func (s *Server) listCertificates(w http.ResponseWriter, r *http.Request, k store.APIKey) {
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

func (s *Server) getCertificate(w http.ResponseWriter, r *http.Request, k store.APIKey) {
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

func (s *Server) downloadCertificate(w http.ResponseWriter, r *http.Request, k store.APIKey) {
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
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.%s"`, fp[:16], format))
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}
