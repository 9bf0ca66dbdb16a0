// Package tls finds the certificates that TLS endpoints serve. It sweeps
// hosts and ports with a pool of workers: a TCP connect first, and a TLS
// handshake only on ports that accepted, so closed and filtered ports cost at
// most one connect timeout and no output.
package tls

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	ctls "crypto/tls"

	"github.com/emsign/bot/connectors"
	"github.com/emsign/bot/protocol"
)

// Defaults for Config.
const (
	DefaultThreads          = 512
	DefaultConnectTimeout   = 3 * time.Second
	DefaultHandshakeTimeout = 5 * time.Second
)

// Config tunes a Source.
type Config struct {
	// Threads is the number of endpoints probed at once.
	Threads int
	// ConnectTimeout bounds the TCP connect, HandshakeTimeout the TLS
	// handshake that follows; both are deadlines on the socket.
	ConnectTimeout   time.Duration
	HandshakeTimeout time.Duration
	// PostQuantum offers X25519MLKEM768 so that servers that support it can
	// choose it. It costs each handshake an ML-KEM key generation, so a
	// sweep is faster without it.
	PostQuantum bool
	// Progress, when set, counts endpoints as they are probed.
	Progress *connectors.Progress
	Logger   *slog.Logger
	Now      func() time.Time
}

// Source is the TLS discovery connector.
type Source struct {
	cfg    Config
	base   *ctls.Config
	dialer net.Dialer
	log    *slog.Logger
}

// New validates cfg and fills in defaults.
func New(cfg Config) (*Source, error) {
	if cfg.Threads < 0 || cfg.ConnectTimeout < 0 || cfg.HandshakeTimeout < 0 {
		return nil, errors.New("tls: threads and timeouts must not be negative")
	}
	if cfg.Threads == 0 {
		cfg.Threads = DefaultThreads
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
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
	return &Source{
		cfg:    cfg,
		base:   clientConfig(cfg.PostQuantum),
		dialer: net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: -1},
		log:    cfg.Logger,
	}, nil
}

// clientConfig accepts whatever the server presents: the point is to see the
// certificate, not to trust it. It offers every version and cipher suite Go
// has, old ones included, so that legacy servers answer too.
func clientConfig(postQuantum bool) *ctls.Config {
	var suites []uint16
	for _, s := range ctls.CipherSuites() {
		suites = append(suites, s.ID)
	}
	for _, s := range ctls.InsecureCipherSuites() {
		suites = append(suites, s.ID)
	}
	groups := []ctls.CurveID{ctls.X25519, ctls.CurveP256, ctls.CurveP384, ctls.CurveP521}
	if postQuantum {
		groups = append([]ctls.CurveID{ctls.X25519MLKEM768}, groups...)
	}
	return &ctls.Config{
		InsecureSkipVerify: true, //nolint:gosec // discovery reads certificates, it does not trust them.
		MinVersion:         ctls.VersionTLS10,
		CipherSuites:       suites,
		CurvePreferences:   groups,
		NextProtos:         []string{"h2", "http/1.1"},
	}
}

// probe is one endpoint to try, with what the finding needs to name it.
type probe struct {
	ep  protocol.Endpoint
	sni string
	// single is true when the target names exactly one endpoint: a refused
	// connect is then worth reporting, since the user asked for that port.
	single bool
}

// Discover sweeps the target's endpoints.
func (s *Source) Discover(ctx context.Context, t protocol.Target, emit connectors.Emit) error {
	if t.Scheme != protocol.SchemeTLS {
		return fmt.Errorf("tls: cannot scan %s targets", t.Scheme)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	sni := t.Param(protocol.ParamSNI)
	single := t.Endpoints.Count() == 1
	probes := make(chan probe, s.cfg.Threads)
	findings := make(chan protocol.Finding, s.cfg.Threads)
	resolver := newResolver()

	var workers sync.WaitGroup
	for range min(uint64(s.cfg.Threads), max(t.Endpoints.Count(), 1)) {
		workers.Go(func() {
			for p := range probes {
				if f, ok := s.probe(ctx, resolver, p); ok {
					select {
					case findings <- f:
					case <-ctx.Done():
					}
				}
			}
		})
	}
	go func() {
		defer close(probes)
		for ep := range t.Endpoints.All() {
			select {
			case probes <- probe{ep: ep, sni: sni, single: single}:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		workers.Wait()
		close(findings)
	}()

	var emitErr error
	for f := range findings {
		if emitErr != nil {
			continue
		}
		if err := emit(f); err != nil {
			emitErr = err
			cancel()
		}
	}
	if emitErr != nil {
		return emitErr
	}
	return ctx.Err()
}

// probe connects to one endpoint and, if it accepts, shakes hands. ok is
// false when there is nothing to report (a closed or filtered port).
func (s *Source) probe(ctx context.Context, r *resolver, p probe) (protocol.Finding, bool) {
	if ctx.Err() != nil {
		return protocol.Finding{}, false
	}
	s.cfg.Progress.Probed.Add(1)
	loc := location(p)
	fail := func(err error) (protocol.Finding, bool) {
		return protocol.Finding{Location: loc, Source: protocol.SchemeTLS, Format: protocol.FormatTLS, Error: err.Error(), SeenAt: s.cfg.Now()}, true
	}

	addr := p.ep.Addr
	serverName := p.sni
	if !addr.IsValid() {
		var err error
		var first bool
		if addr, first, err = r.lookup(ctx, p.ep.Host); err != nil {
			if ctx.Err() != nil || !first {
				// One error line per host name, not one per port.
				return protocol.Finding{}, false
			}
			loc.Host = p.ep.Host
			return fail(err)
		}
		if serverName == "" {
			serverName = p.ep.Host
		}
	}
	conn, err := s.dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(addr, p.ep.Port).String())
	if err != nil {
		if p.single && ctx.Err() == nil {
			return fail(fmt.Errorf("connect: %w", unwrapOpError(err)))
		}
		return protocol.Finding{}, false
	}
	defer conn.Close()
	s.cfg.Progress.Open.Add(1)

	cfg := s.base
	if serverName != "" {
		cfg = s.base.Clone()
		cfg.ServerName = serverName
	}
	_ = conn.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	// A cancelled scan ends the handshake by moving the deadline to now.
	// context.AfterFunc costs nothing until it fires, where HandshakeContext
	// starts a goroutine for every handshake.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	tc := ctls.Client(conn, cfg)
	if err := tc.Handshake(); err != nil {
		if ctx.Err() != nil {
			return protocol.Finding{}, false
		}
		return fail(handshakeError(err))
	}
	st := tc.ConnectionState()
	chain := make([][]byte, len(st.PeerCertificates))
	for i, c := range st.PeerCertificates {
		chain[i] = c.Raw
	}
	if len(chain) == 0 {
		return fail(errors.New("tls handshake: the server sent no certificate"))
	}
	return protocol.Finding{
		Location: loc,
		Source:   protocol.SchemeTLS,
		Format:   protocol.FormatTLS,
		Chain:    chain,
		TLS: &protocol.TLSInfo{
			Version:     ctls.VersionName(st.Version),
			CipherSuite: ctls.CipherSuiteName(st.CipherSuite),
			Group:       groupName(st.CurveID),
			PostQuantum: st.CurveID == ctls.X25519MLKEM768,
			SNI:         serverName,
			ALPN:        st.NegotiatedProtocol,
		},
		SeenAt: s.cfg.Now(),
	}, true
}

// location names an endpoint: the host as the target wrote it, and the SNI
// only when it was given separately from the host.
func location(p probe) protocol.Location {
	l := protocol.Location{Scheme: protocol.SchemeTLS, Host: p.ep.HostPort()}
	if p.sni != "" {
		l.Query = "sni=" + p.sni
	}
	return l
}

// groupName names a key-exchange group the way people write it: X25519,
// P-256, X25519MLKEM768.
func groupName(id ctls.CurveID) string {
	switch id {
	case 0:
		return ""
	case ctls.CurveP256:
		return "P-256"
	case ctls.CurveP384:
		return "P-384"
	case ctls.CurveP521:
		return "P-521"
	}
	return id.String()
}

// handshakeError says in words what went wrong, for the error line.
func handshakeError(err error) error {
	var netErr net.Error
	switch {
	case errors.As(err, &netErr) && netErr.Timeout():
		return errors.New("tls handshake: timed out (the port accepted but the server did not complete a handshake)")
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return errors.New("tls handshake: the server closed the connection (not TLS, or it refused our hello)")
	case errors.As(err, new(ctls.RecordHeaderError)):
		return errors.New("tls handshake: the server does not speak TLS on this port")
	}
	return fmt.Errorf("tls handshake: %w", unwrapOpError(err))
}

func unwrapOpError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// resolver looks each host name up once per scan, however many ports the
// target gives it.
type resolver struct {
	mu      sync.Mutex
	entries map[string]*lookup
}

type lookup struct {
	once     sync.Once
	addr     netip.Addr
	err      error
	reported atomic.Bool
}

func newResolver() *resolver { return &resolver{entries: map[string]*lookup{}} }

// lookup resolves host. first is true for the one caller that should report
// a failure.
func (r *resolver) lookup(ctx context.Context, host string) (addr netip.Addr, first bool, err error) {
	r.mu.Lock()
	e, ok := r.entries[host]
	if !ok {
		e = &lookup{}
		r.entries[host] = e
	}
	r.mu.Unlock()
	e.once.Do(func() {
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		switch {
		case err != nil:
			e.err = fmt.Errorf("resolve %s: %w", host, unwrapDNSError(err))
		case len(addrs) == 0:
			e.err = fmt.Errorf("resolve %s: no address", host)
		default:
			e.addr = addrs[0].Unmap()
			for _, a := range addrs { // prefer IPv4: it works on more networks
				if a.Unmap().Is4() {
					e.addr = a.Unmap()
					break
				}
			}
		}
	})
	if e.err != nil {
		return netip.Addr{}, !e.reported.Swap(true), e.err
	}
	return e.addr, false, nil
}

func unwrapDNSError(err error) error {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		if dns.IsNotFound {
			return errors.New("no such host")
		}
		return errors.New(dns.Err)
	}
	return err
}
