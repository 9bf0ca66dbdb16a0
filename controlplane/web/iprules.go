package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/emsign/bot/controlplane/iprules"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

// IP restrictions (A4): the page that manages them, and the check every
// login and page makes.

func (s *Server) ipRuleRoutes() {
	s.mux.Handle("GET /settings/ip-rules", s.page(rbac.ManageAccount, s.ipRulesPage))
	s.mux.Handle("POST /settings/ip-rules", s.page(rbac.ManageAccount, s.createIPRule))
	s.mux.Handle("POST /settings/ip-rules/{id}/enable", s.page(rbac.ManageAccount, s.setIPRuleEnabled(true)))
	s.mux.Handle("POST /settings/ip-rules/{id}/disable", s.page(rbac.ManageAccount, s.setIPRuleEnabled(false)))
	s.mux.Handle("POST /settings/ip-rules/{id}/delete", s.page(rbac.ManageAccount, s.deleteIPRule))
}

// ipAllowed reports whether user userID of account may work from the
// request's address under the account's IP rules (one indexed query).
//
// The address is r.RemoteAddr's, never X-Forwarded-For or the like: a
// client sets those headers to anything, so trusting them would let anyone
// through. Behind a reverse proxy every client has the proxy's address;
// honouring the proxy's header from configured proxies only is future
// work.
func (s *Server) ipAllowed(ctx context.Context, account, userID string, r *http.Request) (bool, error) {
	rules, err := s.st.IPRules(ctx, account)
	if err != nil {
		return false, err
	}
	return iprules.Allowed(rules, userID, RemoteIP(r)), nil
}

// msgIPRefused is what a person refused for their address reads.
func msgIPRefused(r *http.Request) string {
	return "Access from your address (" + RemoteIP(r) + ") is not allowed for this account."
}

// ipRefused checks the address of a logged-in viewer's request (rules can
// change while a session lives) and answers 403 when it is refused. The
// session stays: the same person back at an allowed address carries on.
// Logging out is always allowed.
func (s *Server) ipRefused(w http.ResponseWriter, r *http.Request, v *Viewer) bool {
	if r.Method == http.MethodPost && r.URL.Path == "/logout" {
		return false
	}
	ok, err := s.ipAllowed(r.Context(), v.User.Account, v.User.ID, r)
	if err != nil {
		s.serverError(w, r, nil, err)
		return true
	}
	if ok {
		return false
	}
	// Logged, not audited: every page view of a refused session would
	// flood the audit log.
	s.log.Info("page refused: address not allowed", "path", r.URL.Path, "user", v.User.ID, "remote", RemoteIP(r))
	// No viewer: the menu would lead only to more refusals.
	s.fail(w, r, nil, http.StatusForbidden, msgIPRefused(r))
	return true
}

// ---- the page

type ipRuleRow struct {
	store.IPRule
	// User is the email of the user the rule is for, "" for all users.
	User string
}

type ipUserChoice struct {
	ID       string
	Email    string
	Selected bool
}

type ipRulesData struct {
	Rules  []ipRuleRow
	Users  []ipUserChoice
	YourIP string
	// The new rule form's values after an error.
	Start       string
	End         string
	Description string
	Error       string
}

func (s *Server) ipRulesPage(w http.ResponseWriter, r *http.Request, v *Viewer) {
	s.showIPRules(w, r, v, http.StatusOK, ipRulesData{})
}

func (s *Server) showIPRules(w http.ResponseWriter, r *http.Request, v *Viewer, status int, d ipRulesData) {
	ctx := r.Context()
	rules, err := s.st.IPRules(ctx, v.User.Account)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	users, err := s.st.Users(ctx, v.User.Account)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	emails := map[string]string{}
	selected := r.PostFormValue("user_id")
	for _, u := range users {
		emails[u.ID] = u.Email
		d.Users = append(d.Users, ipUserChoice{ID: u.ID, Email: u.Email, Selected: u.ID == selected})
	}
	for _, rl := range rules {
		row := ipRuleRow{IPRule: rl}
		if rl.UserID != "" {
			row.User = emails[rl.UserID]
			if row.User == "" {
				row.User = "user " + rl.UserID
			}
		}
		d.Rules = append(d.Rules, row)
	}
	d.YourIP = RemoteIP(r)
	s.render(w, r, v, status, "iprules", "IP restrictions", d)
}

func (s *Server) createIPRule(w http.ResponseWriter, r *http.Request, v *Viewer) {
	f := r.PostForm
	d := ipRulesData{Start: f.Get("start_ip"), End: f.Get("end_ip"), Description: f.Get("description")}
	rl, err := s.ops.CreateIPRule(r.Context(), v.Actor(r), f.Get("user_id"), d.Start, d.End, d.Description)
	var inv *ops.InvalidError
	switch {
	case err == nil:
	case errors.As(err, &inv):
		d.Error = ipFieldLabel(inv.Field) + ": " + inv.Msg + "."
		s.showIPRules(w, r, v, http.StatusBadRequest, d)
		return
	default:
		s.ipRuleError(w, r, v, err)
		return
	}
	msg := "IP rule added: " + rl.StartIP + " – " + rl.EndIP + "."
	if rl.StartIP == rl.EndIP {
		msg = "IP rule added: " + rl.StartIP + "."
	}
	s.redirect(w, r, "/settings/ip-rules", msg)
}

func (s *Server) setIPRuleEnabled(enabled bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, v *Viewer) {
		id, ok := ruleID(r)
		if !ok {
			s.fail(w, r, v, http.StatusNotFound, "No such IP rule.")
			return
		}
		if err := s.ops.SetIPRuleEnabled(r.Context(), v.Actor(r), id, enabled); err != nil {
			s.ipRuleError(w, r, v, err)
			return
		}
		msg := "IP rule disabled."
		if enabled {
			msg = "IP rule enabled."
		}
		s.redirect(w, r, "/settings/ip-rules", msg)
	}
}

func (s *Server) deleteIPRule(w http.ResponseWriter, r *http.Request, v *Viewer) {
	id, ok := ruleID(r)
	if !ok {
		s.fail(w, r, v, http.StatusNotFound, "No such IP rule.")
		return
	}
	if err := s.ops.DeleteIPRule(r.Context(), v.Actor(r), id); err != nil {
		s.ipRuleError(w, r, v, err)
		return
	}
	s.redirect(w, r, "/settings/ip-rules", "IP rule deleted.")
}

func ruleID(r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	return id, err == nil && id > 0
}

// ipRuleError answers a change ops refused or failed.
func (s *Server) ipRuleError(w http.ResponseWriter, r *http.Request, v *Viewer, err error) {
	var inv *ops.InvalidError
	switch {
	case errors.As(err, &inv):
		s.showIPRules(w, r, v, http.StatusBadRequest, ipRulesData{Error: ipFieldLabel(inv.Field) + ": " + inv.Msg + "."})
	case errors.Is(err, ops.ErrForbidden):
		s.fail(w, r, v, http.StatusForbidden, "Your role ("+v.Role.Label()+") may not change IP restrictions.")
	case errors.Is(err, store.ErrNotFound):
		s.fail(w, r, v, http.StatusNotFound, "No such IP rule.")
	default:
		s.serverError(w, r, v, err)
	}
}

// ipFieldLabel names a field of the IP rule form as its label does.
func ipFieldLabel(field string) string {
	switch field {
	case "user_id":
		return "User"
	case "start_ip":
		return "Start address"
	case "end_ip":
		return "End address"
	case "description":
		return "Description"
	}
	return "Rule"
}
