// Package server is the control plane's HTTPS face: the bot API under
// /bot/v1 (mTLS after activation), the user API under /api/v1 (API keys,
// each with a role that every route enforces) and, when configured, the
// dashboard at every other path.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/ordering"
	"github.com/emsign/bot/controlplane/pki"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/seal"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// Config is what a Server needs.
type Config struct {
	Store  store.Store
	CA     *pki.CA
	Sealer *seal.Sealer
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// MaxWait bounds a job long poll; 60s when zero.
	MaxWait time.Duration
	// Ops makes the user API's changes; nil makes one from Store, Sealer,
	// Logger and Now. The bot API's long polls wake on its Notifier, so
	// the dashboard must share it.
	Ops *ops.Ops
	// Dashboard, when set, serves every path outside /api/v1/ and /bot/v1/.
	Dashboard http.Handler
	// Ordering makes orders and follows rotations (the CSR route, rotate
	// jobs, /api/v1/orders, the local CAs' /ca/); nil takes Ops' one, or,
	// when Server makes Ops, makes one with the local CA only.
	Ordering *ordering.Service
}

// Server serves both APIs. Close it before shutting the HTTP server down,
// so that long polls end at once.
type Server struct {
	st      store.Store
	ca      *pki.CA
	log     *slog.Logger
	now     func() time.Time
	maxWait time.Duration
	ops     *ops.Ops
	mux     *http.ServeMux
	// ordering is nil when not configured: its routes answer 503.
	ordering *ordering.Service

	closeOnce sync.Once
	closing   chan struct{}
}

// New checks cfg and builds the server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.CA == nil || cfg.Logger == nil || (cfg.Sealer == nil && cfg.Ops == nil) {
		return nil, errors.New("server: store, CA, sealer (or ops) and logger are required")
	}
	s := &Server{
		st: cfg.Store, ca: cfg.CA, log: cfg.Logger, now: cfg.Now, maxWait: cfg.MaxWait,
		ops: cfg.Ops, mux: http.NewServeMux(), closing: make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxWait <= 0 {
		s.maxWait = 60 * time.Second
	}
	s.ordering = cfg.Ordering
	if s.ops == nil {
		notifier := ops.NewNotifier()
		if s.ordering == nil {
			o, err := ordering.New(ordering.Config{Store: cfg.Store, Sealer: cfg.Sealer, Wake: notifier.Notify,
				Logger: cfg.Logger, Now: cfg.Now})
			if err != nil {
				return nil, fmt.Errorf("server: %w", err)
			}
			s.ordering = o
		}
		o, err := ops.New(ops.Config{Store: cfg.Store, Sealer: cfg.Sealer, Logger: cfg.Logger, Now: cfg.Now,
			Notifier: notifier, Ordering: s.ordering})
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		s.ops = o
	} else if s.ordering == nil {
		s.ordering = s.ops.Ordering()
	}
	s.routes(cfg.Dashboard)
	return s, nil
}

// Close ends the long polls in progress; later ones return at once.
func (s *Server) Close() { s.closeOnce.Do(func() { close(s.closing) }) }

// Handler is the HTTP handler of both APIs (and the dashboard), with
// request logging.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		rw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		s.mux.ServeHTTP(rw, r)
		// The path only: queries and bodies are never logged.
		s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rw.status,
			"duration_ms", s.now().Sub(start).Milliseconds(), "remote", r.RemoteAddr)
	})
}

// TLSConfig is the server side of TLS: the given server certificate, and
// client certificates of the CA verified when offered (activation comes
// without one).
func (s *Server) TLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    s.ca.Pool(),
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) routes(dashboard http.Handler) {
	m := s.mux
	// Bot API.
	m.HandleFunc("POST "+protocol.PathActivate, s.activate)
	m.Handle("GET "+protocol.PathConfig, s.bot(s.botConfig))
	m.Handle("POST "+protocol.PathScans, s.bot(s.botScanStart))
	m.Handle("POST "+protocol.PathFindings, s.bot(s.botFindings))
	m.Handle("POST "+protocol.PathScanComplete, s.bot(s.botScanComplete))
	m.Handle("GET "+protocol.PathJobs, s.bot(s.botJobs))
	m.Handle("POST "+protocol.PathJobResult, s.bot(s.botJobResult))
	m.Handle("POST "+protocol.PathOrderCSR, s.bot(s.botOrderCSR))
	m.HandleFunc(protocol.BotAPIPrefix+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such bot API call")
	})

	// User API: every route names the permission it needs (reads
	// included) and, for changes, the audit action a refusal records.
	const p = "/api/v1"
	for _, rt := range []struct {
		pattern string
		perm    rbac.Permission
		action  string
		h       userHandler
	}{
		{"GET " + p + "/dashboard", rbac.ViewDashboard, "", s.getDashboard},
		{"GET " + p + "/audit", rbac.ViewAudit, "", s.listAudit},
		{"GET " + p + "/bots", rbac.ViewBots, "", s.listBots},
		{"POST " + p + "/bots", rbac.ManageBots, "bot.create", s.createBot},
		{"GET " + p + "/bots/{id}", rbac.ViewBots, "", s.getBot},
		{"PATCH " + p + "/bots/{id}", rbac.ManageBots, "bot.update", s.patchBot},
		{"POST " + p + "/bots/{id}/suspend", rbac.ManageBots, "bot.suspend", s.setStatus(protocol.BotSuspended)},
		{"POST " + p + "/bots/{id}/deactivate", rbac.ManageBots, "bot.deactivate", s.setStatus(protocol.BotInactive)},
		{"POST " + p + "/bots/{id}/token", rbac.ManageBots, "bot.token", s.regenerateToken},
		{"GET " + p + "/bots/{id}/targets", rbac.ViewBots, "", s.getTargets},
		{"PUT " + p + "/bots/{id}/targets", rbac.ManageBots, "targets.update", s.putTargets},
		{"POST " + p + "/bots/{id}/targets/import", rbac.ManageBots, "targets.import", s.importTargets},
		{"POST " + p + "/bots/{id}/scans", rbac.ManageBots, "bot.scan", s.runScan},
		{"GET " + p + "/bots/{id}/scans", rbac.ViewBots, "", s.listScans},
		{"GET " + p + "/bots/{id}/scans/{scan}", rbac.ViewBots, "", s.getScan},
		{"GET " + p + "/certificates", rbac.ViewCertificates, "", s.listCertificates},
		{"GET " + p + "/certificates/{fp}", rbac.ViewCertificates, "", s.getCertificate},
		{"GET " + p + "/certificates/{fp}/download", rbac.ViewCertificates, "", s.downloadCertificate},
		{"POST " + protocol.PathImports, rbac.ImportBundles, "bundle.import", s.importBundle},
		{"GET " + p + "/users", rbac.ViewUsers, "", s.listUsers},
		{"POST " + p + "/users", rbac.ManageUsers, "user.create", s.createUser},
		{"GET " + p + "/apikeys", rbac.ViewUsers, "", s.listAPIKeys},
		{"POST " + p + "/apikeys", rbac.ManageUsers, "apikey.create", s.createAPIKey},
		{"DELETE " + p + "/apikeys/{id}", rbac.ManageUsers, "apikey.revoke", s.revokeAPIKey},
	} {
		m.Handle(rt.pattern, s.user(rt.perm, rt.action, rt.h))
	}
	// Templates and key profiles (P1-P3): templatesapi.go; orders
	// (D7, S5): ordersapi.go; mass replacements and schedules (P6, P9):
	// batchesapi.go.
	var more []templateRoute
	more = append(more, s.templateRoutes(p)...)
	more = append(more, s.orderRoutes(p)...)
	more = append(more, s.keyRoutes(p)...)
	more = append(more, s.batchRoutes(p)...)
	for _, rt := range more {
		m.Handle(rt.pattern, s.user(rt.perm, rt.action, rt.h))
	}
	// The local CAs' CRL, OCSP and certificate: public, no login (relying
	// parties fetch them from the URLs in the certificates).
	if s.ordering != nil {
		m.Handle("/ca/", s.ordering.CAHandler())
	}
	m.HandleFunc(p+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API route")
	})

	// The dashboard takes the rest; the API prefixes above are more
	// specific patterns, so they keep precedence.
	if dashboard != nil {
		m.Handle("/", dashboard)
	}
}

// ---- JSON helpers

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, protocol.ErrorResponse{Error: msg})
}

// Body size limits.
const (
	maxBody         = 1 << 20
	maxFindingsBody = 64 << 20
)

// readJSON decodes the body into v. strict refuses unknown fields (the user
// API: a misspelt field is a mistake); the bot API accepts them, so that a
// newer bot still talks to this control plane.
func readJSON(w http.ResponseWriter, r *http.Request, v any, limit int64, strict bool) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return errors.New("body: more than one JSON value")
	}
	return nil
}

// jsonError names the field at fault.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return fmt.Errorf("%s: want a JSON %s", te.Field, te.Type.Kind())
	case errors.As(err, &se):
		return fmt.Errorf("body: not valid JSON (at byte %d)", se.Offset)
	case errors.As(err, &mbe):
		return fmt.Errorf("body: larger than %d bytes", mbe.Limit)
	case errors.Is(err, io.EOF):
		return errors.New("body: empty; want a JSON object")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("body: unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		// Field errors from UnmarshalJSON methods (e.g. a bad duration).
		return fmt.Errorf("body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
}

// invalidResponse is a 400 answer naming the field at fault.
type invalidResponse struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// opsError answers a failed change: forbidden (403), bad input (400 naming
// the field), or what the store said.
func (s *Server) opsError(w http.ResponseWriter, r *http.Request, err error) {
	var ie *ops.InvalidError
	switch {
	case errors.Is(err, ops.ErrForbidden):
		writeError(w, http.StatusForbidden, err.Error())
	case errors.As(err, &ie):
		writeJSON(w, http.StatusBadRequest, invalidResponse{Error: ie.Error(), Field: ie.Field})
	default:
		s.storeError(w, r, err)
	}
}

// storeError answers a store failure: not found, conflict or internal.
func (s *Server) storeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not found")
	case errors.Is(err, store.ErrBotLimit):
		writeError(w, http.StatusConflict, "bot limit of the account reached: raise it first")
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, conflictMessage(err))
	case errors.Is(err, context.Canceled):
		writeError(w, http.StatusServiceUnavailable, "request cancelled")
	default:
		s.log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

// conflictMessage is the store's own words, which name only our objects.
func conflictMessage(err error) string {
	msg := err.Error()
	return strings.TrimSuffix(msg, ": "+store.ErrConflict.Error())
}
