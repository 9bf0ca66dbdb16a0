package aws

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/acm"

	awsfake "github.com/emsign/bot/internal/fakes/aws"
	"github.com/emsign/bot/protocol"
)

var testNow = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// syncBuffer is a log sink safe for the SDK's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newSource(t *testing.T, attempts int) (*Source, *syncBuffer) {
	t.Helper()
	// Keep the developer's own AWS setup out of the tests.
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	// A CA bundle cannot be added to a plain *http.Client (Config.HTTPClient).
	t.Setenv("AWS_CA_BUNDLE", "")
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(Config{Logger: log, Now: func() time.Time { return testNow }, RetryMaxAttempts: attempts,
		HTTPClient: &http.Client{Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	return s, logs
}

func target(t *testing.T, f *awsfake.Fake, regions, access, secret string, extra ...string) protocol.Target {
	t.Helper()
	q := url.Values{"access_key": {access}, "secret_key": {secret}, "endpoint": {f.URL()}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	tg, err := protocol.ParseTarget("aws://" + regions + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func discover(t *testing.T, s *Source, tg protocol.Target) (map[string]protocol.Finding, error) {
	t.Helper()
	got := map[string]protocol.Finding{}
	err := s.Discover(context.Background(), tg, func(f protocol.Finding) error {
		k := f.Location.Scheme + "://" + f.Location.Host + f.Location.Path
		if _, dup := got[k]; dup {
			t.Errorf("location %s emitted twice", k)
		}
		got[k] = f
		return nil
	})
	return got, err
}

func checkNoSecret(t *testing.T, where, s string) {
	t.Helper()
	if strings.Contains(s, awsfake.Secret) || strings.Contains(s, url.QueryEscape(awsfake.Secret)) || strings.Contains(s, "SESSIONTOKEN") {
		t.Errorf("%s reveals a secret: %s", where, s)
	}
}

const (
	arnRSA2048 = "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-1111-1111-1111-111111111111"
	arnEC256   = "arn:aws:acm:eu-west-1:123456789012:certificate/22222222-2222-2222-2222-222222222222"
	arnRSA4096 = "arn:aws:acm:eu-west-1:123456789012:certificate/33333333-3333-3333-3333-333333333333"
	arnPending = "arn:aws:acm:eu-west-1:123456789012:certificate/44444444-4444-4444-4444-444444444444"
	arnEC384   = "arn:aws:acm:eu-west-1:123456789012:certificate/55555555-5555-5555-5555-555555555555"
	arnUSEast  = "arn:aws:acm:us-east-1:123456789012:certificate/66666666-6666-6666-6666-666666666666"
)

func acmKey(region, arn string) string { return "aws://acm/" + region + "/" + arn }

func TestDiscoverEveryKeyTypeAcrossPages(t *testing.T) {
	f := awsfake.Start(t, 2)
	s, logs := newSource(t, 1)
	got, err := discover(t, s, target(t, f, "eu-west-1,us-east-1", awsfake.AccessKey, awsfake.Secret, "session_token", "SESSIONTOKEN"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{acmKey("eu-west-1", arnRSA2048), acmKey("eu-west-1", arnEC256), acmKey("eu-west-1", arnRSA4096),
		acmKey("eu-west-1", arnPending), acmKey("eu-west-1", arnEC384), acmKey("us-east-1", arnUSEast),
		"aws://iam/ProdServerCert", "aws://iam/cloudfront-old", "aws://iam/staging"}
	for _, k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("missing %s", k)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d findings, want %d: %v", len(got), len(want), slices.Collect(mapKeys(got)))
	}
	// 5 certificates in eu-west-1, 2 a page: 3 pages; IAM 3 certs: 2 pages.
	if n := f.Calls("ListCertificates eu-west-1"); n != 3 {
		t.Errorf("ListCertificates eu-west-1 called %d times, want 3 (paging)", n)
	}
	if n := f.Calls("iam ListServerCertificates"); n != 2 {
		t.Errorf("ListServerCertificates called %d times, want 2 (paging)", n)
	}
	if slices.Contains(f.Gets(), arnPending) {
		t.Error("GetCertificate was called for a PENDING_VALIDATION certificate")
	}

	for k, fd := range got {
		if fd.Source != "aws" || fd.Format != "pem" || !fd.SeenAt.Equal(testNow) {
			t.Errorf("%s: source %q format %q seen %v", k, fd.Source, fd.Format, fd.SeenAt)
		}
		back, err := protocol.ParseLocation(fd.Location.String())
		if err != nil || back != fd.Location {
			t.Errorf("%s: location %q does not round-trip: %v %+v", k, fd.Location.String(), err, back)
		}
		checkNoSecret(t, "finding "+k, fd.Error+fd.Location.String())
		if k == acmKey("eu-west-1", arnPending) {
			continue
		}
		if fd.Error != "" || len(fd.Chain) == 0 {
			t.Errorf("%s: error %q, %d certificates", k, fd.Error, len(fd.Chain))
			continue
		}
		leaf, err := x509.ParseCertificate(fd.Chain[0])
		if err != nil {
			t.Errorf("%s: leaf: %v", k, err)
			continue
		}
		if leaf.IsCA {
			t.Errorf("%s: chain[0] is the CA, want the leaf first", k)
		}
	}

	rsa := got[acmKey("eu-west-1", arnRSA2048)]
	if attrs(rsa) != "in_use=1&renewal=ELIGIBLE&status=ISSUED&type=AMAZON_ISSUED" {
		t.Errorf("attributes %q", attrs(rsa))
	}
	if len(rsa.Chain) != 2 {
		t.Errorf("chain of %d, want leaf + CA", len(rsa.Chain))
	}
	if q := attrs(got[acmKey("eu-west-1", arnRSA4096)]); q != "in_use=2&renewal=INELIGIBLE&status=EXPIRED&type=IMPORTED" {
		t.Errorf("RSA_4096 query %q", q)
	}
	if s := got[acmKey("eu-west-1", arnRSA2048)].Location.String(); s != "aws://acm/eu-west-1/"+arnRSA2048 {
		t.Errorf("location string %q", s)
	}
	pending := got[acmKey("eu-west-1", arnPending)]
	if len(pending.Chain) != 0 || !strings.Contains(pending.Error, "PENDING_VALIDATION") || !strings.Contains(attrs(pending), "status=PENDING_VALIDATION") {
		t.Errorf("pending: %d certs, error %q, attributes %q", len(pending.Chain), pending.Error, attrs(pending))
	}
	if q := attrs(got["aws://iam/ProdServerCert"]); q != "path=%2Fcompany%2Fservercerts%2F" {
		t.Errorf("iam query %q", q)
	}
	if n := len(got["aws://iam/ProdServerCert"].Chain); n != 2 {
		t.Errorf("iam ProdServerCert chain of %d, want 2", n)
	}
	if n := len(got["aws://iam/staging"].Chain); n != 1 {
		t.Errorf("iam staging chain of %d, want 1", n)
	}
	// The metadata is in the debug log too, with what uses the certificate.
	if !strings.Contains(logs.String(), "E2QWRUHAPOMQZL") {
		t.Error("in_use_by ARNs not logged")
	}
	checkNoSecret(t, "logs", logs.String())
}

func mapKeys(m map[string]protocol.Finding) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestFakeDefaultsToRSA2048 shows that the fake, like ACM, hides other key
// types from a ListCertificates without Includes.keyTypes.
func TestFakeDefaultsToRSA2048(t *testing.T) {
	f := awsfake.Start(t, 2)
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion("eu-west-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(awsfake.AccessKey, awsfake.Secret, "")),
		config.WithBaseEndpoint(f.URL()), config.WithRetryMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	p := acm.NewListCertificatesPaginator(acm.NewFromConfig(cfg), &acm.ListCertificatesInput{})
	n := 0
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page.CertificateSummaryList {
			n++
			if c.KeyAlgorithm != "RSA_2048" {
				t.Errorf("listed %s without asking", c.KeyAlgorithm)
			}
		}
	}
	if n != 2 {
		t.Errorf("listed %d RSA_2048 certificates, want 2", n)
	}
}

func TestWrongKeys(t *testing.T) {
	f := awsfake.Start(t, 2)
	for _, tc := range []struct{ name, access, secret, code string }{
		{"unknown access key", "AKIAWRONGWRONGWRONG", awsfake.Secret, "UnrecognizedClientException"},
		{"wrong secret", awsfake.AccessKey, "notTheSecret/" + awsfake.Secret[:10], "InvalidSignatureException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, logs := newSource(t, 1)
			got, err := discover(t, s, target(t, f, "eu-west-1,us-east-1", tc.access, tc.secret))
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "aws: acm eu-west-1: ") || !strings.Contains(msg, tc.code) || !strings.Contains(msg, "check access_key") {
				t.Errorf("error %q", msg)
			}
			if len(got) != 0 {
				t.Errorf("%d findings", len(got))
			}
			t.Log(msg)
			checkNoSecret(t, "error", msg)
			checkNoSecret(t, "logs", logs.String())
			if strings.Contains(msg, tc.secret) || strings.Contains(logs.String(), tc.secret) {
				t.Error("the wrong secret leaked")
			}
		})
	}
}

func TestAccessDeniedInOneRegion(t *testing.T) {
	f := awsfake.Start(t, 2)
	f.Fail("ListCertificates", awsfake.Failure{Status: 400, Code: "AccessDeniedException", Times: 1})
	s, _ := newSource(t, 1)
	got, err := discover(t, s, target(t, f, "eu-west-1,us-east-1", awsfake.AccessKey, awsfake.Secret))
	if err == nil || !strings.HasPrefix(err.Error(), "aws: acm eu-west-1: ") || !strings.Contains(err.Error(), "AccessDeniedException") {
		t.Fatalf("error %v", err)
	}
	// The other region and IAM were still scanned.
	if _, ok := got[acmKey("us-east-1", arnUSEast)]; !ok {
		t.Error("us-east-1 not scanned")
	}
	if _, ok := got["aws://iam/staging"]; !ok {
		t.Error("iam not scanned")
	}
}

func TestIAMDenied(t *testing.T) {
	f := awsfake.Start(t, 2)
	f.Fail("iam ListServerCertificates", awsfake.Failure{Status: 403, Code: "AccessDenied"})
	s, _ := newSource(t, 1)
	got, err := discover(t, s, target(t, f, "eu-west-1", awsfake.AccessKey, awsfake.Secret))
	if err == nil || !strings.HasPrefix(err.Error(), "aws: iam: ") || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("error %v", err)
	}
	if len(got) != 5 {
		t.Errorf("%d ACM findings, want 5", len(got))
	}
}

func TestThrottlingIsRetried(t *testing.T) {
	f := awsfake.Start(t, 2)
	f.Fail("ListCertificates", awsfake.Failure{Status: 400, Code: "ThrottlingException", Times: 1})
	s, _ := newSource(t, 3)
	got, err := discover(t, s, target(t, f, "eu-west-1", awsfake.AccessKey, awsfake.Secret))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 8 {
		t.Errorf("%d findings, want 8", len(got))
	}
	if n := f.Calls("ListCertificates"); n != 4 {
		t.Errorf("ListCertificates called %d times, want 3 pages + 1 retry", n)
	}
}

func TestPerCertificateFailures(t *testing.T) {
	f := awsfake.Start(t, 2)
	f.Fail("GetCertificate", awsfake.Failure{Status: 500, ARN: arnEC256})
	f.Fail("DescribeCertificate", awsfake.Failure{Status: 400, Code: "ResourceNotFoundException", ARN: arnEC384})
	f.Fail("iam GetServerCertificate", awsfake.Failure{Status: 404, Code: "NoSuchEntity", ARN: "staging"})
	s, _ := newSource(t, 1)
	got, err := discover(t, s, target(t, f, "eu-west-1", awsfake.AccessKey, awsfake.Secret))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 8 {
		t.Fatalf("%d findings, want 8", len(got))
	}
	if e := got[acmKey("eu-west-1", arnEC256)].Error; !strings.HasPrefix(e, "GetCertificate: InternalFailure") || !strings.Contains(e, "HTTP 500") {
		t.Errorf("500: error %q", e)
	}
	// Describe failed but Get worked: the certificate, with the list's metadata.
	ec384 := got[acmKey("eu-west-1", arnEC384)]
	if len(ec384.Chain) != 2 || attrs(ec384) != "in_use=0&renewal=INELIGIBLE&status=ISSUED&type=IMPORTED" {
		t.Errorf("describe failure: %d certs, attributes %q, error %q", len(ec384.Chain), attrs(ec384), ec384.Error)
	}
	if e := got["aws://iam/staging"].Error; !strings.HasPrefix(e, "GetServerCertificate: NoSuchEntity") {
		t.Errorf("iam: error %q", e)
	}
	if fd := got[acmKey("eu-west-1", arnRSA2048)]; fd.Error != "" || len(fd.Chain) != 2 {
		t.Errorf("others spoiled: %q", fd.Error)
	}
}

func TestAllRegionsSkipsDisabledOptIn(t *testing.T) {
	f := awsfake.Start(t, 2)
	f.DisableRegions(optInRegions...)
	s, logs := newSource(t, 1)
	got, err := discover(t, s, target(t, f, "all", awsfake.AccessKey, awsfake.Secret))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 9 {
		t.Errorf("%d findings, want 9", len(got))
	}
	for _, r := range append(slices.Clone(defaultRegions), optInRegions...) {
		if f.Calls("ListCertificates "+r) == 0 {
			t.Errorf("region %s not tried", r)
		}
	}
	if !strings.Contains(logs.String(), "not enabled") {
		t.Error("skipped regions not logged")
	}
}

func TestEmitErrorStops(t *testing.T) {
	f := awsfake.Start(t, 2)
	s, _ := newSource(t, 1)
	stop := errors.New("stop")
	n := 0
	err := s.Discover(context.Background(), target(t, f, "eu-west-1", awsfake.AccessKey, awsfake.Secret), func(protocol.Finding) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("err %v after %d findings", err, n)
	}
}

func TestCancelled(t *testing.T) {
	f := awsfake.Start(t, 2)
	s, _ := newSource(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Discover(ctx, target(t, f, "eu-west-1", awsfake.AccessKey, awsfake.Secret), func(protocol.Finding) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v", err)
	}
}

func TestNoCredentials(t *testing.T) {
	s, _ := newSource(t, 1)
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "")
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "")
	t.Setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")
	tg, err := protocol.ParseTarget("aws://eu-west-1?endpoint=http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	err = s.Discover(context.Background(), tg, func(protocol.Finding) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "no AWS credentials") {
		t.Errorf("err %v", err)
	}
}

func TestPEMChain(t *testing.T) {
	if _, e := pemChain("", ""); e == "" {
		t.Error("empty body: no error")
	}
	if ders, e := pemChain("garbage", ""); len(ders) != 0 || e == "" {
		t.Errorf("garbage: %d, %q", len(ders), e)
	}
}

// TestFakeRefusesUnsigned checks the fake itself: no SigV4, no answer.
func TestFakeRefusesUnsigned(t *testing.T) {
	f := awsfake.Start(t, 2)
	req, _ := http.NewRequest(http.MethodPost, f.URL()+"/", strings.NewReader("{}"))
	req.Header.Set("X-Amz-Target", "CertificateManager.ListCertificates")
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body.String(), "com.amazonaws.acm#MissingAuthenticationTokenException") {
		t.Errorf("%d %s", resp.StatusCode, body.String())
	}
}

// attrs renders a finding's attributes in a fixed order for comparison.
func attrs(f protocol.Finding) string {
	v := url.Values{}
	for k, val := range f.Attributes {
		v.Set(k, val)
	}
	return v.Encode()
}
