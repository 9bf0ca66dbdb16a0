package web

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/emsign/bot/controlplane/auth"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

// Login, the second factor, logout and the viewer's own account (A4).

const (
	// loginCSRFCookie carries the login form's CSRF token: there is no
	// session yet, so the form's hidden "csrf" field must equal this
	// cookie (double submit), which another site can neither read nor set
	// (__Host-: Secure, host-only).
	loginCSRFCookie = "__Host-emsign_login"
	// totpPendingCookie holds a second factor being enrolled (see
	// pendingTOTP).
	totpPendingCookie = "__Host-emsign_totp"

	// maxLoginFailures wrong passwords or one-time codes in a row lock the
	// user for lockoutFor.
	maxLoginFailures = 5
	lockoutFor       = 15 * time.Minute
	// pendingSessionMax bounds a session that still waits for its second
	// factor or its enrolment.
	pendingSessionMax = 15 * time.Minute
	// totpEnrolFor is how long a secret shown for enrolment stays valid.
	totpEnrolFor = 15 * time.Minute
	// qrSize is the enrolment QR code's width and height in pixels.
	qrSize = 240
)

// Messages a person reads at login. An unknown email, a wrong password and
// a disabled user get the same one, so that the form tells nobody which
// emails have an account.
const (
	msgLoginWrong  = "Email or password is wrong."
	msgLoginLocked = "Too many failed attempts; try again later."
	msgLoginStale  = "The login form was out of date; try again."
	msgCodeWrong   = "That code is wrong."
	msgCodeReused  = "That code was already used; wait for the next one."
)

func (s *Server) authRoutes() {
	s.mux.HandleFunc("GET /login", s.loginForm)
	s.mux.HandleFunc("POST /login", s.loginPost)
	s.mux.Handle("GET /login/totp", s.pageStage(store.SessionTOTP, "", s.totpForm))
	s.mux.Handle("POST /login/totp", s.pageStage(store.SessionTOTP, "", s.totpPost))
	// Enrolment is the only page of a session the account's RequireTOTP
	// holds back, and a logged-in user may enrol from /account.
	enrol := []string{store.SessionEnrol, store.SessionOK}
	s.mux.Handle("GET /account/totp", s.pageStages(enrol, "", s.enrolForm))
	s.mux.Handle("POST /account/totp", s.pageStages(enrol, "", s.enrolPost))
	// Logout works at every stage: a person may give up at the code.
	s.mux.Handle("POST /logout", s.pageStages([]string{store.SessionOK, store.SessionTOTP, store.SessionEnrol}, "", s.logout))
	s.mux.Handle("GET /account", s.page("", s.accountPage))
	s.mux.Handle("POST /account/password", s.page("", s.changePassword))
	s.userRoutes()  // users.go: users, API keys, account settings
	s.auditRoutes() // audit.go: the audit log
	// iprules.go: IP restrictions
	s.ipRuleRoutes()
}

// ---- login

type loginData struct {
	Email string
	Next  string
	CSRF  string
	Error string
}

// loginNext is where to go after login: a path of this site only (an
// emailed link must not send people elsewhere after they log in), and not
// the login pages themselves.
func loginNext(n string) string {
	if n == "" || len(n) > 2000 || !localPath(n) || n == "/login" || strings.HasPrefix(n, "/login?") ||
		strings.HasPrefix(n, "/login/") || strings.HasPrefix(n, "/logout") {
		return "/"
	}
	return n
}

// withNext adds next to path when it is not "/".
func withNext(path, next string) string {
	if next == "/" {
		return path
	}
	return path + "?next=" + url.QueryEscape(next)
}

// stageHome is where a session of this stage belongs.
func stageHome(stage, next string) string {
	switch stage {
	case store.SessionTOTP:
		return withNext("/login/totp", next)
	case store.SessionEnrol:
		return withNext("/account/totp", next)
	}
	return next
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	next := loginNext(r.URL.Query().Get("next"))
	if v, ok, err := s.session(r.Context(), r); err == nil && ok {
		http.Redirect(w, r, stageHome(v.Session.Stage, next), http.StatusSeeOther)
		return
	}
	s.renderLogin(w, r, http.StatusOK, loginData{Next: next})
}

// renderLogin shows the login form with its CSRF token: the cookie's when
// it has a sound one (several tabs keep working), else a new one.
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, d loginData) {
	tok := ""
	if c, err := r.Cookie(loginCSRFCookie); err == nil && validToken(c.Value) {
		tok = c.Value
	} else {
		t, err := auth.NewToken(32)
		if err != nil {
			s.serverError(w, r, nil, err)
			return
		}
		tok = t
		// Strict: only this site's own pages post the login form.
		http.SetCookie(w, &http.Cookie{Name: loginCSRFCookie, Value: tok, Path: "/", Secure: true, HttpOnly: true,
			SameSite: http.SameSiteStrictMode})
	}
	d.CSRF = tok
	s.render(w, r, nil, status, "login", "Log in", d)
}

// validToken: what auth.NewToken(32) makes (43 base64url characters).
func validToken(t string) bool {
	if len(t) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(t)
	return err == nil
}

func (s *Server) loginPost(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := checkOrigin(r); err != nil {
		s.renderLogin(w, r, http.StatusForbidden, loginData{Next: "/", Error: err.Error()})
		return
	}
	if err := r.ParseForm(); err != nil {
		s.renderLogin(w, r, http.StatusBadRequest, loginData{Next: "/", Error: "The form could not be read."})
		return
	}
	f := r.PostForm
	d := loginData{Email: strings.TrimSpace(f.Get("email")), Next: loginNext(f.Get("next"))}
	c, err := r.Cookie(loginCSRFCookie)
	tok := f.Get("csrf")
	if err != nil || tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(c.Value)) != 1 {
		d.Error = msgLoginStale
		s.renderLogin(w, r, http.StatusForbidden, d)
		return
	}
	password := f.Get("password")
	if d.Email == "" || password == "" {
		d.Error = "Enter your email and your password."
		s.renderLogin(w, r, http.StatusBadRequest, d)
		return
	}
	now := s.now()
	u, err := s.st.UserByEmail(ctx, d.Email)
	if errors.Is(err, store.ErrNotFound) {
		// As slow as a wrong password. No audit entry: the log is per
		// account and this email has none; the address is logged, the
		// email not (people type passwords into the wrong field).
		auth.BurnPasswordCheck(password)
		s.log.Info("login failed", "reason", "unknown email", "remote", RemoteIP(r))
		d.Error = msgLoginWrong
		s.renderLogin(w, r, http.StatusUnauthorized, d)
		return
	}
	if err != nil {
		s.serverError(w, r, nil, err)
		return
	}
	a := userActor(r, u)
	if locked(u, now) {
		auth.BurnPasswordCheck(password)
		s.auditEvent(ctx, a, "user.login_failed", u.ID, "locked after repeated failures")
		d.Error = msgLoginLocked
		s.renderLogin(w, r, http.StatusTooManyRequests, d)
		return
	}
	if err := auth.VerifyPassword(u.Password, password); err != nil {
		if !errors.Is(err, auth.ErrMismatch) {
			s.log.Error("login: stored password hash unusable", "user", u.ID, "err", err)
		}
		nowLocked, err := s.loginFailed(ctx, a, u, "wrong password")
		if err != nil {
			s.serverError(w, r, nil, err)
			return
		}
		d.Error = msgLoginWrong
		status := http.StatusUnauthorized
		if nowLocked {
			d.Error, status = msgLoginLocked, http.StatusTooManyRequests
		}
		s.renderLogin(w, r, status, d)
		return
	}
	if u.Disabled {
		s.auditEvent(ctx, a, "user.login_failed", u.ID, "user disabled")
		d.Error = msgLoginWrong
		s.renderLogin(w, r, http.StatusUnauthorized, d)
		return
	}
	// IP restrictions (A4), checked after the password so that the answer
	// tells nobody without it whether the email has an account. No session
	// is made; the failure count stays as it is (the password was right).
	if allowed, err := s.ipAllowed(ctx, u.Account, u.ID, r); err != nil {
		s.serverError(w, r, nil, err)
		return
	} else if !allowed {
		s.auditEvent(ctx, a, "user.login_refused", u.ID, "address "+RemoteIP(r)+" not allowed by the IP restrictions")
		d.Error = msgIPRefused(r)
		s.renderLogin(w, r, http.StatusForbidden, d)
		return
	}
	acct, err := s.st.Account(ctx, u.Account)
	if err != nil {
		s.serverError(w, r, nil, err)
		return
	}
	stage := store.SessionOK
	switch {
	case len(u.TOTPSealed) > 0:
		stage = store.SessionTOTP
	case acct.RequireTOTP:
		stage = store.SessionEnrol
	}
	// With a second factor the login is not complete yet: the failure
	// count stays, so that guessing codes over several logins still
	// reaches the lockout.
	if stage != store.SessionTOTP {
		if _, err := s.st.RecordLogin(ctx, u.ID, true, now, time.Time{}); err != nil {
			s.serverError(w, r, nil, err)
			return
		}
		detail := "password"
		if stage == store.SessionEnrol {
			detail = "password; two-factor enrolment required"
		}
		s.auditEvent(ctx, a, "user.login", u.ID, detail)
	}
	// A session already in this browser ends: a login always makes a new
	// token (no fixation).
	if old, err := r.Cookie(SessionCookie); err == nil && old.Value != "" {
		_ = s.st.DeleteSession(ctx, hashToken(old.Value))
	}
	if err := s.startSession(ctx, w, r, u, stage, now); err != nil {
		s.serverError(w, r, nil, err)
		return
	}
	dropCookie(w, loginCSRFCookie)
	http.Redirect(w, r, stageHome(stage, d.Next), http.StatusSeeOther)
}

// locked reports whether u is locked out at now.
func locked(u store.User, now time.Time) bool {
	return u.LockedUntil != nil && now.Before(*u.LockedUntil)
}

// loginFailed counts a wrong password or code and locks the user at every
// maxLoginFailures-th failure in a row (so after a lockout ends there are
// again maxLoginFailures tries); it reports whether the user is now
// locked.
func (s *Server) loginFailed(ctx context.Context, a ops.Actor, u store.User, why string) (bool, error) {
	now := s.now()
	var until time.Time
	if (u.FailedLogins+1)%maxLoginFailures == 0 {
		until = now.Add(lockoutFor)
	}
	nu, err := s.st.RecordLogin(ctx, u.ID, false, now, until)
	if err != nil {
		return false, err
	}
	isLocked := !until.IsZero() || locked(nu, now)
	if isLocked {
		why += "; locked for " + lockoutFor.String()
	}
	s.auditEvent(ctx, a, "user.login_failed", u.ID, why)
	return isLocked, nil
}

// startSession makes the session and sets its cookie.
func (s *Server) startSession(ctx context.Context, w http.ResponseWriter, r *http.Request, u store.User, stage string, now time.Time) error {
	tok, err := auth.NewToken(32)
	if err != nil {
		return err
	}
	csrf, err := auth.NewToken(32)
	if err != nil {
		return err
	}
	exp := now.Add(s.max)
	if stage != store.SessionOK {
		exp = now.Add(min(pendingSessionMax, s.max))
	}
	ua := r.UserAgent()
	if len(ua) > 300 {
		ua = ua[:300]
	}
	if err := s.st.CreateSession(ctx, store.Session{IDHash: hashToken(tok), UserID: u.ID, Account: u.Account, Stage: stage,
		CSRF: csrf, Remote: RemoteIP(r), UserAgent: ua, CreatedAt: now, LastSeen: now, Expires: exp}); err != nil {
		return err
	}
	// Lax, not Strict: a link to a page of the dashboard from an email or
	// a chat must arrive logged in. Forms are safe by their CSRF token.
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: tok, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteLaxMode})
	return nil
}

// dropCookie tells the browser to forget a cookie of ours.
func dropCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, MaxAge: -1})
}

// userActor is u as the audit log names them (before there is a Viewer).
func userActor(r *http.Request, u store.User) ops.Actor {
	return ops.Actor{Account: u.Account, Kind: ops.ActorUser, ID: u.ID, Name: u.Email, Role: rbac.Role(u.Role),
		Remote: RemoteIP(r)}
}

// auditEvent records what is not a change made through ops (login,
// logout). A failure to record is logged, not shown: the person did
// nothing wrong.
func (s *Server) auditEvent(ctx context.Context, a ops.Actor, action, object, detail string) {
	if err := s.ops.Record(ctx, a, action, object, detail); err != nil {
		s.log.Error("audit record failed", "action", action, "actor", a.Name, "err", err)
	}
}

// ---- the second factor at login

type totpData struct {
	Next  string
	Error string
}

func (s *Server) totpForm(w http.ResponseWriter, r *http.Request, v *Viewer) {
	s.render(w, r, v, http.StatusOK, "totp", "Two-factor login", totpData{Next: loginNext(r.URL.Query().Get("next"))})
}

func (s *Server) totpPost(w http.ResponseWriter, r *http.Request, v *Viewer) {
	ctx := r.Context()
	d := totpData{Next: loginNext(r.PostForm.Get("next"))}
	u := v.User
	a := v.Actor(r)
	now := s.now()
	if locked(u, now) {
		s.endSession(ctx, w, v)
		s.redirect(w, r, "/login", msgLoginLocked)
		return
	}
	secret, err := s.ops.TOTPSecret(ctx, u)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	step, err := auth.ValidateTOTP(secret, r.PostForm.Get("code"), now)
	if errors.Is(err, auth.ErrTOTPCode) {
		nowLocked, err := s.loginFailed(ctx, a, u, "wrong one-time code")
		if err != nil {
			s.serverError(w, r, v, err)
			return
		}
		if nowLocked {
			// Enough guesses: the session ends and the user is locked, so
			// a new login does not bring new guesses either.
			s.endSession(ctx, w, v)
			s.redirect(w, r, "/login", msgLoginLocked)
			return
		}
		d.Error = msgCodeWrong
		s.render(w, r, v, http.StatusUnauthorized, "totp", "Two-factor login", d)
		return
	}
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	if err := s.st.UseTOTPStep(ctx, u.ID, step); errors.Is(err, store.ErrConflict) {
		s.auditEvent(ctx, a, "user.login_failed", u.ID, "one-time code used again")
		d.Error = msgCodeReused
		s.render(w, r, v, http.StatusUnauthorized, "totp", "Two-factor login", d)
		return
	} else if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	if _, err := s.st.RecordLogin(ctx, u.ID, true, now, time.Time{}); err != nil {
		s.serverError(w, r, v, err)
		return
	}
	if err := s.st.UpdateSession(ctx, v.Session.IDHash, store.SessionOK, now, now.Add(s.max)); err != nil {
		s.serverError(w, r, v, err)
		return
	}
	s.auditEvent(ctx, a, "user.login", u.ID, "password and one-time code")
	http.Redirect(w, r, d.Next, http.StatusSeeOther)
}

// endSession deletes the viewer's session and its cookie.
func (s *Server) endSession(ctx context.Context, w http.ResponseWriter, v *Viewer) {
	if err := s.st.DeleteSession(ctx, v.Session.IDHash); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("end session", "user", v.User.ID, "err", err)
	}
	dropCookie(w, SessionCookie)
	dropCookie(w, totpPendingCookie)
}

// ---- enrolment

// A secret being enrolled must reach the POST that confirms it without
// being stored before it is confirmed (an unconfirmed secret in the user's
// row would demand codes from a device that never got it). It is kept in
// a cookie sealed with the server's key: the control plane's replicas are
// stateless (a map in memory would lose it behind a load balancer), the
// browser cannot read or choose it (the secret is the server's random
// one), and the seal binds it to this session and user and carries its
// expiry, so a copied cookie opens nowhere else and not for long.
type pendingTOTP struct {
	Secret  string `json:"s"`
	Expires int64  `json:"e"`
}

func pendingAAD(v *Viewer) []byte {
	return []byte("totp-enrol:" + v.User.ID + ":" + hex.EncodeToString(v.Session.IDHash))
}

// pendingSecret is the secret being enrolled, "" when none or expired.
func (s *Server) pendingSecret(r *http.Request, v *Viewer) string {
	c, err := r.Cookie(totpPendingCookie)
	if err != nil || len(c.Value) > 1000 {
		return ""
	}
	sealed, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		return ""
	}
	plain, err := s.seal.Open(sealed, pendingAAD(v))
	if err != nil {
		return ""
	}
	var p pendingTOTP
	if err := json.Unmarshal(plain, &p); err != nil || p.Secret == "" || s.now().Unix() >= p.Expires {
		return ""
	}
	return p.Secret
}

func (s *Server) setPendingSecret(w http.ResponseWriter, v *Viewer, secret string) error {
	plain, err := json.Marshal(pendingTOTP{Secret: secret, Expires: s.now().Add(totpEnrolFor).Unix()})
	if err != nil {
		return err
	}
	sealed, err := s.seal.Seal(plain, pendingAAD(v))
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: totpPendingCookie, Value: base64.RawURLEncoding.EncodeToString(sealed), Path: "/",
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: int(totpEnrolFor / time.Second)})
	return nil
}

type enrolData struct {
	Enrolled bool // already has a second factor
	Forced   bool // the account requires it before anything else
	QR       template.URL
	Secret   string
	Next     string
	Error    string
}

func (s *Server) enrolForm(w http.ResponseWriter, r *http.Request, v *Viewer) {
	s.showEnrol(w, r, v, http.StatusOK, enrolData{Next: loginNext(r.URL.Query().Get("next"))})
}

// showEnrol renders the enrolment page with the pending secret, making one
// when there is none.
func (s *Server) showEnrol(w http.ResponseWriter, r *http.Request, v *Viewer, status int, d enrolData) {
	d.Forced = v.Session.Stage == store.SessionEnrol
	if len(v.User.TOTPSealed) > 0 {
		d.Enrolled = true
		s.render(w, r, v, status, "totp_enrol", "Two-factor login", d)
		return
	}
	var key auth.TOTPKey
	var err error
	if secret := s.pendingSecret(r, v); secret != "" {
		key, err = auth.TOTPKeyFor(v.User.Email, secret)
	} else {
		key, err = auth.NewTOTP(v.User.Email)
		if err == nil {
			err = s.setPendingSecret(w, v, key.Secret())
		}
	}
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	qr, err := key.QRCodeDataURI(qrSize)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	// A data: URI html/template would refuse; this one is our own PNG.
	d.QR = template.URL(qr)
	d.Secret = key.Secret()
	s.render(w, r, v, status, "totp_enrol", "Two-factor login", d)
}

func (s *Server) enrolPost(w http.ResponseWriter, r *http.Request, v *Viewer) {
	ctx := r.Context()
	d := enrolData{Next: loginNext(r.PostForm.Get("next"))}
	if len(v.User.TOTPSealed) > 0 {
		s.redirect(w, r, "/account", "Two-factor login is already on.")
		return
	}
	secret := s.pendingSecret(r, v)
	if secret == "" {
		s.redirect(w, r, withNext("/account/totp", d.Next), "That enrolment expired: scan the new code.")
		return
	}
	now := s.now()
	step, err := auth.ValidateTOTP(secret, r.PostForm.Get("code"), now)
	if errors.Is(err, auth.ErrTOTPCode) {
		d.Error = "code: that code is wrong. Enter the six digits your app shows now (check the phone's clock)."
		s.showEnrol(w, r, v, http.StatusBadRequest, d)
		return
	}
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	if err := s.ops.EnrolTOTP(ctx, v.Actor(r), secret); err != nil {
		s.userOpsError(w, r, v, err)
		return
	}
	// The code just typed must not log in again.
	if err := s.st.UseTOTPStep(ctx, v.User.ID, step); err != nil && !errors.Is(err, store.ErrConflict) {
		s.serverError(w, r, v, err)
		return
	}
	dropCookie(w, totpPendingCookie)
	if v.Session.Stage == store.SessionEnrol {
		if err := s.st.UpdateSession(ctx, v.Session.IDHash, store.SessionOK, now, now.Add(s.max)); err != nil {
			s.serverError(w, r, v, err)
			return
		}
		s.redirect(w, r, d.Next, "Two-factor login is on. You will be asked for a code at every login.")
		return
	}
	s.redirect(w, r, "/account", "Two-factor login is on. You will be asked for a code at every login.")
}

// ---- logout

func (s *Server) logout(w http.ResponseWriter, r *http.Request, v *Viewer) {
	s.endSession(r.Context(), w, v)
	s.auditEvent(r.Context(), v.Actor(r), "user.logout", v.User.ID, "")
	s.redirect(w, r, "/login", "You have logged out.")
}

// ---- the viewer's account

type accountData struct {
	HasTOTP bool
	Error   string
}

func (s *Server) accountPage(w http.ResponseWriter, r *http.Request, v *Viewer) {
	s.render(w, r, v, http.StatusOK, "account", "Your account", accountData{HasTOTP: len(v.User.TOTPSealed) > 0})
}

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, v *Viewer) {
	ctx := r.Context()
	f := r.PostForm
	d := accountData{HasTOTP: len(v.User.TOTPSealed) > 0}
	current, next, confirm := f.Get("current"), f.Get("new"), f.Get("confirm")
	switch {
	case current == "":
		d.Error = "Current password: enter it."
	case next != confirm:
		d.Error = "Confirm: the two new passwords differ."
	}
	if d.Error == "" {
		if err := auth.CheckPasswordPolicy(next); err != nil {
			d.Error = "New password: " + strings.TrimPrefix(err.Error(), "password: ") + "."
		}
	}
	if d.Error == "" {
		err := s.ops.ChangePassword(ctx, v.Actor(r), current, next)
		var inv *ops.InvalidError
		switch {
		case err == nil:
		case errors.Is(err, auth.ErrMismatch):
			d.Error = "Current password: it is wrong."
		case errors.As(err, &inv):
			d.Error = fieldLabel(inv.Field) + ": " + inv.Msg + "."
		default:
			s.userOpsError(w, r, v, err)
			return
		}
	}
	if d.Error != "" {
		s.render(w, r, v, http.StatusBadRequest, "account", "Your account", d)
		return
	}
	// Every session of the user ends with the old password (ops does it
	// too; this is the one the browser holds).
	if err := s.st.DeleteUserSessions(ctx, v.User.ID); err != nil {
		s.log.Error("end sessions after password change", "user", v.User.ID, "err", err)
	}
	dropCookie(w, SessionCookie)
	s.redirect(w, r, "/login", "Your password was changed and every session ended: log in with the new password.")
}

// fieldLabel names a form field as the page labels it.
func fieldLabel(field string) string {
	switch field {
	case "current":
		return "Current password"
	case "new":
		return "New password"
	case "email":
		return "Email"
	case "name":
		return "Name"
	case "role":
		return "Role"
	case "code", "totp", "secret":
		return "Code"
	}
	if field == "" {
		return "Form"
	}
	return strings.ToUpper(field[:1]) + field[1:]
}

// userOpsError answers a refused or failed change made through ops.
func (s *Server) userOpsError(w http.ResponseWriter, r *http.Request, v *Viewer, err error) {
	var inv *ops.InvalidError
	switch {
	case errors.Is(err, ops.ErrForbidden):
		s.fail(w, r, v, http.StatusForbidden, "Your role ("+v.Role.Label()+") does not allow this.")
	case errors.As(err, &inv):
		s.fail(w, r, v, http.StatusBadRequest, fieldLabel(inv.Field)+": "+inv.Msg+".")
	case errors.Is(err, store.ErrNotFound):
		s.fail(w, r, v, http.StatusNotFound, "There is no such object in your account.")
	case errors.Is(err, store.ErrConflict):
		s.fail(w, r, v, http.StatusConflict, "That change conflicts with the current state; reload and try again.")
	default:
		s.serverError(w, r, v, err)
	}
}
