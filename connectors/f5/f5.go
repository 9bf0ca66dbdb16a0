// Package f5 finds the certificates a BIG-IP holds through its iControl
// REST API: every SSL certificate file object (all partitions, or one), the
// client-ssl profiles that use it, the virtual servers that serve those
// profiles and the device's failover state.
package f5

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emsign/bot/connectors"
	"github.com/emsign/bot/protocol"
)

// Defaults for Config.
const (
	DefaultTimeout  = 30 * time.Second
	DefaultPageSize = 100
	// maxRetries is how often a 429, a 5xx or a transport error is retried.
	maxRetries = 3
	// maxRetryWait caps a server's Retry-After.
	maxRetryWait = 30 * time.Second
	// maxPages stops a device whose nextLink never ends.
	maxPages = 100000
)

// Attribute keys of a finding.
const (
	AttrProfiles = "profiles" // client-ssl profiles using the certificate, comma-separated full paths
	AttrVIPs     = "vips"     // virtual servers serving those profiles: /P/vs@DEST, comma-separated
	AttrFailover = "failover" // the device's failover state: active, standby, offline, ...
)

// Config tunes a Source.
type Config struct {
	Logger *slog.Logger
	Now    func() time.Time
	// HTTPClient, when set, is used as is (its TLS settings win over the
	// target's ca_file and insecure); tests set it.
	HTTPClient *http.Client
	// Timeout bounds each request.
	Timeout time.Duration
	// PageSize is the $top of list requests.
	PageSize int
	// RetryBackoff is the first wait before retrying a 5xx (doubled each
	// time); 500ms when zero.
	RetryBackoff time.Duration
}

// Source is the F5 BIG-IP discovery connector.
type Source struct {
	cfg Config
	log *slog.Logger
}

var _ connectors.Source = (*Source)(nil)

// New validates cfg and fills in defaults.
func New(cfg Config) (*Source, error) {
	if cfg.Timeout < 0 || cfg.PageSize < 0 || cfg.RetryBackoff < 0 {
		return nil, errors.New("f5: timeout, page size and backoff must not be negative")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Source{cfg: cfg, log: cfg.Logger}, nil
}

// Discover reads the device's certificates and emits one finding each.
func (s *Source) Discover(ctx context.Context, t protocol.Target, emit connectors.Emit) error {
	if t.Scheme != protocol.SchemeF5 {
		return fmt.Errorf("f5: cannot scan %s targets", t.Scheme)
	}
	c, err := s.client(t)
	if err != nil {
		return fmt.Errorf("f5: %w", err)
	}
	if err := c.login(ctx); err != nil {
		return fmt.Errorf("f5: %w", err)
	}
	partition := t.Param(protocol.ParamPartition)

	failover, err := s.failover(ctx, c)
	if err != nil {
		if fatal(err) {
			return fmt.Errorf("f5: %w", err)
		}
		s.log.Warn("f5: failover state unknown", "target", t.String(), "error", err)
		failover = "unknown"
	}
	certs, err := listCerts(ctx, c, s.cfg.PageSize, partition)
	if err != nil {
		return fmt.Errorf("f5: %w", err)
	}
	profiles, err := listProfiles(ctx, c, s.cfg.PageSize)
	if err != nil {
		return fmt.Errorf("f5: %w", err)
	}
	vips, err := listVirtuals(ctx, c, s.cfg.PageSize)
	if err != nil {
		return fmt.Errorf("f5: %w", err)
	}

	for _, ci := range certs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		f := s.finding(ctx, c, t, ci, profiles, vips, failover)
		if f.Error != "" && fatalString(f.Error) {
			// A refused request mid-scan fails the target, not the location.
			return errors.New(f.Error)
		}
		if err := emit(f); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// client builds the HTTP client for t.
func (s *Source) client(t protocol.Target) (*client, error) {
	hc := s.cfg.HTTPClient
	if hc == nil {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if ca := t.Param(protocol.ParamCAFile); ca != "" {
			pemData, err := os.ReadFile(ca)
			if err != nil {
				return nil, fmt.Errorf("ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pemData) {
				return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", ca)
			}
			tc.RootCAs = pool
		}
		if b, _ := strconv.ParseBool(t.Param(protocol.ParamInsecure)); b {
			tc.InsecureSkipVerify = true //nolint:gosec // the user asked for it with insecure=true.
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		tr.Proxy = nil
		hc = &http.Client{Transport: tr, Timeout: s.cfg.Timeout}
	}
	pw := t.Passwords()
	if len(pw) == 0 {
		return nil, errors.New("no password")
	}
	return &client{
		http:     hc,
		base:     "https://" + t.Host,
		user:     t.Param(protocol.ParamUser),
		password: pw[len(pw)-1],
		log:      s.log,
		retries:  maxRetries,
		maxWait:  maxRetryWait,
		backoff:  s.cfg.RetryBackoff,
	}, nil
}

// fatal reports whether err fails the whole target even where a single
// location's problem would not: a refused login.
func fatal(err error) bool {
	var ae *authError
	return errors.As(err, &ae) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

const fatalPrefix = "f5: login as "

func fatalString(s string) bool { return strings.HasPrefix(s, fatalPrefix) }

// certItem is a sys/file/ssl-cert object
// (https://clouddocs.f5.com/api/icontrol-rest/APIRef_tm_sys_file_ssl-cert.html).
type certItem struct {
	Name           string `json:"name"`
	Partition      string `json:"partition"`
	FullPath       string `json:"fullPath"`
	Subject        string `json:"subject"`
	Issuer         string `json:"issuer"`
	ExpirationDate int64  `json:"expirationDate"`
	Fingerprint    string `json:"fingerprint"`
	// CertificateText is not in F5's documentation of the object; the
	// connector reads it only as a fallback when a device returns it (see
	// README "PEM").
	CertificateText string `json:"certificateText"`
}

func (ci certItem) path() string {
	if ci.FullPath != "" {
		return ci.FullPath
	}
	return "/" + ci.Partition + "/" + ci.Name
}

// tmName writes a full path as iControl REST wants it in a URI:
// /Common/a.crt is ~Common~a.crt.
func tmName(fullPath string) string {
	return url.PathEscape(strings.ReplaceAll(fullPath, "/", "~"))
}

func (s *Source) finding(ctx context.Context, c *client, t protocol.Target, ci certItem, profiles map[string][]string, vips map[string][]string, failover string) protocol.Finding {
	full := ci.path()
	f := protocol.Finding{
		Location: protocol.Location{Scheme: protocol.SchemeF5, Host: t.Host, Path: full},
		Source:   protocol.SchemeF5,
		Format:   protocol.FormatPEM,
		SeenAt:   s.cfg.Now(),
	}
	attrs := map[string]string{AttrFailover: failover}
	profs := profiles[full]
	if len(profs) > 0 {
		attrs[AttrProfiles] = strings.Join(profs, ",")
	}
	var vs []string
	for _, p := range profs {
		vs = append(vs, vips[p]...)
	}
	slices.Sort(vs)
	vs = slices.Compact(vs)
	if len(vs) > 0 {
		attrs[AttrVIPs] = strings.Join(vs, ",")
	}
	f.Attributes = attrs

	chain, err := s.readPEM(ctx, c, ci)
	if err != nil {
		var ae *authError
		if errors.As(err, &ae) {
			f.Error = "f5: " + ae.Error()
		} else {
			f.Error = err.Error()
		}
	}
	f.Chain = chain
	return f
}

// bashPath runs a shell command (documented at
// https://clouddocs.f5.com/api/icontrol-rest/APIRef_tm_util_bash.html); it
// needs the Administrator role.
const bashPath = "/mgmt/tm/util/bash"

// filestoreDir is where BIG-IP keeps the files of sys file ssl-cert
// objects: /config/filestore/files_d/PARTITION_d/certificate_d/:PARTITION:NAME_ID_REV.
const filestoreDir = "/config/filestore/files_d/"

// safeSegment is what a partition, folder or object name may hold for the
// connector to put it in a shell command.
var safeSegment = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// bashCatCommand is the utilCmdArgs that prints the newest filestore file of
// the certificate object fullPath, or "" when the path has characters that
// are not safe in a shell command.
func bashCatCommand(fullPath string) string {
	parts := strings.Split(strings.TrimPrefix(fullPath, "/"), "/")
	if len(parts) < 2 {
		return ""
	}
	for _, p := range parts {
		if !safeSegment.MatchString(p) {
			return ""
		}
	}
	glob := filestoreDir + parts[0] + "_d/certificate_d/:" + strings.Join(parts, ":") + "_[0-9]*_[0-9]*"
	return `-c 'cat "$(ls -1t ` + glob + ` | head -n 1)"'`
}

// readPEM returns the DER chain of a certificate object, trying in order:
//
//  1. POST /mgmt/tm/util/bash {"command":"run","utilCmdArgs":"-c 'cat ...'"}
//     → commandResult: the object's file in the filestore (needs the
//     Administrator role; a refusal turns this route off for the rest of the
//     scan);
//  2. GET /mgmt/tm/sys/file/ssl-cert/~P~NAME → certificateText, a field no F5
//     documentation describes, kept for devices that return it.
//
// See README "PEM".
func (s *Source) readPEM(ctx context.Context, c *client, ci certItem) ([][]byte, error) {
	full := ci.path()
	var bashErr error
	if text := ci.CertificateText; text != "" {
		return parsePEM([]byte(text))
	}
	if !c.noBash {
		if cmd := bashCatCommand(full); cmd == "" {
			bashErr = fmt.Errorf("POST %s: the name %q is not safe in a shell command", bashPath, full)
		} else {
			chain, err := s.bashPEM(ctx, c, cmd)
			if err == nil {
				return chain, nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			bashErr = err
		}
	}

	var detail certItem
	if err := c.get(ctx, "/mgmt/tm/sys/file/ssl-cert/"+tmName(full), &detail); err != nil {
		return nil, err
	}
	if detail.CertificateText == "" {
		msg := "the device returned no PEM for this certificate (subject " + strconv.Quote(ci.Subject) + ")"
		if bashErr != nil {
			msg += ": " + bashErr.Error()
		} else if c.noBash {
			msg += ": " + bashPath + " is not available to this user"
		}
		return nil, errors.New(msg)
	}
	return parsePEM([]byte(detail.CertificateText))
}

// bashPEM runs cmd through util/bash and reads the PEM it prints. A device
// that refuses the route (401/403: not an administrator; 400/404/405: no such
// worker) has it turned off for the rest of the scan.
func (s *Source) bashPEM(ctx context.Context, c *client, cmd string) ([][]byte, error) {
	body, err := json.Marshal(map[string]string{"command": "run", "utilCmdArgs": cmd})
	if err != nil {
		return nil, err
	}
	var out struct {
		CommandResult string `json:"commandResult"`
	}
	if err := c.do(ctx, http.MethodPost, bashPath, body, &out, true); err != nil {
		var ae *authError
		var se *statusError
		switch {
		case errors.As(err, &ae):
			c.noBash = true
			s.log.Warn("f5: util/bash refused, reading certificates from the ssl-cert objects", "user", c.user, "status", ae.err.Code)
			return nil, fmt.Errorf("POST %s: %d %s", bashPath, ae.err.Code, http.StatusText(ae.err.Code))
		case errors.As(err, &se) && (se.Code == http.StatusBadRequest || se.Code == http.StatusNotFound || se.Code == http.StatusMethodNotAllowed):
			c.noBash = true
			s.log.Warn("f5: util/bash not available, reading certificates from the ssl-cert objects", "status", se.Code)
		}
		return nil, err
	}
	if !strings.Contains(out.CommandResult, "-----BEGIN CERTIFICATE-----") {
		return nil, fmt.Errorf("POST %s: no certificate file: %s", bashPath, truncate(strings.TrimSpace(out.CommandResult), 120))
	}
	return parsePEM([]byte(out.CommandResult))
}

// parsePEM reads the CERTIFICATE blocks of a PEM bundle, in order.
func parsePEM(data []byte) ([][]byte, error) {
	var chain [][]byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return chain, fmt.Errorf("certificate %d of the PEM: %w", len(chain)+1, err)
		}
		chain = append(chain, b.Bytes)
	}
	if len(chain) == 0 {
		return nil, errors.New("the PEM the device returned holds no certificate")
	}
	return chain, nil
}

// page is one page of an iControl REST collection.
type page struct {
	Items    []json.RawMessage `json:"items"`
	NextLink string            `json:"nextLink"`
}

// list walks a collection page by page ($top/$skip, then the nextLink the
// device returns) and hands each item to fn.
func list(ctx context.Context, c *client, path string, pageSize int, fn func(json.RawMessage) error) error {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	next := path + sep + "$top=" + strconv.Itoa(pageSize) + "&$skip=0"
	seen := map[string]bool{}
	for range maxPages {
		if seen[next] {
			return fmt.Errorf("GET %s: the device's nextLink loops", shortPath(path))
		}
		seen[next] = true
		var p page
		if err := c.get(ctx, next, &p); err != nil {
			return err
		}
		for _, it := range p.Items {
			if err := fn(it); err != nil {
				return fmt.Errorf("GET %s: malformed item: %w", shortPath(path), err)
			}
		}
		if p.NextLink == "" || len(p.Items) == 0 {
			return nil
		}
		// The link names the device as localhost: keep only path and query.
		u, err := url.Parse(p.NextLink)
		if err != nil || !strings.HasPrefix(u.Path, "/mgmt/") {
			return fmt.Errorf("GET %s: bad nextLink %q", shortPath(path), p.NextLink)
		}
		next = u.EscapedPath()
		if u.RawQuery != "" {
			next += "?" + u.RawQuery
		}
	}
	return fmt.Errorf("GET %s: more than %d pages", shortPath(path), maxPages)
}

func listCerts(ctx context.Context, c *client, pageSize int, partition string) ([]certItem, error) {
	var out []certItem
	err := list(ctx, c, "/mgmt/tm/sys/file/ssl-cert", pageSize, func(raw json.RawMessage) error {
		var ci certItem
		if err := json.Unmarshal(raw, &ci); err != nil {
			return err
		}
		if ci.Name == "" {
			return errors.New("a certificate without a name")
		}
		if ci.Partition == "" {
			ci.Partition = partitionOf(ci.FullPath)
		}
		if partition == "" || ci.Partition == partition {
			out = append(out, ci)
		}
		return nil
	})
	return out, err
}

// listProfiles maps a certificate's full path to the client-ssl profiles
// that use it (https://clouddocs.f5.com/api/icontrol-rest/APIRef_tm_ltm_profile_client-ssl.html).
func listProfiles(ctx context.Context, c *client, pageSize int) (map[string][]string, error) {
	out := map[string][]string{}
	err := list(ctx, c, "/mgmt/tm/ltm/profile/client-ssl", pageSize, func(raw json.RawMessage) error {
		var p struct {
			Name         string `json:"name"`
			Partition    string `json:"partition"`
			FullPath     string `json:"fullPath"`
			Cert         string `json:"cert"`
			Chain        string `json:"chain"`
			CertKeyChain []struct {
				Cert  string `json:"cert"`
				Chain string `json:"chain"`
			} `json:"certKeyChain"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return err
		}
		full := p.FullPath
		if full == "" {
			full = "/" + p.Partition + "/" + p.Name
		}
		certs := []string{p.Cert, p.Chain}
		for _, ck := range p.CertKeyChain {
			certs = append(certs, ck.Cert, ck.Chain)
		}
		for _, cert := range certs {
			if cert == "" || cert == "none" {
				continue
			}
			if !strings.HasPrefix(cert, "/") {
				cert = "/Common/" + cert
			}
			if !slices.Contains(out[cert], full) {
				out[cert] = append(out[cert], full)
			}
		}
		return nil
	})
	for k := range out {
		sort.Strings(out[k])
	}
	return out, err
}

// listVirtuals maps a profile's full path to the virtual servers using it,
// each as FULLPATH@DESTINATION
// (https://clouddocs.f5.com/api/icontrol-rest/APIRef_tm_ltm_virtual.html).
func listVirtuals(ctx context.Context, c *client, pageSize int) (map[string][]string, error) {
	out := map[string][]string{}
	err := list(ctx, c, "/mgmt/tm/ltm/virtual?expandSubcollections=true", pageSize, func(raw json.RawMessage) error {
		var v struct {
			Name              string `json:"name"`
			Partition         string `json:"partition"`
			FullPath          string `json:"fullPath"`
			Destination       string `json:"destination"`
			ProfilesReference struct {
				Items []struct {
					Name      string `json:"name"`
					Partition string `json:"partition"`
					FullPath  string `json:"fullPath"`
					Context   string `json:"context"`
				} `json:"items"`
			} `json:"profilesReference"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		full := v.FullPath
		if full == "" {
			full = "/" + v.Partition + "/" + v.Name
		}
		vip := full + "@" + destination(v.Destination)
		for _, p := range v.ProfilesReference.Items {
			pp := p.FullPath
			if pp == "" {
				pp = "/" + p.Partition + "/" + p.Name
			}
			out[pp] = append(out[pp], vip)
		}
		return nil
	})
	return out, err
}

// destination drops the partition of a virtual server's destination:
// /Common/10.0.0.10:443 is 10.0.0.10:443.
func destination(d string) string {
	if strings.HasPrefix(d, "/") {
		if i := strings.LastIndex(d, "/"); i >= 0 {
			return d[i+1:]
		}
	}
	return d
}

func partitionOf(fullPath string) string {
	p := strings.TrimPrefix(fullPath, "/")
	p, _, _ = strings.Cut(p, "/")
	return p
}

// failover reads the device's failover state from GET /mgmt/tm/sys/failover,
// whose answer is the tmsh text: {"apiRawValues":{"apiAnonymous":"Failover
// active for 0d 01:20:32\n"}}.
func (s *Source) failover(ctx context.Context, c *client) (string, error) {
	var out struct {
		APIRawValues struct {
			APIAnonymous string `json:"apiAnonymous"`
		} `json:"apiRawValues"`
	}
	if err := c.get(ctx, "/mgmt/tm/sys/failover", &out); err != nil {
		return "", err
	}
	fields := strings.Fields(out.APIRawValues.APIAnonymous)
	if len(fields) < 2 || !strings.EqualFold(fields[0], "Failover") {
		return "", fmt.Errorf("GET /mgmt/tm/sys/failover: unexpected answer %q", truncate(out.APIRawValues.APIAnonymous, 80))
	}
	return strings.ToLower(fields[1]), nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
