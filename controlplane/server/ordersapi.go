package server

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/ordering"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// Orders and rotation (D7, S5, B9):
//
//	POST /api/v1/certificates/{fp}/rotate   RotateBody → 202 order      ManageOrders
//	POST /api/v1/certificates/{fp}/revoke   {reason, remarks} → order   ManageOrders
//	POST /api/v1/certificates/{fp}/suspend  {remarks} → order           ManageOrders
//	POST /api/v1/certificates/{fp}/resume   → order                     ManageOrders
//	GET  /api/v1/orders?fingerprint=&status=&batch=&bot=&limit=&offset= ViewOrders
//	GET  /api/v1/orders/{id}                order with its events       ViewOrders
//	GET  /api/v1/orders/{id}/certificate    PEM, leaf then chain        ViewOrders
//
// An order's answer never holds its CSR payload or a secret.

// orderRoutes are the user API routes of orders.
func (s *Server) orderRoutes(p string) []templateRoute {
	return []templateRoute{
		{"POST " + p + "/certificates/{fp}/rotate", rbac.ManageOrders, "certificate.rotate", s.rotate},
		{"POST " + p + "/certificates/{fp}/revoke", rbac.ManageOrders, "certificate.revoke", s.revoke},
		{"POST " + p + "/certificates/{fp}/suspend", rbac.ManageOrders, "certificate.suspend", s.suspend},
		{"POST " + p + "/certificates/{fp}/resume", rbac.ManageOrders, "certificate.resume", s.resume},
		{"GET " + p + "/orders", rbac.ViewOrders, "", s.listOrders},
		{"GET " + p + "/orders/{id}", rbac.ViewOrders, "", s.getOrder},
		{"GET " + p + "/orders/{id}/certificate", rbac.ViewOrders, "", s.orderCertificate},
	}
}

// RotateBody is the body of POST .../rotate.
type RotateBody struct {
	Location string `json:"location"`
	// BotID names the bot when several hold the location's URI.
	BotID      string     `json:"bot_id"`
	Action     string     `json:"action"`
	TemplateID string     `json:"template_id"`
	Deploy     DeployBody `json:"deploy"`
}

// DeployBody is RotateBody's deploy options.
type DeployBody struct {
	KeyPath          string   `json:"key_path"`
	ChainPath        string   `json:"chain_path"`
	ChainInCert      *bool    `json:"chain_in_cert"`
	Reload           []string `json:"reload"`
	Verify           []string `json:"verify"`
	KeystorePassword string   `json:"keystore_password"`
	Alias            string   `json:"alias"`
}

// OrderView is an order as the API shows it.
type OrderView struct {
	ID             string      `json:"id"`
	Action         string      `json:"action"`
	Status         string      `json:"status"`
	Fingerprint    string      `json:"fingerprint"`
	NewFingerprint string      `json:"new_fingerprint,omitempty"`
	Location       string      `json:"location"`
	BotID          string      `json:"bot_id,omitempty"`
	TemplateID     string      `json:"template_id"`
	Connector      string      `json:"connector"`
	CASettings     string      `json:"ca_settings,omitempty"`
	Outcome        string      `json:"outcome,omitempty"`
	Error          string      `json:"error,omitempty"`
	BatchID        string      `json:"batch_id,omitempty"`
	Remarks        string      `json:"remarks,omitempty"`
	CreatedBy      string      `json:"created_by"`
	CreatedAt      time.Time   `json:"created_at"`
	UpdatedAt      time.Time   `json:"updated_at"`
	Events         []EventView `json:"events,omitempty"`
}

// EventView is one line of an order's history.
type EventView struct {
	Seq     int       `json:"seq"`
	Time    time.Time `json:"time"`
	Status  string    `json:"status"`
	Step    string    `json:"step,omitempty"`
	OK      bool      `json:"ok"`
	Message string    `json:"message"`
}

// ViewOrder is the API's view of an order (the dashboard may use it too).
func ViewOrder(o store.Order, evs []store.OrderEvent) OrderView {
	v := OrderView{ID: o.ID, Action: o.Action, Status: o.Status, Fingerprint: o.Fingerprint, NewFingerprint: o.NewFingerprint,
		Location: o.Location, BotID: o.BotID, TemplateID: o.TemplateID, Connector: o.Connector, CASettings: o.CASettings,
		Outcome: o.Outcome, Error: o.Error, BatchID: o.BatchID, Remarks: o.Remarks, CreatedBy: o.CreatedBy,
		CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt}
	for _, e := range evs {
		v.Events = append(v.Events, EventView{Seq: e.Seq, Time: e.Time, Status: e.Status, Step: e.Step, OK: e.OK, Message: e.Message})
	}
	return v
}

// orderError answers a failed order call.
func (s *Server) orderError(w http.ResponseWriter, r *http.Request, err error) {
	var ie *ordering.InvalidError
	var re *ordering.RejectedError
	switch {
	case errors.Is(err, ops.ErrOrderingOff):
		writeError(w, http.StatusServiceUnavailable, err.Error())
	case errors.As(err, &ie):
		writeJSON(w, http.StatusBadRequest, invalidResponse{Error: ie.Error(), Field: ie.Field})
	case errors.As(err, &re):
		writeError(w, http.StatusUnprocessableEntity, re.Reason)
	default:
		s.opsError(w, r, err)
	}
}

func (s *Server) fingerprintParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	fp := strings.ToLower(r.PathValue("fp"))
	if !isFingerprint(fp) {
		writeError(w, http.StatusBadRequest, "fingerprint: want 64 hex digits (SHA-256)")
		return "", false
	}
	return fp, true
}

func (s *Server) rotate(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
	fp, ok := s.fingerprintParam(w, r)
	if !ok {
		return
	}
	var b RotateBody
	if err := readJSON(w, r, &b, maxBody, true); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	req := ordering.RotateRequest{Fingerprint: fp, Location: b.Location, BotID: b.BotID, Action: b.Action, TemplateID: b.TemplateID,
		Deploy: ordering.DeployOptions{KeyPath: b.Deploy.KeyPath, ChainPath: b.Deploy.ChainPath, ChainInCert: b.Deploy.ChainInCert,
			Reload: b.Deploy.Reload, Verify: b.Deploy.Verify, Alias: b.Deploy.Alias}}
	if b.Deploy.KeystorePassword != "" {
		req.Deploy.KeystorePassword = protocol.NewSecret(b.Deploy.KeystorePassword)
	}
	o, err := s.ops.Rotate(r.Context(), a, req)
	if err != nil {
		s.orderError(w, r, err)
		return
	}
	s.writeOrder(w, r, http.StatusAccepted, o)
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
	fp, ok := s.fingerprintParam(w, r)
	if !ok {
		return
	}
	var b struct {
		Reason  int    `json:"reason"`
		Remarks string `json:"remarks"`
	}
	if err := readJSON(w, r, &b, maxBody, true); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	o, err := s.ops.RevokeCertificate(r.Context(), a, fp, b.Reason, b.Remarks)
	if err != nil {
		s.orderError(w, r, err)
		return
	}
	s.writeOrder(w, r, http.StatusOK, o)
}

func (s *Server) suspend(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
	fp, ok := s.fingerprintParam(w, r)
	if !ok {
		return
	}
	var b struct {
		Remarks string `json:"remarks"`
	}
	if r.ContentLength != 0 {
		if err := readJSON(w, r, &b, maxBody, true); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	o, err := s.ops.SuspendCertificate(r.Context(), a, fp, b.Remarks)
	if err != nil {
		s.orderError(w, r, err)
		return
	}
	s.writeOrder(w, r, http.StatusOK, o)
}

func (s *Server) resume(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
	fp, ok := s.fingerprintParam(w, r)
	if !ok {
		return
	}
	o, err := s.ops.ResumeCertificate(r.Context(), a, fp)
	if err != nil {
		s.orderError(w, r, err)
		return
	}
	s.writeOrder(w, r, http.StatusOK, o)
}

// writeOrder answers an order with its events.
func (s *Server) writeOrder(w http.ResponseWriter, r *http.Request, status int, o store.Order) {
	evs, err := s.st.OrderEvents(r.Context(), o.Account, o.ID)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, status, ViewOrder(o, evs))
}

func (s *Server) listOrders(w http.ResponseWriter, r *http.Request, k store.APIKey, _ ops.Actor) {
	q := r.URL.Query()
	f := store.OrderFilter{Fingerprint: strings.ToLower(q.Get("fingerprint")), Status: q.Get("status"),
		BatchID: q.Get("batch"), BotID: q.Get("bot")}
	for _, p := range []struct {
		name string
		dst  *int
		max  int
	}{{"limit", &f.Limit, 1000}, {"offset", &f.Offset, 1 << 30}} {
		if v := q.Get(p.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > p.max {
				writeError(w, http.StatusBadRequest, p.name+": want a number from 0 to "+strconv.Itoa(p.max))
				return
			}
			*p.dst = n
		}
	}
	os, err := s.st.Orders(r.Context(), k.Account, f)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	out := []OrderView{}
	for _, o := range os {
		out = append(out, ViewOrder(o, nil))
	}
	writeJSON(w, http.StatusOK, map[string]any{"orders": out})
}

func (s *Server) getOrder(w http.ResponseWriter, r *http.Request, k store.APIKey, _ ops.Actor) {
	o, err := s.st.Order(r.Context(), k.Account, r.PathValue("id"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	s.writeOrder(w, r, http.StatusOK, o)
}

func (s *Server) orderCertificate(w http.ResponseWriter, r *http.Request, k store.APIKey, _ ops.Actor) {
	o, err := s.st.Order(r.Context(), k.Account, r.PathValue("id"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	if o.CertPEM == "" {
		writeError(w, http.StatusNotFound, "order "+o.ID+" has no certificate yet (it is "+o.Status+")")
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Disposition", `attachment; filename="`+o.ID+`.pem"`)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(o.CertPEM + o.ChainPEM))
}

// ---- bot API

// botOrderCSR answers a rotation's CSR (protocol.PathOrderCSR): the order
// must be this bot's.
func (s *Server) botOrderCSR(w http.ResponseWriter, r *http.Request, b store.Bot) {
	if s.ordering == nil {
		writeError(w, http.StatusServiceUnavailable, "ordering is not configured")
		return
	}
	var req protocol.OrderCSR
	if err := readJSON(w, r, &req, maxBody, false); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.CSR == "" {
		writeError(w, http.StatusBadRequest, "csr: required")
		return
	}
	res, err := s.ordering.OrderCSR(r.Context(), b, r.PathValue("order"), req.CSR)
	if err != nil {
		s.orderError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
