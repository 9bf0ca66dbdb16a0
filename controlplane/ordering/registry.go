package ordering

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/emsign/bot/connectors/ca"
	"github.com/emsign/bot/connectors/ca/acme"
	"github.com/emsign/bot/connectors/ca/digicert"
	"github.com/emsign/bot/protocol"
)

// CA connector kinds a provisioning template names (its CAConnector); its
// CASettings names the connector of that kind in the registry file ("" for
// local).
const (
	KindLocal    = "local"
	KindACME     = "acme"
	KindDigiCert = "digicert"
)

// Registry is the CA connectors the control plane orders from, by name.
// The local CA is always there (one per account, see localca.go); ACME
// and DigiCert connectors come from the registry file (LoadRegistry).
type Registry struct {
	byName map[string]entry
	http01 []HTTP01Listener
}

type entry struct {
	kind   string
	issuer ca.Issuer
}

// HTTP01Listener is an address where the control plane must serve HTTP-01
// challenge answers for an ACME connector (port 80 of the names ordered,
// or a proxy in front of it): the caller listens on Addr and serves
// Handler.
type HTTP01Listener struct {
	Connector string
	Addr      string
	Handler   http.Handler
}

// registryFile is the JSON file's form.
type registryFile struct {
	Connectors map[string]json.RawMessage `json:"connectors"`
}

type kindOnly struct {
	Kind string `json:"kind"`
}

type acmeFile struct {
	Kind           string `json:"kind"`
	DirectoryURL   string `json:"directory_url"`
	CABundleFile   string `json:"ca_bundle_file"`
	AccountKeyFile string `json:"account_key_file"`
	Contact        string `json:"contact"`
	EABKID         string `json:"eab_kid"`
	EABHMACFile    string `json:"eab_hmac_file"`
	TermsAgreed    bool   `json:"terms_agreed"`
	HTTP01Listen   string `json:"http01_listen"`
	PreValidated   bool   `json:"pre_validated"`
}

type digicertFile struct {
	Kind           string `json:"kind"`
	BaseURL        string `json:"base_url"`
	APIKeyFile     string `json:"api_key_file"`
	OrganizationID int    `json:"organization_id"`
	Product        string `json:"product"`
	SkipApproval   bool   `json:"skip_approval"`
}

// LoadRegistry reads the CA connector file (--ca-config):
//
//	{"connectors": {
//	  "pebble": {"kind": "acme", "directory_url": "https://127.0.0.1:14000/dir",
//	             "ca_bundle_file": "/etc/emsign/pebble.minica.pem",
//	             "account_key_file": "/var/lib/emsign/acme-pebble.key",
//	             "contact": "pki@example.com", "eab_kid": "kid-1", "eab_hmac_file": "/etc/emsign/eab.hmac",
//	             "terms_agreed": true, "http01_listen": ":80"},
//	  "digicert": {"kind": "digicert", "base_url": "https://www.digicert.com/services/v2",
//	               "api_key_file": "/etc/emsign/digicert.key", "organization_id": 12345,
//	               "product": "ssl_basic", "skip_approval": false}}}
//
// Secrets (the EAB HMAC key, the DigiCert API key) come only from files,
// never inline. An ACME account key file that does not exist is made
// (ECDSA P-256, mode 0600). Relative paths are relative to the file's
// directory. Errors name the connector and the field.
func LoadRegistry(path string, logger *slog.Logger) (*Registry, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca config: %w", err)
	}
	var f registryFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("ca config %s: %w", path, err)
	}
	base := filepath.Dir(path)
	r := &Registry{}
	names := make([]string, 0, len(f.Connectors))
	for n := range f.Connectors {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		raw := f.Connectors[name]
		if name == "" || name == KindLocal || strings.ContainsAny(name, " \t\n/") {
			return nil, fmt.Errorf("ca config: connector %q: name must be non-empty, not %q, without spaces or slashes", name, KindLocal)
		}
		var k kindOnly
		if err := json.Unmarshal(raw, &k); err != nil {
			return nil, fmt.Errorf("ca config: connector %q: %w", name, err)
		}
		switch k.Kind {
		case KindACME:
			err = r.loadACME(name, raw, base, logger)
		case KindDigiCert:
			err = r.loadDigiCert(name, raw, base, logger)
		default:
			err = fmt.Errorf("kind: %q: want acme or digicert", k.Kind)
		}
		if err != nil {
			return nil, fmt.Errorf("ca config: connector %q: %w", name, err)
		}
	}
	return r, nil
}

func strict(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if strings.Contains(err.Error(), "unknown field") {
			return fmt.Errorf("%w (secrets are given as files: eab_hmac_file, api_key_file)", err)
		}
		return err
	}
	return nil
}

func rel(base, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

// readSecret reads a secret file, trimmed.
func readSecret(field, path string) (protocol.Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return protocol.Secret{}, fmt.Errorf("%s: %w", field, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return protocol.Secret{}, fmt.Errorf("%s: %s is empty", field, path)
	}
	return protocol.NewSecret(v), nil
}

func (r *Registry) loadACME(name string, raw json.RawMessage, base string, logger *slog.Logger) error {
	var c acmeFile
	if err := strict(raw, &c); err != nil {
		return err
	}
	if c.AccountKeyFile == "" {
		return errors.New("account_key_file: required")
	}
	key, err := loadOrMakeKey(rel(base, c.AccountKeyFile))
	if err != nil {
		return fmt.Errorf("account_key_file: %w", err)
	}
	cfg := acme.Config{DirectoryURL: c.DirectoryURL, Contact: c.Contact, AccountKey: key, EABKeyID: c.EABKID,
		TermsAgreed: c.TermsAgreed, PreValidated: c.PreValidated, Logger: logger.With("connector", name)}
	if c.EABHMACFile != "" {
		if cfg.EABHMACKey, err = readSecret("eab_hmac_file", rel(base, c.EABHMACFile)); err != nil {
			return err
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if c.CABundleFile != "" {
		pemData, err := os.ReadFile(rel(base, c.CABundleFile))
		if err != nil {
			return fmt.Errorf("ca_bundle_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return fmt.Errorf("ca_bundle_file: %s holds no PEM certificate", c.CABundleFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	cfg.HTTPClient = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	switch {
	case c.PreValidated && c.HTTP01Listen != "":
		return errors.New("http01_listen: not with pre_validated (no challenge is answered)")
	case !c.PreValidated && c.HTTP01Listen == "":
		return errors.New("http01_listen: required unless pre_validated (where the control plane answers HTTP-01, e.g. :80)")
	case c.HTTP01Listen != "":
		if _, _, err := net.SplitHostPort(c.HTTP01Listen); err != nil {
			return fmt.Errorf("http01_listen: %q: want [host]:port", c.HTTP01Listen)
		}
		solver := acme.NewHTTPSolver()
		cfg.Solver = solver
		r.addHTTP01(name, c.HTTP01Listen, solver)
	}
	iss, err := acme.New(cfg)
	if err != nil {
		return err
	}
	return r.Add(KindACME, name, iss)
}

// addHTTP01 serves the solver on addr; connectors sharing an address
// share one listener (the first solver that knows a token answers).
func (r *Registry) addHTTP01(name, addr string, s *acme.HTTPSolver) {
	for i, l := range r.http01 {
		if l.Addr == addr {
			r.http01[i].Handler = chainSolvers(l.Handler, s)
			r.http01[i].Connector += "," + name
			return
		}
	}
	r.http01 = append(r.http01, HTTP01Listener{Connector: name, Addr: addr, Handler: s})
}

// chainSolvers asks a, then b when a has no answer (404).
func chainSolvers(a, b http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec := &probe{header: http.Header{}}
		a.ServeHTTP(rec, req)
		if rec.status == http.StatusNotFound {
			b.ServeHTTP(w, req)
			return
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		_, _ = w.Write(rec.body.Bytes())
	})
}

type probe struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (p *probe) Header() http.Header { return p.header }
func (p *probe) Write(b []byte) (int, error) {
	if p.status == 0 {
		p.status = http.StatusOK
	}
	return p.body.Write(b)
}
func (p *probe) WriteHeader(code int) { p.status = code }

func (r *Registry) loadDigiCert(name string, raw json.RawMessage, base string, logger *slog.Logger) error {
	var c digicertFile
	if err := strict(raw, &c); err != nil {
		return err
	}
	if c.APIKeyFile == "" {
		return errors.New("api_key_file: required")
	}
	key, err := readSecret("api_key_file", rel(base, c.APIKeyFile))
	if err != nil {
		return err
	}
	if c.OrganizationID <= 0 {
		return errors.New("organization_id: required (the CertCentral organization)")
	}
	iss, err := digicert.New(digicert.Config{BaseURL: c.BaseURL, APIKey: key, OrganizationID: c.OrganizationID,
		Product: c.Product, SkipApproval: c.SkipApproval, Logger: logger.With("connector", name)})
	if err != nil {
		return err
	}
	return r.Add(KindDigiCert, name, iss)
}

// loadOrMakeKey reads a PEM private key, or makes an ECDSA P-256 one and
// writes it (0600, atomically) when the file does not exist.
func loadOrMakeKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		if err := writeAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
		return k, nil
	}
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM key", path)
	}
	var key any
	switch blk.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: %T is not a signing key", path, key)
	}
	return s, nil
}

// writeAtomic writes a file through a temporary one, synced, renamed.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Add registers a connector of a kind under a name (tests register
// wrapped issuers; LoadRegistry uses it for the file's).
func (r *Registry) Add(kind, name string, iss ca.Issuer) error {
	if kind != KindACME && kind != KindDigiCert {
		return fmt.Errorf("ca registry: kind %q: want acme or digicert", kind)
	}
	if name == "" || iss == nil {
		return errors.New("ca registry: name and issuer are required")
	}
	if r.byName == nil {
		r.byName = map[string]entry{}
	}
	if _, ok := r.byName[name]; ok {
		return fmt.Errorf("ca registry: connector %q defined twice", name)
	}
	r.byName[name] = entry{kind: kind, issuer: iss}
	return nil
}

// HTTP01 lists where HTTP-01 answers must be served.
func (r *Registry) HTTP01() []HTTP01Listener { return slices.Clone(r.http01) }

// Kinds lists the connector kinds a provisioning template may name:
// local, and those the file configures.
func (r *Registry) Kinds() []string {
	out := []string{KindLocal}
	for _, k := range []string{KindACME, KindDigiCert} {
		for _, e := range r.byName {
			if e.kind == k {
				out = append(out, k)
				break
			}
		}
	}
	return out
}

// Names lists the connectors of a kind (a template's CASettings choices).
func (r *Registry) Names(kind string) []string {
	var out []string
	for n, e := range r.byName {
		if e.kind == kind {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// check finds a file connector; local is checked by its caller.
func (r *Registry) check(kind, name string) (ca.Issuer, error) {
	switch kind {
	case KindLocal:
		if name != "" {
			return nil, fmt.Errorf("ca_settings %q: the local CA takes none", name)
		}
		return nil, nil
	case KindACME, KindDigiCert:
	default:
		return nil, fmt.Errorf("ca connector %q: want local, acme or digicert", kind)
	}
	if name == "" {
		names := r.Names(kind)
		if len(names) == 1 {
			return r.byName[names[0]].issuer, nil
		}
		return nil, fmt.Errorf("ca_settings: name the %s connector of the CA config (%s)", kind, strings.Join(names, ", "))
	}
	e, ok := r.byName[name]
	if !ok || e.kind != kind {
		return nil, fmt.Errorf("%s connector %q is not configured (--ca-config)", kind, name)
	}
	return e.issuer, nil
}

// issuer is the CA an order asks: the account's local CA or a file's
// connector.
func (s *Service) issuer(ctx context.Context, account, kind, name string) (ca.Issuer, error) {
	if kind == KindLocal {
		return s.locals.get(ctx, account, true)
	}
	iss, err := s.reg.check(kind, name)
	if err != nil {
		return nil, &RejectedError{Reason: err.Error()}
	}
	return iss, nil
}
