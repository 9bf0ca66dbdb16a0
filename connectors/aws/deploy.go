package aws

// Deploy target (P8): re-import a rotated certificate into AWS Certificate
// Manager over the same ARN, so that the load balancers, CloudFront
// distributions and API Gateway domains that use it keep it
// (https://docs.aws.amazon.com/acm/latest/APIReference/API_ImportCertificate.html:
// "Include this argument only when you want to replace a previously
// imported certificate").
//
// ACM never gives a private key back (GetCertificate returns the
// certificate and chain only), so once the new certificate is imported the
// bot cannot put the old one back: a failure after the import is reported
// as rollback_failed, with the old certificate and chain in the backup.

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/acm"
	acmtypes "github.com/aws/aws-sdk-go-v2/service/acm/types"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/protocol"
)

// acmARN is an ACM certificate ARN:
// arn:PARTITION:acm:REGION:ACCOUNT:certificate/ID.
var acmARN = regexp.MustCompile(`^arn:(aws|aws-cn|aws-us-gov|aws-iso[a-z-]*):acm:([a-z0-9-]+):([0-9]{12}):certificate/([A-Za-z0-9-]+)$`)

// Deployer re-imports a certificate into ACM over one ARN. It is a
// deploy.Target; build it with NewDeployer.
type Deployer struct {
	src    *Source
	spec   protocol.DeploySpec
	env    deploy.Env
	log    *slog.Logger
	arn    string
	region string
	verify []deploy.Endpoint
}

var _ deploy.Target = (*Deployer)(nil)

// NewDeployer builds the ACM target of a rotation job: spec.Kind is
// protocol.DeployACM, spec.Target the aws:// discovery target (its
// credentials and endpoint), spec.Object the certificate ARN. It validates
// and does no I/O.
func NewDeployer(spec protocol.DeploySpec, env deploy.Env) (deploy.Target, error) {
	return NewDeployerConfig(spec, env, Config{})
}

// NewDeployerConfig is NewDeployer with the connector's Config (an HTTP
// client, the SDK's retry bound); its Logger and Now default to env's.
func NewDeployerConfig(spec protocol.DeploySpec, env deploy.Env, cfg Config) (*Deployer, error) {
	if spec.Kind != protocol.DeployACM {
		return nil, fmt.Errorf("aws: deploy kind %q is not %s", spec.Kind, protocol.DeployACM)
	}
	if spec.Target == "" {
		return nil, errors.New("aws: deploy target is empty: want the aws:// target the certificate was found through")
	}
	t, err := protocol.ParseTargetUnresolved(spec.Target)
	if err != nil {
		return nil, fmt.Errorf("aws: deploy target: %w", err)
	}
	if t.Scheme != protocol.SchemeAWS {
		return nil, fmt.Errorf("aws: deploy target scheme %q is not %s", t.Scheme, protocol.SchemeAWS)
	}
	sm := acmARN.FindStringSubmatch(spec.Object)
	if sm == nil {
		return nil, fmt.Errorf("aws: deploy object %q is not an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)", spec.Object)
	}
	if len(spec.Reload) > 0 {
		return nil, errors.New("aws: deploy reload: ACM runs no command; services using the certificate pick the re-import up by themselves")
	}
	if env.BackupDir == "" || !filepath.IsAbs(env.BackupDir) {
		return nil, fmt.Errorf("aws: backup directory %q must be an absolute path", env.BackupDir)
	}
	eps, err := endpoints(spec.Verify)
	if err != nil {
		return nil, fmt.Errorf("aws: %w", err)
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = env.Logger
	}
	if cfg.Now == nil {
		cfg.Now = env.Now
	}
	src, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return &Deployer{src: src, spec: spec, env: env, log: env.Logger, arn: spec.Object, region: sm[2], verify: eps}, nil
}

// endpoints converts the job's verify list, checking each address.
func endpoints(in []protocol.VerifyEndpoint) ([]deploy.Endpoint, error) {
	var out []deploy.Endpoint
	for i, e := range in {
		host, port, err := net.SplitHostPort(e.Address)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("verify[%d].address %q: want HOST:PORT", i, e.Address)
		}
		out = append(out, deploy.Endpoint{Address: e.Address, ServerName: e.ServerName})
	}
	return out, nil
}

// Deploy re-imports m over the ARN: prepare (DescribeCertificate: it
// exists and is IMPORTED; GetCertificate: what it holds now), backup (the
// old certificate and chain), write (ImportCertificate with the same
// CertificateArn), verify (DescribeCertificate shows the new serial and
// NotAfter; the job's endpoints serve it). A failure after the import
// cannot be undone (ACM keeps no key to restore) and ends rollback_failed.
func (d *Deployer) Deploy(ctx context.Context, m deploy.Material, report func(deploy.Step)) (*deploy.Result, error) {
	r := &run{log: d.log, now: d.env.Now, report: report, res: &deploy.Result{}}
	keyPEM, err := materialKey(m)
	if err != nil {
		return r.refuse(err)
	}
	newFP := deploy.Fingerprint(m.Certificate)
	r.res.Fingerprint = newFP

	t, err := protocol.ParseTarget(d.spec.Target)
	if err != nil {
		return r.refuse(fmt.Errorf("target: %w", err))
	}
	awsCfg, err := d.src.loadConfig(ctx, t, d.region)
	if err != nil {
		return r.refuse(errors.New(strings.TrimPrefix(err.Error(), "aws: ")))
	}
	client := acm.NewFromConfig(awsCfg, func(o *acm.Options) { o.Region = d.region })

	desc, err := client.DescribeCertificate(ctx, &acm.DescribeCertificateInput{CertificateArn: &d.arn})
	if err != nil {
		return r.refuse(errors.New(describe(err)))
	}
	cd := desc.Certificate
	if cd == nil {
		return r.refuse(fmt.Errorf("DescribeCertificate %s: empty answer", d.arn))
	}
	if cd.Type != acmtypes.CertificateTypeImported {
		return r.refuse(fmt.Errorf("ACM certificate %s is %s, not IMPORTED: ACM issues and renews it itself, and only an imported certificate can be re-imported over its ARN; rotate it in ACM, or import the new certificate as a new ARN and attach that", d.arn, cd.Type))
	}
	got, err := client.GetCertificate(ctx, &acm.GetCertificateInput{CertificateArn: &d.arn})
	if err != nil {
		return r.refuse(errors.New(describe(err)))
	}
	oldLeafPEM, oldChainPEM := awssdk.ToString(got.Certificate), awssdk.ToString(got.CertificateChain)
	if b, _ := pem.Decode([]byte(oldLeafPEM)); b != nil {
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			r.res.OldFingerprint = deploy.Fingerprint(c)
		}
	}
	inUse := "used by no AWS resource"
	if len(cd.InUseBy) > 0 {
		inUse = fmt.Sprintf("used by %d AWS resources (%s), which keep the ARN", len(cd.InUseBy), strings.Join(cd.InUseBy, ", "))
	}

	if r.res.OldFingerprint == newFP {
		r.step(deploy.StepPrepare, true, "already deployed: ACM certificate %s already holds certificate %s; nothing imported, only verified", d.arn, short(newFP))
		if err := d.verifyAll(ctx, r, client, m.Certificate, newFP); err != nil {
			r.res.Outcome = deploy.OutcomeFailed
			return r.res, fmt.Errorf("aws: already deployed, but %w", err)
		}
		r.res.Outcome = deploy.OutcomeAlreadyDeployed
		return r.res, nil
	}
	r.step(deploy.StepPrepare, true, "ACM certificate %s (IMPORTED, %s, %s, not after %s, serial %s) is %s; it will be re-imported with certificate %s (serial %s, not after %s)",
		d.arn, cd.Status, awssdk.ToString(cd.DomainName), timeString(cd.NotAfter), awssdk.ToString(cd.Serial), inUse,
		short(newFP), acmSerial(m.Certificate.SerialNumber), m.Certificate.NotAfter.UTC().Format(time.RFC3339))

	dir, err := d.backup(cd, oldLeafPEM, oldChainPEM)
	r.res.BackupDir = dir
	if err != nil {
		r.res.Outcome = deploy.OutcomeFailed
		r.step(deploy.StepBackup, false, "%v", err)
		return r.res, fmt.Errorf("aws: backup: %w", err)
	}
	r.step(deploy.StepBackup, true, "old certificate and chain copied to %s (ACM never returns a private key: the old key is not in the backup)", dir)

	in := &acm.ImportCertificateInput{
		CertificateArn: &d.arn,
		Certificate:    m.CertPEM(),
		PrivateKey:     keyPEM,
	}
	if chain := m.ChainPEM(); len(chain) > 0 {
		in.CertificateChain = chain
	}
	if _, err := client.ImportCertificate(ctx, in); err != nil {
		// A lost answer may hide a done import: ask ACM what it holds now.
		if !d.holds(ctx, client, m.Certificate) {
			r.res.Outcome = deploy.OutcomeFailed
			r.step(deploy.StepWrite, false, "%s (ACM still holds the old certificate)", describe(err))
			return r.res, fmt.Errorf("aws: write (nothing replaced): %s", describe(err))
		}
		d.log.Warn("aws: ImportCertificate failed, but ACM holds the new certificate", "arn", d.arn, "error", describe(err))
	}
	r.step(deploy.StepWrite, true, "re-imported certificate %s over %s", short(newFP), d.arn)

	if err := d.verifyAll(ctx, r, client, m.Certificate, newFP); err != nil {
		return r.noRollback(d.arn, err)
	}
	r.res.Outcome = deploy.OutcomeDeployed
	return r.res, nil
}

// holds reports whether ACM now describes the certificate c at the ARN.
func (d *Deployer) holds(ctx context.Context, client *acm.Client, c *x509.Certificate) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	desc, err := client.DescribeCertificate(ctx, &acm.DescribeCertificateInput{CertificateArn: &d.arn})
	return err == nil && desc.Certificate != nil && sameSerial(awssdk.ToString(desc.Certificate.Serial), c.SerialNumber)
}

// verifyAll checks that ACM describes the new certificate (serial and
// NotAfter: DescribeCertificate has no fingerprint), then that every
// endpoint of the job serves it.
func (d *Deployer) verifyAll(ctx context.Context, r *run, client *acm.Client, c *x509.Certificate, fp string) error {
	desc, err := client.DescribeCertificate(ctx, &acm.DescribeCertificateInput{CertificateArn: &d.arn})
	if err != nil {
		r.step(deploy.StepVerify, false, "%s", describe(err))
		return fmt.Errorf("verify: %s", describe(err))
	}
	cd := desc.Certificate
	if cd == nil || !sameSerial(awssdk.ToString(cd.Serial), c.SerialNumber) || cd.NotAfter == nil || !cd.NotAfter.Equal(c.NotAfter.Truncate(time.Second)) {
		serial, notAfter := "", ""
		if cd != nil {
			serial, notAfter = awssdk.ToString(cd.Serial), timeString(cd.NotAfter)
		}
		err := fmt.Errorf("ACM describes serial %s, not after %s at %s; want serial %s, not after %s",
			serial, notAfter, d.arn, acmSerial(c.SerialNumber), c.NotAfter.UTC().Format(time.RFC3339))
		r.step(deploy.StepVerify, false, "%v", err)
		return fmt.Errorf("verify: %w", err)
	}
	r.step(deploy.StepVerify, true, "ACM describes %s with serial %s, not after %s, status %s", d.arn, awssdk.ToString(cd.Serial), timeString(cd.NotAfter), cd.Status)
	if len(d.verify) == 0 {
		return nil
	}
	msg, err := deploy.VerifyEndpoints(ctx, d.verify, fp, time.Duration(d.spec.VerifyTimeout), 0)
	if err != nil {
		r.step(deploy.StepVerify, false, "%v", err)
		return fmt.Errorf("verify: %w", err)
	}
	r.step(deploy.StepVerify, true, "%s", msg)
	return nil
}

// backup writes the certificate ACM holds now, its chain and its
// description to a new directory under the backup directory.
func (d *Deployer) backup(cd *acmtypes.CertificateDetail, leaf, chain string) (string, error) {
	dir, err := backupDir(d.env.BackupDir, d.env.Now(), "acm")
	if err != nil {
		return dir, err
	}
	descJSON, err := json.MarshalIndent(cd, "", "  ")
	if err != nil {
		return dir, err
	}
	manifest, _ := json.MarshalIndent(map[string]string{
		"kind":        protocol.DeployACM,
		"arn":         d.arn,
		"region":      d.region,
		"certificate": "certificate.pem",
		"chain":       "chain.pem",
		"description": "describe-certificate.json",
		"note":        "ACM never returns a private key: to restore, re-import certificate.pem and chain.pem with the old key (aws acm import-certificate --certificate-arn ARN)",
	}, "", "  ")
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"certificate.pem", []byte(leaf)},
		{"chain.pem", []byte(chain)},
		{"describe-certificate.json", append(descJSON, '\n')},
		{"manifest.json", append(manifest, '\n')},
	} {
		if err := writeAtomic(dir, f.name, f.data); err != nil {
			return dir, err
		}
	}
	return dir, syncDir(d.env.BackupDir)
}

// acmSerial writes a serial number as ACM does: lowercase hex bytes
// separated by colons.
func acmSerial(n *big.Int) string {
	b := n.Bytes()
	if len(b) == 0 {
		b = []byte{0}
	}
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, ":")
}

// sameSerial compares ACM's serial text with a serial number, whatever
// the case and separators.
func sameSerial(text string, n *big.Int) bool {
	h := strings.NewReplacer(":", "", " ", "").Replace(text)
	v, ok := new(big.Int).SetString(h, 16)
	return ok && v.Cmp(n) == 0
}

func timeString(t *time.Time) string {
	if t == nil {
		return "unknown"
	}
	return t.UTC().Format(time.RFC3339)
}

func short(fp string) string {
	if len(fp) > 16 {
		fp = fp[:16]
	}
	return "sha256:" + fp
}

// materialKey checks that m carries a software key matching its
// certificate and returns it as unencrypted PEM, as the target needs it:
// KeyPEM when it is such a PEM, else the key marshalled as PKCS#8.
func materialKey(m deploy.Material) ([]byte, error) {
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
	pub, ok := m.Key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(m.Certificate.PublicKey) {
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

// run is the state of one Deploy: its steps and result.
type run struct {
	log    *slog.Logger
	now    func() time.Time
	report func(deploy.Step)
	res    *deploy.Result
}

func (r *run) step(name string, ok bool, format string, args ...any) {
	s := deploy.Step{Name: name, OK: ok, Message: fmt.Sprintf(format, args...), Time: r.now()}
	r.res.Steps = append(r.res.Steps, s)
	if ok {
		r.log.Info("aws: deploy "+name, "message", s.Message)
	} else {
		r.log.Warn("aws: deploy "+name+" failed", "message", s.Message)
	}
	if r.report != nil {
		r.report(s)
	}
}

// refuse ends a deployment that changed nothing.
func (r *run) refuse(err error) (*deploy.Result, error) {
	r.res.Outcome = deploy.OutcomeFailed
	r.step(deploy.StepPrepare, false, "%v", err)
	return r.res, fmt.Errorf("aws: %w: %w", deploy.ErrRefused, err)
}

// noRollback ends a deployment that failed after the import: ACM keeps no
// private key, so the old certificate cannot be put back by the bot.
func (r *run) noRollback(arn string, cause error) (*deploy.Result, error) {
	r.res.Outcome = deploy.OutcomeRollbackFailed
	r.step(deploy.StepRollback, false, "ROLLBACK NOT POSSIBLE after %v: ACM keeps no private key, so the bot cannot re-import the old certificate over %s, which now holds the new one. The old certificate and chain are in %s; to go back, re-import them with the old key (aws acm import-certificate --certificate-arn %s)",
		cause, arn, r.res.BackupDir, arn)
	return r.res, fmt.Errorf("aws: %w (ACM keeps no key to restore; old certificate in %s) after: %w", deploy.ErrRollbackFailed, r.res.BackupDir, cause)
}

// backupDir makes a new directory PREFIX-STAMP under base (0700: a backup
// may hold keys elsewhere; this one holds certificates only).
func backupDir(base string, now time.Time, prefix string) (string, error) {
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", err
	}
	stamp := prefix + "-" + now.UTC().Format("20060102T150405.000000000Z")
	dir := filepath.Join(base, stamp)
	for i := 2; ; i++ {
		err := os.Mkdir(dir, 0o700)
		if err == nil {
			return dir, nil
		}
		if !errors.Is(err, fs.ErrExist) || i > 100 {
			return "", err
		}
		dir = filepath.Join(base, fmt.Sprintf("%s-%d", stamp, i))
	}
}

// writeAtomic writes name in dir through a synced temporary file renamed
// into place, then syncs dir: the file is whole or absent after a crash.
func writeAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", filepath.Join(dir, name), err)
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable; Windows cannot open a directory
// for it, and NTFS journals the rename itself.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
