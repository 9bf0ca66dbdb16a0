// Package state keeps what an activated bot is: its settings, its private
// key, its client certificate and the control plane's CA bundle, in one
// directory only the service account can read (directory 0700, files 0600,
// each written atomically). The activation token is never part of it.
package state

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/emsign/bot/agent/internal/atomicfile"
)

// File names inside the state directory.
const (
	SettingsFile = "settings.json"
	KeyFile      = "bot.key"
	CertFile     = "bot.crt"
	CAFile       = "ca.pem"
	// SpoolDir holds the durable outbox (package spool).
	SpoolDir = "spool"
)

// Permissions of the directory and of every file in it.
const (
	DirMode  fs.FileMode = 0o700
	FileMode fs.FileMode = 0o600
)

// ErrNotActivated is returned by Load for a directory without an activation.
var ErrNotActivated = errors.New("the bot is not activated: run emsign-bot activate first")

// Settings are the non-secret facts of an activation. Proxy may hold a
// proxy password: it stays in this 0600 file and is never logged.
type Settings struct {
	URL         string    `json:"url"`
	BotID       string    `json:"bot_id"`
	Account     string    `json:"account"`
	Proxy       string    `json:"proxy,omitempty"`
	Via         string    `json:"via,omitempty"`
	Listen      int       `json:"listen,omitempty"`
	ActivatedAt time.Time `json:"activated_at"`
	// AllowedReload lists the reload commands a rotation may run on this
	// server, each an argv joined by single spaces ("systemctl reload
	// nginx"): the control plane can ask only for one of these (B9).
	AllowedReload []string `json:"allowed_reload,omitempty"`
}

// Validate checks the settings read back or about to be written.
func (s Settings) Validate() error {
	u, err := url.Parse(s.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("settings: url %q is not an https URL", s.URL)
	}
	if s.BotID == "" {
		return errors.New("settings: no bot id")
	}
	if s.Account == "" {
		return errors.New("settings: no account")
	}
	return nil
}

// State is a loaded activation.
type State struct {
	Dir      string
	Settings Settings
	// Certificate is the bot's client certificate with its private key.
	Certificate tls.Certificate
	// CAs is the control plane's CA bundle: the only roots the bot trusts
	// after activation.
	CAs *x509.CertPool
}

// Activation is what Save writes.
type Activation struct {
	Settings Settings
	Key      crypto.Signer
	// CertPEM is the client certificate, CABundlePEM the control plane's CA
	// bundle, both PEM as the control plane sent them.
	CertPEM     []byte
	CABundlePEM []byte
}

// Save writes an activation into dir, creating it (0700) if needed; an
// earlier activation there is replaced. The settings file is written last,
// so a crash half-way leaves the earlier settings or none.
func Save(dir string, a Activation) error {
	if err := a.Settings.Validate(); err != nil {
		return err
	}
	if a.Key == nil {
		return errors.New("save state: no private key")
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(a.Key)
	if err != nil {
		return fmt.Errorf("save state: marshal key: %w", err)
	}
	if _, err := ParseCABundle(a.CABundlePEM); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	settings, err := json.MarshalIndent(a.Settings, "", "  ")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := EnsureDir(dir); err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
	}{
		{KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})},
		{CertFile, a.CertPEM},
		{CAFile, a.CABundlePEM},
		{SettingsFile, append(settings, '\n')},
	}
	for _, f := range files {
		if err := atomicfile.Write(dir, f.name, f.data, FileMode); err != nil {
			return fmt.Errorf("save state in %s: %w", dir, err)
		}
		if err := restrictFile(filepath.Join(dir, f.name)); err != nil {
			return fmt.Errorf("save state in %s: %w", dir, err)
		}
	}
	return nil
}

// EnsureDir creates dir with DirMode, or narrows an existing one to it.
func EnsureDir(dir string) error {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if err := os.Chmod(dir, DirMode); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if err := restrictDir(dir); err != nil {
		return fmt.Errorf("state directory %s: %w", dir, err)
	}
	return nil
}

// Load reads the activation in dir.
func Load(dir string) (*State, error) {
	raw, err := os.ReadFile(filepath.Join(dir, SettingsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("state directory %s: %w", dir, ErrNotActivated)
	}
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	var s Settings
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("load state: %s: %w", SettingsFile, err)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("load state: client certificate: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	pool, err := ParseCABundle(caPEM)
	if err != nil {
		return nil, fmt.Errorf("load state: %s: %w", CAFile, err)
	}
	return &State{Dir: dir, Settings: s, Certificate: cert, CAs: pool}, nil
}

// SpoolPath is where the bot's spool lives.
func (s *State) SpoolPath() string { return filepath.Join(s.Dir, SpoolDir) }

// TLSConfig is the mTLS configuration of every call after activation: the
// bot's certificate, and only the CA bundle as roots.
func (s *State) TLSConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{s.Certificate},
		RootCAs:      s.CAs,
		MinVersion:   tls.VersionTLS12,
	}
}

// ParseCABundle reads PEM certificates into a pool; it fails when there are
// none, or when a block does not parse.
func ParseCABundle(pemData []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := pemData; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errors.New("CA bundle holds no certificate")
	}
	return pool, nil
}

// LoadSettings reads the settings of the activation in dir (without its
// key and certificates).
func LoadSettings(dir string) (Settings, error) {
	var s Settings
	raw, err := os.ReadFile(filepath.Join(dir, SettingsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return s, fmt.Errorf("state directory %s: %w", dir, ErrNotActivated)
	}
	if err != nil {
		return s, fmt.Errorf("load settings: %w", err)
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, fmt.Errorf("load settings: %s: %w", SettingsFile, err)
	}
	return s, nil
}

// SaveSettings replaces the settings of an existing activation in dir,
// atomically (0600): emsign-bot configure.
func SaveSettings(dir string, s Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, SettingsFile)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("state directory %s: %w", dir, ErrNotActivated)
		}
		return fmt.Errorf("save settings: %w", err)
	}
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("save settings: %w", err)
	}
	if err := atomicfile.Write(dir, SettingsFile, append(raw, '\n'), FileMode); err != nil {
		return fmt.Errorf("save settings in %s: %w", dir, err)
	}
	if err := restrictFile(filepath.Join(dir, SettingsFile)); err != nil {
		return fmt.Errorf("save settings in %s: %w", dir, err)
	}
	return nil
}
