package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

// Schedules (P6): an action planned on a certificate at a date and time,
// or auto-renewal a number of days before expiry.

func (s *Server) scheduleRoutes() {
	s.mux.Handle("GET /schedules", s.page(rbac.ViewOrders, s.schedules))
	s.mux.Handle("POST /schedules", s.page(rbac.ManageOrders, s.scheduleCreate))
	s.mux.Handle("POST /schedules/{id}/cancel", s.page(rbac.ManageOrders, s.scheduleCancel))
}

// scheduleAtLayout is how an <input type="datetime-local"> writes its
// value; the form reads it as UTC.
const scheduleAtLayout = "2006-01-02T15:04"

// maxAutoRenewDays bounds auto-renewal as ops does.
const maxAutoRenewDays = 365

// scheduleActions are the actions a schedule may take, with labels.
var scheduleActions = []struct{ Value, Label string }{
	{store.ScheduleInitiate, "Initiate"},
	{store.ScheduleOrder, "Order"},
	{store.ScheduleRotate, "Rotate"},
	{store.ScheduleRenewal, "Renewal"},
	{store.ScheduleRecheck, "Recheck"},
}

// scheduleRow is a line of a list.
type scheduleRow struct {
	store.Schedule
	TemplateName string
}

// When says when the schedule fires, in words.
func (r scheduleRow) When() string {
	if r.AutoRenewDays > 0 {
		return "auto-renew " + strconv.Itoa(r.AutoRenewDays) + " days before expiry"
	}
	return r.At.UTC().Format("2006-01-02 15:04 UTC")
}

type schedulesData struct {
	// Pending, Fired and Canceled are the scheduled, executed and
	// canceled lists (P6).
	Pending, Fired, Canceled []scheduleRow
	Actions                  []struct{ Value, Label string }
	Templates                []templateChoice
	Vals                     url.Values
	Error                    string
	CSRF                     string
}

// scheduleTable is one of the three lists, as its template takes it.
type scheduleTable struct {
	ID, Caption, CSRF string
	Rows              []scheduleRow
	Cancel            bool
}

// Table is a list for the "schedule-table" template; cancel adds the
// cancel buttons.
func (d schedulesData) Table(id, caption string, rows []scheduleRow, cancel bool) scheduleTable {
	return scheduleTable{ID: id, Caption: caption, CSRF: d.CSRF, Rows: rows, Cancel: cancel}
}

// Val is a form field's value (posted, or given in the query string).
func (d schedulesData) Val(name string) string { return d.Vals.Get(name) }

// Is tells whether a select's option is chosen.
func (d schedulesData) Is(name, value string) bool { return d.Vals.Get(name) == value }

func (s *Server) schedules(w http.ResponseWriter, r *http.Request, v *Viewer) {
	// The certificate page links here with the certificate and location.
	q := r.URL.Query()
	vals := url.Values{"action": {store.ScheduleRenewal}}
	for _, k := range []string{"fingerprint", "location"} {
		if val := q.Get(k); val != "" && len(val) <= maxOrderText*5 {
			vals.Set(k, val)
		}
	}
	s.renderSchedules(w, r, v, http.StatusOK, vals, "")
}

func (s *Server) renderSchedules(w http.ResponseWriter, r *http.Request, v *Viewer, status int, vals url.Values, msg string) {
	ctx, account := r.Context(), v.User.Account
	all, err := s.st.Schedules(ctx, account)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	tpls, err := s.templateChoices(ctx, account)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	names := map[string]string{}
	for _, t := range tpls {
		names[t.ID] = t.Name
	}
	d := schedulesData{Actions: scheduleActions, Templates: tpls, Vals: vals, Error: msg, CSRF: v.CSRF()}
	if d.Vals.Get("template") == "" {
		for _, t := range tpls {
			if t.Default {
				d.Vals.Set("template", t.ID)
			}
		}
	}
	for _, sc := range all {
		row := scheduleRow{Schedule: sc, TemplateName: names[sc.TemplateID]}
		switch {
		case sc.Status == store.ScheduleCanceled:
			d.Canceled = append(d.Canceled, row)
		case sc.Status == store.ScheduleFired || (sc.LastFired != nil && sc.AutoRenewDays == 0):
			d.Fired = append(d.Fired, row)
		default:
			d.Pending = append(d.Pending, row)
		}
	}
	s.render(w, r, v, status, "schedules", "Schedules", d)
}

// scheduleRequest reads the form: a date and time (UTC) or auto-renew
// days, not both.
func scheduleRequest(f url.Values) (ops.ScheduleRequest, error) {
	req := ops.ScheduleRequest{Action: f.Get("action"), Fingerprint: strings.ToLower(strings.TrimSpace(f.Get("fingerprint"))),
		Location: strings.TrimSpace(f.Get("location")), TemplateID: f.Get("template")}
	known := false
	for _, a := range scheduleActions {
		known = known || a.Value == req.Action
	}
	if !known {
		return req, &fieldError{"action", "want initiate, order, rotate, renewal or recheck"}
	}
	if !isFingerprint(req.Fingerprint) {
		return req, &fieldError{"fingerprint", "want 64 hexadecimal digits (a SHA-256)"}
	}
	if err := oneLine("location", req.Location, maxKeyPath); err != nil {
		return req, err
	}
	at, days := strings.TrimSpace(f.Get("at")), strings.TrimSpace(f.Get("auto_renew_days"))
	switch {
	case at != "" && days != "":
		return req, &fieldError{"at", "give a date and time or auto-renew days, not both"}
	case at != "":
		t, err := time.ParseInLocation(scheduleAtLayout, at, time.UTC)
		if err != nil {
			return req, &fieldError{"at", "want a date and time as YYYY-MM-DDTHH:MM (UTC)"}
		}
		req.At = t
	case days != "":
		n, err := intField(f, "auto_renew_days", 1, maxAutoRenewDays)
		if err != nil {
			return req, err
		}
		req.AutoRenewDays = n
	default:
		return req, &fieldError{"at", "give a date and time, or auto-renew days"}
	}
	return req, nil
}

func (s *Server) scheduleCreate(w http.ResponseWriter, r *http.Request, v *Viewer) {
	f := r.PostForm
	req, err := scheduleRequest(f)
	if err == nil {
		if _, err = s.ops.CreateSchedule(r.Context(), v.Actor(r), req); err == nil {
			s.redirect(w, r, "/schedules", "Schedule created.")
			return
		}
	}
	msg, status, ok := opsMessage(err)
	if !ok {
		s.opsFail(w, r, v, "certificate", err)
		return
	}
	s.renderSchedules(w, r, v, status, f, msg)
}

func (s *Server) scheduleCancel(w http.ResponseWriter, r *http.Request, v *Viewer) {
	err := s.ops.CancelSchedule(r.Context(), v.Actor(r), r.PathValue("id"))
	if err != nil {
		msg, status, ok := opsMessage(err)
		if !ok {
			s.opsFail(w, r, v, "schedule", err)
			return
		}
		s.renderSchedules(w, r, v, status, url.Values{}, msg)
		return
	}
	s.redirect(w, r, "/schedules", "Schedule canceled.")
}
