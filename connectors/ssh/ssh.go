// Package ssh is the SSH discovery connector: it logs in to a remote host,
// lists the files under the target's paths with find, reads the candidates
// with a bounded head -c, and parses them with the files package. It also
// reports the SSH material of the host: the host key the server presented,
// the authorized_keys entries it can read and the trusted user CA keys named
// in /etc/ssh/sshd_config.
package ssh

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/emsign/bot/connectors"
	"github.com/emsign/bot/connectors/files"
	"github.com/emsign/bot/protocol"
)

// Defaults for Config.
const (
	DefaultDialTimeout    = 10 * time.Second
	DefaultCommandTimeout = 10 * time.Minute
	DefaultReadTimeout    = time.Minute
	// DefaultMaxSize is the largest remote file read (max_size overrides it).
	DefaultMaxSize int64 = 10 << 20
	// maxListing bounds what find may print (NUL-separated paths).
	maxListing = 64 << 20
	// maxStderr bounds what a command may print on stderr.
	maxStderr = 1 << 20
)

// Source is the ssh value of protocol.Finding.Source.
const Source = protocol.SchemeSSH

// Config tunes a Connector.
type Config struct {
	// Passwords are tried on keystores and encrypted keys after the
	// target's own (the CLI's --password).
	Passwords []protocol.Secret
	// Logger receives debug notes; nil discards them. Secrets never reach it.
	Logger *slog.Logger
	// Now stamps findings; nil means time.Now.
	Now func() time.Time
	// DialTimeout bounds the TCP connect and the SSH handshake.
	DialTimeout time.Duration
	// CommandTimeout bounds one find; ReadTimeout one file read.
	CommandTimeout time.Duration
	ReadTimeout    time.Duration
}

// Connector is the SSH discovery connector.
type Connector struct {
	cfg Config
	log *slog.Logger
}

var _ connectors.Source = (*Connector)(nil)

// New validates cfg and fills in defaults.
func New(cfg Config) (*Connector, error) {
	if cfg.DialTimeout < 0 || cfg.CommandTimeout < 0 || cfg.ReadTimeout < 0 {
		return nil, errors.New("ssh: timeouts must not be negative")
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Connector{cfg: cfg, log: cfg.Logger}
	if c.log == nil {
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c, nil
}

// scan is one Discover call.
type scan struct {
	c       *Connector
	ctx     context.Context
	t       protocol.Target
	client  *ssh.Client
	emit    connectors.Emit
	host    string // Location.Host: t.Host, without the user
	sudo    bool
	maxSize int64
	pws     []protocol.Secret
	now     time.Time
}

// Discover logs in to t and streams what it finds. A failure to connect or
// log in is returned; problems at one path or file are error findings.
func (c *Connector) Discover(ctx context.Context, t protocol.Target, emit connectors.Emit) error {
	if t.Scheme != protocol.SchemeSSH {
		return fmt.Errorf("ssh: cannot scan %s targets", t.Scheme)
	}
	maxSize := DefaultMaxSize
	if v := t.Param(protocol.ParamMaxSize); v != "" {
		n, err := protocol.ParseSize(v)
		if err != nil {
			return fmt.Errorf("ssh: max_size: %w", err)
		}
		maxSize = n
	}
	client, hostKey, err := c.connect(ctx, t)
	if err != nil {
		return err
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
			client.Close()
		case <-done:
		}
	}()
	defer func() {
		close(done)
		wg.Wait()
		client.Close()
	}()
	s := &scan{
		c: c, ctx: ctx, t: t, client: client, emit: emit, host: t.Host,
		sudo: t.Param(protocol.ParamSudo) == "true", maxSize: maxSize,
		pws: append(append([]protocol.Secret(nil), t.Passwords()...), c.cfg.Passwords...),
		now: c.cfg.Now(),
	}
	if err := s.hostKey(hostKey); err != nil {
		return err
	}
	for _, p := range t.SSHPaths() {
		if err := s.path(p); err != nil {
			return err
		}
	}
	if err := s.authorizedKeys(); err != nil {
		return err
	}
	if err := s.trustedCAs(); err != nil {
		return err
	}
	if err := s.hostKeyFiles(); err != nil {
		return err
	}
	return ctx.Err()
}

// hostAddr is host:port with the default port 22.
func hostAddr(h string) string {
	if _, _, err := net.SplitHostPort(h); err == nil {
		return h
	}
	return net.JoinHostPort(strings.Trim(h, "[]"), "22")
}

// mismatchError is a host key that is not the one expected.
type mismatchError struct {
	expected  string
	presented []ssh.PublicKey
}

func (e *mismatchError) Error() string {
	var got []string
	for _, k := range e.presented {
		got = append(got, fmt.Sprintf("%s (%s)", ssh.FingerprintSHA256(k), k.Type()))
	}
	return fmt.Sprintf("host key mismatch: expected %s, the server presented %s; refusing to log in", e.expected, strings.Join(got, ", "))
}

// keyFormat is the key type a host key algorithm signs with.
func keyFormat(algo string) string {
	switch algo {
	case ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512:
		return ssh.KeyAlgoRSA
	case ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSASHA512v01:
		return ssh.CertAlgoRSAv01
	}
	return algo
}

// connect dials and logs in; it returns the host key the server presented.
// A server has several host keys and the client picks one by preference;
// when that one is not the pinned or known one, the handshake is tried
// again without its type, as OpenSSH does with the types known_hosts holds.
func (c *Connector) connect(ctx context.Context, t protocol.Target) (*ssh.Client, ssh.PublicKey, error) {
	auth, err := authMethods(t)
	if err != nil {
		return nil, nil, err
	}
	check, err := hostKeyCheck(t)
	if err != nil {
		return nil, nil, err
	}
	var algos []string
	var mismatch *mismatchError
	for {
		client, key, err := c.dialOnce(ctx, t, auth, check, algos)
		var m *mismatchError
		if err != nil && mismatch != nil && key == nil && ctx.Err() == nil {
			// No host key was presented: no type is left that the server
			// has, every one it has was presented and refused.
			c.log.Debug("ssh: retry with other host key types", "host", t.Host, "err", err)
			return nil, nil, fmt.Errorf("ssh %s@%s: %w", t.User, t.Host, mismatch)
		}
		if err == nil || key == nil || !errors.As(err, &m) {
			return client, key, err
		}
		if mismatch == nil {
			mismatch = &mismatchError{expected: m.expected}
			algos = ssh.SupportedAlgorithms().HostKeys
		}
		mismatch.presented = append(mismatch.presented, key)
		var rest []string
		for _, a := range algos {
			if keyFormat(a) != key.Type() {
				rest = append(rest, a)
			}
		}
		if len(rest) == len(algos) || len(rest) == 0 {
			return nil, nil, fmt.Errorf("ssh %s@%s: %w", t.User, t.Host, mismatch)
		}
		algos = rest
		c.log.Debug("ssh: host key not the expected one, trying other key types", "host", t.Host, "presented", ssh.FingerprintSHA256(key))
	}
}

// dialOnce dials, verifies the host key and logs in, offering algos as
// host key algorithms (nil: the defaults).
func (c *Connector) dialOnce(ctx context.Context, t protocol.Target, auth []ssh.AuthMethod, check ssh.HostKeyCallback, algos []string) (*ssh.Client, ssh.PublicKey, error) {
	var presented ssh.PublicKey
	cfg := &ssh.ClientConfig{
		User: t.User,
		Auth: auth,
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			presented = key
			return check(hostname, remote, key)
		},
		HostKeyAlgorithms: algos,
		Timeout:           c.cfg.DialTimeout,
	}
	addr := hostAddr(t.Host)
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("ssh %s: %w", t.Host, err)
	}
	// The handshake and login are bounded like the connect; cancelling ctx
	// closes the socket.
	_ = conn.SetDeadline(time.Now().Add(c.cfg.DialTimeout))
	stop := context.AfterFunc(dctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	stop()
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, presented, fmt.Errorf("ssh %s@%s: %w", t.User, t.Host, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), presented, nil
}

// authMethods builds the login: a key file (with its passphrase) and/or
// the password. Error messages never hold a secret.
func authMethods(t protocol.Target) ([]ssh.AuthMethod, error) {
	var out []ssh.AuthMethod
	if kf := t.Param(protocol.ParamKeyFile); kf != "" {
		pem, err := os.ReadFile(kf)
		if err != nil {
			return nil, fmt.Errorf("ssh: key_file: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(pem)
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			pp := t.Secrets[protocol.ParamPassphrase]
			if len(pp) == 0 {
				return nil, fmt.Errorf("ssh: key_file %s is encrypted: give passphrase=...", kf)
			}
			signer, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(pp[len(pp)-1].Reveal()))
			if errors.Is(err, x509.IncorrectPasswordError) {
				return nil, fmt.Errorf("ssh: key_file %s: wrong passphrase", kf)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("ssh: key_file %s: %v", kf, err)
		}
		out = append(out, ssh.PublicKeys(signer))
	}
	if pws := t.Passwords(); len(pws) > 0 {
		pw := pws[0].Reveal()
		out = append(out, ssh.Password(pw),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = pw
				}
				return answers, nil
			}))
	}
	if len(out) == 0 {
		return nil, errors.New("ssh: give password=... or key_file=...")
	}
	return out, nil
}

// hostKeyCheck verifies the server: a host_key pin, a known_hosts file, or
// nothing when insecure_host_key=true was asked for.
func hostKeyCheck(t protocol.Target) (ssh.HostKeyCallback, error) {
	pin := t.Param(protocol.ParamHostKey)
	kh := t.Param(protocol.ParamKnownHosts)
	var checks []ssh.HostKeyCallback
	if pin != "" {
		checks = append(checks, func(_ string, _ net.Addr, key ssh.PublicKey) error {
			got := ssh.FingerprintSHA256(key)
			if got == pin {
				return nil
			}
			if cert, ok := key.(*ssh.Certificate); ok && ssh.FingerprintSHA256(cert.Key) == pin {
				return nil
			}
			return &mismatchError{expected: pin, presented: []ssh.PublicKey{key}}
		})
	}
	if kh != "" {
		cb, err := knownhosts.New(kh)
		if err != nil {
			return nil, fmt.Errorf("ssh: known_hosts: %w", err)
		}
		checks = append(checks, func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			err := cb(hostname, remote, key)
			if cert, ok := key.(*ssh.Certificate); ok && err != nil {
				// A host certificate whose CA known_hosts does not trust
				// passes on its plain key, as with OpenSSH.
				if cb(hostname, remote, cert.Key) == nil {
					return nil
				}
			}
			var ke *knownhosts.KeyError
			if errors.As(err, &ke) {
				if len(ke.Want) == 0 {
					return fmt.Errorf("host %s is not in %s (it presented %s %s)", hostname, kh, key.Type(), ssh.FingerprintSHA256(key))
				}
				var want []string
				for _, w := range ke.Want {
					want = append(want, fmt.Sprintf("%s (%s:%d)", ssh.FingerprintSHA256(w.Key), w.Filename, w.Line))
				}
				return &mismatchError{expected: strings.Join(want, " or "), presented: []ssh.PublicKey{key}}
			}
			return err
		})
	}
	if len(checks) == 0 {
		if t.Param(protocol.ParamInsecureHostKey) != "true" {
			return nil, errors.New("ssh: the host key must be checked: give known_hosts=FILE or host_key=SHA256:..., or insecure_host_key=true")
		}
		return ssh.InsecureIgnoreHostKey(), nil //nolint:gosec // asked for
	}
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		for _, c := range checks {
			if err := c(hostname, remote, key); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

func (s *scan) finding(loc protocol.Location) protocol.Finding {
	loc.Scheme = protocol.SchemeSSH
	loc.Host = s.host
	return protocol.Finding{Location: loc, Source: Source, SeenAt: s.now}
}

func (s *scan) problem(p, msg string) error {
	f := s.finding(protocol.Location{Path: p})
	f.Error = msg
	return s.emit(f)
}

// keyInfo describes an SSH public key (or certificate).
func keyInfo(key ssh.PublicKey) *protocol.KeyInfo {
	k := &protocol.KeyInfo{Algorithm: key.Type(), Class: protocol.KeyClassPublic}
	base := key
	if cert, ok := key.(*ssh.Certificate); ok {
		base = cert.Key
	}
	if cp, ok := base.(ssh.CryptoPublicKey); ok {
		switch pk := cp.CryptoPublicKey().(type) {
		case *rsa.PublicKey:
			k.Bits = pk.N.BitLen()
		case *ecdsa.PublicKey:
			k.Bits = pk.Curve.Params().BitSize
		default:
			if strings.Contains(base.Type(), "ed25519") {
				k.Bits = 256
			}
		}
	}
	return k
}

// certLabel describes an SSH certificate: its principals and validity.
func certLabel(cert *ssh.Certificate) string {
	kind := "user"
	if cert.CertType == ssh.HostCert {
		kind = "host"
	}
	valid := func(v uint64) string {
		if v == ssh.CertTimeInfinity {
			return "forever"
		}
		return time.Unix(int64(v), 0).UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("%s certificate key_id=%q for key %s principals=%s valid %s..%s signed by %s", kind, cert.KeyId,
		ssh.FingerprintSHA256(cert.Key), strings.Join(cert.ValidPrincipals, ","), valid(cert.ValidAfter), valid(cert.ValidBefore),
		ssh.FingerprintSHA256(cert.SignatureKey))
}

func keyAttrs(key ssh.PublicKey) map[string]string {
	a := map[string]string{"fingerprint": ssh.FingerprintSHA256(key)}
	if cert, ok := key.(*ssh.Certificate); ok {
		a["key_fingerprint"] = ssh.FingerprintSHA256(cert.Key)
		a["ca_fingerprint"] = ssh.FingerprintSHA256(cert.SignatureKey)
		a["principals"] = strings.Join(cert.ValidPrincipals, ",")
		a["valid_after"] = strconv.FormatUint(cert.ValidAfter, 10)
		a["valid_before"] = strconv.FormatUint(cert.ValidBefore, 10)
	}
	return a
}

// hostKey reports the key the server presented in the handshake.
func (s *scan) hostKey(key ssh.PublicKey) error {
	if key == nil {
		return nil
	}
	f := s.finding(protocol.Location{Entry: "host-key:" + key.Type()})
	f.Key = keyInfo(key)
	f.Key.Label = "host key " + ssh.FingerprintSHA256(key)
	if cert, ok := key.(*ssh.Certificate); ok {
		f.Key.Label += "; " + certLabel(cert)
	}
	f.Attributes = keyAttrs(key)
	return s.emit(f)
}

// quote makes s one shell word.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// command wraps argv for the remote shell: C locale, and sudo -n when asked.
func (s *scan) command(argv ...string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = quote(a)
	}
	cmd := "env LC_ALL=C " + strings.Join(q, " ")
	if s.sudo {
		cmd = "sudo -n " + cmd
	}
	return cmd
}

// limitWriter keeps up to max bytes and notes what went past.
type limitWriter struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (w *limitWriter) Write(p []byte) (int, error) {
	if room := w.max - w.buf.Len(); len(p) > room {
		w.over = true
		if room > 0 {
			w.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return w.buf.Write(p)
}

// run runs cmd in a new session, bounded by timeout and ctx. A non-zero
// exit is returned as *ssh.ExitError together with the output.
func (s *scan) run(cmd string, maxOut int, timeout time.Duration) (stdout, stderr []byte, overflow bool, err error) {
	sess, err := s.client.NewSession()
	if err != nil {
		if s.ctx.Err() != nil {
			return nil, nil, false, s.ctx.Err()
		}
		return nil, nil, false, fmt.Errorf("new session: %w", err)
	}
	defer sess.Close()
	out := &limitWriter{max: maxOut}
	errw := &limitWriter{max: maxStderr}
	sess.Stdout, sess.Stderr = out, errw
	s.c.log.Debug("ssh: run", "host", s.host, "cmd", cmd)
	res := make(chan error, 1)
	go func() { res <- sess.Run(cmd) }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err = <-res:
	case <-timer.C:
		_ = sess.Signal(ssh.SIGKILL)
		sess.Close()
		<-res
		err = fmt.Errorf("command timed out after %v", timeout)
	case <-s.ctx.Done():
		sess.Close()
		<-res
		return nil, nil, false, s.ctx.Err()
	}
	if s.ctx.Err() != nil {
		return nil, nil, false, s.ctx.Err()
	}
	return out.buf.Bytes(), errw.buf.Bytes(), out.over, err
}

// certNames are the file name patterns read as candidates: those the files
// package promises hold certificates or keystores, and Java's cacerts.
var certNames = []string{"*.crt", "*.cer", "*.pem", "*.der", "*.p7b", "*.p7c",
	"*.p12", "*.pfx", "*.jks", "*.jceks", "*.keystore", "*.truststore", "cacerts"}

// pemMarkers find PEM certificates in files of any other name. grep -I
// gives up on a binary file after its first buffer, so the sniff reads
// little more than text files.
var pemMarkers = []string{"-----BEGIN CERTIFICATE-----", "-----BEGIN TRUSTED CERTIFICATE-----",
	"-----BEGIN X509 CERTIFICATE-----", "-----BEGIN PKCS7-----"}

// path lists and reads the candidates under one remote path.
func (s *scan) path(root string) error {
	argv := []string{"find", root, "-xdev", "(", "-path", "/proc", "-o", "-path", "/sys", "-o", "-path", "/dev", ")", "-prune", "-o",
		"-type", "f", "-size", "-" + strconv.FormatInt(s.maxSize+1, 10) + "c", "(", "("}
	for i, n := range certNames {
		if i > 0 {
			argv = append(argv, "-o")
		}
		argv = append(argv, "-iname", n)
	}
	argv = append(argv, ")", "-print0", "-o", "-exec", "grep", "-lZsIF")
	for _, m := range pemMarkers {
		argv = append(argv, "-e", m)
	}
	argv = append(argv, "--", "{}", "+", ")")
	out, stderr, over, err := s.run(s.command(argv...), maxListing, s.c.cfg.CommandTimeout)
	if s.ctx.Err() != nil {
		return s.ctx.Err()
	}
	var exit *ssh.ExitError
	if err != nil && !errors.As(err, &exit) {
		return s.problem(root, "find: "+err.Error())
	}
	// find exits 1 when it met an unreadable folder, or when grep found
	// nothing in a batch; its output is good.
	for _, line := range strings.Split(strings.TrimSpace(string(stderr)), "\n") {
		if line == "" {
			continue
		}
		p, msg := parseStderr(line, root)
		if err := s.problem(p, msg); err != nil {
			return err
		}
	}
	if exit != nil {
		s.c.log.Debug("ssh: find exit status", "host", s.host, "path", root, "status", exit.ExitStatus())
	}
	if over {
		if err := s.problem(root, fmt.Sprintf("listing truncated at %d bytes", maxListing)); err != nil {
			return err
		}
	}
	for name := range strings.SplitSeq(string(out), "\x00") {
		if name == "" || s.ctx.Err() != nil {
			continue
		}
		if over && !strings.HasSuffix(string(out), "\x00") && strings.HasSuffix(string(out), name) {
			continue // cut short by the listing limit
		}
		if err := s.file(name); err != nil {
			return err
		}
	}
	return s.ctx.Err()
}

// parseStderr reads "find: '/x': Permission denied" (or head's
// "head: cannot open '/x' for reading: ...") into a path and message.
func parseStderr(line, fallback string) (string, string) {
	i := strings.IndexByte(line, '\'')
	if i < 0 {
		return fallback, line
	}
	j := strings.LastIndex(line, "'")
	if j <= i {
		return fallback, line
	}
	msg := strings.TrimPrefix(strings.TrimSpace(line[j+1:]), ":")
	msg = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(msg), "for reading:"))
	if msg == "" {
		msg = line
	}
	return line[i+1 : j], msg
}

// read fetches one remote file, at most maxSize bytes.
func (s *scan) read(p string) ([]byte, string, error) {
	out, stderr, over, err := s.run(s.command("head", "-c", strconv.FormatInt(s.maxSize+1, 10), "--", p), int(s.maxSize)+1, s.c.cfg.ReadTimeout)
	if s.ctx.Err() != nil {
		return nil, "", s.ctx.Err()
	}
	if err != nil {
		if len(stderr) > 0 {
			_, msg := parseStderr(strings.TrimSpace(strings.SplitN(string(stderr), "\n", 2)[0]), p)
			return nil, msg, nil
		}
		return nil, "read: " + err.Error(), nil
	}
	if over || int64(len(out)) > s.maxSize {
		return nil, fmt.Sprintf("larger than max_size (%d bytes)", s.maxSize), nil
	}
	return out, "", nil
}

// file reads and parses one candidate.
func (s *scan) file(p string) error {
	data, problem, err := s.read(p)
	if err != nil {
		return err
	}
	if problem != "" {
		return s.problem(p, problem)
	}
	entries, err := files.Parse(data, s.pws)
	if err != nil {
		// The name promised a certificate (only such names are read).
		return s.problem(p, err.Error())
	}
	for _, e := range entries {
		f := s.finding(protocol.Location{Path: p, Entry: e.Name})
		f.Format, f.Chain, f.Key, f.Error = e.Format, e.Chain, e.Key, e.Err
		if err := s.emit(f); err != nil {
			return err
		}
	}
	return nil
}

// authorizedKeys reports the login user's authorized_keys and those of
// other accounts that can be read.
func (s *scan) authorizedKeys() error {
	out, _, _, err := s.run(`printf '%s' "$HOME"`, 4096, s.c.cfg.ReadTimeout)
	if s.ctx.Err() != nil {
		return s.ctx.Err()
	}
	home := string(out)
	own := ""
	if err == nil && strings.HasPrefix(home, "/") {
		own = path.Join(home, ".ssh", "authorized_keys")
		if err := s.keysFile(own, "authorized key", s.t.User, true); err != nil {
			return err
		}
	}
	list := `for f in /root/.ssh/authorized_keys /root/.ssh/authorized_keys2 /home/*/.ssh/authorized_keys /home/*/.ssh/authorized_keys2; do [ -f "$f" ] && printf '%s\0' "$f"; done; true`
	if s.sudo {
		list = "sudo -n sh -c " + quote(list)
	}
	out, _, _, err = s.run(list, 1<<20, s.c.cfg.ReadTimeout)
	if s.ctx.Err() != nil {
		return s.ctx.Err()
	}
	if err != nil {
		s.c.log.Debug("ssh: listing authorized_keys", "host", s.host, "err", err)
	}
	for p := range strings.SplitSeq(string(out), "\x00") {
		if p == "" || p == own {
			continue
		}
		if err := s.keysFile(p, "authorized key", accountOf(p), false); err != nil {
			return err
		}
	}
	return nil
}

// accountOf names the account an authorized_keys path belongs to.
func accountOf(p string) string {
	if strings.HasPrefix(p, "/root/") {
		return "root"
	}
	if rest, ok := strings.CutPrefix(p, "/home/"); ok {
		u, _, _ := strings.Cut(rest, "/")
		return u
	}
	return ""
}

// keysFile reports each key line of an authorized_keys file (or a trusted
// CA keys file); mustRead makes a missing or unreadable file a finding.
func (s *scan) keysFile(p, role, account string, mustRead bool) error {
	data, problem, err := s.read(p)
	if err != nil {
		return err
	}
	if problem != "" {
		if mustRead && !strings.Contains(problem, "No such file") {
			return s.problem(p, problem)
		}
		s.c.log.Debug("ssh: skipping keys file", "host", s.host, "path", p, "problem", problem)
		return nil
	}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		entry := strconv.Itoa(i + 1)
		key, comment, options, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			f := s.finding(protocol.Location{Path: p, Entry: entry})
			f.Error = "unreadable key line: " + err.Error()
			if err := s.emit(f); err != nil {
				return err
			}
			continue
		}
		f := s.finding(protocol.Location{Path: p, Entry: entry})
		f.Key = keyInfo(key)
		label := []string{}
		if role != "" {
			label = append(label, role)
		}
		if comment != "" {
			label = append(label, comment)
		}
		if account != "" {
			label = append(label, "account="+account)
		}
		if len(options) > 0 {
			label = append(label, "options="+strings.Join(options, ","))
		}
		if cert, ok := key.(*ssh.Certificate); ok {
			label = append(label, certLabel(cert))
		}
		f.Key.Label = strings.Join(label, " ")
		f.Attributes = keyAttrs(key)
		if comment != "" {
			f.Attributes["comment"] = comment
		}
		if account != "" {
			f.Attributes["account"] = account
		}
		if role != "" {
			f.Attributes["role"] = role
		}
		if len(options) > 0 {
			f.Attributes["options"] = strings.Join(options, ",")
		}
		if err := s.emit(f); err != nil {
			return err
		}
	}
	return nil
}

// sshdConfig is where the trusted user CA keys are looked up.
const sshdConfig = "/etc/ssh/sshd_config"

// trustedCAs reports the keys TrustedUserCAKeys names, when readable.
func (s *scan) trustedCAs() error {
	data, problem, err := s.read(sshdConfig)
	if err != nil {
		return err
	}
	if problem != "" {
		s.c.log.Debug("ssh: sshd_config not read", "host", s.host, "problem", problem)
		return nil
	}
	for _, p := range trustedCAFiles(data) {
		if err := s.keysFile(p, "trusted user CA key", "", true); err != nil {
			return err
		}
	}
	return nil
}

// trustedCAFiles reads the TrustedUserCAKeys values of an sshd_config
// (Include is not followed).
func trustedCAFiles(cfg []byte) []string {
	var out []string
	for _, line := range strings.Split(string(cfg), "\n") {
		fields := strings.Fields(strings.ReplaceAll(line, "=", " "))
		if len(fields) < 2 || !strings.EqualFold(fields[0], "TrustedUserCAKeys") || strings.EqualFold(fields[1], "none") {
			continue
		}
		for _, p := range fields[1:] {
			if strings.HasPrefix(p, "/") {
				out = append(out, strings.Trim(p, `"`))
			}
		}
	}
	return out
}

// hostKeyFiles reports the host's public keys and host certificates under
// /etc/ssh (all of them, not only the one the handshake chose).
func (s *scan) hostKeyFiles() error {
	list := `for f in /etc/ssh/ssh_host_*.pub; do [ -f "$f" ] && printf '%s\0' "$f"; done; true`
	out, _, _, err := s.run(list, 1<<20, s.c.cfg.ReadTimeout)
	if s.ctx.Err() != nil {
		return s.ctx.Err()
	}
	if err != nil {
		s.c.log.Debug("ssh: listing host keys", "host", s.host, "err", err)
		return nil
	}
	for p := range strings.SplitSeq(string(out), "\x00") {
		if p == "" {
			continue
		}
		if err := s.keysFile(p, "host key", "", false); err != nil {
			return err
		}
	}
	return nil
}
