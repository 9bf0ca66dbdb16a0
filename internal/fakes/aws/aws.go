package aws

// Package aws is a fake AWS Certificate Manager and IAM, built from the documented wire
// formats, that the real SDK clients talk to through BaseEndpoint:
//
//   - ACM speaks JSON 1.1: POST /, Content-Type application/x-amz-json-1.1,
//     X-Amz-Target CertificateManager.<Operation>, epoch-second timestamps,
//     errors as 400 {"__type":"com.amazonaws.acm#<Code>","message":".."}.
//     https://docs.aws.amazon.com/acm/latest/APIReference/API_ListCertificates.html
//     https://docs.aws.amazon.com/acm/latest/APIReference/API_DescribeCertificate.html
//     https://docs.aws.amazon.com/acm/latest/APIReference/API_GetCertificate.html
//     https://docs.aws.amazon.com/acm/latest/APIReference/API_Filters.html
//     ("Default filtering returns only RSA_2048 certificates": the fake does
//     the same, so a connector that forgets Includes.keyTypes misses some.)
//     https://docs.aws.amazon.com/acm/latest/APIReference/CommonErrors.html
//   - IAM speaks the Query protocol: POST / with a form body Action=...&
//     Version=2010-05-08, XML answers, Marker/IsTruncated paging, errors as
//     <ErrorResponse><Error><Type/><Code/><Message/></Error></ErrorResponse>.
//     https://docs.aws.amazon.com/IAM/latest/APIReference/API_ListServerCertificates.html
//     https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetServerCertificate.html
//     https://docs.aws.amazon.com/IAM/latest/APIReference/CommonErrors.html
//   - Every request must carry a SigV4 Authorization header; the fake
//     recomputes the signature over the signed headers with the known secret.
//     https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-signing-request.html

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// The credentials the fake accepts.
const (
	AccessKey = "AKIDEXAMPLE"
	Secret    = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

// testdata names a file of connectors/aws/testdata.
func testdata(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "connectors", "aws", "testdata", name)
}

// acmEntry is one certificate of testdata/acm_certificates.json: the region
// it lives in and its DescribeCertificate shape, served as written.
type acmEntry struct {
	Region      string          `json:"Region"`
	Certificate json.RawMessage `json:"Certificate"`
	detail      struct {
		CertificateArn     string
		DomainName         string
		KeyAlgorithm       string
		Status             string
		Type               string
		InUseBy            []string
		RenewalEligibility string
		NotAfter           *int64
	}
	leaf, chain string // PEM
}

type iamEntry struct {
	ServerCertificateName, ServerCertificateId, Path, Arn, UploadDate, Expiration string
	body, chain                                                                   string
}

// Failure makes the fake answer an operation with an error, Times times
// (0: always). A Status of 500 or more answers ACM with an InternalFailure
// body whatever Code says.
type Failure struct {
	Status int
	Code   string
	Times  int
	// ARN limits the failure to one certificate (Describe/GetCertificate).
	ARN string
}

type fake struct {
	t        testing.TB
	srv      *httptest.Server
	acm      []*acmEntry
	iam      []*iamEntry
	pageSize int
	// optInDisabled answers these regions with UnrecognizedClientException,
	// as AWS does for an opt-in region the account has not enabled.
	optInDisabled []string

	mu    sync.Mutex
	fail  map[string]*Failure // by operation name
	calls map[string]int      // "ListCertificates eu-west-1", "GetCertificate", ...
	gets  []string            // ARNs GetCertificate was asked for
	ops   []string            // "Operation ARN" of every ACM request, in order
	// imports are the ImportCertificate requests that succeeded.
	imports []Import
	// now is the clock the fake checks an imported certificate's validity with.
	now func() time.Time
}

func newFake(t testing.TB) *fake {
	t.Helper()
	f := &fake{t: t, pageSize: 2, fail: map[string]*Failure{}, calls: map[string]int{}, now: time.Now}
	var list []*acmEntry
	readJSON(t, testdata("acm_certificates.json"), &list)
	ca, caKey := makeCA(t)
	for _, e := range list {
		if err := json.Unmarshal(e.Certificate, &e.detail); err != nil {
			t.Fatal(err)
		}
		e.leaf, e.chain = makeLeaf(t, ca, caKey, e.detail.DomainName), pemOf(ca.Raw)
	}
	f.acm = list
	readJSON(t, testdata("iam_servercerts.json"), &f.iam)
	for _, e := range f.iam {
		e.body = makeLeaf(t, ca, caKey, e.ServerCertificateName+".example.com")
		if e.Path != "/" {
			e.chain = pemOf(ca.Raw)
		}
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) setFail(op string, fl Failure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[op] = &fl
}

func (f *fake) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[key]
}

// failing consumes one injected failure of op for arn, if any.
func (f *fake) failing(op, arn string) *Failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl := f.fail[op]
	if fl == nil || (fl.ARN != "" && fl.ARN != arn) {
		return nil
	}
	if fl.Times > 0 {
		fl.Times--
		if fl.Times == 0 {
			delete(f.fail, op)
		}
	}
	return fl
}

func (f *fake) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	isACM := r.Header.Get("X-Amz-Target") != ""
	fail := func(status int, code, msg string) {
		if isACM {
			acmError(w, status, code, msg)
		} else {
			iamError(f.t, w, status, code, msg)
		}
	}
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		fail(http.StatusBadRequest, "InvalidAction", "want POST /")
		return
	}
	region, service, code := checkSigV4(r, body)
	if code != "" {
		status := http.StatusBadRequest
		if !isACM {
			status = http.StatusForbidden
		}
		fail(status, code, authMessages[code])
		return
	}
	if isACM {
		if service != "acm" || r.Header.Get("Content-Type") != "application/x-amz-json-1.1" {
			fail(http.StatusBadRequest, "SerializationException", "want acm JSON 1.1, got service "+service)
			return
		}
		f.mu.Lock()
		disabled := slices.Contains(f.optInDisabled, region)
		f.mu.Unlock()
		if disabled {
			f.mu.Lock()
			f.calls[strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "CertificateManager.")+" "+region]++
			f.mu.Unlock()
			fail(http.StatusBadRequest, "UnrecognizedClientException", "The security token included in the request is invalid.")
			return
		}
		f.serveACM(w, r, region, body)
		return
	}
	if service != "iam" || region != "us-east-1" {
		fail(http.StatusBadRequest, "InvalidAction", "IAM requests are signed for iam in us-east-1, got "+service+" "+region)
		return
	}
	f.serveIAM(w, body)
}

// checkSigV4 verifies the Authorization header: AWS4-HMAC-SHA256 with the
// fake's access key, and a signature that the SDK's own signer reproduces
// over the headers the request says it signed. It returns the credential
// scope's region and service, or the AWS error code to refuse with.
func checkSigV4(r *http.Request, body []byte) (region, service, code string) {
	auth := r.Header.Get("Authorization")
	rest, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 ")
	if !ok {
		return "", "", "MissingAuthenticationTokenException"
	}
	parts := map[string]string{}
	for p := range strings.SplitSeq(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		parts[k] = v
	}
	scope := strings.Split(parts["Credential"], "/") // AKID/DATE/REGION/SERVICE/aws4_request
	if len(scope) != 5 || parts["SignedHeaders"] == "" || parts["Signature"] == "" {
		return "", "", "IncompleteSignatureException"
	}
	region, service = scope[2], scope[3]
	if scope[0] != AccessKey {
		if service == "iam" {
			return region, service, "InvalidClientTokenId"
		}
		return region, service, "UnrecognizedClientException"
	}
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return region, service, "IncompleteSignatureException"
	}
	again, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	for h := range strings.SplitSeq(parts["SignedHeaders"], ";") {
		if h != "host" {
			again.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	sum := sha256.Sum256(body)
	creds := awssdk.Credentials{AccessKeyID: AccessKey, SecretAccessKey: Secret,
		SessionToken: r.Header.Get("X-Amz-Security-Token")}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, again, hex.EncodeToString(sum[:]), service, region, when); err != nil {
		return region, service, "IncompleteSignatureException"
	}
	if again.Header.Get("Authorization") != auth {
		if service == "iam" {
			return region, service, "SignatureDoesNotMatch"
		}
		return region, service, "InvalidSignatureException"
	}
	return region, service, ""
}

// authMessages are AWS's words for each refusal (CommonErrors pages above).
var authMessages = map[string]string{
	"MissingAuthenticationTokenException": "Missing Authentication Token",
	"IncompleteSignatureException":        "The request signature does not conform to AWS standards.",
	"UnrecognizedClientException":         "The security token included in the request is invalid.",
	"InvalidClientTokenId":                "The security token included in the request is invalid.",
	"InvalidSignatureException":           "The request signature we calculated does not match the signature you provided.",
	"SignatureDoesNotMatch":               "The request signature we calculated does not match the signature you provided.",
}

func acmError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazonaws.acm#" + code, "message": msg})
}

func acmJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fake) serveACM(w http.ResponseWriter, r *http.Request, region string, body []byte) {
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "CertificateManager.")
	if !ok {
		acmError(w, http.StatusBadRequest, "UnknownOperationException", "unknown target "+r.Header.Get("X-Amz-Target"))
		return
	}
	var in struct {
		CertificateArn      string
		NextToken           string
		MaxItems            int
		CertificateStatuses []string
		Includes            struct {
			KeyTypes []string `json:"keyTypes"`
		}
		// ImportCertificate: blobs travel as base64 strings in JSON 1.1,
		// which encoding/json decodes into []byte.
		Certificate, PrivateKey, CertificateChain []byte
		Tags                                      []json.RawMessage
	}
	if err := json.Unmarshal(body, &in); err != nil {
		acmError(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	f.mu.Lock()
	f.calls[op+" "+region]++
	f.calls[op]++
	f.ops = append(f.ops, strings.TrimSpace(op+" "+in.CertificateArn))
	if op == "GetCertificate" {
		f.gets = append(f.gets, in.CertificateArn)
	}
	f.mu.Unlock()
	if fl := f.failing(op, in.CertificateArn); fl != nil {
		if fl.Status >= 500 {
			w.WriteHeader(fl.Status)
			_, _ = io.WriteString(w, `{"__type":"com.amazonaws.acm#InternalFailure","message":"internal failure"}`)
			return
		}
		acmError(w, fl.Status, fl.Code, "injected "+fl.Code)
		return
	}
	switch op {
	case "ListCertificates":
		keyTypes := in.Includes.KeyTypes
		if len(keyTypes) == 0 {
			keyTypes = []string{"RSA_2048"} // the documented default
		}
		var match []*acmEntry
		for _, e := range f.acm {
			if e.Region == region && slices.Contains(keyTypes, e.detail.KeyAlgorithm) &&
				(len(in.CertificateStatuses) == 0 || slices.Contains(in.CertificateStatuses, e.detail.Status)) {
				match = append(match, e)
			}
		}
		start := 0
		if in.NextToken != "" {
			b, err := base64.StdEncoding.DecodeString(in.NextToken)
			if start, err = strconv.Atoi(string(b)); err != nil || start > len(match) {
				acmError(w, http.StatusBadRequest, "InvalidArgsException", "bad NextToken")
				return
			}
		}
		end := min(start+f.pageSize, len(match))
		out := map[string]any{}
		var list []map[string]any
		for _, e := range match[start:end] {
			d := e.detail
			s := map[string]any{"CertificateArn": d.CertificateArn, "DomainName": d.DomainName, "KeyAlgorithm": d.KeyAlgorithm,
				"Status": d.Status, "Type": d.Type, "InUse": len(d.InUseBy) > 0, "RenewalEligibility": d.RenewalEligibility}
			if d.NotAfter != nil {
				s["NotAfter"] = *d.NotAfter
			}
			list = append(list, s)
		}
		out["CertificateSummaryList"] = list
		if end < len(match) {
			out["NextToken"] = base64.StdEncoding.EncodeToString([]byte(strconv.Itoa(end)))
		}
		acmJSON(w, out)
	case "DescribeCertificate", "GetCertificate":
		f.mu.Lock()
		e := f.find(region, in.CertificateArn)
		var raw json.RawMessage
		var typ, status, leaf, chain string
		if e != nil {
			raw, typ, status, leaf, chain = e.Certificate, e.detail.Type, e.detail.Status, e.leaf, e.chain
		}
		f.mu.Unlock()
		if e == nil {
			acmError(w, http.StatusBadRequest, "ResourceNotFoundException", "Could not find certificate "+in.CertificateArn+".")
			return
		}
		if op == "DescribeCertificate" {
			acmJSON(w, map[string]json.RawMessage{"Certificate": raw})
			return
		}
		if typ == "AMAZON_ISSUED" && status != "ISSUED" {
			acmError(w, http.StatusBadRequest, "RequestInProgressException", "Certificate "+in.CertificateArn+" is not yet issued.")
			return
		}
		acmJSON(w, map[string]string{"Certificate": leaf, "CertificateChain": chain})
	case "ImportCertificate":
		f.importCertificate(w, region, in.CertificateArn, in.Certificate, in.PrivateKey, in.CertificateChain, len(in.Tags) > 0)
	default:
		acmError(w, http.StatusBadRequest, "UnknownOperationException", op)
	}
}

func (f *fake) find(region, arn string) *acmEntry {
	for _, e := range f.acm {
		if e.Region == region && e.detail.CertificateArn == arn {
			return e
		}
	}
	return nil
}

var iamTemplates = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("").Funcs(template.FuncMap{"x": func(s string) string {
		var b strings.Builder
		_ = xml.EscapeText(&b, []byte(s))
		return b.String()
	}}).ParseGlob(testdata("*.xml")))
})

func iamXML(t testing.TB, w http.ResponseWriter, status int, name string, data any) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	if err := iamTemplates().ExecuteTemplate(w, name, data); err != nil {
		t.Error(err)
	}
}

func iamError(t testing.TB, w http.ResponseWriter, status int, code, msg string) {
	iamXML(t, w, status, "iam_error.xml", map[string]string{"Code": code, "Message": msg})
}

func (f *fake) serveIAM(w http.ResponseWriter, body []byte) {
	form, err := parseForm(body)
	if err != nil || form.Get("Version") != "2010-05-08" {
		iamError(f.t, w, http.StatusBadRequest, "MalformedInput", "want a form with Version=2010-05-08")
		return
	}
	op := form.Get("Action")
	f.mu.Lock()
	f.calls["iam "+op]++
	f.mu.Unlock()
	if fl := f.failing("iam "+op, form.Get("ServerCertificateName")); fl != nil {
		iamError(f.t, w, fl.Status, fl.Code, "injected "+fl.Code)
		return
	}
	switch op {
	case "ListServerCertificates":
		start := 0
		if m := form.Get("Marker"); m != "" {
			if start, err = strconv.Atoi(m); err != nil || start > len(f.iam) {
				iamError(f.t, w, http.StatusBadRequest, "InvalidInput", "bad Marker")
				return
			}
		}
		end := min(start+f.pageSize, len(f.iam))
		data := map[string]any{"Certs": f.iam[start:end], "Truncated": end < len(f.iam), "Marker": ""}
		if end < len(f.iam) {
			data["Marker"] = strconv.Itoa(end)
		}
		iamXML(f.t, w, http.StatusOK, "iam_list_server_certificates.xml", data)
	case "GetServerCertificate":
		for _, e := range f.iam {
			if e.ServerCertificateName == form.Get("ServerCertificateName") {
				iamXML(f.t, w, http.StatusOK, "iam_get_server_certificate.xml",
					map[string]any{"Meta": e, "Body": e.body, "Chain": e.chain})
				return
			}
		}
		iamError(f.t, w, http.StatusNotFound, "NoSuchEntity", "The Server Certificate with name "+form.Get("ServerCertificateName")+" cannot be found.")
	default:
		iamError(f.t, w, http.StatusBadRequest, "InvalidAction", "unknown action "+op)
	}
}

type formValues map[string][]string

func (v formValues) Get(k string) string {
	if len(v[k]) == 0 {
		return ""
	}
	return v[k][0]
}

func parseForm(body []byte) (formValues, error) {
	r, _ := http.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if err := r.ParseForm(); err != nil {
		return nil, err
	}
	return formValues(r.PostForm), nil
}

func readJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func pemOf(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func makeCA(t testing.TB) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Fake Amazon RSA 2048 M01"},
		NotBefore: time.Unix(1704067200, 0), NotAfter: time.Unix(1893456000, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

var serial struct {
	sync.Mutex
	n int64
}

func makeLeaf(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial.Lock()
	serial.n++
	n := serial.n + 100
	serial.Unlock()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(n), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Unix(1767225600, 0), NotAfter: time.Unix(1798761600, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(der)
}

func (f *fake) String() string { return fmt.Sprintf("fake AWS at %s", f.srv.URL) }

// Fake is a running fake ACM and IAM.
type Fake struct{ f *fake }

// Cert is one certificate the fake holds.
type Cert struct {
	// Service is "acm" or "iam"; Region is the ACM region.
	Service, Region string
	// Name is the ACM ARN or the IAM server certificate name.
	Name, KeyAlgorithm, Status, Type string
	// PEM is the leaf, or "" when ACM refuses to return it
	// (an Amazon-issued certificate not yet issued).
	PEM string
}

// Start serves the ACM certificates of connectors/aws/testdata (every key
// type, in two regions) and its IAM server certificates, pageSize per page,
// until the test ends. It accepts only AccessKey and Secret.
func Start(t testing.TB, pageSize int) *Fake {
	t.Helper()
	f := newFake(t)
	if pageSize > 0 {
		f.pageSize = pageSize
	}
	return &Fake{f: f}
}

// URL is the endpoint= of an aws:// target.
func (x *Fake) URL() string { return x.f.srv.URL }

// Certs lists the certificates the fake serves.
func (x *Fake) Certs() []Cert {
	var out []Cert
	for _, e := range x.f.acm {
		d := e.detail
		c := Cert{Service: "acm", Region: e.Region, Name: d.CertificateArn, KeyAlgorithm: d.KeyAlgorithm, Status: d.Status, Type: d.Type, PEM: e.leaf}
		if d.Type == "AMAZON_ISSUED" && d.Status != "ISSUED" {
			c.PEM = ""
		}
		out = append(out, c)
	}
	for _, e := range x.f.iam {
		out = append(out, Cert{Service: "iam", Name: e.ServerCertificateName, PEM: e.body})
	}
	return out
}

// Calls counts the requests of one kind ("ListCertificates eu-west-1",
// "GetCertificate", "iam ListServerCertificates", ...).
func (x *Fake) Calls(key string) int { return x.f.count(key) }

// Fail makes the fake answer op with fl until fl.Times is used up. op is an
// ACM operation ("ListCertificates", "DescribeCertificate",
// "GetCertificate") or "iam " and an IAM action ("iam ListServerCertificates",
// "iam GetServerCertificate"); fl.ARN, if set, limits the failure to one
// certificate (an ACM ARN, or an IAM ServerCertificateName).
func (x *Fake) Fail(op string, fl Failure) { x.f.setFail(op, fl) }

// Gets lists the ARNs GetCertificate was asked for, in order.
func (x *Fake) Gets() []string {
	x.f.mu.Lock()
	defer x.f.mu.Unlock()
	return slices.Clone(x.f.gets)
}

// DisableRegions makes ACM in these regions refuse every request with
// UnrecognizedClientException, as AWS does for an opt-in region the
// account has not enabled.
func (x *Fake) DisableRegions(regions ...string) {
	x.f.mu.Lock()
	defer x.f.mu.Unlock()
	x.f.optInDisabled = append(x.f.optInDisabled, regions...)
}

// Import is one ImportCertificate request the fake accepted.
type Import struct {
	Region, ARN string
	// CertificatePEM and ChainPEM are as sent; the private key is not kept.
	CertificatePEM, ChainPEM string
}

// importCertificate answers ImportCertificate as
// https://docs.aws.amazon.com/acm/latest/APIReference/API_ImportCertificate.html
// describes a re-import (CertificateArn set): the certificate, chain and
// key are PEM; the key unencrypted, at most 5,120 bytes, matching the
// certificate; the current time within the certificate's validity; the
// Issuer not empty; a certificate that is not self-signed needs its chain,
// whose certificates must include its issuer; tags cannot be applied on a
// re-import. The answer is {"CertificateArn": ARN}. A new import (no
// CertificateArn) is not served. Re-importing over a certificate ACM
// issued is refused with ValidationException: the documentation says only
// that CertificateArn names "an imported certificate to replace"; the
// error code is the fake's choice.
func (f *fake) importCertificate(w http.ResponseWriter, region, arn string, certPEM, keyPEM, chainPEM []byte, tags bool) {
	invalid := func(msg string) { acmError(w, http.StatusBadRequest, "ValidationException", msg) }
	if arn == "" {
		invalid("the fake re-imports only: CertificateArn is required")
		return
	}
	if tags {
		invalid("You cannot apply tags when reimporting a certificate.")
		return
	}
	f.mu.Lock()
	e := f.find(region, arn)
	var typ string
	if e != nil {
		typ = e.detail.Type
	}
	f.mu.Unlock()
	switch {
	case e == nil:
		acmError(w, http.StatusBadRequest, "ResourceNotFoundException", "Could not find certificate "+arn+".")
		return
	case typ != "IMPORTED":
		invalid("Certificate " + arn + " is of type " + typ + " and cannot be reimported; only an imported certificate can be replaced.")
		return
	}
	var leaf *x509.Certificate
	if b, rest := pem.Decode(certPEM); b == nil || b.Type != "CERTIFICATE" || strings.TrimSpace(string(rest)) != "" {
		invalid("The certificate field must hold one PEM-encoded certificate.")
		return
	} else if c, err := x509.ParseCertificate(b.Bytes); err != nil {
		invalid("Could not parse the certificate: " + err.Error())
		return
	} else {
		leaf = c
	}
	if len(keyPEM) > 5120 {
		invalid("The private key must be no larger than 5 KB (5,120 bytes).")
		return
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || !strings.HasSuffix(kb.Type, "PRIVATE KEY") || strings.Contains(kb.Type, "ENCRYPTED") || kb.Headers["Proc-Type"] != "" {
		invalid("The private key must be PEM-encoded and unencrypted.")
		return
	}
	key, err := parseKey(kb)
	if err != nil {
		invalid("Could not parse the private key: " + err.Error())
		return
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(leaf.PublicKey) {
		invalid("The private key does not match the public key in the certificate.")
		return
	}
	now := f.now()
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		invalid("The certificate is not valid at the current time.")
		return
	}
	if len(leaf.RawIssuer) == 0 || leaf.Issuer.String() == "" {
		invalid("The certificate's Issuer field must not be empty.")
		return
	}
	var chain []*x509.Certificate
	for rest := chainPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			invalid("Could not parse the certificate chain: " + err.Error())
			return
		}
		chain = append(chain, c)
	}
	if leaf.CheckSignatureFrom(leaf) != nil {
		found := false
		for _, c := range chain {
			found = found || bytes.Equal(c.RawSubject, leaf.RawIssuer)
		}
		if !found {
			invalid("The certificate is not self-signed: its chain, including its issuer, is required.")
			return
		}
	}

	detail := map[string]any{}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := json.Unmarshal(e.Certificate, &detail); err != nil {
		f.t.Error(err)
	}
	domain := leaf.Subject.CommonName
	if domain == "" && len(leaf.DNSNames) > 0 {
		domain = leaf.DNSNames[0]
	}
	serial := leaf.SerialNumber.Bytes()
	hexParts := make([]string, len(serial))
	for i, x := range serial {
		hexParts[i] = fmt.Sprintf("%02x", x)
	}
	detail["DomainName"] = domain
	detail["SubjectAlternativeNames"] = leaf.DNSNames
	detail["Serial"] = strings.Join(hexParts, ":")
	detail["Subject"] = leaf.Subject.String()
	detail["Issuer"] = leaf.Issuer.CommonName
	detail["NotBefore"] = leaf.NotBefore.Unix()
	detail["NotAfter"] = leaf.NotAfter.Unix()
	detail["ImportedAt"] = now.Unix()
	detail["Status"] = "ISSUED"
	detail["KeyAlgorithm"] = keyAlgorithm(leaf)
	detail["SignatureAlgorithm"] = strings.ToUpper(strings.ReplaceAll(leaf.SignatureAlgorithm.String(), "-", ""))
	raw, _ := json.Marshal(detail)
	e.Certificate = raw
	e.detail.DomainName, e.detail.Status, e.detail.KeyAlgorithm = domain, "ISSUED", keyAlgorithm(leaf)
	na := leaf.NotAfter.Unix()
	e.detail.NotAfter = &na
	e.leaf, e.chain = string(certPEM), string(chainPEM)
	f.imports = append(f.imports, Import{Region: region, ARN: arn, CertificatePEM: string(certPEM), ChainPEM: string(chainPEM)})
	acmJSON(w, map[string]string{"CertificateArn": arn})
}

func parseKey(b *pem.Block) (crypto.Signer, error) {
	var k any
	var err error
	switch b.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	return s, nil
}

// keyAlgorithm names the certificate's key as ACM's KeyAlgorithm does.
func keyAlgorithm(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA_%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "EC_prime256v1"
		case elliptic.P384():
			return "EC_secp384r1"
		case elliptic.P521():
			return "EC_secp521r1"
		}
	}
	return "UNKNOWN"
}

// Imports lists the ImportCertificate requests the fake accepted, in order.
func (x *Fake) Imports() []Import {
	x.f.mu.Lock()
	defer x.f.mu.Unlock()
	return slices.Clone(x.f.imports)
}

// Operations lists every ACM request as "Operation ARN" ("Operation" alone
// when it named no certificate), in order.
func (x *Fake) Operations() []string {
	x.f.mu.Lock()
	defer x.f.mu.Unlock()
	return slices.Clone(x.f.ops)
}

// Current is the certificate and chain (PEM) ACM holds at arn now, "" when
// there is no such ARN.
func (x *Fake) Current(arn string) (leaf, chain string) {
	x.f.mu.Lock()
	defer x.f.mu.Unlock()
	for _, e := range x.f.acm {
		if e.detail.CertificateArn == arn {
			return e.leaf, e.chain
		}
	}
	return "", ""
}
