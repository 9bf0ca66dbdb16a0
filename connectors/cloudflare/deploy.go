package cloudflare

// Deploy target (P8): replace the certificate and key of a zone's custom
// certificate through the Cloudflare API v4 (PATCH
// /zones/{zone_id}/custom_certificates/{id}, "Upload a new private key
// and/or PEM/CRT for the SSL certificate",
// https://developers.cloudflare.com/api/resources/custom_certificates/methods/edit/).
//
// The API returns no certificate and no key (GET gives metadata: hosts,
// issuer, signature, expires_on, status), so the old certificate cannot be
// uploaded again by the bot: a failure after the PATCH is reported as
// rollback_failed, with the old metadata in the backup. An sni_custom
// certificate gets a new id on every PATCH ("the previous one being
// deleted"); the deployer follows the id the PATCH returns.

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/cloudflare/cloudflare-go/v6/custom_certificates"
	"github.com/cloudflare/cloudflare-go/v6/custom_hostnames"
	"github.com/cloudflare/cloudflare-go/v6/option"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/protocol"
)

// cfID is a Cloudflare identifier (zone or certificate): at most 32
// characters, hex in practice.
var cfID = regexp.MustCompile(`^[A-Za-z0-9]{1,32}$`)

// Deployer replaces one custom certificate of a zone. It is a
// deploy.Target; build it with NewDeployer.
type Deployer struct {
	src    *Source
	spec   protocol.DeploySpec
	env    deploy.Env
	log    *slog.Logger
	zone   string
	id     string
	verify []deploy.Endpoint
}

var _ deploy.Target = (*Deployer)(nil)

// NewDeployer builds the Cloudflare target of a rotation job: spec.Kind is
// protocol.DeployCloudflare, spec.Target the cloudflare:// discovery target
// (api_token, or email and api_key; endpoint), spec.Object
// "ZONE_ID#CUSTOM_CERTIFICATE_ID". It validates and does no I/O.
func NewDeployer(spec protocol.DeploySpec, env deploy.Env) (deploy.Target, error) {
	return NewDeployerConfig(spec, env, Config{})
}

// NewDeployerConfig is NewDeployer with the connector's Config (HTTP
// client, retries); its Logger and Now default to env's.
func NewDeployerConfig(spec protocol.DeploySpec, env deploy.Env, cfg Config) (*Deployer, error) {
	env, eps, err := deploy.CheckService(spec, env, protocol.DeployCloudflare, protocol.SchemeCloudflare, "Cloudflare runs no command; the edge serves the new certificate by itself")
	if err != nil {
		return nil, fmt.Errorf("cloudflare: %w", err)
	}
	zone, id, ok := strings.Cut(spec.Object, "#")
	if !ok || !cfID.MatchString(zone) || !cfID.MatchString(id) {
		return nil, fmt.Errorf("cloudflare: deploy object %q: want ZONE_ID#CUSTOM_CERTIFICATE_ID", spec.Object)
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
	return &Deployer{src: src, spec: spec, env: env, log: env.Logger, zone: zone, id: id, verify: eps}, nil
}

// Deploy replaces the custom certificate with m: prepare (GET it: it
// exists, and the new certificate covers its hosts), backup (the GET's
// metadata: the API returns no certificate), write (PATCH certificate =
// leaf and chain, private_key, bundle_method ubiquitous), verify (GET shows
// the new certificate's expiry; the job's endpoints serve it). A failure
// after the PATCH cannot be undone (the old key is not kept by the API) and
// ends rollback_failed.
func (d *Deployer) Deploy(ctx context.Context, m deploy.Material, report func(deploy.Step)) (*deploy.Result, error) {
	r := &deploy.Steps{Result: &deploy.Result{}, Report: report, Logger: d.log, Now: d.env.Now, LogPrefix: "cloudflare: deploy "}
	keyPEM, err := deploy.SoftwareKeyPEM(m)
	if err != nil {
		return r.Refuse("cloudflare", err)
	}
	newFP := deploy.Fingerprint(m.Certificate)
	r.Result.Fingerprint = newFP
	t, err := protocol.ParseTarget(d.spec.Target)
	if err != nil {
		return r.Refuse("cloudflare", fmt.Errorf("target: %w", err))
	}
	opts, err := d.src.options(t)
	if err != nil {
		return r.Refuse("cloudflare", errors.New(strings.TrimPrefix(err.Error(), "cloudflare: ")))
	}
	svc := custom_certificates.NewCustomCertificateService(opts...)

	old, raw, err := d.get(ctx, svc, d.id)
	if err != nil {
		return r.Refuse("cloudflare", err)
	}
	if old.Status == custom_certificates.CustomCertificateStatusDeleted {
		return r.Refuse("cloudflare", fmt.Errorf("custom certificate %s of zone %s is deleted", d.id, d.zone))
	}
	for _, h := range old.Hosts {
		// A wildcard host is covered when any name under it is.
		check := h
		if rest, ok := strings.CutPrefix(h, "*."); ok {
			check = "emsign-wildcard-check." + rest
		}
		if m.Certificate.VerifyHostname(check) != nil {
			return r.Refuse("cloudflare", fmt.Errorf("the new certificate does not cover %s, a host custom certificate %s serves (it covers %s)", h, d.id, strings.Join(m.Certificate.DNSNames, ", ")))
		}
	}
	r.Add(deploy.StepPrepare, true, "custom certificate %s of zone %s (%s, hosts %s, issuer %s, expires %s) will get certificate %s (expires %s)",
		d.id, d.zone, old.Status, strings.Join(old.Hosts, ", "), old.Issuer, formatTime(old.ExpiresOn), deploy.ShortFingerprint(newFP), formatTime(m.Certificate.NotAfter))

	dir, err := d.backup(raw)
	r.Result.BackupDir = dir
	if err != nil {
		r.Result.Outcome = deploy.OutcomeFailed
		r.Add(deploy.StepBackup, false, "%v", err)
		return r.Result, fmt.Errorf("cloudflare: backup: %w", err)
	}
	r.Add(deploy.StepBackup, true, "custom certificate metadata saved to %s (the API returns neither the certificate nor the key, so neither is in the backup)", dir)

	var p custom_certificates.CustomCertificateEditParams
	p.ZoneID.Value, p.ZoneID.Present = d.zone, true
	p.Certificate.Value, p.Certificate.Present = string(m.CertPEM())+string(m.ChainPEM()), true
	p.PrivateKey.Value, p.PrivateKey.Present = string(keyPEM), true
	p.BundleMethod.Value, p.BundleMethod.Present = custom_hostnames.BundleMethodUbiquitous, true
	var res *http.Response
	edited, err := svc.Edit(ctx, d.id, p, option.WithResponseInto(&res))
	if err != nil {
		msg := apiError("edit custom certificate", err, res)
		if res != nil && res.StatusCode >= 400 && res.StatusCode < 500 {
			r.Result.Outcome = deploy.OutcomeFailed
			r.Add(deploy.StepWrite, false, "%s (Cloudflare refused it: the old certificate is still in place)", msg)
			return r.Result, fmt.Errorf("cloudflare: write (nothing replaced): %s", msg)
		}
		r.Add(deploy.StepWrite, false, "%s (the edit may or may not have been applied)", msg)
		return noRollback(r, d.zone, d.id, errors.New(msg))
	}
	newID := edited.ID
	if newID == "" {
		newID = d.id
	}
	idNote := ""
	if newID != d.id {
		idNote = fmt.Sprintf("; Cloudflare gave it the new id %s (an sni_custom certificate changes id on every edit): its location is now %s#%s", newID, d.zone, newID)
	}
	r.Add(deploy.StepWrite, true, "uploaded certificate %s and its key to custom certificate %s (bundle method ubiquitous)%s", deploy.ShortFingerprint(newFP), d.id, idNote)

	if err := d.verifyAll(ctx, r, svc, newID, m.Certificate, newFP); err != nil {
		return noRollback(r, d.zone, newID, err)
	}
	r.Result.Outcome = deploy.OutcomeDeployed
	return r.Result, nil
}

// get reads one custom certificate, with its JSON as the API gave it.
func (d *Deployer) get(ctx context.Context, svc *custom_certificates.CustomCertificateService, id string) (*custom_certificates.CustomCertificate, string, error) {
	var q custom_certificates.CustomCertificateGetParams
	q.ZoneID.Value, q.ZoneID.Present = d.zone, true
	var res *http.Response
	c, err := svc.Get(ctx, id, q, option.WithResponseInto(&res))
	if err != nil {
		return nil, "", errors.New(apiError("get custom certificate "+id+" of zone "+d.zone, err, res))
	}
	return c, c.JSON.RawJSON(), nil
}

// verifyAll checks that the API describes the new certificate (its expiry:
// the API shows no serial nor fingerprint), then the job's endpoints.
func (d *Deployer) verifyAll(ctx context.Context, r *deploy.Steps, svc *custom_certificates.CustomCertificateService, id string, c *x509.Certificate, fp string) error {
	got, _, err := d.get(ctx, svc, id)
	if err != nil {
		r.Add(deploy.StepVerify, false, "%v", err)
		return fmt.Errorf("verify: %w", err)
	}
	if got.ExpiresOn.Sub(c.NotAfter).Abs() >= time.Second || got.Status == custom_certificates.CustomCertificateStatusDeleted {
		err := fmt.Errorf("custom certificate %s is %s and expires %s; the new certificate expires %s", id, got.Status, formatTime(got.ExpiresOn), formatTime(c.NotAfter))
		r.Add(deploy.StepVerify, false, "%v", err)
		return fmt.Errorf("verify: %w", err)
	}
	r.Add(deploy.StepVerify, true, "custom certificate %s is %s, expires %s as the new certificate does, hosts %s", id, got.Status, formatTime(got.ExpiresOn), strings.Join(got.Hosts, ", "))
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

// backup writes the custom certificate's metadata to a new directory
// under the backup directory.
func (d *Deployer) backup(raw string) (string, error) {
	dir, err := deploy.NewBackupDir(d.env.BackupDir, "cloudflare", d.env.Now())
	if err != nil {
		return dir, err
	}
	manifest, _ := json.MarshalIndent(map[string]string{
		"kind": protocol.DeployCloudflare, "zone": d.zone, "custom_certificate": d.id,
		"metadata": "custom-certificate.json",
		"note":     "the Cloudflare API returns neither the certificate nor the key: to restore, upload the old certificate and key (PATCH /zones/ZONE/custom_certificates/ID)",
	}, "", "  ")
	for _, f := range []struct {
		name string
		data []byte
	}{{"custom-certificate.json", []byte(raw + "\n")}, {"manifest.json", append(manifest, '\n')}} {
		if err := deploy.WriteFileAtomic(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return dir, err
		}
	}
	return dir, nil
}

// apiError says what a call's failure was: HTTP status and Cloudflare's
// error list, which never hold the credential.
func apiError(what string, err error, res *http.Response) string {
	var ae *custom_certificates.Error
	detail := ""
	if errors.As(err, &ae) {
		var msgs []string
		for _, e := range ae.Errors {
			msgs = append(msgs, fmt.Sprintf("%s (code %d)", e.Message, e.Code))
		}
		detail = strings.Join(msgs, "; ")
	}
	switch {
	case res == nil:
		return fmt.Sprintf("%s: %v", what, err)
	case res.StatusCode == http.StatusUnauthorized || res.StatusCode == http.StatusForbidden:
		s := fmt.Sprintf("%s: the API refused the credentials (HTTP %d)", what, res.StatusCode)
		if detail != "" {
			s += ": " + detail
		}
		return s + "; check api_token (it needs Zone / SSL and Certificates: Edit) or email and api_key"
	case detail != "":
		return fmt.Sprintf("%s: HTTP %d: %s", what, res.StatusCode, detail)
	}
	return fmt.Sprintf("%s: HTTP %d %s", what, res.StatusCode, http.StatusText(res.StatusCode))
}

// noRollback ends a deployment that failed after the PATCH: the API keeps
// no copy of the old certificate and key to put back.
func noRollback(r *deploy.Steps, zone, id string, cause error) (*deploy.Result, error) {
	r.Result.Outcome = deploy.OutcomeRollbackFailed
	r.Add(deploy.StepRollback, false, "ROLLBACK NOT POSSIBLE after %v: the Cloudflare API returns neither the old certificate nor its key, so the bot cannot upload them again to custom certificate %s of zone %s. Its old metadata is in %s; to go back, upload the old certificate and key by hand",
		cause, id, zone, r.Result.BackupDir)
	return r.Result, fmt.Errorf("cloudflare: %w (the API keeps no old certificate or key to restore; metadata in %s) after: %w", deploy.ErrRollbackFailed, r.Result.BackupDir, cause)
}
