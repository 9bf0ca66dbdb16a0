package deploy

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"time"

	"github.com/emsign/bot/protocol"
)

// Target is one kind of place a rotation deploys to (P8): PEM files
// (Deployer), a keystore, a token, a directory entry, a remote host, a
// cloud service. Deploy puts m in place with a backup of what it replaces,
// verifies, and puts the old state back when anything after the first
// change fails. It reports each step as it happens and returns a Result
// whose Outcome is one of the Outcome constants; the error is non-nil
// exactly when the outcome is not deployed or already_deployed, and wraps
// ErrRefused, ErrRolledBack or ErrRollbackFailed.
//
// Targets are built by their package's constructor from the job's
// protocol.DeploySpec; the constructor validates and does no I/O.
type Target interface {
	Deploy(ctx context.Context, m Material, report func(Step)) (*Result, error)
}

// Material is what a rotation deploys: the new certificate, its chain and
// its key. Key is nil when the key stays in an HSM (KeyRef names it).
type Material struct {
	Certificate *x509.Certificate
	// Chain holds the intermediates, issuing CA first.
	Chain []*x509.Certificate
	// Key is the new (or kept) private key; nil for a key made on a
	// PKCS#11 token.
	Key crypto.Signer
	// KeyPEM is Key as the old key file had it (agent/keygen.MarshalLike),
	// for file targets; nil when Key is nil.
	KeyPEM []byte
	// KeyRef names a token key: its CKA_LABEL and CKA_ID (hex).
	KeyRef *TokenKey
}

// TokenKey names a key pair on a PKCS#11 token.
type TokenKey struct {
	Label string
	ID    string
}

// CertPEM is the certificate as PEM.
func (m Material) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.Certificate.Raw})
}

// ChainPEM is the chain as PEM, issuing CA first ("" when empty).
func (m Material) ChainPEM() []byte {
	var out []byte
	for _, c := range m.Chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// Deploy makes the PEM file Deployer a Target.
func (d *Deployer) Deploy(ctx context.Context, m Material, report func(Step)) (*Result, error) {
	return d.Run(ctx, m.CertPEM(), m.ChainPEM(), m.KeyPEM, report)
}

var _ Target = (*Deployer)(nil)

// Env is what every Target constructor may use besides the job's spec:
// where backups go, the bot's rules, its clock and logger.
type Env struct {
	// BackupDir is the bot's backup directory (each deployment makes its
	// own timestamped directory under it).
	BackupDir string
	Logger    *slog.Logger
	Now       func() time.Time
	// AllowReload says whether the bot's settings allow running argv (the
	// allowed_reload list): a command the control plane asks for is run
	// only when it returns nil. Targets that run a command (a local
	// reload, a remote one over SSH) must ask it first.
	AllowReload func(argv []string) error
	// KeystorePasswords are the passwords of the bot's own targets, tried
	// in order on an existing keystore when the job gives none.
	KeystorePasswords []protocol.Secret
}
