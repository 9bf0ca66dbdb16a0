package protocol

import (
	"log/slog"
	"strings"
	"time"
)

// Rotation (B9, P1-P8): the control plane sends a bot a JobRotate job for
// one location it holds. The bot makes the key where Key says, builds the
// CSR from CSR, posts it (PathOrderCSR) until the certificate comes back,
// deploys it where Deploy says (backup, atomic replace, reload), verifies
// and rolls back on failure, and reports the outcome and every step in the
// job's result (JobResult.Rotation), which it spools like any result.
//
// Idempotency: a job delivered twice runs once (the bot remembers job IDs);
// a bot that restarts in the middle keeps the key it made for the order in
// its state directory and posts the same CSR again, and the control plane
// answers a CSR of an order it already issued with the same certificate,
// so one order never orders twice.

// JobRotate is the job kind of a rotation (Job.Rotation is set).
const JobRotate = "rotate"

// Rotation actions (D7). Rotate and rekey make a new key (rotate keeps
// the key when the template says key pair "existing"); renew keeps it.
const (
	ActionRotate = "rotate"
	ActionRekey  = "rekey"
	ActionRenew  = "renew"
)

// Where a rotation's new key is made (P3).
const (
	KeyWhereSoftware = "software" // in the bot's memory, written where Deploy says
	KeyWherePKCS12   = "pkcs12"   // in memory, kept only inside the PKCS#12 keystore written
	KeyWherePKCS11   = "pkcs11"   // inside the HSM token: it never leaves it
)

// Deploy kinds (P8): what the location is.
const (
	DeployPEM        = "pem"        // certificate, chain and key PEM files (nginx, Apache, HAProxy)
	DeployJKS        = "jks"        // a Java keystore entry (Tomcat, Jetty, JBoss)
	DeployPKCS12     = "pkcs12"     // a PKCS#12 keystore file
	DeployPKCS11     = "pkcs11"     // a certificate object on the token, beside the key made there
	DeployLDAP       = "ldap"       // an entry's certificate attribute
	DeploySSH        = "ssh"        // remote PEM files over SFTP, with a remote reload command
	DeployACM        = "aws-acm"    // AWS ACM re-import to the same ARN
	DeployF5         = "f5"         // F5 BIG-IP: upload, then switch the client-ssl profile
	DeployCloudflare = "cloudflare" // a Cloudflare custom certificate update
)

// Rotation is a JobRotate job's work.
type Rotation struct {
	// OrderID is the control plane's order; every call about this
	// rotation names it.
	OrderID string `json:"order_id"`
	Action  string `json:"action"` // ActionRotate, ActionRekey, ActionRenew
	// Location is the URI of the location being replaced (the dedupe key
	// of the finding), for logs and for the bot's own checks.
	Location string `json:"location"`
	// OldCertificate is the DER of the certificate found there (the CSR's
	// defaults, and what verification must no longer see).
	OldCertificate []byte     `json:"old_certificate"`
	Key            KeySpec    `json:"key"`
	CSR            CSRSpec    `json:"csr"`
	Deploy         DeploySpec `json:"deploy"`
}

// KeySpec says which key the new certificate is for.
type KeySpec struct {
	// Where is KeyWhereSoftware, KeyWherePKCS12 or KeyWherePKCS11.
	Where string `json:"where"`
	// Algorithm is a keygen name: ecdsa-p256, ecdsa-p384, rsa-2048,
	// rsa-3072, rsa-4096, ed25519 (not every token makes every one).
	Algorithm string `json:"algorithm"`
	// Existing keeps the key already at the location (key pair
	// "existing", P2; a renew): the CSR is signed with it.
	Existing bool `json:"existing,omitempty"`
	// PKCS11 is set when Where is KeyWherePKCS11.
	PKCS11 *PKCS11Key `json:"pkcs11,omitempty"`
}

// PKCS11Key names the token a key is made on, and how.
type PKCS11Key struct {
	Module      string        `json:"module"`
	TokenLabel  string        `json:"token_label,omitempty"`
	TokenSerial string        `json:"token_serial,omitempty"`
	Slot        *int          `json:"slot,omitempty"`
	PIN         TransitSecret `json:"pin"`
	// Label is the CKA_LABEL given to the new key pair and its
	// certificate object; ID (hex) their CKA_ID ("" makes one from the
	// public key).
	Label string `json:"label"`
	ID    string `json:"id,omitempty"`
}

// CSRSpec is the CSR template (P1) as sent to the bot: the same JSON as
// agent/keygen.Template. With CopyFromCertificate, an empty subject and
// empty SANs are taken from OldCertificate (the rotation's default).
type CSRSpec struct {
	CommonName          string         `json:"cn,omitempty"`
	Organization        []string       `json:"o,omitempty"`
	OrganizationalUnit  []string       `json:"ou,omitempty"`
	Locality            []string       `json:"l,omitempty"`
	Province            []string       `json:"st,omitempty"`
	Country             []string       `json:"c,omitempty"`
	Email               []string       `json:"email,omitempty"`
	ExtraNames          []CSRAttribute `json:"extra_names,omitempty"`
	DNSNames            []string       `json:"dns_names,omitempty"`
	IPAddresses         []string       `json:"ip_addresses,omitempty"`
	EmailAddresses      []string       `json:"email_addresses,omitempty"`
	URIs                []string       `json:"uris,omitempty"`
	SignatureAlgorithm  string         `json:"signature_algorithm,omitempty"`
	CopyFromCertificate bool           `json:"copy_from_certificate,omitempty"`
}

// CSRAttribute is a subject attribute by OID (e.g. 2.5.4.97).
type CSRAttribute struct {
	OID   string `json:"oid"`
	Value string `json:"value"`
}

// DeploySpec says where the new certificate goes and how it is checked.
// Which fields apply depends on Kind.
type DeploySpec struct {
	Kind string `json:"kind"` // Deploy* constants

	// DeployPEM (and DeploySSH on the remote host): the files. KeyPath ""
	// means the key file that holds the old certificate's key: the same
	// file when it holds one, else a *.key or *.pem file in the
	// certificate's directory whose key matches (the bot looks).
	CertPath    string `json:"cert_path,omitempty"`
	KeyPath     string `json:"key_path,omitempty"`
	ChainPath   string `json:"chain_path,omitempty"`
	ChainInCert bool   `json:"chain_in_cert,omitempty"`

	// DeployJKS, DeployPKCS12: the keystore, its password (manual, or
	// the random one the control plane made for the order) and the
	// entry; Alias "" is the entry holding the old certificate.
	KeystorePath     string        `json:"keystore_path,omitempty"`
	KeystorePassword TransitSecret `json:"keystore_password,omitzero"`
	Alias            string        `json:"alias,omitempty"`

	// Target is the discovery target the location was found through
	// (with its credentials), for the kinds reached over the network:
	// ldap, ssh, aws-acm, f5, cloudflare. Sent only over mTLS, like
	// BotConfig.Targets; the bot never stores it.
	Target string `json:"target,omitempty"`
	// Object names the thing at the target: the LDAP entry DN and
	// attribute ("dn#attribute"), the ACM ARN, the F5 certificate and
	// profile ("/Common/name#/Common/profile"), the Cloudflare custom
	// certificate ID ("zone#id").
	Object string `json:"object,omitempty"`

	// Reload runs after the write (argv, no shell). The bot runs it only
	// when its own settings allow that exact command (allowed_reload), so
	// that the control plane cannot run arbitrary commands on a server.
	Reload []string `json:"reload,omitempty"`
	// Verify lists the endpoints that served the old certificate: each
	// must serve the new one after the reload.
	Verify        []VerifyEndpoint `json:"verify,omitempty"`
	VerifyTimeout Duration         `json:"verify_timeout,omitempty"`
}

// VerifyEndpoint is a TLS endpoint checked after a deployment.
type VerifyEndpoint struct {
	Address    string `json:"address"`               // host:port
	ServerName string `json:"server_name,omitempty"` // SNI
}

// PathOrderCSR: POST OrderCSR → OrderCertificate. Use OrderCSRPath. The
// call is idempotent: the same CSR again gets the same certificate; while
// the CA works the answer is pending with a RetryAfter.
const PathOrderCSR = BotAPIPrefix + "/orders/{order}/csr"

// OrderCSRPath is PathOrderCSR for one order.
func OrderCSRPath(order string) string { return BotAPIPrefix + "/orders/" + order + "/csr" }

// OrderCSR carries the CSR of a rotation.
type OrderCSR struct {
	CSR string `json:"csr"` // PEM
}

// Order certificate statuses.
const (
	OrderPending = "pending"
	OrderIssued  = "issued"
)

// OrderCertificate answers OrderCSR.
type OrderCertificate struct {
	Status string `json:"status"` // OrderPending or OrderIssued
	// Certificate and Chain (intermediates, issuing CA first) are PEM,
	// when issued.
	Certificate string   `json:"certificate,omitempty"`
	Chain       string   `json:"chain,omitempty"`
	RetryAfter  Duration `json:"retry_after,omitempty"`
}

// Rotation outcomes (RotationResult.Outcome), as agent/deploy names them.
const (
	OutcomeDeployed        = "deployed"
	OutcomeAlreadyDeployed = "already_deployed"
	OutcomeFailed          = "failed"          // nothing was changed
	OutcomeRolledBack      = "rolled_back"     // changed, failed, and put back
	OutcomeRollbackFailed  = "rollback_failed" // changed, failed, not all put back
)

// RotationResult is the rotation part of a JobResult.
type RotationResult struct {
	OrderID string `json:"order_id"`
	Outcome string `json:"outcome"`
	// Fingerprint is the SHA-256 (hex) of the certificate deployed.
	Fingerprint string         `json:"fingerprint,omitempty"`
	Steps       []RotationStep `json:"steps"`
}

// Rotation step names, in order; a step may repeat (verify per endpoint).
const (
	StepKey      = "key"      // the key was made (or the existing one found)
	StepCSR      = "csr"      // the CSR was built and posted
	StepIssued   = "issued"   // the certificate came back
	StepPrepare  = "prepare"  // the deployment was planned and checked
	StepBackup   = "backup"   // what is replaced was copied aside
	StepWrite    = "write"    // the new files or objects are in place
	StepReload   = "reload"   // the reload command ran
	StepVerify   = "verify"   // an endpoint or store serves the new one
	StepRollback = "rollback" // the old state was put back
)

// RotationStep is one step of a rotation, as it happened on the bot.
type RotationStep struct {
	Name    string    `json:"name"`
	OK      bool      `json:"ok"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}

// LogValue methods keep the secrets of a job (the PIN, the keystore
// password, the credentials in Target) out of slog output, whose JSON
// handler would otherwise marshal them: every type that holds a
// TransitSecret or a target with credentials has one.

// LogValue shows the job without its rotation's secrets.
func (j Job) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("id", j.ID), slog.String("kind", j.Kind)}
	if j.ScanID != "" {
		attrs = append(attrs, slog.String("scan_id", j.ScanID))
	}
	if j.Rotation != nil {
		attrs = append(attrs, slog.Any("rotation", *j.Rotation))
	}
	return slog.GroupValue(attrs...)
}

// LogValue shows the rotation without its secrets.
func (r Rotation) LogValue() slog.Value {
	return slog.GroupValue(slog.String("order_id", r.OrderID), slog.String("action", r.Action),
		slog.String("location", r.Location), slog.Any("key", r.Key), slog.Any("deploy", r.Deploy))
}

// LogValue shows where the key is made, without the PIN.
func (k KeySpec) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("where", k.Where), slog.String("algorithm", k.Algorithm), slog.Bool("existing", k.Existing)}
	if k.PKCS11 != nil {
		attrs = append(attrs, slog.Any("pkcs11", *k.PKCS11))
	}
	return slog.GroupValue(attrs...)
}

// LogValue shows the token without the PIN.
func (k PKCS11Key) LogValue() slog.Value {
	return slog.GroupValue(slog.String("module", k.Module), slog.String("token_label", k.TokenLabel),
		slog.String("token_serial", k.TokenSerial), slog.String("label", k.Label), slog.String("id", k.ID))
}

// LogValue shows the deployment without the keystore password and the
// target's credentials (only the target's kind).
func (d DeploySpec) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("kind", d.Kind)}
	for _, f := range []struct{ k, v string }{{"cert_path", d.CertPath}, {"key_path", d.KeyPath}, {"chain_path", d.ChainPath},
		{"keystore_path", d.KeystorePath}, {"alias", d.Alias}, {"object", d.Object}} {
		if f.v != "" {
			attrs = append(attrs, slog.String(f.k, f.v))
		}
	}
	if d.Target != "" {
		kind, _, _ := strings.Cut(d.Target, ":")
		attrs = append(attrs, slog.String("target", kind+":…"))
	}
	if len(d.Reload) > 0 {
		attrs = append(attrs, slog.Any("reload", d.Reload))
	}
	return slog.GroupValue(attrs...)
}
