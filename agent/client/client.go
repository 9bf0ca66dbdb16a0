// Package client talks the bot API (protocol/botapi.go) to the control
// plane: JSON over HTTPS, the bot's version on every call (the heartbeat),
// errors decoded from protocol.ErrorResponse. After activation every call
// uses mTLS with the bot's certificate and trusts only the CA bundle.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/emsign/bot/protocol"
)

// maxResponse bounds a response body read into memory.
const maxResponse = 16 << 20

// Config configures a Client.
type Config struct {
	// URL is the control plane's base URL, https.
	URL string
	// TLS is the client's TLS configuration: for activation, roots only; for
	// every later call, the bot's certificate and the CA bundle.
	TLS *tls.Config
	// Version is the bot's version, sent on every call.
	Version string
	// Timeout bounds one call (the long poll gets its wait on top);
	// 0 means 60s.
	Timeout time.Duration
	Logger  *slog.Logger
	// Dial, when set, makes every connection (package netpath: direct,
	// proxy or relay); TLS still runs end to end to URL's host. Without
	// it the client dials directly or through HTTPS_PROXY.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Path is how the bot reaches the control plane ("direct", "proxy",
	// "via HOST:PORT"), sent with every call beside the version; "" sends
	// nothing.
	Path string
}

// Client is a bot API client. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	http    *http.Client
	version string
	path    string
	timeout time.Duration
	log     *slog.Logger
}

// New builds a client.
func New(c Config) (*Client, error) {
	u, err := ParseURL(c.URL)
	if err != nil {
		return nil, err
	}
	if c.TLS == nil {
		return nil, errors.New("client: no TLS configuration")
	}
	if c.Version == "" {
		return nil, errors.New("client: no bot version")
	}
	if c.Timeout < 0 {
		return nil, errors.New("client: negative timeout")
	}
	if c.Timeout == 0 {
		c.Timeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     c.TLS.Clone(),
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 15 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 4,
	}
	if c.Dial != nil {
		tr.Proxy = nil
		tr.DialContext = c.Dial
	}
	return &Client{base: u, http: &http.Client{Transport: tr}, version: c.Version, path: c.Path, timeout: c.Timeout, log: c.Logger}, nil
}

// ParseURL checks a control-plane URL: https, with a host, nothing after
// the path.
func ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("control plane URL %q: %w", raw, err)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("control plane URL %q: must start with https://", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("control plane URL %q: no host", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("control plane URL %q: no user info, query or fragment", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	return u, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// StatusError is an HTTP error answer from the control plane.
type StatusError struct {
	Method, Path string
	Code         int
	// Message is the control plane's {"error": ...}, or the body's start.
	Message string
}

func (e *StatusError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Code)
	}
	return fmt.Sprintf("control plane answered %s %s with %d: %s", e.Method, e.Path, e.Code, msg)
}

// IsUnauthorized reports whether err is the control plane refusing the bot
// itself (401/403): suspended, deactivated or its token regenerated.
func IsUnauthorized(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && (se.Code == http.StatusUnauthorized || se.Code == http.StatusForbidden)
}

// IsPermanent reports whether repeating the same request cannot help: a
// 4xx other than 401/403 (the bot's standing, which may change), 408 and
// 429.
func IsPermanent(err error) bool {
	var se *StatusError
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusRequestTimeout, http.StatusTooManyRequests:
		return false
	}
	return se.Code >= 400 && se.Code < 500
}

// UnreachableError is a call that got no HTTP answer at all.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	hint := ""
	var ua x509.UnknownAuthorityError
	if errors.As(e.Err, &ua) {
		hint = " (its certificate is not signed by a trusted CA: give the control plane's ca.pem with --ca-file)"
	}
	return fmt.Sprintf("cannot reach the control plane at %s: %v%s", e.URL, e.Err, hint)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// do sends one request. in (if not nil) is sent as JSON; a 2xx answer is
// decoded into out (if not nil). header values are added.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, header http.Header, in, out any, timeout time.Duration) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = query.Encode()
	var body io.Reader
	if in != nil {
		var raw []byte
		switch v := in.(type) {
		case json.RawMessage:
			raw = v
		default:
			var err error
			if raw, err = json.Marshal(in); err != nil {
				return nil, fmt.Errorf("%s %s: %w", method, path, err)
			}
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set(protocol.HeaderBotVersion, c.version)
	req.Header.Set(protocol.HeaderBotCapability, strconv.Itoa(protocol.CapabilityVersion))
	if c.path != "" {
		req.Header.Set(protocol.HeaderBotPath, c.path)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, &UnreachableError{URL: c.base.String(), Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, &UnreachableError{URL: c.base.String(), Err: fmt.Errorf("read answer to %s %s: %w", method, path, err)}
	}
	if resp.StatusCode == http.StatusNotModified {
		return resp, nil
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		se := &StatusError{Method: method, Path: path, Code: resp.StatusCode}
		var er protocol.ErrorResponse
		if json.Unmarshal(raw, &er) == nil && er.Error != "" {
			se.Message = er.Error
		} else {
			se.Message = strings.TrimSpace(string(raw[:min(len(raw), 200)]))
		}
		return resp, se
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp, fmt.Errorf("%s %s: the control plane's answer is not what the bot expects: %w", method, path, err)
		}
	}
	return resp, nil
}

// Activate posts an activation request (the one call without a client
// certificate). A 4xx answer comes back as *RefusedError.
func (c *Client) Activate(ctx context.Context, req protocol.ActivateRequest) (protocol.ActivateResponse, error) {
	var out protocol.ActivateResponse
	_, err := c.do(ctx, http.MethodPost, protocol.PathActivate, nil, nil, req, &out, c.timeout)
	var se *StatusError
	if errors.As(err, &se) && se.Code >= 400 && se.Code < 500 {
		return out, &RefusedError{Code: se.Code, Message: se.Message}
	}
	if err != nil {
		return out, err
	}
	if out.BotID == "" || out.Certificate == "" || out.CABundle == "" {
		return out, errors.New("activation: the control plane's answer lacks the bot id, certificate or CA bundle")
	}
	return out, nil
}

// RefusedError is the control plane refusing an activation (wrong account,
// token used or unknown, bot deactivated).
type RefusedError struct {
	Code    int
	Message string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("activation refused by the control plane: %s (HTTP %d)", e.Message, e.Code)
}

// Config fetches the bot's configuration. With etag set (the Version of
// the configuration the bot has), an unchanged configuration answers
// notModified.
func (c *Client) Config(ctx context.Context, etag string) (cfg protocol.BotConfig, newETag string, notModified bool, err error) {
	h := http.Header{}
	if etag != "" {
		h.Set("If-None-Match", quoteETag(etag))
	}
	resp, err := c.do(ctx, http.MethodGet, protocol.PathConfig, nil, h, nil, &cfg, c.timeout)
	if err != nil {
		return cfg, "", false, err
	}
	if resp.StatusCode == http.StatusNotModified {
		return cfg, etag, true, nil
	}
	newETag = strings.Trim(strings.TrimPrefix(resp.Header.Get("ETag"), "W/"), `"`)
	if newETag == "" {
		newETag = cfg.Version
	}
	return cfg, newETag, false, nil
}

func quoteETag(s string) string {
	if strings.HasPrefix(s, `"`) || strings.HasPrefix(s, `W/"`) {
		return s
	}
	return `"` + s + `"`
}

// StartScan posts a ScanStart (body as JSON, already encoded or not).
func (c *Client) StartScan(ctx context.Context, body any) error {
	_, err := c.do(ctx, http.MethodPost, protocol.PathScans, nil, nil, body, nil, c.timeout)
	return err
}

// PostFindings posts a FindingsBatch and returns the acknowledgement.
func (c *Client) PostFindings(ctx context.Context, scan string, body any) (protocol.FindingsAck, error) {
	var ack protocol.FindingsAck
	_, err := c.do(ctx, http.MethodPost, protocol.FindingsPath(url.PathEscape(scan)), nil, nil, body, &ack, c.timeout)
	return ack, err
}

// CompleteScan posts a ScanComplete.
func (c *Client) CompleteScan(ctx context.Context, scan string, body any) error {
	_, err := c.do(ctx, http.MethodPost, protocol.ScanCompletePath(url.PathEscape(scan)), nil, nil, body, nil, c.timeout)
	return err
}

// Jobs long-polls for jobs, waiting up to wait on the server.
func (c *Client) Jobs(ctx context.Context, wait time.Duration) ([]protocol.Job, error) {
	var out protocol.JobsResponse
	q := url.Values{"wait": {wait.String()}}
	_, err := c.do(ctx, http.MethodGet, protocol.PathJobs, q, nil, nil, &out, c.timeout+wait)
	return out.Jobs, err
}

// ReportJob posts a job's result.
func (c *Client) ReportJob(ctx context.Context, id string, body any) error {
	_, err := c.do(ctx, http.MethodPost, protocol.JobResultPath(url.PathEscape(id)), nil, nil, body, nil, c.timeout)
	return err
}

// OrderCSR posts a rotation's CSR (PEM) for an order and returns the
// answer: pending with a RetryAfter while the CA works, then issued with
// the certificate. Posting the same CSR again is safe: the control plane
// answers an order it already issued with the same certificate.
func (c *Client) OrderCSR(ctx context.Context, orderID string, csrPEM []byte) (protocol.OrderCertificate, error) {
	var out protocol.OrderCertificate
	_, err := c.do(ctx, http.MethodPost, protocol.OrderCSRPath(url.PathEscape(orderID)), nil, nil,
		protocol.OrderCSR{CSR: string(csrPEM)}, &out, c.timeout)
	return out, err
}
