package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	// The schedule form checks time zones with time.LoadLocation, which
	// needs a zone database on every OS (Windows has none).
	_ "time/tzdata"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// botOnlineWithin is how recently a bot must have called to count as
// online (as the dashboard's BotCounts.Online).
const botOnlineWithin = 5 * time.Minute

// botScansShown is how many of a bot's scans its page lists; the errors
// of each are listed up to botScanErrorsShown.
const (
	botScansShown      = 20
	botScanErrorsShown = 50
)

func (s *Server) botRoutes() {
	s.mux.Handle("GET /bots", s.page(rbac.ViewBots, s.botsList))
	s.mux.Handle("GET /bots/ca.pem", s.page(rbac.ViewBots, s.botsCA))
	s.mux.Handle("GET /bots/new", s.page(rbac.ManageBots, s.botNewForm))
	s.mux.Handle("POST /bots/new", s.page(rbac.ManageBots, s.botCreate))
	s.mux.Handle("GET /bots/{id}", s.page(rbac.ViewBots, s.botView))
	s.mux.Handle("POST /bots/{id}/scan", s.page(rbac.ManageBots, s.botRunScan))
	s.mux.Handle("POST /bots/{id}/suspend", s.page(rbac.ManageBots, s.botSetStatus(protocol.BotSuspended)))
	s.mux.Handle("POST /bots/{id}/deactivate", s.page(rbac.ManageBots, s.botSetStatus(protocol.BotInactive)))
	s.mux.Handle("POST /bots/{id}/token", s.page(rbac.ManageBots, s.botRegenerate))
	s.mux.Handle("GET /bots/{id}/settings", s.page(rbac.ViewBots, s.botSettingsPage))
	s.mux.Handle("POST /bots/{id}/targets/add", s.page(rbac.ManageBots, s.botAddTarget))
	s.mux.Handle("POST /bots/{id}/targets/remove", s.page(rbac.ManageBots, s.botRemoveTargets))
	s.mux.Handle("POST /bots/{id}/targets/import", s.page(rbac.ManageBots, s.botImportTargets))
	s.mux.Handle("POST /bots/{id}/schedule", s.page(rbac.ManageBots, s.botSchedule))
	s.mux.Handle("POST /bots/{id}/tags", s.page(rbac.ManageBots, s.botTags))
	s.mux.Handle("POST /bots/{id}/details", s.page(rbac.ManageBots, s.botDetails))
}

// ---- errors

// botFail answers an error from the store or ops that is not bad input:
// a bot of another account is simply not found.
func (s *Server) botFail(w http.ResponseWriter, r *http.Request, v *Viewer, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.fail(w, r, v, http.StatusNotFound, "No such bot in this account.")
	case errors.Is(err, ops.ErrForbidden):
		s.fail(w, r, v, http.StatusForbidden, fmt.Sprintf("Your role (%s) does not allow this.", v.Role.Label()))
	case errors.Is(err, store.ErrBotLimit):
		s.fail(w, r, v, http.StatusConflict, "The account has reached its bot limit.")
	case errors.Is(err, store.ErrConflict):
		s.fail(w, r, v, http.StatusConflict, "The bot's status does not allow this.")
	default:
		s.serverError(w, r, v, err)
	}
}

// invalidMessage is an *ops.InvalidError's message for a form, the field
// named by its label when the form has one.
func invalidMessage(err error) (string, bool) {
	var inv *ops.InvalidError
	if !errors.As(err, &inv) {
		return "", false
	}
	return targetFieldLabel(inv.Field) + ": " + inv.Msg, true
}

// ---- views

// botStatus is a status as people read it, with the class that colours it.
type botStatus string

func (st botStatus) Label() string {
	switch string(st) {
	case protocol.BotActivationPending:
		return "Activation Pending"
	case protocol.BotActive:
		return "Active"
	case protocol.BotSuspended:
		return "Suspended"
	case protocol.BotInactive:
		return "Inactive"
	}
	return string(st)
}

func (st botStatus) Class() string { return "status-" + string(st) }

// botRow is a bot as the pages show it.
type botRow struct {
	admin.BotView
	Online bool
}

func (b botRow) StatusView() botStatus { return botStatus(b.Status) }

// CanScan and the others say which actions the status allows (the store
// refuses the others anyway).
func (b botRow) CanScan() bool {
	return b.Status == protocol.BotActive || b.Status == protocol.BotActivationPending
}
func (b botRow) CanSuspend() bool {
	return b.Status == protocol.BotActive || b.Status == protocol.BotActivationPending
}
func (b botRow) CanDeactivate() bool { return b.Status != protocol.BotInactive }
func (b botRow) CanRegenerate() bool { return b.Status != protocol.BotInactive }

// OSArch is "linux/amd64", or "" before activation.
func (b botRow) OSArch() string {
	if b.OS == "" {
		return ""
	}
	if b.Arch == "" {
		return b.OS
	}
	return b.OS + "/" + b.Arch
}

func (s *Server) viewBot(r *http.Request, b store.Bot) (botRow, error) {
	now := s.now()
	bv, err := admin.ViewBot(r.Context(), s.st, b, now)
	if err != nil {
		return botRow{}, err
	}
	return botRow{BotView: bv, Online: b.LastSeen != nil && now.Sub(*b.LastSeen) < botOnlineWithin}, nil
}

// ---- the list

type botsData struct {
	Bots         []botRow
	Limit        int
	Used         int // bots counting against the limit (inactive ones do not)
	LimitReached bool
}

func (s *Server) botsData(r *http.Request, v *Viewer) (botsData, error) {
	bots, err := s.st.Bots(r.Context(), v.User.Account)
	if err != nil {
		return botsData{}, err
	}
	d := botsData{Limit: v.Account.BotLimit}
	for _, b := range bots {
		row, err := s.viewBot(r, b)
		if err != nil {
			return botsData{}, err
		}
		d.Bots = append(d.Bots, row)
		if b.Status != protocol.BotInactive {
			d.Used++
		}
	}
	d.LimitReached = d.Used >= d.Limit
	return d, nil
}

func (s *Server) botsList(w http.ResponseWriter, r *http.Request, v *Viewer) {
	d, err := s.botsData(r, v)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	s.render(w, r, v, http.StatusOK, "bots", "My Bots", d)
}

// botsCA offers the control plane's CA certificate, which a bot is given
// with --ca-file when it activates.
func (s *Server) botsCA(w http.ResponseWriter, r *http.Request, v *Viewer) {
	if len(s.caPEM) == 0 {
		s.fail(w, r, v, http.StatusNotFound, "This control plane has no CA certificate to offer.")
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Disposition", `attachment; filename="ca.pem"`)
	_, _ = w.Write(s.caPEM)
}

// ---- creating a bot, and its token

type botNewData struct {
	Error        string
	Name, Group  string
	Limit, Used  int
	LimitReached bool
}

func (s *Server) botNewForm(w http.ResponseWriter, r *http.Request, v *Viewer) {
	s.renderBotNew(w, r, v, http.StatusOK, botNewData{})
}

func (s *Server) renderBotNew(w http.ResponseWriter, r *http.Request, v *Viewer, status int, d botNewData) {
	bd, err := s.botsData(r, v)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	d.Limit, d.Used, d.LimitReached = bd.Limit, bd.Used, bd.LimitReached
	s.render(w, r, v, status, "bot_new", "New bot", d)
}

// botCreatedData is the one page that shows a bot's token: after creating
// the bot and after regenerating its token. The page is never cached
// (page sets no-store) and the token is in no URL or cookie.
type botCreatedData struct {
	BotID, BotName string
	Regenerated    bool
	Token          string
	Command        string // Linux and macOS
	WindowsCommand string
	HasCA          bool
}

// botHostChars is what a Host header may hold to be put in a command line
// people paste into a shell.
var botHostChars = regexp.MustCompile(`^[A-Za-z0-9.\-\[\]:]+$`)

func (s *Server) botCreated(r *http.Request, v *Viewer, id, name, token string, regenerated bool) botCreatedData {
	host := r.Host
	if !botHostChars.MatchString(host) {
		host = "CONTROL-PLANE-HOST"
	}
	args := " activate --state %s --account " + v.User.Account + " --token " + token + " --url https://" + host
	if len(s.caPEM) > 0 {
		args += " --ca-file ca.pem"
	}
	return botCreatedData{
		BotID: id, BotName: name, Regenerated: regenerated, Token: token, HasCA: len(s.caPEM) > 0,
		Command:        "emsign-bot" + fmt.Sprintf(args, "/var/lib/emsign-bot"),
		WindowsCommand: "emsign-bot.exe" + fmt.Sprintf(args, `"C:\ProgramData\emSign Bot"`),
	}
}

func (s *Server) botCreate(w http.ResponseWriter, r *http.Request, v *Viewer) {
	name, group := r.PostForm.Get("name"), r.PostForm.Get("group")
	id, token, err := s.ops.CreateBot(r.Context(), v.Actor(r), name, group)
	if msg, ok := invalidMessage(err); ok {
		s.renderBotNew(w, r, v, http.StatusBadRequest, botNewData{Error: msg, Name: name, Group: group})
		return
	}
	if errors.Is(err, store.ErrBotLimit) {
		// The page says so itself (#bot-limit-reached), with the limit: one
		// message, not two, and not pinned on the name field.
		s.renderBotNew(w, r, v, http.StatusConflict, botNewData{Name: name, Group: group})
		return
	}
	if err != nil {
		s.botFail(w, r, v, err)
		return
	}
	s.render(w, r, v, http.StatusOK, "bot_created", "Bot created", s.botCreated(r, v, id, strings.TrimSpace(name), token, false))
}

func (s *Server) botRegenerate(w http.ResponseWriter, r *http.Request, v *Viewer) {
	b, err := s.st.Bot(r.Context(), v.User.Account, r.PathValue("id"))
	if err != nil {
		s.botFail(w, r, v, err)
		return
	}
	token, err := s.ops.RegenerateToken(r.Context(), v.Actor(r), b.ID)
	if err != nil {
		s.botFail(w, r, v, err)
		return
	}
	s.render(w, r, v, http.StatusOK, "bot_created", "New token", s.botCreated(r, v, b.ID, b.Name, token, true))
}

// ---- one bot

type botScanRow struct {
	store.Scan
	ErrorList []store.ScanError
}

type botData struct {
	Bot   botRow
	Scans []botScanRow
}

func (s *Server) botView(w http.ResponseWriter, r *http.Request, v *Viewer) {
	ctx := r.Context()
	b, err := s.st.Bot(ctx, v.User.Account, r.PathValue("id"))
	if err != nil {
		s.botFail(w, r, v, err)
		return
	}
	row, err := s.viewBot(r, b)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	scans, err := s.st.Scans(ctx, b.Account, b.ID, botScansShown)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	d := botData{Bot: row}
	for _, sc := range scans {
		sr := botScanRow{Scan: sc}
		if sc.Errors > 0 {
			if sr.ErrorList, err = s.st.ScanErrors(ctx, b.Account, b.ID, sc.ID, botScanErrorsShown); err != nil {
				s.serverError(w, r, v, err)
				return
			}
		}
		d.Scans = append(d.Scans, sr)
	}
	s.render(w, r, v, http.StatusOK, "bot", b.Name, d)
}

func botPath(id string, rest ...string) string {
	return "/bots/" + url.PathEscape(id) + strings.Join(rest, "")
}

func (s *Server) botRunScan(w http.ResponseWriter, r *http.Request, v *Viewer) {
	id := r.PathValue("id")
	if _, err := s.ops.RunScan(r.Context(), v.Actor(r), id); err != nil {
		if errors.Is(err, store.ErrConflict) {
			s.fail(w, r, v, http.StatusConflict, "A suspended or inactive bot cannot scan.")
			return
		}
		s.botFail(w, r, v, err)
		return
	}
	s.redirect(w, r, botPath(id), "Scan queued: the bot starts it when it next calls in.")
}

func (s *Server) botSetStatus(status string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, v *Viewer) {
		id := r.PathValue("id")
		if err := s.ops.SetBotStatus(r.Context(), v.Actor(r), id, status); err != nil {
			s.botFail(w, r, v, err)
			return
		}
		msg := "Bot suspended: it keeps its certificate but does not scan."
		if status == protocol.BotInactive {
			msg = "Bot deactivated: its token and certificate are revoked."
		}
		s.redirect(w, r, botPath(id), msg)
	}
}

// ---- settings

// botSettingsData is the settings page. Secrets never reach it: targets
// come redacted from ops.Targets, and a form posted back refills only its
// non-secret fields.
type botSettingsData struct {
	Bot      botRow
	Settings ops.TargetSettings
	Targets  []botTargetRow
	Kinds    []targetKind
	Others   []store.Bot
	Tags     []store.Tag
	Zones    []string
	Weekdays []botOption

	MaxThreads int
	MaxRuntime string

	// Form is the form an error is about (add-target, schedule, ...), Error
	// its message; Posted the values posted, read through Val.
	Form   string
	Error  string
	Posted url.Values
}

type botTargetRow struct {
	Index int
	URI   string
	Kind  string
}

// Val is a posted field's value to fill the form again; "" for secrets.
func (d botSettingsData) Val(name string) string {
	if d.Posted == nil || targetSecretField(name) {
		return ""
	}
	return d.Posted.Get(name)
}

// Checked tells whether a posted checkbox was ticked.
func (d botSettingsData) Checked(name string) bool {
	return d.Posted != nil && d.Posted.Get(name) != ""
}

// SelectedKind is the add-target kind to select: the one posted, else tls.
func (d botSettingsData) SelectedKind() string {
	if k := d.Val("kind"); k != "" && d.Form == "add-target" {
		return k
	}
	return protocol.SchemeTLS
}

// Sched is the schedule form's value of a field: the one posted after a
// bad schedule, else the bot's current one.
func (d botSettingsData) Sched(name string) string {
	if d.Form == "schedule" && d.Posted != nil {
		return d.Posted.Get(name)
	}
	sc := d.Settings.Schedule
	switch name {
	case "kind":
		return sc.Kind
	case "time":
		return sc.Time
	case "weekday":
		return sc.Weekday
	case "timezone":
		return sc.Timezone
	case "threads":
		return strconv.Itoa(d.Settings.Threads)
	case "max_runtime":
		return d.MaxRuntime
	}
	return ""
}

// ErrorFor is the message when it is about form.
func (d botSettingsData) ErrorFor(form string) string {
	if d.Form == form {
		return d.Error
	}
	return ""
}

// botOption is one choice of a select.
type botOption struct{ Value, Label string }

var botWeekdays = []botOption{{"mon", "Monday"}, {"tue", "Tuesday"}, {"wed", "Wednesday"}, {"thu", "Thursday"},
	{"fri", "Friday"}, {"sat", "Saturday"}, {"sun", "Sunday"}}

// botScheduleText says a schedule in words: "weekly on Monday at 02:30
// (Asia/Kolkata)".
func botScheduleText(sc protocol.Schedule) string {
	var b strings.Builder
	switch sc.Kind {
	case protocol.ScheduleDaily:
		b.WriteString("daily")
	case protocol.ScheduleWeekly:
		b.WriteString("weekly")
		for _, o := range botWeekdays {
			if o.Value == sc.Weekday {
				b.WriteString(" on " + o.Label)
			}
		}
	default:
		return "on demand only"
	}
	b.WriteString(" at " + sc.Time)
	if sc.Timezone != "" {
		b.WriteString(" (" + sc.Timezone + ")")
	} else {
		b.WriteString(" (UTC)")
	}
	return b.String()
}

// ScheduleText is the bot's schedule in words.
func (b botRow) ScheduleText() string { return botScheduleText(b.Schedule) }

// botZones are offered in the time zone list; any IANA name is accepted.
var botZones = []string{"UTC", "Africa/Johannesburg", "Africa/Lagos", "Africa/Nairobi", "America/Chicago",
	"America/Denver", "America/Los_Angeles", "America/New_York", "America/Sao_Paulo", "America/Toronto",
	"Asia/Dubai", "Asia/Hong_Kong", "Asia/Jakarta", "Asia/Kolkata", "Asia/Riyadh", "Asia/Seoul", "Asia/Shanghai",
	"Asia/Singapore", "Asia/Tokyo", "Australia/Sydney", "Europe/Amsterdam", "Europe/Berlin", "Europe/Istanbul",
	"Europe/London", "Europe/Madrid", "Europe/Moscow", "Europe/Paris", "Pacific/Auckland"}

// botExtraTagRows is how many empty tag rows the form offers.
const botExtraTagRows = 3

func (s *Server) botSettingsPage(w http.ResponseWriter, r *http.Request, v *Viewer) {
	s.renderBotSettings(w, r, v, http.StatusOK, "", "", nil)
}

// renderBotSettings renders the settings page; form and msg name the
// form a 400 answer is about.
func (s *Server) renderBotSettings(w http.ResponseWriter, r *http.Request, v *Viewer, status int, form, msg string, posted url.Values) {
	ctx := r.Context()
	b, err := s.st.Bot(ctx, v.User.Account, r.PathValue("id"))
	if err != nil {
		s.botFail(w, r, v, err)
		return
	}
	row, err := s.viewBot(r, b)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	ts, err := s.ops.Targets(ctx, v.Actor(r), b.ID)
	if err != nil {
		s.botFail(w, r, v, err)
		return
	}
	d := botSettingsData{Bot: row, Settings: ts, Kinds: targetKinds(), Zones: botZones,
		Weekdays: botWeekdays, MaxThreads: ops.MaxThreads,
		Form: form, Error: msg, Posted: posted}
	if ts.MaxRuntime > 0 {
		d.MaxRuntime = time.Duration(ts.MaxRuntime).String()
	}
	if d.Settings.Schedule.Kind == "" {
		d.Settings.Schedule.Kind = protocol.ScheduleOnDemand
	}
	for i, t := range ts.Targets {
		kind, _, _ := strings.Cut(t, ":")
		d.Targets = append(d.Targets, botTargetRow{Index: i, URI: t, Kind: kind})
	}
	if v.Can(string(rbac.ManageBots)) {
		bots, err := s.st.Bots(ctx, v.User.Account)
		if err != nil {
			s.serverError(w, r, v, err)
			return
		}
		for _, o := range bots {
			if o.ID != b.ID {
				d.Others = append(d.Others, o)
			}
		}
	}
	d.Tags = append(d.Tags, b.Tags...)
	for range botExtraTagRows {
		d.Tags = append(d.Tags, store.Tag{})
	}
	s.render(w, r, v, status, "bot_settings", b.Name+": settings", d)
}

// botSettingsResult ends a settings change: back to the page with a flash,
// the form again with the message for bad input, or an error page.
func (s *Server) botSettingsResult(w http.ResponseWriter, r *http.Request, v *Viewer, form string, err error, flash string) {
	if msg, ok := invalidMessage(err); ok {
		s.renderBotSettings(w, r, v, http.StatusBadRequest, form, msg, r.PostForm)
		return
	}
	if err != nil {
		s.botFail(w, r, v, err)
		return
	}
	s.redirect(w, r, botPath(r.PathValue("id"), "/settings"), flash)
}

func (s *Server) botAddTarget(w http.ResponseWriter, r *http.Request, v *Viewer) {
	raw, err := targetFromForm(r.PostForm)
	if err == nil {
		_, err = s.ops.AddTargets(r.Context(), v.Actor(r), r.PathValue("id"), []string{raw})
	}
	s.botSettingsResult(w, r, v, "add-target", err, "Target added.")
}

func (s *Server) botRemoveTargets(w http.ResponseWriter, r *http.Request, v *Viewer) {
	var idx []int
	for _, x := range r.PostForm["remove"] {
		n, err := strconv.Atoi(x)
		if err != nil || n < 0 {
			s.botSettingsResult(w, r, v, "remove-targets", &ops.InvalidError{Field: "remove", Msg: "not a target number"}, "")
			return
		}
		idx = append(idx, n)
	}
	if len(idx) == 0 {
		s.botSettingsResult(w, r, v, "remove-targets", &ops.InvalidError{Field: "remove", Msg: "tick the targets to remove"}, "")
		return
	}
	_, err := s.ops.RemoveTargets(r.Context(), v.Actor(r), r.PathValue("id"), idx)
	s.botSettingsResult(w, r, v, "remove-targets", err, fmt.Sprintf("%d target(s) removed.", len(idx)))
}

func (s *Server) botImportTargets(w http.ResponseWriter, r *http.Request, v *Viewer) {
	from := r.PostForm.Get("from_bot")
	var err error
	if from == "" {
		err = &ops.InvalidError{Field: "from_bot", Msg: "choose a bot"}
	} else {
		_, err = s.ops.ImportTargets(r.Context(), v.Actor(r), r.PathValue("id"), from)
		if errors.Is(err, store.ErrNotFound) {
			// The page's bot exists (or renderBotSettings says so); the
			// source is what is missing.
			if _, e := s.st.Bot(r.Context(), v.User.Account, r.PathValue("id")); e == nil {
				err = &ops.InvalidError{Field: "from_bot", Msg: "no such bot in this account"}
			}
		}
	}
	s.botSettingsResult(w, r, v, "import-targets", err, "Targets imported.")
}

// scheduleFromForm reads form#schedule.
func scheduleFromForm(f url.Values) (protocol.Schedule, int, time.Duration, error) {
	sc := protocol.Schedule{Kind: f.Get("kind"), Time: strings.TrimSpace(f.Get("time")),
		Weekday: strings.ToLower(f.Get("weekday")), Timezone: strings.TrimSpace(f.Get("timezone"))}
	switch sc.Kind {
	case protocol.ScheduleOnDemand:
		sc = protocol.Schedule{Kind: protocol.ScheduleOnDemand, Timezone: sc.Timezone}
	case protocol.ScheduleDaily:
		sc.Weekday = ""
	case protocol.ScheduleWeekly:
		if sc.Weekday == "" {
			return sc, 0, 0, &ops.InvalidError{Field: "weekday", Msg: "choose a day for a weekly scan"}
		}
	default:
		return sc, 0, 0, &ops.InvalidError{Field: "kind", Msg: "want on demand, daily or weekly"}
	}
	if sc.Kind != protocol.ScheduleOnDemand {
		if _, err := time.Parse("15:04", sc.Time); err != nil {
			return sc, 0, 0, &ops.InvalidError{Field: "time", Msg: "want HH:MM (24-hour)"}
		}
	}
	if sc.Timezone != "" {
		// LoadLocation also reads a path: only a name is an IANA zone.
		if strings.HasPrefix(sc.Timezone, "/") || strings.Contains(sc.Timezone, "..") {
			return sc, 0, 0, &ops.InvalidError{Field: "timezone", Msg: "not an IANA time zone (e.g. Asia/Kolkata)"}
		}
		if _, err := time.LoadLocation(sc.Timezone); err != nil {
			return sc, 0, 0, &ops.InvalidError{Field: "timezone", Msg: "not an IANA time zone (e.g. Asia/Kolkata)"}
		}
	}
	if err := sc.Validate(); err != nil {
		return sc, 0, 0, &ops.InvalidError{Field: "schedule", Msg: err.Error()}
	}
	threads := 0
	if t := strings.TrimSpace(f.Get("threads")); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 || n > ops.MaxThreads {
			return sc, 0, 0, &ops.InvalidError{Field: "threads", Msg: fmt.Sprintf("want 0 (the bot's default) to %d", ops.MaxThreads)}
		}
		threads = n
	}
	var maxRuntime time.Duration
	if m := strings.TrimSpace(f.Get("max_runtime")); m != "" && m != "0" {
		d, err := time.ParseDuration(m)
		if err != nil || d < 0 {
			return sc, 0, 0, &ops.InvalidError{Field: "max_runtime", Msg: "want a duration such as 2h or 90m, or 0 for none"}
		}
		maxRuntime = d
	}
	return sc, threads, maxRuntime, nil
}

func (s *Server) botSchedule(w http.ResponseWriter, r *http.Request, v *Viewer) {
	sc, threads, maxRuntime, err := scheduleFromForm(r.PostForm)
	if err == nil {
		_, err = s.ops.SetSchedule(r.Context(), v.Actor(r), r.PathValue("id"), sc, threads, maxRuntime)
	}
	s.botSettingsResult(w, r, v, "schedule", err, "Schedule saved.")
}

func (s *Server) botTags(w http.ResponseWriter, r *http.Request, v *Viewer) {
	names, values, remarks := r.PostForm["tag_name"], r.PostForm["tag_value"], r.PostForm["tag_remarks"]
	at := func(l []string, i int) string {
		if i < len(l) {
			return strings.TrimSpace(l[i])
		}
		return ""
	}
	tags := []store.Tag{}
	for i := range max(len(names), len(values), len(remarks)) {
		t := store.Tag{Name: at(names, i), Value: at(values, i), Remarks: at(remarks, i)}
		if t != (store.Tag{}) {
			tags = append(tags, t)
		}
	}
	_, err := s.ops.UpdateBot(r.Context(), v.Actor(r), r.PathValue("id"), store.BotPatch{Tags: &tags})
	s.botSettingsResult(w, r, v, "tags", err, "Tags saved.")
}

func (s *Server) botDetails(w http.ResponseWriter, r *http.Request, v *Viewer) {
	name, group := r.PostForm.Get("name"), r.PostForm.Get("group")
	_, err := s.ops.UpdateBot(r.Context(), v.Actor(r), r.PathValue("id"), store.BotPatch{Name: &name, Group: &group})
	s.botSettingsResult(w, r, v, "bot-details", err, "Bot details saved.")
}
