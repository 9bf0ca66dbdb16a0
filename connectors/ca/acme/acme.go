// Package acme orders certificates from an ACME CA (RFC 8555), with
// External Account Binding when the CA asks for it (commercial ACME CAs
// do), answering HTTP-01 challenges through a ChallengeSolver (the control
// plane asks the bot that holds the location to serve the token) or
// relying on authorizations the CA already holds (pre-validated accounts).
// The account key is the caller's crypto.Signer: the control plane keeps it
// sealed; this package never reads or writes key files.
package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	xacme "golang.org/x/crypto/acme"

	"github.com/emsign/bot/connectors/ca"
	"github.com/emsign/bot/protocol"
)

// Defaults for Config.
const (
	DefaultPollTimeout = 5 * time.Minute
	// maxRetries bounds the ACME library's retries of one request (5xx,
	// 429, bad nonce): the library would otherwise retry until the context
	// ends, and ordering has its own retry with backoff across restarts.
	maxRetries = 3
	// cacheSize bounds the in-process OrderRef cache.
	cacheSize = 1024
	// cleanupTimeout bounds a solver's CleanUp, run even when the
	// request's context is done.
	cleanupTimeout = 30 * time.Second
)

// ChallengeSolver answers HTTP-01 challenges: Present makes
// http://DOMAIN/.well-known/acme-challenge/TOKEN answer keyAuthorization
// (text, status 200) on port 80 of every address DOMAIN resolves to, and
// returns once it does; CleanUp removes it. An error that wraps
// ca.ErrRejected tells ordering not to retry.
type ChallengeSolver interface {
	Present(ctx context.Context, domain, token, keyAuthorization string) error
	CleanUp(ctx context.Context, domain, token string) error
}

// Config describes the CA and the account.
type Config struct {
	// DirectoryURL is the CA's ACME directory (https).
	DirectoryURL string
	// Contact is an e-mail address for the account ("" for none).
	Contact string
	// AccountKey signs every request (RSA 2048+ or ECDSA P-256/384/521).
	AccountKey crypto.Signer
	// EABKeyID and EABHMACKey bind the account to the CA's customer
	// account (RFC 8555 7.3.4), as the CA gives them: the key in
	// base64url. Both or neither.
	EABKeyID   string
	EABHMACKey protocol.Secret
	// TermsAgreed agrees to the CA's terms of service; required when the
	// directory publishes terms.
	TermsAgreed bool
	// HTTPClient carries every request (proxies, a private trust store);
	// nil gives one with a 60-second timeout and the environment's proxy.
	HTTPClient *http.Client
	// Solver answers HTTP-01 challenges; required unless PreValidated.
	Solver ChallengeSolver
	// PreValidated says the CA already holds valid authorizations for
	// every name ordered (validated out of band for the account): no
	// challenge is answered, and a pending authorization is an error.
	PreValidated bool
	// PollTimeout bounds waiting for authorizations and the certificate.
	PollTimeout time.Duration
	// SendNotAfter sends a request's Lifetime as the order's notAfter.
	// Off by default: Let's Encrypt refuses orders that carry it.
	SendNotAfter bool
	Logger       *slog.Logger
	Now          func() time.Time
}

// CA is the ACME connector. It is safe for concurrent use.
type CA struct {
	cfg    Config
	log    *slog.Logger
	client *xacme.Client
	eab    *xacme.ExternalAccountBinding

	accountMu sync.Mutex
	account   string // account URL once registered or found

	cacheMu sync.Mutex
	cache   map[string]*cached
	order   []string // OrderRefs, oldest first, for eviction
}

// cached is one OrderRef's issuance, done closed when it is over.
type cached struct {
	done chan struct{}
	pub  crypto.PublicKey
	resp *ca.IssueResponse
	err  error
}

var _ ca.Issuer = (*CA)(nil)

// New validates cfg and fills in defaults. It makes no request: the
// account is registered or looked up at the first order.
func New(cfg Config) (*CA, error) {
	u, err := url.Parse(cfg.DirectoryURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("acme: directory URL %q must be an https URL", cfg.DirectoryURL)
	}
	if err := checkAccountKey(cfg.AccountKey); err != nil {
		return nil, fmt.Errorf("acme: account key: %w", err)
	}
	if (cfg.EABKeyID == "") != cfg.EABHMACKey.IsZero() {
		return nil, errors.New("acme: EAB key ID and HMAC key go together: give both or neither")
	}
	var eab *xacme.ExternalAccountBinding
	if cfg.EABKeyID != "" {
		key, err := decodeHMAC(cfg.EABHMACKey.Reveal())
		if err != nil {
			// The error never quotes the key.
			return nil, errors.New("acme: EAB HMAC key is not base64url")
		}
		eab = &xacme.ExternalAccountBinding{KID: cfg.EABKeyID, Key: key}
	}
	if cfg.Contact != "" && (!strings.Contains(cfg.Contact, "@") || strings.ContainsAny(cfg.Contact, " ,:")) {
		return nil, fmt.Errorf("acme: contact %q is not an e-mail address", cfg.Contact)
	}
	if cfg.Solver == nil && !cfg.PreValidated {
		return nil, errors.New("acme: a challenge solver is required unless the account is pre-validated")
	}
	if cfg.PollTimeout < 0 {
		return nil, errors.New("acme: PollTimeout must not be negative")
	}
	if cfg.PollTimeout == 0 {
		cfg.PollTimeout = DefaultPollTimeout
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &CA{
		cfg: cfg,
		log: cfg.Logger.With("ca", "acme", "directory", cfg.DirectoryURL),
		eab: eab,
		client: &xacme.Client{
			Key:          cfg.AccountKey,
			HTTPClient:   cfg.HTTPClient,
			DirectoryURL: cfg.DirectoryURL,
			UserAgent:    "emsign-bot",
			RetryBackoff: backoff,
		},
		cache: map[string]*cached{},
	}
	return c, nil
}

// backoff is the library's truncated exponential backoff, honouring
// Retry-After, cut after maxRetries attempts.
func backoff(n int, _ *http.Request, resp *http.Response) time.Duration {
	if n > maxRetries {
		return 0
	}
	if resp != nil {
		if v := resp.Header.Get("Retry-After"); v != "" {
			if d, err := time.ParseDuration(v + "s"); err == nil && d > 0 {
				return min(d, time.Minute)
			}
		}
	}
	return time.Duration(1<<(n-1)) * time.Second
}

func checkAccountKey(k crypto.Signer) error {
	if k == nil {
		return errors.New("required")
	}
	switch pub := k.Public().(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			return fmt.Errorf("RSA %d bits: 2048 at least", pub.N.BitLen())
		}
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return errors.New("ECDSA curve must be P-256, P-384 or P-521")
		}
	default:
		return fmt.Errorf("%T: ACME account keys are RSA or ECDSA", pub)
	}
	return nil
}

// decodeHMAC reads the EAB key as CAs hand it out: base64url, with or
// without padding (some give standard base64).
func decodeHMAC(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	s = strings.NewReplacer("+", "-", "/", "_").Replace(s)
	k, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if len(k) == 0 {
		return nil, errors.New("empty")
	}
	return k, nil
}

// ensureAccount looks the account up by its key, and registers it (with
// EAB when configured) when the CA does not know it.
func (c *CA) ensureAccount(ctx context.Context) error {
	c.accountMu.Lock()
	defer c.accountMu.Unlock()
	if c.account != "" {
		return nil
	}
	dir, err := c.client.Discover(ctx)
	if err != nil {
		return fmt.Errorf("acme: directory: %w", classify(err))
	}
	acct, err := c.client.GetReg(ctx, "")
	if err == nil {
		c.account = acct.URI
		c.log.Debug("acme account found", "account", acct.URI)
		return nil
	}
	if !errors.Is(err, xacme.ErrNoAccount) {
		return fmt.Errorf("acme: account lookup: %w", classify(err))
	}
	if dir.ExternalAccountRequired && c.eab == nil {
		return fmt.Errorf("acme: the CA requires external account binding: configure the EAB key ID and HMAC key: %w", ca.ErrRejected)
	}
	req := &xacme.Account{ExternalAccountBinding: c.eab}
	if c.cfg.Contact != "" {
		req.Contact = []string{"mailto:" + c.cfg.Contact}
	}
	terms := func(tos string) bool {
		if !c.cfg.TermsAgreed {
			return false
		}
		c.log.Info("acme terms of service agreed", "terms", tos)
		return true
	}
	if dir.Terms != "" && !c.cfg.TermsAgreed {
		return fmt.Errorf("acme: the CA's terms of service (%s) must be agreed (TermsAgreed): %w", dir.Terms, ca.ErrRejected)
	}
	acct, err = c.client.Register(ctx, req, terms)
	switch {
	case errors.Is(err, xacme.ErrAccountAlreadyExists):
		// Registered by a concurrent process between lookup and now.
		c.account = string(c.client.KID)
		return nil
	case err != nil:
		hint := ""
		if c.eab != nil {
			hint = " (check the EAB key ID and HMAC key)"
		}
		return fmt.Errorf("acme: account registration refused%s: %w", hint, classify(err))
	}
	c.account = acct.URI
	c.log.Info("acme account registered", "account", acct.URI, "eab_kid", c.cfg.EABKeyID)
	return nil
}

// identifiers are the names to order for: the CSR's DNS and IP SANs. ACME
// certifies SANs only, so a CSR asking for what ACME cannot validate (an
// e-mail or URI SAN, a CN that is not among the SANs) is refused here
// rather than by the CA after the challenges.
func identifiers(csr *x509.CertificateRequest) ([]xacme.AuthzID, error) {
	if len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		return nil, errors.New("ACME certifies DNS names and IP addresses only: the CSR has e-mail or URI SANs")
	}
	var ids []xacme.AuthzID
	for _, n := range csr.DNSNames {
		n = strings.ToLower(n)
		if !slices.Contains(ids, xacme.AuthzID{Type: "dns", Value: n}) {
			ids = append(ids, xacme.AuthzID{Type: "dns", Value: n})
		}
	}
	for _, ip := range csr.IPAddresses {
		id := xacme.AuthzID{Type: "ip", Value: ip.String()}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, errors.New("the CSR has no DNS or IP SAN")
	}
	if cn := csr.Subject.CommonName; cn != "" {
		in := slices.ContainsFunc(csr.DNSNames, func(n string) bool { return strings.EqualFold(n, cn) }) ||
			slices.ContainsFunc(csr.IPAddresses, func(ip net.IP) bool { return ip.String() == cn })
		if !in {
			return nil, fmt.Errorf("the CSR's common name %q is not among its SANs", cn)
		}
	}
	return ids, nil
}

// Issue orders a certificate for the CSR's names. ACME has no idempotency
// key: the same OrderRef asked twice in this process returns the first
// result (or waits for it); across restarts the caller must record
// CAOrderID before retrying.
func (c *CA) Issue(ctx context.Context, req *ca.IssueRequest) (*ca.IssueResponse, error) {
	if req == nil || req.CSR == nil {
		return nil, fmt.Errorf("acme: a CSR is required: %w", ca.ErrRejected)
	}
	if req.OrderRef == "" {
		return c.issue(ctx, req)
	}
	c.cacheMu.Lock()
	if e, ok := c.cache[req.OrderRef]; ok {
		c.cacheMu.Unlock()
		select {
		case <-e.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("acme: waiting for order %q: %w", req.OrderRef, ctx.Err())
		}
		if e.err == nil && !publicKeyEqual(e.pub, req.CSR.PublicKey) {
			return nil, fmt.Errorf("acme: order %q was issued for another key: %w", req.OrderRef, ca.ErrRejected)
		}
		if e.err != nil {
			// A failure is not cached: this attempt retries it.
			return c.Issue(ctx, req)
		}
		return e.resp, nil
	}
	e := &cached{done: make(chan struct{}), pub: req.CSR.PublicKey}
	c.cache[req.OrderRef] = e
	c.order = append(c.order, req.OrderRef)
	c.cacheMu.Unlock()

	e.resp, e.err = c.issue(ctx, req)
	c.cacheMu.Lock()
	if e.err != nil {
		delete(c.cache, req.OrderRef)
		c.order = slices.DeleteFunc(c.order, func(r string) bool { return r == req.OrderRef })
	}
	c.evict()
	c.cacheMu.Unlock()
	close(e.done)
	return e.resp, e.err
}

// evict drops the oldest finished OrderRefs beyond cacheSize; one still
// running stays (and so do those after it) until a later call. Called
// with cacheMu held.
func (c *CA) evict() {
	for len(c.order) > cacheSize {
		if old := c.cache[c.order[0]]; old != nil {
			select {
			case <-old.done:
				delete(c.cache, c.order[0])
			default:
				return
			}
		}
		c.order = c.order[1:]
	}
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func (c *CA) issue(ctx context.Context, req *ca.IssueRequest) (*ca.IssueResponse, error) {
	if err := req.CSR.CheckSignature(); err != nil {
		return nil, fmt.Errorf("acme: csr signature: %v: %w", err, ca.ErrRejected)
	}
	ids, err := identifiers(req.CSR)
	if err != nil {
		return nil, fmt.Errorf("acme: %v: %w", err, ca.ErrRejected)
	}
	if err := c.ensureAccount(ctx); err != nil {
		return nil, err
	}
	var opts []xacme.OrderOption
	if req.Profile != "" {
		opts = append(opts, xacme.WithOrderIssuanceProfile(xacme.ProfileName(req.Profile)))
	}
	if req.Lifetime > 0 && c.cfg.SendNotAfter {
		opts = append(opts, xacme.WithOrderNotAfter(c.cfg.Now().Add(req.Lifetime)))
	}
	order, err := c.client.AuthorizeOrder(ctx, ids, opts...)
	if err != nil {
		if strings.Contains(err.Error(), "profile") && !isACMEError(err) {
			// The library refuses a profile the directory does not list.
			return nil, fmt.Errorf("acme: new order: %v: %w", err, ca.ErrRejected)
		}
		return nil, fmt.Errorf("acme: new order for %s: %w", names(ids), classify(err))
	}
	log := c.log.With("order", order.URI)
	log.Info("acme order created", "names", names(ids), "status", order.Status)

	pollCtx, cancel := context.WithTimeout(ctx, c.cfg.PollTimeout)
	defer cancel()
	if order.Status == xacme.StatusPending {
		if err := c.authorize(pollCtx, log, order); err != nil {
			return nil, fmt.Errorf("acme: order %s: %w", order.URI, err)
		}
	}
	if order.Status != xacme.StatusReady && order.Status != xacme.StatusValid {
		if order, err = c.client.WaitOrder(pollCtx, order.URI); err != nil {
			return nil, fmt.Errorf("acme: order %s: waiting for ready: %w", orderURI(order, err), classify(err))
		}
	}
	// CreateCertFromOrder rather than CreateOrderCert: the latter needs a
	// Location header on the finalize answer that Pebble (and RFC 8555)
	// does not promise.
	ders, _, err := c.client.CreateCertFromOrder(pollCtx, order, req.CSR.Raw, true)
	if err != nil {
		return nil, fmt.Errorf("acme: order %s: finalize: %w", order.URI, classify(err))
	}
	certs := make([]*x509.Certificate, 0, len(ders))
	for _, d := range ders {
		cert, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("acme: order %s: the CA sent an unreadable certificate: %w", order.URI, err)
		}
		certs = append(certs, cert)
	}
	if !publicKeyEqual(req.CSR.PublicKey, certs[0].PublicKey) {
		return nil, fmt.Errorf("acme: order %s: the certificate is not for the CSR's key", order.URI)
	}
	log.Info("acme certificate issued", "serial", certs[0].SerialNumber.Text(16), "not_after", certs[0].NotAfter)
	return &ca.IssueResponse{Certificate: certs[0], Chain: certs[1:], CAOrderID: order.URI}, nil
}

func orderURI(o *xacme.Order, err error) string {
	var oe *xacme.OrderError
	if errors.As(err, &oe) {
		return oe.OrderURL
	}
	if o != nil {
		return o.URI
	}
	return "?"
}

// authorize satisfies the order's pending authorizations: every challenge
// is presented first, then accepted, then waited for; every presented one
// is cleaned up, also on failure.
func (c *CA) authorize(ctx context.Context, log *slog.Logger, order *xacme.Order) error {
	type pending struct {
		authz *xacme.Authorization
		chal  *xacme.Challenge
	}
	var todo []pending
	defer func() {
		// CleanUp runs even when ctx is done: a token left served is
		// harmless but untidy, and the bot should drop it.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		for _, p := range todo {
			if err := c.cfg.Solver.CleanUp(cctx, p.authz.Identifier.Value, p.chal.Token); err != nil {
				log.Warn("acme challenge cleanup failed", "name", p.authz.Identifier.Value, "err", err)
			}
		}
	}()
	for _, u := range order.AuthzURLs {
		z, err := c.client.GetAuthorization(ctx, u)
		if err != nil {
			return fmt.Errorf("authorization %s: %w", u, classify(err))
		}
		switch z.Status {
		case xacme.StatusValid:
			continue
		case xacme.StatusPending:
		default:
			return fmt.Errorf("authorization for %s is %s: %w", z.Identifier.Value, z.Status, ca.ErrRejected)
		}
		if c.cfg.PreValidated {
			return fmt.Errorf("authorization for %s is pending but the account is configured as pre-validated: %w", z.Identifier.Value, ca.ErrRejected)
		}
		var chal *xacme.Challenge
		var offered []string
		for _, ch := range z.Challenges {
			offered = append(offered, ch.Type)
			if ch.Type == "http-01" {
				chal = ch
			}
		}
		if chal == nil {
			return fmt.Errorf("the CA offers no http-01 challenge for %s (offers %s): %w", z.Identifier.Value, strings.Join(offered, ", "), ca.ErrRejected)
		}
		keyAuth, err := c.client.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return fmt.Errorf("key authorization for %s: %w", z.Identifier.Value, err)
		}
		if err := c.cfg.Solver.Present(ctx, z.Identifier.Value, chal.Token, keyAuth); err != nil {
			return fmt.Errorf("presenting the http-01 challenge for %s: %w", z.Identifier.Value, err)
		}
		todo = append(todo, pending{z, chal})
	}
	for _, p := range todo {
		if _, err := c.client.Accept(ctx, p.chal); err != nil {
			return fmt.Errorf("accepting the challenge for %s: %w", p.authz.Identifier.Value, classify(err))
		}
	}
	for _, p := range todo {
		if _, err := c.client.WaitAuthorization(ctx, p.authz.URI); err != nil {
			return fmt.Errorf("validating %s: %w", p.authz.Identifier.Value, classify(err))
		}
		log.Debug("acme authorization valid", "name", p.authz.Identifier.Value)
	}
	return nil
}

func names(ids []xacme.AuthzID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.Value
	}
	return strings.Join(s, ",")
}

// Renew issues anew: ACME has no renewal operation (ACME Renewal
// Information, RFC 9773, only says when to renew and is out of scope).
func (c *CA) Renew(ctx context.Context, req *ca.RenewRequest) (*ca.IssueResponse, error) {
	if req == nil {
		return nil, fmt.Errorf("acme: a renew request is required: %w", ca.ErrRejected)
	}
	return c.Issue(ctx, &ca.IssueRequest{CSR: req.CSR, Lifetime: req.Lifetime, Profile: req.Profile, OrderRef: req.OrderRef})
}

// Revoke revokes a certificate this account ordered, signed with the
// account key. Revoking a certificate already revoked is a no-op (the
// library treats alreadyRevoked as done), so a revocation job delivered
// twice succeeds twice. ACME carries a reason code but no remarks: those
// are logged and stay in the control plane's record.
func (c *CA) Revoke(ctx context.Context, req *ca.RevokeRequest) error {
	if req == nil || req.Certificate == nil {
		return fmt.Errorf("acme: revoke needs the certificate: %w", ca.ErrRejected)
	}
	if err := c.ensureAccount(ctx); err != nil {
		return err
	}
	if err := c.client.RevokeCert(ctx, nil, req.Certificate.Raw, xacme.CRLReasonCode(req.Reason)); err != nil {
		return fmt.Errorf("acme: revoke %s: %w", req.Certificate.SerialNumber.Text(16), classify(err))
	}
	c.log.Info("acme certificate revoked", "serial", req.Certificate.SerialNumber.Text(16), "reason", req.Reason, "remarks", req.Remarks)
	return nil
}

// Status is not supported: ACME has no status query. Revocation status is
// the CA's CRL (or OCSP, which Let's Encrypt has turned off), which the
// control plane checks for every certificate alike, whoever issued it.
func (c *CA) Status(ctx context.Context, req *ca.StatusRequest) (*ca.StatusResponse, error) {
	return nil, fmt.Errorf("acme: status: %w", ca.ErrNotSupported)
}

// rejectedTypes are the problem types (RFC 8555 6.7, after the
// "urn:ietf:params:acme:error:" prefix) that retrying will not fix.
var rejectedTypes = []string{
	"rejectedIdentifier", "unsupportedIdentifier", "badCSR", "unauthorized", "caa",
	"malformed", "externalAccountRequired", "invalidContact", "unsupportedContact",
	"badPublicKey", "badSignatureAlgorithm", "badRevocationReason", "userActionRequired",
	"accountDoesNotExist", "invalidProfile", "alreadyReplaced",
}

func problemType(t string) string {
	if i := strings.LastIndex(t, ":"); i >= 0 {
		return t[i+1:]
	}
	return t
}

func isACMEError(err error) bool {
	var e *xacme.Error
	return errors.As(err, &e)
}

// rejectedProblem reports whether an ACME problem (or one of its
// subproblems) is a refusal.
func rejectedProblem(e *xacme.Error) bool {
	if e == nil {
		return false
	}
	if slices.ContainsFunc(rejectedTypes, func(t string) bool { return strings.EqualFold(t, problemType(e.ProblemType)) }) {
		return true
	}
	for _, sp := range e.Subproblems {
		if slices.ContainsFunc(rejectedTypes, func(t string) bool { return strings.EqualFold(t, problemType(sp.Type)) }) {
			return true
		}
	}
	return false
}

// classify wraps err with ca.ErrRejected when the CA refused; server
// errors, rate limits, timeouts and network failures stay plain so that
// ordering retries them.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var (
		ae *xacme.Error
		ze *xacme.AuthorizationError
		oe *xacme.OrderError
	)
	rejected := false
	switch {
	case errors.As(err, &ze):
		for _, e := range ze.Errors {
			var ce *xacme.Error
			if errors.As(e, &ce) && rejectedProblem(ce) {
				rejected = true
			}
		}
	case errors.As(err, &oe):
		rejected = rejectedProblem(oe.Problem)
	case errors.As(err, &ae):
		rejected = rejectedProblem(ae)
	}
	if rejected {
		return fmt.Errorf("%w: %w", err, ca.ErrRejected)
	}
	return err
}
