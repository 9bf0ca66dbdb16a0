package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/emsign/bot/controlplane/batches"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

// Mass replacement (P9) and schedules (P6):
//
//	POST   /api/v1/batches                  plan (dry run)     ManageOrders  201 batch
//	GET    /api/v1/batches                  list               ViewOrders
//	GET    /api/v1/batches/{id}             one, with counts   ViewOrders
//	GET    /api/v1/batches/{id}/items       ?state=&limit=&offset=  ViewOrders
//	POST   /api/v1/batches/{id}/start       planned → running  ManageOrders
//	POST   /api/v1/batches/{id}/stop        → stopping/stopped ManageOrders
//	GET    /api/v1/batches/{id}/report      JSON               ViewOrders
//	GET    /api/v1/batches/{id}/report.csv  CSV, one row per location  ViewOrders
//	POST   /api/v1/schedules                create             ManageOrders  201 schedule
//	GET    /api/v1/schedules                list               ViewOrders
//	DELETE /api/v1/schedules/{id}           cancel             ManageOrders

// BatchView is a batch as the user API shows it.
type BatchView struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Filter      json.RawMessage `json:"filter"`
	TemplateID  string          `json:"template_id"`
	Action      string          `json:"action"`
	WaveSize    int             `json:"wave_size"`
	MaxFailures int             `json:"max_failures"`
	Status      string          `json:"status"`
	CreatedBy   string          `json:"created_by"`
	CreatedAt   time.Time       `json:"created_at"`
	StartedAt   *time.Time      `json:"started_at,omitempty"`
	FinishedAt  *time.Time      `json:"finished_at,omitempty"`
	Counts      BatchCountsView `json:"counts"`
}

// BatchCountsView are a batch's items by state.
type BatchCountsView struct {
	Total   int `json:"total"`
	Pending int `json:"pending"`
	Ordered int `json:"ordered"`
	Done    int `json:"done"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
}

func viewBatch(b store.Batch) BatchView {
	f := json.RawMessage(b.Filter)
	if !json.Valid(f) {
		f = json.RawMessage("{}")
	}
	c := b.Counts
	return BatchView{ID: b.ID, Name: b.Name, Filter: f, TemplateID: b.TemplateID, Action: b.Action, WaveSize: b.WaveSize,
		MaxFailures: b.MaxFailures, Status: b.Status, CreatedBy: b.CreatedBy, CreatedAt: b.CreatedAt, StartedAt: b.StartedAt,
		FinishedAt: b.FinishedAt, Counts: BatchCountsView{Total: c.Total, Pending: c.Pending, Ordered: c.Ordered, Done: c.Done,
			Failed: c.Failed, Skipped: c.Skipped}}
}

// BatchItemView is one location of a batch.
type BatchItemView struct {
	Seq         int    `json:"seq"`
	Wave        int    `json:"wave"`
	Fingerprint string `json:"fingerprint"`
	Location    string `json:"location"`
	BotID       string `json:"bot_id"`
	OrderID     string `json:"order_id,omitempty"`
	State       string `json:"state"`
	Error       string `json:"error,omitempty"`
}

func viewBatchItem(it store.BatchItem) BatchItemView {
	id := it.OrderID
	if batches.IsClaim(id) {
		id = ""
	}
	return BatchItemView{Seq: it.Seq, Wave: it.Wave, Fingerprint: it.Fingerprint, Location: it.Location, BotID: it.BotID,
		OrderID: id, State: it.State, Error: it.Error}
}

// BatchReportView is a batch's report (P9).
type BatchReportView struct {
	Batch    BatchView             `json:"batch"`
	Waves    []WaveView            `json:"waves"`
	Failures []BatchReportItemView `json:"failures"`
}

// WaveView is one wave of a report.
type WaveView struct {
	Wave       int        `json:"wave"`
	Items      int        `json:"items"`
	Done       int        `json:"done"`
	Failed     int        `json:"failed"`
	Skipped    int        `json:"skipped"`
	Unfinished int        `json:"unfinished"`
	Started    *time.Time `json:"started,omitempty"`
	Finished   *time.Time `json:"finished,omitempty"`
	// Seconds from the wave's first order to its last order's end.
	DurationSeconds float64 `json:"duration_seconds"`
}

// BatchReportItemView is a failed item with its order's status.
type BatchReportItemView struct {
	BatchItemView
	OrderStatus string `json:"order_status,omitempty"`
}

func viewReport(r batches.Report) BatchReportView {
	out := BatchReportView{Batch: viewBatch(r.Batch), Waves: []WaveView{}, Failures: []BatchReportItemView{}}
	for _, w := range r.Waves {
		out.Waves = append(out.Waves, WaveView{Wave: w.Wave, Items: w.Items, Done: w.Done, Failed: w.Failed, Skipped: w.Skipped,
			Unfinished: w.Unfinished, Started: w.Started, Finished: w.Finished, DurationSeconds: w.Duration.Seconds()})
	}
	for _, f := range r.Failures {
		out.Failures = append(out.Failures, BatchReportItemView{BatchItemView: viewBatchItem(f.BatchItem), OrderStatus: f.OrderStatus})
	}
	return out
}

// ScheduleView is a schedule as the user API shows it.
type ScheduleView struct {
	ID            string     `json:"id"`
	Action        string     `json:"action"`
	Fingerprint   string     `json:"fingerprint"`
	Location      string     `json:"location,omitempty"`
	TemplateID    string     `json:"template_id,omitempty"`
	At            *time.Time `json:"at,omitempty"`
	AutoRenewDays int        `json:"auto_renew_days,omitempty"`
	Status        string     `json:"status"`
	LastFired     *time.Time `json:"last_fired,omitempty"`
	LastOrderID   string     `json:"last_order_id,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	CreatedBy     string     `json:"created_by"`
	CreatedAt     time.Time  `json:"created_at"`
}

func viewSchedule(s store.Schedule) ScheduleView {
	v := ScheduleView{ID: s.ID, Action: s.Action, Fingerprint: s.Fingerprint, Location: s.Location, TemplateID: s.TemplateID,
		AutoRenewDays: s.AutoRenewDays, Status: s.Status, LastFired: s.LastFired, LastOrderID: s.LastOrderID,
		LastError: s.LastError, CreatedBy: s.CreatedBy, CreatedAt: s.CreatedAt}
	if !s.At.IsZero() {
		at := s.At
		v.At = &at
	}
	return v
}

// batchRequest is POST /batches' body: times as RFC 3339 strings, so
// that a bad one is answered naming its field.
type batchRequest struct {
	Name   string `json:"name"`
	Filter struct {
		Q             string `json:"q"`
		Issuer        string `json:"issuer"`
		Source        string `json:"source"`
		Bot           string `json:"bot"`
		Location      string `json:"location"`
		Type          string `json:"type"`
		ExpiresBefore string `json:"expires_before"`
		ExpiresAfter  string `json:"expires_after"`
	} `json:"filter"`
	TemplateID  string `json:"template_id"`
	Action      string `json:"action"`
	WaveSize    int    `json:"wave_size"`
	MaxFailures int    `json:"max_failures"`
}

func (b batchRequest) request() (ops.BatchRequest, error) {
	f := b.Filter
	req := ops.BatchRequest{Name: b.Name, TemplateID: b.TemplateID, Action: b.Action, WaveSize: b.WaveSize,
		MaxFailures: b.MaxFailures, Filter: ops.BatchFilter{Q: f.Q, Issuer: f.Issuer, Source: f.Source, Bot: f.Bot,
			Location: f.Location, Type: f.Type}}
	var err error
	if req.Filter.ExpiresBefore, err = optionalTime("filter.expires_before", f.ExpiresBefore); err != nil {
		return ops.BatchRequest{}, err
	}
	if req.Filter.ExpiresAfter, err = optionalTime("filter.expires_after", f.ExpiresAfter); err != nil {
		return ops.BatchRequest{}, err
	}
	return req, nil
}

// scheduleRequest is POST /schedules' body.
type scheduleRequest struct {
	Action        string `json:"action"`
	Fingerprint   string `json:"fingerprint"`
	Location      string `json:"location"`
	TemplateID    string `json:"template_id"`
	At            string `json:"at"`
	AutoRenewDays int    `json:"auto_renew_days"`
}

func (s scheduleRequest) request() (ops.ScheduleRequest, error) {
	req := ops.ScheduleRequest{Action: s.Action, Fingerprint: s.Fingerprint, Location: s.Location, TemplateID: s.TemplateID,
		AutoRenewDays: s.AutoRenewDays}
	at, err := optionalTime("at", s.At)
	if err != nil {
		return ops.ScheduleRequest{}, err
	}
	if at != nil {
		req.At = *at
	}
	return req, nil
}

// optionalTime parses an RFC 3339 time ("" is none).
func optionalTime(field, v string) (*time.Time, error) {
	if v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return nil, &ops.InvalidError{Field: field, Msg: "want an RFC 3339 time such as 2026-01-02T15:04:05Z"}
	}
	return &t, nil
}

// offsetParam reads a non-negative offset (0 when absent).
func offsetParam(r *http.Request) (int, error) {
	v := r.URL.Query().Get("offset")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("offset: want a number from 0")
	}
	return n, nil
}

// batchRoutes are the routes of mass replacement and schedules; routes()
// registers them.
func (s *Server) batchRoutes(p string) []templateRoute {
	o := s.ops
	batch := func(f func(r *http.Request, a ops.Actor) (store.Batch, error), status int) userHandler {
		return func(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
			b, err := f(r, a)
			if err != nil {
				s.opsError(w, r, err)
				return
			}
			writeJSON(w, status, viewBatch(b))
		}
	}
	return []templateRoute{
		{"POST " + p + "/batches", rbac.ManageOrders, "batch.plan", createRoute(s, batchRequest.request, o.PlanBatch, viewBatch)},
		{"GET " + p + "/batches", rbac.ViewOrders, "", listRoute(s, "batches", o.Batches, viewBatch)},
		{"GET " + p + "/batches/{id}", rbac.ViewOrders, "", batch(func(r *http.Request, a ops.Actor) (store.Batch, error) {
			return o.Batch(r.Context(), a, r.PathValue("id"))
		}, http.StatusOK)},
		{"GET " + p + "/batches/{id}/items", rbac.ViewOrders, "", func(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
			limit, err := intParam(r, "limit", store.DefaultPageSize, store.MaxPageSize)
			if err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
			offset, err := offsetParam(r)
			if err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
			items, err := o.BatchItems(r.Context(), a, r.PathValue("id"), r.URL.Query().Get("state"), limit, offset)
			if err != nil {
				s.opsError(w, r, err)
				return
			}
			out := make([]BatchItemView, 0, len(items))
			for _, it := range items {
				out = append(out, viewBatchItem(it))
			}
			writeJSON(w, http.StatusOK, map[string]any{"items": out})
		}},
		{"POST " + p + "/batches/{id}/start", rbac.ManageOrders, "batch.start", batch(func(r *http.Request, a ops.Actor) (store.Batch, error) {
			return o.StartBatch(r.Context(), a, r.PathValue("id"))
		}, http.StatusOK)},
		{"POST " + p + "/batches/{id}/stop", rbac.ManageOrders, "batch.stop", batch(func(r *http.Request, a ops.Actor) (store.Batch, error) {
			return o.StopBatch(r.Context(), a, r.PathValue("id"))
		}, http.StatusOK)},
		{"GET " + p + "/batches/{id}/report", rbac.ViewOrders, "", func(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
			rep, err := o.BatchReport(r.Context(), a, r.PathValue("id"))
			if err != nil {
				s.opsError(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, viewReport(rep))
		}},
		{"GET " + p + "/batches/{id}/report.csv", rbac.ViewOrders, "", func(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
			rep, err := o.BatchReport(r.Context(), a, r.PathValue("id"))
			if err != nil {
				s.opsError(w, r, err)
				return
			}
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			w.Header().Set("Content-Disposition", `attachment; filename="batch-`+rep.Batch.ID+`.csv"`)
			w.Header().Set("Cache-Control", "no-store")
			if err := rep.WriteCSV(w); err != nil {
				// The header is sent: the client sees a short file.
				s.log.Error("batch report CSV", "batch", rep.Batch.ID, "err", err)
			}
		}},
		{"POST " + p + "/schedules", rbac.ManageOrders, "schedule.create", createRoute(s, scheduleRequest.request, o.CreateSchedule, viewSchedule)},
		{"GET " + p + "/schedules", rbac.ViewOrders, "", listRoute(s, "schedules", o.Schedules, viewSchedule)},
		{"DELETE " + p + "/schedules/{id}", rbac.ManageOrders, "schedule.cancel", func(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
			id := r.PathValue("id")
			if err := o.CancelSchedule(r.Context(), a, id); err != nil {
				s.opsError(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"id": id, "status": store.ScheduleCanceled})
		}},
	}
}

// createRoute is a user API route that makes one object: the JSON body B
// becomes an ops request R (toRequest validates it), create makes the
// object and the answer is 201 with its view.
func createRoute[B, R, O, V any](s *Server, toRequest func(B) (R, error), create func(context.Context, ops.Actor, R) (O, error),
	view func(O) V) userHandler {
	return func(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
		var body B
		if err := readJSON(w, r, &body, maxBody, true); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		req, err := toRequest(body)
		if err != nil {
			s.opsError(w, r, err)
			return
		}
		obj, err := create(r.Context(), a, req)
		if err != nil {
			s.opsError(w, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, view(obj))
	}
}

// listRoute is a user API route that lists objects: {"<key>": [views]}.
func listRoute[O, V any](s *Server, key string, list func(context.Context, ops.Actor) ([]O, error), view func(O) V) userHandler {
	return func(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
		objs, err := list(r.Context(), a)
		if err != nil {
			s.opsError(w, r, err)
			return
		}
		out := make([]V, 0, len(objs))
		for _, o := range objs {
			out = append(out, view(o))
		}
		writeJSON(w, http.StatusOK, map[string]any{key: out})
	}
}
