package web

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/ordering"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// Orders (D7, S5): the actions on a certificate's page, the list of
// orders and one order with its history.

func (s *Server) orderRoutes() {
	s.mux.Handle("GET /orders", s.page(rbac.ViewOrders, s.orders))
	s.mux.Handle("GET /orders/{id}", s.page(rbac.ViewOrders, s.order))
	s.mux.Handle("POST /certificates/{fp}/rotate", s.page(rbac.ManageOrders, s.certAction(actRotate)))
	s.mux.Handle("POST /certificates/{fp}/revoke", s.page(rbac.ManageOrders, s.certAction(actRevoke)))
	s.mux.Handle("POST /certificates/{fp}/suspend", s.page(rbac.ManageOrders, s.certAction(actSuspend)))
	s.mux.Handle("POST /certificates/{fp}/resume", s.page(rbac.ManageOrders, s.certAction(actResume)))
}

// The certificate page's action forms.
const (
	actRotate  = "rotate"
	actRevoke  = "revoke"
	actSuspend = "suspend"
	actResume  = "resume"
)

// orderPageSize is the orders a list page shows.
const orderPageSize = 50

// Limits of the rotate form's free-text fields.
const (
	maxKeyPath   = 1024
	maxReload    = 1024
	maxRemarks   = 1000
	maxVerify    = 20
	maxOrderText = 200
)

// orderStatuses are the statuses the list filters by, in the order an
// order moves through them.
var orderStatuses = []string{store.OrderInitiated, store.OrderOrdering, store.OrderIssued, store.OrderDeployed,
	store.OrderRotated, store.OrderRekeyed, store.OrderFailed, store.OrderRolledBack, store.OrderRevoked,
	store.OrderSuspended, store.OrderCanceled}

// revokeReason is a CRLReason of RFC 5280 (5.3.1) a person may choose.
// certificateHold and removeFromCRL are left out (they are Suspend and
// Resume), and so are cACompromise and aACompromise (they name a CA's or
// an attribute authority's key, not the certificate's).
type revokeReason struct {
	Code        int
	Name, Label string
}

var revokeReasons = []revokeReason{
	{0, "unspecified", "Unspecified"},
	{1, "keyCompromise", "Key compromise"},
	{3, "affiliationChanged", "Affiliation changed"},
	{4, "superseded", "Superseded"},
	{5, "cessationOfOperation", "Cessation of operation"},
	{9, "privilegeWithdrawn", "Privilege withdrawn"},
}

// deployableLocations are the certificate's locations a rotation can
// replace, by the ordering service's own rule (none when the control
// plane runs without ordering).
func (s *Server) deployableLocations(c store.Certificate) []locationOption {
	svc := s.ops.Ordering()
	if svc == nil {
		return nil
	}
	locs := svc.DeployableLocations(c)
	held := map[string]int{}
	for _, l := range locs {
		held[l.URI]++
	}
	out := make([]locationOption, 0, len(locs))
	for _, l := range locs {
		o := locationOption{Value: l.BotID + locationSep + l.URI, Label: l.URI}
		if held[l.URI] > 1 {
			// The same path on several servers: say which one.
			o.Label += " (bot " + l.BotID + ")"
		}
		out = append(out, o)
	}
	return out
}

// locationSep joins a bot and a location URI in the rotate form's choice:
// bot IDs never hold it (protocol.IDPattern).
const locationSep = "|"

// locationOption is one choice of the rotate form's location.
type locationOption struct{ Value, Label string }

// orderFinal reports whether an order will change no more (the order
// page stops refreshing).
func orderFinal(o store.Order) bool {
	switch o.Status {
	case store.OrderRotated, store.OrderRekeyed, store.OrderFailed, store.OrderRolledBack, store.OrderRevoked,
		store.OrderSuspended, store.OrderCanceled:
		return true
	case store.OrderDeployed:
		// A renewal ends deployed; a rotation or re-key goes on to say so.
		return o.Action != protocol.ActionRotate && o.Action != protocol.ActionRekey
	case store.OrderIssued:
		return o.BotID == "" // ordered only: nothing to deploy
	}
	return false
}

// statusClass is the badge colour of an order status.
func statusClass(status string) string {
	switch status {
	case store.OrderRotated, store.OrderRekeyed, store.OrderDeployed, store.OrderIssued:
		return "ok"
	case store.OrderFailed, store.OrderRolledBack, store.OrderRevoked:
		return "bad"
	}
	return "warn"
}

// ---- the certificate page's actions

// certActions is the certificate page's Actions section for a viewer with
// orders.manage: the choices of the forms and, after bad input, the form
// that failed with its values and message.
type certActions struct {
	Fingerprint string
	Locations   []locationOption
	Templates   []templateChoice
	Reasons     []revokeReason
	Suspended   bool
	// OrderingOff: the control plane runs without an ordering service.
	OrderingOff bool
	// Form is the form the message is about ("" when none failed).
	Form, Error string
	Vals        url.Values
}

// templateChoice is a provisioning template in a select.
type templateChoice struct {
	ID, Name string
	Default  bool
}

// Val is a posted field's value, to fill the failed form again.
func (a *certActions) Val(form, name string) string {
	if a.Form != form {
		return ""
	}
	return a.Vals.Get(name)
}

// Is tells whether a select's option is the chosen one: the posted value
// of the failed form, else def.
func (a *certActions) Is(form, name, value, def string) bool {
	if a.Form == form && a.Vals.Has(name) {
		return a.Vals.Get(name) == value
	}
	return value == def
}

// ErrorFor is the message of form ("" when another failed or none).
func (a *certActions) ErrorFor(form string) string {
	if a.Form != form {
		return ""
	}
	return a.Error
}

// DefaultTemplate is the ID of the account's default template.
func (a *certActions) DefaultTemplate() string {
	for _, t := range a.Templates {
		if t.Default {
			return t.ID
		}
	}
	return ""
}

// certOrderRow is one of a certificate's orders.
type certOrderRow struct {
	store.Order
	Class string
}

// templateChoices are the account's enabled provisioning templates, the
// default first.
func (s *Server) templateChoices(ctx context.Context, account string) ([]templateChoice, error) {
	ts, err := s.st.ProvisioningTemplates(ctx, account)
	if err != nil {
		return nil, err
	}
	var out []templateChoice
	for _, t := range ts {
		if t.Enabled {
			out = append(out, templateChoice{ID: t.ID, Name: t.Name, Default: t.Default})
		}
	}
	slices.SortStableFunc(out, func(a, b templateChoice) int {
		switch {
		case a.Default && !b.Default:
			return -1
		case b.Default && !a.Default:
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// certOrders adds the certificate page's orders and actions to data.
// failed is the form that failed (nil on a plain view).
func (s *Server) certOrders(ctx context.Context, v *Viewer, c store.Certificate, data *certViewData, failed *certActions) error {
	account := v.User.Account
	if v.Can(string(rbac.ViewOrders)) {
		data.CanOrders = true
		os, err := s.st.Orders(ctx, account, store.OrderFilter{Fingerprint: c.Fingerprint, Limit: orderPageSize})
		if err != nil {
			return err
		}
		for _, o := range os {
			data.Orders = append(data.Orders, certOrderRow{Order: o, Class: statusClass(o.Status)})
		}
	}
	if !v.Can(string(rbac.ManageOrders)) {
		return nil
	}
	act := failed
	if act == nil {
		act = &certActions{}
	}
	act.Fingerprint = c.Fingerprint
	act.Locations = s.deployableLocations(c)
	act.OrderingOff = s.ops.Ordering() == nil
	act.Reasons = revokeReasons
	tpls, err := s.templateChoices(ctx, account)
	if err != nil {
		return err
	}
	act.Templates = tpls
	// Suspension is of the certificate an order issued, not of the one
	// it replaced.
	for _, o := range data.Orders {
		if o.Status == store.OrderSuspended && o.NewFingerprint == c.Fingerprint {
			act.Suspended = true
		}
	}
	data.Act = act
	return nil
}

// orderFieldLabels name the fields of the order, batch and schedule
// forms in messages.
var orderFieldLabels = map[string]string{
	"location": "Location", "action": "Action", "template": "Provisioning template", "template_id": "Provisioning template",
	"key_path": "Key path", "keypath": "Key path", "reload": "Reload command", "verify": "Verify endpoints", "reason": "Reason",
	"remarks": "Remarks", "fingerprint": "Certificate fingerprint", "name": "Name", "wave_size": "Wave size",
	"max_failures": "Maximum failures", "filter": "Certificate filter", "at": "At", "auto_renew_days": "Auto-renew days",
	"q": "Common name or SAN contains", "issuer": "Issuer contains", "source": "Source", "bot": "Bot",
	"type": "Type", "expires_after": "Expires after", "expires_before": "Expires before",
}

// orderFieldLabel names a field as its form's label does.
func orderFieldLabel(field string) string {
	base, _, _ := strings.Cut(field, "[")
	base = strings.TrimPrefix(strings.TrimPrefix(base, "filter."), "deploy.")
	if l, ok := orderFieldLabels[base]; ok {
		return l
	}
	return field
}

// opsMessage turns the error of a change into the form's message and the
// status to answer; ok is false for an error that is no fault of the
// input (a 500, a 403, a 404 of the page's object).
func opsMessage(err error) (msg string, status int, ok bool) {
	var inv *ops.InvalidError
	var oinv *ordering.InvalidError
	var fe *fieldError
	switch {
	case errors.As(err, &inv):
		return orderFieldLabel(inv.Field) + ": " + inv.Msg, http.StatusBadRequest, true
	case errors.As(err, &oinv):
		return orderFieldLabel(oinv.Field) + ": " + oinv.Msg, http.StatusBadRequest, true
	case errors.As(err, &fe):
		return orderFieldLabel(fe.Field) + ": " + fe.Msg, http.StatusBadRequest, true
	case errors.Is(err, store.ErrConflict):
		return "This cannot be done now: " + conflictWords(err), http.StatusConflict, true
	case errors.Is(err, ops.ErrOrderingOff):
		return "Ordering is not configured on this control plane.", http.StatusServiceUnavailable, true
	}
	return "", 0, false
}

// conflictWords is a conflict's reason without the store's suffix.
func conflictWords(err error) string {
	msg := strings.TrimSuffix(err.Error(), ": "+store.ErrConflict.Error())
	if msg == store.ErrConflict.Error() {
		return "its state does not allow it."
	}
	return msg + "."
}

// opsFail answers an error of a change that is not bad input.
func (s *Server) opsFail(w http.ResponseWriter, r *http.Request, v *Viewer, noun string, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.fail(w, r, v, http.StatusNotFound, "No such "+noun+" in this account.")
	case errors.Is(err, ops.ErrForbidden):
		s.fail(w, r, v, http.StatusForbidden, fmt.Sprintf("Your role (%s) does not allow this.", v.Role.Label()))
	default:
		s.serverError(w, r, v, err)
	}
}

// oneLine checks a free-text field: at most max bytes, no control
// characters (a reload command or remark is one line).
func oneLine(field, val string, max int) error {
	if len(val) > max {
		return &fieldError{field, fmt.Sprintf("at most %d characters", max)}
	}
	for _, r := range val {
		if r < 0x20 || r == 0x7f {
			return &fieldError{field, "one line, without control characters"}
		}
	}
	return nil
}

// parseVerify reads "host:port, host:port#sni" into the endpoints a
// rotation verifies; nil when the field is empty (ordering then takes
// the certificate's own TLS locations found by the same bot).
func parseVerify(val string) ([]string, error) {
	var out []string
	for part := range strings.SplitSeq(val, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		addr, sni, _ := strings.Cut(part, "#")
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" {
			return nil, &fieldError{"verify", fmt.Sprintf("%q: want host:port (or host:port#server-name)", part)}
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, &fieldError{"verify", fmt.Sprintf("%q: the port must be 1 to 65535", part)}
		}
		if strings.ContainsAny(sni, " #") {
			return nil, &fieldError{"verify", fmt.Sprintf("%q: the server name after # is one DNS name", part)}
		}
		out = append(out, part)
	}
	if len(out) > maxVerify {
		return nil, &fieldError{"verify", fmt.Sprintf("at most %d endpoints", maxVerify)}
	}
	return out, nil
}

// rotateRequest reads the rotate form.
func rotateRequest(fp string, f url.Values) (ordering.RotateRequest, error) {
	req := ordering.RotateRequest{Fingerprint: fp, Location: strings.TrimSpace(f.Get("location")),
		Action: f.Get("action"), TemplateID: f.Get("template")}
	if bot, uri, ok := strings.Cut(req.Location, locationSep); ok {
		req.BotID, req.Location = bot, uri
	}
	if req.Location == "" {
		return req, &fieldError{"location", "choose the location to rotate"}
	}
	switch req.Action {
	case protocol.ActionRotate, protocol.ActionRekey, protocol.ActionRenew:
	default:
		return req, &fieldError{"action", "want rotate, rekey or renew"}
	}
	keyPath := strings.TrimSpace(f.Get("key_path"))
	if err := oneLine("key_path", keyPath, maxKeyPath); err != nil {
		return req, err
	}
	reload := strings.TrimSpace(f.Get("reload"))
	if err := oneLine("reload", reload, maxReload); err != nil {
		return req, err
	}
	verify, err := parseVerify(f.Get("verify"))
	if err != nil {
		return req, err
	}
	req.Deploy = ordering.DeployOptions{KeyPath: keyPath, Reload: strings.Fields(reload), Verify: verify}
	return req, nil
}

// certAction handles one of the certificate page's forms: the change goes
// through ops, and the browser lands on the order it made; bad input
// shows the certificate page again with the form's message.
func (s *Server) certAction(action string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, v *Viewer) {
		ctx, a := r.Context(), v.Actor(r)
		fp := strings.ToLower(r.PathValue("fp"))
		if !isFingerprint(fp) {
			s.fail(w, r, v, http.StatusBadRequest, "fingerprint: want 64 hexadecimal digits (a SHA-256).")
			return
		}
		f := r.PostForm
		remarks := strings.TrimSpace(f.Get("remarks"))
		var o store.Order
		var err error
		switch action {
		case actRotate:
			var req ordering.RotateRequest
			if req, err = rotateRequest(fp, f); err == nil {
				o, err = s.ops.Rotate(ctx, a, req)
			}
		case actRevoke:
			var reason int
			if reason, err = parseReason(f.Get("reason")); err == nil {
				if err = oneLine("remarks", remarks, maxRemarks); err == nil {
					o, err = s.ops.RevokeCertificate(ctx, a, fp, reason, remarks)
				}
			}
		case actSuspend:
			if err = oneLine("remarks", remarks, maxRemarks); err == nil {
				o, err = s.ops.SuspendCertificate(ctx, a, fp, remarks)
			}
		case actResume:
			o, err = s.ops.ResumeCertificate(ctx, a, fp)
		}
		if err != nil {
			msg, status, ok := opsMessage(err)
			if !ok {
				s.opsFail(w, r, v, "certificate", err)
				return
			}
			s.showCertificate(w, r, v, status, &certActions{Form: action, Error: msg, Vals: f})
			return
		}
		// Revoke, suspend and resume are done by the CA before ops answers;
		// a rotation has only begun.
		done := map[string]string{actRotate: "Rotation ordered: the bot takes it from here.", actRevoke: "Certificate revoked.",
			actSuspend: "Certificate suspended.", actResume: "Suspension lifted."}[action]
		if o.ID == "" {
			s.redirect(w, r, "/certificates/"+fp, done)
			return
		}
		s.redirect(w, r, "/orders/"+url.PathEscape(o.ID), done)
	}
}

// parseReason reads the revoke form's reason (its RFC 5280 name).
func parseReason(name string) (int, error) {
	for _, rr := range revokeReasons {
		if rr.Name == name {
			return rr.Code, nil
		}
	}
	return 0, &fieldError{"reason", "choose one of the listed reasons"}
}

// ---- the list

// orderQuery is the list's filter as the query string says it.
type orderQuery struct {
	Status, Fingerprint, Batch string
	Page                       int
	Filter                     store.OrderFilter
}

func parseOrderQuery(q url.Values) (orderQuery, error) {
	oq := orderQuery{Status: q.Get("status"), Fingerprint: strings.ToLower(strings.TrimSpace(q.Get("fingerprint"))),
		Batch: strings.TrimSpace(q.Get("batch")), Page: 1}
	if oq.Status != "" && !slices.Contains(orderStatuses, oq.Status) {
		return oq, &fieldError{"status", "want one of " + strings.Join(orderStatuses, ", ")}
	}
	if oq.Fingerprint != "" && !isFingerprint(oq.Fingerprint) {
		return oq, &fieldError{"fingerprint", "want 64 hexadecimal digits (a SHA-256)"}
	}
	if err := oneLine("batch", oq.Batch, maxOrderText); err != nil {
		return oq, err
	}
	if p := q.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 1_000_000 {
			return oq, &fieldError{"page", "want a page number from 1"}
		}
		oq.Page = n
	}
	// One more than a page, to know whether there is a next one.
	oq.Filter = store.OrderFilter{Status: oq.Status, Fingerprint: oq.Fingerprint, BatchID: oq.Batch,
		Limit: orderPageSize + 1, Offset: (oq.Page - 1) * orderPageSize}
	return oq, nil
}

// Link is the list at another page, same filter.
func (q orderQuery) Link(page int) string {
	v := url.Values{}
	for k, val := range map[string]string{"status": q.Status, "fingerprint": q.Fingerprint, "batch": q.Batch} {
		if val != "" {
			v.Set(k, val)
		}
	}
	if page > 1 {
		v.Set("page", strconv.Itoa(page))
	}
	if len(v) == 0 {
		return "/orders"
	}
	return "/orders?" + v.Encode()
}

// orderRow is a line of the list.
type orderRow struct {
	store.Order
	Class, BotName string
}

type orderListData struct {
	Query      orderQuery
	Error      string
	Statuses   []string
	Rows       []orderRow
	Prev, Next string
}

func (s *Server) botNames(ctx context.Context, account string) (map[string]string, error) {
	bots, err := s.st.Bots(ctx, account)
	if err != nil {
		return nil, err
	}
	names := make(map[string]string, len(bots))
	for _, b := range bots {
		names[b.ID] = b.Name
	}
	return names, nil
}

func (s *Server) orders(w http.ResponseWriter, r *http.Request, v *Viewer) {
	ctx, account := r.Context(), v.User.Account
	oq, err := parseOrderQuery(r.URL.Query())
	data := orderListData{Query: oq, Statuses: orderStatuses}
	if err != nil {
		data.Error, _, _ = opsMessage(err)
		s.render(w, r, v, http.StatusBadRequest, "orders", "Orders", data)
		return
	}
	os, err := s.st.Orders(ctx, account, oq.Filter)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	names, err := s.botNames(ctx, account)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	if len(os) > orderPageSize {
		os = os[:orderPageSize]
		data.Next = oq.Link(oq.Page + 1)
	}
	if oq.Page > 1 {
		data.Prev = oq.Link(oq.Page - 1)
	}
	for _, o := range os {
		data.Rows = append(data.Rows, orderRow{Order: o, Class: statusClass(o.Status), BotName: names[o.BotID]})
	}
	s.render(w, r, v, http.StatusOK, "orders", "Orders", data)
}

// ---- one order

type orderViewData struct {
	Order        store.Order
	Class        string
	Final        bool
	BotName      string
	TemplateName string
	Events       []eventRow
}

// Refresh is the seconds between reloads of the page while the order
// may still change (0: none).
func (d orderViewData) Refresh() int {
	if d.Final {
		return 0
	}
	return 5
}

func (s *Server) order(w http.ResponseWriter, r *http.Request, v *Viewer) {
	ctx, account := r.Context(), v.User.Account
	id := r.PathValue("id")
	o, err := s.st.Order(ctx, account, id)
	if errors.Is(err, store.ErrNotFound) {
		s.fail(w, r, v, http.StatusNotFound, "There is no such order in your account.")
		return
	}
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	evs, err := s.st.OrderEvents(ctx, account, id)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	data := orderViewData{Order: o, Class: statusClass(o.Status), Final: orderFinal(o)}
	for _, e := range evs {
		data.Events = append(data.Events, eventRow{OrderEvent: e, At: e.Time.UTC().Format("2006-01-02 15:04:05 UTC")})
	}
	if o.BotID != "" {
		names, err := s.botNames(ctx, account)
		if err != nil {
			s.serverError(w, r, v, err)
			return
		}
		data.BotName = names[o.BotID]
	}
	if o.TemplateID != "" {
		t, err := s.st.ProvisioningTemplate(ctx, account, o.TemplateID)
		switch {
		case err == nil:
			data.TemplateName = t.Name
		case !errors.Is(err, store.ErrNotFound): // a deleted template leaves its ID
			s.serverError(w, r, v, err)
			return
		}
	}
	s.render(w, r, v, http.StatusOK, "order", "Order "+o.ID, data)
}

// eventRow is a line of an order's history.
type eventRow struct {
	store.OrderEvent
	// At is the event's time to the second (steps come seconds apart).
	At string
}

// BatchQuery is the certificate's issuer as the mass replacement form's
// query string: replace every certificate of this issuer (P9).
func (d certViewData) BatchQuery() string { return strings.TrimPrefix(d.IssuerLink, "/certificates?") }
