// Package keystore deploys a rotated certificate and its key into a Java
// keystore (JKS) or a PKCS#12 file (P8): Tomcat, Jetty and JBoss read their
// TLS key from one. It mirrors agent/deploy's PEM deployment: prepare (open
// the store, pick the entry, check everything) → backup (a timestamped copy
// with a manifest) → write (temp file beside the store, fsync, rename) →
// reload (only a command the bot allows) → verify (the store read back from
// disk holds the new leaf; every endpoint serves it) → rollback on any
// failure after the write (restore, reload, verify the old certificate).
package keystore

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/protocol"
)

// errWrongPassword is what a format answers when the password does not
// open the store (as opposed to a store it cannot read at all).
var errWrongPassword = errors.New("wrong password")

// format is one keystore file format.
type format interface {
	// name is the format as messages say it: "JKS", "PKCS#12".
	name() string
	// open reads data with the store password pw; errWrongPassword (wrapped)
	// when pw does not fit.
	open(data []byte, pw string) (store, error)
}

// store is an opened keystore.
type store interface {
	// pick returns the alias of the private-key entry to replace (alias ""
	// = the only one) and the leaf it holds now.
	pick(alias string) (string, *x509.Certificate, error)
	// replace returns the file with alias's key and chain replaced by m's,
	// everything else kept, encoded under the store password pw. known are
	// every password the bot knows, for an entry with its own key password.
	replace(alias string, m deploy.Material, pw string, known []protocol.Secret, now time.Time) ([]byte, []string, error)
}

// Deployer deploys to one keystore file. It is a deploy.Target.
type Deployer struct {
	f    format
	spec protocol.DeploySpec
	env  deploy.Env
	log  *slog.Logger
	eps  []deploy.Endpoint
}

var _ deploy.Target = (*Deployer)(nil)

// NewDeployer picks the deployer for spec.Kind: protocol.DeployJKS or
// protocol.DeployPKCS12.
func NewDeployer(spec protocol.DeploySpec, env deploy.Env) (deploy.Target, error) {
	switch spec.Kind {
	case protocol.DeployJKS:
		return NewJKSDeployer(spec, env)
	case protocol.DeployPKCS12:
		return NewPKCS12Deployer(spec, env)
	}
	return nil, fmt.Errorf("keystore: kind %q: want %q or %q", spec.Kind, protocol.DeployJKS, protocol.DeployPKCS12)
}

// NewJKSDeployer validates spec (kind jks) and env; it does no I/O.
func NewJKSDeployer(spec protocol.DeploySpec, env deploy.Env) (deploy.Target, error) {
	return newDeployer(jksFormat{}, spec, env)
}

// NewPKCS12Deployer validates spec (kind pkcs12) and env; it does no I/O.
func NewPKCS12Deployer(spec protocol.DeploySpec, env deploy.Env) (deploy.Target, error) {
	return newDeployer(pkcs12Format{}, spec, env)
}

func newDeployer(f format, spec protocol.DeploySpec, env deploy.Env) (*Deployer, error) {
	prefix := "keystore: " + f.name() + ": "
	if spec.KeystorePath == "" {
		return nil, errors.New(prefix + "keystore_path is required")
	}
	if !filepath.IsAbs(spec.KeystorePath) {
		return nil, fmt.Errorf(prefix+"keystore_path %s is not an absolute path", spec.KeystorePath)
	}
	spec.KeystorePath = filepath.Clean(spec.KeystorePath)
	env, err := deploy.CheckEnv(env)
	if err != nil {
		return nil, fmt.Errorf("%s%w", prefix, err)
	}
	if len(spec.Reload) > 0 && spec.Reload[0] == "" {
		return nil, errors.New(prefix + "reload: argv[0] is empty")
	}
	if len(spec.Reload) > 0 && env.AllowReload == nil {
		return nil, errors.New(prefix + "reload is set but the bot has no allowed_reload rule to check it against")
	}
	if spec.VerifyTimeout < 0 {
		return nil, errors.New(prefix + "verify_timeout must not be negative")
	}
	var eps []deploy.Endpoint
	for i, v := range spec.Verify {
		if v.Address == "" {
			return nil, fmt.Errorf(prefix+"verify[%d].address is empty", i)
		}
		eps = append(eps, deploy.Endpoint{Address: v.Address, ServerName: v.ServerName})
	}
	return &Deployer{f: f, spec: spec, env: env, log: env.Logger, eps: eps}, nil
}

// plan is what prepare found; nothing is written before it is whole.
type plan struct {
	path    string // symlinks resolved: the file really replaced
	old     []byte
	mode    fs.FileMode
	own     deploy.Owner
	pw      string
	alias   string
	content []byte
	oldLeaf *x509.Certificate
	newFP   string
	oldFP   string
	notes   []string
}

// Deploy puts m's key and chain into the keystore entry (see the package
// documentation for the steps). The error is nil only for the deployed
// and already_deployed outcomes and wraps deploy.ErrRefused,
// deploy.ErrRolledBack or deploy.ErrRollbackFailed otherwise. No message
// or error holds a password or a key.
func (d *Deployer) Deploy(ctx context.Context, m deploy.Material, report func(deploy.Step)) (*deploy.Result, error) {
	r := &deploy.Steps{Result: &deploy.Result{}, Report: report, Logger: d.log, Now: d.env.Now,
		LogPrefix: "keystore: ", LogAttrs: []any{"path", d.spec.KeystorePath}}
	prefix := "keystore: " + d.f.name()
	if m.Certificate != nil {
		r.Result.Fingerprint = deploy.Fingerprint(m.Certificate)
	}
	p, err := d.prepare(m)
	if p != nil {
		r.Result.OldFingerprint = p.oldFP
	}
	if err != nil {
		return r.Refuse(prefix, err)
	}
	if p.content == nil {
		r.Add(deploy.StepPrepare, true, "already deployed: entry %q of %s already holds certificate %s; nothing written, only verified",
			p.alias, p.path, short(p.newFP))
		if err := d.verify(ctx, r, p, p.newFP); err != nil {
			r.Result.Outcome = deploy.OutcomeFailed
			return r.Result, fmt.Errorf("%s: already deployed, but %w", prefix, err)
		}
		r.Result.Outcome = deploy.OutcomeAlreadyDeployed
		return r.Result, nil
	}
	r.Add(deploy.StepPrepare, true, "%s", p.summary(d.f.name(), m.Certificate))

	dir, err := d.backup(p)
	r.Result.BackupDir = dir
	if err != nil {
		r.Result.Outcome = deploy.OutcomeFailed
		r.Add(deploy.StepBackup, false, "%v", err)
		return r.Result, fmt.Errorf("%s: backup: %w", prefix, err)
	}
	r.Add(deploy.StepBackup, true, "old keystore copied to %s", dir)

	changed, err := deploy.ReplaceFile(p.path, p.content, p.mode, p.own)
	if err != nil {
		r.Add(deploy.StepWrite, false, "%v", err)
		if !changed {
			r.Result.Outcome = deploy.OutcomeFailed
			return r.Result, fmt.Errorf("%s: write (nothing replaced): %w", prefix, err)
		}
		return d.rollback(ctx, r, p, fmt.Errorf("write: %w", err))
	}
	r.Add(deploy.StepWrite, true, "replaced entry %q of %s (%d bytes)", p.alias, p.path, len(p.content))

	if len(d.spec.Reload) > 0 {
		msg, err := deploy.RunCommand(ctx, deploy.Command{Argv: d.spec.Reload})
		if err != nil {
			r.Add(deploy.StepReload, false, "%v", err)
			return d.rollback(ctx, r, p, fmt.Errorf("reload: %w", err))
		}
		r.Add(deploy.StepReload, true, "%s", msg)
	}
	if err := d.verify(ctx, r, p, p.newFP); err != nil {
		return d.rollback(ctx, r, p, err)
	}
	r.Result.Outcome = deploy.OutcomeDeployed
	return r.Result, nil
}

// prepare checks the material, the reload rule and the keystore, and
// builds the new file in memory. It writes nothing but a probe file that
// proves the directory takes the temp file the write needs.
func (d *Deployer) prepare(m deploy.Material) (*plan, error) {
	if m.Certificate == nil {
		return nil, errors.New("no new certificate")
	}
	p := &plan{newFP: deploy.Fingerprint(m.Certificate)}
	if m.Key == nil {
		if m.KeyRef != nil {
			return p, fmt.Errorf("the new key is on a PKCS#11 token (label %q): it cannot be put into a %s keystore", m.KeyRef.Label, d.f.name())
		}
		return p, errors.New("no new private key")
	}
	if !deploy.KeyMatches(m.Certificate, m.Key) {
		return p, fmt.Errorf("the new certificate %s (%s) does not match the new key: nothing touched", short(p.newFP), m.Certificate.Subject)
	}
	if len(d.spec.Reload) > 0 {
		if err := d.env.AllowReload(d.spec.Reload); err != nil {
			return p, fmt.Errorf("reload %s is not allowed by this bot's allowed_reload: %w", deploy.Command{Argv: d.spec.Reload}, err)
		}
	}
	path, err := filepath.EvalSymlinks(d.spec.KeystorePath)
	if err != nil {
		return p, fmt.Errorf("keystore_path: %w", err)
	}
	p.path = path
	fi, err := os.Stat(path)
	if err != nil {
		return p, fmt.Errorf("keystore_path: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return p, fmt.Errorf("keystore_path %s is not a regular file", path)
	}
	p.mode, p.own = fi.Mode().Perm(), deploy.OwnerOf(fi)
	if p.old, err = os.ReadFile(path); err != nil {
		return p, fmt.Errorf("keystore_path: %w", err)
	}
	st, pw, err := d.open(p.old, path)
	if err != nil {
		return p, err
	}
	p.pw = pw
	alias, oldLeaf, err := st.pick(d.spec.Alias)
	if err != nil {
		return p, fmt.Errorf("%s: %w", path, err)
	}
	p.alias, p.oldLeaf = alias, oldLeaf
	if oldLeaf != nil {
		p.oldFP = deploy.Fingerprint(oldLeaf)
	}
	if p.oldFP == p.newFP {
		return p, nil
	}
	if err := deploy.ProbeWritable(filepath.Dir(path)); err != nil {
		return p, err
	}
	p.content, p.notes, err = st.replace(alias, m, pw, d.known(), d.env.Now())
	if err != nil {
		return p, fmt.Errorf("%s entry %q: %w", path, alias, err)
	}
	// The new file must open as the server will open it, before it is
	// written: a bug here must refuse, not break the server.
	check, err := d.f.open(p.content, pw)
	if err != nil {
		return p, fmt.Errorf("the new keystore does not open again: %w", err)
	}
	if _, leaf, err := check.pick(alias); err != nil || leaf == nil || deploy.Fingerprint(leaf) != p.newFP {
		return p, fmt.Errorf("the new keystore does not hold the new certificate under %q (%v)", alias, err)
	}
	return p, nil
}

// known lists the passwords the job and the bot give, job's first.
func (d *Deployer) known() []protocol.Secret {
	var out []protocol.Secret
	if !d.spec.KeystorePassword.IsZero() {
		out = append(out, d.spec.KeystorePassword.Secret())
	}
	return append(out, d.env.KeystorePasswords...)
}

// open opens the store with the job's password, or when the job gives
// none with the first of the bot's that fits.
func (d *Deployer) open(data []byte, path string) (store, string, error) {
	if !d.spec.KeystorePassword.IsZero() {
		pw := d.spec.KeystorePassword.Reveal()
		st, err := d.f.open(data, pw)
		if errors.Is(err, errWrongPassword) {
			return nil, "", fmt.Errorf("keystore_password does not open %s", path)
		}
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", path, err)
		}
		return st, pw, nil
	}
	for _, s := range d.env.KeystorePasswords {
		st, err := d.f.open(data, s.Reveal())
		if errors.Is(err, errWrongPassword) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", path, err)
		}
		return st, s.Reveal(), nil
	}
	return nil, "", fmt.Errorf("no known password opens %s (the job gives no keystore_password; the bot knows %d)", path, len(d.env.KeystorePasswords))
}

func (p *plan) summary(format string, newLeaf *x509.Certificate) string {
	old := "no certificate"
	if p.oldLeaf != nil {
		old = fmt.Sprintf("%s (%s, expires %s)", short(p.oldFP), p.oldLeaf.Subject, p.oldLeaf.NotAfter.UTC().Format("2006-01-02"))
	}
	msg := fmt.Sprintf("will replace entry %q of %s keystore %s (mode %04o%s): %s with %s (%s, expires %s)",
		p.alias, format, p.path, p.mode, p.own, old,
		short(p.newFP), newLeaf.Subject, newLeaf.NotAfter.UTC().Format("2006-01-02"))
	for _, n := range p.notes {
		msg += "; " + n
	}
	return msg
}

// verify reads the keystore back from disk and checks that the entry
// holds the certificate fp, then (when endpoints are given) that every
// endpoint serves it, and reports the step.
func (d *Deployer) verify(ctx context.Context, r *deploy.Steps, p *plan, fp string) error {
	msg, err := d.check(ctx, p, fp)
	if err != nil {
		r.Add(deploy.StepVerify, false, "%v", err)
		return fmt.Errorf("verify: %w", err)
	}
	r.Add(deploy.StepVerify, true, "%s", msg)
	return nil
}

// check is verify without the report: the store's entry, then the
// endpoints.
func (d *Deployer) check(ctx context.Context, p *plan, fp string) (string, error) {
	data, err := os.ReadFile(p.path)
	if err != nil {
		return "", fmt.Errorf("read back %s: %w", p.path, err)
	}
	st, err := d.f.open(data, p.pw)
	if err != nil {
		return "", fmt.Errorf("read back %s: %w", p.path, err)
	}
	_, leaf, err := st.pick(p.alias)
	if err != nil {
		return "", fmt.Errorf("read back %s: %w", p.path, err)
	}
	got := ""
	if leaf != nil {
		got = deploy.Fingerprint(leaf)
	}
	if got != fp {
		return "", fmt.Errorf("entry %q of %s holds %s, not %s", p.alias, p.path, short(got), short(fp))
	}
	msg := fmt.Sprintf("entry %q of %s holds %s", p.alias, p.path, short(fp))
	if len(d.eps) == 0 {
		return msg, nil
	}
	em, err := deploy.VerifyEndpoints(ctx, d.eps, fp, time.Duration(d.spec.VerifyTimeout), 0)
	if err != nil {
		return "", err
	}
	return msg + "; " + em, nil
}

// rollback restores the old keystore, reloads and checks that the old
// certificate is back. cause is why.
func (d *Deployer) rollback(ctx context.Context, r *deploy.Steps, p *plan, cause error) (*deploy.Result, error) {
	prefix := "keystore: " + d.f.name()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deploy.RollbackBudget)
	defer cancel()
	var problems []string
	if _, err := deploy.ReplaceFile(p.path, p.old, p.mode, p.own); err != nil {
		problems = append(problems, "restore: "+err.Error())
	}
	reloadMsg := ""
	if len(d.spec.Reload) > 0 && len(problems) == 0 {
		msg, err := deploy.RunCommand(ctx, deploy.Command{Argv: d.spec.Reload})
		if err != nil {
			problems = append(problems, "reload: "+err.Error())
		}
		reloadMsg = "; " + msg
	}
	verifyMsg := ""
	if len(problems) == 0 {
		if now, err := os.ReadFile(p.path); err != nil || !bytes.Equal(now, p.old) {
			problems = append(problems, fmt.Sprintf("the restored %s does not read back as the backup (%v)", p.path, err))
		} else if len(d.eps) > 0 && p.oldFP != "" {
			msg, err := deploy.VerifyEndpoints(ctx, d.eps, p.oldFP, time.Duration(d.spec.VerifyTimeout), 0)
			if err != nil {
				problems = append(problems, "old certificate not served again: "+err.Error())
			} else {
				verifyMsg = "; " + msg
			}
		}
	}
	if len(problems) > 0 {
		r.Result.Outcome = deploy.OutcomeRollbackFailed
		r.Add(deploy.StepRollback, false, "ROLLBACK FAILED after %v: %s. The old keystore is in %s (manifest.json says where it goes); restore it by hand and reload the server",
			cause, strings.Join(problems, "; "), r.Result.BackupDir)
		return r.Result, fmt.Errorf("%s: %w (%s; backup in %s) after: %w", prefix, deploy.ErrRollbackFailed, strings.Join(problems, "; "), r.Result.BackupDir, cause)
	}
	r.Result.Outcome = deploy.OutcomeRolledBack
	r.Add(deploy.StepRollback, true, "rolled back after %v: old keystore restored byte for byte%s%s", cause, reloadMsg, verifyMsg)
	return r.Result, fmt.Errorf("%s: %w: %w", prefix, deploy.ErrRolledBack, cause)
}

// manifestEntry is agent/deploy's manifest line: where a backup goes.
type manifestEntry struct {
	Role     string `json:"role"`
	Original string `json:"original"`
	Backup   string `json:"backup,omitempty"`
	Mode     string `json:"mode,omitempty"`
	Owner    string `json:"owner,omitempty"`
}

// backup copies the old keystore, with its mode and owner, into a new
// timestamped directory under the backup directory (0700: it holds keys),
// with a manifest.json, all synced. The layout is agent/deploy's.
func (d *Deployer) backup(p *plan) (string, error) {
	dir, err := deploy.NewBackupDir(d.env.BackupDir, "", d.env.Now())
	if err != nil {
		return "", err
	}
	e := manifestEntry{Role: "keystore", Original: p.path, Backup: "1-" + filepath.Base(p.path),
		Mode: fmt.Sprintf("%04o", p.mode), Owner: strings.TrimSpace(p.own.String())}
	if _, err := deploy.ReplaceFile(filepath.Join(dir, e.Backup), p.old, p.mode, p.own); err != nil {
		return dir, fmt.Errorf("copy %s: %w", p.path, err)
	}
	m, _ := json.MarshalIndent([]manifestEntry{e}, "", "  ")
	if err := deploy.WriteFileAtomic(filepath.Join(dir, "manifest.json"), append(m, '\n'), 0o600); err != nil {
		return dir, err
	}
	return dir, nil
}

// short is deploy.ShortFingerprint, or "nothing" for an entry that held
// no certificate.
func short(fp string) string {
	if fp == "" {
		return "nothing"
	}
	return deploy.ShortFingerprint(fp)
}
