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
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"path/filepath"
	"regexp"
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
	env, eps, err := deploy.CheckService(spec, env, protocol.DeployACM, protocol.SchemeAWS, "ACM runs no command; services using the certificate pick the re-import up by themselves")
	if err != nil {
		return nil, fmt.Errorf("aws: %w", err)
	}
	sm := acmARN.FindStringSubmatch(spec.Object)
	if sm == nil {
		return nil, fmt.Errorf("aws: deploy object %q is not an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)", spec.Object)
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

// Deploy re-imports m over the ARN: prepare (DescribeCertificate: it
// exists and is IMPORTED; GetCertificate: what it holds now), backup (the
// old certificate and chain), write (ImportCertificate with the same
// CertificateArn), verify (DescribeCertificate shows the new serial and
// NotAfter; the job's endpoints serve it). A failure after the import
// cannot be undone (ACM keeps no key to restore) and ends rollback_failed.
func (d *Deployer) Deploy(ctx context.Context, m deploy.Material, report func(deploy.Step)) (*deploy.Result, error) {
	r := &deploy.Steps{Result: &deploy.Result{}, Report: report, Logger: d.log, Now: d.env.Now, LogPrefix: "aws: deploy "}
	keyPEM, err := deploy.SoftwareKeyPEM(m)
	if err != nil {
		return r.Refuse("aws", err)
	}
	newFP := deploy.Fingerprint(m.Certificate)
	r.Result.Fingerprint = newFP

	t, err := protocol.ParseTarget(d.spec.Target)
	if err != nil {
		return r.Refuse("aws", fmt.Errorf("target: %w", err))
	}
	awsCfg, err := d.src.loadConfig(ctx, t, d.region)
	if err != nil {
		return r.Refuse("aws", errors.New(strings.TrimPrefix(err.Error(), "aws: ")))
	}
	client := acm.NewFromConfig(awsCfg, func(o *acm.Options) { o.Region = d.region })

	desc, err := client.DescribeCertificate(ctx, &acm.DescribeCertificateInput{CertificateArn: &d.arn})
	if err != nil {
		return r.Refuse("aws", errors.New(describe(err)))
	}
	cd := desc.Certificate
	if cd == nil {
		return r.Refuse("aws", fmt.Errorf("DescribeCertificate %s: empty answer", d.arn))
	}
	if cd.Type != acmtypes.CertificateTypeImported {
		return r.Refuse("aws", fmt.Errorf("ACM certificate %s is %s, not IMPORTED: ACM issues and renews it itself, and only an imported certificate can be re-imported over its ARN; rotate it in ACM, or import the new certificate as a new ARN and attach that", d.arn, cd.Type))
	}
	got, err := client.GetCertificate(ctx, &acm.GetCertificateInput{CertificateArn: &d.arn})
	if err != nil {
		return r.Refuse("aws", errors.New(describe(err)))
	}
	oldLeafPEM, oldChainPEM := awssdk.ToString(got.Certificate), awssdk.ToString(got.CertificateChain)
	if b, _ := pem.Decode([]byte(oldLeafPEM)); b != nil {
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			r.Result.OldFingerprint = deploy.Fingerprint(c)
		}
	}
	inUse := "used by no AWS resource"
	if len(cd.InUseBy) > 0 {
		inUse = fmt.Sprintf("used by %d AWS resources (%s), which keep the ARN", len(cd.InUseBy), strings.Join(cd.InUseBy, ", "))
	}

	if r.Result.OldFingerprint == newFP {
		r.Add(deploy.StepPrepare, true, "already deployed: ACM certificate %s already holds certificate %s; nothing imported, only verified", d.arn, deploy.ShortFingerprint(newFP))
		if err := d.verifyAll(ctx, r, client, m.Certificate, newFP); err != nil {
			r.Result.Outcome = deploy.OutcomeFailed
			return r.Result, fmt.Errorf("aws: already deployed, but %w", err)
		}
		r.Result.Outcome = deploy.OutcomeAlreadyDeployed
		return r.Result, nil
	}
	r.Add(deploy.StepPrepare, true, "ACM certificate %s (IMPORTED, %s, %s, not after %s, serial %s) is %s; it will be re-imported with certificate %s (serial %s, not after %s)",
		d.arn, cd.Status, awssdk.ToString(cd.DomainName), timeString(cd.NotAfter), awssdk.ToString(cd.Serial), inUse,
		deploy.ShortFingerprint(newFP), acmSerial(m.Certificate.SerialNumber), m.Certificate.NotAfter.UTC().Format(time.RFC3339))

	dir, err := d.backup(cd, oldLeafPEM, oldChainPEM)
	r.Result.BackupDir = dir
	if err != nil {
		r.Result.Outcome = deploy.OutcomeFailed
		r.Add(deploy.StepBackup, false, "%v", err)
		return r.Result, fmt.Errorf("aws: backup: %w", err)
	}
	r.Add(deploy.StepBackup, true, "old certificate and chain copied to %s (ACM never returns a private key: the old key is not in the backup)", dir)

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
			r.Result.Outcome = deploy.OutcomeFailed
			r.Add(deploy.StepWrite, false, "%s (ACM still holds the old certificate)", describe(err))
			return r.Result, fmt.Errorf("aws: write (nothing replaced): %s", describe(err))
		}
		d.log.Warn("aws: ImportCertificate failed, but ACM holds the new certificate", "arn", d.arn, "error", describe(err))
	}
	r.Add(deploy.StepWrite, true, "re-imported certificate %s over %s", deploy.ShortFingerprint(newFP), d.arn)

	if err := d.verifyAll(ctx, r, client, m.Certificate, newFP); err != nil {
		return noRollback(r, d.arn, err)
	}
	r.Result.Outcome = deploy.OutcomeDeployed
	return r.Result, nil
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
func (d *Deployer) verifyAll(ctx context.Context, r *deploy.Steps, client *acm.Client, c *x509.Certificate, fp string) error {
	desc, err := client.DescribeCertificate(ctx, &acm.DescribeCertificateInput{CertificateArn: &d.arn})
	if err != nil {
		r.Add(deploy.StepVerify, false, "%s", describe(err))
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
		r.Add(deploy.StepVerify, false, "%v", err)
		return fmt.Errorf("verify: %w", err)
	}
	r.Add(deploy.StepVerify, true, "ACM describes %s with serial %s, not after %s, status %s", d.arn, awssdk.ToString(cd.Serial), timeString(cd.NotAfter), cd.Status)
	if len(d.verify) == 0 {
		return nil
	}
	msg, err := deploy.VerifyEndpoints(ctx, d.verify, fp, time.Duration(d.spec.VerifyTimeout), 0)
	if err != nil {
		r.Add(deploy.StepVerify, false, "%v", err)
		return fmt.Errorf("verify: %w", err)
	}
	r.Add(deploy.StepVerify, true, "%s", msg)
	return nil
}

// backup writes the certificate ACM holds now, its chain and its
// description to a new directory under the backup directory.
func (d *Deployer) backup(cd *acmtypes.CertificateDetail, leaf, chain string) (string, error) {
	dir, err := deploy.NewBackupDir(d.env.BackupDir, "acm", d.env.Now())
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
		if err := deploy.WriteFileAtomic(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return dir, err
		}
	}
	return dir, nil
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

// noRollback ends a deployment that failed after the import: ACM keeps no
// private key, so the old certificate cannot be put back by the bot.
func noRollback(r *deploy.Steps, arn string, cause error) (*deploy.Result, error) {
	r.Result.Outcome = deploy.OutcomeRollbackFailed
	r.Add(deploy.StepRollback, false, "ROLLBACK NOT POSSIBLE after %v: ACM keeps no private key, so the bot cannot re-import the old certificate over %s, which now holds the new one. The old certificate and chain are in %s; to go back, re-import them with the old key (aws acm import-certificate --certificate-arn %s)",
		cause, arn, r.Result.BackupDir, arn)
	return r.Result, fmt.Errorf("aws: %w (ACM keeps no key to restore; old certificate in %s) after: %w", deploy.ErrRollbackFailed, r.Result.BackupDir, cause)
}
