// Package relay is a connector bot's relay (B3): it accepts TCP
// connections from other bots and pipes each, byte for byte, to its one
// upstream (the control plane of its own activation), dialed along its own
// path (direct, proxy or its own relay, so relays chain). It never
// terminates TLS and never tunnels anywhere else: it is not an open proxy.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Config.
const (
	DefaultMaxTunnels  = 256
	DefaultIdleTimeout = 10 * time.Minute
	DefaultMaxDuration = 24 * time.Hour
	DefaultDialTimeout = 30 * time.Second
)

// Config configures a relay.
type Config struct {
	// Listen is the address to accept bots on, such as ":7443".
	Listen string
	// Upstream is the one HOST:PORT every tunnel goes to.
	Upstream string
	// Dial dials the upstream (netpath); nil dials directly.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxTunnels bounds the concurrent tunnels; a connection beyond it is
	// closed at once. 0 means DefaultMaxTunnels.
	MaxTunnels int
	// IdleTimeout closes a tunnel with no byte either way for that long;
	// MaxDuration closes any tunnel that old. 0 means the defaults.
	IdleTimeout time.Duration
	MaxDuration time.Duration
	// DialTimeout bounds dialing the upstream; 0 means the default.
	DialTimeout time.Duration
	Logger      *slog.Logger
}

// Relay is a listening relay.
type Relay struct {
	cfg    Config
	ln     net.Listener
	log    *slog.Logger
	slots  chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// New validates cfg and starts listening (Serve accepts).
func New(cfg Config) (*Relay, error) {
	if cfg.Upstream == "" {
		return nil, errors.New("relay: no upstream")
	}
	if _, _, err := net.SplitHostPort(cfg.Upstream); err != nil {
		return nil, fmt.Errorf("relay: upstream %q: %w", cfg.Upstream, err)
	}
	if cfg.MaxTunnels < 0 || cfg.IdleTimeout < 0 || cfg.MaxDuration < 0 || cfg.DialTimeout < 0 {
		return nil, errors.New("relay: negative limit")
	}
	if cfg.MaxTunnels == 0 {
		cfg.MaxTunnels = DefaultMaxTunnels
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxDuration == 0 {
		cfg.MaxDuration = DefaultMaxDuration
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.Dial == nil {
		d := &net.Dialer{}
		cfg.Dial = d.DialContext
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("relay: listen on %s: %w", cfg.Listen, err)
	}
	return &Relay{cfg: cfg, ln: ln, log: cfg.Logger, slots: make(chan struct{}, cfg.MaxTunnels), conns: map[net.Conn]struct{}{}}, nil
}

// Addr is the address the relay listens on.
func (r *Relay) Addr() net.Addr { return r.ln.Addr() }

// Serve accepts bots until ctx ends, then stops accepting, closes the open
// tunnels and returns once they are gone (graceful stop: the bots retry).
func (r *Relay) Serve(ctx context.Context) error {
	r.log.Info("relay listening", "addr", r.ln.Addr().String(), "upstream", r.cfg.Upstream, "max_tunnels", r.cfg.MaxTunnels)
	stop := context.AfterFunc(ctx, func() { r.Close() })
	defer stop()
	var err error
	for {
		var c net.Conn
		c, err = r.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			break
		}
		select {
		case r.slots <- struct{}{}:
		default:
			r.log.Warn("relay: tunnel refused, at the limit", "source", c.RemoteAddr().String(), "max_tunnels", r.cfg.MaxTunnels)
			c.Close()
			continue
		}
		if !r.track(c) {
			<-r.slots
			c.Close()
			break
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer func() { <-r.slots }()
			r.tunnel(ctx, c)
		}()
	}
	r.Close()
	r.wg.Wait()
	if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
		r.log.Info("relay stopped", "addr", r.ln.Addr().String())
		return nil
	}
	return fmt.Errorf("relay: accept: %w", err)
}

// Close stops the listener and every open tunnel.
func (r *Relay) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.ln.Close()
	for c := range r.conns {
		c.Close()
	}
	return err
}

func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

// tunnel pipes one bot's connection to the upstream and back.
func (r *Relay) tunnel(ctx context.Context, down net.Conn) {
	start := time.Now()
	src := down.RemoteAddr().String()
	defer r.untrack(down)
	defer down.Close()
	dctx, cancel := context.WithTimeout(ctx, r.cfg.DialTimeout)
	up, err := r.cfg.Dial(dctx, "tcp", r.cfg.Upstream)
	cancel()
	if err != nil {
		r.log.Warn("relay: upstream unreachable, tunnel closed", "source", src, "upstream", r.cfg.Upstream, "err", err)
		return
	}
	if !r.track(up) {
		up.Close()
		return
	}
	defer r.untrack(up)
	defer up.Close()
	overall := time.AfterFunc(r.cfg.MaxDuration, func() { down.Close(); up.Close() })
	defer overall.Stop()

	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var in, out int64
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); out = r.pipe(up, down, &last) }()
	go func() { defer wg.Done(); in = r.pipe(down, up, &last) }()
	wg.Wait()
	r.log.Info("relay: tunnel closed", "source", src, "upstream", r.cfg.Upstream,
		"bytes_up", out, "bytes_down", in, "duration", time.Since(start).Round(time.Millisecond).String())
}

// pipe copies src to dst until either fails or both are idle for
// IdleTimeout; it then closes both so the other direction ends too.
func (r *Relay) pipe(dst, src net.Conn, last *atomic.Int64) int64 {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	var n int64
	for {
		src.SetReadDeadline(time.Now().Add(r.cfg.IdleTimeout))
		k, err := src.Read(buf)
		if k > 0 {
			last.Store(time.Now().UnixNano())
			dst.SetWriteDeadline(time.Now().Add(r.cfg.IdleTimeout))
			w, werr := dst.Write(buf[:k])
			n += int64(w)
			if werr != nil {
				return n
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, last.Load())) < r.cfg.IdleTimeout {
				continue // the other direction is busy
			}
			return n // io.EOF or a failure: either way the tunnel ends
		}
	}
}
