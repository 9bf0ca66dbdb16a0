package web

import (
	"errors"
	"net/http"
	"strings"

	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

// Users, API keys (A2) and the account's settings (A4). Every change goes
// through ops, which checks the role again and audits it.

func (s *Server) userRoutes() {
	s.mux.Handle("GET /users", s.page(rbac.ViewUsers, s.usersPage))
	s.mux.Handle("POST /users", s.page(rbac.ManageUsers, s.createUser))
	s.mux.Handle("POST /users/{id}/role", s.page(rbac.ManageUsers, s.setUserRole))
	s.mux.Handle("POST /users/{id}/disable", s.page(rbac.ManageUsers, s.setUserDisabled(true)))
	s.mux.Handle("POST /users/{id}/enable", s.page(rbac.ManageUsers, s.setUserDisabled(false)))
	s.mux.Handle("POST /users/{id}/reset-totp", s.page(rbac.ManageUsers, s.resetUserTOTP))

	s.mux.Handle("GET /apikeys", s.page(rbac.ViewUsers, s.apiKeysPage))
	s.mux.Handle("POST /apikeys", s.page(rbac.ManageUsers, s.createAPIKey))
	s.mux.Handle("POST /apikeys/{id}/revoke", s.page(rbac.ManageUsers, s.revokeAPIKey))

	s.mux.Handle("GET /settings", s.page(rbac.ManageAccount, s.settingsPage))
	s.mux.Handle("POST /settings", s.page(rbac.ManageAccount, s.saveSettings))
}

// roleChoice is one <option> of a role select.
type roleChoice struct {
	Value    string
	Label    string
	Selected bool
}

// grantable lists the roles v may give (rbac.CanGrant), selected marking
// one.
func grantable(v *Viewer, selected string) []roleChoice {
	var out []roleChoice
	for _, r := range rbac.Roles() {
		if rbac.CanGrant(v.Role, r) {
			out = append(out, roleChoice{Value: string(r), Label: r.Label(), Selected: string(r) == selected})
		}
	}
	return out
}

// userRow is one user as the table shows them.
type userRow struct {
	store.User
	RoleLabel string
	HasTOTP   bool
	Self      bool
	// Manage: the viewer may change this user (ops refuses changes to a
	// user whose role the viewer could not grant: a Manager does not
	// touch an Administrator).
	Manage bool
	// Roles the viewer may give this user (when Manage).
	Roles []roleChoice
}

type usersData struct {
	Users    []userRow
	Roles    []roleChoice // for the new user form
	Email    string       // the new user form's values after an error
	Name     string
	Error    string
	CanGrant bool
}

func (s *Server) usersPage(w http.ResponseWriter, r *http.Request, v *Viewer) {
	s.showUsers(w, r, v, http.StatusOK, usersData{})
}

func (s *Server) showUsers(w http.ResponseWriter, r *http.Request, v *Viewer, status int, d usersData) {
	users, err := s.st.Users(r.Context(), v.User.Account)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	for _, u := range users {
		row := userRow{User: u, RoleLabel: rbac.Role(u.Role).Label(), HasTOTP: len(u.TOTPSealed) > 0, Self: u.ID == v.User.ID}
		if !row.Self && rbac.CanGrant(v.Role, rbac.Role(u.Role)) {
			row.Manage = true
			row.Roles = grantable(v, u.Role)
		}
		d.Users = append(d.Users, row)
	}
	selected := string(rbac.BasicUser)
	for _, c := range d.Roles {
		if c.Selected {
			selected = c.Value
		}
	}
	d.Roles = grantable(v, selected)
	d.CanGrant = len(d.Roles) > 0
	s.render(w, r, v, status, "users", "Users", d)
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, v *Viewer) {
	f := r.PostForm
	d := usersData{Email: strings.TrimSpace(f.Get("email")), Name: strings.TrimSpace(f.Get("name"))}
	role := f.Get("role")
	d.Roles = []roleChoice{{Value: role, Selected: true}}
	switch {
	case d.Email == "":
		d.Error = "Email: enter the new user's email."
	case f.Get("password") == "":
		d.Error = "Password: enter a first password for the new user."
	}
	if d.Error == "" {
		u, err := s.ops.CreateUser(r.Context(), v.Actor(r), d.Email, d.Name, role, f.Get("password"))
		if err == nil {
			s.redirect(w, r, "/users", "User "+u.Email+" created.")
			return
		}
		var inv *ops.InvalidError
		switch {
		case errors.As(err, &inv):
			d.Error = fieldLabel(inv.Field) + ": " + inv.Msg + "."
		case errors.Is(err, store.ErrConflict):
			d.Error = "Email: a user with this email already exists."
		case errors.Is(err, ops.ErrForbidden):
			d.Error = "Role: your role (" + v.Role.Label() + ") may not give this role."
		default:
			s.serverError(w, r, v, err)
			return
		}
	}
	s.showUsers(w, r, v, http.StatusBadRequest, d)
}

func (s *Server) setUserRole(w http.ResponseWriter, r *http.Request, v *Viewer) {
	id := r.PathValue("id")
	role := r.PostForm.Get("role")
	if err := s.ops.SetUserRole(r.Context(), v.Actor(r), id, role); err != nil {
		s.userOpsError(w, r, v, err)
		return
	}
	s.redirect(w, r, "/users", "Role changed to "+rbac.Role(role).Label()+".")
}

func (s *Server) setUserDisabled(disabled bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, v *Viewer) {
		if err := s.ops.SetUserDisabled(r.Context(), v.Actor(r), r.PathValue("id"), disabled); err != nil {
			s.userOpsError(w, r, v, err)
			return
		}
		msg := "User enabled."
		if disabled {
			msg = "User disabled: their sessions have ended."
		}
		s.redirect(w, r, "/users", msg)
	}
}

func (s *Server) resetUserTOTP(w http.ResponseWriter, r *http.Request, v *Viewer) {
	if err := s.ops.ResetUserTOTP(r.Context(), v.Actor(r), r.PathValue("id")); err != nil {
		s.userOpsError(w, r, v, err)
		return
	}
	s.redirect(w, r, "/users", "Two-factor login reset: the user enrols again at their next login when it is required.")
}

// ---- API keys

type apiKeysData struct {
	Keys  []apiKeyRow
	Roles []roleChoice
	Error string
}

type apiKeyRow struct {
	store.APIKey
	RoleLabel string
}

func (s *Server) apiKeysPage(w http.ResponseWriter, r *http.Request, v *Viewer) {
	s.showAPIKeys(w, r, v, http.StatusOK, "")
}

func (s *Server) showAPIKeys(w http.ResponseWriter, r *http.Request, v *Viewer, status int, msg string) {
	keys, err := s.st.APIKeys(r.Context(), v.User.Account)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	d := apiKeysData{Roles: grantable(v, string(rbac.BasicUser)), Error: msg}
	for _, k := range keys {
		d.Keys = append(d.Keys, apiKeyRow{APIKey: k, RoleLabel: rbac.Role(k.Role).Label()})
	}
	s.render(w, r, v, status, "apikeys", "API keys", d)
}

type apiKeyCreated struct {
	Key       string
	RoleLabel string
}

func (s *Server) createAPIKey(w http.ResponseWriter, r *http.Request, v *Viewer) {
	role := r.PostForm.Get("role")
	key, err := s.ops.CreateAPIKey(r.Context(), v.Actor(r), role)
	var inv *ops.InvalidError
	switch {
	case err == nil:
	case errors.As(err, &inv):
		s.showAPIKeys(w, r, v, http.StatusBadRequest, fieldLabel(inv.Field)+": "+inv.Msg+".")
		return
	case errors.Is(err, ops.ErrForbidden):
		s.showAPIKeys(w, r, v, http.StatusForbidden, "Role: your role ("+v.Role.Label()+") may not give this role.")
		return
	default:
		s.userOpsError(w, r, v, err)
		return
	}
	// Shown once, in this answer only: never in a redirect, a cookie or
	// a log.
	s.render(w, r, v, http.StatusOK, "apikey_created", "API key created",
		apiKeyCreated{Key: key, RoleLabel: rbac.Role(role).Label()})
}

func (s *Server) revokeAPIKey(w http.ResponseWriter, r *http.Request, v *Viewer) {
	id := r.PathValue("id")
	if err := s.ops.RevokeAPIKey(r.Context(), v.Actor(r), id); err != nil {
		s.userOpsError(w, r, v, err)
		return
	}
	s.redirect(w, r, "/apikeys", "API key "+id+" revoked.")
}

// ---- account settings

type settingsData struct {
	RequireTOTP bool
}

func (s *Server) settingsPage(w http.ResponseWriter, r *http.Request, v *Viewer) {
	s.render(w, r, v, http.StatusOK, "settings", "Account settings", settingsData{RequireTOTP: v.Account.RequireTOTP})
}

func (s *Server) saveSettings(w http.ResponseWriter, r *http.Request, v *Viewer) {
	require := r.PostForm.Get("require_totp") != ""
	if err := s.ops.SetRequireTOTP(r.Context(), v.Actor(r), require); err != nil {
		s.userOpsError(w, r, v, err)
		return
	}
	msg := "Settings saved: two-factor login is optional."
	if require {
		msg = "Settings saved: two-factor login is required; users without a second factor enrol at their next login."
	}
	s.redirect(w, r, "/settings", msg)
}
