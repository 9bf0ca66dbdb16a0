// Package local is the control plane's private CA (P7): it signs CSRs with
// a CA certificate and a crypto.Signer the caller holds (the control plane
// keeps the key sealed at rest; this package never reads or writes key
// files), by named profiles that bound key usages, names and lifetimes,
// records what it issued in a Ledger, and answers for it with a CRL and
// OCSP (Handler serves both over HTTP).
package local

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/emsign/bot/connectors/ca"
)

// Defaults for Config.
const (
	DefaultLifetime    = 90 * 24 * time.Hour
	DefaultMaxLifetime = 398 * 24 * time.Hour
	DefaultCRLInterval = 24 * time.Hour
	DefaultOCSPValid   = 4 * time.Hour
	// ProfileTLSServer is the profile used when neither the request nor
	// Config names one.
	ProfileTLSServer = "tls-server"
	// backdate absorbs clock skew between the CA and the relying parties.
	backdate = time.Minute
	// minRSABits and maxRSABits bound RSA keys: below is weak, above only
	// costs every handshake (and a huge modulus is a cheap DoS on us).
	minRSABits = 2048
	maxRSABits = 16384
)

// Profile is a kind of certificate the CA issues: what the certificate may
// do and for which names.
type Profile struct {
	// KeyUsage is put in every certificate; KeyEncipherment is dropped
	// for keys that cannot encipher (ECDSA, Ed25519).
	KeyUsage x509.KeyUsage
	// ExtKeyUsage is put in every certificate.
	ExtKeyUsage []x509.ExtKeyUsage
	// MaxLifetime caps the validity; zero takes Config.MaxLifetime.
	MaxLifetime time.Duration
	// Names are the allowed name patterns; empty allows any name.
	//   "example.com"      that name only
	//   "*.example.com"    one label below example.com (and the wildcard
	//                      name *.example.com itself)
	//   "**.example.com"   any depth below example.com (not the apex)
	//   "10.0.0.0/8", "192.0.2.1"   IP addresses in the range
	// When Names is set, e-mail and URI SANs are refused.
	Names []string
	// AllowCA lets a CSR that asks for basicConstraints CA:TRUE get a
	// subordinate CA certificate (path length 0, certSign and cRLSign).
	AllowCA bool
}

// TLSServerProfile is the default "tls-server" profile: serverAuth,
// digitalSignature (and keyEncipherment for RSA keys), any name, no CA.
func TLSServerProfile() Profile {
	return Profile{
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
}

// Config describes the CA.
type Config struct {
	// Certificate is the CA certificate that signs; Signer holds its key.
	Certificate *x509.Certificate
	Signer      crypto.Signer
	// Chain is what is above Certificate, its issuer first, up to the
	// root (empty for a root CA).
	Chain []*x509.Certificate
	// Ledger records what the CA issued; required (NewMemoryLedger for
	// tests and small uses).
	Ledger Ledger
	Now    func() time.Time
	Logger *slog.Logger
	// DefaultLifetime applies when a request gives none (capped by the
	// profile's maximum); MaxLifetime caps every profile.
	DefaultLifetime time.Duration
	MaxLifetime     time.Duration
	// Profiles by name; nil gives {"tls-server": TLSServerProfile()}.
	Profiles map[string]Profile
	// DefaultProfile is used when a request names none; "tls-server" by
	// default.
	DefaultProfile string
	// CRLURL, OCSPURL and IssuerURL, when set, go into every certificate
	// as the CRL distribution point, the AIA OCSP responder and the AIA
	// caIssuers location.
	CRLURL    string
	OCSPURL   string
	IssuerURL string
	// CRLInterval is the time from a CRL's thisUpdate to its nextUpdate
	// (24h by default); OCSPValidity the same for OCSP answers (4h).
	CRLInterval  time.Duration
	OCSPValidity time.Duration
}

// CA is the private CA. It is safe for concurrent use.
type CA struct {
	cfg     Config
	log     *slog.Logger
	chain   []*x509.Certificate // issuing CA first, no self-signed root
	caKeyID []byte
}

var (
	_ ca.Issuer        = (*CA)(nil)
	_ ca.Suspender     = (*CA)(nil)
	_ ca.CRLProvider   = (*CA)(nil)
	_ ca.OCSPResponder = (*CA)(nil)
)

// New validates cfg and fills in defaults.
func New(cfg Config) (*CA, error) {
	c := cfg.Certificate
	if c == nil || cfg.Signer == nil || cfg.Ledger == nil {
		return nil, errors.New("local ca: certificate, signer and ledger are required")
	}
	if !c.BasicConstraintsValid || !c.IsCA {
		return nil, errors.New("local ca: certificate is not a CA (basicConstraints CA:TRUE missing)")
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("local ca: certificate lacks the keyCertSign key usage")
	}
	pub, ok := cfg.Signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(c.PublicKey) {
		return nil, errors.New("local ca: signer's public key does not match the certificate")
	}
	child := c
	for i, p := range cfg.Chain {
		if p == nil {
			return nil, fmt.Errorf("local ca: chain[%d] is nil", i)
		}
		if err := child.CheckSignatureFrom(p); err != nil {
			return nil, fmt.Errorf("local ca: chain[%d] (%s) did not sign %s: %w", i, p.Subject, child.Subject, err)
		}
		child = p
	}
	if cfg.DefaultLifetime < 0 || cfg.MaxLifetime < 0 || cfg.CRLInterval < 0 || cfg.OCSPValidity < 0 {
		return nil, errors.New("local ca: lifetimes and intervals must not be negative")
	}
	if cfg.MaxLifetime == 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	if cfg.DefaultLifetime == 0 {
		cfg.DefaultLifetime = min(DefaultLifetime, cfg.MaxLifetime)
	}
	if cfg.DefaultLifetime > cfg.MaxLifetime {
		return nil, fmt.Errorf("local ca: default lifetime %s above the maximum %s", cfg.DefaultLifetime, cfg.MaxLifetime)
	}
	if cfg.CRLInterval == 0 {
		cfg.CRLInterval = DefaultCRLInterval
	}
	if cfg.OCSPValidity == 0 {
		cfg.OCSPValidity = DefaultOCSPValid
	}
	if cfg.Profiles == nil {
		cfg.Profiles = map[string]Profile{ProfileTLSServer: TLSServerProfile()}
	}
	if cfg.DefaultProfile == "" {
		cfg.DefaultProfile = ProfileTLSServer
	}
	if _, ok := cfg.Profiles[cfg.DefaultProfile]; !ok {
		return nil, fmt.Errorf("local ca: default profile %q is not defined", cfg.DefaultProfile)
	}
	profiles := make(map[string]Profile, len(cfg.Profiles))
	for name, p := range cfg.Profiles {
		if err := validateProfile(p, cfg.MaxLifetime, c); err != nil {
			return nil, fmt.Errorf("local ca: profile %q: %w", name, err)
		}
		p.Names = normalizePatterns(p.Names)
		p.ExtKeyUsage = slices.Clone(p.ExtKeyUsage)
		profiles[name] = p
	}
	cfg.Profiles = profiles
	for _, u := range []struct{ field, v string }{{"crl_url", cfg.CRLURL}, {"ocsp_url", cfg.OCSPURL}, {"issuer_url", cfg.IssuerURL}} {
		if u.v == "" {
			continue
		}
		if p, err := url.Parse(u.v); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("local ca: %s %q is not an http(s) URL", u.field, u.v)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	chain := []*x509.Certificate{c}
	for _, p := range cfg.Chain {
		if !bytes.Equal(p.RawSubject, p.RawIssuer) || p.CheckSignatureFrom(p) != nil {
			chain = append(chain, p)
		}
	}
	keyID := c.SubjectKeyId
	if len(keyID) == 0 {
		keyID = keyIdentifier(c.PublicKey)
	}
	return &CA{cfg: cfg, log: cfg.Logger, chain: chain, caKeyID: keyID}, nil
}

func validateProfile(p Profile, maxLifetime time.Duration, c *x509.Certificate) error {
	if p.KeyUsage == 0 {
		return errors.New("key usage is empty")
	}
	if p.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 && !p.AllowCA {
		return errors.New("keyCertSign and cRLSign need allow_ca")
	}
	if slices.Contains(p.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return errors.New("the anyExtendedKeyUsage EKU is not allowed")
	}
	if p.MaxLifetime < 0 || p.MaxLifetime > maxLifetime {
		return fmt.Errorf("max lifetime %s outside 0..%s", p.MaxLifetime, maxLifetime)
	}
	if p.AllowCA && c.MaxPathLenZero {
		return errors.New("allow_ca, but the CA certificate has path length 0")
	}
	for _, n := range p.Names {
		if err := validPattern(n); err != nil {
			return fmt.Errorf("name pattern %q: %w", n, err)
		}
	}
	return nil
}

// Issue signs req.CSR under the request's profile. The same OrderRef
// returns the certificate issued for it the first time.
func (a *CA) Issue(ctx context.Context, req *ca.IssueRequest) (*ca.IssueResponse, error) {
	if req == nil || req.CSR == nil {
		return nil, fmt.Errorf("local ca: %w: no csr", ca.ErrRejected)
	}
	if req.OrderRef != "" {
		rec, err := a.cfg.Ledger.GetByOrderRef(ctx, req.OrderRef)
		switch {
		case err == nil:
			return a.reissued(rec, req)
		case !errors.Is(err, ErrNotFound):
			return nil, fmt.Errorf("local ca: ledger: %w", err)
		}
	}
	profileName := req.Profile
	if profileName == "" {
		profileName = a.cfg.DefaultProfile
	}
	tmpl, err := a.template(req, profileName)
	if err != nil {
		return nil, fmt.Errorf("local ca: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cfg.Certificate, req.CSR.PublicKey, a.cfg.Signer)
	if err != nil {
		return nil, fmt.Errorf("local ca: sign: %w", err)
	}
	rec := Record{
		Serial:    SerialString(tmpl.SerialNumber),
		OrderRef:  req.OrderRef,
		Profile:   profileName,
		DER:       der,
		NotBefore: tmpl.NotBefore,
		NotAfter:  tmpl.NotAfter,
		IssuedAt:  a.cfg.Now(),
		Status:    ca.StatusGood,
	}
	got, err := a.cfg.Ledger.Record(ctx, rec)
	if err != nil {
		// Not recorded means not issued: the certificate is never handed
		// out, so no one can hold one the CRL and OCSP do not know.
		return nil, fmt.Errorf("local ca: ledger: %w", err)
	}
	if got.Serial != rec.Serial {
		// Another delivery of the same order won the race.
		return a.reissued(got, req)
	}
	a.log.Info("local ca: issued", "serial", rec.Serial, "profile", profileName, "subject", tmpl.Subject.String(),
		"dns", tmpl.DNSNames, "ip", tmpl.IPAddresses, "not_after", tmpl.NotAfter, "order_ref", req.OrderRef)
	return a.response(der)
}

// reissued answers a repeated order with the certificate issued the first
// time, provided it is for the same key.
func (a *CA) reissued(rec Record, req *ca.IssueRequest) (*ca.IssueResponse, error) {
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return nil, fmt.Errorf("local ca: ledger certificate %s: %w", rec.Serial, err)
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(req.CSR.PublicKey) {
		return nil, fmt.Errorf("local ca: %w: order_ref %q was already used for another key", ca.ErrRejected, req.OrderRef)
	}
	a.log.Info("local ca: repeated order, returning the certificate issued for it", "serial", rec.Serial, "order_ref", req.OrderRef)
	return a.response(rec.DER)
}

func (a *CA) response(der []byte) (*ca.IssueResponse, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("local ca: parse issued certificate: %w", err)
	}
	return &ca.IssueResponse{
		Certificate: cert,
		Chain:       slices.Clone(a.chain),
		CAOrderID:   SerialString(cert.SerialNumber),
	}, nil
}

// template checks the request against the profile and builds the
// certificate to sign. Every refusal wraps ca.ErrRejected and names the
// field.
func (a *CA) template(req *ca.IssueRequest, profileName string) (*x509.Certificate, error) {
	p, ok := a.cfg.Profiles[profileName]
	if !ok {
		return nil, fmt.Errorf("%w: profile %q is not defined", ca.ErrRejected, profileName)
	}
	csr := req.CSR
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: csr signature: %v", ca.ErrRejected, err)
	}
	rsaKey, err := checkKey(csr.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: csr public key: %v", ca.ErrRejected, err)
	}
	wantCA, err := requestsCA(csr)
	if err != nil {
		return nil, fmt.Errorf("%w: csr basicConstraints: %v", ca.ErrRejected, err)
	}
	if wantCA && !p.AllowCA {
		return nil, fmt.Errorf("%w: csr basicConstraints: CA:TRUE is not allowed by profile %q", ca.ErrRejected, profileName)
	}

	dns := make([]string, 0, len(csr.DNSNames)+1)
	for _, n := range csr.DNSNames {
		dns = append(dns, strings.TrimSuffix(strings.ToLower(n), "."))
	}
	ips := slices.Clone(csr.IPAddresses)
	if cn := csr.Subject.CommonName; cn != "" {
		// The CA/Browser Forum wants the CN to be one of the SANs; a
		// CN-only CSR gets its CN as a SAN.
		if ip := net.ParseIP(cn); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
		} else if lc := strings.TrimSuffix(strings.ToLower(cn), "."); validHostname(lc) == nil {
			if !slices.Contains(dns, lc) {
				dns = append(dns, lc)
			}
		} else if len(p.Names) > 0 {
			return nil, fmt.Errorf("%w: subject common name %q is not a host name, and profile %q restricts names", ca.ErrRejected, cn, profileName)
		}
	}
	if len(dns)+len(ips)+len(csr.EmailAddresses)+len(csr.URIs) == 0 {
		return nil, fmt.Errorf("%w: csr names: no subject alternative name and no host name in the common name", ca.ErrRejected)
	}
	for _, n := range dns {
		if err := validHostname(n); err != nil {
			return nil, fmt.Errorf("%w: dns name %q: %v", ca.ErrRejected, n, err)
		}
		if !allowedDNS(p.Names, n) {
			return nil, fmt.Errorf("%w: dns name %q is not allowed by profile %q", ca.ErrRejected, n, profileName)
		}
	}
	for _, ip := range ips {
		if !allowedIP(p.Names, ip) {
			return nil, fmt.Errorf("%w: ip address %s is not allowed by profile %q", ca.ErrRejected, ip, profileName)
		}
	}
	if len(p.Names) > 0 && len(csr.EmailAddresses) > 0 {
		return nil, fmt.Errorf("%w: email address %q is not allowed by profile %q", ca.ErrRejected, csr.EmailAddresses[0], profileName)
	}
	if len(p.Names) > 0 && len(csr.URIs) > 0 {
		return nil, fmt.Errorf("%w: uri %q is not allowed by profile %q", ca.ErrRejected, csr.URIs[0], profileName)
	}

	maxLife := a.cfg.MaxLifetime
	if p.MaxLifetime > 0 {
		maxLife = p.MaxLifetime
	}
	life := req.Lifetime
	switch {
	case life < 0:
		return nil, fmt.Errorf("%w: lifetime %s is negative", ca.ErrRejected, life)
	case life == 0:
		life = min(a.cfg.DefaultLifetime, maxLife)
	case life > maxLife:
		return nil, fmt.Errorf("%w: lifetime %s is above profile %q's maximum %s", ca.ErrRejected, life, profileName, maxLife)
	}
	now := a.cfg.Now()
	caCert := a.cfg.Certificate
	if now.Before(caCert.NotBefore) || !now.Before(caCert.NotAfter) {
		return nil, fmt.Errorf("ca certificate is not valid now (%s to %s)", caCert.NotBefore.UTC().Format(time.RFC3339), caCert.NotAfter.UTC().Format(time.RFC3339))
	}
	notBefore := now.Add(-backdate)
	if notBefore.Before(caCert.NotBefore) {
		notBefore = caCert.NotBefore
	}
	notAfter := now.Add(life)
	if notAfter.After(caCert.NotAfter) {
		// A certificate outliving its issuer fails validation anyway;
		// shortening is what the ca contract allows.
		a.log.Warn("local ca: lifetime shortened to the CA certificate's expiry", "asked", life, "ca_not_after", caCert.NotAfter)
		notAfter = caCert.NotAfter
	}

	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	ku := p.KeyUsage
	if !rsaKey {
		ku &^= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		RawSubject:            csr.RawSubject,
		Subject:               csr.Subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              ku,
		ExtKeyUsage:           slices.Clone(p.ExtKeyUsage),
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           ips,
		EmailAddresses:        csr.EmailAddresses,
		URIs:                  csr.URIs,
		SubjectKeyId:          keyIdentifier(csr.PublicKey),
		AuthorityKeyId:        a.caKeyID,
	}
	if wantCA {
		tmpl.IsCA, tmpl.MaxPathLen, tmpl.MaxPathLenZero = true, 0, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	if a.cfg.CRLURL != "" {
		tmpl.CRLDistributionPoints = []string{a.cfg.CRLURL}
	}
	if a.cfg.OCSPURL != "" {
		tmpl.OCSPServer = []string{a.cfg.OCSPURL}
	}
	if a.cfg.IssuerURL != "" {
		tmpl.IssuingCertificateURL = []string{a.cfg.IssuerURL}
	}
	return tmpl, nil
}

// Renew issues a successor of a certificate this CA issued; the profile is
// the old certificate's unless the request names one.
func (a *CA) Renew(ctx context.Context, req *ca.RenewRequest) (*ca.IssueResponse, error) {
	if req == nil {
		return nil, fmt.Errorf("local ca: %w: no request", ca.ErrRejected)
	}
	rec, err := a.find(ctx, req.Certificate, req.CAOrderID)
	if err != nil {
		return nil, fmt.Errorf("local ca: renew: %w", err)
	}
	profile := req.Profile
	if profile == "" {
		profile = rec.Profile
	}
	return a.Issue(ctx, &ca.IssueRequest{CSR: req.CSR, Lifetime: req.Lifetime, Profile: profile, OrderRef: req.OrderRef})
}

// Revoke revokes a certificate this CA issued; reason certificateHold
// suspends it instead.
func (a *CA) Revoke(ctx context.Context, req *ca.RevokeRequest) error {
	if req == nil {
		return fmt.Errorf("local ca: %w: no request", ca.ErrRejected)
	}
	if req.Reason == ca.ReasonCertificateHold {
		return a.Suspend(ctx, req)
	}
	switch req.Reason {
	case ca.ReasonUnspecified, ca.ReasonKeyCompromise, ca.ReasonCACompromise, ca.ReasonAffiliationChanged,
		ca.ReasonSuperseded, ca.ReasonCessationOfOperation, reasonPrivilegeWithdrawn, reasonAACompromise:
	default:
		return fmt.Errorf("local ca: %w: revocation reason %d is not a reason RFC 5280 allows here", ca.ErrRejected, req.Reason)
	}
	rec, err := a.find(ctx, req.Certificate, req.CAOrderID)
	if err != nil {
		return fmt.Errorf("local ca: revoke: %w", err)
	}
	if err := a.cfg.Ledger.Revoke(ctx, rec.Serial, req.Reason, a.cfg.Now(), req.Remarks); err != nil {
		return fmt.Errorf("local ca: revoke %s: %w", rec.Serial, mapLedger(err))
	}
	a.log.Info("local ca: revoked", "serial", rec.Serial, "reason", req.Reason)
	return nil
}

// RFC 5280 reasons the ca package does not name.
const (
	reasonPrivilegeWithdrawn = 9
	reasonAACompromise       = 10
)

// Suspend puts a certificate on hold (reason certificateHold).
func (a *CA) Suspend(ctx context.Context, req *ca.RevokeRequest) error {
	if req == nil {
		return fmt.Errorf("local ca: %w: no request", ca.ErrRejected)
	}
	rec, err := a.find(ctx, req.Certificate, req.CAOrderID)
	if err != nil {
		return fmt.Errorf("local ca: suspend: %w", err)
	}
	if err := a.cfg.Ledger.Suspend(ctx, rec.Serial, a.cfg.Now(), req.Remarks); err != nil {
		return fmt.Errorf("local ca: suspend %s: %w", rec.Serial, mapLedger(err))
	}
	a.log.Info("local ca: suspended", "serial", rec.Serial)
	return nil
}

// Resume lifts a suspension. serial is hex (colons and case do not
// matter), as in IssueResponse.CAOrderID.
func (a *CA) Resume(ctx context.Context, serial string) error {
	s, err := ParseSerial(serial)
	if err != nil {
		return fmt.Errorf("local ca: resume: %w: %v", ca.ErrRejected, err)
	}
	if err := a.cfg.Ledger.Resume(ctx, s); err != nil {
		return fmt.Errorf("local ca: resume %s: %w", s, mapLedger(err))
	}
	a.log.Info("local ca: resumed", "serial", s)
	return nil
}

// Status reports what the ledger knows; unknown (nil error) for a
// certificate this CA did not issue.
func (a *CA) Status(ctx context.Context, req *ca.StatusRequest) (*ca.StatusResponse, error) {
	if req == nil {
		return nil, fmt.Errorf("local ca: %w: no request", ca.ErrRejected)
	}
	rec, err := a.find(ctx, req.Certificate, req.CAOrderID)
	if errors.Is(err, ca.ErrNotIssuedHere) {
		return &ca.StatusResponse{Status: ca.StatusUnknown}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("local ca: status: %w", err)
	}
	return &ca.StatusResponse{Status: rec.Status, RevokedAt: rec.RevokedAt, Reason: rec.Reason}, nil
}

// find looks a certificate up by itself or by its CA order ID (the serial).
func (a *CA) find(ctx context.Context, cert *x509.Certificate, orderID string) (Record, error) {
	var serial string
	switch {
	case cert != nil:
		serial = SerialString(cert.SerialNumber)
	case orderID != "":
		s, err := ParseSerial(orderID)
		if err != nil {
			return Record{}, fmt.Errorf("%w: ca order id: %v", ca.ErrNotIssuedHere, err)
		}
		serial = s
	default:
		return Record{}, fmt.Errorf("%w: neither a certificate nor a ca order id", ca.ErrRejected)
	}
	rec, err := a.cfg.Ledger.Get(ctx, serial)
	if err != nil {
		return Record{}, mapLedger(err)
	}
	if cert != nil && !bytes.Equal(cert.Raw, rec.DER) {
		// Same serial, other certificate: another CA's.
		return Record{}, fmt.Errorf("%w: serial %s belongs to another certificate", ca.ErrNotIssuedHere, serial)
	}
	return rec, nil
}

func mapLedger(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("%w (%w)", ca.ErrNotIssuedHere, err)
	case errors.Is(err, ErrAlreadyRevoked), errors.Is(err, ErrNotSuspended):
		return fmt.Errorf("%w: %w", ca.ErrRejected, err)
	}
	return fmt.Errorf("ledger: %w", err)
}

// SerialString is the ledger's form of a serial number: lowercase hex.
func SerialString(n *big.Int) string {
	if n == nil {
		return ""
	}
	return n.Text(16)
}

// ParseSerial accepts a serial in hex, with or without colons, spaces or a
// 0x prefix, in either case, and returns its SerialString form.
func ParseSerial(s string) (string, error) {
	h := strings.NewReplacer(":", "", " ", "").Replace(strings.ToLower(strings.TrimSpace(s)))
	h = strings.TrimPrefix(h, "0x")
	n, ok := new(big.Int).SetString(h, 16)
	if !ok || h == "" || n.Sign() <= 0 {
		return "", fmt.Errorf("serial %q is not a positive hex number", s)
	}
	return SerialString(n), nil
}

// newSerial returns 128 random bits as a positive serial (CA/Browser Forum
// wants at least 64 bits of entropy; 128 makes collisions moot).
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// checkKey refuses weak or unsupported keys; it says whether the key is RSA.
func checkKey(pub crypto.PublicKey) (isRSA bool, err error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if b := k.N.BitLen(); b < minRSABits || b > maxRSABits {
			return true, fmt.Errorf("RSA %d bits outside %d..%d", b, minRSABits, maxRSABits)
		}
		return true, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return false, nil
		}
		return false, fmt.Errorf("curve %s is not supported (P-256, P-384, P-521)", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return false, nil
	}
	return false, fmt.Errorf("key type %T is not supported", pub)
}

var oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}

// requestsCA says whether the CSR asks for basicConstraints CA:TRUE.
func requestsCA(csr *x509.CertificateRequest) (bool, error) {
	for _, e := range csr.Extensions {
		if !e.Id.Equal(oidBasicConstraints) {
			continue
		}
		var bc struct {
			IsCA       bool `asn1:"optional"`
			MaxPathLen int  `asn1:"optional,default:-1"`
		}
		if rest, err := asn1.Unmarshal(e.Value, &bc); err != nil || len(rest) != 0 {
			return false, errors.New("malformed extension")
		}
		return bc.IsCA, nil
	}
	return false, nil
}

// keyIdentifier is RFC 7093 method 1: the leftmost 160 bits of the
// SHA-256 of the subjectPublicKey bit string.
func keyIdentifier(pub crypto.PublicKey) []byte {
	bits := publicKeyBits(pub)
	if bits == nil {
		return nil
	}
	h := sha256.Sum256(bits)
	return h[:20]
}

// publicKeyBits is the content of the subjectPublicKey BIT STRING.
func publicKeyBits(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil
	}
	return spki.PublicKey.RightAlign()
}

// validHostname checks a DNS SAN: LDH labels (underscore allowed, private
// names use it), 1-63 characters each, 253 in all, a wildcard only as the
// whole leftmost label.
func validHostname(n string) error {
	if n == "" || len(n) > 253 {
		return errors.New("empty or longer than 253 characters")
	}
	labels := strings.Split(n, ".")
	for i, l := range labels {
		if l == "*" && i == 0 && len(labels) > 1 {
			continue
		}
		if l == "" || len(l) > 63 {
			return errors.New("empty label or label longer than 63 characters")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return errors.New("label starts or ends with a hyphen")
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("character %q not allowed", r)
			}
		}
	}
	return nil
}

func validPattern(p string) error {
	p = strings.ToLower(strings.TrimSpace(p))
	if _, err := netip.ParsePrefix(p); err == nil {
		return nil
	}
	if _, err := netip.ParseAddr(p); err == nil {
		return nil
	}
	base := strings.TrimPrefix(strings.TrimPrefix(p, "**."), "*.")
	if strings.Contains(base, "*") {
		return errors.New("a wildcard only as a leading \"*.\" or \"**.\"")
	}
	return validHostname(base)
}

func normalizePatterns(ps []string) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, strings.TrimSuffix(strings.ToLower(strings.TrimSpace(p)), "."))
	}
	return out
}

// allowedDNS matches a lowercased name against the patterns.
func allowedDNS(patterns []string, n string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		switch {
		case strings.HasPrefix(p, "**."):
			if strings.HasSuffix(n, p[2:]) {
				return true
			}
		case strings.HasPrefix(p, "*."):
			if n == p {
				return true
			}
			if head, ok := strings.CutSuffix(n, p[1:]); ok && head != "" && !strings.ContainsAny(head, ".*") {
				return true
			}
		default:
			if n == p {
				return true
			}
		}
	}
	return false
}

func allowedIP(patterns []string, ip net.IP) bool {
	if len(patterns) == 0 {
		return true
	}
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	addr = addr.Unmap()
	for _, p := range patterns {
		if pre, err := netip.ParsePrefix(p); err == nil && pre.Contains(addr) {
			return true
		}
		if a, err := netip.ParseAddr(p); err == nil && a.Unmap() == addr {
			return true
		}
	}
	return false
}
