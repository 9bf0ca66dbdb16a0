// Package digicert is a fake DigiCert CertCentral Services API (v2), built
// from DigiCert's public documentation, for the connectors/ca/digicert
// tests and the end-to-end tests. It serves only the requests the
// connector makes, checks the X-DC-DEVKEY header, decodes request bodies
// strictly (an unknown field is a 400 bad_request_format, so a wrong body
// fails the test that sent it), signs with a throwaway two-level test CA,
// and can keep an order "pending" for N polls or refuse a name.
//
// Where each shape comes from (all under https://dev.digicert.com/):
//
//   - POST /services/v2/order/certificate/{product_name_id}: request body
//     and 201 answer {"id","requests":[{"id","status"}]} from "Order Basic
//     OV" (services-api/orders/order-basic-ov) and "Order OV/EV SSL"
//     (services-api/orders/order-ov-ev-ssl); renewal_of_order_id and
//     order_validity {years|days} from the same pages' parameter tables.
//     certificate_id and certificate_chain [{subject_common_name, pem}]
//     when issued at once: the pages' "issued immediately" example, also
//     the shape github.com/sapcc/go-certcentral decodes.
//   - GET /services/v2/order/certificate/{order_id}: "Order info"
//     (services-api/orders/order-info): id, status, certificate.{id,
//     common_name, dns_names, serial_number, valid_from, valid_till}; the
//     page says {order_id} may be the primary certificate's serial number.
//   - GET /services/v2/certificate/{certificate_id}/download/format/pem_all:
//     "Get certificate" / "Glossary – Certificate formats" (pem_all: leaf,
//     intermediate and root; pem_noroot: without the root).
//   - PUT /services/v2/order/certificate/{order_id}/revoke and
//     PUT /services/v2/certificate/{certificate_id|serial}/revoke: "Revoke
//     order certificates" and "Revoke certificate": body {comments,
//     revocation_reason, skip_approval}; 204 when skip_approval is honoured,
//     else 201 with a pending revoke request.
//   - Errors: "Errors" (certcentral-apis/services-api/errors.html):
//     {"errors":[{"code","message"}]} with a 4xx; codes not_found|order,
//     not_found|product, access_denied|missing_permission,
//     bad_request_format, caa_check_failed|variable,
//     csr_invalid_cannot_parse.
//
// Guesses, where the documentation was silent or not found: the 401 code
// ("invalid_api_key", as DigiCert ONE documents it) and its message; the
// revocation_reason values other than "superseded" (RFC 5280 names in
// snake case); that certificate_id is absent from a pending order's
// answer; the Content-Type of a download (application/x-pem-file); and
// that an order revoke turns the order's status to "revoked" (the order
// info page lists revoked orders, but not when).
package digicert

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Defaults the fake accepts.
const (
	// APIKey is the key a fake accepts until SetAPIKey.
	APIKey = "dc-fake-api-key-3f1c0b7e9a24"
	// OrganizationID is the only organization the account holds.
	OrganizationID = 123456
	apiPrefix      = "/services/v2"
)

// Products the account may order (documented product_name_id values).
var products = []string{"ssl_basic", "ssl_plus", "ssl_multi_domain", "ssl_wildcard",
	"ssl_securesite_flex", "ssl_ev_basic", "private_ssl_plus"}

// revocationReasons are the revocation_reason values the fake accepts.
var revocationReasons = []string{"unspecified", "key_compromise", "affiliation_changed",
	"superseded", "cessation_of_operation", "privilege_withdrawn"}

// Validity is order_validity / cert_validity.
type Validity struct {
	Years                int    `json:"years,omitempty"`
	Days                 int    `json:"days,omitempty"`
	CustomExpirationDate string `json:"custom_expiration_date,omitempty"`
}

// IDRef is {"id": N}.
type IDRef struct {
	ID int `json:"id"`
}

// OrderCertificate is the certificate object of an order request.
type OrderCertificate struct {
	CommonName        string    `json:"common_name"`
	DNSNames          []string  `json:"dns_names,omitempty"`
	CSR               string    `json:"csr"`
	SignatureHash     string    `json:"signature_hash"`
	ServerPlatform    *IDRef    `json:"server_platform,omitempty"`
	OrganizationUnits []string  `json:"organization_units,omitempty"`
	CertValidity      *Validity `json:"cert_validity,omitempty"`
	ProfileOption     string    `json:"profile_option,omitempty"`
}

// OrderRequest is the documented body of POST order/certificate/{product}.
type OrderRequest struct {
	Certificate                 OrderCertificate `json:"certificate"`
	Organization                *IDRef           `json:"organization"`
	OrderValidity               *Validity        `json:"order_validity,omitempty"`
	ValidityYears               int              `json:"validity_years,omitempty"`
	ValidityDays                int              `json:"validity_days,omitempty"`
	Comments                    string           `json:"comments,omitempty"`
	Container                   *IDRef           `json:"container,omitempty"`
	AutoRenew                   int              `json:"auto_renew,omitempty"`
	DisableRenewalNotifications bool             `json:"disable_renewal_notifications,omitempty"`
	RenewalOfOrderID            int              `json:"renewal_of_order_id,omitempty"`
	PaymentMethod               string           `json:"payment_method,omitempty"`
	SkipApproval                bool             `json:"skip_approval,omitempty"`
	DisableCT                   bool             `json:"disable_ct,omitempty"`
	Locale                      string           `json:"locale,omitempty"`
}

// RevokeRequest is the documented body of both revoke calls.
type RevokeRequest struct {
	Comments         string `json:"comments,omitempty"`
	RevocationReason string `json:"revocation_reason,omitempty"`
	SkipApproval     bool   `json:"skip_approval,omitempty"`
}

// Order is what the fake knows of one order.
type Order struct {
	ID      int
	Product string
	Request OrderRequest
	Status  string // pending, issued, rejected, revoked
	// polls left before a pending order is issued.
	polls  int
	CertID int
	Leaf   *x509.Certificate
	// Revocation is the revoke body that revoked it (order or certificate).
	Revocation *RevokeRequest
	// CertRevoked is set by a certificate (not order) revoke: the documented
	// default keeps the order active.
	CertRevoked bool
}

// Fake is a running fake CertCentral.
type Fake struct {
	t   testing.TB
	srv *httptest.Server

	// Root and Intermediate are the test CA; leaves are signed by the
	// intermediate.
	Root, Intermediate *x509.Certificate
	intKey             *ecdsa.PrivateKey

	mu           sync.Mutex
	key          string
	admin        bool
	pendingPolls int
	reject       map[string]string
	failNext     []int
	orders       map[int]*Order
	byCert       map[int]*Order
	nextID       int
	requests     []string
}

// Start runs a fake until the test ends, accepting APIKey.
func Start(t testing.TB) *Fake {
	t.Helper()
	f := &Fake{t: t, key: APIKey, admin: true, reject: map[string]string{},
		orders: map[int]*Order{}, byCert: map[int]*Order{}, nextID: 1000}
	rootKey := newKey(t)
	f.Root = sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: "Fake DigiCert Global Root G2"},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign},
		nil, &rootKey.PublicKey, rootKey)
	f.intKey = newKey(t)
	f.Intermediate = sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: "Fake DigiCert Global G2 TLS RSA SHA256 2020 CA1"},
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign},
		f.Root, &f.intKey.PublicKey, rootKey)
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.srv.Close)
	return f
}

// URL is the API base URL (…/services/v2) to configure the connector with.
func (f *Fake) URL() string { return f.srv.URL + apiPrefix }

// SetAPIKey makes the fake accept only key.
func (f *Fake) SetAPIKey(key string) { f.mu.Lock(); f.key = key; f.mu.Unlock() }

// SetAdmin says whether the key has admin rights, which skip_approval on a
// revoke needs; without, a revoke creates a pending request.
func (f *Fake) SetAdmin(admin bool) { f.mu.Lock(); f.admin = admin; f.mu.Unlock() }

// SetPendingPolls makes new orders answer "pending" to n order-info
// requests before they are issued (0: issued at once, in the order answer).
func (f *Fake) SetPendingPolls(n int) { f.mu.Lock(); f.pendingPolls = n; f.mu.Unlock() }

// RejectName makes an order naming name fail with a 400
// caa_check_failed|name and message.
func (f *Fake) RejectName(name, message string) {
	f.mu.Lock()
	f.reject[strings.ToLower(name)] = message
	f.mu.Unlock()
}

// FailNext makes the next requests answer these statuses (e.g. 503) with a
// documented error body, one each, in order; a 0 lets that request through.
func (f *Fake) FailNext(statuses ...int) {
	f.mu.Lock()
	f.failNext = append(f.failNext, statuses...)
	f.mu.Unlock()
}

// Issue finishes a pending order now.
func (f *Fake) Issue(orderID int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o := f.orders[orderID]; o != nil && o.Status == "pending" {
		f.issueLocked(o)
	}
}

// Order returns a copy of an order (nil if unknown).
func (f *Fake) Order(id int) *Order {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.orders[id]
	if o == nil {
		return nil
	}
	c := *o
	return &c
}

// LastOrder returns the newest order (nil if none).
func (f *Fake) LastOrder() *Order {
	f.mu.Lock()
	id := f.nextID
	f.mu.Unlock()
	return f.Order(id)
}

// Requests lists the requests served, as METHOD PATH.
func (f *Fake) Requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.Path)
	if r.Header.Get("X-DC-DEVKEY") != f.key {
		writeErr(w, http.StatusUnauthorized, "invalid_api_key", "The API key is not valid.")
		return
	}
	if len(f.failNext) > 0 {
		status := f.failNext[0]
		f.failNext = f.failNext[1:]
		if status != 0 {
			writeErr(w, status, "server_error", "Service temporarily unavailable.")
			return
		}
	}
	path, ok := strings.CutPrefix(r.URL.Path, apiPrefix+"/")
	if !ok {
		writeErr(w, http.StatusNotFound, "not_found|route", "The endpoint does not exist.")
		return
	}
	p := strings.Split(path, "/")
	switch {
	case r.Method == http.MethodPost && len(p) == 3 && p[0] == "order" && p[1] == "certificate":
		f.submit(w, r, p[2])
	case r.Method == http.MethodGet && len(p) == 3 && p[0] == "order" && p[1] == "certificate":
		f.info(w, p[2])
	case r.Method == http.MethodPut && len(p) == 4 && p[0] == "order" && p[1] == "certificate" && p[3] == "revoke":
		f.revoke(w, r, f.findOrder(p[2]), true)
	case r.Method == http.MethodPut && len(p) == 3 && p[0] == "certificate" && p[2] == "revoke":
		f.revoke(w, r, f.findCert(p[1]), false)
	case r.Method == http.MethodGet && len(p) == 5 && p[0] == "certificate" && p[2] == "download" && p[3] == "format":
		f.download(w, p[1], p[4])
	default:
		writeErr(w, http.StatusNotFound, "not_found|route", "The endpoint does not exist.")
	}
}

// decode reads a JSON body strictly: unknown fields and trailing data are
// refused the way a careful server would, naming the field.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeErr(w, http.StatusUnsupportedMediaType, "bad_request_format", "Content-Type must be application/json, not "+ct)
		return false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_request_format", err.Error())
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil || dec.More() {
		msg := "The request body is malformed."
		if err != nil {
			msg += " " + err.Error()
		}
		writeErr(w, http.StatusBadRequest, "bad_request_format", msg)
		return false
	}
	return true
}

func (f *Fake) submit(w http.ResponseWriter, r *http.Request, product string) {
	if !slices.Contains(products, product) {
		writeErr(w, http.StatusNotFound, "not_found|product", "The specified product was not found.")
		return
	}
	var req OrderRequest
	if !decode(w, r, &req) {
		return
	}
	c := req.Certificate
	switch {
	case c.CommonName == "":
		writeErr(w, http.StatusBadRequest, "required_param:certificate.common_name", "Common name is required.")
		return
	case c.CSR == "":
		writeErr(w, http.StatusBadRequest, "required_param:certificate.csr", "CSR is required.")
		return
	case !slices.Contains([]string{"sha256", "sha384", "sha512"}, c.SignatureHash):
		writeErr(w, http.StatusBadRequest, "invalid_signature_hash", "Invalid signature hash "+strconv.Quote(c.SignatureHash)+".")
		return
	case req.Organization == nil || req.Organization.ID != OrganizationID:
		writeErr(w, http.StatusBadRequest, "invalid_organization", "The organization is not valid for this account.")
		return
	case req.OrderValidity == nil && req.ValidityYears == 0 && req.ValidityDays == 0:
		writeErr(w, http.StatusBadRequest, "required_param:order_validity", "Order validity is required.")
		return
	case req.PaymentMethod != "" && req.PaymentMethod != "balance":
		writeErr(w, http.StatusBadRequest, "invalid_payment_method", "Only balance is set up for this account.")
		return
	}
	block, _ := pem.Decode([]byte(c.CSR))
	var csr *x509.CertificateRequest
	var err error
	if block != nil && block.Type == "CERTIFICATE REQUEST" {
		csr, err = x509.ParseCertificateRequest(block.Bytes)
		if err == nil {
			err = csr.CheckSignature()
		}
	}
	if block == nil || block.Type != "CERTIFICATE REQUEST" || err != nil {
		writeErr(w, http.StatusBadRequest, "csr_invalid_cannot_parse", "The CSR could not be parsed.")
		return
	}
	for _, n := range append([]string{c.CommonName}, c.DNSNames...) {
		if msg, bad := f.reject[strings.ToLower(n)]; bad {
			writeErr(w, http.StatusBadRequest, "caa_check_failed|"+n, msg)
			return
		}
	}
	if req.RenewalOfOrderID != 0 {
		prev := f.orders[req.RenewalOfOrderID]
		if prev == nil {
			writeErr(w, http.StatusNotFound, "not_found|order", "The specified order was not found.")
			return
		}
		if prev.Product != product {
			writeErr(w, http.StatusBadRequest, "renewal_product_mismatch", "A renewal must order the same product.")
			return
		}
	}
	f.nextID++
	o := &Order{ID: f.nextID, Product: product, Request: req, Status: "pending", polls: f.pendingPolls}
	f.orders[o.ID] = o
	reqStatus := "pending"
	if req.SkipApproval {
		reqStatus = "approved"
	}
	answer := map[string]any{"id": o.ID, "requests": []any{map[string]any{"id": o.ID + 5000, "status": reqStatus}}}
	if o.polls == 0 {
		f.issueLocked(o)
		answer["certificate_id"] = o.CertID
		answer["certificate_chain"] = []any{
			map[string]any{"subject_common_name": o.Leaf.Subject.CommonName, "pem": pemOf(o.Leaf)},
			map[string]any{"subject_common_name": f.Intermediate.Subject.CommonName, "pem": pemOf(f.Intermediate)},
			map[string]any{"subject_common_name": f.Root.Subject.CommonName, "pem": pemOf(f.Root)},
		}
	}
	writeJSON(w, http.StatusCreated, answer)
}

// issueLocked signs the order's certificate (f.mu held).
func (f *Fake) issueLocked(o *Order) {
	block, _ := pem.Decode([]byte(o.Request.Certificate.CSR))
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		f.t.Errorf("fake digicert: csr vanished: %v", err)
		return
	}
	days := 397
	if v := o.Request.OrderValidity; v != nil && v.Days > 0 {
		days = min(v.Days, 397)
	}
	if v := o.Request.Certificate.CertValidity; v != nil && v.Days > 0 {
		days = min(v.Days, 397)
	}
	names := []string{o.Request.Certificate.CommonName}
	for _, n := range o.Request.Certificate.DNSNames {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	now := time.Now().Truncate(time.Second)
	o.Leaf = sign(f.t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: o.Request.Certificate.CommonName, Organization: []string{"Fake Org Inc."}},
		DNSNames:    names,
		NotBefore:   now.Add(-time.Minute),
		NotAfter:    now.Add(time.Duration(days) * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, f.Intermediate, csr.PublicKey, f.intKey)
	o.Status = "issued"
	o.CertID = o.ID + 9000000
	f.byCert[o.CertID] = o
}

func (f *Fake) findOrder(id string) *Order {
	if n, err := strconv.Atoi(id); err == nil {
		if o := f.orders[n]; o != nil {
			return o
		}
	}
	// The order info page allows the primary certificate's serial number.
	for _, o := range f.orders {
		if o.Leaf != nil && strings.EqualFold(fmt.Sprintf("%X", o.Leaf.SerialNumber), id) {
			return o
		}
	}
	return nil
}

func (f *Fake) findCert(id string) *Order {
	if n, err := strconv.Atoi(id); err == nil {
		if o := f.byCert[n]; o != nil {
			return o
		}
	}
	for _, o := range f.orders {
		if o.Leaf != nil && strings.EqualFold(fmt.Sprintf("%X", o.Leaf.SerialNumber), id) {
			return o
		}
	}
	return nil
}

func (f *Fake) info(w http.ResponseWriter, id string) {
	o := f.findOrder(id)
	if o == nil {
		writeErr(w, http.StatusNotFound, "not_found|order", "The specified order was not found.")
		return
	}
	if o.Status == "pending" {
		if o.polls > 0 {
			o.polls--
		}
		if o.polls == 0 {
			f.issueLocked(o)
		}
	}
	c := o.Request.Certificate
	cert := map[string]any{"common_name": c.CommonName, "dns_names": c.DNSNames, "csr": c.CSR,
		"signature_hash": c.SignatureHash, "organization": map[string]any{"id": OrganizationID}}
	if c.ServerPlatform != nil {
		cert["server_platform"] = map[string]any{"id": c.ServerPlatform.ID}
	}
	if o.Leaf != nil {
		cert["id"] = o.CertID
		cert["serial_number"] = fmt.Sprintf("%X", o.Leaf.SerialNumber)
		cert["valid_from"] = o.Leaf.NotBefore.UTC().Format(time.DateOnly)
		cert["valid_till"] = o.Leaf.NotAfter.UTC().Format(time.DateOnly)
	}
	answer := map[string]any{"id": o.ID, "certificate": cert, "status": o.Status,
		"product": map[string]any{"name_id": o.Product}, "organization": map[string]any{"id": OrganizationID}}
	if o.Request.RenewalOfOrderID != 0 {
		answer["is_renewal"] = true
		answer["renewed_order_id"] = o.Request.RenewalOfOrderID
	}
	writeJSON(w, http.StatusOK, answer)
}

func (f *Fake) download(w http.ResponseWriter, id, format string) {
	o := f.findCert(id)
	if o == nil || o.Leaf == nil {
		writeErr(w, http.StatusNotFound, "not_found|certificate", "The specified certificate was not found.")
		return
	}
	var out string
	switch format {
	case "pem_all":
		out = pemOf(o.Leaf) + pemOf(f.Intermediate) + pemOf(f.Root)
	case "pem_noroot":
		out = pemOf(o.Leaf) + pemOf(f.Intermediate)
	default:
		writeErr(w, http.StatusBadRequest, "invalid_format", "Unsupported certificate format "+strconv.Quote(format)+".")
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = io.WriteString(w, out)
}

func (f *Fake) revoke(w http.ResponseWriter, r *http.Request, o *Order, wholeOrder bool) {
	if o == nil {
		code := "not_found|certificate"
		if wholeOrder {
			code = "not_found|order"
		}
		writeErr(w, http.StatusNotFound, code, "The specified order or certificate was not found.")
		return
	}
	var req RevokeRequest
	if !decode(w, r, &req) {
		return
	}
	if req.RevocationReason != "" && !slices.Contains(revocationReasons, req.RevocationReason) {
		writeErr(w, http.StatusBadRequest, "invalid_revocation_reason", "Invalid revocation reason "+strconv.Quote(req.RevocationReason)+".")
		return
	}
	if o.Status != "issued" {
		writeErr(w, http.StatusBadRequest, "invalid_order_status", "The order is "+o.Status+" and cannot be revoked.")
		return
	}
	if req.SkipApproval && !f.admin {
		writeErr(w, http.StatusForbidden, "access_denied|missing_permission", "The API key does not have permission to skip approval.")
		return
	}
	if !req.SkipApproval {
		writeJSON(w, http.StatusCreated, map[string]any{"id": o.ID + 7000, "date": time.Now().UTC().Format(time.RFC3339),
			"type": "revoke", "status": "pending", "comments": req.Comments,
			"requester": map[string]any{"id": 242140, "first_name": "Fake", "last_name": "Admin", "email": "admin@example.invalid"}})
		return
	}
	rc := req
	o.Revocation = &rc
	if wholeOrder {
		o.Status = "revoked"
	} else {
		o.CertRevoked = true
	}
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"errors": []any{map[string]any{"code": code, "message": msg}}})
}

func pemOf(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sign issues tmpl; a nil parent self-signs.
func sign(t testing.TB, tmpl, parent *x509.Certificate, pub any, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1))
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(10 * 365 * 24 * time.Hour)
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
