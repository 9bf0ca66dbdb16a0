package deploy

// The helpers every Target needs (P8, D7): connectors/ cannot import
// agent/internal/atomicfile, and without these each target kept its own
// copy of the atomic write, the backup folder, the step recorder, the
// reload runner and the key check.

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emsign/bot/agent/internal/atomicfile"
	"github.com/emsign/bot/protocol"
)

// BackupStampLayout is the time layout of a backup directory's name (UTC,
// to the nanosecond, so names sort by time).
const BackupStampLayout = "20060102T150405.000000000Z"

// WriteFileAtomic replaces path with data (permissions mode) so that a
// crash leaves the old file or the new one, never a part: a temp file in
// the same directory, fsync, rename, fsync of the directory (skipped on
// Windows, where NTFS journals the rename).
func WriteFileAtomic(path string, data []byte, mode fs.FileMode) error {
	return atomicfile.Write(filepath.Dir(path), filepath.Base(path), data, mode)
}

// SyncDir makes the renames and new entries in dir durable (nothing on
// Windows).
func SyncDir(dir string) error { return atomicfile.SyncDir(dir) }

// BackupStamp is now as a backup directory's name has it.
func BackupStamp(now time.Time) string { return now.UTC().Format(BackupStampLayout) }

// NewBackupDir makes a new directory for one deployment's backups under
// base (made if missing): base/PREFIX-STAMP, or base/STAMP when prefix is
// "" (STAMP is BackupStamp(now)), with -2, -3... appended when two
// deployments start in the same nanosecond. Both are 0700 (a backup may
// hold keys) and the new entry is synced into base.
func NewBackupDir(base, prefix string, now time.Time) (string, error) {
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", err
	}
	name := BackupStamp(now)
	if prefix != "" {
		name = prefix + "-" + name
	}
	dir := filepath.Join(base, name)
	for i := 2; ; i++ {
		err := os.Mkdir(dir, 0o700)
		if err == nil {
			return dir, SyncDir(base)
		}
		if !errors.Is(err, fs.ErrExist) || i > 100 {
			return "", err
		}
		dir = filepath.Join(base, fmt.Sprintf("%s-%d", name, i))
	}
}

// ReplaceFile writes data to a temp file beside path (mode and owner set
// before the content, so the file is never readable by anyone it should
// not be; fsync), renames it over path and syncs the directory. changed
// says whether path was replaced, also when the directory sync failed.
// The owner is changed only when it differs: a bot that is not root still
// works on its own files.
func ReplaceFile(path string, data []byte, mode fs.FileMode, own Owner) (changed bool, err error) {
	tmp, err := stage(path, data, mode, own)
	if err != nil {
		return false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return false, err
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		return true, err
	}
	return true, nil
}

// ProbeWritable proves that dir takes a new file (what an atomic rename
// needs) before anything is changed: it creates and removes a temp file.
func ProbeWritable(dir string) error {
	f, err := os.CreateTemp(dir, tmpPrefix+"probe-*")
	if err != nil {
		return fmt.Errorf("directory %s is not writable: %w", dir, err)
	}
	name := f.Name()
	_ = f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("directory %s: remove probe: %w", dir, err)
	}
	return nil
}

// KeyMatches says whether the certificate's public key is key's.
func KeyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

// ParseCertificatesPEM reads every CERTIFICATE block of data, in order,
// ignoring other blocks; none is not an error.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out, nil
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
}

// SoftwareKeyPEM checks that m carries a software key matching its
// certificate and returns it as unencrypted PEM, for a target that sends
// the key itself (a cloud service, a load balancer): m.KeyPEM when it is
// such a PEM, else the key marshalled as PKCS#8. The errors never hold
// the key.
func SoftwareKeyPEM(m Material) ([]byte, error) {
	if m.Certificate == nil {
		return nil, errors.New("the material has no certificate")
	}
	if m.Key == nil {
		ref := ""
		if m.KeyRef != nil {
			ref = fmt.Sprintf(" (token key %q)", m.KeyRef.Label)
		}
		return nil, fmt.Errorf("the new key is not in software%s: this target needs the private key itself; use a software key profile", ref)
	}
	if !KeyMatches(m.Certificate, m.Key) {
		return nil, errors.New("the key does not match the certificate's public key")
	}
	if b, _ := pem.Decode(m.KeyPEM); b != nil && strings.HasSuffix(b.Type, "PRIVATE KEY") &&
		!strings.Contains(b.Type, "ENCRYPTED") && b.Headers["Proc-Type"] == "" {
		return pem.EncodeToMemory(b), nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(m.Key)
	if err != nil {
		return nil, fmt.Errorf("the key cannot be written as PKCS#8: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// EndpointsHostPort converts a job's verify list, checking that each
// address is HOST:PORT. The error names the entry ("verify[1].address").
func EndpointsHostPort(in []protocol.VerifyEndpoint) ([]Endpoint, error) {
	var out []Endpoint
	for i, e := range in {
		host, port, err := net.SplitHostPort(e.Address)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("verify[%d].address %q: want HOST:PORT", i, e.Address)
		}
		out = append(out, Endpoint{Address: e.Address, ServerName: e.ServerName})
	}
	return out, nil
}

// ShortFingerprint is a fingerprint (Fingerprint) as step messages show
// it: "sha256:" and its first 16 hex digits.
func ShortFingerprint(fp string) string {
	if len(fp) > 16 {
		return "sha256:" + fp[:16]
	}
	return "sha256:" + fp
}

// Steps records the steps of one deployment: each is appended to
// Result.Steps, logged (Info, or Warn when it failed) and passed to
// Report. Messages have private keys redacted, like reload output.
type Steps struct {
	Result *Result
	// Report, when not nil, gets each step as it ends.
	Report func(Step)
	// Logger nil: steps are not logged.
	Logger *slog.Logger
	// Now stamps the steps; nil: time.Now.
	Now func() time.Time
	// LogPrefix starts each log message ("aws: deploy "): the message is
	// LogPrefix+name, with " failed" after it for a failed step.
	LogPrefix string
	// LogAttrs go on each log line before the message ("path", p).
	LogAttrs []any
}

// Add records the step name ending ok or not, its message made from
// format and args.
func (s *Steps) Add(name string, ok bool, format string, args ...any) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	st := Step{Name: name, OK: ok, Message: redact(fmt.Sprintf(format, args...)), Time: now()}
	s.Result.Steps = append(s.Result.Steps, st)
	if s.Logger != nil {
		attrs := append(append([]any{}, s.LogAttrs...), "message", st.Message)
		if ok {
			s.Logger.Info(s.LogPrefix+name, attrs...)
		} else {
			s.Logger.Warn(s.LogPrefix+name+" failed", attrs...)
		}
	}
	if s.Report != nil {
		s.Report(st)
	}
}

// Refuse ends a deployment that changed nothing: outcome failed, a failed
// prepare step saying err, and the error "PREFIX: refused before any
// change: err" (wrapping ErrRefused and err).
func (s *Steps) Refuse(prefix string, err error) (*Result, error) {
	s.Result.Outcome = OutcomeFailed
	s.Add(StepPrepare, false, "%v", err)
	return s.Result, fmt.Errorf("%s: %w: %w", prefix, ErrRefused, err)
}

// RunCommand runs c (a reload) as the PEM deployment does: without a
// shell unless c.Shell, in c.Dir, bounded by c.Timeout
// (DefaultReloadTimeout when zero) after which the process (its group, on
// Unix) is killed, output kept in a temp file (a restart that leaves a
// daemon behind does not hang it) and shown head and tail, 1 KiB, with
// private keys redacted. It returns what happened, for a step message.
// Whoever runs a command a job asks for must have asked
// Env.AllowReload first.
func RunCommand(ctx context.Context, c Command) (string, error) {
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return "", errors.New("command: argv is empty")
	}
	if c.Shell && len(c.Argv) != 1 {
		return "", errors.New("command: shell takes one string in argv")
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultReloadTimeout
	}
	return runCommand(ctx, &c)
}

// String shows the command in a message: `argv` (quoted where needed), or
// shell "script".
func (c Command) String() string { return commandName(&c) }

// CheckEnv checks what every target needs of env (BackupDir an absolute
// path) and fills in Logger (discard) and Now (time.Now) when nil.
func CheckEnv(env Env) (Env, error) {
	if env.BackupDir == "" || !filepath.IsAbs(env.BackupDir) {
		return env, fmt.Errorf("backup directory %q must be an absolute path", env.BackupDir)
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	return env, nil
}

// ParseDeployTarget checks that spec is of kind and names, in
// spec.Target, the discovery target of scheme the certificate was found
// through (its credentials and endpoint), and returns that target with
// its secrets not yet resolved (no I/O).
func ParseDeployTarget(spec protocol.DeploySpec, kind, scheme string) (protocol.Target, error) {
	if spec.Kind != kind {
		return protocol.Target{}, fmt.Errorf("deploy kind %q is not %s", spec.Kind, kind)
	}
	if spec.Target == "" {
		return protocol.Target{}, fmt.Errorf("deploy target is empty: want the %s:// target the certificate was found through", scheme)
	}
	t, err := protocol.ParseTargetUnresolved(spec.Target)
	if err != nil {
		return protocol.Target{}, fmt.Errorf("deploy target: %w", err)
	}
	if t.Scheme != scheme {
		return protocol.Target{}, fmt.Errorf("deploy target scheme %q is not %s", t.Scheme, scheme)
	}
	return t, nil
}

// CheckService makes the checks every target of a remote service (ACM,
// F5, Cloudflare) starts with: spec is of kind and names its discovery
// target of scheme; it has no reload, since such a service runs no command
// (noReload says what happens instead); env is usable; the verify
// endpoints are host:port. Errors are unprefixed: the caller adds its
// connector's name.
func CheckService(spec protocol.DeploySpec, env Env, kind, scheme, noReload string) (Env, []Endpoint, error) {
	if _, err := ParseDeployTarget(spec, kind, scheme); err != nil {
		return env, nil, err
	}
	if len(spec.Reload) > 0 {
		return env, nil, fmt.Errorf("deploy reload: %s", noReload)
	}
	env, err := CheckEnv(env)
	if err != nil {
		return env, nil, err
	}
	eps, err := EndpointsHostPort(spec.Verify)
	if err != nil {
		return env, nil, err
	}
	return env, eps, nil
}
