package ldap

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/protocol"
)

// rollbackBudget bounds the rollback when the job's context is already
// done: a cancelled job must still put the old values back.
const rollbackBudget = 2 * time.Minute

// deployAttrs are the attributes a certificate is deployed to: those whose
// values are one DER certificate each. crossCertificatePair and
// userSMIMECertificate hold other structures and are not written.
var deployAttrs = []string{"userCertificate", "cACertificate"}

// attrName matches an attribute description: a name and options
// (userCertificate;binary).
var attrName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]*(;[A-Za-z0-9-]+)*$`)

// Deployer puts a new certificate into an LDAP entry's certificate
// attribute (P8). It is a deploy.Target: prepare (bind, read the entry),
// backup (the old values, to a JSON file), write (one Modify that deletes
// the replaced values and adds the new one, atomic on the server), verify
// (read again), and rollback (a Modify putting the old values back).
//
// The values replaced are those that are certificates for the same
// subject as the new one (same non-empty subject DN, or, when either
// subject is empty, the same non-empty set of subject alternative names);
// every other value is kept. The key is not written: an LDAP certificate
// attribute publishes the certificate only.
type Deployer struct {
	target     string // the target URI, parsed (and its secrets resolved) in Deploy
	dn         string
	attr       string
	verify     []deploy.Endpoint
	verifyWait time.Duration
	backupDir  string
	src        *Source
	log        *slog.Logger
	now        func() time.Time
	// afterWrite, when set (by tests), runs between the write and the
	// verify step, as a second writer of the directory would.
	afterWrite func(ctx context.Context)
}

var _ deploy.Target = (*Deployer)(nil)

// NewDeployer validates a DeployLDAP spec: spec.Target is the ldap:// or
// ldaps:// discovery target (with bind_dn and password), spec.Object is
// "ENTRY-DN#ATTRIBUTE" (DeployObject makes it from a location). It does no
// I/O: the target's env: and file: secrets are resolved by Deploy.
func NewDeployer(spec protocol.DeploySpec, env deploy.Env) (deploy.Target, error) {
	if spec.Kind != "" && spec.Kind != protocol.DeployLDAP {
		return nil, fmt.Errorf("ldap: deploy kind %q: want %s", spec.Kind, protocol.DeployLDAP)
	}
	t, err := protocol.ParseTargetUnresolved(spec.Target)
	if err != nil {
		return nil, fmt.Errorf("ldap: deploy target: %w", err)
	}
	if t.Scheme != protocol.SchemeLDAP && t.Scheme != protocol.SchemeLDAPS {
		return nil, fmt.Errorf("ldap: deploy target: scheme %s: want ldap or ldaps", t.Scheme)
	}
	dn, attr, err := parseObject(spec.Object)
	if err != nil {
		return nil, err
	}
	if len(spec.Reload) > 0 {
		return nil, errors.New("ldap: deploy reload: not supported (a directory has nothing to reload); leave it empty")
	}
	for _, p := range []struct{ name, v string }{{"cert_path", spec.CertPath}, {"key_path", spec.KeyPath}, {"chain_path", spec.ChainPath}, {"keystore_path", spec.KeystorePath}} {
		if p.v != "" {
			return nil, fmt.Errorf("ldap: deploy %s: not used for ldap (the entry and attribute are in object)", p.name)
		}
	}
	if env.BackupDir == "" || !filepath.IsAbs(env.BackupDir) {
		return nil, fmt.Errorf("ldap: deploy backup dir %q: want an absolute path", env.BackupDir)
	}
	var eps []deploy.Endpoint
	for i, v := range spec.Verify {
		if h, p, err := net.SplitHostPort(v.Address); err != nil || h == "" || p == "" {
			return nil, fmt.Errorf("ldap: deploy verify[%d] address %q: want HOST:PORT", i, v.Address)
		}
		eps = append(eps, deploy.Endpoint{Address: v.Address, ServerName: v.ServerName})
	}
	if spec.VerifyTimeout < 0 {
		return nil, errors.New("ldap: deploy verify_timeout: must not be negative")
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := env.Now
	if now == nil {
		now = time.Now
	}
	src, err := New(Config{Logger: log, Now: now})
	if err != nil {
		return nil, err
	}
	return &Deployer{target: spec.Target, dn: dn, attr: attr, verify: eps, verifyWait: time.Duration(spec.VerifyTimeout),
		backupDir: filepath.Clean(env.BackupDir), src: src, log: log, now: now}, nil
}

// parseObject reads "ENTRY-DN#ATTRIBUTE". The attribute is after the last
// '#': a DN may hold one (a hex value, cn=#04...), an attribute never.
func parseObject(obj string) (dn, attr string, err error) {
	i := strings.LastIndexByte(obj, '#')
	if i < 0 {
		return "", "", fmt.Errorf("ldap: deploy object %q: want ENTRY-DN#ATTRIBUTE (e.g. cn=web,ou=servers,dc=example,dc=com#userCertificate;binary)", obj)
	}
	dn, attr = strings.TrimSpace(obj[:i]), strings.TrimSpace(obj[i+1:])
	if dn == "" {
		return "", "", fmt.Errorf("ldap: deploy object %q: the entry DN is empty", obj)
	}
	if _, err := goldap.ParseDN(dn); err != nil {
		return "", "", fmt.Errorf("ldap: deploy object: entry DN %q: %w", dn, err)
	}
	if !attrName.MatchString(attr) {
		return "", "", fmt.Errorf("ldap: deploy object %q: attribute %q is not an attribute description", obj, attr)
	}
	base, _, _ := strings.Cut(attr, ";")
	if !slices.ContainsFunc(deployAttrs, func(a string) bool { return strings.EqualFold(a, base) }) {
		return "", "", fmt.Errorf("ldap: deploy object %q: attribute %s: want userCertificate or cACertificate (with or without ;binary)", obj, attr)
	}
	return dn, attr, nil
}

// DeployObject is the DeploySpec.Object for an LDAP location as discovery
// reports it (ldap://HOST/DN?ATTRIBUTE#INDEX): "DN#ATTRIBUTE". The value
// index is dropped: which values are replaced is decided on the new
// certificate's subject (see Deployer).
func DeployObject(loc protocol.Location) (string, error) {
	if loc.Scheme != protocol.SchemeLDAP && loc.Scheme != protocol.SchemeLDAPS {
		return "", fmt.Errorf("ldap: location scheme %s: want ldap or ldaps", loc.Scheme)
	}
	obj := strings.TrimPrefix(loc.Path, "/") + "#" + loc.Query
	if _, _, err := parseObject(obj); err != nil {
		return "", err
	}
	return obj, nil
}

// plan is what prepare found: the values now there and what changes.
type plan struct {
	values   [][]byte // the attribute's values as read
	replaced [][]byte // the values the new certificate replaces
	kept     int
	newDER   []byte
	newFP    string
	already  bool
}

// run is the state of one Deploy.
type run struct {
	d      *Deployer
	report func(deploy.Step)
	res    *deploy.Result
	pw     string // scrubbed from every message
}

func (r *run) step(name string, ok bool, format string, args ...any) {
	s := deploy.Step{Name: name, OK: ok, Message: scrub(fmt.Sprintf(format, args...), r.pw), Time: r.d.now()}
	r.res.Steps = append(r.res.Steps, s)
	if ok {
		r.d.log.Info("ldap deploy: "+name, "entry", r.d.dn, "message", s.Message)
	} else {
		r.d.log.Warn("ldap deploy: "+name+" failed", "entry", r.d.dn, "message", s.Message)
	}
	if r.report != nil {
		r.report(s)
	}
}

// fail ends a deployment that changed nothing.
func (r *run) fail(name string, err error) (*deploy.Result, error) {
	r.res.Outcome = deploy.OutcomeFailed
	// Inner errors may carry the package prefix: the result says it once.
	msg := strings.TrimPrefix(scrub(err.Error(), r.pw), "ldap: ")
	r.step(name, false, "%s", msg)
	return r.res, fmt.Errorf("ldap: deploy %s: %w: %s", name, deploy.ErrRefused, msg)
}

// Deploy puts m.Certificate into the attribute (m.Key is not used).
func (d *Deployer) Deploy(ctx context.Context, m deploy.Material, report func(deploy.Step)) (*deploy.Result, error) {
	r := &run{d: d, report: report, res: &deploy.Result{}}
	if m.Certificate == nil {
		return r.fail(deploy.StepPrepare, errors.New("no certificate to deploy"))
	}
	r.res.Fingerprint = deploy.Fingerprint(m.Certificate)
	t, err := protocol.ParseTarget(d.target)
	if err != nil {
		return r.fail(deploy.StepPrepare, fmt.Errorf("target: %w", err))
	}
	srv, _, err := d.src.plan(t)
	if err != nil {
		return r.fail(deploy.StepPrepare, err)
	}
	r.pw = srv.password.Reveal()

	conn, closeConn, err := d.src.connect(ctx, srv)
	if err != nil {
		return r.fail(deploy.StepPrepare, err)
	}
	defer func() { closeConn() }()
	values, err := d.read(ctx, conn)
	if err != nil {
		return r.fail(deploy.StepPrepare, err)
	}
	p, err := d.prepare(values, m.Certificate)
	if err != nil {
		return r.fail(deploy.StepPrepare, err)
	}
	if len(p.replaced) > 0 {
		if c, err := x509.ParseCertificate(p.replaced[0]); err == nil {
			r.res.OldFingerprint = deploy.Fingerprint(c)
		}
	}
	if p.already {
		r.step(deploy.StepPrepare, true, "already deployed: %s of %s already holds certificate %s; nothing written, only verified", d.attr, d.dn, short(p.newFP))
		if err := d.verifyAll(ctx, r, conn, p, false); err != nil {
			r.res.Outcome = deploy.OutcomeFailed
			return r.res, fmt.Errorf("ldap: deploy: already deployed, but %w: %w", deploy.ErrRefused, err)
		}
		r.res.Outcome = deploy.OutcomeAlreadyDeployed
		return r.res, nil
	}
	r.step(deploy.StepPrepare, true, "%s", p.summary(d))

	file, err := d.backup(srv, p)
	r.res.BackupDir = filepath.Dir(file)
	if file == "" {
		r.res.BackupDir = ""
	}
	if err != nil {
		return r.fail(deploy.StepBackup, err)
	}
	r.step(deploy.StepBackup, true, "the %d old values of %s copied to %s", len(p.values), d.attr, file)

	if err := d.write(ctx, conn, p); err != nil {
		var le *goldap.Error
		if errors.As(err, &le) && le.ResultCode < goldap.ErrorNetwork {
			// The server answered with a result: a Modify is applied
			// whole or not at all, so nothing changed.
			return r.fail(deploy.StepWrite, fmt.Errorf("modify %s (nothing changed): %s", d.dn, ldapErrText(err)))
		}
		// No answer: the Modify may have been applied.
		r.step(deploy.StepWrite, false, "modify %s: %s (it may have been applied)", d.dn, ldapErrText(err))
		return d.rollback(ctx, r, srv, p, fmt.Errorf("write: %s", ldapErrText(err)))
	}
	r.step(deploy.StepWrite, true, "%s of %s: %d value(s) replaced by %s, %d kept", d.attr, d.dn, len(p.replaced), short(p.newFP), p.kept)

	if d.afterWrite != nil {
		d.afterWrite(ctx)
	}
	if err := d.verifyAll(ctx, r, conn, p, true); err != nil {
		return d.rollback(ctx, r, srv, p, err)
	}
	r.res.Outcome = deploy.OutcomeDeployed
	return r.res, nil
}

// read returns the attribute's values. A missing entry or attribute is an
// error naming it.
func (d *Deployer) read(ctx context.Context, conn *goldap.Conn) ([][]byte, error) {
	req := goldap.NewSearchRequest(d.dn, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 1, int(d.src.cfg.PageTimeout/time.Second), false,
		"(objectClass=*)", []string{d.attr}, nil)
	res, err := conn.Search(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
			return nil, fmt.Errorf("entry %s does not exist", d.dn)
		}
		return nil, fmt.Errorf("read %s: %s", d.dn, ldapErrText(err))
	}
	if len(res.Entries) == 0 {
		return nil, fmt.Errorf("entry %s does not exist (or cannot be read with these credentials)", d.dn)
	}
	base, _, _ := strings.Cut(d.attr, ";")
	var out [][]byte
	seen := map[string]bool{}
	for _, a := range res.Entries[0].Attributes {
		name, _, _ := strings.Cut(a.Name, ";")
		if !strings.EqualFold(name, base) {
			continue
		}
		for _, v := range a.ByteValues {
			// A server may return one value under two names (with and
			// without ;binary).
			if !seen[string(v)] {
				seen[string(v)] = true
				out = append(out, v)
			}
		}
	}
	return out, nil
}

// prepare decides which values the new certificate replaces.
func (d *Deployer) prepare(values [][]byte, c *x509.Certificate) (*plan, error) {
	p := &plan{values: values, newDER: c.Raw, newFP: deploy.Fingerprint(c)}
	if len(values) == 0 {
		return nil, fmt.Errorf("entry %s has no %s value: nothing to replace", d.dn, d.attr)
	}
	for _, v := range values {
		if bytes.Equal(v, c.Raw) {
			p.already = true
			continue
		}
		old, err := x509.ParseCertificate(v)
		if err == nil && sameIdentity(old, c) {
			p.replaced = append(p.replaced, v)
			continue
		}
		p.kept++
	}
	if p.already {
		return p, nil
	}
	if len(p.replaced) == 0 {
		return nil, fmt.Errorf("none of the %d values of %s at %s is a certificate for %s: refusing to add one without replacing one",
			len(values), d.attr, d.dn, identity(c))
	}
	return p, nil
}

// sameIdentity says whether a and b are certificates for the same
// subject: the same non-empty subject DN, or, when either subject is empty
// (an ACME certificate has none), the same non-empty set of alternative
// names.
func sameIdentity(a, b *x509.Certificate) bool {
	if len(a.Subject.Names) > 0 && len(b.Subject.Names) > 0 {
		return bytes.Equal(a.RawSubject, b.RawSubject)
	}
	sa, sb := sanSet(a), sanSet(b)
	return sa != "" && sa == sb
}

func sanSet(c *x509.Certificate) string {
	var s []string
	for _, n := range c.DNSNames {
		s = append(s, "dns:"+strings.ToLower(n))
	}
	for _, n := range c.EmailAddresses {
		s = append(s, "email:"+strings.ToLower(n))
	}
	for _, ip := range c.IPAddresses {
		s = append(s, "ip:"+ip.String())
	}
	for _, u := range c.URIs {
		s = append(s, "uri:"+u.String())
	}
	slices.Sort(s)
	return strings.Join(slices.Compact(s), ",")
}

func identity(c *x509.Certificate) string {
	if len(c.Subject.Names) > 0 {
		return "subject " + c.Subject.String()
	}
	return "names " + sanSet(c)
}

func (p *plan) summary(d *Deployer) string {
	var old []string
	for _, v := range p.replaced {
		if c, err := x509.ParseCertificate(v); err == nil {
			old = append(old, fmt.Sprintf("%s (%s, expires %s)", short(deploy.Fingerprint(c)), identity(c), c.NotAfter.UTC().Format("2006-01-02")))
		}
	}
	return fmt.Sprintf("%s of %s holds %d value(s): replacing %s with %s; keeping %d other value(s)",
		d.attr, d.dn, len(p.values), strings.Join(old, ", "), short(p.newFP), p.kept)
}

// backupFile is the JSON a backup holds. It has no credentials.
type backupFile struct {
	Server    string    `json:"server"`
	DN        string    `json:"dn"`
	Attribute string    `json:"attribute"`
	Time      time.Time `json:"time"`
	// Values are every value of the attribute before the deployment,
	// base64 DER; Replaced those the deployment replaced.
	Values   []string `json:"values"`
	Replaced []string `json:"replaced"`
	New      string   `json:"new"`
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9=,.-]+`)

// backup writes the old values to BackupDir/<timestamp>/ldap-<entry>.json.
func (d *Deployer) backup(srv server, p *plan) (string, error) {
	now := d.now()
	dir, err := deploy.NewBackupDir(d.backupDir, "", now)
	if err != nil {
		return "", fmt.Errorf("backup dir: %w", err)
	}
	b := backupFile{Server: srv.scheme + "://" + srv.host, DN: d.dn, Attribute: d.attr, Time: now.UTC(),
		New: base64.StdEncoding.EncodeToString(p.newDER)}
	for _, v := range p.values {
		b.Values = append(b.Values, base64.StdEncoding.EncodeToString(v))
	}
	for _, v := range p.replaced {
		b.Replaced = append(b.Replaced, base64.StdEncoding.EncodeToString(v))
	}
	data, _ := json.MarshalIndent(b, "", "  ")
	name := unsafeName.ReplaceAllString(d.dn, "_")
	if len(name) > 120 {
		name = name[:120]
	}
	file := filepath.Join(dir, "ldap-"+name+".json")
	if err := deploy.WriteFileAtomic(file, append(data, '\n'), 0o600); err != nil {
		return file, fmt.Errorf("write %s: %w", file, err)
	}
	return file, nil
}

// write is one Modify: delete the replaced values, add the new one. The
// server applies it whole or not at all, and refuses it if another writer
// removed a replaced value meanwhile.
func (d *Deployer) write(ctx context.Context, conn *goldap.Conn, p *plan) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	req := goldap.NewModifyRequest(d.dn, nil)
	req.Delete(d.attr, strs(p.replaced))
	req.Add(d.attr, []string{string(p.newDER)})
	return conn.Modify(req)
}

// verifyAll reads the attribute again: it must hold the new certificate
// and exactly the values kept (when strict), none replaced; then the
// endpoints, if any, must serve it.
func (d *Deployer) verifyAll(ctx context.Context, r *run, conn *goldap.Conn, p *plan, strict bool) error {
	values, err := d.read(ctx, conn)
	if err != nil {
		r.step(deploy.StepVerify, false, "%v", err)
		return fmt.Errorf("verify: %w", err)
	}
	want := map[string]bool{string(p.newDER): true}
	for _, v := range p.values {
		if !slices.ContainsFunc(p.replaced, func(x []byte) bool { return bytes.Equal(x, v) }) {
			want[string(v)] = true
		}
	}
	var problems []string
	got := map[string]bool{}
	for _, v := range values {
		got[string(v)] = true
	}
	if !got[string(p.newDER)] {
		problems = append(problems, "the new certificate "+short(p.newFP)+" is not there")
	}
	if strict {
		for _, v := range p.replaced {
			if got[string(v)] {
				problems = append(problems, "a replaced value is still there")
				break
			}
		}
		missing, extra := 0, 0
		for v := range want {
			if !got[v] {
				missing++
			}
		}
		for v := range got {
			if !want[v] {
				extra++
			}
		}
		if missing > 0 || extra > 0 {
			problems = append(problems, fmt.Sprintf("%d value(s) expected are missing and %d not expected are there (another writer?)", missing, extra))
		}
	}
	if len(problems) > 0 {
		err := fmt.Errorf("%s of %s after the write: %s", d.attr, d.dn, strings.Join(slices.Compact(problems), "; "))
		r.step(deploy.StepVerify, false, "%v", err)
		return fmt.Errorf("verify: %w", err)
	}
	msg := fmt.Sprintf("%s of %s holds %s and %d other value(s)", d.attr, d.dn, short(p.newFP), len(values)-1)
	if len(d.verify) > 0 {
		m, err := deploy.VerifyEndpoints(ctx, d.verify, p.newFP, d.verifyWait, 0)
		if err != nil {
			r.step(deploy.StepVerify, false, "%s; but %v", msg, err)
			return fmt.Errorf("verify: %w", err)
		}
		msg += "; " + m
	}
	r.step(deploy.StepVerify, true, "%s", msg)
	return nil
}

// rollback puts the replaced values back and removes the new one, on a
// new connection with its own budget (the job's context may be what
// failed). It reads first, so that it only undoes what is there to undo.
func (d *Deployer) rollback(ctx context.Context, r *run, srv server, p *plan, cause error) (*deploy.Result, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackBudget)
	defer cancel()
	err := d.restore(ctx, srv, p)
	if err != nil {
		msg := scrub(err.Error(), r.pw)
		r.res.Outcome = deploy.OutcomeRollbackFailed
		r.step(deploy.StepRollback, false, "ROLLBACK FAILED after %v: %s. The old values are in %s (base64 DER); put them back in %s of %s by hand",
			cause, msg, r.res.BackupDir, d.attr, d.dn)
		return r.res, fmt.Errorf("ldap: deploy: %w (%s; backup in %s) after: %w", deploy.ErrRollbackFailed, msg, r.res.BackupDir, cause)
	}
	r.res.Outcome = deploy.OutcomeRolledBack
	r.step(deploy.StepRollback, true, "rolled back after %v: %s of %s holds the %d old value(s) again, %s removed", cause, d.attr, d.dn, len(p.replaced), short(p.newFP))
	return r.res, fmt.Errorf("ldap: deploy: %w: %w", deploy.ErrRolledBack, cause)
}

func (d *Deployer) restore(ctx context.Context, srv server, p *plan) error {
	conn, closeConn, err := d.src.connect(ctx, srv)
	if err != nil {
		return err
	}
	defer closeConn()
	values, err := d.read(ctx, conn)
	if err != nil {
		return err
	}
	has := func(x []byte) bool {
		return slices.ContainsFunc(values, func(v []byte) bool { return bytes.Equal(v, x) })
	}
	req := goldap.NewModifyRequest(d.dn, nil)
	if has(p.newDER) {
		req.Delete(d.attr, []string{string(p.newDER)})
	}
	var add [][]byte
	for _, v := range p.replaced {
		if !has(v) {
			add = append(add, v)
		}
	}
	if len(add) > 0 {
		req.Add(d.attr, strs(add))
	}
	if len(req.Changes) > 0 {
		if err := conn.Modify(req); err != nil {
			return fmt.Errorf("modify %s: %s", d.dn, ldapErrText(err))
		}
	}
	values, err = d.read(ctx, conn)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if has(p.newDER) {
		return fmt.Errorf("check: %s is still in %s", short(p.newFP), d.attr)
	}
	for _, v := range p.replaced {
		if !has(v) {
			return fmt.Errorf("check: an old value is not back in %s", d.attr)
		}
	}
	return nil
}

func strs(vals [][]byte) []string {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = string(v)
	}
	return out
}

func short(fp string) string {
	if len(fp) > 16 {
		return "sha256:" + fp[:16]
	}
	return "sha256:" + fp
}
