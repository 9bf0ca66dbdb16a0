// Package netpath is how a bot reaches its control plane (B3): directly,
// through an HTTP proxy (HTTP CONNECT, basic auth; explicit or from
// HTTPS_PROXY/NO_PROXY), or through a connector bot's relay (--via), which
// forwards bytes only: TLS runs end to end between the bot and the control
// plane. The same dialer serves the bot's HTTP client and a relay's
// upstream connections, so relays chain.
package netpath

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// DialFunc dials like net.Dialer.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Settings are the inputs of a path: the control plane's URL, and the
// explicit proxy and relay (either may be empty).
type Settings struct {
	URL   string
	Proxy string
	Via   string
}

// Path is a resolved way to the control plane.
type Path struct {
	proxy *url.URL // explicit proxy, or nil
	via   string
	url   *url.URL
	// env is the proxy lookup used without an explicit proxy or relay.
	env    func(*http.Request) (*url.URL, error)
	dialer net.Dialer
}

// ValidateProxy checks a proxy URL without echoing it (it may hold a
// password).
func ValidateProxy(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return errors.New("not a proxy URL: want http://[user:password@]host:port")
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return errors.New("not a proxy URL: want http://[user:password@]host:port, nothing after the port")
	}
	return nil
}

// ValidateVia checks a relay address, HOST:PORT.
func ValidateVia(via string) error {
	if via == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(via)
	if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q is not HOST:PORT", via)
	}
	return nil
}

// New resolves settings into a Path. A relay (Via) wins over a proxy: the
// relay is a bot on the local network, reached directly.
func New(s Settings) (*Path, error) {
	p := &Path{via: s.Via, env: http.ProxyFromEnvironment, dialer: net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}}
	if s.URL != "" {
		u, err := url.Parse(s.URL)
		if err != nil {
			return nil, fmt.Errorf("control plane URL %q: %w", s.URL, err)
		}
		p.url = u
	}
	if err := ValidateProxy(s.Proxy); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	if err := ValidateVia(s.Via); err != nil {
		return nil, fmt.Errorf("via: %w", err)
	}
	if s.Proxy != "" {
		p.proxy, _ = url.Parse(s.Proxy)
	}
	return p, nil
}

// Redact shows a proxy URL with its password replaced by REDACTED.
func Redact(proxy string) string {
	u, err := url.Parse(proxy)
	if err != nil || u.Host == "" {
		return "(unparsable proxy URL)"
	}
	return redact(u)
}

func redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	if _, has := c.User.Password(); has {
		c.User = url.UserPassword(c.User.Username(), "REDACTED")
	}
	return c.String()
}

// Describe is the path as the bot reports it: "direct", "proxy" or
// "via HOST:PORT".
func (p *Path) Describe() string {
	switch {
	case p.via != "":
		return "via " + p.via
	case p.proxy != nil:
		return "proxy"
	}
	if p.url != nil {
		if u, err := p.proxyFor(p.url.Host); err == nil && u != nil {
			return "proxy"
		}
	}
	return "direct"
}

// ProxyRedacted is the proxy in use for the control plane (explicit or
// from the environment) with its password redacted, or "".
func (p *Path) ProxyRedacted() string {
	if p.via != "" || p.url == nil {
		return ""
	}
	u, err := p.proxyFor(p.url.Host)
	if err != nil || u == nil {
		return ""
	}
	return redact(u)
}

// proxyFor is the proxy to reach addr with: the explicit one, or the
// environment's (HTTPS_PROXY, NO_PROXY) for an https target.
func (p *Path) proxyFor(addr string) (*url.URL, error) {
	if p.proxy != nil {
		return p.proxy, nil
	}
	req := &http.Request{URL: &url.URL{Scheme: "https", Host: addr}, Header: http.Header{}}
	return p.env(req)
}

// ProxyAuthError is a proxy refusing the bot's credentials (407, or 401
// from some proxies).
type ProxyAuthError struct {
	// Proxy is the proxy URL, password redacted.
	Proxy  string
	Status string
}

func (e *ProxyAuthError) Error() string {
	return fmt.Sprintf("proxy %s refused the credentials (%s): check the user and password of --proxy", e.Proxy, e.Status)
}

// ProxyError is any other failure to tunnel through a proxy.
type ProxyError struct {
	Proxy string
	Err   error
}

func (e *ProxyError) Error() string { return fmt.Sprintf("proxy %s: %v", e.Proxy, e.Err) }
func (e *ProxyError) Unwrap() error { return e.Err }

// DialContext connects to addr along the path: to the relay instead of
// addr (the relay knows its one upstream), or through the proxy with
// CONNECT, or directly.
func (p *Path) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if p.via != "" {
		c, err := p.dialer.DialContext(ctx, network, p.via)
		if err != nil {
			return nil, fmt.Errorf("relay %s: %w", p.via, err)
		}
		return c, nil
	}
	pu, err := p.proxyFor(addr)
	if err != nil {
		return nil, err
	}
	if pu == nil {
		return p.dialer.DialContext(ctx, network, addr)
	}
	return p.connect(ctx, network, pu, addr)
}

// connect opens a CONNECT tunnel to addr through the proxy pu.
func (p *Path) connect(ctx context.Context, network string, pu *url.URL, addr string) (net.Conn, error) {
	name := redact(pu)
	proxyAddr := pu.Host
	if pu.Port() == "" {
		port := "80"
		if pu.Scheme == "https" {
			port = "443"
		}
		proxyAddr = net.JoinHostPort(pu.Hostname(), port)
	}
	c, err := p.dialer.DialContext(ctx, network, proxyAddr)
	if err != nil {
		return nil, &ProxyError{Proxy: name, Err: err}
	}
	if pu.Scheme == "https" {
		tc := tls.Client(c, &tls.Config{ServerName: pu.Hostname(), MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, &ProxyError{Proxy: name, Err: err}
		}
		c = tc
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: addr}, Host: addr, Header: http.Header{}}
	if u := pu.User; u != nil {
		pw, _ := u.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pw)))
	}
	if err := req.Write(c); err != nil {
		c.Close()
		return nil, &ProxyError{Proxy: name, Err: err}
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		c.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, &ProxyError{Proxy: name, Err: fmt.Errorf("CONNECT %s: %w", addr, err)}
	}
	// 407 is the standard answer; some proxies (tinyproxy) answer 401.
	if resp.StatusCode == http.StatusProxyAuthRequired || resp.StatusCode == http.StatusUnauthorized {
		c.Close()
		return nil, &ProxyAuthError{Proxy: name, Status: resp.Status}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		c.Close()
		// The body of a refusal is not read: the connection is gone.
		return nil, &ProxyError{Proxy: name, Err: fmt.Errorf("CONNECT %s answered %s", addr, resp.Status)}
	}
	if !stop() && ctx.Err() != nil {
		c.Close()
		return nil, ctx.Err()
	}
	c.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		return &bufConn{Conn: c, r: br}, nil
	}
	return c, nil
}

// bufConn is a conn whose first bytes were read ahead.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// Upstream is the HOST:PORT of a control-plane URL (port 443 if none):
// what a relay tunnels to.
func Upstream(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("control plane URL %q has no host", rawURL)
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}
