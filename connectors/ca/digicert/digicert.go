// Package digicert orders certificates from DigiCert CertCentral through
// its Services API v2 (P7): an order per CSR, polled while DigiCert
// validates, the chain downloaded as pem_all; renewal as a new order with
// renewal_of_order_id; revocation and status by order. README.md names
// the documentation pages and the guesses.
package digicert

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emsign/bot/connectors/ca"
	"github.com/emsign/bot/protocol"
)

// Defaults for Config.
const (
	DefaultBaseURL          = "https://www.digicert.com/services/v2"
	DefaultProduct          = "ssl_basic"
	DefaultServerPlatformID = -1 // "OTHER"
	DefaultSignatureHash    = "sha256"
	DefaultPaymentMethod    = "balance"
	DefaultTimeout          = 30 * time.Second
	DefaultPollInterval     = 30 * time.Second
	DefaultPollTimeout      = 5 * time.Minute
	// maxBody bounds an answer: a chain is a few KB, an order a few more.
	maxBody = 4 << 20
)

// ErrAuth is wrapped when DigiCert refuses the API key (401) or the key
// lacks a permission (403). Retrying with the same key will not help.
var ErrAuth = errors.New("the API key was refused")

// PendingError says an order was placed but is not issued yet (DigiCert is
// still validating, or an administrator must approve it). The caller keeps
// OrderID and calls Collect later; ordering again would buy a second
// certificate.
//
// It also carries a failure while waiting (Err: a 5xx, a timeout, a
// refused key) so that an order already placed, and paid for, is never
// lost to a transient error: errors.Is sees through it to Err.
type PendingError struct {
	OrderID string
	Status  string // DigiCert's order status: pending, needs_approval, ... ("" if unknown)
	Err     error  // what stopped the wait, when it was not the timeout
}

func (e *PendingError) Error() string {
	status := e.Status
	if status == "" {
		status = "of unknown status"
	}
	msg := fmt.Sprintf("order %s is still %s at DigiCert; collect it later with its order ID", e.OrderID, status)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *PendingError) Unwrap() error { return e.Err }

// RevocationPendingError says DigiCert took a revocation request that an
// administrator must approve in CertCentral (the key may not skip approval).
type RevocationPendingError struct {
	RequestID string
}

func (e *RevocationPendingError) Error() string {
	return fmt.Sprintf("revocation request %s awaits an administrator's approval in CertCentral", e.RequestID)
}

// Config configures an Issuer.
type Config struct {
	// BaseURL is the Services API root; DefaultBaseURL when empty.
	BaseURL string
	// APIKey is sent as X-DC-DEVKEY and nowhere else.
	APIKey protocol.Secret
	// OrganizationID is the CertCentral organization the orders are for
	// (required: DigiCert does not infer it from the CSR).
	OrganizationID int
	// Product is the product_name_id ordered when a request names none
	// (ssl_basic, ssl_plus, ssl_securesite_flex, private_ssl_plus, ...).
	Product string
	// ServerPlatformID is DigiCert's server platform; 0 takes -1 ("OTHER").
	ServerPlatformID int
	// SignatureHash is sha256 (default), sha384 or sha512.
	SignatureHash string
	// Validity is the default certificate lifetime; zero orders one year
	// (order_validity.years = 1). A request's Lifetime wins.
	Validity time.Duration
	// PaymentMethod is DigiCert's payment_method; "balance" by default.
	PaymentMethod string
	// SkipApproval asks DigiCert to skip the CertCentral approval step for
	// orders and revocations (the key needs admin rights for revocations).
	SkipApproval bool
	// Comments are put on every order, for the approver.
	Comments string
	// HTTPClient is used as is when set; tests set it.
	HTTPClient *http.Client
	// Timeout bounds each request.
	Timeout time.Duration
	// PollInterval is the wait between order-status requests while an
	// order is pending; PollTimeout is how long Issue waits in all before
	// returning a *PendingError.
	PollInterval, PollTimeout time.Duration
	Logger                    *slog.Logger
}

// Issuer is the DigiCert CertCentral CA connector.
type Issuer struct {
	cfg  Config
	base *url.URL
	hc   *http.Client
	log  *slog.Logger
}

var _ ca.Issuer = (*Issuer)(nil)

// New validates cfg and fills in defaults.
func New(cfg Config) (*Issuer, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	base, err := url.Parse(strings.TrimSuffix(cfg.BaseURL, "/"))
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("digicert: base URL %q is not an http(s) URL", cfg.BaseURL)
	}
	if cfg.APIKey.IsZero() {
		return nil, errors.New("digicert: an API key is required")
	}
	if cfg.OrganizationID <= 0 {
		return nil, errors.New("digicert: an organization ID is required")
	}
	if cfg.Product == "" {
		cfg.Product = DefaultProduct
	}
	if !validProduct(cfg.Product) {
		return nil, fmt.Errorf("digicert: product %q is not a product_name_id", cfg.Product)
	}
	if cfg.ServerPlatformID == 0 {
		cfg.ServerPlatformID = DefaultServerPlatformID
	}
	if cfg.SignatureHash == "" {
		cfg.SignatureHash = DefaultSignatureHash
	}
	if !slices.Contains([]string{"sha256", "sha384", "sha512"}, cfg.SignatureHash) {
		return nil, fmt.Errorf("digicert: signature hash %q is not sha256, sha384 or sha512", cfg.SignatureHash)
	}
	if cfg.PaymentMethod == "" {
		cfg.PaymentMethod = DefaultPaymentMethod
	}
	if cfg.Validity < 0 || cfg.Timeout < 0 || cfg.PollInterval < 0 || cfg.PollTimeout < 0 {
		return nil, errors.New("digicert: validity, timeout and poll durations must not be negative")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.PollTimeout == 0 {
		cfg.PollTimeout = DefaultPollTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	return &Issuer{cfg: cfg, base: base, hc: hc, log: cfg.Logger}, nil
}

// validProduct keeps a product name safe in a URL path.
func validProduct(p string) bool {
	if p == "" || len(p) > 64 {
		return false
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// Issue orders a certificate for the CSR and waits for it (up to
// PollTimeout). DigiCert has no idempotency key: req.OrderRef is not sent,
// and a second Issue buys a second certificate. A pending order comes back
// as an error wrapping *PendingError with its order ID; the caller keeps it
// and calls Collect.
func (d *Issuer) Issue(ctx context.Context, req *ca.IssueRequest) (*ca.IssueResponse, error) {
	if req == nil {
		return nil, errors.New("digicert: issue: no request")
	}
	res, err := d.order(ctx, req.CSR, req.Lifetime, req.Profile, 0)
	if err != nil {
		return nil, fmt.Errorf("digicert: issue: %w", err)
	}
	return res, nil
}

// Renew orders a renewal: with the previous order's ID, DigiCert's own
// renewal (renewal_of_order_id, which carries the validation and credit
// over); without it, a new order.
func (d *Issuer) Renew(ctx context.Context, req *ca.RenewRequest) (*ca.IssueResponse, error) {
	if req == nil {
		return nil, errors.New("digicert: renew: no request")
	}
	prev := 0
	if req.CAOrderID != "" {
		n, err := strconv.Atoi(req.CAOrderID)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("digicert: renew: order ID %q is not a DigiCert order ID: %w", req.CAOrderID, ca.ErrNotIssuedHere)
		}
		prev = n
	}
	res, err := d.order(ctx, req.CSR, req.Lifetime, req.Profile, prev)
	if err != nil {
		return nil, fmt.Errorf("digicert: renew: %w", err)
	}
	return res, nil
}

// Collect waits (up to PollTimeout) for an order placed earlier, e.g. one
// Issue returned as pending, and returns its certificate.
func (d *Issuer) Collect(ctx context.Context, orderID string) (*ca.IssueResponse, error) {
	if _, err := strconv.Atoi(orderID); err != nil {
		return nil, fmt.Errorf("digicert: collect: order ID %q is not a DigiCert order ID: %w", orderID, ca.ErrNotIssuedHere)
	}
	res, err := d.wait(ctx, orderID, nil)
	if err != nil {
		return nil, fmt.Errorf("digicert: collect: %w", err)
	}
	return res, nil
}

type idRef struct {
	ID int `json:"id"`
}

type validity struct {
	Years int `json:"years,omitempty"`
	Days  int `json:"days,omitempty"`
}

type orderBody struct {
	Certificate struct {
		CommonName     string   `json:"common_name"`
		DNSNames       []string `json:"dns_names,omitempty"`
		CSR            string   `json:"csr"`
		SignatureHash  string   `json:"signature_hash"`
		ServerPlatform idRef    `json:"server_platform"`
	} `json:"certificate"`
	Organization     idRef    `json:"organization"`
	OrderValidity    validity `json:"order_validity"`
	Comments         string   `json:"comments,omitempty"`
	RenewalOfOrderID int      `json:"renewal_of_order_id,omitempty"`
	PaymentMethod    string   `json:"payment_method"`
	SkipApproval     bool     `json:"skip_approval,omitempty"`
}

type orderAnswer struct {
	ID            int `json:"id"`
	CertificateID int `json:"certificate_id"`
	Requests      []struct {
		ID     int    `json:"id"`
		Status string `json:"status"`
	} `json:"requests"`
	CertificateChain []struct {
		SubjectCommonName string `json:"subject_common_name"`
		PEM               string `json:"pem"`
	} `json:"certificate_chain"`
}

// order submits one order and waits for its certificate.
func (d *Issuer) order(ctx context.Context, csr *x509.CertificateRequest, lifetime time.Duration, product string, renewalOf int) (*ca.IssueResponse, error) {
	if csr == nil {
		return nil, fmt.Errorf("no CSR: %w", ca.ErrRejected)
	}
	if product == "" {
		product = d.cfg.Product
	}
	if !validProduct(product) {
		return nil, fmt.Errorf("product %q is not a product_name_id: %w", product, ca.ErrRejected)
	}
	cn, sans, err := names(csr)
	if err != nil {
		return nil, err
	}
	var body orderBody
	body.Certificate.CommonName = cn
	body.Certificate.DNSNames = sans
	body.Certificate.CSR = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw}))
	body.Certificate.SignatureHash = d.cfg.SignatureHash
	body.Certificate.ServerPlatform.ID = d.cfg.ServerPlatformID
	body.Organization.ID = d.cfg.OrganizationID
	if lifetime == 0 {
		lifetime = d.cfg.Validity
	}
	if lifetime > 0 {
		// Days, rounded up: a certificate a few hours short of the asked
		// lifetime would be renewed early every time.
		body.OrderValidity.Days = int(math.Ceil(lifetime.Hours() / 24))
	} else {
		body.OrderValidity.Years = 1
	}
	body.Comments = d.cfg.Comments
	body.RenewalOfOrderID = renewalOf
	body.PaymentMethod = d.cfg.PaymentMethod
	body.SkipApproval = d.cfg.SkipApproval

	var ans orderAnswer
	if err := d.call(ctx, http.MethodPost, []string{"order", "certificate", product}, body, &ans); err != nil {
		return nil, fmt.Errorf("submit order: %w", err)
	}
	if ans.ID == 0 {
		return nil, errors.New("submit order: DigiCert answered without an order ID")
	}
	orderID := strconv.Itoa(ans.ID)
	d.log.Info("digicert: order placed", "order_id", orderID, "product", product, "common_name", cn,
		"renewal_of", renewalOf, "immediate", len(ans.CertificateChain) > 0)
	if len(ans.CertificateChain) > 0 {
		var all []byte
		for _, c := range ans.CertificateChain {
			all = append(all, c.PEM...)
			all = append(all, '\n')
		}
		res, err := split(all, csr)
		if err != nil {
			return nil, fmt.Errorf("order %s: %w", orderID, err)
		}
		res.CAOrderID = orderID
		return res, nil
	}
	return d.wait(ctx, orderID, csr)
}

// names turns the CSR's names into DigiCert's common_name and dns_names:
// the subject CN (or the first DNS name) and every other DNS name. DigiCert
// does not read names from the CSR, so they must be sent.
func names(csr *x509.CertificateRequest) (string, []string, error) {
	if len(csr.IPAddresses) > 0 || len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		return "", nil, fmt.Errorf("the CSR asks for IP, e-mail or URI names, which this connector does not order from DigiCert: %w", ca.ErrRejected)
	}
	cn := strings.ToLower(csr.Subject.CommonName)
	var sans []string
	for _, n := range csr.DNSNames {
		n = strings.ToLower(n)
		if cn == "" {
			cn = n
			continue
		}
		if n != cn && !slices.Contains(sans, n) {
			sans = append(sans, n)
		}
	}
	if cn == "" {
		return "", nil, fmt.Errorf("the CSR names no host: %w", ca.ErrRejected)
	}
	return cn, sans, nil
}

type orderInfo struct {
	ID          int    `json:"id"`
	Status      string `json:"status"`
	Certificate struct {
		ID           int    `json:"id"`
		SerialNumber string `json:"serial_number"`
	} `json:"certificate"`
}

// wait polls an order until it is issued, refused, or PollTimeout (or ctx)
// ends; csr, when known, is checked against the certificate's key.
func (d *Issuer) wait(ctx context.Context, orderID string, csr *x509.CertificateRequest) (*ca.IssueResponse, error) {
	deadline := time.NewTimer(d.cfg.PollTimeout)
	defer deadline.Stop()
	status := ""
	for {
		var info orderInfo
		if err := d.call(ctx, http.MethodGet, []string{"order", "certificate", orderID}, nil, &info); err != nil {
			err = notIssuedHere(err)
			if errors.Is(err, ca.ErrNotIssuedHere) {
				return nil, fmt.Errorf("order %s: %w", orderID, err)
			}
			return nil, &PendingError{OrderID: orderID, Status: status, Err: err}
		}
		status = info.Status
		switch info.Status {
		case "issued":
			if info.Certificate.ID == 0 {
				return nil, &PendingError{OrderID: orderID, Status: status, Err: errors.New("DigiCert names no certificate ID yet")}
			}
			res, err := d.download(ctx, orderID, info.Certificate.ID, csr)
			var pe *PendingError
			if err != nil && !errors.As(err, &pe) && !errors.Is(err, ca.ErrRejected) {
				// Issued but not fetched: keep the order ID for Collect.
				return nil, &PendingError{OrderID: orderID, Status: status, Err: err}
			}
			return res, err
		case "rejected", "canceled", "denied":
			return nil, fmt.Errorf("order %s was %s at DigiCert: %w", orderID, info.Status, ca.ErrRejected)
		case "revoked", "expired":
			return nil, fmt.Errorf("order %s is %s", orderID, info.Status)
		}
		d.log.Debug("digicert: order pending", "order_id", orderID, "status", info.Status)
		select {
		case <-ctx.Done():
			return nil, &PendingError{OrderID: orderID, Status: info.Status, Err: ctx.Err()}
		case <-deadline.C:
			return nil, &PendingError{OrderID: orderID, Status: info.Status}
		case <-time.After(d.cfg.PollInterval):
		}
	}
}

func (d *Issuer) download(ctx context.Context, orderID string, certID int, csr *x509.CertificateRequest) (*ca.IssueResponse, error) {
	var raw []byte
	if err := d.call(ctx, http.MethodGet, []string{"certificate", strconv.Itoa(certID), "download", "format", "pem_all"}, nil, &raw); err != nil {
		return nil, fmt.Errorf("order %s: download certificate %d: %w", orderID, certID, err)
	}
	res, err := split(raw, csr)
	if err != nil {
		return nil, fmt.Errorf("order %s: certificate %d: %w", orderID, certID, err)
	}
	res.CAOrderID = orderID
	return res, nil
}

// split parses a PEM bundle, leaf first, into the leaf and its chain. A
// self-signed root is dropped: relying parties have it, and a server
// should not send it.
func split(bundle []byte, csr *x509.CertificateRequest) (*ca.IssueResponse, error) {
	var certs []*x509.Certificate
	for rest := bundle; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("DigiCert sent no certificate")
	}
	leaf := certs[0]
	if csr != nil {
		if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(csr.PublicKey) {
			return nil, errors.New("the certificate DigiCert sent is not for the CSR's key")
		}
	}
	res := &ca.IssueResponse{Certificate: leaf}
	for _, c := range certs[1:] {
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			continue
		}
		res.Chain = append(res.Chain, c)
	}
	return res, nil
}

// Revocation reasons DigiCert takes (revocation_reason); the CA-side
// reasons (cACompromise) and certificateHold are not a subscriber's to ask.
var reasons = map[int]string{
	ca.ReasonUnspecified:          "unspecified",
	ca.ReasonKeyCompromise:        "key_compromise",
	ca.ReasonAffiliationChanged:   "affiliation_changed",
	ca.ReasonSuperseded:           "superseded",
	ca.ReasonCessationOfOperation: "cessation_of_operation",
}

type revokeBody struct {
	Comments         string `json:"comments,omitempty"`
	RevocationReason string `json:"revocation_reason"`
	SkipApproval     bool   `json:"skip_approval,omitempty"`
}

// Revoke revokes the order's certificates when the order ID is known
// (DigiCert's per-certificate revoke leaves the order active, so its
// status would still say issued), else the one certificate by serial
// number. Remarks go to DigiCert as comments.
func (d *Issuer) Revoke(ctx context.Context, req *ca.RevokeRequest) error {
	if req == nil {
		return errors.New("digicert: revoke: no request")
	}
	reason, ok := reasons[req.Reason]
	if !ok {
		return fmt.Errorf("digicert: revoke: reason %d: %w", req.Reason, ca.ErrNotSupported)
	}
	var path []string
	switch {
	case req.CAOrderID != "":
		if _, err := strconv.Atoi(req.CAOrderID); err != nil {
			return fmt.Errorf("digicert: revoke: order ID %q is not a DigiCert order ID: %w", req.CAOrderID, ca.ErrNotIssuedHere)
		}
		path = []string{"order", "certificate", req.CAOrderID, "revoke"}
	case req.Certificate != nil:
		path = []string{"certificate", serial(req.Certificate), "revoke"}
	default:
		return errors.New("digicert: revoke: neither an order ID nor a certificate")
	}
	var ans struct {
		ID     int    `json:"id"`
		Status string `json:"status"`
	}
	err := d.call(ctx, http.MethodPut, path, revokeBody{Comments: req.Remarks, RevocationReason: reason, SkipApproval: d.cfg.SkipApproval}, &ans)
	if err != nil {
		return fmt.Errorf("digicert: revoke: %w", notIssuedHere(err))
	}
	if ans.ID != 0 && ans.Status != "approved" {
		d.log.Warn("digicert: revocation awaits approval", "request_id", ans.ID, "order_id", req.CAOrderID)
		return fmt.Errorf("digicert: revoke: %w", &RevocationPendingError{RequestID: strconv.Itoa(ans.ID)})
	}
	d.log.Info("digicert: revoked", "order_id", req.CAOrderID, "reason", reason)
	return nil
}

// Status reads the order (by ID, or by the certificate's serial number,
// which the order info call also takes): issued is good, revoked is
// revoked, anything else unknown.
func (d *Issuer) Status(ctx context.Context, req *ca.StatusRequest) (*ca.StatusResponse, error) {
	if req == nil {
		return nil, errors.New("digicert: status: no request")
	}
	id := req.CAOrderID
	if id == "" {
		if req.Certificate == nil {
			return nil, errors.New("digicert: status: neither an order ID nor a certificate")
		}
		id = serial(req.Certificate)
	}
	var info orderInfo
	if err := d.call(ctx, http.MethodGet, []string{"order", "certificate", id}, nil, &info); err != nil {
		return nil, fmt.Errorf("digicert: status: %w", notIssuedHere(err))
	}
	if req.Certificate != nil && info.Certificate.SerialNumber != "" && !strings.EqualFold(info.Certificate.SerialNumber, serial(req.Certificate)) {
		// The order's primary certificate is another (a reissue): DigiCert's
		// order status says nothing certain about this one.
		return &ca.StatusResponse{Status: ca.StatusUnknown}, nil
	}
	switch info.Status {
	case "issued":
		return &ca.StatusResponse{Status: ca.StatusGood}, nil
	case "revoked":
		return &ca.StatusResponse{Status: ca.StatusRevoked}, nil
	}
	return &ca.StatusResponse{Status: ca.StatusUnknown}, nil
}

func serial(c *x509.Certificate) string { return fmt.Sprintf("%X", c.SerialNumber) }

// APIError is an error answer: the HTTP status and DigiCert's errors[].
type APIError struct {
	HTTPStatus int
	Errors     []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d", e.HTTPStatus)
	for i, x := range e.Errors {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %s", x.Code, x.Message)
	}
	return b.String()
}

// hasCode reports whether DigiCert sent code (before any "|detail").
func (e *APIError) hasCode(code string) bool {
	for _, x := range e.Errors {
		if c, _, _ := strings.Cut(x.Code, "|"); c == code {
			return true
		}
	}
	return false
}

// notIssuedHere turns DigiCert's "no such order or certificate" into
// ca.ErrNotIssuedHere.
func notIssuedHere(err error) error {
	var ae *APIError
	if errors.As(err, &ae) && ae.HTTPStatus == http.StatusNotFound && ae.hasCode("not_found") {
		return fmt.Errorf("%w: %w", ca.ErrNotIssuedHere, err)
	}
	return err
}

// call sends one request. out is a *[]byte for a raw answer, else JSON is
// decoded into it. 401/403 wrap ErrAuth; other 4xx (but 404, 408 and 429)
// wrap ca.ErrRejected; 5xx, 408, 429 and transport errors are plain, so
// the caller retries later.
func (d *Issuer) call(ctx context.Context, method string, path []string, in, out any) error {
	u := *d.base
	segs := make([]string, len(path))
	for i, p := range path {
		segs[i] = url.PathEscape(p)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + strings.Join(segs, "/")
	u.RawPath = ""
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return err
	}
	req.Header.Set("X-DC-DEVKEY", d.cfg.APIKey.Reveal())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, application/x-pem-file, */*")
	resp, err := d.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u.Path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, u.Path, err)
	}
	if resp.StatusCode >= 300 {
		ae := &APIError{HTTPStatus: resp.StatusCode}
		_ = json.Unmarshal(raw, ae)
		switch s := resp.StatusCode; {
		case s == http.StatusUnauthorized || s == http.StatusForbidden:
			return fmt.Errorf("%s %s: %w (%w)", method, u.Path, ErrAuth, ae)
		case s == http.StatusNotFound && method == http.MethodPost:
			// An unknown product, or renewal of an unknown order: the order
			// itself is wrong.
			return fmt.Errorf("%s %s: %w: %w", method, u.Path, ca.ErrRejected, ae)
		case s == http.StatusNotFound, s == http.StatusRequestTimeout, s == http.StatusTooManyRequests, s >= 500:
			return fmt.Errorf("%s %s: %w", method, u.Path, ae)
		default:
			return fmt.Errorf("%s %s: %w: %w", method, u.Path, ca.ErrRejected, ae)
		}
	}
	switch o := out.(type) {
	case nil:
	case *[]byte:
		*o = raw
	default:
		if len(bytes.TrimSpace(raw)) == 0 {
			return nil // 204: nothing to decode
		}
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, u.Path, err)
		}
	}
	return nil
}
