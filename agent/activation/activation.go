// Package activation makes a bot an identity (B2): it generates the bot's
// ECDSA P-256 key (which never leaves the machine), sends a CSR with the
// account number and one-time token, checks what comes back and writes the
// state directory. The token is sent once over TLS and kept nowhere.
package activation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"runtime"
	"time"

	"github.com/emsign/bot/agent/client"
	"github.com/emsign/bot/agent/netpath"
	"github.com/emsign/bot/agent/state"
	"github.com/emsign/bot/protocol"
)

// Options are the inputs of an activation.
type Options struct {
	// Dir is the state directory to write.
	Dir     string
	Account string
	Token   protocol.Secret
	URL     string
	// CAFile is a PEM file of roots to trust for the control plane (its
	// ca.pem); empty means the system roots.
	CAFile string
	// Proxy, Via and Listen are stored for the isolated-networks issue.
	Proxy  string
	Via    string
	Listen int
	// Version is the bot's version.
	Version string
	Logger  *slog.Logger
	Now     func() time.Time
	// Hostname and IPs describe the machine; nil means the real ones.
	Hostname func() (string, error)
	IPs      func() ([]string, error)
}

var (
	accountRE = regexp.MustCompile(`^[0-9]{10}$`)
	uuidRE    = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// FieldError is a wrong input, named by its field (the command line's flag).
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return "--" + e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Validate checks every input before anything is generated or sent. It
// returns a *FieldError; the token's value never appears in it.
func (o Options) Validate() error {
	if o.Dir == "" {
		return &FieldError{"state", errors.New("no state directory")}
	}
	if !accountRE.MatchString(o.Account) {
		return &FieldError{"account", fmt.Errorf("%q is not an account number: want exactly 10 digits", o.Account)}
	}
	if o.Token.IsZero() {
		return &FieldError{"token", errors.New("no bot token given")}
	}
	if !uuidRE.MatchString(o.Token.Reveal()) {
		return &FieldError{"token", errors.New("not a bot token: want a UUID such as f8368fea-d5da-4502-a39b-43e6752f3b5e")}
	}
	if o.URL == "" {
		return &FieldError{"url", errors.New("no control plane URL given")}
	}
	if _, err := client.ParseURL(o.URL); err != nil {
		return &FieldError{"url", err}
	}
	// The proxy URL may hold a password: never echoed.
	if err := netpath.ValidateProxy(o.Proxy); err != nil {
		return &FieldError{"proxy", err}
	}
	if err := netpath.ValidateVia(o.Via); err != nil {
		return &FieldError{"via", err}
	}
	if o.Listen < 0 || o.Listen > 65535 {
		return &FieldError{"listen", fmt.Errorf("%d is not a TCP port", o.Listen)}
	}
	if o.CAFile != "" {
		if _, err := os.Stat(o.CAFile); err != nil {
			return &FieldError{"ca-file", err}
		}
	}
	return nil
}

// Activate validates the options, activates the bot and writes its state.
func Activate(ctx context.Context, o Options) (state.Settings, error) {
	if err := o.Validate(); err != nil {
		return state.Settings{}, err
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Hostname == nil {
		o.Hostname = os.Hostname
	}
	if o.IPs == nil {
		o.IPs = MachineIPs
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		raw, err := os.ReadFile(o.CAFile)
		if err != nil {
			return state.Settings{}, &FieldError{"ca-file", err}
		}
		pool, err := state.ParseCABundle(raw)
		if err != nil {
			return state.Settings{}, &FieldError{"ca-file", err}
		}
		tlsConf.RootCAs = pool
	}
	// Fail before the token is consumed if the state cannot be written.
	if err := state.EnsureDir(o.Dir); err != nil {
		return state.Settings{}, err
	}
	host, err := o.Hostname()
	if err != nil {
		return state.Settings{}, fmt.Errorf("hostname: %w", err)
	}
	ips, err := o.IPs()
	if err != nil {
		return state.Settings{}, fmt.Errorf("addresses: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return state.Settings{}, fmt.Errorf("generate key: %w", err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: host},
	}, key)
	if err != nil {
		return state.Settings{}, fmt.Errorf("certificate request: %w", err)
	}
	np, err := netpath.New(netpath.Settings{URL: o.URL, Proxy: o.Proxy, Via: o.Via})
	if err != nil {
		return state.Settings{}, err
	}
	c, err := client.New(client.Config{URL: o.URL, TLS: tlsConf, Version: o.Version, Logger: o.Logger, Dial: np.DialContext})
	if err != nil {
		return state.Settings{}, &FieldError{"url", err}
	}
	defer c.Close()
	path := np.Describe()
	o.Logger.Info("activating", "url", o.URL, "account", o.Account, "hostname", host, "path", path, "proxy", np.ProxyRedacted())
	resp, err := c.Activate(ctx, protocol.ActivateRequest{
		Account:    o.Account,
		Token:      o.Token.Reveal(),
		Hostname:   host,
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		IPs:        ips,
		Version:    o.Version,
		CSR:        string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
		Capability: protocol.CapabilityVersion,
		Path:       path,
	})
	if err != nil {
		return state.Settings{}, err
	}
	if err := checkIssued(resp, key, o.Now()); err != nil {
		return state.Settings{}, fmt.Errorf("activation: %w", err)
	}
	s := state.Settings{
		URL: o.URL, BotID: resp.BotID, Account: o.Account,
		Proxy: o.Proxy, Via: o.Via, Listen: o.Listen,
		ActivatedAt: o.Now().UTC(),
	}
	if err := state.Save(o.Dir, state.Activation{
		Settings: s, Key: key, CertPEM: []byte(resp.Certificate), CABundlePEM: []byte(resp.CABundle),
	}); err != nil {
		return state.Settings{}, err
	}
	o.Logger.Info("activated", "bot_id", resp.BotID, "state", o.Dir)
	return s, nil
}

// checkIssued makes sure the certificate is for the bot's key and chains
// to the CA bundle the bot will trust from now on.
func checkIssued(resp protocol.ActivateResponse, key *ecdsa.PrivateKey, now time.Time) error {
	b, _ := pem.Decode([]byte(resp.Certificate))
	if b == nil || b.Type != "CERTIFICATE" {
		return errors.New("the control plane's certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return fmt.Errorf("the control plane's certificate: %w", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return errors.New("the control plane's certificate is not for the bot's key")
	}
	pool, err := state.ParseCABundle([]byte(resp.CABundle))
	if err != nil {
		return err
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("the bot's certificate does not chain to the CA bundle: %w", err)
	}
	return nil
}

// MachineIPs lists the machine's addresses, loopback and link-local left
// out.
func MachineIPs() ([]string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLoopback() || n.IP.IsLinkLocalUnicast() || n.IP.IsLinkLocalMulticast() {
			continue
		}
		ips = append(ips, n.IP.String())
	}
	return ips, nil
}
