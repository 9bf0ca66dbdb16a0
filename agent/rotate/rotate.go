// Package rotate runs a rotation job on the bot (B9, P1-P8): it makes the
// key where the job says (or keeps the existing one), builds the CSR from
// the template and the old certificate, posts it until the certificate
// comes back, and deploys it through the deploy.Target of the location's
// kind (backup, atomic replace, reload, verify, rollback), reporting every
// step. The key of a rotation in progress is kept in the state directory
// until the rotation ends, so a restarted bot or a job delivered again
// posts the same CSR and the control plane orders once.
package rotate

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emsign/bot/agent/client"
	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/agent/keygen"
	"github.com/emsign/bot/protocol"
)

// Defaults of Config.
const (
	DefaultPollInterval = 5 * time.Second
	DefaultTimeout      = 15 * time.Minute
	// maxRetryAfter bounds one wait on a pending answer, whatever the
	// control plane asks: a bad RetryAfter must not park a worker for a day.
	maxRetryAfter = 5 * time.Minute
)

// Client posts a rotation's CSR (agent/client.Client implements it).
type Client interface {
	OrderCSR(ctx context.Context, orderID string, csrPEM []byte) (protocol.OrderCertificate, error)
}

// Config configures a Rotator.
type Config struct {
	Client Client
	// StateDir is the bot's state directory: the keys of rotations in
	// progress live in StateDir/rotations/<order>.key (0600).
	StateDir string
	// Env is handed to every target. Env.BackupDir defaults to
	// StateDir/backups; Env.AllowReload to AllowReload(nil) (nothing is
	// allowed); Env.Logger and Env.Now to Logger and Now.
	Env deploy.Env
	// Targets maps a deploy kind to its factory; nil means
	// DefaultTargets().
	Targets map[string]TargetFactory
	// KeyMaker makes and finds keys on PKCS#11 tokens; nil fails pkcs11
	// rotations with "no PKCS#11 support in this build".
	KeyMaker TokenKeyMaker
	// PollInterval is the wait after a pending answer without RetryAfter,
	// and the first wait after a failed post (doubling up to a minute).
	PollInterval time.Duration
	// Timeout bounds the wait for the certificate (DefaultTimeout).
	Timeout time.Duration
	Logger  *slog.Logger
	Now     func() time.Time
}

// Rotator runs rotation jobs. It is safe for concurrent use; two runs of
// the same order at once are refused.
type Rotator struct {
	cfg  Config
	log  *slog.Logger
	keys keyStore

	mu      sync.Mutex
	running map[string]bool // orders
}

// New validates cfg and fills in defaults; it does no I/O.
func New(cfg Config) (*Rotator, error) {
	if cfg.Client == nil {
		return nil, errors.New("rotate: no client")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("rotate: state_dir is empty")
	}
	if cfg.PollInterval < 0 || cfg.Timeout < 0 {
		return nil, errors.New("rotate: poll_interval and timeout must not be negative")
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Targets == nil {
		cfg.Targets = DefaultTargets()
	} else {
		cfg.Targets = maps.Clone(cfg.Targets)
	}
	for kind, f := range cfg.Targets {
		if f == nil {
			return nil, fmt.Errorf("rotate: targets[%q] is nil", kind)
		}
	}
	if cfg.Env.BackupDir == "" {
		cfg.Env.BackupDir = filepath.Join(cfg.StateDir, "backups")
	}
	if cfg.Env.AllowReload == nil {
		cfg.Env.AllowReload = AllowReload(nil)
	}
	if cfg.Env.Logger == nil {
		cfg.Env.Logger = cfg.Logger
	}
	if cfg.Env.Now == nil {
		cfg.Env.Now = cfg.Now
	}
	return &Rotator{cfg: cfg, log: cfg.Logger, keys: keyStore{dir: filepath.Join(cfg.StateDir, RotationsDir)},
		running: map[string]bool{}}, nil
}

// Kinds lists the deploy kinds this rotator can deploy to.
func (r *Rotator) Kinds() []string { return slices.Sorted(maps.Keys(r.cfg.Targets)) }

// run is the state of one Run.
type run struct {
	r     *Rotator
	log   *slog.Logger
	res   protocol.RotationResult
	cur   string // the step running, for a failure that has no step yet
	final bool   // the rotation is over for good: drop the kept key
}

func (x *run) step(name string, ok bool, format string, args ...any) {
	s := protocol.RotationStep{Name: name, OK: ok, Message: fmt.Sprintf(format, args...), Time: x.r.cfg.Now().UTC()}
	x.res.Steps = append(x.res.Steps, s)
	if ok {
		x.log.Info("rotation: "+name, "message", s.Message)
	} else {
		x.log.Warn("rotation: "+name+" failed", "message", s.Message)
	}
}

// fail ends the rotation as failed with a failed step.
func (x *run) fail(name string, err error) {
	x.step(name, false, "%v", err)
	x.res.Outcome = protocol.OutcomeFailed
}

// Run runs one rotation to its end and reports it; it never panics and
// returns no error: every failure is an outcome with steps saying why.
// keystorePasswords (KeystorePasswords of the bot's current targets) are
// tried after Env.KeystorePasswords on an existing keystore. Secrets
// (PINs, keystore passwords) never appear in the result.
func (r *Rotator) Run(ctx context.Context, jobID string, rot protocol.Rotation, keystorePasswords ...protocol.Secret) (res protocol.RotationResult) {
	x := &run{r: r, log: r.log.With("job", jobID, "order", rot.OrderID), res: protocol.RotationResult{OrderID: rot.OrderID}, cur: protocol.StepPrepare}
	defer func() {
		if p := recover(); p != nil {
			x.log.Error("rotation panicked", "panic", p, "stack", string(debug.Stack()))
			x.fail(x.cur, fmt.Errorf("internal error in the bot during %s: %v", x.cur, p))
		}
		if x.res.Steps == nil {
			x.res.Steps = []protocol.RotationStep{}
		}
		res = x.res
	}()
	if !idRE.MatchString(rot.OrderID) {
		x.fail(protocol.StepPrepare, fmt.Errorf("order_id %q is not a usable order id", rot.OrderID))
		return
	}
	r.mu.Lock()
	busy := r.running[rot.OrderID]
	r.running[rot.OrderID] = true
	r.mu.Unlock()
	if busy {
		x.fail(protocol.StepPrepare, fmt.Errorf("a rotation of order %s is already running on this bot", rot.OrderID))
		return
	}
	defer func() {
		r.mu.Lock()
		delete(r.running, rot.OrderID)
		r.mu.Unlock()
	}()
	defer func() {
		if !x.final {
			return
		}
		if err := r.keys.remove(rot.OrderID); err != nil {
			x.log.Error("rotation ended but its kept key could not be removed", "error", err)
		}
	}()
	env := r.cfg.Env
	env.KeystorePasswords = append(slices.Clone(env.KeystorePasswords), keystorePasswords...)
	x.execute(ctx, rot, env)
	return
}

// execute is Run's body.
func (x *run) execute(ctx context.Context, rot protocol.Rotation, env deploy.Env) {
	r := x.r
	// Everything that can be checked is checked before a key is made or a
	// CSR posted: a job the bot cannot deploy must not order a certificate.
	existing, err := validate(rot)
	if err != nil {
		x.fail(protocol.StepPrepare, err)
		return
	}
	var old *x509.Certificate
	if len(rot.OldCertificate) > 0 {
		if old, err = x509.ParseCertificate(rot.OldCertificate); err != nil {
			x.fail(protocol.StepPrepare, fmt.Errorf("old_certificate does not parse: %w", err))
			return
		}
	}
	spec := rot.Deploy
	var loc *pemLocation
	if spec.Kind == protocol.DeployPEM {
		if loc, err = resolvePEM(spec); err != nil {
			x.fail(protocol.StepPrepare, err)
			return
		}
		spec.KeyPath = loc.keyPath
		if old == nil {
			old = loc.leaf
		}
	}
	factory, ok := r.cfg.Targets[spec.Kind]
	if !ok {
		x.fail(protocol.StepPrepare, fmt.Errorf("deploy.kind %q: this bot deploys to %s only", spec.Kind, strings.Join(r.Kinds(), ", ")))
		return
	}
	target, err := factory(spec, env)
	if err != nil {
		x.fail(protocol.StepPrepare, err)
		return
	}

	x.cur = protocol.StepKey
	key, err := r.obtainKey(ctx, rot, existing, loc)
	if err != nil {
		x.fail(protocol.StepKey, err)
		return
	}
	// A token signer holds the module's session and lock: it is closed as
	// soon as the CSR is signed, before a token target opens its own.
	closed := false
	closeKey := func() {
		if !closed {
			closed = true
			key.close()
		}
	}
	defer closeKey()
	if key.memory == nil && spec.Kind != protocol.DeployPKCS11 {
		x.fail(protocol.StepKey, fmt.Errorf("a key made on a PKCS#11 token can be deployed to a pkcs11 location only, not %s", spec.Kind))
		return
	}
	msg := key.msg
	if loc != nil && loc.found {
		msg += fmt.Sprintf("; key file %s (found beside the certificate)", loc.keyPath)
	}
	x.step(protocol.StepKey, true, "%s", msg)

	x.cur = protocol.StepCSR
	csrPEM, csr, err := x.buildCSR(rot, old, key)
	pub := key.signer.Public()
	closeKey()
	if err != nil {
		x.fail(protocol.StepCSR, err)
		return
	}
	// On disk before the post: a restart from here posts the same CSR.
	if err := r.keys.save(rot.OrderID, persisted{Key: persistKey(key), Token: persistToken(key), CSR: csrPEM}); err != nil {
		x.fail(protocol.StepCSR, err)
		return
	}
	issued, err := x.order(ctx, rot.OrderID, csrPEM, csr)
	if err != nil {
		x.fail(x.cur, err)
		return
	}

	x.cur = protocol.StepIssued
	cert, chain, err := parseIssued(issued)
	if err == nil && !samePublic(cert.PublicKey, pub) {
		err = fmt.Errorf("the certificate that came back (serial %s) is not for the key of this rotation: not deployed", serialHex(cert))
	}
	if err != nil {
		// The order is answered: a retry would get the same answer.
		x.final = true
		x.fail(protocol.StepIssued, err)
		return
	}
	x.step(protocol.StepIssued, true, "serial %s, not after %s, issuer %s, %d chain certificate(s)",
		serialHex(cert), cert.NotAfter.UTC().Format(time.RFC3339), cert.Issuer, len(chain))

	x.cur = protocol.StepPrepare
	m := deploy.Material{Certificate: cert, Chain: chain, Key: key.memory, KeyRef: key.token}
	if key.memory != nil {
		if loc != nil {
			m.KeyPEM, _, err = keygen.MarshalLike(key.memory, loc.keyFile)
		} else {
			m.KeyPEM, err = pkcs8PEM(key.memory)
		}
		if err != nil {
			x.final = true
			x.fail(protocol.StepPrepare, fmt.Errorf("write the key for the location: %w", err))
			return
		}
	}
	dres, derr := target.Deploy(ctx, m, func(s deploy.Step) {
		x.res.Steps = append(x.res.Steps, protocol.RotationStep{Name: s.Name, OK: s.OK, Message: s.Message, Time: s.Time.UTC()})
		x.cur = s.Name
	})
	if dres == nil {
		x.final = true
		x.fail(protocol.StepPrepare, fmt.Errorf("deploy: %w", derr))
		return
	}
	x.res.Outcome = dres.Outcome
	switch dres.Outcome {
	case protocol.OutcomeDeployed, protocol.OutcomeAlreadyDeployed:
		x.res.Fingerprint = deploy.Fingerprint(cert)
		x.final = true
		x.log.Info("rotation done", "outcome", dres.Outcome, "fingerprint", x.res.Fingerprint)
	case protocol.OutcomeRollbackFailed:
		// The new key may be what the location holds now: kept for the
		// person who finishes by hand.
		x.log.Error("rotation failed and its rollback too", "error", derr, "kept_key", filepath.Join(r.keys.dir, r.keys.name(rot.OrderID)))
	default:
		x.final = true
		x.log.Warn("rotation not deployed", "outcome", dres.Outcome, "error", derr)
	}
}

// validate checks what the rotation asks before anything is done; it says
// whether the existing key is kept.
func validate(rot protocol.Rotation) (existing bool, err error) {
	switch rot.Action {
	case protocol.ActionRotate, protocol.ActionRekey:
	case protocol.ActionRenew:
		existing = true
	default:
		return false, fmt.Errorf("action %q: want rotate, rekey or renew", rot.Action)
	}
	existing = existing || rot.Key.Existing
	switch rot.Key.Where {
	case protocol.KeyWhereSoftware, protocol.KeyWherePKCS12, protocol.KeyWherePKCS11:
	default:
		return false, fmt.Errorf("key.where %q: want software, pkcs12 or pkcs11", rot.Key.Where)
	}
	if !existing && !slices.Contains(keygen.Algorithms(), keygen.Algorithm(rot.Key.Algorithm)) {
		return false, fmt.Errorf("key.algorithm %q: want one of %v", rot.Key.Algorithm, keygen.Algorithms())
	}
	if rot.Key.Where == protocol.KeyWherePKCS11 && rot.Key.PKCS11 == nil {
		return false, errors.New("key.pkcs11 is not set: the token is not named")
	}
	if rot.Deploy.Kind == "" {
		return false, errors.New("deploy.kind is empty")
	}
	return existing, nil
}

// template is the CSR template of spec (P1), with the old certificate's
// subject and SANs where the template leaves them empty and says so.
func template(spec protocol.CSRSpec, old *x509.Certificate) (keygen.Template, error) {
	t := keygen.Template{
		CommonName: spec.CommonName, Organization: spec.Organization, OrganizationalUnit: spec.OrganizationalUnit,
		Locality: spec.Locality, Province: spec.Province, Country: spec.Country, Email: spec.Email,
		DNSNames: spec.DNSNames, EmailAddresses: spec.EmailAddresses, URIStrings: spec.URIs,
		SignatureAlgorithm: spec.SignatureAlgorithm,
	}
	for _, a := range spec.ExtraNames {
		t.ExtraNames = append(t.ExtraNames, keygen.Attribute{OID: a.OID, Value: a.Value})
	}
	for i, s := range spec.IPAddresses {
		ip := net.ParseIP(s)
		if ip == nil {
			return t, fmt.Errorf("csr.ip_addresses[%d] %q is not an IP address", i, s)
		}
		t.IPAddresses = append(t.IPAddresses, ip)
	}
	if spec.CopyFromCertificate {
		if old == nil {
			return t, errors.New("csr.copy_from_certificate is set but the job carries no old_certificate")
		}
		t = t.WithDefaults(old)
	}
	return t, nil
}

// buildCSR is the CSR of this rotation: the one an earlier run of the
// order posted when it is for the same key, else a new one.
func (x *run) buildCSR(rot protocol.Rotation, old *x509.Certificate, key *rotKey) ([]byte, *x509.CertificateRequest, error) {
	if key.csr != nil {
		if b, _ := pem.Decode(key.csr); b != nil {
			if csr, err := x509.ParseCertificateRequest(b.Bytes); err == nil && samePublic(csr.PublicKey, key.signer.Public()) {
				return key.csr, csr, nil
			}
		}
		x.log.Warn("the CSR kept for this order is not for its key; making a new one")
	}
	t, err := template(rot.CSR, old)
	if err != nil {
		return nil, nil, err
	}
	csr, err := keygen.CreateCSR(t, key.signer, nil)
	if err != nil {
		return nil, nil, err
	}
	return keygen.EncodeCSR(csr), csr, nil
}

// order posts the CSR until the certificate comes back: a pending answer
// waits its RetryAfter (bounded), a failed post is retried with a growing
// wait, a refusal (4xx) ends it; all within Config.Timeout.
func (x *run) order(ctx context.Context, orderID string, csrPEM []byte, csr *x509.CertificateRequest) (protocol.OrderCertificate, error) {
	r := x.r
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	names := describeCSR(csr)
	posted, pending, failures := false, 0, 0
	for {
		oc, err := r.cfg.Client.OrderCSR(ctx, orderID, csrPEM)
		var wait time.Duration
		switch {
		case err == nil && oc.Status == protocol.OrderIssued:
			if !posted {
				x.step(protocol.StepCSR, true, "CSR for %s posted", names)
			}
			x.cur = protocol.StepIssued
			return oc, nil
		case err == nil && oc.Status == protocol.OrderPending:
			if !posted {
				posted = true
				x.step(protocol.StepCSR, true, "CSR for %s posted; the CA is working on it", names)
				x.cur = protocol.StepIssued
			}
			pending++
			wait = time.Duration(oc.RetryAfter)
			if wait <= 0 {
				wait = r.cfg.PollInterval
			}
			wait = min(wait, maxRetryAfter)
			x.log.Info("certificate pending", "answers", pending, "retry_in", wait.String())
		case err == nil:
			err = fmt.Errorf("the control plane answered the CSR with status %q", oc.Status)
			fallthrough
		case client.IsPermanent(err):
			x.final = true // refused for good: a retry gets the same answer
			return oc, fmt.Errorf("order %s: %w", orderID, err)
		default:
			if ctx.Err() != nil {
				return oc, x.gaveUp(ctx, orderID, pending, err)
			}
			wait = min(r.cfg.PollInterval<<min(failures, 10), time.Minute)
			failures++
			x.log.Warn("posting the CSR failed; retrying", "error", err, "retry_in", wait.String())
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return oc, x.gaveUp(ctx, orderID, pending, nil)
		case <-t.C:
		}
	}
}

func (x *run) gaveUp(ctx context.Context, orderID string, pending int, last error) error {
	var why string
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		why = fmt.Sprintf("no certificate for order %s within %s (%d pending answers)", orderID, x.r.cfg.Timeout, pending)
	} else {
		why = fmt.Sprintf("the bot stopped while waiting for the certificate of order %s", orderID)
	}
	if last != nil {
		why += fmt.Sprintf("; last error: %v", last)
	}
	return fmt.Errorf("%s; its key and CSR are kept: the order sent again posts the same CSR", why)
}

func describeCSR(csr *x509.CertificateRequest) string {
	var sans []string
	sans = append(sans, csr.DNSNames...)
	for _, ip := range csr.IPAddresses {
		sans = append(sans, ip.String())
	}
	sans = append(sans, csr.EmailAddresses...)
	for _, u := range csr.URIs {
		sans = append(sans, u.String())
	}
	s := fmt.Sprintf("%q", csr.Subject.String())
	if len(sans) > 0 {
		s += " with SANs " + strings.Join(sans, ", ")
	}
	return s
}

// parseIssued reads the certificate and chain of an issued answer.
func parseIssued(oc protocol.OrderCertificate) (*x509.Certificate, []*x509.Certificate, error) {
	certs, err := deploy.ParseCertificatesPEM([]byte(oc.Certificate))
	if err != nil || len(certs) == 0 {
		return nil, nil, fmt.Errorf("the issued answer holds no readable certificate: %v", err)
	}
	chain, err := deploy.ParseCertificatesPEM([]byte(oc.Chain))
	if err != nil {
		return nil, nil, fmt.Errorf("the issued chain does not parse: %w", err)
	}
	// Certificates after the leaf are the chain's start.
	return certs[0], append(certs[1:], chain...), nil
}

func serialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// persistKey is the key to keep for a restart: a new key made in memory.
func persistKey(k *rotKey) crypto.Signer {
	if k.existing {
		return nil
	}
	return k.memory
}

// persistToken is the token key to name for a restart: a new one.
func persistToken(k *rotKey) *deploy.TokenKey {
	if k.existing {
		return nil
	}
	return k.token
}
