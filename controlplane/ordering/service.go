// Package ordering is the control plane's half of a rotation (B9, D7,
// P1-P9, S5): it turns a discovered certificate's location into an order
// and a rotate job for the bot that holds it, answers the bot's CSR by
// ordering from the provisioning template's CA connector (once per order,
// however often the CSR is posted and on however many replicas), records
// every step the bot reports, and revokes, suspends and resumes what it
// issued. The local CA's CRL, OCSP answers and certificate are served by
// CAHandler.
//
// ordering does not import controlplane/ops (ops imports ordering): role
// checks and audit entries are ops' job; secrets sealed by ops (a key
// profile's PIN, a template's keystore password, a bot's targets) are
// opened here with the same associated data (see aad.go).
package ordering

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/emsign/bot/controlplane/seal"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// Defaults.
const (
	DefaultIssueWait = 20 * time.Second
	// issueTimeout bounds one CA call made for a CSR; it runs detached
	// from the bot's request, which may end sooner (the bot polls).
	issueTimeout = 10 * time.Minute
	// staleOrdering is how long a claim to ask the CA holds before another
	// call (on any replica) may take the order over: a replica died.
	staleOrdering = 10 * time.Minute
	// pendingRetry is what a pending answer tells the bot to wait.
	pendingRetry = 2 * time.Second
)

// InvalidError is bad input: Field names what is wrong (location,
// template_id, deploy.verify[1]...), for a 400 answer or a form message.
type InvalidError struct {
	Field string
	Msg   string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Msg }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// RejectedError is a CSR the CA (or this control plane, for the CA) will
// not certify: the bot gets 422 with Reason and its job fails.
type RejectedError struct{ Reason string }

func (e *RejectedError) Error() string { return "rejected: " + e.Reason }

// conflict is an error the API answers 409 with msg (store.ErrConflict).
func conflict(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), store.ErrConflict)
}

// Config is what a Service needs.
type Config struct {
	Store  store.Store
	Sealer *seal.Sealer
	// Wake wakes a bot's job long poll once a job is queued for it
	// (ops.Notifier.Notify; ordering does not import ops, which imports
	// ordering). nil: the bot finds the job at its next poll.
	Wake func(botID string)
	// Registry holds the CA connectors by name; nil has only "local".
	Registry *Registry
	// PublicURL is the control plane's URL as relying parties reach it
	// (https://cp.example.com): the local CA's CRL, OCSP and issuer URLs
	// in its certificates are under PublicURL/ca/{account}/. "" leaves
	// them out.
	PublicURL string
	Logger    *slog.Logger
	Now       func() time.Time
	NewID     func() string
	// IssueWait bounds how long the CSR call waits for the CA before
	// answering pending (default 20s).
	IssueWait time.Duration
	// Finished, when set, is called after a bot reported a rotation's end
	// (the mass replacement runner's wake-up, so the next wave starts at
	// once rather than at its next tick).
	Finished func()
}

// Service orders certificates and follows rotations. It is safe for
// concurrent use.
type Service struct {
	st        store.Store
	sealer    *seal.Sealer
	wake      func(string)
	reg       *Registry
	publicURL string
	log       *slog.Logger
	now       func() time.Time
	newID     func() string
	issueWait time.Duration
	finished  func()

	locals *localCAs

	// inflight holds the CA calls this process makes, by order ID, so that
	// a CSR posted again while the CA works waits for the same call.
	mu       sync.Mutex
	inflight map[string]*issueCall
}

// issueCall is one CA call under way; done closes when it ended.
type issueCall struct {
	done chan struct{}
	err  error
}

// New checks cfg; it does no I/O.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Sealer == nil || cfg.Logger == nil {
		return nil, errors.New("ordering: store, sealer and logger are required")
	}
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("ordering: public URL %q: want http(s)://host[:port]", cfg.PublicURL)
		}
	}
	if cfg.IssueWait < 0 {
		return nil, errors.New("ordering: issue wait must not be negative")
	}
	s := &Service{
		st: cfg.Store, sealer: cfg.Sealer, wake: cfg.Wake, reg: cfg.Registry,
		publicURL: strings.TrimSuffix(cfg.PublicURL, "/"), log: cfg.Logger, now: cfg.Now, newID: cfg.NewID,
		issueWait: cfg.IssueWait, finished: cfg.Finished, inflight: map[string]*issueCall{},
	}
	if s.reg == nil {
		s.reg = &Registry{}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.newID == nil {
		s.newID = uuid.NewString
	}
	if s.issueWait == 0 {
		s.issueWait = DefaultIssueWait
	}
	s.locals = newLocalCAs(s)
	return s, nil
}

// Registry is the service's CA connectors.
func (s *Service) Registry() *Registry { return s.reg }

// DeployOptions override what a rotation's deployment takes from the
// location (P8).
type DeployOptions struct {
	// KeyPath and ChainPath for PEM files ("": the bot finds the key file
	// of the old certificate; no chain file).
	KeyPath   string
	ChainPath string
	// ChainInCert writes the chain after the certificate in its file. nil
	// does so unless ChainPath is given: a server handed a leaf without
	// its intermediates breaks every client that does not already hold
	// them, and nginx, Apache 2.4.8+ and HAProxy all read the chain from
	// the certificate's file. false keeps a leaf-only file.
	ChainInCert *bool
	// Reload runs after the write (argv; the bot runs only commands its
	// allowed_reload setting lists).
	Reload []string
	// Verify lists host:port[#sni] endpoints that must serve the new
	// certificate; nil takes the tls locations of the same certificate
	// found by the same bot; an empty non-nil list verifies none.
	Verify []string
	// KeystorePassword for JKS and PKCS#12 (zero: the template's manual
	// one, or none and the bot tries its own targets' passwords).
	KeystorePassword protocol.Secret
	// Alias of the keystore entry ("": the entry of the location).
	Alias string
}

// RotateRequest asks for one location of one certificate to be replaced.
type RotateRequest struct {
	Fingerprint string
	// Location is the location URI; "" takes the only deployable one.
	Location string
	// BotID picks the bot when several hold the same URI (one path, such
	// as /etc/nginx/tls.pem, on many servers); "" accepts any one of them
	// only when there is exactly one.
	BotID string
	// Action is protocol.ActionRotate (default), ActionRekey or ActionRenew.
	Action string
	// TemplateID is the provisioning template; "" the account's default.
	TemplateID string
	Deploy     DeployOptions
	BatchID    string
	CreatedBy  string
}

// undeployable says why a source cannot be written to.
const undeployable = "rotate the file or store that holds it; tls locations are verified, not written"

// deployKind says how a location is written, or "" when it cannot be.
func deployKind(l store.Location) string {
	switch l.Source {
	case protocol.SchemeFile:
		switch l.Format {
		case protocol.FormatPEM, protocol.FormatDER, "":
			return protocol.DeployPEM
		case protocol.FormatJKS:
			return protocol.DeployJKS
		case protocol.FormatPKCS12:
			return protocol.DeployPKCS12
		}
	case protocol.SchemeJKS:
		if l.Format == protocol.FormatPKCS12 {
			return protocol.DeployPKCS12
		}
		if l.Format == protocol.FormatJKS || l.Format == "" {
			return protocol.DeployJKS
		}
	case protocol.SchemePKCS11:
		return protocol.DeployPKCS11
	case protocol.SchemeLDAP, protocol.SchemeLDAPS:
		return protocol.DeployLDAP
	case protocol.SchemeSSH:
		if l.Format == protocol.FormatPEM || l.Format == protocol.FormatDER || l.Format == "" {
			return protocol.DeploySSH
		}
	case protocol.SchemeAWS:
		if strings.HasPrefix(l.URI, "aws://acm/") {
			return protocol.DeployACM
		}
	case protocol.SchemeF5:
		return protocol.DeployF5
	case protocol.SchemeCloudflare:
		if loc, err := protocol.ParseLocation(l.URI); err == nil && strings.Count(strings.Trim(loc.Path, "/"), "/") == 1 {
			return protocol.DeployCloudflare
		}
	}
	return ""
}

// Deployable lists the location URIs of c that Rotate accepts (present,
// and of a kind a bot can write), for the dashboard's choice. Whether
// their bot is active and speaks protocol 2 is checked by Rotate.
func (s *Service) Deployable(c store.Certificate) []string {
	out := []string{}
	for _, l := range s.DeployableLocations(c) {
		out = append(out, l.URI)
	}
	return out
}

// DeployableLocations are the locations Rotate accepts, with their bots
// (one URI may be held by several bots: the same path on many servers).
func (s *Service) DeployableLocations(c store.Certificate) []store.Location {
	out := []store.Location{}
	for _, l := range c.Locations {
		if l.Present && l.BotID != "" && deployKind(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// Rotate makes an order and its rotate job for one location of a
// certificate, and wakes the bot.
func (s *Service) Rotate(ctx context.Context, account string, req RotateRequest) (store.Order, error) {
	action := req.Action
	if action == "" {
		action = protocol.ActionRotate
	}
	if action != protocol.ActionRotate && action != protocol.ActionRekey && action != protocol.ActionRenew {
		return store.Order{}, invalid("action", "want rotate, rekey or renew")
	}
	if req.Fingerprint == "" {
		return store.Order{}, invalid("fingerprint", "required")
	}
	cert, err := s.st.Certificate(ctx, account, req.Fingerprint)
	if err != nil {
		return store.Order{}, fmt.Errorf("ordering: certificate %s: %w", req.Fingerprint, err)
	}
	loc, err := chooseLocation(cert, req.Location, req.BotID)
	if err != nil {
		return store.Order{}, err
	}
	bot, err := s.st.Bot(ctx, account, loc.BotID)
	if err != nil {
		return store.Order{}, fmt.Errorf("ordering: bot %s of the location: %w", loc.BotID, err)
	}
	if bot.Status != protocol.BotActive {
		return store.Order{}, conflict("bot %s (%s) is %s: only an active bot can rotate", bot.Name, bot.ID, bot.Status)
	}
	if bot.Capability < 2 {
		return store.Order{}, conflict("bot %s (%s) speaks protocol %d: upgrade it to rotate", bot.Name, bot.ID, bot.Capability)
	}
	tmpl, err := s.template(ctx, account, req.TemplateID)
	if err != nil {
		return store.Order{}, err
	}
	if _, err := s.reg.check(tmpl.CAConnector, tmpl.CASettings); err != nil {
		return store.Order{}, invalid("template_id", "provisioning template %q: %v", tmpl.Name, err)
	}
	leaf, _, err := s.st.CertificateDER(ctx, account, cert.Fingerprint)
	if err != nil {
		return store.Order{}, fmt.Errorf("ordering: certificate %s: %w", cert.Fingerprint, err)
	}
	if _, err := x509.ParseCertificate(leaf); err != nil {
		return store.Order{}, fmt.Errorf("ordering: certificate %s does not parse: %w", cert.Fingerprint, err)
	}

	orderID, jobID := s.newID(), s.newID()
	rot := protocol.Rotation{OrderID: orderID, Action: action, Location: loc.URI, OldCertificate: leaf}
	if rot.CSR, err = s.csrSpec(ctx, tmpl); err != nil {
		return store.Order{}, err
	}
	if rot.Key, err = s.keySpec(ctx, tmpl, action, cert, loc, orderID); err != nil {
		return store.Order{}, err
	}
	if rot.Deploy, err = s.deploySpec(bot, cert, loc, tmpl, req.Deploy); err != nil {
		return store.Order{}, err
	}
	payload, err := json.Marshal(rot)
	if err != nil {
		return store.Order{}, fmt.Errorf("ordering: %w", err)
	}
	sealed, err := s.sealer.Seal(payload, rotationAAD(account, jobID))
	if err != nil {
		return store.Order{}, fmt.Errorf("ordering: seal the rotation: %w", err)
	}
	now := s.now().UTC()
	o := store.Order{
		ID: orderID, Account: account, BotID: bot.ID, JobID: jobID, Action: action, Fingerprint: cert.Fingerprint,
		Location: loc.URI, TemplateID: tmpl.ID, Connector: tmpl.CAConnector, CASettings: tmpl.CASettings,
		Status: store.OrderInitiated, BatchID: req.BatchID, CreatedBy: req.CreatedBy, CreatedAt: now, UpdatedAt: now,
		DeployKind: rot.Deploy.Kind, KeyWhere: rot.Key.Where,
	}
	// The key inventory (P4) lists the keys rotations made: a kept key
	// (a renewal, key pair "existing") made none.
	if !rot.Key.Existing {
		o.KeyAlgorithm = rot.Key.Algorithm
	}
	if k := rot.Key.PKCS11; k != nil {
		o.KeyRef = k.Label
		if k.ID != "" {
			o.KeyRef += "#" + k.ID
		}
	}
	job := store.Job{ID: jobID, Account: account, BotID: bot.ID, Kind: protocol.JobRotate, Payload: sealed, OrderID: orderID,
		Status: store.JobPending, CreatedAt: now}
	if err := s.st.CreateOrder(ctx, o, &job); err != nil {
		return store.Order{}, fmt.Errorf("ordering: create order: %w", err)
	}
	if s.wake != nil {
		s.wake(bot.ID)
	}
	s.log.Info("order created", "account", account, "order", orderID, "action", action, "bot", bot.ID,
		"location", loc.URI, "connector", tmpl.CAConnector)
	got, err := s.st.Order(ctx, account, orderID)
	if err != nil {
		return o, nil
	}
	return got, nil
}

// chooseLocation picks the location to write: the one named, or the only
// deployable one.
func chooseLocation(c store.Certificate, uri, botID string) (store.Location, error) {
	if uri != "" {
		var holders []store.Location
		for _, l := range c.Locations {
			if l.URI == uri && (botID == "" || l.BotID == botID) {
				holders = append(holders, l)
			}
		}
		if len(holders) > 1 {
			return store.Location{}, invalid("bot_id", "%d bots hold %s: name the bot", len(holders), uri)
		}
		for _, l := range holders {
			if !l.Present {
				return store.Location{}, invalid("location", "the certificate is no longer found at %s", uri)
			}
			if l.BotID == "" {
				return store.Location{}, invalid("location", "no bot holds %s (imported): rotate it where a bot runs", uri)
			}
			if deployKind(l) == "" {
				if l.Source == protocol.SchemeTLS || l.Source == protocol.SchemeCertStore {
					return store.Location{}, invalid("location", "%s is a %s location: %s", uri, l.Source, undeployable)
				}
				return store.Location{}, invalid("location", "%s (%s, %s) cannot be written by a bot", uri, l.Source, l.Format)
			}
			return l, nil
		}
		if botID != "" {
			return store.Location{}, invalid("location", "bot %s holds no location %s of the certificate", botID, uri)
		}
		return store.Location{}, invalid("location", "the certificate has no location %s", uri)
	}
	var ok []store.Location
	for _, l := range c.Locations {
		if l.Present && l.BotID != "" && deployKind(l) != "" && (botID == "" || l.BotID == botID) {
			ok = append(ok, l)
		}
	}
	switch len(ok) {
	case 1:
		return ok[0], nil
	case 0:
		return store.Location{}, invalid("location", "the certificate has no location a bot can write: %s", undeployable)
	}
	return store.Location{}, invalid("location", "the certificate has %d deployable locations: name one", len(ok))
}

// template is the provisioning template asked for, or the default.
func (s *Service) template(ctx context.Context, account, id string) (store.ProvisioningTemplate, error) {
	if id != "" {
		t, err := s.st.ProvisioningTemplate(ctx, account, id)
		if errors.Is(err, store.ErrNotFound) {
			return t, invalid("template_id", "no such provisioning template in this account")
		}
		if err != nil {
			return t, fmt.Errorf("ordering: provisioning template: %w", err)
		}
		if !t.Enabled {
			return t, invalid("template_id", "provisioning template %q is disabled", t.Name)
		}
		return t, nil
	}
	all, err := s.st.ProvisioningTemplates(ctx, account)
	if err != nil {
		return store.ProvisioningTemplate{}, fmt.Errorf("ordering: provisioning templates: %w", err)
	}
	for _, t := range all {
		if t.Default && t.Enabled {
			return t, nil
		}
	}
	return store.ProvisioningTemplate{}, invalid("template_id", "no provisioning template: create one and mark it default (P2)")
}

// csrSpec is the CSR template as the bot gets it; with no CSR template the
// old certificate's subject and SANs (CopyFromCertificate).
func (s *Service) csrSpec(ctx context.Context, tmpl store.ProvisioningTemplate) (protocol.CSRSpec, error) {
	if tmpl.CSRTemplateID == "" {
		return protocol.CSRSpec{CopyFromCertificate: true}, nil
	}
	t, err := s.st.CSRTemplate(ctx, tmpl.Account, tmpl.CSRTemplateID)
	if err != nil {
		return protocol.CSRSpec{}, fmt.Errorf("ordering: csr template of %q: %w", tmpl.Name, err)
	}
	return specFromTemplate(t), nil
}

func specFromTemplate(t store.CSRTemplate) protocol.CSRSpec {
	one := func(v string) []string {
		if v == "" {
			return nil
		}
		return []string{v}
	}
	sp := protocol.CSRSpec{
		CommonName: t.Subject.CommonName, Organization: one(t.Subject.Organization),
		OrganizationalUnit: one(t.Subject.OrganizationalUnit), Locality: one(t.Subject.Locality),
		Province: one(t.Subject.Province), Country: one(t.Subject.Country), Email: one(t.Subject.Email),
		DNSNames: slices.Clone(t.SANs.DNS), IPAddresses: slices.Clone(t.SANs.IP),
		EmailAddresses: slices.Clone(t.SANs.Email), URIs: slices.Clone(t.SANs.URI),
		SignatureAlgorithm: t.SignatureAlgorithm, CopyFromCertificate: t.CopyFromCertificate,
	}
	for _, a := range t.Subject.Custom {
		sp.ExtraNames = append(sp.ExtraNames, protocol.CSRAttribute{OID: a.OID, Value: a.Value})
	}
	return sp
}

// keygenName is the keygen algorithm name of a key type and size, "" when
// keygen makes no such key.
func keygenName(alg string, bits int, curve string) string {
	switch strings.ToUpper(alg) {
	case "RSA":
		switch bits {
		case 2048, 3072, 4096:
			return fmt.Sprintf("rsa-%d", bits)
		}
	case "ECDSA", "EC":
		switch {
		case curve == "P-256" || (curve == "" && bits == 256):
			return "ecdsa-p256"
		case curve == "P-384" || (curve == "" && bits == 384):
			return "ecdsa-p384"
		}
	case "ED25519":
		return "ed25519"
	}
	return ""
}

// keySpec says where and which key is made.
func (s *Service) keySpec(ctx context.Context, tmpl store.ProvisioningTemplate, action string, cert store.Certificate,
	loc store.Location, orderID string) (protocol.KeySpec, error) {
	k := protocol.KeySpec{Where: protocol.KeyWhereSoftware}
	alg := ""
	if tmpl.CSRTemplateID != "" {
		t, err := s.st.CSRTemplate(ctx, tmpl.Account, tmpl.CSRTemplateID)
		if err != nil {
			return k, fmt.Errorf("ordering: csr template of %q: %w", tmpl.Name, err)
		}
		alg = keygenName(t.KeyAlgorithm, t.KeySize, t.Curve)
	}
	if alg == "" {
		alg = keygenName(cert.KeyAlgorithm, cert.KeyBits, "")
	}
	if alg == "" {
		alg = "ecdsa-p256"
	}
	k.Algorithm = alg
	k.Existing = action == protocol.ActionRenew || (action == protocol.ActionRotate && tmpl.KeyPair == store.KeyPairExisting)
	if tmpl.KeyProfileID == "" {
		return k, nil
	}
	p, err := s.st.KeyProfile(ctx, tmpl.Account, tmpl.KeyProfileID)
	if err != nil {
		return k, fmt.Errorf("ordering: key profile of %q: %w", tmpl.Name, err)
	}
	if !p.Enabled {
		return k, invalid("template_id", "key profile %q of template %q is disabled", p.Name, tmpl.Name)
	}
	switch p.Kind {
	case store.KeyProfileSoftware, "":
	case store.KeyProfilePKCS12:
		k.Where = protocol.KeyWherePKCS12
	case store.KeyProfilePKCS11:
		k.Where = protocol.KeyWherePKCS11
		pin, err := s.openPIN(p)
		if err != nil {
			return k, fmt.Errorf("ordering: %w", err)
		}
		label := "emsign-" + orderID
		if l, err := protocol.ParseLocation(loc.URI); err == nil && l.Scheme == protocol.SchemePKCS11 {
			if v := pkcs11Attr(l.Path, "object"); v != "" {
				label = v
			}
		}
		k.PKCS11 = &protocol.PKCS11Key{Module: p.ModulePath, TokenLabel: p.TokenLabel, TokenSerial: p.TokenSerial,
			Slot: p.Slot, PIN: protocol.NewTransitSecret(pin), Label: label}
	default:
		return k, fmt.Errorf("ordering: key profile %s: unknown kind %q", p.ID, p.Kind)
	}
	return k, nil
}

// pkcs11Attr reads one attribute of an RFC 7512 path ("token=x;object=y").
func pkcs11Attr(path, name string) string {
	for part := range strings.SplitSeq(path, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok && k == name {
			if u, err := url.PathUnescape(v); err == nil {
				return u
			}
			return v
		}
	}
	return ""
}

// filePath turns a location's URI path into the path the bot writes
// ("/C:/x" is C:/x on a Windows bot, which takes forward slashes).
func filePath(p string) string {
	if len(p) >= 3 && p[0] == '/' && p[2] == ':' {
		return p[1:]
	}
	return p
}

// deploySpec says where the certificate goes and how it is checked.
func (s *Service) deploySpec(bot store.Bot, cert store.Certificate, l store.Location,
	tmpl store.ProvisioningTemplate, opt DeployOptions) (protocol.DeploySpec, error) {
	loc, err := protocol.ParseLocation(l.URI)
	if err != nil {
		return protocol.DeploySpec{}, invalid("location", "%v", err)
	}
	d := protocol.DeploySpec{Kind: deployKind(l), Reload: slices.Clone(opt.Reload)}
	for i, a := range opt.Reload {
		if strings.TrimSpace(a) == "" || strings.ContainsAny(a, "\x00\n") {
			return d, invalid(fmt.Sprintf("deploy.reload[%d]", i), "empty or with a newline")
		}
	}
	keystorePassword := protocol.NewTransitSecret(opt.KeystorePassword.Reveal())
	switch d.Kind {
	case protocol.DeployPEM, protocol.DeploySSH:
		d.CertPath, d.KeyPath, d.ChainPath = filePath(loc.Path), opt.KeyPath, opt.ChainPath
		d.ChainInCert = opt.ChainPath == ""
		if opt.ChainInCert != nil {
			d.ChainInCert = *opt.ChainInCert
		}
		if d.Kind == protocol.DeploySSH {
			d.CertPath = loc.Path
		}
	case protocol.DeployJKS, protocol.DeployPKCS12:
		d.KeystorePath, d.Alias = filePath(loc.Path), opt.Alias
		if d.Alias == "" && d.Kind == protocol.DeployJKS {
			d.Alias = loc.Entry
		}
		if keystorePassword.IsZero() && tmpl.KeystorePassword == store.KeystorePasswordManual {
			pw, err := s.openKeystorePassword(tmpl)
			if err != nil {
				return d, fmt.Errorf("ordering: %w", err)
			}
			keystorePassword = protocol.NewTransitSecret(pw)
		}
		d.KeystorePassword = keystorePassword
	case protocol.DeployPKCS11:
		d.Object = l.URI
	case protocol.DeployLDAP:
		d.Object = strings.TrimPrefix(loc.Path, "/") + "#" + loc.Query
	case protocol.DeployACM:
		// aws://acm/REGION/ARN: the ARN holds slashes of its own.
		_, arn, _ := strings.Cut(strings.TrimPrefix(loc.Path, "/"), "/")
		d.Object = arn
	case protocol.DeployF5:
		profile, _, _ := strings.Cut(l.Attributes["profiles"], ",")
		if profile == "" {
			return d, invalid("location", "no client-ssl profile uses %s: nothing to switch", l.URI)
		}
		d.Object = loc.Path + "#" + profile
	case protocol.DeployCloudflare:
		zone, id, _ := strings.Cut(strings.Trim(loc.Path, "/"), "/")
		d.Object = zone + "#" + id
	}
	if !keystorePassword.IsZero() && d.KeystorePassword.IsZero() {
		return d, invalid("deploy.keystore_password", "only for jks and pkcs12 locations")
	}
	if opt.Alias != "" && d.Kind != protocol.DeployJKS && d.Kind != protocol.DeployPKCS12 {
		return d, invalid("deploy.alias", "only for jks and pkcs12 locations")
	}
	switch d.Kind {
	case protocol.DeployPKCS11:
		// The token is reached through the bot's own pkcs11 target (its
		// module and PIN).
		if d.Target, err = s.tokenTargetFor(bot, l.URI); err != nil {
			return d, err
		}
	case protocol.DeploySSH, protocol.DeployLDAP, protocol.DeployACM, protocol.DeployF5, protocol.DeployCloudflare:
		if d.Target, err = s.targetFor(bot, loc); err != nil {
			return d, err
		}
	}
	if opt.Verify != nil {
		for i, v := range opt.Verify {
			ep, err := parseVerify(v)
			if err != nil {
				return d, invalid(fmt.Sprintf("deploy.verify[%d]", i), "%v", err)
			}
			d.Verify = append(d.Verify, ep)
		}
		return d, nil
	}
	for _, o := range cert.Locations {
		if !o.Present || o.BotID != bot.ID || o.Source != protocol.SchemeTLS {
			continue
		}
		tl, err := protocol.ParseLocation(o.URI)
		if err != nil || tl.Host == "" {
			continue
		}
		q, _ := url.ParseQuery(tl.Query)
		d.Verify = append(d.Verify, protocol.VerifyEndpoint{Address: tl.Host, ServerName: q.Get(protocol.ParamSNI)})
	}
	return d, nil
}

// parseVerify reads host:port[#sni].
func parseVerify(v string) (protocol.VerifyEndpoint, error) {
	addr, sni, _ := strings.Cut(strings.TrimSpace(v), "#")
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return protocol.VerifyEndpoint{}, fmt.Errorf("%q: want host:port[#server-name]", v)
	}
	return protocol.VerifyEndpoint{Address: addr, ServerName: sni}, nil
}

// targetFor picks the bot's discovery target that reaches a network
// location, whose URI (with its credentials) the bot deploys through. The
// rule: among the bot's targets of the location's scheme (ldap and ldaps
// alike), the first whose host equals the location's (case-insensitive,
// ignoring a user@ and, when only one side names a port, the port); else,
// when the bot has exactly one target of that scheme, that one (aws and
// cloudflare targets name an account, not the host a location shows).
func (s *Service) targetFor(bot store.Bot, loc protocol.Location) (string, error) {
	raw, err := s.openTargets(bot)
	if err != nil {
		return "", fmt.Errorf("ordering: %w", err)
	}
	sameScheme := func(a, b string) bool {
		ldap := func(x string) bool { return x == protocol.SchemeLDAP || x == protocol.SchemeLDAPS }
		return a == b || (ldap(a) && ldap(b))
	}
	var candidates []string
	for _, r := range raw {
		t, err := protocol.ParseTargetUnresolved(r)
		if err != nil || !sameScheme(t.Scheme, loc.Scheme) {
			continue
		}
		if hostMatch(t.Host, loc.Host) {
			return r, nil
		}
		candidates = append(candidates, r)
	}
	if len(candidates) == 1 {
		return candidates[0], nil
	}
	return "", invalid("location", "bot %s has %d %s targets and none for host %q: add the target it was found through",
		bot.Name, len(candidates), loc.Scheme, loc.Host)
}

// tokenTargetFor is the bot's pkcs11 target of the token a location is on
// (RFC 7512 token attribute), or its only pkcs11 target.
func (s *Service) tokenTargetFor(bot store.Bot, location string) (string, error) {
	raw, err := s.openTargets(bot)
	if err != nil {
		return "", fmt.Errorf("ordering: %w", err)
	}
	uriPath := func(u string) string {
		p, _, _ := strings.Cut(strings.TrimPrefix(u, protocol.SchemePKCS11+":"), "?")
		return p
	}
	want := pkcs11Attr(uriPath(location), "token")
	var candidates []string
	for _, r := range raw {
		if !strings.HasPrefix(r, protocol.SchemePKCS11+":") {
			continue
		}
		if want != "" && pkcs11Attr(uriPath(r), "token") == want {
			return r, nil
		}
		candidates = append(candidates, r)
	}
	if len(candidates) == 1 {
		return candidates[0], nil
	}
	return "", invalid("location", "bot %s has %d pkcs11 targets and none for token %q: add the target it was found through",
		bot.Name, len(candidates), want)
}

func hostMatch(a, b string) bool {
	norm := func(h string) (string, string) {
		if _, after, ok := strings.Cut(h, "@"); ok {
			h = after
		}
		if host, port, err := net.SplitHostPort(h); err == nil {
			return strings.ToLower(host), port
		}
		return strings.ToLower(strings.Trim(h, "[]")), ""
	}
	ha, pa := norm(a)
	hb, pb := norm(b)
	return ha != "" && ha == hb && (pa == "" || pb == "" || pa == pb)
}

// JobRotation opens a rotate job's payload for delivery to its bot.
func (s *Service) JobRotation(_ context.Context, j store.Job) (*protocol.Rotation, error) {
	if j.Kind != protocol.JobRotate {
		return nil, fmt.Errorf("ordering: job %s is a %s job, not a rotation", j.ID, j.Kind)
	}
	if len(j.Payload) == 0 {
		return nil, fmt.Errorf("ordering: job %s has no rotation payload", j.ID)
	}
	p, err := s.sealer.Open(j.Payload, rotationAAD(j.Account, j.ID))
	if err != nil {
		return nil, fmt.Errorf("ordering: job %s payload does not open (sealing key changed?): %w", j.ID, err)
	}
	var r protocol.Rotation
	if err := json.Unmarshal(p, &r); err != nil {
		return nil, fmt.Errorf("ordering: job %s payload: %w", j.ID, err)
	}
	return &r, nil
}

// FailJob fails a rotate job's order that cannot be delivered (its
// payload does not open), with why.
func (s *Service) FailJob(ctx context.Context, j store.Job, why error) error {
	if j.OrderID == "" {
		return nil
	}
	msg := "the job could not be delivered: " + why.Error()
	_, err := s.st.TransitionOrder(ctx, j.Account, j.OrderID, []string{store.OrderInitiated, store.OrderOrdering, store.OrderIssued},
		store.OrderPatch{Status: ptr(store.OrderFailed), Error: &msg},
		store.OrderEvent{Time: s.now().UTC(), Status: store.OrderFailed, Message: msg})
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("ordering: fail order %s: %w", j.OrderID, err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// RotationFinished records a rotate job's result: the bot's steps as
// events, and the order's end (deployed, then rotated or re-keyed;
// rolled_back; failed). A result posted twice changes nothing the second
// time. Batch items are not touched here: the batch runner follows its
// orders' statuses.
func (s *Service) RotationFinished(ctx context.Context, bot store.Bot, j store.Job, res protocol.JobResult) error {
	orderID := j.OrderID
	if orderID == "" && res.Rotation != nil {
		orderID = res.Rotation.OrderID
	}
	var o store.Order
	var err error
	if orderID != "" {
		o, err = s.st.OrderForBot(ctx, bot.ID, orderID)
	} else {
		o, err = s.orderForJob(ctx, bot, j.ID)
	}
	if err != nil {
		return fmt.Errorf("ordering: order of job %s: %w", j.ID, err)
	}
	if j.ID != "" && o.JobID != j.ID {
		return fmt.Errorf("ordering: order %s is not job %s's: %w", o.ID, j.ID, store.ErrNotFound)
	}
	if final(o.Status) {
		return nil // already recorded: a result posted twice
	}
	now := s.now().UTC()
	if rr := res.Rotation; rr != nil && len(rr.Steps) > 0 {
		evs := make([]store.OrderEvent, 0, len(rr.Steps))
		for _, st := range rr.Steps {
			t := st.Time.UTC()
			if t.IsZero() {
				t = now
			}
			evs = append(evs, store.OrderEvent{Time: t, Status: o.Status, Step: st.Name, OK: st.OK, Message: clip(st.Message)})
		}
		if err := s.st.AddOrderEvents(ctx, o.Account, o.ID, evs); err != nil {
			return fmt.Errorf("ordering: order %s steps: %w", o.ID, err)
		}
	}
	outcome := ""
	if res.Rotation != nil {
		outcome = res.Rotation.Outcome
	}
	switch outcome {
	case protocol.OutcomeDeployed, protocol.OutcomeAlreadyDeployed:
		msg := "deployed and verified by bot " + bot.Name
		if outcome == protocol.OutcomeAlreadyDeployed {
			msg = "already deployed (a repeated job): bot " + bot.Name
		}
		if fp := res.Rotation.Fingerprint; fp != "" && o.NewFingerprint != "" && !strings.EqualFold(fp, o.NewFingerprint) {
			msg += fmt.Sprintf("; the bot reports fingerprint %s, issued %s", fp, o.NewFingerprint)
		}
		o2, err := s.transition(ctx, o, []string{store.OrderIssued}, store.OrderDeployed, &outcome, nil, msg)
		if err != nil {
			return err
		}
		end := ""
		switch o.Action {
		case protocol.ActionRotate:
			end = store.OrderRotated
		case protocol.ActionRekey:
			end = store.OrderRekeyed
		}
		if end != "" && o2.Status == store.OrderDeployed {
			if _, err := s.transition(ctx, o2, []string{store.OrderDeployed}, end, nil, nil, o.Action+" complete"); err != nil {
				return err
			}
		}
		s.afterDeploy(ctx, bot, o2)
	case protocol.OutcomeRolledBack:
		e := resultError(res, "the deployment failed and was rolled back")
		if _, err := s.transition(ctx, o, nonFinal, store.OrderRolledBack, &outcome, &e, e); err != nil {
			return err
		}
	default:
		e := resultError(res, "the rotation failed")
		if outcome == protocol.OutcomeRollbackFailed {
			e = "rollback failed, check the location: " + e
		}
		if _, err := s.transition(ctx, o, nonFinal, store.OrderFailed, &outcome, &e, e); err != nil {
			return err
		}
	}
	s.log.Info("rotation finished", "account", o.Account, "order", o.ID, "bot", bot.ID, "outcome", outcome)
	if s.finished != nil {
		s.finished()
	}
	return nil
}

// scheduleMover is the store's way to move auto-renew schedules from a
// replaced certificate to its successor (*store.SQL has it).
type scheduleMover interface {
	MoveSchedules(ctx context.Context, account, from, to string) (int, error)
}

// afterDeploy keeps what followed the old certificate on the new one:
// its auto-renew schedules (P6) move to it, or auto-renewal would stop
// after one renewal; and once the bot has no rotation left under way, a
// scan of the bot (a recheck) records the new certificate at its
// locations and the old one as gone, so that the inventory does not wait
// for the next scheduled scan. One scan per bot when its orders are done,
// not one per order, and for a mass replacement once its last wave is.
// Neither failing undoes the rotation: they are logged.
func (s *Service) afterDeploy(ctx context.Context, bot store.Bot, o store.Order) {
	if m, ok := s.st.(scheduleMover); ok && o.Fingerprint != "" && o.NewFingerprint != "" {
		if _, err := m.MoveSchedules(ctx, o.Account, o.Fingerprint, o.NewFingerprint); err != nil {
			s.log.Error("moving the replaced certificate's schedules", "order", o.ID, "err", err)
		}
	}
	if o.BatchID != "" {
		// A mass replacement's later waves will bring this bot more
		// orders: one recheck when its last wave is done, not one a wave
		// (the 10,000-location benchmark re-ingested 200,000 findings).
		if b, err := s.st.Batch(ctx, o.Account, o.BatchID); err == nil && b.Counts.Pending > 0 &&
			(b.Status == store.BatchRunning || b.Status == store.BatchPlanned) {
			return
		}
	}
	for _, st := range []string{store.OrderInitiated, store.OrderOrdering, store.OrderIssued} {
		open, err := s.st.Orders(ctx, o.Account, store.OrderFilter{BotID: bot.ID, Status: st, Limit: 1})
		if err != nil {
			s.log.Error("looking for the bot's open orders", "bot", bot.ID, "err", err)
			return
		}
		if len(open) > 0 {
			return
		}
	}
	scanID, jobID := s.newID(), s.newID()
	if err := s.st.QueueScan(ctx, o.Account, bot.ID, scanID, jobID); err != nil {
		s.log.Error("queueing the recheck scan after a rotation", "bot", bot.ID, "err", err)
		return
	}
	s.log.Info("recheck scan queued after rotations", "account", o.Account, "bot", bot.ID, "scan", scanID)
	if s.wake != nil {
		s.wake(bot.ID)
	}
}

// nonFinal are the statuses a rotation's result may end.
var nonFinal = []string{store.OrderInitiated, store.OrderOrdering, store.OrderIssued}

// final says whether a bot's result was already recorded.
func final(status string) bool { return !slices.Contains(nonFinal, status) }

func resultError(res protocol.JobResult, def string) string {
	if res.Error != "" {
		return clip(res.Error)
	}
	return def
}

// clip bounds text a bot sent before it is stored.
func clip(s string) string {
	const max = 2000
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// transition moves o to status when it is in from; a conflict (someone
// else moved it: a result posted twice) is no error and changes nothing.
func (s *Service) transition(ctx context.Context, o store.Order, from []string, status string, outcome, errText *string,
	msg string) (store.Order, error) {
	p := store.OrderPatch{Status: &status, Outcome: outcome, Error: errText}
	got, err := s.st.TransitionOrder(ctx, o.Account, o.ID, from, p, store.OrderEvent{Time: s.now().UTC(), Status: status,
		OK: status != store.OrderFailed && status != store.OrderRolledBack, Message: msg})
	if errors.Is(err, store.ErrConflict) {
		return o, nil
	}
	if err != nil {
		return o, fmt.Errorf("ordering: order %s to %s: %w", o.ID, status, err)
	}
	return got, nil
}

// orderForJob finds the open order of a job whose result carried no
// rotation part (the bot failed before it read the order).
func (s *Service) orderForJob(ctx context.Context, bot store.Bot, jobID string) (store.Order, error) {
	for _, st := range nonFinal {
		for off := 0; ; off += 500 {
			os, err := s.st.Orders(ctx, bot.Account, store.OrderFilter{BotID: bot.ID, Status: st, Limit: 500, Offset: off})
			if err != nil {
				return store.Order{}, err
			}
			for _, o := range os {
				if o.JobID == jobID {
					return o, nil
				}
			}
			if len(os) < 500 {
				break
			}
		}
	}
	return store.Order{}, fmt.Errorf("no open order for job %s: %w", jobID, store.ErrNotFound)
}

// describeIssue is the event line of an issued certificate.
func describeIssue(connector, settings string, c *x509.Certificate) string {
	where := connector
	if settings != "" {
		where += " (" + settings + ")"
	}
	return fmt.Sprintf("issued by %s: serial %s, expires %s", where, c.SerialNumber.Text(16), c.NotAfter.UTC().Format(time.RFC3339))
}

// HasOpenOrder says whether the job is the rotate job of an order of the
// bot still waiting for its result.
func (s *Service) HasOpenOrder(ctx context.Context, bot store.Bot, jobID string) bool {
	_, err := s.orderForJob(ctx, bot, jobID)
	return err == nil
}
