// Package ldap finds the certificates an LDAP directory holds (B4.3): the
// userCertificate, cACertificate, crossCertificatePair and
// userSMIMECertificate values of every entry below a base DN, OpenLDAP and
// Active Directory alike. It reads the directory in pages (RFC 2696) and
// emits each entry's certificates as the entry arrives, so a directory of any
// size is read with the memory of about one page.
package ldap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/emsign/bot/connectors"
	"github.com/emsign/bot/protocol"
)

// Defaults for Config and for target parameters.
const (
	DefaultDialTimeout = 10 * time.Second
	DefaultPageTimeout = 60 * time.Second
	DefaultPageSize    = 500
	// MaxReferralHops bounds how far referrals are chased (referrals=true):
	// a referral found on a referred server is one hop more.
	MaxReferralHops = 5
	// maxReferrals bounds the referred searches of one target.
	maxReferrals = 100
)

// Config tunes a Source.
type Config struct {
	// DialTimeout bounds connecting to a server: the TCP connect, the TLS
	// handshake (ldaps:// or StartTLS) and the bind.
	DialTimeout time.Duration
	// PageTimeout bounds the server's work on one page of results; the time
	// emit takes does not count.
	PageTimeout time.Duration
	// Progress, when set, counts entries as they are read (Probed).
	Progress *connectors.Progress
	Logger   *slog.Logger
	Now      func() time.Time
}

// Source is the LDAP discovery connector.
type Source struct {
	cfg Config
	log *slog.Logger
	// pageHook, when set (by tests), is called before each page request
	// with the page's number, counted from 1 on each server.
	pageHook func(page int)
}

// New validates cfg and fills in defaults.
func New(cfg Config) (*Source, error) {
	if cfg.DialTimeout < 0 || cfg.PageTimeout < 0 {
		return nil, errors.New("ldap: timeouts must not be negative")
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.PageTimeout == 0 {
		cfg.PageTimeout = DefaultPageTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Progress == nil {
		cfg.Progress = &connectors.Progress{}
	}
	return &Source{cfg: cfg, log: cfg.Logger}, nil
}

// certAttrs are the attributes read, as requested. Servers may answer with
// the ;binary option (userCertificate;binary): names are matched on the part
// before the first ';', case-insensitively.
var certAttrs = []string{"userCertificate", "cACertificate", "crossCertificatePair", "userSMIMECertificate"}

// certFilter selects the entries that hold any of certAttrs. Both spellings
// are given: a presence filter on the type matches its ;binary values on
// OpenLDAP, and a term a server does not know is Undefined, which an OR
// ignores. It does not restrict objectClass: Active Directory keeps
// certificates on user and computer objects alike.
const certFilter = "(|(userCertificate;binary=*)(userCertificate=*)(cACertificate;binary=*)(cACertificate=*)" +
	"(crossCertificatePair;binary=*)(crossCertificatePair=*)(userSMIMECertificate;binary=*)(userSMIMECertificate=*))"

// server is one directory server to search and how to reach it.
type server struct {
	scheme string // ldap or ldaps
	host   string // as written in the target or referral, for locations
	addr   string // host:port to dial
	// tls is nil for plain ldap:// without StartTLS.
	tls      *tls.Config
	startTLS bool
	bindDN   string
	password protocol.Secret
}

// query is what to search for on a server.
type query struct {
	base     string
	scope    int
	filter   string
	pageSize uint32
}

// job is one search to run: the target's, or a referral's.
type job struct {
	srv  server
	q    query
	hops int
	// from names the place the referral was found, for errors.
	from string
}

// Discover reads the certificates below the target's base DN.
func (s *Source) Discover(ctx context.Context, t protocol.Target, emit connectors.Emit) error {
	if t.Scheme != protocol.SchemeLDAP && t.Scheme != protocol.SchemeLDAPS {
		return fmt.Errorf("ldap: cannot scan %s targets", t.Scheme)
	}
	srv, q, err := s.plan(t)
	if err != nil {
		return err
	}
	pw := srv.password.Reveal()
	chase := t.Param(protocol.ParamReferrals) == "true"
	s.log.Debug("ldap: searching", "target", t.String(), "base", q.base, "filter", q.filter)

	queue := []job{{srv: srv, q: q}}
	visited := map[string]bool{jobKey(srv, q): true}
	chased := 0
	for len(queue) > 0 {
		j := queue[0]
		queue = queue[1:]
		refs, err := s.run(ctx, t.Scheme, j, emit)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ee emitError
			if errors.As(err, &ee) {
				return ee.err
			}
			if j.hops == 0 {
				return errors.New(scrub(err.Error(), pw))
			}
			// A referred server that fails is a problem at that place;
			// the rest of the target goes on.
			f := protocol.Finding{
				Location: protocol.Location{Scheme: j.srv.scheme, Host: j.srv.host, Path: "/" + j.q.base},
				Source:   t.Scheme,
				Error:    scrub(fmt.Sprintf("referral from %s: %v", j.from, err), pw),
				SeenAt:   s.cfg.Now(),
			}
			if err := emit(f); err != nil {
				return err
			}
		}
		if len(refs) == 0 {
			continue
		}
		if !chase {
			s.log.Info("ldap: referrals not followed (set referrals=true to follow them)",
				"target", t.String(), "count", len(refs), "first", refs[0])
			continue
		}
		for _, r := range refs {
			next, err := referralJob(r, j)
			if err != nil {
				s.log.Warn("ldap: referral not followed", "target", t.String(), "referral", r, "err", err)
				continue
			}
			key := jobKey(next.srv, next.q)
			switch {
			case visited[key]:
				continue
			case next.hops > MaxReferralHops:
				s.log.Warn("ldap: referral not followed: too many hops", "target", t.String(), "referral", r, "max", MaxReferralHops)
				continue
			case chased >= maxReferrals:
				s.log.Warn("ldap: referral not followed: too many referrals", "target", t.String(), "referral", r, "max", maxReferrals)
				continue
			}
			visited[key] = true
			chased++
			queue = append(queue, next)
		}
	}
	return nil
}

// plan turns the target into the first server and query.
func (s *Source) plan(t protocol.Target) (server, query, error) {
	srv := server{scheme: t.Scheme, host: t.Host, bindDN: t.Param(protocol.ParamBindDN)}
	if pws := t.Passwords(); len(pws) > 0 {
		// Only one password is tried: several wrong binds may lock the
		// account. The last one given wins, as for other parameters.
		srv.password = pws[len(pws)-1]
	}
	defPort := "389"
	if t.Scheme == protocol.SchemeLDAPS {
		defPort = "636"
	}
	srv.addr = withPort(t.Host, defPort)

	if t.Scheme == protocol.SchemeLDAPS || t.Param(protocol.ParamStartTLS) == "true" {
		cfg, err := tlsConfig(t.Param(protocol.ParamCAFile), t.Param(protocol.ParamInsecure) == "true")
		if err != nil {
			return server{}, query{}, err
		}
		cfg.ServerName = hostOnly(srv.addr)
		srv.tls = cfg
		srv.startTLS = t.Scheme == protocol.SchemeLDAP
	}

	q := query{base: t.BaseDN(), scope: goldap.ScopeWholeSubtree, filter: certFilter, pageSize: DefaultPageSize}
	switch t.Param(protocol.ParamScope) {
	case "one":
		q.scope = goldap.ScopeSingleLevel
	case "base":
		q.scope = goldap.ScopeBaseObject
	}
	if f := strings.TrimSpace(t.Param(protocol.ParamFilter)); f != "" {
		if !strings.HasPrefix(f, "(") {
			f = "(" + f + ")"
		}
		if _, err := goldap.CompileFilter(f); err != nil {
			return server{}, query{}, fmt.Errorf("ldap: filter %s: %v", f, err)
		}
		q.filter = "(&" + certFilter + f + ")"
	}
	if v := t.Param(protocol.ParamPageSize); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return server{}, query{}, fmt.Errorf("ldap: page_size %q: want a positive number", v)
		}
		q.pageSize = uint32(n)
	}
	return srv, q, nil
}

// tlsConfig verifies the server against caFile, or the system roots when it
// is empty, unless insecure.
func tlsConfig(caFile string, insecure bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ldap: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ldap: ca_file %s: no PEM certificate in it", caFile)
		}
		cfg.RootCAs = pool
	}
	if insecure {
		cfg.InsecureSkipVerify = true //nolint:gosec // asked for with insecure=true.
	}
	return cfg, nil
}

// emitError carries an error from emit, which ends the discovery as is.
type emitError struct{ err error }

func (e emitError) Error() string { return e.err.Error() }

// run connects to a job's server and searches it, page by page. It returns
// the referrals met.
func (s *Source) run(ctx context.Context, source string, j job, emit connectors.Emit) ([]string, error) {
	conn, closeConn, err := s.connect(ctx, j.srv)
	if err != nil {
		return nil, err
	}
	defer closeConn()

	paging := goldap.NewControlPaging(j.q.pageSize)
	req := goldap.NewSearchRequest(j.q.base, j.q.scope, goldap.NeverDerefAliases, 0, 0, false,
		j.q.filter, certAttrs, []goldap.Control{paging})
	var refs []string
	for page := 1; ; page++ {
		if s.pageHook != nil {
			s.pageHook(page)
		}
		cookie, err := s.page(ctx, conn, req, source, j, emit, &refs)
		if err != nil {
			return refs, err
		}
		if len(cookie) == 0 {
			return refs, nil
		}
		paging.SetCookie(cookie)
	}
}

var errPageTimeout = errors.New("page timeout")

// page runs one page of the search and emits its entries as they arrive. It
// returns the cookie for the next page, empty after the last.
func (s *Source) page(ctx context.Context, conn *goldap.Conn, req *goldap.SearchRequest, source string, j job,
	emit connectors.Emit, refs *[]string) ([]byte, error) {
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	clock := startClock(s.cfg.PageTimeout, func() { cancel(errPageTimeout) })
	defer clock.stop()

	res := conn.SearchAsync(pctx, req, 8)
	abandon := func() {
		cancel(context.Canceled)
		// The search goroutine may be blocked handing over a result: let
		// it see the cancellation and end.
		go func() {
			for res.Next() {
			}
		}()
	}
	var cookie []byte
	done := false
	for res.Next() {
		if ctx.Err() != nil {
			abandon()
			return nil, ctx.Err()
		}
		if e := res.Entry(); e != nil {
			s.cfg.Progress.Probed.Add(1)
			clock.pause()
			err := s.entry(ctx, e, source, j.srv, emit)
			clock.resume()
			if err != nil {
				abandon()
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, emitError{err}
			}
			continue
		}
		if r := res.Referral(); r != "" {
			*refs = appendRef(*refs, r)
			continue
		}
		// The SearchResultDone's controls.
		done = true
		if c, ok := goldap.FindControl(res.Controls(), goldap.ControlTypePaging).(*goldap.ControlPaging); ok {
			cookie = c.Cookie
		}
	}
	if err := res.Err(); err != nil {
		var le *goldap.Error
		if errors.As(err, &le) && le.ResultCode == goldap.LDAPResultReferral {
			// The base DN itself lives on another server.
			for _, r := range referralURIs(le) {
				*refs = appendRef(*refs, r)
			}
			return nil, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if context.Cause(pctx) == errPageTimeout {
			return nil, fmt.Errorf("ldap: search %s on %s: no answer within %v", req.BaseDN, j.srv.host, s.cfg.PageTimeout)
		}
		return nil, fmt.Errorf("ldap: search %s on %s: %s", req.BaseDN, j.srv.host, ldapErrText(err))
	}
	if !done && pctx.Err() != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("ldap: search %s on %s: no answer within %v", req.BaseDN, j.srv.host, s.cfg.PageTimeout)
	}
	return cookie, nil
}

func appendRef(refs []string, r string) []string {
	if len(refs) >= maxReferrals*4 {
		return refs
	}
	return append(refs, r)
}

// entry emits the certificates of one entry, one finding per certificate
// and one per value that does not read.
func (s *Source) entry(ctx context.Context, e *goldap.Entry, source string, srv server, emit connectors.Emit) error {
	// A server may return one attribute under two names (with and without
	// ;binary): a value is reported once.
	seen := map[string]bool{}
	for _, a := range e.Attributes {
		kind := attrKind(a.Name)
		if kind == kindNone {
			continue
		}
		loc := protocol.Location{Scheme: srv.scheme, Host: srv.host, Path: "/" + e.DN, Query: a.Name}
		for i, v := range a.ByteValues {
			key := strconv.Itoa(int(kind)) + "\x00" + string(v)
			if seen[key] {
				continue
			}
			seen[key] = true
			for _, c := range decodeValue(kind, i, v) {
				f := protocol.Finding{Location: loc.WithEntry(c.entry), Source: source, Format: c.format, SeenAt: s.cfg.Now()}
				if c.err != nil {
					f.Error = c.err.Error()
					s.log.Debug("ldap: value does not read", "location", f.Location.String(), "err", c.err)
				} else {
					f.Chain = [][]byte{c.der}
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err := emit(f); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// connect dials, starts TLS and binds. The connection is closed when ctx
// ends, which ends whatever waits on it.
func (s *Source) connect(ctx context.Context, srv server) (*goldap.Conn, func(), error) {
	dctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	d := net.Dialer{Timeout: s.cfg.DialTimeout}
	raw, err := d.DialContext(dctx, "tcp", srv.addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("ldap: connect to %s: %w", srv.addr, unwrapOpError(err))
	}
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	// Connecting, TLS and the bind share one deadline.
	deadline := time.Now().Add(s.cfg.DialTimeout)
	_ = raw.SetDeadline(deadline)
	var conn *goldap.Conn
	closeConn := func() {
		stop()
		_ = raw.Close()
		if conn != nil {
			_ = conn.Close()
		}
	}
	// fail names the step that failed: "TLS with HOST", "bind as DN".
	fail := func(step string, err error, text func(error) string) (*goldap.Conn, func(), error) {
		closeConn()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		if isTimeout(err) || !time.Now().Before(deadline) {
			return nil, nil, fmt.Errorf("ldap: %s: no answer within %v", step, s.cfg.DialTimeout)
		}
		return nil, nil, fmt.Errorf("ldap: %s: %s", step, text(err))
	}

	nc := raw
	if srv.tls != nil && !srv.startTLS {
		tc := tls.Client(raw, srv.tls)
		if err := tc.Handshake(); err != nil {
			return fail("TLS with "+srv.addr, err, tlsErrText)
		}
		nc = tc
	}
	conn = goldap.NewConn(nc, nc != raw)
	conn.Start()
	if srv.startTLS {
		if err := conn.StartTLS(srv.tls); err != nil {
			return fail("StartTLS with "+srv.addr, err, tlsErrText)
		}
	}
	if srv.bindDN != "" {
		step := "bind as " + srv.bindDN
		pw := srv.password.Reveal()
		if pw == "" {
			return fail(step, errors.New("empty password (that would be an unauthenticated bind)"), errText)
		}
		if err := conn.Bind(srv.bindDN, pw); err != nil {
			return fail(step, err, ldapErrText)
		}
	}
	_ = raw.SetDeadline(time.Time{})
	return conn, closeConn, nil
}

// ldapErrText renders an LDAP error as its result name and the server's
// message: "invalid credentials", "no such object (...)".
func ldapErrText(err error) string {
	var le *goldap.Error
	if !errors.As(err, &le) {
		return err.Error()
	}
	name := strings.ToLower(goldap.LDAPResultCodeMap[le.ResultCode])
	if name == "" {
		name = "result code " + strconv.Itoa(int(le.ResultCode))
	}
	if isTimeout(err) {
		return "no answer in time"
	}
	if le.Err != nil {
		if msg := strings.TrimSpace(le.Err.Error()); msg != "" {
			return name + " (" + msg + ")"
		}
	}
	return name
}

// tlsErrText explains a failed handshake, with the way out when the server
// is not trusted.
func tlsErrText(err error) string {
	msg := err.Error()
	var le *goldap.Error
	if errors.As(err, &le) && le.Err != nil {
		msg = le.Err.Error()
	}
	// goldap's StartTLS says "TLS handshake failed (REASON)".
	if r, ok := strings.CutPrefix(msg, "TLS handshake failed ("); ok {
		msg = strings.TrimSuffix(r, ")")
	}
	if strings.Contains(msg, "x509: ") {
		msg += " (trust its CA with ca_file=PATH, or skip verification with insecure=true)"
	}
	return msg
}

func errText(err error) string { return err.Error() }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || strings.Contains(err.Error(), "i/o timeout")
}

// unwrapOpError drops net.OpError's "dial tcp 1.2.3.4:389:" prefix, which
// repeats the address the message already names.
func unwrapOpError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// referralJob turns a referral URL (RFC 4516: ldap://host/dn??scope) into a
// search with the same credentials and TLS settings. A referral to plain
// ldap:// from a TLS connection uses StartTLS: the password never goes out
// in clear when the target did not allow it.
func referralJob(ref string, from job) (job, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return job{}, fmt.Errorf("not a URL: %w", err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != protocol.SchemeLDAP && scheme != protocol.SchemeLDAPS {
		return job{}, fmt.Errorf("scheme %q: want ldap or ldaps", u.Scheme)
	}
	if u.Host == "" {
		return job{}, errors.New("no host")
	}
	next := job{srv: from.srv, q: from.q, hops: from.hops + 1, from: from.srv.scheme + "://" + from.srv.host + "/" + from.q.base}
	next.srv.scheme = scheme
	next.srv.host = u.Host
	defPort := "389"
	if scheme == protocol.SchemeLDAPS {
		defPort = "636"
	}
	next.srv.addr = withPort(u.Host, defPort)
	secure := from.srv.tls != nil
	switch {
	case scheme == protocol.SchemeLDAPS || secure:
		base := from.srv.tls
		if base == nil {
			base, _ = tlsConfig("", false)
		}
		cfg := base.Clone()
		cfg.ServerName = hostOnly(next.srv.addr)
		next.srv.tls = cfg
		next.srv.startTLS = scheme == protocol.SchemeLDAP
	default:
		next.srv.tls = nil
		next.srv.startTLS = false
	}
	if dn := strings.TrimPrefix(u.Path, "/"); dn != "" {
		next.q.base = dn
	}
	// The query is attrs?scope?filter?extensions; only the scope is used:
	// the certificates are what is searched for, wherever they are.
	parts := strings.Split(u.RawQuery, "?")
	if len(parts) > 1 {
		switch strings.ToLower(parts[1]) {
		case "base":
			next.q.scope = goldap.ScopeBaseObject
		case "one":
			next.q.scope = goldap.ScopeSingleLevel
		case "sub":
			next.q.scope = goldap.ScopeWholeSubtree
		}
	}
	return next, nil
}

func jobKey(srv server, q query) string {
	return strings.ToLower(srv.scheme + "://" + srv.addr + "/" + q.base + "?" + strconv.Itoa(q.scope))
}

// referralURIs reads the referral field ([3] in LDAPResult) of a result.
func referralURIs(le *goldap.Error) []string {
	p := le.Packet
	if p == nil || len(p.Children) < 2 {
		return nil
	}
	var uris []string
	for _, c := range p.Children[1].Children {
		if c.ClassType != 0x80 || c.Tag != 3 { // context-specific [3]
			continue
		}
		for _, u := range c.Children {
			if s, ok := u.Value.(string); ok && s != "" {
				uris = append(uris, s)
			}
		}
	}
	return uris
}

// withPort adds the default port to a host that has none.
func withPort(host, port string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port)
}

func hostOnly(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// scrub removes a secret from a message, in case a server echoed it.
func scrub(msg, secret string) string {
	if secret == "" {
		return msg
	}
	return strings.ReplaceAll(msg, secret, "***")
}

// clock is a page's timeout that stops while emit runs.
type clock struct {
	t       *time.Timer
	left    time.Duration
	started time.Time
	fired   bool
}

func startClock(d time.Duration, f func()) *clock {
	return &clock{t: time.AfterFunc(d, f), left: d, started: time.Now()}
}

func (c *clock) pause() {
	if !c.t.Stop() {
		c.fired = true
		return
	}
	c.left -= time.Since(c.started)
}

func (c *clock) resume() {
	if c.fired {
		return
	}
	c.started = time.Now()
	c.t.Reset(max(c.left, 0))
}

func (c *clock) stop() { c.t.Stop() }
