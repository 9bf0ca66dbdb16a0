package pkcs11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/protocol"
)

// certObject is an X.509 certificate object of a token.
type certObject struct {
	handle uint
	label  string
	id     []byte
	der    []byte
}

// certStore is a logged-in session on one token, as the deployer uses it
// (tokenSession with cgo; the stub build has none).
type certStore interface {
	tokenName() string
	tokenLocation() protocol.Location
	certs(label string) ([]certObject, error)
	keyPublic(label string, id []byte) (crypto.PublicKey, error)
	createCert(o certObject) (uint, error)
	destroy(h uint) error
	Close()
}

// Deployer puts a rotated certificate on the token that holds its key
// (P8, DeployPKCS11): a certificate object with the key's CKA_LABEL and
// CKA_ID, in place of the certificate objects that had that label. It is
// a deploy.Target.
type Deployer struct {
	spec protocol.DeploySpec
	env  deploy.Env
	log  *slog.Logger
	eps  []deploy.Endpoint
}

var _ deploy.Target = (*Deployer)(nil)

// NewDeployer validates spec and env without I/O. The token is named by
// spec.Target, a pkcs11 discovery target (RFC 7512 URI, as
// protocol.ParseTarget reads it: module-path or module-name or config,
// token/serial/slot-id selecting exactly one token, pin-value or
// pin-source), because DeploySpec has no token fields:
//
//	pkcs11:token=prod;serial=8d3c2a1b?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/emsign/hsm.pin
//
// The key is Material.KeyRef (made by KeyMaker or found by FindKey).
func NewDeployer(spec protocol.DeploySpec, env deploy.Env) (deploy.Target, error) {
	if spec.Target == "" {
		return nil, errors.New("pkcs11: deploy: target is required (the pkcs11: URI of the token holding the key)")
	}
	t, err := protocol.ParseTargetUnresolved(spec.Target)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: deploy: target: %w", err)
	}
	if t.Scheme != protocol.SchemePKCS11 {
		return nil, fmt.Errorf("pkcs11: deploy: target is a %s target, not pkcs11", t.Scheme)
	}
	if _, ok := t.PIN(); !ok && t.Param(protocol.ParamConfig) == "" {
		return nil, errors.New("pkcs11: deploy: target gives no PIN (pin-value or pin-source): writing a certificate object needs a login")
	}
	env, err = deploy.CheckEnv(env)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: deploy: %w", err)
	}
	if len(spec.Reload) > 0 && (spec.Reload[0] == "" || env.AllowReload == nil) {
		return nil, errors.New("pkcs11: deploy: reload needs argv[0] and the bot's allowed_reload rule")
	}
	if spec.VerifyTimeout < 0 {
		return nil, errors.New("pkcs11: deploy: verify_timeout must not be negative")
	}
	var eps []deploy.Endpoint
	for i, v := range spec.Verify {
		if v.Address == "" {
			return nil, fmt.Errorf("pkcs11: deploy: verify[%d].address is empty", i)
		}
		eps = append(eps, deploy.Endpoint{Address: v.Address, ServerName: v.ServerName})
	}
	return &Deployer{spec: spec, env: env, log: env.Logger, eps: eps}, nil
}

// tokenRun is the state of one Deploy.
type tokenRun struct {
	deploy.Steps
	d       *Deployer
	st      certStore
	label   string
	id      []byte
	newDER  []byte
	old     []certObject
	created uint // the new object's handle, 0 before it exists
}

// Deploy writes the certificate object: prepare (log in, check the key is
// there and matches, find the old certificate objects with the label) →
// backup (their DER in a timestamped folder with a manifest) → write
// (create the new object, then destroy the old ones) → reload → verify
// (read the object back and compare the DER; the endpoints) → rollback on
// failure (destroy the new object, recreate the old). Key objects are
// never deleted, old or new: an HSM key is removed by a human.
func (d *Deployer) Deploy(ctx context.Context, m deploy.Material, report func(deploy.Step)) (*deploy.Result, error) {
	r := &tokenRun{d: d, Steps: deploy.Steps{Result: &deploy.Result{}, Report: report, Logger: d.log, Now: d.env.Now, LogPrefix: "pkcs11: deploy: "}}
	if m.Certificate != nil {
		r.Result.Fingerprint = deploy.Fingerprint(m.Certificate)
	}
	already, err := r.prepare(ctx, m)
	if r.st != nil {
		defer r.st.Close()
	}
	if err != nil {
		return r.Refuse("pkcs11: deploy", err)
	}
	if already {
		r.Add(deploy.StepPrepare, true, "already deployed: %s holds certificate %s under label %q id %x; nothing written, only verified",
			r.st.tokenName(), deploy.ShortFingerprint(r.Result.Fingerprint), r.label, r.id)
		if err := r.verify(ctx, m.Certificate.Raw, r.Result.Fingerprint); err != nil {
			r.Result.Outcome = deploy.OutcomeFailed
			return r.Result, fmt.Errorf("pkcs11: deploy: already deployed, but %w", err)
		}
		r.Result.Outcome = deploy.OutcomeAlreadyDeployed
		return r.Result, nil
	}
	r.Add(deploy.StepPrepare, true, "will write certificate %s (%s, expires %s) on %s as label %q id %x, replacing %d certificate object(s) with that label; key objects are left as they are",
		deploy.ShortFingerprint(r.Result.Fingerprint), m.Certificate.Subject, m.Certificate.NotAfter.UTC().Format("2006-01-02"), r.st.tokenName(), r.label, r.id, len(r.old))

	dir, err := r.backup()
	r.Result.BackupDir = dir
	if err != nil {
		r.Result.Outcome = deploy.OutcomeFailed
		r.Add(deploy.StepBackup, false, "%v", err)
		return r.Result, fmt.Errorf("pkcs11: deploy: backup: %w", err)
	}
	r.Add(deploy.StepBackup, true, "%d old certificate object(s) saved (DER) in %s", len(r.old), dir)

	h, err := r.st.createCert(certObject{label: r.label, id: r.id, der: r.newDER})
	if err != nil {
		r.Result.Outcome = deploy.OutcomeFailed
		r.Add(deploy.StepWrite, false, "create the certificate object: %v", err)
		return r.Result, fmt.Errorf("pkcs11: deploy: write (nothing changed): %w", err)
	}
	r.created = h
	for _, o := range r.old {
		if err := r.st.destroy(o.handle); err != nil {
			r.Add(deploy.StepWrite, false, "remove the old certificate object id %x: %v", o.id, err)
			return r.rollback(ctx, fmt.Errorf("write: %w", err))
		}
	}
	r.Add(deploy.StepWrite, true, "certificate object written on %s (label %q, id %x); %d old one(s) removed", r.st.tokenName(), r.label, r.id, len(r.old))

	if len(d.spec.Reload) > 0 {
		msg, err := deploy.RunCommand(ctx, deploy.Command{Argv: d.spec.Reload})
		if err != nil {
			r.Add(deploy.StepReload, false, "%v", err)
			return r.rollback(ctx, fmt.Errorf("reload: %w", err))
		}
		r.Add(deploy.StepReload, true, "%s", msg)
	}
	if err := r.verify(ctx, r.newDER, r.Result.Fingerprint); err != nil {
		return r.rollback(ctx, err)
	}
	r.Result.Outcome = deploy.OutcomeDeployed
	return r.Result, nil
}

// prepare checks everything and opens the token; it changes nothing.
func (r *tokenRun) prepare(ctx context.Context, m deploy.Material) (already bool, err error) {
	d := r.d
	if m.Certificate == nil {
		return false, errors.New("no new certificate")
	}
	if m.KeyRef == nil || m.KeyRef.Label == "" || m.KeyRef.ID == "" {
		return false, errors.New("no token key (KeyRef with label and id): a pkcs11 deployment writes the certificate beside a key made on the token")
	}
	if r.id, err = hex.DecodeString(m.KeyRef.ID); err != nil || len(r.id) == 0 {
		return false, fmt.Errorf("key id %q is not hex", m.KeyRef.ID)
	}
	r.label, r.newDER = m.KeyRef.Label, m.Certificate.Raw
	if len(d.spec.Reload) > 0 {
		if err := d.env.AllowReload(d.spec.Reload); err != nil {
			return false, fmt.Errorf("reload %q is not allowed by this bot's allowed_reload: %w", strings.Join(d.spec.Reload, " "), err)
		}
	}
	t, err := protocol.ParseTarget(d.spec.Target)
	if err != nil {
		return false, fmt.Errorf("target: %w", err)
	}
	set, err := resolve(t)
	if err != nil {
		return false, err
	}
	if !set.hasPIN {
		return false, errors.New("the target gives no PIN: writing a certificate object needs a login")
	}
	if r.st, err = openCertStore(ctx, set, d.log); err != nil {
		return false, err
	}
	pub, err := r.st.keyPublic(r.label, r.id)
	if err != nil {
		return false, fmt.Errorf("%s: %w", r.st.tokenName(), err)
	}
	if eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(m.Certificate.PublicKey) {
		return false, fmt.Errorf("the new certificate %s (%s) is not for the key labelled %q id %x on %s: nothing touched",
			deploy.ShortFingerprint(r.Result.Fingerprint), m.Certificate.Subject, r.label, r.id, r.st.tokenName())
	}
	objs, err := r.st.certs(r.label)
	if err != nil {
		return false, fmt.Errorf("%s: list certificates: %w", r.st.tokenName(), err)
	}
	for _, o := range objs {
		if bytes.Equal(o.der, r.newDER) && bytes.Equal(o.id, r.id) && len(objs) == 1 {
			return true, nil
		}
	}
	r.old = objs
	if len(objs) > 0 {
		if c, err := x509.ParseCertificate(objs[0].der); err == nil {
			r.Result.OldFingerprint = deploy.Fingerprint(c)
		}
	}
	return false, nil
}

// verify reads the label's certificate objects back: exactly one, with
// the DER and id written; then the endpoints, if any.
func (r *tokenRun) verify(ctx context.Context, der []byte, fp string) error {
	msg, err := r.check(ctx, der, fp)
	if err != nil {
		r.Add(deploy.StepVerify, false, "%v", err)
		return fmt.Errorf("verify: %w", err)
	}
	r.Add(deploy.StepVerify, true, "%s", msg)
	return nil
}

func (r *tokenRun) check(ctx context.Context, der []byte, fp string) (string, error) {
	objs, err := r.st.certs(r.label)
	if err != nil {
		return "", fmt.Errorf("read back: %w", err)
	}
	if len(objs) != 1 || !bytes.Equal(objs[0].der, der) || !bytes.Equal(objs[0].id, r.id) {
		return "", fmt.Errorf("read back: %s has %d certificate object(s) labelled %q, not exactly the one written", r.st.tokenName(), len(objs), r.label)
	}
	msg := fmt.Sprintf("%s holds certificate %s as label %q id %x (read back, DER equal)", r.st.tokenName(), deploy.ShortFingerprint(fp), r.label, r.id)
	if len(r.d.eps) == 0 {
		return msg, nil
	}
	em, err := deploy.VerifyEndpoints(ctx, r.d.eps, fp, time.Duration(r.d.spec.VerifyTimeout), 0)
	if err != nil {
		return "", err
	}
	return msg + "; " + em, nil
}

// rollback removes the new object, recreates the old ones, reloads and
// checks the old certificate is back.
func (r *tokenRun) rollback(ctx context.Context, cause error) (*deploy.Result, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deploy.RollbackBudget)
	defer cancel()
	var problems []string
	if r.created != 0 {
		if err := r.st.destroy(r.created); err != nil {
			problems = append(problems, "remove the new object: "+err.Error())
		}
	}
	now, err := r.st.certs(r.label)
	if err != nil {
		problems = append(problems, "list: "+err.Error())
	}
	for _, o := range r.old {
		present := false
		for _, n := range now {
			present = present || (bytes.Equal(n.der, o.der) && bytes.Equal(n.id, o.id))
		}
		if present {
			continue
		}
		if _, err := r.st.createCert(o); err != nil {
			problems = append(problems, fmt.Sprintf("recreate the old certificate id %x: %v", o.id, err))
		}
	}
	reloadMsg := ""
	if len(r.d.spec.Reload) > 0 && len(problems) == 0 {
		msg, err := deploy.RunCommand(ctx, deploy.Command{Argv: r.d.spec.Reload})
		if err != nil {
			problems = append(problems, "reload: "+err.Error())
		}
		reloadMsg = "; " + msg
	}
	if len(problems) == 0 && len(r.d.eps) > 0 && r.Result.OldFingerprint != "" {
		if _, err := deploy.VerifyEndpoints(ctx, r.d.eps, r.Result.OldFingerprint, time.Duration(r.d.spec.VerifyTimeout), 0); err != nil {
			problems = append(problems, "old certificate not served again: "+err.Error())
		}
	}
	if len(problems) > 0 {
		r.Result.Outcome = deploy.OutcomeRollbackFailed
		r.Add(deploy.StepRollback, false, "ROLLBACK FAILED after %v: %s. The old certificates (DER) are in %s (manifest.json says label and id of each); write them back with pkcs11-tool --write-object",
			cause, strings.Join(problems, "; "), r.Result.BackupDir)
		return r.Result, fmt.Errorf("pkcs11: deploy: %w (%s; backup in %s) after: %w", deploy.ErrRollbackFailed, strings.Join(problems, "; "), r.Result.BackupDir, cause)
	}
	r.Result.Outcome = deploy.OutcomeRolledBack
	r.Add(deploy.StepRollback, true, "rolled back after %v: new certificate object removed, %d old one(s) in place%s", cause, len(r.old), reloadMsg)
	return r.Result, fmt.Errorf("pkcs11: deploy: %w: %w", deploy.ErrRolledBack, cause)
}

// backupEntry is a manifest line: one old certificate object.
type backupEntry struct {
	Role     string `json:"role"`
	Original string `json:"original"` // the object's RFC 7512 URI
	Backup   string `json:"backup"`
	Label    string `json:"label"`
	ID       string `json:"id"`
}

// backup saves the old certificate objects' DER in a new timestamped
// folder under the backup directory, with a manifest, all synced (the
// layout of agent/deploy's backups).
func (r *tokenRun) backup() (string, error) {
	dir, err := deploy.NewBackupDir(r.d.env.BackupDir, "", r.d.env.Now())
	if err != nil {
		return "", err
	}
	manifest := []backupEntry{}
	for i, o := range r.old {
		name := fmt.Sprintf("%d-cert-%x.der", i+1, o.id)
		if err := deploy.WriteFileAtomic(filepath.Join(dir, name), o.der, 0o600); err != nil {
			return dir, err
		}
		loc := objectLocation(r.st.tokenLocation(), o.label, "cert", o.id, "")
		manifest = append(manifest, backupEntry{Role: "pkcs11-certificate", Original: loc.String(), Backup: name, Label: o.label, ID: hex.EncodeToString(o.id)})
	}
	m, _ := json.MarshalIndent(manifest, "", "  ")
	if err := deploy.WriteFileAtomic(filepath.Join(dir, "manifest.json"), append(m, '\n'), 0o600); err != nil {
		return dir, err
	}
	return dir, nil
}
