package rotate

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/agent/keygen"
	"github.com/emsign/bot/protocol"
)

// TargetFactory builds the deploy.Target of one deploy kind from a job's
// spec. Like every constructor it validates and does no I/O; a target
// that runs a command must ask env.AllowReload first. The packages of the
// other kinds export one as NewDeployer.
type TargetFactory func(spec protocol.DeploySpec, env deploy.Env) (deploy.Target, error)

// DefaultTargets is the kinds this package deploys by itself: PEM files.
// The bot adds the others (jks, pkcs12, pkcs11, ldap, ssh, aws-acm, f5,
// cloudflare) from their packages.
func DefaultTargets() map[string]TargetFactory {
	return map[string]TargetFactory{protocol.DeployPEM: NewPEMTarget}
}

// NewPEMTarget is the TargetFactory of DeployPEM: agent/deploy's Deployer.
// spec.KeyPath must be set (the Rotator resolves "" before it calls this).
func NewPEMTarget(spec protocol.DeploySpec, env deploy.Env) (deploy.Target, error) {
	if spec.CertPath == "" {
		return nil, errors.New("pem: deploy.cert_path is empty")
	}
	if spec.KeyPath == "" {
		return nil, errors.New("pem: deploy.key_path is empty")
	}
	cfg := deploy.Config{
		CertPath: spec.CertPath, KeyPath: spec.KeyPath, ChainPath: spec.ChainPath, ChainInCert: spec.ChainInCert,
		VerifyTimeout: time.Duration(spec.VerifyTimeout), BackupDir: env.BackupDir, Logger: env.Logger, Now: env.Now,
	}
	if len(spec.Reload) > 0 {
		allow := env.AllowReload
		if allow == nil {
			allow = AllowReload(nil)
		}
		if err := allow(spec.Reload); err != nil {
			return nil, fmt.Errorf("pem: %w", err)
		}
		cfg.Reload = &deploy.Command{Argv: slices.Clone(spec.Reload)}
	}
	for _, v := range spec.Verify {
		cfg.Verify = append(cfg.Verify, deploy.Endpoint{Address: v.Address, ServerName: v.ServerName})
	}
	d, err := deploy.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("pem: %w", err)
	}
	return d, nil
}

// AllowReload is the deploy.Env.AllowReload of a bot whose settings allow
// the commands in allowed (Settings.AllowedReload: each an argv joined by
// single spaces). A command is allowed only when its argv, joined by
// single spaces, is one of them exactly: the control plane must not be
// able to run anything else on the server.
func AllowReload(allowed []string) func(argv []string) error {
	set := map[string]bool{}
	for _, a := range allowed {
		set[strings.Join(strings.Fields(a), " ")] = true
	}
	return func(argv []string) error {
		cmd := strings.Join(argv, " ")
		if len(argv) == 0 || !set[cmd] {
			return fmt.Errorf("reload command %q is not in this bot's allowed_reload: allow it with emsign-bot configure --allow-reload", cmd)
		}
		return nil
	}
}

// KeystorePasswords collects the passwords of the bot's own file and jks
// targets (BotConfig.Targets), the ones its scans open keystores with:
// a rotation tries them on an existing keystore when the job gives none.
// Targets that do not parse are skipped (the scan reports them).
func KeystorePasswords(targets []string) []protocol.Secret {
	var out []protocol.Secret
	seen := map[string]bool{}
	for _, raw := range targets {
		t, err := protocol.ParseTarget(raw)
		if err != nil || (t.Scheme != protocol.SchemeFile && t.Scheme != protocol.SchemeJKS) {
			continue
		}
		for _, s := range t.Secrets[protocol.ParamPassword] {
			if s.IsZero() || seen[s.Reveal()] {
				continue
			}
			seen[s.Reveal()] = true
			out = append(out, s)
		}
	}
	return out
}

// pemLocation is what the rotator learns of a PEM location before it
// deploys: which file holds the key, and the key and leaf there now.
type pemLocation struct {
	keyPath string
	keyFile []byte // the key file's content, for MarshalLike
	key     crypto.Signer
	leaf    *x509.Certificate // the certificate file's leaf now
	found   bool              // keyPath was found by looking, not given
}

// resolvePEM reads the certificate file and finds its key: spec.KeyPath
// when given, else the certificate file itself when it holds the key, else
// the one *.key or *.pem file in its directory whose key matches.
func resolvePEM(spec protocol.DeploySpec) (*pemLocation, error) {
	if spec.CertPath == "" {
		return nil, errors.New("deploy.cert_path is empty")
	}
	certFile, err := os.ReadFile(spec.CertPath)
	if err != nil {
		return nil, fmt.Errorf("deploy.cert_path: %w", err)
	}
	leaf := firstCert(certFile)
	if leaf == nil {
		return nil, fmt.Errorf("deploy.cert_path %s holds no certificate", spec.CertPath)
	}
	loc := &pemLocation{leaf: leaf}
	if spec.KeyPath != "" {
		data, err := os.ReadFile(spec.KeyPath)
		if err != nil {
			return nil, fmt.Errorf("deploy.key_path: %w", err)
		}
		key, err := keygen.ParsePEM(data)
		if err != nil {
			return nil, fmt.Errorf("deploy.key_path %s: %w", spec.KeyPath, err)
		}
		loc.keyPath, loc.keyFile, loc.key = spec.KeyPath, data, key
		return loc, nil
	}
	if key, err := keygen.ParsePEM(certFile); err == nil && matches(leaf, key) {
		loc.keyPath, loc.keyFile, loc.key, loc.found = spec.CertPath, certFile, key, true
		return loc, nil
	}
	dir := filepath.Dir(spec.CertPath)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("deploy.key_path is empty and the certificate's directory cannot be read: %w", err)
	}
	var hits []string
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		if !e.Type().IsRegular() && e.Type()&os.ModeSymlink == 0 || (ext != ".key" && ext != ".pem") || strings.HasPrefix(name, ".") {
			continue
		}
		p := filepath.Join(dir, name)
		if p == filepath.Clean(spec.CertPath) {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		key, err := keygen.ParsePEM(data)
		if err != nil || !matches(leaf, key) {
			continue
		}
		hits = append(hits, p)
		if loc.key == nil {
			loc.keyPath, loc.keyFile, loc.key, loc.found = p, data, key, true
		}
	}
	switch len(hits) {
	case 0:
		return nil, fmt.Errorf("deploy.key_path is empty and no *.key or *.pem file beside %s holds the key of its certificate (%s): set key_path", spec.CertPath, leaf.Subject)
	case 1:
		return loc, nil
	default:
		return nil, fmt.Errorf("deploy.key_path is empty and %s all hold the key of %s: set key_path", strings.Join(hits, ", "), spec.CertPath)
	}
}

func firstCert(data []byte) *x509.Certificate {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil
			}
			return c
		}
	}
}

// matches says whether c is a certificate for key.
func matches(c *x509.Certificate, key crypto.Signer) bool {
	return samePublic(c.PublicKey, key.Public())
}

func samePublic(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// pkcs8PEM is key as a PKCS#8 PEM block, for targets other than PEM files.
func pkcs8PEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: blockKey, Bytes: der}), nil
}
