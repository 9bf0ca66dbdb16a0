package ssh

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/protocol"
)

const (
	// rollbackBudget bounds the rollback when the job's context is already
	// done: a cancelled job must still put the old files back.
	rollbackBudget = 2 * time.Minute
	// maxRemoteFile bounds what is read of a remote certificate or key file.
	maxRemoteFile = 1 << 20
	// maxReloadOutput bounds the reload output kept in a message: its head
	// and its tail, where tools put the line that matters.
	maxReloadOutput = 1024
	// backupInfix names the remote copies: FILE.emsign-backup-STAMP.
	backupInfix = ".emsign-backup-"
	// tempPrefix names the staged files, beside their targets.
	tempPrefix = ".emsign-deploy-"
)

// Deployer puts a certificate, its chain and its key into PEM files on a
// remote host over SSH/SFTP (P8), and makes the server there use them: a
// deploy.Target. Prepare (log in, host key checked as discovery checks it;
// read the old files), backup (remote FILE.emsign-backup-STAMP copies and
// local copies under the bot's backup directory), write (each file staged
// beside its target, mode set, fsynced, then renamed over it atomically
// with posix-rename), reload (a remote command the bot's settings allow),
// verify (the endpoints dialed from the bot), rollback (the backups renamed
// back, reload, the old certificate served again).
type Deployer struct {
	target      string // the target URI, parsed (secrets resolved) in Deploy
	certPath    string
	keyPath     string
	chainPath   string
	chainInCert bool
	reload      []string
	reloadWait  time.Duration
	allowReload func([]string) error
	verify      []deploy.Endpoint
	verifyWait  time.Duration
	backupDir   string
	conn        *Connector
	log         *slog.Logger
	now         func() time.Time
	// sftpServer, when set (by tests), is a remote command run as the
	// SFTP server instead of the "sftp" subsystem, for an sshd configured
	// without one.
	sftpServer string
}

var _ deploy.Target = (*Deployer)(nil)

// NewDeployer validates a DeploySSH spec: spec.Target is the ssh:// target
// discovery used (user, password or key_file, known_hosts or host_key;
// insecure_host_key=true is refused), CertPath and KeyPath (required),
// ChainPath are absolute paths on the remote host, Reload a remote command
// (argv) run only when env.AllowReload allows it, Verify the endpoints
// the bot dials afterwards. It does no I/O.
func NewDeployer(spec protocol.DeploySpec, env deploy.Env) (deploy.Target, error) {
	if spec.Kind != "" && spec.Kind != protocol.DeploySSH {
		return nil, fmt.Errorf("ssh: deploy kind %q: want %s", spec.Kind, protocol.DeploySSH)
	}
	t, err := protocol.ParseTargetUnresolved(spec.Target)
	if err != nil {
		return nil, fmt.Errorf("ssh: deploy target: %w", err)
	}
	if t.Scheme != protocol.SchemeSSH {
		return nil, fmt.Errorf("ssh: deploy target: scheme %s: want ssh", t.Scheme)
	}
	if t.Param(protocol.ParamInsecureHostKey) == "true" {
		return nil, errors.New("ssh: deploy target: insecure_host_key=true: a deployment writes a private key and never skips the host key check; give known_hosts=FILE or host_key=SHA256:...")
	}
	if t.Param(protocol.ParamSudo) == "true" {
		return nil, errors.New("ssh: deploy target: sudo=true: not supported for deployments (SFTP cannot elevate); log in as a user that may write the files")
	}
	d := &Deployer{target: spec.Target, chainInCert: spec.ChainInCert, verifyWait: time.Duration(spec.VerifyTimeout),
		reloadWait: deploy.DefaultReloadTimeout, allowReload: env.AllowReload, log: env.Logger, now: env.Now}
	for _, p := range []struct {
		name string
		v    string
		dst  *string
	}{{"cert_path", spec.CertPath, &d.certPath}, {"key_path", spec.KeyPath, &d.keyPath}, {"chain_path", spec.ChainPath, &d.chainPath}} {
		switch {
		case p.v == "" && p.name != "chain_path":
			return nil, fmt.Errorf("ssh: deploy %s: required (a remote absolute path; the key is never searched for over ssh)", p.name)
		case p.v == "":
		case !path.IsAbs(p.v):
			return nil, fmt.Errorf("ssh: deploy %s %q: want an absolute remote path", p.name, p.v)
		default:
			*p.dst = path.Clean(p.v)
		}
	}
	if d.chainPath == d.certPath {
		d.chainPath, d.chainInCert = "", true
	}
	if d.chainPath != "" && d.chainPath == d.keyPath {
		return nil, errors.New("ssh: deploy chain_path: it is the key file; a chain goes with the certificate (chain_in_cert) or alone")
	}
	if spec.KeystorePath != "" || spec.Object != "" {
		return nil, errors.New("ssh: deploy keystore_path and object: not used for ssh (give cert_path and key_path)")
	}
	if len(spec.Reload) > 0 {
		if spec.Reload[0] == "" {
			return nil, errors.New("ssh: deploy reload: argv[0] is empty")
		}
		d.reload = append([]string(nil), spec.Reload...)
	}
	for i, v := range spec.Verify {
		if h, p, err := net.SplitHostPort(v.Address); err != nil || h == "" || p == "" {
			return nil, fmt.Errorf("ssh: deploy verify[%d] address %q: want HOST:PORT", i, v.Address)
		}
		d.verify = append(d.verify, deploy.Endpoint{Address: v.Address, ServerName: v.ServerName})
	}
	if spec.VerifyTimeout < 0 {
		return nil, errors.New("ssh: deploy verify_timeout: must not be negative")
	}
	if env.BackupDir == "" || !filepath.IsAbs(env.BackupDir) {
		return nil, fmt.Errorf("ssh: deploy backup dir %q: want an absolute path", env.BackupDir)
	}
	d.backupDir = filepath.Clean(env.BackupDir)
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.conn, err = New(Config{Logger: d.log, Now: d.now}); err != nil {
		return nil, err
	}
	return d, nil
}

// remoteFile is one file the deployment replaces.
type remoteFile struct {
	role     string // certificate, key, chain, or certificate+key
	path     string // as given
	real     string // the file written: path with symlinks resolved
	exists   bool
	old      []byte
	mode     os.FileMode
	uid, gid uint32
	hasOwner bool
	data     []byte // the new content
	backup   string // the remote backup copy, once made
	temp     string // the staged new file, while staging
	renamed  bool   // the new file is in place
}

// plan is what prepare found and decided.
type plan struct {
	files   []*remoteFile
	oldFP   string
	newFP   string
	oldLeaf *x509.Certificate
	newLeaf *x509.Certificate
}

// session is one login: the SSH client and its SFTP client. The
// connection is closed when the context it was opened for ends.
type session struct {
	client *ssh.Client
	sftp   *sftp.Client
	stop   func() bool
}

func (s *session) close() {
	s.stop()
	if s.sftp != nil {
		_ = s.sftp.Close()
	}
	_ = s.client.Close()
}

// run is the state of one Deploy.
type run struct {
	d       *Deployer
	report  func(deploy.Step)
	res     *deploy.Result
	secrets []string // scrubbed from every message
	t       protocol.Target
}

func (r *run) step(name string, ok bool, format string, args ...any) {
	s := deploy.Step{Name: name, OK: ok, Message: r.clean(fmt.Sprintf(format, args...)), Time: r.d.now()}
	r.res.Steps = append(r.res.Steps, s)
	if ok {
		r.d.log.Info("ssh deploy: "+name, "host", r.t.Host, "message", s.Message)
	} else {
		r.d.log.Warn("ssh deploy: "+name+" failed", "host", r.t.Host, "message", s.Message)
	}
	if r.report != nil {
		r.report(s)
	}
}

// clean removes secrets and private keys from text bound for a step or an
// error.
func (r *run) clean(s string) string {
	for _, sec := range r.secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "***")
		}
	}
	return pemKey.ReplaceAllString(s, "[private key redacted]")
}

// fail ends a deployment that changed nothing.
func (r *run) fail(name string, err error) (*deploy.Result, error) {
	r.res.Outcome = deploy.OutcomeFailed
	// Inner errors may carry the package prefix: the result says it once.
	msg := strings.TrimPrefix(r.clean(err.Error()), "ssh: ")
	r.step(name, false, "%s", msg)
	return r.res, fmt.Errorf("ssh: deploy %s: %w: %s", name, deploy.ErrRefused, msg)
}

// Deploy puts m in place on the remote host. m.KeyPEM is required (the key
// file is written); m.Key, when set, must match the certificate.
func (d *Deployer) Deploy(ctx context.Context, m deploy.Material, report func(deploy.Step)) (*deploy.Result, error) {
	r := &run{d: d, report: report, res: &deploy.Result{}}
	if m.Certificate == nil {
		return r.fail(deploy.StepPrepare, errors.New("no certificate to deploy"))
	}
	r.res.Fingerprint = deploy.Fingerprint(m.Certificate)
	if err := checkKey(m); err != nil {
		return r.fail(deploy.StepPrepare, err)
	}
	if len(d.reload) > 0 {
		// Asked before anything is touched: the control plane must not be
		// able to run a command the bot's settings do not allow.
		if d.allowReload == nil {
			return r.fail(deploy.StepPrepare, fmt.Errorf("reload %s is not allowed: this bot allows no reload command", showArgv(d.reload)))
		}
		if err := d.allowReload(d.reload); err != nil {
			return r.fail(deploy.StepPrepare, fmt.Errorf("reload %s is not allowed: %w", showArgv(d.reload), err))
		}
	}
	t, err := protocol.ParseTarget(d.target)
	if err != nil {
		return r.fail(deploy.StepPrepare, fmt.Errorf("target: %w", err))
	}
	r.t = t
	for _, k := range []string{protocol.ParamPassword, protocol.ParamPassphrase} {
		for _, s := range t.Secrets[k] {
			r.secrets = append(r.secrets, s.Reveal())
		}
	}
	sess, err := d.open(ctx, t)
	if err != nil {
		return r.fail(deploy.StepPrepare, err)
	}
	defer func() { sess.close() }()

	p, err := d.prepare(sess.sftp, m)
	if p != nil {
		r.res.OldFingerprint = p.oldFP
	}
	if err != nil {
		return r.fail(deploy.StepPrepare, err)
	}
	if p.oldFP == p.newFP {
		r.step(deploy.StepPrepare, true, "already deployed: %s on %s already holds certificate %s; nothing written, only verified", d.certPath, t.Host, short(p.newFP))
		if err := d.verifyAll(ctx, r, sess.sftp, p, p.newFP, deploy.StepVerify); err != nil {
			r.res.Outcome = deploy.OutcomeFailed
			return r.res, fmt.Errorf("ssh: deploy: already deployed, but %w: %w", deploy.ErrRefused, err)
		}
		r.res.Outcome = deploy.OutcomeAlreadyDeployed
		return r.res, nil
	}
	r.step(deploy.StepPrepare, true, "%s", p.summary(t.Host))

	dir, err := d.backup(sess.sftp, t, p, d.now())
	r.res.BackupDir = dir
	if err != nil {
		d.removeBackups(sess.sftp, p)
		return r.fail(deploy.StepBackup, err)
	}
	var copies []string
	for _, f := range p.files {
		if f.backup != "" {
			copies = append(copies, f.backup)
		}
	}
	r.step(deploy.StepBackup, true, "old files copied on %s to %s, and here to %s", t.Host, strings.Join(copies, ", "), dir)

	if err := d.write(sess.sftp, p); err != nil {
		if !p.changed() {
			d.removeTemps(sess.sftp, p)
			d.removeBackups(sess.sftp, p)
			return r.fail(deploy.StepWrite, fmt.Errorf("nothing replaced: %w", err))
		}
		r.step(deploy.StepWrite, false, "%v", err)
		return d.rollback(ctx, r, sess, p, fmt.Errorf("write: %w", err))
	}
	r.step(deploy.StepWrite, true, "replaced %s on %s", strings.Join(p.paths(), ", "), t.Host)

	if len(d.reload) > 0 {
		msg, err := d.runReload(ctx, sess.client)
		if err != nil {
			r.step(deploy.StepReload, false, "%v", err)
			return d.rollback(ctx, r, sess, p, fmt.Errorf("reload: %w", err))
		}
		r.step(deploy.StepReload, true, "%s", msg)
	}
	if err := d.verifyAll(ctx, r, sess.sftp, p, p.newFP, deploy.StepVerify); err != nil {
		return d.rollback(ctx, r, sess, p, err)
	}
	r.res.Outcome = deploy.OutcomeDeployed
	return r.res, nil
}

// checkKey refuses material without a key file, or whose key is not the
// certificate's.
func checkKey(m deploy.Material) error {
	if len(m.KeyPEM) == 0 {
		return errors.New("no key to write: an ssh deployment writes the key file (a key kept on a token cannot be deployed over ssh)")
	}
	key := m.Key
	if key == nil {
		k, err := ssh.ParseRawPrivateKey(m.KeyPEM)
		if err != nil {
			return errors.New("the new key does not parse")
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return errors.New("the new key is not a signing key")
		}
		key = s
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(m.Certificate.PublicKey) {
		return errors.New("the new certificate is not for the new key")
	}
	return nil
}

// open logs in (host key checked as discovery checks it) and starts SFTP.
// Cancelling ctx closes the connection.
func (d *Deployer) open(ctx context.Context, t protocol.Target) (*session, error) {
	client, _, err := d.conn.connect(ctx, t)
	if err != nil {
		return nil, err
	}
	s := &session{client: client, stop: context.AfterFunc(ctx, func() { _ = client.Close() })}
	if d.sftpServer == "" {
		s.sftp, err = sftp.NewClient(client)
	} else {
		s.sftp, err = d.sftpCommand(client)
	}
	if err != nil {
		s.close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if strings.Contains(err.Error(), "subsystem request failed") {
			return nil, fmt.Errorf("sftp on %s: %w (the server has no sftp subsystem: add `Subsystem sftp internal-sftp` to its sshd_config)", t.Host, err)
		}
		return nil, fmt.Errorf("sftp on %s: %w", t.Host, err)
	}
	return s, nil
}

// sftpCommand runs d.sftpServer as the SFTP server over a plain session.
func (d *Deployer) sftpCommand(client *ssh.Client) (*sftp.Client, error) {
	sess, err := client.NewSession()
	if err != nil {
		return nil, err
	}
	w, err := sess.StdinPipe()
	if err != nil {
		return nil, err
	}
	rd, err := sess.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := sess.Start(quote(d.sftpServer)); err != nil {
		return nil, err
	}
	return sftp.NewClientPipe(rd, w)
}

// prepare reads the old files and builds the new ones. It writes nothing.
func (d *Deployer) prepare(c *sftp.Client, m deploy.Material) (*plan, error) {
	p := &plan{newLeaf: m.Certificate, newFP: deploy.Fingerprint(m.Certificate)}
	chain := m.ChainPEM()
	if d.chainPath != "" && len(chain) == 0 {
		return nil, fmt.Errorf("chain_path %s is set but no chain came with the certificate", d.chainPath)
	}
	certData := m.CertPEM()
	combined := d.keyPath == d.certPath
	if d.chainInCert || combined {
		certData = append(certData, chain...)
	}
	if combined {
		certData = append(certData, m.KeyPEM...)
		p.files = append(p.files, &remoteFile{role: "certificate+key", path: d.certPath, data: certData})
	} else {
		p.files = append(p.files, &remoteFile{role: "certificate", path: d.certPath, data: certData},
			&remoteFile{role: "key", path: d.keyPath, data: m.KeyPEM})
	}
	if d.chainPath != "" {
		p.files = append(p.files, &remoteFile{role: "chain", path: d.chainPath, data: chain})
	}
	for _, f := range p.files {
		if err := stat(c, f); err != nil {
			return nil, err
		}
		if !f.exists && f.role != "chain" {
			return nil, fmt.Errorf("%s file %s does not exist", f.role, f.path)
		}
		if !f.exists {
			continue
		}
		old, err := readRemote(c, f.real)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f.path, err)
		}
		f.old = old
	}
	leaf, err := firstCert(p.files[0].old)
	if err != nil {
		return nil, fmt.Errorf("certificate file %s: %w", d.certPath, err)
	}
	p.oldLeaf, p.oldFP = leaf, deploy.Fingerprint(leaf)
	for _, f := range p.files {
		if strings.Contains(f.role, "key") && !pemKey.Match(f.old) {
			return nil, fmt.Errorf("key file %s holds no PEM private key", f.path)
		}
		if !f.exists {
			// A new file gets 0644, or 0600 when it holds a key.
			f.mode = 0o644
		}
	}
	return p, nil
}

// stat fills in what the remote file is: where it really is (a symlink,
// as certbot's live/ files are, is followed: the file is replaced, the
// link stays), its mode and owner.
func stat(c *sftp.Client, f *remoteFile) error {
	f.real = f.path
	fi, err := c.Stat(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", f.path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s file %s is not a regular file", f.role, f.path)
	}
	if lfi, err := c.Lstat(f.path); err == nil && lfi.Mode()&fs.ModeSymlink != 0 {
		real, err := c.RealPath(f.path)
		if err != nil {
			return fmt.Errorf("resolve the symlink %s: %w", f.path, err)
		}
		f.real = real
	}
	f.exists, f.mode = true, fi.Mode().Perm()
	if st, ok := fi.Sys().(*sftp.FileStat); ok {
		f.uid, f.gid, f.hasOwner = st.UID, st.GID, true
	}
	return nil
}

func readRemote(c *sftp.Client, p string) ([]byte, error) {
	f, err := c.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRemoteFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxRemoteFile {
		return nil, fmt.Errorf("larger than %d bytes: not a PEM file", maxRemoteFile)
	}
	return data, nil
}

// firstCert is the first CERTIFICATE block of a PEM file.
func firstCert(data []byte) (*x509.Certificate, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("holds no PEM certificate")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

func (p *plan) summary(host string) string {
	return fmt.Sprintf("on %s: %s (%s, expires %s) will be replaced by %s (%s, expires %s) in %s",
		host, short(p.oldFP), p.oldLeaf.Subject, p.oldLeaf.NotAfter.UTC().Format("2006-01-02"),
		short(p.newFP), p.newLeaf.Subject, p.newLeaf.NotAfter.UTC().Format("2006-01-02"), strings.Join(p.paths(), ", "))
}

func (p *plan) paths() []string {
	var out []string
	for _, f := range p.files {
		out = append(out, f.path)
	}
	return out
}

func (p *plan) changed() bool {
	for _, f := range p.files {
		if f.renamed {
			return true
		}
	}
	return false
}

// manifestEntry says where a local backup copy goes back to.
type manifestEntry struct {
	Role         string `json:"role"`
	Host         string `json:"host"`
	Original     string `json:"original"`
	Written      string `json:"written,omitempty"` // the symlink's target, when the original is a link
	RemoteBackup string `json:"remote_backup,omitempty"`
	Backup       string `json:"backup,omitempty"` // the local copy, beside the manifest
	Mode         string `json:"mode,omitempty"`
	UID          uint32 `json:"uid"`
	GID          uint32 `json:"gid"`
	Existed      bool   `json:"existed"`
}

// backup copies each old file on the remote host (FILE.emsign-backup-STAMP,
// its mode kept, fsynced) and here, under BackupDir/STAMP with a
// manifest.json. It returns the local directory.
func (d *Deployer) backup(c *sftp.Client, t protocol.Target, p *plan, now time.Time) (string, error) {
	stamp := deploy.BackupStamp(now)
	dir, err := deploy.NewBackupDir(d.backupDir, "", now)
	if err != nil {
		return "", fmt.Errorf("backup dir: %w", err)
	}
	var manifest []manifestEntry
	for i, f := range p.files {
		e := manifestEntry{Role: f.role, Host: t.Host, Original: f.path, Existed: f.exists}
		if f.real != f.path {
			e.Written = f.real
		}
		if f.exists {
			e.Mode = fmt.Sprintf("%04o", f.mode)
			e.UID, e.GID = f.uid, f.gid
			e.Backup = fmt.Sprintf("%d-%s", i+1, path.Base(f.path))
			if err := deploy.WriteFileAtomic(filepath.Join(dir, e.Backup), f.old, 0o600); err != nil {
				return dir, fmt.Errorf("local copy of %s: %w", f.path, err)
			}
			remote := f.real + backupInfix + stamp
			if err := putFile(c, remote, f.old, f.mode, nil); err != nil {
				return dir, fmt.Errorf("remote copy of %s: %w", f.path, err)
			}
			f.backup = remote
			e.RemoteBackup = remote
		}
		manifest = append(manifest, e)
	}
	m, _ := json.MarshalIndent(manifest, "", "  ")
	if err := deploy.WriteFileAtomic(filepath.Join(dir, "manifest.json"), append(m, '\n'), 0o600); err != nil {
		return dir, err
	}
	return dir, nil
}

// owner is a file owner to set.
type owner struct{ uid, gid uint32 }

// putFile creates p (it must not exist) with mode set before the content
// is written, the owner set when it differs (failing if it cannot be), the
// content fsynced.
func putFile(c *sftp.Client, p string, data []byte, mode os.FileMode, own *owner) (err error) {
	f, err := c.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			_ = c.Remove(p)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("chmod %04o: %w", mode, err)
	}
	if own != nil {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*sftp.FileStat); ok && (st.UID != own.uid || st.GID != own.gid) {
			if err := f.Chown(int(own.uid), int(own.gid)); err != nil {
				return fmt.Errorf("the old file is owned by %d:%d and the new one cannot be (%w); the server might not read it", own.uid, own.gid, err)
			}
		}
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		var se *sftp.StatusError
		if !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxOpUnsupported {
			return fmt.Errorf("fsync: %w", err)
		}
		// A server without fsync@openssh.com: its close is the best there is.
	}
	return nil
}

// write stages every file beside its target, then renames them all over
// the targets (posix-rename: atomic, replaces). A failure while staging
// changes nothing.
func (d *Deployer) write(c *sftp.Client, p *plan) error {
	for _, f := range p.files {
		mode := f.mode
		if !f.exists && strings.Contains(f.role, "key") {
			mode = 0o600
		}
		var own *owner
		if f.exists && f.hasOwner {
			own = &owner{f.uid, f.gid}
		}
		tmp := path.Join(path.Dir(f.real), tempPrefix+randomName())
		if err := putFile(c, tmp, f.data, mode, own); err != nil {
			return fmt.Errorf("stage %s: %w", f.path, err)
		}
		f.temp = tmp
	}
	for _, f := range p.files {
		if err := c.PosixRename(f.temp, f.real); err != nil {
			return fmt.Errorf("rename over %s: %w", f.path, err)
		}
		f.temp, f.renamed = "", true
	}
	return nil
}

func randomName() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// removeTemps removes staged files left by a failed write.
func (d *Deployer) removeTemps(c *sftp.Client, p *plan) {
	for _, f := range p.files {
		if f.temp != "" {
			if err := c.Remove(f.temp); err != nil {
				d.log.Warn("ssh deploy: remove a staged file", "path", f.temp, "err", err)
			}
			f.temp = ""
		}
	}
}

// removeBackups removes the remote copies of a deployment that did not go
// on (a backup that failed half-way).
func (d *Deployer) removeBackups(c *sftp.Client, p *plan) {
	for _, f := range p.files {
		if f.backup != "" {
			if err := c.Remove(f.backup); err != nil {
				d.log.Warn("ssh deploy: remove a backup copy", "path", f.backup, "err", err)
			}
			f.backup = ""
		}
	}
}

// runReload runs the reload command on the remote host, bounded by the
// reload timeout and ctx.
func (d *Deployer) runReload(ctx context.Context, client *ssh.Client) (string, error) {
	cmd := shellCommand(d.reload)
	sess, err := client.NewSession()
	if err != nil {
		return "", fmt.Errorf("new session: %w", err)
	}
	defer sess.Close()
	out := &limitWriter{max: 1 << 20}
	// x/crypto copies stdout and stderr in two goroutines: one writer
	// for both needs a lock.
	var mu sync.Mutex
	w := writerFunc(func(b []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(b) })
	sess.Stdout, sess.Stderr = w, w
	start := time.Now()
	res := make(chan error, 1)
	go func() { res <- sess.Run(cmd) }()
	timer := time.NewTimer(d.reloadWait)
	defer timer.Stop()
	name := showArgv(d.reload)
	select {
	case err = <-res:
	case <-timer.C:
		_ = sess.Signal(ssh.SIGKILL)
		_ = sess.Close()
		<-res
		mu.Lock()
		defer mu.Unlock()
		return "", fmt.Errorf("%s timed out after %s%s", name, d.reloadWait, outputTail(out))
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGKILL)
		_ = sess.Close()
		<-res
		return "", fmt.Errorf("%s: %w", name, ctx.Err())
	}
	took := time.Since(start).Round(time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		var exit *ssh.ExitError
		if errors.As(err, &exit) {
			return "", fmt.Errorf("%s exited %d after %s%s", name, exit.ExitStatus(), took, outputTail(out))
		}
		return "", fmt.Errorf("%s failed after %s: %w%s", name, took, err, outputTail(out))
	}
	return fmt.Sprintf("%s exited 0 in %s%s", name, took, outputTail(out)), nil
}

// writerFunc is a function as an io.Writer.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// shellCommand is argv as one remote shell command line: each word
// single-quoted, so the remote shell runs exactly argv (no expansion, no
// second command).
func shellCommand(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = quote(a)
	}
	return strings.Join(q, " ")
}

// showArgv shows a command in a message.
func showArgv(argv []string) string {
	var parts []string
	for _, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\"'") {
			a = fmt.Sprintf("%q", a)
		}
		parts = append(parts, a)
	}
	return "`" + strings.Join(parts, " ") + "`"
}

// pemKey matches a PEM private key block, or the start of one cut short.
var pemKey = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)`)

// outputTail is "; output: ..." with the output's head and tail, private
// keys redacted, or "" for none.
func outputTail(w *limitWriter) string {
	s := strings.TrimSpace(pemKey.ReplaceAllString(w.buf.String(), "[private key redacted]"))
	if s == "" {
		return ""
	}
	if len(s) > maxReloadOutput {
		s = fmt.Sprintf("%s ... [%d bytes cut] ... %s", s[:maxReloadOutput/2], len(s)-maxReloadOutput, s[len(s)-maxReloadOutput/2:])
	}
	return "; output: " + s
}

// verifyAll checks that fp is what the server serves: every endpoint,
// dialed from the bot, or, with none, the remote certificate file.
func (d *Deployer) verifyAll(ctx context.Context, r *run, c *sftp.Client, p *plan, fp, name string) error {
	msg, err := d.check(ctx, c, fp)
	if err != nil {
		r.step(name, false, "%v", err)
		return fmt.Errorf("verify: %w", err)
	}
	r.step(name, true, "%s", msg)
	return nil
}

func (d *Deployer) check(ctx context.Context, c *sftp.Client, fp string) (string, error) {
	if len(d.verify) > 0 {
		return deploy.VerifyEndpoints(ctx, d.verify, fp, d.verifyWait, 0)
	}
	data, err := readRemote(c, d.certPath)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", d.certPath, err)
	}
	leaf, err := firstCert(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", d.certPath, err)
	}
	if got := deploy.Fingerprint(leaf); got != fp {
		return "", fmt.Errorf("%s holds %s, not %s", d.certPath, short(got), short(fp))
	}
	return fmt.Sprintf("no endpoint to verify; %s holds certificate %s", d.certPath, short(fp)), nil
}

// rollback renames the remote backups back over the files, removes a chain
// file that did not exist, reloads and checks that the old certificate is
// served again. It has its own budget: the job's context may be what
// failed, and then the connection is opened again.
func (d *Deployer) rollback(ctx context.Context, r *run, sess *session, p *plan, cause error) (*deploy.Result, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackBudget)
	defer cancel()
	var problems []string
	if !sess.stop() {
		// The job's context ended and closed the connection: log in again.
		d.log.Info("ssh deploy: logging in again for the rollback", "host", r.t.Host)
		ns, err := d.open(ctx, r.t)
		if err != nil {
			problems = append(problems, "log in again: "+err.Error())
		} else {
			sess.close()
			*sess = *ns
		}
	} else {
		sess.stop = context.AfterFunc(ctx, func() { _ = sess.client.Close() })
	}
	if len(problems) == 0 {
		d.removeTemps(sess.sftp, p)
		for _, f := range p.files {
			switch {
			case f.backup != "":
				if err := sess.sftp.PosixRename(f.backup, f.real); err != nil {
					problems = append(problems, fmt.Sprintf("restore %s from %s: %v", f.path, f.backup, err))
					continue
				}
				f.backup = ""
			case !f.exists && f.renamed:
				if err := sess.sftp.Remove(f.real); err != nil && !errors.Is(err, fs.ErrNotExist) {
					problems = append(problems, fmt.Sprintf("remove %s: %v", f.path, err))
				}
			}
		}
	}
	reloadMsg := ""
	if len(d.reload) > 0 && len(problems) == 0 {
		msg, err := d.runReload(ctx, sess.client)
		if err != nil {
			problems = append(problems, "reload: "+err.Error())
		}
		reloadMsg = "; " + msg
	}
	verifyMsg := ""
	if len(problems) == 0 {
		if msg, err := d.check(ctx, sess.sftp, p.oldFP); err != nil {
			problems = append(problems, "old certificate not served again: "+err.Error())
		} else {
			verifyMsg = "; " + msg
		}
	}
	if len(problems) > 0 {
		r.res.Outcome = deploy.OutcomeRollbackFailed
		msg := r.clean(strings.Join(problems, "; "))
		r.step(deploy.StepRollback, false, "ROLLBACK FAILED after %v: %s. The old files are on %s as *%s* copies and here in %s (manifest.json says where each goes); restore them by hand and reload the server",
			cause, msg, r.t.Host, backupInfix, r.res.BackupDir)
		return r.res, fmt.Errorf("ssh: deploy: %w (%s; backups in %s) after: %w", deploy.ErrRollbackFailed, msg, r.res.BackupDir, cause)
	}
	r.res.Outcome = deploy.OutcomeRolledBack
	r.step(deploy.StepRollback, true, "rolled back after %v: old files restored on %s%s%s", cause, r.t.Host, reloadMsg, verifyMsg)
	return r.res, fmt.Errorf("ssh: deploy: %w: %w", deploy.ErrRolledBack, cause)
}

func short(fp string) string {
	if len(fp) > 16 {
		return "sha256:" + fp[:16]
	}
	return "sha256:" + fp
}
