// Package aws finds the certificates an AWS account keeps: AWS Certificate
// Manager (ACM) certificates in each region asked for, and IAM server
// certificates (global). It uses the AWS SDK for Go v2; credentials are the
// target's static keys when given, else the SDK's default chain.
package aws

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/acm"
	acmtypes "github.com/aws/aws-sdk-go-v2/service/acm/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/emsign/bot/connectors"
	"github.com/emsign/bot/protocol"
)

// Location hosts: the service a certificate was found in.
const (
	HostACM = "acm"
	HostIAM = "iam"
)

// Config tunes a Source.
type Config struct {
	Logger *slog.Logger
	Now    func() time.Time
	// HTTPClient, when set, carries every request (proxies, tests).
	HTTPClient *http.Client
	// RetryMaxAttempts bounds the SDK's standard retryer (throttling, 5xx);
	// 0 keeps the SDK default (3).
	RetryMaxAttempts int
}

// Source is the AWS discovery connector.
type Source struct {
	cfg Config
	log *slog.Logger
}

// New validates cfg and fills in defaults.
func New(cfg Config) (*Source, error) {
	if cfg.RetryMaxAttempts < 0 {
		return nil, errors.New("aws: RetryMaxAttempts must not be negative")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Source{cfg: cfg, log: cfg.Logger}, nil
}

var _ connectors.Source = (*Source)(nil)

// defaultRegions are the commercial regions enabled in every account;
// optInRegions must be enabled first, and answer an unenabled account with
// an authentication error, which aws://all skips. aws://all scans both.
var (
	defaultRegions = []string{
		"us-east-1", "us-east-2", "us-west-1", "us-west-2",
		"ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
		"ap-southeast-1", "ap-southeast-2", "ca-central-1",
		"eu-central-1", "eu-west-1", "eu-west-2", "eu-west-3", "eu-north-1",
		"sa-east-1",
	}
	optInRegions = []string{
		"af-south-1", "ap-east-1", "ap-east-2", "ap-south-2", "ap-southeast-3",
		"ap-southeast-4", "ap-southeast-5", "ap-southeast-7", "ca-west-1",
		"eu-central-2", "eu-south-1", "eu-south-2", "il-central-1",
		"me-central-1", "me-south-1", "mx-central-1",
	}
)

// regions expands the target's host into region names, in order, once each.
func regions(host string) (list []string, all bool) {
	for r := range strings.SplitSeq(host, ",") {
		r = strings.ToLower(strings.TrimSpace(r))
		add := []string{r}
		if r == "all" {
			all = true
			add = append(slices.Clone(defaultRegions), optInRegions...)
		}
		for _, a := range add {
			if a != "" && !slices.Contains(list, a) {
				list = append(list, a)
			}
		}
	}
	return list, all
}

// iamRegion is the region IAM requests are signed for in the partition of
// the first region scanned.
func iamRegion(first string) string {
	switch {
	case strings.HasPrefix(first, "cn-"):
		return "cn-north-1"
	case strings.HasPrefix(first, "us-gov-"):
		return "us-gov-west-1"
	}
	return "us-east-1"
}

// Discover lists every ACM certificate of every region of t, then the IAM
// server certificates. A region or service the credentials may not read
// (AccessDenied) is an error returned at the end, after the others were
// scanned; credentials AWS refuses end the discovery at once.
func (s *Source) Discover(ctx context.Context, t protocol.Target, emit connectors.Emit) error {
	if t.Scheme != protocol.SchemeAWS {
		return fmt.Errorf("aws: target scheme %q is not %s", t.Scheme, protocol.SchemeAWS)
	}
	regs, all := regions(t.Host)
	if len(regs) == 0 {
		return errors.New("aws: no region: write aws://REGION[,REGION...] or aws://all")
	}
	awsCfg, err := s.loadConfig(ctx, t, regs[0])
	if err != nil {
		return err
	}
	var errs []error
	for _, region := range regs {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := s.scanACM(ctx, awsCfg, region, emit)
		var se *scopeError
		switch {
		case err == nil:
		case !errors.As(err, &se):
			return err // emit gave up, or ctx ended
		case all && slices.Contains(optInRegions, region) && se.credentials():
			s.log.Info("aws: region skipped: not enabled for this account", "region", region, "error", se.Error())
		case se.credentials():
			return err // the same keys will fail everywhere
		default:
			errs = append(errs, err)
		}
	}
	if err := s.scanIAM(ctx, awsCfg, iamRegion(regs[0]), emit); err != nil {
		var se *scopeError
		if !errors.As(err, &se) {
			return err
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// loadConfig builds the SDK configuration: static keys from the target when
// given, else the default chain (environment, shared files, SSO, IMDS...).
func (s *Source) loadConfig(ctx context.Context, t protocol.Target, region string) (awssdk.Config, error) {
	opts := []func(*config.LoadOptions) error{config.WithRegion(region)}
	if ak := t.Param(protocol.ParamAccessKey); ak != "" {
		var secret, token string
		if v := t.Secrets[protocol.ParamSecretKey]; len(v) > 0 {
			secret = v[len(v)-1].Reveal()
		}
		if v := t.Secrets[protocol.ParamSessionToken]; len(v) > 0 {
			token = v[len(v)-1].Reveal()
		}
		if secret == "" {
			return awssdk.Config{}, errors.New("aws: access_key given without secret_key")
		}
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(ak, secret, token)))
	}
	if ep := t.Param(protocol.ParamEndpoint); ep != "" {
		opts = append(opts, config.WithBaseEndpoint(ep))
	}
	if s.cfg.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(s.cfg.HTTPClient))
	}
	if s.cfg.RetryMaxAttempts > 0 {
		opts = append(opts, config.WithRetryMaxAttempts(s.cfg.RetryMaxAttempts))
	}
	c, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		// Errors of the loader name files and profiles, never key values.
		return awssdk.Config{}, fmt.Errorf("aws: loading the SDK configuration: %w", err)
	}
	// Fail early and plainly when the default chain finds nothing, rather
	// than once per region with the SDK's "get identity" chain.
	if c.Credentials == nil {
		return awssdk.Config{}, errors.New("aws: no AWS credentials: give access_key and secret_key, or configure the SDK's default chain")
	}
	if _, err := c.Credentials.Retrieve(ctx); err != nil {
		return awssdk.Config{}, fmt.Errorf("aws: no AWS credentials: give access_key and secret_key, or configure the SDK's default chain: %w", err)
	}
	return c, nil
}

// scopeError is the failure of one service in one region: the target error.
type scopeError struct {
	scope string // "acm eu-west-1", "iam"
	err   error
}

func (e *scopeError) Error() string { return "aws: " + e.scope + ": " + describe(e.err) }
func (e *scopeError) Unwrap() error { return e.err }

// credentials reports whether AWS refused the credentials themselves (as
// opposed to what they may do).
func (e *scopeError) credentials() bool {
	var ae smithy.APIError
	if errors.As(e.err, &ae) {
		return credentialCodes[ae.ErrorCode()]
	}
	return false
}

var credentialCodes = map[string]bool{
	"UnrecognizedClientException": true, "UnrecognizedClient": true,
	"InvalidClientTokenId": true, "InvalidSignatureException": true,
	"SignatureDoesNotMatch": true, "IncompleteSignature": true,
	"IncompleteSignatureException": true, "MissingAuthenticationToken": true,
	"MissingAuthenticationTokenException": true, "ExpiredToken": true,
	"ExpiredTokenException": true, "InvalidAccessKeyId": true,
}

var deniedCodes = map[string]bool{"AccessDeniedException": true, "AccessDenied": true}

// describe renders an SDK error briefly: the AWS error code and message,
// with a hint, rather than the SDK's long operation/request-id chain.
func describe(err error) string {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return err.Error()
	}
	msg := ae.ErrorCode()
	if m := ae.ErrorMessage(); m != "" {
		msg += ": " + m
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
		msg += " (HTTP " + strconv.Itoa(re.HTTPStatusCode()) + ")"
	}
	var oe *smithy.OperationError
	if errors.As(err, &oe) {
		msg = oe.Operation() + ": " + msg
	}
	switch {
	case credentialCodes[ae.ErrorCode()]:
		msg += " (AWS refused the credentials: check access_key, secret_key and session_token)"
	case deniedCodes[ae.ErrorCode()]:
		msg += " (the credentials lack the permission)"
	}
	return msg
}

// scanACM lists every certificate of one region, whatever its key type and
// status, and emits one finding each.
func (s *Source) scanACM(ctx context.Context, c awssdk.Config, region string, emit connectors.Emit) error {
	client := acm.NewFromConfig(c, func(o *acm.Options) { o.Region = region })
	in := &acm.ListCertificatesInput{
		// Without Includes.KeyTypes ACM lists only RSA_2048 certificates.
		Includes:            &acmtypes.Filters{KeyTypes: acmtypes.KeyAlgorithm("").Values()},
		CertificateStatuses: acmtypes.CertificateStatus("").Values(),
		// Without it ACME-issued certificates are left out.
		CertificateKeyPairOrigins: acmtypes.CertificateKeyPairOrigin("").Values(),
	}
	pages := acm.NewListCertificatesPaginator(client, in, func(o *acm.ListCertificatesPaginatorOptions) { o.Limit = 1000 })
	n := 0
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return &scopeError{scope: "acm " + region, err: err}
		}
		for _, sum := range page.CertificateSummaryList {
			if err := ctx.Err(); err != nil {
				return err
			}
			n++
			if err := emit(s.acmFinding(ctx, client, region, sum)); err != nil {
				return err
			}
		}
	}
	s.log.Debug("aws: acm region scanned", "region", region, "certificates", n)
	return nil
}

// noCertificate are the statuses of a request ACM never issued: there is no
// certificate to get.
var noCertificate = map[acmtypes.CertificateStatus]bool{
	acmtypes.CertificateStatusPendingValidation:  true,
	acmtypes.CertificateStatusValidationTimedOut: true,
	acmtypes.CertificateStatusFailed:             true,
}

func (s *Source) acmFinding(ctx context.Context, client *acm.Client, region string, sum acmtypes.CertificateSummary) protocol.Finding {
	arn := awssdk.ToString(sum.CertificateArn)
	f := protocol.Finding{
		Location: protocol.Location{Scheme: protocol.SchemeAWS, Host: HostACM, Path: "/" + region + "/" + arn},
		Source:   protocol.SchemeAWS,
		Format:   protocol.FormatPEM,
		SeenAt:   s.cfg.Now(),
	}
	typ, status, renewal := sum.Type, sum.Status, sum.RenewalEligibility
	inUse := -1
	if sum.InUse != nil && !*sum.InUse {
		inUse = 0
	}
	d, err := client.DescribeCertificate(ctx, &acm.DescribeCertificateInput{CertificateArn: &arn})
	if err != nil {
		s.log.Warn("aws: acm DescribeCertificate failed", "region", region, "arn", arn, "error", describe(err))
	} else if cd := d.Certificate; cd != nil {
		typ, status, renewal, inUse = cd.Type, cd.Status, cd.RenewalEligibility, len(cd.InUseBy)
		s.log.Debug("aws: acm certificate", "region", region, "arn", arn, "domain", awssdk.ToString(cd.DomainName),
			"type", string(typ), "status", string(status), "in_use_by", cd.InUseBy,
			"renewal", string(renewal), "not_after", cd.NotAfter, "failure", string(cd.FailureReason))
	}
	f.Attributes = metaAttributes(typ, status, renewal, inUse)
	if noCertificate[status] {
		f.Error = fmt.Sprintf("ACM certificate %s is %s: it was never issued, so there is no certificate to read (domain %s)",
			arn, status, awssdk.ToString(sum.DomainName))
		return f
	}
	got, err := client.GetCertificate(ctx, &acm.GetCertificateInput{CertificateArn: &arn})
	if err != nil {
		f.Error = describe(err)
		if status != "" {
			f.Error += " (status " + string(status) + ")"
		}
		return f
	}
	f.Chain, f.Error = pemChain(awssdk.ToString(got.Certificate), awssdk.ToString(got.CertificateChain))
	return f
}

// metaAttributes is what ACM says about a certificate: type, status,
// in_use (the number of AWS resources using it; absent when unknown) and
// renewal eligibility. They go into the finding's attributes, not its
// location, so that a status change is not a new location.
func metaAttributes(typ acmtypes.CertificateType, status acmtypes.CertificateStatus, renewal acmtypes.RenewalEligibility, inUse int) map[string]string {
	a := map[string]string{}
	if typ != "" {
		a["type"] = string(typ)
	}
	if status != "" {
		a["status"] = string(status)
	}
	if inUse >= 0 {
		a["in_use"] = strconv.Itoa(inUse)
	}
	if renewal != "" {
		a["renewal"] = string(renewal)
	}
	return a
}

// pemChain decodes the certificate and its chain into DER, leaf first.
func pemChain(leaf, chain string) ([][]byte, string) {
	var ders [][]byte
	var problems []string
	for i, text := range []string{leaf, chain} {
		rest := []byte(text)
		found := 0
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type == "CERTIFICATE" {
				ders = append(ders, b.Bytes)
				found++
			}
		}
		if i == 0 && found == 0 {
			problems = append(problems, "no PEM certificate in the certificate body")
		}
		if strings.TrimSpace(string(rest)) != "" {
			problems = append(problems, "trailing data that is not PEM")
		}
	}
	if len(ders) > 0 && len(problems) > 0 && problems[0] == "no PEM certificate in the certificate body" {
		// The body was empty but the chain was not: the order is unknown.
		problems[0] = "no leaf certificate; the chain only"
	}
	return ders, strings.Join(problems, "; ")
}

// scanIAM lists the IAM server certificates (a global service).
func (s *Source) scanIAM(ctx context.Context, c awssdk.Config, region string, emit connectors.Emit) error {
	client := iam.NewFromConfig(c, func(o *iam.Options) { o.Region = region })
	pages := iam.NewListServerCertificatesPaginator(client, &iam.ListServerCertificatesInput{})
	n := 0
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return &scopeError{scope: "iam", err: err}
		}
		for _, m := range page.ServerCertificateMetadataList {
			if err := ctx.Err(); err != nil {
				return err
			}
			name := awssdk.ToString(m.ServerCertificateName)
			f := protocol.Finding{
				Location: protocol.Location{Scheme: protocol.SchemeAWS, Host: HostIAM, Path: "/" + name},
				Source:   protocol.SchemeAWS,
				Format:   protocol.FormatPEM,
				SeenAt:   s.cfg.Now(),
			}
			if p := awssdk.ToString(m.Path); p != "" && p != "/" {
				f.Attributes = map[string]string{"path": p}
			}
			s.log.Debug("aws: iam server certificate", "name", name, "arn", awssdk.ToString(m.Arn), "expiration", m.Expiration)
			got, err := client.GetServerCertificate(ctx, &iam.GetServerCertificateInput{ServerCertificateName: &name})
			switch {
			case err != nil:
				f.Error = describe(err)
			case got.ServerCertificate == nil:
				f.Error = "GetServerCertificate: empty answer"
			default:
				f.Chain, f.Error = pemChain(awssdk.ToString(got.ServerCertificate.CertificateBody),
					awssdk.ToString(got.ServerCertificate.CertificateChain))
			}
			n++
			if err := emit(f); err != nil {
				return err
			}
		}
	}
	s.log.Debug("aws: iam scanned", "server_certificates", n)
	return nil
}
