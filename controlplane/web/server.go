// Package web is the control plane's dashboard: server-rendered HTML
// (html/template, assets embedded), a little JavaScript that nothing
// depends on, charts drawn as inline SVG.
//
// Every page is reached through Server.page, which finds the session,
// checks the role's permission (controlplane/rbac), checks the CSRF token
// of every form posted, and sets the security headers (a strict CSP: no
// inline script or style, nothing from elsewhere). Changes go through
// controlplane/ops, which audits them.
package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/seal"
	"github.com/emsign/bot/controlplane/store"
)

//go:embed templates static
var assets embed.FS

// Config is what the dashboard needs.
type Config struct {
	Store  store.Store
	Ops    *ops.Ops
	Logger *slog.Logger
	Now    func() time.Time // time.Now when nil
	// SessionIdle ends a session unused that long (30 minutes when zero);
	// SessionMax ends any session that old (12 hours when zero).
	SessionIdle time.Duration
	SessionMax  time.Duration
	// CACertPEM is the control plane's CA certificate, which bots need to
	// trust it (offered for download next to the activation command).
	CACertPEM []byte
	// Sealer seals a pending two-factor enrolment in a cookie (auth.go):
	// replicas must share it, so give the control plane's sealer. Nil
	// makes one with a random key, which does for a single process.
	Sealer *seal.Sealer
}

// Server serves the dashboard.
type Server struct {
	st    store.Store
	ops   *ops.Ops
	log   *slog.Logger
	now   func() time.Time
	idle  time.Duration
	max   time.Duration
	pages map[string]*template.Template
	mux   *http.ServeMux
	caPEM []byte
	seal  *seal.Sealer
}

// New parses the templates and builds the routes.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Ops == nil || cfg.Logger == nil {
		return nil, errors.New("web: store, ops and logger are required")
	}
	s := &Server{st: cfg.Store, ops: cfg.Ops, log: cfg.Logger, now: cfg.Now, idle: cfg.SessionIdle, max: cfg.SessionMax,
		mux: http.NewServeMux(), caPEM: cfg.CACertPEM}
	if s.now == nil {
		s.now = time.Now
	}
	if s.idle <= 0 {
		s.idle = 30 * time.Minute
	}
	if s.max <= 0 {
		s.max = 12 * time.Hour
	}
	s.seal = cfg.Sealer
	if s.seal == nil {
		key := make([]byte, seal.KeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("web: sealing key: %w", err)
		}
		sl, err := seal.New(key)
		if err != nil {
			return nil, err
		}
		s.seal = sl
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s.pages = pages
	s.routes()
	return s, nil
}

// Handler serves every dashboard path, with the security headers.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w.Header())
		s.mux.ServeHTTP(w, r)
	})
}

// csp allows scripts, styles and images from this origin only (images
// also as data: URIs, for the TOTP QR code), and no framing.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Strict-Transport-Security", "max-age=31536000")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

func (s *Server) routes() {
	static, _ := fs.Sub(assets, "static")
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.authRoutes()      // auth.go: login, two-factor, logout, account settings, users, API keys, audit
	s.dashboardRoutes() // dashboard.go: the dashboard
	s.certRoutes()      // certificates.go: the inventory, a certificate, downloads, exports
	s.botRoutes()       // bots.go: bots, their settings and actions
	s.templateRoutes()  // templates.go: CSR templates, key profiles, provisioning templates
	s.orderRoutes()     // orders.go: a certificate's actions, orders and their history
	s.keyRoutes()       // keys.go: the key inventory and each location's rotation history
	s.batchRoutes()     // batches.go: mass replacement
	s.scheduleRoutes()  // schedules.go: schedules and auto-renewal
}

// ---- sessions and permissions

// SessionCookie holds the session's random token; the __Host- prefix makes
// the browser refuse it unless Secure, host-only and for path /.
const SessionCookie = "__Host-emsign_session"

// Viewer is the logged-in user a page is rendered for.
type Viewer struct {
	User    store.User
	Session store.Session
	Account store.Account
	Role    rbac.Role
}

// Can reports whether the viewer may do p (templates hide what they may
// not: `{{if .V.Can "bots.manage"}}`).
func (v *Viewer) Can(p string) bool { return v != nil && rbac.Can(v.Role, rbac.Permission(p)) }

// CSRF is the token forms carry in their "csrf" field.
func (v *Viewer) CSRF() string { return v.Session.CSRF }

// Actor is the viewer as ops sees it.
func (v *Viewer) Actor(r *http.Request) ops.Actor {
	return ops.Actor{Account: v.User.Account, Kind: ops.ActorUser, ID: v.User.ID, Name: v.User.Email, Role: v.Role,
		Remote: RemoteIP(r)}
}

// RemoteIP is the client's address without the port.
func RemoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// hashToken is how a session is stored: only the SHA-256 of its cookie.
func hashToken(t string) []byte {
	h := sha256.Sum256([]byte(t))
	return h[:]
}

// session finds the request's session and its user; ok is false when
// there is none, it expired, or its user is disabled.
func (s *Server) session(ctx context.Context, r *http.Request) (*Viewer, bool, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return nil, false, nil
	}
	sess, err := s.st.Session(ctx, hashToken(c.Value))
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	now := s.now()
	if now.After(sess.Expires) || now.Sub(sess.LastSeen) > s.idle {
		_ = s.st.DeleteSession(ctx, sess.IDHash)
		return nil, false, nil
	}
	u, err := s.st.User(ctx, sess.Account, sess.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if u.Disabled {
		_ = s.st.DeleteSession(ctx, sess.IDHash)
		return nil, false, nil
	}
	acct, err := s.st.Account(ctx, u.Account)
	if err != nil {
		return nil, false, err
	}
	// Touch at most once a minute: a page view is not a write.
	if now.Sub(sess.LastSeen) > time.Minute {
		if err := s.st.UpdateSession(ctx, sess.IDHash, sess.Stage, now, time.Time{}); err != nil {
			return nil, false, err
		}
		sess.LastSeen = now
	}
	return &Viewer{User: u, Session: sess, Account: acct, Role: rbac.Role(u.Role)}, true, nil
}

// handlerFunc is a page handler for a logged-in viewer.
type handlerFunc func(w http.ResponseWriter, r *http.Request, v *Viewer)

// page wraps a handler: the viewer must be fully logged in (password and,
// when needed, the second factor) and have perm ("" for any logged-in
// user). A form posted must carry the session's CSRF token and come from
// this origin.
func (s *Server) page(perm rbac.Permission, h handlerFunc) http.Handler {
	return s.pageStage(store.SessionOK, perm, h)
}

// pageStage is page for a given session stage (the two-factor pages
// accept a session that is waiting for its code or enrolment).
func (s *Server) pageStage(stage string, perm rbac.Permission, h handlerFunc) http.Handler {
	return s.pageStages([]string{stage}, perm, h)
}

// pageStages is pageStage for a page that more than one stage may see
// (two-factor enrolment: forced at login, or chosen from /account; logout).
func (s *Server) pageStages(stages []string, perm rbac.Permission, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		v, ok, err := s.session(r.Context(), r)
		if err != nil {
			s.serverError(w, r, nil, err)
			return
		}
		if !ok {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.fail(w, r, nil, http.StatusUnauthorized, "Your session has ended. Log in again.")
			return
		}
		// IP restrictions (A4): rules can change while a session lives.
		if s.ipRefused(w, r, v) {
			return
		}
		if !slices.Contains(stages, v.Session.Stage) {
			switch v.Session.Stage {
			case store.SessionTOTP:
				http.Redirect(w, r, "/login/totp", http.StatusSeeOther)
			case store.SessionEnrol:
				http.Redirect(w, r, "/account/totp", http.StatusSeeOther)
			default:
				http.Redirect(w, r, "/", http.StatusSeeOther)
			}
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if err := checkForm(r, v); err != nil {
				s.fail(w, r, v, http.StatusForbidden, err.Error())
				return
			}
		}
		if perm != "" && !rbac.Can(v.Role, perm) {
			s.log.Info("page refused", "path", r.URL.Path, "user", v.User.ID, "role", v.Role, "permission", perm)
			s.fail(w, r, v, http.StatusForbidden, fmt.Sprintf("Your role (%s) does not allow this page.", v.Role.Label()))
			return
		}
		h(w, r, v)
	})
}

// maxForm bounds a posted form.
const maxForm = 1 << 20

// checkForm checks a posted form: same origin, and the session's CSRF
// token in the "csrf" field.
func checkForm(r *http.Request, v *Viewer) error {
	if err := checkOrigin(r); err != nil {
		return err
	}
	r.Body = http.MaxBytesReader(nil, r.Body, maxForm)
	var tok string
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		if err := r.ParseMultipartForm(maxForm); err != nil {
			return errors.New("The form could not be read.")
		}
		tok = r.PostFormValue("csrf")
	} else {
		if err := r.ParseForm(); err != nil {
			return errors.New("The form could not be read.")
		}
		tok = r.PostForm.Get("csrf")
	}
	if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(v.Session.CSRF)) != 1 {
		return errors.New("The form is out of date (CSRF check failed): reload the page and try again.")
	}
	return nil
}

// checkOrigin refuses a form posted from another site (the Origin and
// Sec-Fetch-Site headers browsers send).
func checkOrigin(r *http.Request) error {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return errors.New("This form came from another site: refused.")
		}
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return errors.New("This form came from another site: refused.")
	}
	return nil
}
