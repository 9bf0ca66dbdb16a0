package deploy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// maxDialTimeout bounds one TLS handshake attempt.
const maxDialTimeout = 5 * time.Second

// verifyEndpoints checks, concurrently, that every endpoint serves the
// leaf with fingerprint fp, retrying each until VerifyTimeout: servers
// take a moment after a reload. It returns a summary, or an error naming
// every endpoint that did not get there and what it served instead.
func (d *Deployer) verifyEndpoints(ctx context.Context, fp string) (string, error) {
	return VerifyEndpoints(ctx, d.cfg.Verify, fp, d.cfg.VerifyTimeout, d.cfg.VerifyInterval)
}

// VerifyEndpoints checks, concurrently, that every endpoint serves the
// leaf with fingerprint fp (Fingerprint), retrying each every interval
// until timeout (zero: the defaults). Other targets (a remote host, a
// load balancer) use it for their verify step.
func VerifyEndpoints(ctx context.Context, eps []Endpoint, fp string, timeout, interval time.Duration) (string, error) {
	if timeout <= 0 {
		timeout = DefaultVerifyTimeout
	}
	if interval <= 0 {
		interval = DefaultVerifyInterval
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msgs := make([]string, len(eps))
	errs := make([]error, len(eps))
	var wg sync.WaitGroup
	for i, e := range eps {
		wg.Go(func() { msgs[i], errs[i] = verifyOne(ctx, e, fp, interval) })
	}
	wg.Wait()
	var bad []string
	for _, err := range errs {
		if err != nil {
			bad = append(bad, err.Error())
		}
	}
	if len(bad) > 0 {
		return "", errors.New(strings.Join(bad, "; "))
	}
	return strings.Join(msgs, "; "), nil
}

func verifyOne(ctx context.Context, e Endpoint, fp string, interval time.Duration) (string, error) {
	start := time.Now()
	var last string
	for attempt := 1; ; attempt++ {
		got, err := served(ctx, e)
		switch {
		case err != nil:
			last = err.Error()
		case got == fp:
			return fmt.Sprintf("%s serves %s (attempt %d, %s)", e, ShortFingerprint(fp), attempt, time.Since(start).Round(time.Millisecond)), nil
		default:
			last = "serves " + ShortFingerprint(got)
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("%s does not serve %s after %s and %d attempts: last %s", e, ShortFingerprint(fp), time.Since(start).Round(time.Millisecond), attempt, last)
		case <-t.C:
		}
	}
}

// served dials e and returns the fingerprint of the leaf it presents.
// Trust is not checked (InsecureSkipVerify): the question is which
// certificate is served, answered by comparing fingerprints.
func served(ctx context.Context, e Endpoint) (string, error) {
	host, _, err := splitHostPort(e.Address)
	if err != nil {
		return "", err
	}
	sni := e.ServerName
	if sni == "" && net.ParseIP(host) == nil {
		sni = host
	}
	timeout := maxDialTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dialer := &tls.Dialer{Config: &tls.Config{ServerName: sni, InsecureSkipVerify: true}} //nolint:gosec // fingerprint compared below
	conn, err := dialer.DialContext(dctx, "tcp", e.Address)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", errors.New("no certificate served")
	}
	return Fingerprint(certs[0]), nil
}

// String is the endpoint as messages show it.
func (e Endpoint) String() string {
	if e.ServerName == "" {
		return e.Address
	}
	return e.Address + " (SNI " + e.ServerName + ")"
}

func splitHostPort(addr string) (string, string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "" || port == "" {
		return "", "", fmt.Errorf("address %q needs a host and a port", addr)
	}
	return host, port, nil
}
