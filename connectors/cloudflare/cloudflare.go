// Package cloudflare finds the certificates of Cloudflare zones through the
// Cloudflare API v4: custom certificates, edge certificate packs and Origin CA
// certificates. The API returns the PEM of Origin CA certificates only; for
// the others it returns metadata, and the certificate itself is fetched by a
// TLS handshake to one of its hosts, which is recorded as such.
package cloudflare

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	ctls "crypto/tls"

	"github.com/cloudflare/cloudflare-go/v6/custom_certificates"
	"github.com/cloudflare/cloudflare-go/v6/option"
	"github.com/cloudflare/cloudflare-go/v6/origin_ca_certificates"
	"github.com/cloudflare/cloudflare-go/v6/packages/pagination"
	"github.com/cloudflare/cloudflare-go/v6/ssl"

	"github.com/emsign/bot/connectors"
	"github.com/emsign/bot/protocol"
)

// Defaults for Config.
const (
	DefaultEndpoint         = "https://api.cloudflare.com/client/v4/"
	DefaultPerPage          = 50
	DefaultMaxRetries       = 3
	DefaultMaxRetryWait     = 30 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultRequestTimeout   = 60 * time.Second
	// maxPages bounds a list whose server keeps answering pages.
	maxPages = 10000
)

// Kinds of certificate, the "kind" attribute of a finding.
const (
	KindCustom = "custom"
	KindPack   = "pack"
	KindOrigin = "origin"
)

// Config tunes a Source.
type Config struct {
	Logger *slog.Logger
	Now    func() time.Time
	// HTTPClient makes the API calls; nil means a client with
	// DefaultRequestTimeout.
	HTTPClient *http.Client
	// DialContext opens the TCP connection of the handshake that fetches a
	// served certificate (to HOST:443); nil means a net.Dialer. Tests point
	// it at local listeners.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// PerPage is the page size asked of list calls.
	PerPage int
	// MaxRetries bounds the retries of a call answered 429 or 5xx;
	// MaxRetryWait bounds each wait (Retry-After included). Negative
	// MaxRetries means none.
	MaxRetries   int
	MaxRetryWait time.Duration
	// HandshakeTimeout bounds each TLS fetch, connect included.
	HandshakeTimeout time.Duration
}

// Source is the Cloudflare discovery connector.
type Source struct {
	cfg Config
	log *slog.Logger
}

// New validates cfg and fills in defaults.
func New(cfg Config) (*Source, error) {
	if cfg.PerPage < 0 || cfg.MaxRetryWait < 0 || cfg.HandshakeTimeout < 0 {
		return nil, errors.New("cloudflare: page size and timeouts must not be negative")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: DefaultRequestTimeout}
	}
	if cfg.DialContext == nil {
		d := &net.Dialer{KeepAlive: -1}
		cfg.DialContext = d.DialContext
	}
	if cfg.PerPage == 0 {
		cfg.PerPage = DefaultPerPage
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultMaxRetries
	} else if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	}
	if cfg.MaxRetryWait == 0 {
		cfg.MaxRetryWait = DefaultMaxRetryWait
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	return &Source{cfg: cfg, log: cfg.Logger}, nil
}

// AuthError is a credential the API refused (HTTP 401 or 403). It ends the
// discovery of the target.
type AuthError struct {
	Zone   string
	What   string
	Status int
	// Detail is Cloudflare's error list, "message (code N)"; it never
	// holds the credential.
	Detail string
}

func (e *AuthError) Error() string {
	s := fmt.Sprintf("cloudflare: zone %s: %s: the API refused the credentials (HTTP %d %s)", e.Zone, e.What, e.Status, http.StatusText(e.Status))
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s + "; check api_token (it needs Zone / SSL and Certificates: Read) or email and api_key"
}

// discovery is the state of one Discover call.
type discovery struct {
	s     *Source
	opts  []option.RequestOption
	emit  connectors.Emit
	shake map[string]shakeResult
}

type shakeResult struct {
	chain [][]byte
	info  *protocol.TLSInfo
	err   error
}

// Discover lists the certificates of the target's zones.
func (s *Source) Discover(ctx context.Context, t protocol.Target, emit connectors.Emit) error {
	if t.Scheme != protocol.SchemeCloudflare {
		return fmt.Errorf("cloudflare: cannot scan %s targets", t.Scheme)
	}
	if t.Host == "" {
		return errors.New("cloudflare: no zone given")
	}
	opts, err := s.options(t)
	if err != nil {
		return err
	}
	d := &discovery{s: s, opts: opts, emit: emit, shake: map[string]shakeResult{}}
	for zone := range strings.SplitSeq(t.Host, ",") {
		s.log.Debug("cloudflare: listing zone", "zone", zone)
		for _, list := range []func(context.Context, string) error{d.custom, d.packs, d.origin} {
			if err := list(ctx, zone); err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// options builds the client options: endpoint, credentials, HTTP client and
// the bounded retry. The library's own retry is off: it honours any
// Retry-After, however long.
func (s *Source) options(t protocol.Target) ([]option.RequestOption, error) {
	endpoint := t.Param(protocol.ParamEndpoint)
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	if !strings.HasSuffix(endpoint, "/") {
		endpoint += "/"
	}
	opts := []option.RequestOption{
		option.WithBaseURL(endpoint),
		option.WithHTTPClient(s.cfg.HTTPClient),
		option.WithMaxRetries(0),
		option.WithMiddleware(s.retry),
	}
	token := last(t.Secrets[protocol.ParamAPIToken])
	key := last(t.Secrets[protocol.ParamAPIKey])
	switch {
	case !token.IsZero():
		opts = append(opts, option.WithAPIToken(token.Reveal()))
	case !key.IsZero() && t.Param(protocol.ParamEmail) != "":
		opts = append(opts, option.WithAPIEmail(t.Param(protocol.ParamEmail)), option.WithAPIKey(key.Reveal()))
	default:
		return nil, errors.New("cloudflare: no credentials: give api_token, or email and api_key")
	}
	return opts, nil
}

func last(s []protocol.Secret) protocol.Secret {
	if len(s) == 0 {
		return protocol.Secret{}
	}
	return s[len(s)-1]
}

// retry retries a call answered 429 or 5xx, at most MaxRetries times, each
// wait the server's Retry-After (or a backoff) capped at MaxRetryWait.
func (s *Source) retry(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		res, err := next(req)
		if err != nil || attempt >= s.cfg.MaxRetries || (res.StatusCode != http.StatusTooManyRequests && res.StatusCode < 500) {
			return res, err
		}
		wait := retryAfter(res.Header.Get("Retry-After"), attempt, s.cfg.Now())
		wait = min(wait, s.cfg.MaxRetryWait)
		s.log.Debug("cloudflare: retrying", "path", req.URL.Path, "status", res.StatusCode, "wait", wait)
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
		_ = res.Body.Close()
		timer := time.NewTimer(wait)
		select {
		case <-req.Context().Done():
			timer.Stop()
			return nil, req.Context().Err()
		case <-timer.C:
		}
	}
}

// retryAfter reads Retry-After (seconds or an HTTP date), or backs off
// exponentially from one second.
func retryAfter(h string, attempt int, now time.Time) time.Duration {
	if h != "" {
		if n, err := strconv.ParseFloat(h, 64); err == nil && n >= 0 {
			return time.Duration(n * float64(time.Second))
		}
		if t, err := http.ParseTime(h); err == nil {
			return max(t.Sub(now), 0)
		}
	}
	return time.Second << min(attempt, 5)
}

// list fetches every page of a list call. fetch asks for one page; each is
// called for every item. It stops at an empty page or at
// result_info.total_pages, whichever comes first.
func list[T any](ctx context.Context, fetch func(page int, into **http.Response) (*pagination.V4PagePaginationArray[T], error), each func(T) error) error {
	for page := 1; page <= maxPages; page++ {
		var res *http.Response
		p, err := fetch(page, &res)
		if err != nil {
			return callError{err: err, res: res}
		}
		for _, item := range p.Result {
			if err := each(item); err != nil {
				return err
			}
		}
		if len(p.Result) == 0 || page >= totalPages(p.ResultInfo.JSON.RawJSON()) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// totalPages reads result_info.total_pages, which the library does not
// decode; 0 (absent) means "until an empty page".
func totalPages(raw string) int {
	var ri struct {
		TotalPages *int `json:"total_pages"`
	}
	if json.Unmarshal([]byte(raw), &ri) != nil || ri.TotalPages == nil {
		return maxPages
	}
	return *ri.TotalPages
}

// callError is a failed API call with the response, when there was one.
type callError struct {
	err error
	res *http.Response
}

func (e callError) Error() string { return e.err.Error() }

// classify turns a failed list call into an *AuthError (which ends the
// target) or a plain error in words for a finding.
func classify(zone, what string, err error) error {
	var ce callError
	if !errors.As(err, &ce) {
		return err
	}
	detail := ""
	var ae *custom_certificates.Error // every service aliases the same apierror.Error
	if errors.As(ce.err, &ae) {
		var msgs []string
		for _, e := range ae.Errors {
			msgs = append(msgs, fmt.Sprintf("%s (code %d)", e.Message, e.Code))
		}
		detail = strings.Join(msgs, "; ")
	}
	status := 0
	if ce.res != nil {
		status = ce.res.StatusCode
	}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return &AuthError{Zone: zone, What: what, Status: status, Detail: detail}
	case status >= 400:
		s := fmt.Sprintf("%s: HTTP %d %s", what, status, http.StatusText(status))
		if detail != "" {
			s += ": " + detail
		} else {
			s += " (the body is not a Cloudflare API error)"
		}
		return errors.New(s)
	case status != 0:
		return fmt.Errorf("%s: malformed response (HTTP %d, not the Cloudflare API's JSON): %v", what, status, ce.err)
	}
	return fmt.Errorf("%s: %w", what, ce.err)
}

// fail reports a list that could not be read: an *AuthError ends the
// discovery, anything else is a finding at the zone.
func (d *discovery) fail(ctx context.Context, zone, kind, what string, err error) error {
	var ce callError
	if !errors.As(err, &ce) || ctx.Err() != nil {
		return err // the receiver's, or the context's
	}
	err = classify(zone, what, err)
	if ae := (*AuthError)(nil); errors.As(err, &ae) {
		return err
	}
	return d.emit(protocol.Finding{
		Location:   protocol.Location{Scheme: protocol.SchemeCloudflare, Host: "zone", Path: "/" + zone},
		Source:     protocol.SchemeCloudflare,
		Error:      err.Error(),
		Attributes: map[string]string{"kind": kind},
		SeenAt:     d.s.cfg.Now(),
	})
}

// custom lists the zone's custom certificates.
func (d *discovery) custom(ctx context.Context, zone string) error {
	svc := custom_certificates.NewCustomCertificateService(d.opts...)
	err := list(ctx, func(page int, into **http.Response) (*pagination.V4PagePaginationArray[custom_certificates.CustomCertificate], error) {
		var p custom_certificates.CustomCertificateListParams
		p.ZoneID.Value, p.ZoneID.Present = zone, true
		p.Page.Value, p.Page.Present = float64(page), true
		p.PerPage.Value, p.PerPage.Present = float64(d.s.cfg.PerPage), true
		return svc.List(ctx, p, option.WithResponseInto(into))
	}, func(c custom_certificates.CustomCertificate) error {
		attrs := map[string]string{
			"kind":   KindCustom,
			"status": string(c.Status),
			"hosts":  strings.Join(c.Hosts, ","),
			"issuer": c.Issuer,
		}
		if !c.ExpiresOn.IsZero() {
			attrs["expires_on"] = c.ExpiresOn.UTC().Format(time.RFC3339)
		}
		if c.BundleMethod != "" {
			attrs["bundle_method"] = string(c.BundleMethod)
		}
		return d.served(ctx, zone, c.ID, string(c.Status), c.Hosts, []time.Time{c.ExpiresOn}, attrs)
	})
	if err != nil {
		return d.fail(ctx, zone, KindCustom, "list custom certificates", err)
	}
	return nil
}

// packs lists the zone's edge certificate packs, of every status.
func (d *discovery) packs(ctx context.Context, zone string) error {
	svc := ssl.NewCertificatePackService(d.opts...)
	err := list(ctx, func(page int, into **http.Response) (*pagination.V4PagePaginationArray[ssl.CertificatePackListResponse], error) {
		var p ssl.CertificatePackListParams
		p.ZoneID.Value, p.ZoneID.Present = zone, true
		p.Status.Value, p.Status.Present = ssl.CertificatePackListParamsStatusAll, true
		p.Page.Value, p.Page.Present = float64(page), true
		p.PerPage.Value, p.PerPage.Present = float64(d.s.cfg.PerPage), true
		return svc.List(ctx, p, option.WithResponseInto(into))
	}, func(c ssl.CertificatePackListResponse) error {
		attrs := map[string]string{
			"kind":                  KindPack,
			"status":                string(c.Status),
			"type":                  string(c.Type),
			"hosts":                 strings.Join(c.Hosts, ","),
			"certificate_authority": string(c.CertificateAuthority),
		}
		var certs []string
		var expiries []time.Time
		for _, pc := range c.Certificates {
			certs = append(certs, fmt.Sprintf("%s issuer=%s status=%s expires_on=%s", pc.ID, pc.Issuer, pc.Status, formatTime(pc.ExpiresOn)))
			expiries = append(expiries, pc.ExpiresOn)
		}
		if len(certs) > 0 {
			attrs["certificates"] = strings.Join(certs, "; ")
		}
		return d.served(ctx, zone, c.ID, string(c.Status), c.Hosts, expiries, attrs)
	})
	if err != nil {
		return d.fail(ctx, zone, KindPack, "list certificate packs", err)
	}
	return nil
}

// origin lists the zone's Origin CA certificates, which come with their PEM.
func (d *discovery) origin(ctx context.Context, zone string) error {
	svc := origin_ca_certificates.NewOriginCACertificateService(d.opts...)
	err := list(ctx, func(page int, into **http.Response) (*pagination.V4PagePaginationArray[origin_ca_certificates.OriginCACertificate], error) {
		var p origin_ca_certificates.OriginCACertificateListParams
		p.ZoneID.Value, p.ZoneID.Present = zone, true
		p.Page.Value, p.Page.Present = float64(page), true
		p.PerPage.Value, p.PerPage.Present = float64(d.s.cfg.PerPage), true
		return svc.List(ctx, p, option.WithResponseInto(into))
	}, func(c origin_ca_certificates.OriginCACertificate) error {
		attrs := map[string]string{
			"kind":       KindOrigin,
			"hosts":      strings.Join(c.Hostnames, ","),
			"expires_on": c.ExpiresOn,
		}
		if c.RequestType != "" {
			attrs["request_type"] = string(c.RequestType)
		}
		f := protocol.Finding{
			Location:   location(zone, c.ID),
			Source:     protocol.SchemeCloudflare,
			Format:     protocol.FormatPEM,
			Attributes: attrs,
			SeenAt:     d.s.cfg.Now(),
		}
		f.Chain, f.Error = pemChain(c.Certificate)
		return d.emit(f)
	})
	if err != nil {
		return d.fail(ctx, zone, KindOrigin, "list origin CA certificates", err)
	}
	return nil
}

// pemChain decodes the CERTIFICATE blocks of s, or says why there are none.
func pemChain(s string) ([][]byte, string) {
	var chain [][]byte
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return chain, fmt.Sprintf("certificate %d of the PEM does not parse: %v", len(chain), err)
		}
		chain = append(chain, b.Bytes)
	}
	if len(chain) == 0 {
		return nil, "the API returned no PEM certificate for this Origin CA certificate"
	}
	return chain, ""
}

func location(zone, id string) protocol.Location {
	return protocol.Location{Scheme: protocol.SchemeCloudflare, Host: "zone", Path: "/" + zone + "/" + id}
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// served emits a certificate the API describes but does not return: it
// fetches what Cloudflare serves for one of its hosts by a TLS handshake.
func (d *discovery) served(ctx context.Context, zone, id, status string, hosts []string, expiries []time.Time, attrs map[string]string) error {
	f := protocol.Finding{
		Location:   location(zone, id),
		Source:     protocol.SchemeCloudflare,
		Format:     protocol.FormatTLS,
		Attributes: attrs,
		SeenAt:     d.s.cfg.Now(),
	}
	host := handshakeHost(hosts)
	switch {
	case status != "" && status != "active":
		f.Error = fmt.Sprintf("the API does not return the certificate, and Cloudflare does not serve it while its status is %q, so it was not fetched by handshake", status)
		return d.emit(f)
	case host == "":
		f.Error = "the API does not return the certificate, and it names no host to fetch it from by handshake"
		return d.emit(f)
	}
	r, ok := d.shake[host]
	if !ok {
		r.chain, r.info, r.err = d.s.handshake(ctx, host)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.shake[host] = r
	}
	attrs["fetched_by"] = "tls-handshake"
	attrs["handshake_host"] = net.JoinHostPort(host, "443")
	if r.err != nil {
		f.Error = fmt.Sprintf("the API does not return the certificate; fetching it by TLS handshake to %s:443 failed: %v", host, r.err)
		return d.emit(f)
	}
	f.Chain, f.TLS = r.chain, r.info
	if leaf, err := x509.ParseCertificate(r.chain[0]); err == nil {
		attrs["served_expires_on"] = formatTime(leaf.NotAfter)
		attrs["served_matches"] = strconv.FormatBool(expiryMatches(leaf.NotAfter, expiries))
	}
	return d.emit(f)
}

// handshakeHost picks the host to ask for: the first one that is not a
// wildcard, or else a wildcard's parent.
func handshakeHost(hosts []string) string {
	for _, h := range hosts {
		if h != "" && !strings.Contains(h, "*") {
			return h
		}
	}
	for _, h := range hosts {
		if p, ok := strings.CutPrefix(h, "*."); ok && !strings.Contains(p, "*") {
			return p
		}
	}
	return ""
}

// expiryMatches tells whether the served certificate is (by its expiry) the
// one the API describes.
func expiryMatches(served time.Time, listed []time.Time) bool {
	for _, t := range listed {
		if !t.IsZero() && served.Sub(t).Abs() < time.Minute {
			return true
		}
	}
	return false
}

// handshake fetches the chain host serves on 443 with SNI host.
func (s *Source) handshake(ctx context.Context, host string) ([][]byte, *protocol.TLSInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
	defer cancel()
	conn, err := s.cfg.DialContext(ctx, "tcp", net.JoinHostPort(host, "443"))
	if err != nil {
		return nil, nil, fmt.Errorf("connect: %w", unwrapOpError(err))
	}
	defer conn.Close()
	tc := ctls.Client(conn, &ctls.Config{
		ServerName:         host,
		InsecureSkipVerify: true, //nolint:gosec // discovery reads certificates, it does not trust them.
		MinVersion:         ctls.VersionTLS10,
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, nil, fmt.Errorf("tls handshake: %w", unwrapOpError(err))
	}
	st := tc.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return nil, nil, errors.New("tls handshake: the server sent no certificate")
	}
	chain := make([][]byte, len(st.PeerCertificates))
	for i, c := range st.PeerCertificates {
		chain[i] = c.Raw
	}
	return chain, &protocol.TLSInfo{
		Version:     ctls.VersionName(st.Version),
		CipherSuite: ctls.CipherSuiteName(st.CipherSuite),
		Group:       st.CurveID.String(),
		PostQuantum: st.CurveID == ctls.X25519MLKEM768,
		SNI:         host,
		ALPN:        st.NegotiatedProtocol,
	}, nil
}

func unwrapOpError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}
