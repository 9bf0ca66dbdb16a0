// Package deploy puts an issued certificate and its key into the PEM files
// a web server reads (nginx, Apache, HAProxy), without an outage: it checks
// everything before touching a file, backs the old files up, replaces each
// atomically, runs the reload command, verifies that every endpoint serves
// the new certificate, and on any failure after the first write puts the
// old files back, reloads again and checks the old certificate is served.
// Every step is reported as it ends, for the order's history.
package deploy

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"
)

// Defaults for Config.
const (
	DefaultReloadTimeout  = 60 * time.Second
	DefaultVerifyTimeout  = 30 * time.Second
	DefaultVerifyInterval = 500 * time.Millisecond
	// RollbackBudget bounds the rollback of any target when the job's
	// context is already done: a cancelled job must still put the old
	// state back.
	RollbackBudget = 2 * time.Minute
)

// Step names, in the order they run.
const (
	StepPrepare  = "prepare"
	StepBackup   = "backup"
	StepWrite    = "write"
	StepReload   = "reload"
	StepVerify   = "verify"
	StepRollback = "rollback"
)

// Outcomes of Run.
const (
	OutcomeDeployed        = "deployed"
	OutcomeAlreadyDeployed = "already_deployed"
	OutcomeFailed          = "failed"          // nothing was changed
	OutcomeRolledBack      = "rolled_back"     // changed, failed, and put back
	OutcomeRollbackFailed  = "rollback_failed" // changed, failed, and not all put back: a human must look
)

// Errors Run wraps, for errors.Is.
var (
	ErrRefused        = errors.New("refused before any change")
	ErrRolledBack     = errors.New("rolled back")
	ErrRollbackFailed = errors.New("ROLLBACK FAILED")
)

// Config describes one PEM location and how to make its server use it.
type Config struct {
	// CertPath is the certificate file (nginx ssl_certificate, Apache
	// SSLCertificateFile, HAProxy crt).
	CertPath string `json:"cert_path"`
	// KeyPath is the key file; the same as CertPath for a combined file
	// (HAProxy: leaf, chain, key in one file).
	KeyPath string `json:"key_path"`
	// ChainPath, when set, gets the chain alone (Apache before 2.4.8
	// SSLCertificateChainFile). It may not exist yet: it is then created
	// (0644) and removed again on rollback.
	ChainPath string `json:"chain_path,omitempty"`
	// ChainInCert appends the chain to the certificate file (nginx
	// fullchain.pem). A combined file always holds the chain.
	ChainInCert bool `json:"chain_in_cert,omitempty"`
	// Reload runs after the write and again after a rollback; nil for a
	// server that rereads its files by itself.
	Reload *Command `json:"reload,omitempty"`
	// Verify lists the endpoints that must serve the new certificate.
	// None: the deployment is checked on the files only.
	Verify []Endpoint `json:"verify,omitempty"`
	// VerifyTimeout is how long an endpoint may take to serve the new
	// certificate after the reload; VerifyInterval the wait between tries.
	VerifyTimeout  time.Duration `json:"verify_timeout,omitempty"`
	VerifyInterval time.Duration `json:"verify_interval,omitempty"`
	// BackupDir holds one timestamped directory per deployment with the
	// old files and a manifest.json saying where each goes. Required.
	BackupDir string `json:"backup_dir"`

	Logger *slog.Logger     `json:"-"`
	Now    func() time.Time `json:"-"`
}

// Command is a reload command, run without a shell: Argv[0] is the
// program. With Shell, Argv must be one string run by /bin/sh -c (cmd /C
// on Windows), for those who need pipes or &&.
type Command struct {
	Argv  []string `json:"argv"`
	Shell bool     `json:"shell,omitempty"`
	// Timeout bounds the command (DefaultReloadTimeout when zero); the
	// command and, on Unix, its process group are killed after it.
	Timeout time.Duration `json:"timeout,omitempty"`
	Dir     string        `json:"dir,omitempty"`
}

// Endpoint is a TLS endpoint that serves the deployed certificate.
type Endpoint struct {
	Address    string `json:"address"`               // host:port
	ServerName string `json:"server_name,omitempty"` // SNI; the host when empty and not an IP
}

// Step is one step's end, reported to the caller as it happens.
type Step struct {
	Name    string    `json:"name"`
	OK      bool      `json:"ok"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}

// Result is what Run did.
type Result struct {
	Outcome string `json:"outcome"`
	// BackupDir is this deployment's backup directory ("" when none was
	// made).
	BackupDir string `json:"backup_dir,omitempty"`
	// Fingerprint is the new leaf's SHA-256, OldFingerprint the replaced
	// one's (hex, lowercase).
	Fingerprint    string `json:"fingerprint"`
	OldFingerprint string `json:"old_fingerprint,omitempty"`
	Steps          []Step `json:"steps"`
}

// Deployer deploys to one PEM location.
type Deployer struct {
	cfg Config
	log *slog.Logger
}

// New validates cfg and fills in defaults.
func New(cfg Config) (*Deployer, error) {
	if cfg.CertPath == "" || cfg.KeyPath == "" {
		return nil, errors.New("deploy: cert_path and key_path are required (the same path for a combined file)")
	}
	if cfg.BackupDir == "" {
		return nil, errors.New("deploy: backup_dir is required")
	}
	for _, p := range []*string{&cfg.CertPath, &cfg.KeyPath, &cfg.ChainPath, &cfg.BackupDir} {
		if *p == "" {
			continue
		}
		if !filepath.IsAbs(*p) {
			return nil, fmt.Errorf("deploy: %s is not an absolute path", *p)
		}
		*p = filepath.Clean(*p)
	}
	if cfg.ChainPath == cfg.CertPath {
		cfg.ChainPath, cfg.ChainInCert = "", true
	}
	if cfg.ChainPath != "" && cfg.ChainPath == cfg.KeyPath {
		return nil, errors.New("deploy: chain_path is the key file: a chain goes with the certificate (chain_in_cert) or alone")
	}
	if cfg.Reload != nil {
		if len(cfg.Reload.Argv) == 0 || cfg.Reload.Argv[0] == "" {
			return nil, errors.New("deploy: reload.argv is empty")
		}
		if cfg.Reload.Shell && len(cfg.Reload.Argv) != 1 {
			return nil, errors.New("deploy: reload with shell takes one string in argv")
		}
		if cfg.Reload.Timeout < 0 {
			return nil, errors.New("deploy: reload.timeout must not be negative")
		}
		r := *cfg.Reload
		if r.Timeout == 0 {
			r.Timeout = DefaultReloadTimeout
		}
		cfg.Reload = &r
	}
	for i, e := range cfg.Verify {
		if _, _, err := splitHostPort(e.Address); err != nil {
			return nil, fmt.Errorf("deploy: verify[%d]: %w", i, err)
		}
	}
	if cfg.VerifyTimeout < 0 || cfg.VerifyInterval < 0 {
		return nil, errors.New("deploy: verify_timeout and verify_interval must not be negative")
	}
	if cfg.VerifyTimeout == 0 {
		cfg.VerifyTimeout = DefaultVerifyTimeout
	}
	if cfg.VerifyInterval == 0 {
		cfg.VerifyInterval = DefaultVerifyInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Deployer{cfg: cfg, log: cfg.Logger}, nil
}

// Run deploys certPEM (the leaf; certificates after it are taken as the
// chain's start), chainPEM (intermediates, may be empty) and keyPEM (the
// new key in the form to write, see keygen.MarshalLike). report, if not
// nil, is called at the end of each step. The error is nil only for
// OutcomeDeployed and OutcomeAlreadyDeployed; it wraps ErrRefused,
// ErrRolledBack or ErrRollbackFailed otherwise. Neither the error nor a
// step message ever holds the key.
func (d *Deployer) Run(ctx context.Context, certPEM, chainPEM, keyPEM []byte, report func(Step)) (*Result, error) {
	r := &Steps{Result: &Result{}, Report: report, Logger: d.log, Now: d.cfg.Now, LogPrefix: "deploy: "}
	p, err := d.prepare(certPEM, chainPEM, keyPEM)
	if p != nil {
		r.Result.Fingerprint, r.Result.OldFingerprint = p.newFP, p.oldFP
	}
	if err != nil {
		return r.Refuse("deploy", err)
	}
	if p.newFP == p.oldFP {
		r.Add(StepPrepare, true, "already deployed: %s already holds certificate %s; nothing written, only verified", d.cfg.CertPath, ShortFingerprint(p.newFP))
		if err := d.verifyAll(ctx, r, p.newFP, StepVerify); err != nil {
			r.Result.Outcome = OutcomeFailed
			return r.Result, fmt.Errorf("deploy: already deployed, but %w", err)
		}
		r.Result.Outcome = OutcomeAlreadyDeployed
		return r.Result, nil
	}
	r.Add(StepPrepare, true, "%s", p.summary())

	dir, err := d.backup(p)
	r.Result.BackupDir = dir
	if err != nil {
		r.Result.Outcome = OutcomeFailed
		r.Add(StepBackup, false, "%v", err)
		return r.Result, fmt.Errorf("deploy: backup: %w", err)
	}
	r.Add(StepBackup, true, "old files copied to %s", dir)

	changed, err := d.write(p)
	if err != nil {
		r.Add(StepWrite, false, "%v", err)
		if !changed {
			r.Result.Outcome = OutcomeFailed
			return r.Result, fmt.Errorf("deploy: write (nothing replaced): %w", err)
		}
		return d.rollback(ctx, r, p, fmt.Errorf("write: %w", err))
	}
	r.Add(StepWrite, true, "replaced %s", strings.Join(p.paths(), ", "))

	if d.cfg.Reload != nil {
		msg, err := d.reload(ctx)
		if err != nil {
			r.Add(StepReload, false, "%v", err)
			return d.rollback(ctx, r, p, fmt.Errorf("reload: %w", err))
		}
		r.Add(StepReload, true, "%s", msg)
	}
	if err := d.verifyAll(ctx, r, p.newFP, StepVerify); err != nil {
		return d.rollback(ctx, r, p, err)
	}
	r.Result.Outcome = OutcomeDeployed
	return r.Result, nil
}

// rollback restores the old files, reloads and checks that the old
// certificate is served again. cause is why.
func (d *Deployer) rollback(ctx context.Context, r *Steps, p *plan, cause error) (*Result, error) {
	// The job's context may be what failed (cancelled, deadline): the
	// rollback gets its own budget so the old files go back regardless.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RollbackBudget)
	defer cancel()
	var problems []string
	if err := d.restore(p); err != nil {
		problems = append(problems, "restore: "+err.Error())
	}
	reloadMsg := ""
	if d.cfg.Reload != nil && len(problems) == 0 {
		msg, err := d.reload(ctx)
		if err != nil {
			problems = append(problems, "reload: "+err.Error())
		}
		reloadMsg = "; " + msg
	}
	verifyMsg := ""
	if len(problems) == 0 && len(d.cfg.Verify) > 0 {
		if p.oldFP == "" {
			verifyMsg = "; no old certificate to check for"
		} else if msg, err := d.verifyEndpoints(ctx, p.oldFP); err != nil {
			problems = append(problems, "old certificate not served again: "+err.Error())
		} else {
			verifyMsg = "; " + msg
		}
	}
	if len(problems) > 0 {
		r.Result.Outcome = OutcomeRollbackFailed
		r.Add(StepRollback, false, "ROLLBACK FAILED after %v: %s. The old files are in %s (manifest.json says where each goes); restore them by hand and reload the server",
			cause, strings.Join(problems, "; "), r.Result.BackupDir)
		return r.Result, fmt.Errorf("deploy: %w (%s; backups in %s) after: %w", ErrRollbackFailed, strings.Join(problems, "; "), r.Result.BackupDir, cause)
	}
	r.Result.Outcome = OutcomeRolledBack
	r.Add(StepRollback, true, "rolled back after %v: old files restored%s%s", cause, reloadMsg, verifyMsg)
	return r.Result, fmt.Errorf("deploy: %w: %w", ErrRolledBack, cause)
}

// verifyAll runs the verify step and reports it; no endpoints is a pass.
func (d *Deployer) verifyAll(ctx context.Context, r *Steps, fp, name string) error {
	if len(d.cfg.Verify) == 0 {
		r.Add(name, true, "no endpoint to verify; the files hold certificate %s", ShortFingerprint(fp))
		return nil
	}
	msg, err := d.verifyEndpoints(ctx, fp)
	if err != nil {
		r.Add(name, false, "%v", err)
		return fmt.Errorf("verify: %w", err)
	}
	r.Add(name, true, "%s", msg)
	return nil
}

// Fingerprint is the lowercase hex SHA-256 of a certificate's DER, as
// Result and the step messages show it.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
