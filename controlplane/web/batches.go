package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/emsign/bot/controlplane/batches"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// Mass replacement (P9): plan a batch from a certificate filter, read
// the dry-run plan, start it, watch its waves, stop it, read the report.

func (s *Server) batchRoutes() {
	s.mux.Handle("GET /batches", s.page(rbac.ViewOrders, s.batches))
	s.mux.Handle("GET /batches/new", s.page(rbac.ManageOrders, s.batchNew))
	s.mux.Handle("POST /batches/new", s.page(rbac.ManageOrders, s.batchPlan))
	s.mux.Handle("GET /batches/{id}", s.page(rbac.ViewOrders, s.batch))
	s.mux.Handle("POST /batches/{id}/start", s.page(rbac.ManageOrders, s.batchControl(true)))
	s.mux.Handle("POST /batches/{id}/stop", s.page(rbac.ManageOrders, s.batchControl(false)))
}

// Batch form defaults and limits.
const (
	defaultWaveSize = batches.DefaultWaveSize
	maxBatchFails   = 1_000_000
	maxBatchName    = 200
	// batchItemsPage is the items a batch page lists.
	batchItemsPage = 200
)

// batchClass is the badge colour of a batch status.
func batchClass(status string) string {
	switch status {
	case store.BatchDone:
		return "ok"
	case store.BatchStopped:
		return "bad"
	}
	return "warn"
}

// itemClass is the colour of an item state.
func itemClass(state string) string {
	switch state {
	case store.ItemDone:
		return "ok"
	case store.ItemFailed:
		return "bad"
	case store.ItemSkipped, store.ItemOrdered:
		return "warn"
	}
	return ""
}

// ---- the list

type batchRow struct {
	store.Batch
	Class string
}

func (s *Server) batches(w http.ResponseWriter, r *http.Request, v *Viewer) {
	bs, err := s.ops.Batches(r.Context(), v.Actor(r))
	if err != nil {
		s.opsFail(w, r, v, "mass replacement", err)
		return
	}
	rows := make([]batchRow, 0, len(bs))
	for _, b := range bs {
		rows = append(rows, batchRow{Batch: b, Class: batchClass(b.Status)})
	}
	s.render(w, r, v, http.StatusOK, "batches", "Mass replacement", rows)
}

// ---- the plan form

// batchFormData is the plan form: the certificate search's fields and
// choices, the batch's own fields, and a message after bad input.
type batchFormData struct {
	Query     certQuery
	Vals      url.Values
	Error     string
	Templates []templateChoice
	Sources   []string
	Bots      []namedBot
}

// Val is a batch field's value as posted (or its default).
func (d batchFormData) Val(name string) string { return d.Vals.Get(name) }

// Is tells whether a select's option is chosen.
func (d batchFormData) Is(name, value string) bool { return d.Vals.Get(name) == value }

func (s *Server) batchNew(w http.ResponseWriter, r *http.Request, v *Viewer) {
	// The certificates search may link here with its filter.
	cq, _ := parseCertQuery(r.URL.Query())
	vals := url.Values{"action": {protocol.ActionRotate}, "wave_size": {strconv.Itoa(defaultWaveSize)},
		"max_failures": {"0"}}
	s.renderBatchForm(w, r, v, http.StatusOK, batchFormData{Query: cq, Vals: vals})
}

func (s *Server) renderBatchForm(w http.ResponseWriter, r *http.Request, v *Viewer, status int, d batchFormData) {
	ctx, account := r.Context(), v.User.Account
	var err error
	if d.Templates, err = s.templateChoices(ctx, account); err != nil {
		s.serverError(w, r, v, err)
		return
	}
	if _, d.Sources, err = s.st.FacetValues(ctx, account); err != nil {
		s.serverError(w, r, v, err)
		return
	}
	bots, err := s.st.Bots(ctx, account)
	if err != nil {
		s.serverError(w, r, v, err)
		return
	}
	for _, b := range bots {
		d.Bots = append(d.Bots, namedBot{ID: b.ID, Name: b.Name})
	}
	if d.Vals.Get("template") == "" {
		for _, t := range d.Templates {
			if t.Default {
				d.Vals.Set("template", t.ID)
			}
		}
	}
	s.render(w, r, v, status, "batch_new", "New mass replacement", d)
}

// batchRequest reads the plan form: the certificate filter as the
// certificates search reads it (every match, not a page), and the
// batch's fields.
func batchRequest(f url.Values) (ops.BatchRequest, certQuery, error) {
	cq, err := parseCertQuery(f)
	if err != nil {
		return ops.BatchRequest{}, cq, err
	}
	cf := cq.Filter
	filter := ops.BatchFilter{Q: cf.Q, Issuer: cf.Issuer, Source: cf.Source, Bot: cf.BotID, Location: cf.Location, Type: cf.Type}
	if !cf.ExpiresBefore.IsZero() {
		filter.ExpiresBefore = &cf.ExpiresBefore
	}
	if !cf.ExpiresAfter.IsZero() {
		filter.ExpiresAfter = &cf.ExpiresAfter
	}
	req := ops.BatchRequest{Name: strings.TrimSpace(f.Get("name")), Filter: filter, TemplateID: f.Get("template"),
		Action: f.Get("action")}
	if req.Name == "" {
		return req, cq, &fieldError{"name", "give the mass replacement a name"}
	}
	if err := oneLine("name", req.Name, maxBatchName); err != nil {
		return req, cq, err
	}
	switch req.Action {
	case protocol.ActionRotate, protocol.ActionRekey:
	default:
		return req, cq, &fieldError{"action", "want rotate or rekey"}
	}
	if req.WaveSize, err = intField(f, "wave_size", 1, batches.MaxWaveSize); err != nil {
		return req, cq, err
	}
	if req.MaxFailures, err = intField(f, "max_failures", 0, maxBatchFails); err != nil {
		return req, cq, err
	}
	return req, cq, nil
}

// intField reads a whole number from lo to hi.
func intField(f url.Values, name string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(f.Get(name)))
	if err != nil || n < lo || n > hi {
		return 0, &fieldError{name, fmt.Sprintf("want a whole number from %d to %d", lo, hi)}
	}
	return n, nil
}

func (s *Server) batchPlan(w http.ResponseWriter, r *http.Request, v *Viewer) {
	f := r.PostForm
	req, cq, err := batchRequest(f)
	if err == nil {
		var b store.Batch
		if b, err = s.ops.PlanBatch(r.Context(), v.Actor(r), req); err == nil {
			s.redirect(w, r, "/batches/"+url.PathEscape(b.ID),
				fmt.Sprintf("Plan ready: %d locations. Nothing is ordered until you start it.", b.Counts.Total))
			return
		}
	}
	msg, status, ok := opsMessage(err)
	if !ok {
		s.opsFail(w, r, v, "mass replacement", err)
		return
	}
	s.renderBatchForm(w, r, v, status, batchFormData{Query: cq, Vals: f, Error: msg})
}

// ---- one batch

// batchWave is one wave of the items shown.
type batchWave struct {
	N     int
	Items []batchItemRow
}

type batchItemRow struct {
	store.BatchItem
	Class string
}

type batchViewData struct {
	Batch        store.Batch
	Class        string
	TemplateName string
	Waves        []batchWave
	// Finished counts the items that will not change (done, failed,
	// skipped): the progress bar's value.
	Finished   int
	Page       int
	Prev, Next string
	// Report is set once the batch ended (P9's final report).
	Report    *batches.Report
	CSRF      string
	CanManage bool
}

// Running tells whether the batch may still change (the page reloads).
func (d batchViewData) Running() bool {
	return d.Batch.Status == store.BatchRunning || d.Batch.Status == store.BatchStopping
}

// Refresh is the seconds between reloads while the batch runs (0: none).
func (d batchViewData) Refresh() int {
	if d.Running() {
		return 5
	}
	return 0
}

func (s *Server) batch(w http.ResponseWriter, r *http.Request, v *Viewer) {
	ctx, account := r.Context(), v.User.Account
	id := r.PathValue("id")
	page := 1
	if p := r.URL.Query().Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 1_000_000 {
			s.fail(w, r, v, http.StatusBadRequest, "page: want a page number from 1.")
			return
		}
		page = n
	}
	a := v.Actor(r)
	b, err := s.ops.Batch(ctx, a, id)
	if errors.Is(err, store.ErrNotFound) {
		s.fail(w, r, v, http.StatusNotFound, "There is no such mass replacement in your account.")
		return
	}
	if err != nil {
		s.opsFail(w, r, v, "mass replacement", err)
		return
	}
	data := batchViewData{Batch: b, Class: batchClass(b.Status), Page: page, CSRF: v.CSRF(),
		CanManage: v.Can(string(rbac.ManageOrders)),
		Finished:  b.Counts.Done + b.Counts.Failed + b.Counts.Skipped}
	if b.TemplateID != "" {
		t, err := s.st.ProvisioningTemplate(ctx, account, b.TemplateID)
		switch {
		case err == nil:
			data.TemplateName = t.Name
		case !errors.Is(err, store.ErrNotFound): // a deleted template leaves its ID
			s.serverError(w, r, v, err)
			return
		}
	}
	// Through ops: it hides the runner's claim markers in OrderID.
	items, err := s.ops.BatchItems(ctx, a, id, "", batchItemsPage+1, (page-1)*batchItemsPage)
	if err != nil {
		s.opsFail(w, r, v, "mass replacement", err)
		return
	}
	base := "/batches/" + url.PathEscape(id)
	if len(items) > batchItemsPage {
		items = items[:batchItemsPage]
		data.Next = base + "?page=" + strconv.Itoa(page+1)
	}
	if page > 1 {
		data.Prev = base + "?page=" + strconv.Itoa(page-1)
	}
	for _, it := range items {
		if n := len(data.Waves); n == 0 || data.Waves[n-1].N != it.Wave {
			data.Waves = append(data.Waves, batchWave{N: it.Wave})
		}
		wv := &data.Waves[len(data.Waves)-1]
		wv.Items = append(wv.Items, batchItemRow{BatchItem: it, Class: itemClass(it.State)})
	}
	// The report reads every item and order: only once nothing changes.
	if b.Status == store.BatchDone || b.Status == store.BatchStopped {
		rep, err := s.ops.BatchReport(ctx, a, id)
		if err != nil {
			s.opsFail(w, r, v, "mass replacement", err)
			return
		}
		data.Report = &rep
	}
	s.render(w, r, v, http.StatusOK, "batch", "Mass replacement "+b.Name, data)
}

// batchControl is the Start (start true) or Stop button.
func (s *Server) batchControl(start bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, v *Viewer) {
		ctx, a, id := r.Context(), v.Actor(r), r.PathValue("id")
		var err error
		msg := "Mass replacement started."
		if start {
			_, err = s.ops.StartBatch(ctx, a, id)
		} else {
			_, err = s.ops.StopBatch(ctx, a, id)
			msg = "Stop asked: no new wave starts; the orders under way finish."
		}
		if err != nil {
			words, _, ok := opsMessage(err)
			if !ok {
				s.opsFail(w, r, v, "mass replacement", err)
				return
			}
			msg = words
		}
		s.redirect(w, r, "/batches/"+url.PathEscape(id), msg)
	}
}
