package ops

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

// CSR templates (P1), key profiles (P3) and provisioning templates (P2);
// reads need ViewTemplates, changes ManageTemplates. For each kind K
// (CSRTemplate, KeyProfile, ProvisioningTemplate):
//   Ks(ctx, a) ([]KView, error); K(ctx, a, id) (KView, error)
//   CreateK(ctx, a, KSpec) (KView, error); UpdateK(ctx, a, id, KPatch) (KView, error)
//   CloneK(ctx, a, id, name) (KView, error); SetKEnabled(ctx, a, id, enabled) (KView, error)
//   DeleteK(ctx, a, id) error
// plus SetKeyProfilePIN. Provisioning templates' Create and Update take
// the CA connector names the control plane has (DefaultCAConnectors until
// connectors are configured).
//
// Secrets (an HSM PIN, a manual keystore password) are sealed bound to the
// account, not to the object, so that a clone copies them without ever
// opening them; they are never returned (views say pin_set,
// keystore_password_set) nor audited.

// Limits of templates.
const (
	MaxTemplateName  = 200
	MaxTemplateText  = 200  // origin, CA settings reference, token label...
	MaxSubjectValue  = 256  // a subject attribute's value
	MaxSANs          = 100  // per kind of SAN
	MaxCustomSubject = 20   // custom subject attributes
	MaxSecret        = 256  // a PIN or a keystore password
	MaxPath          = 1024 // module path, keystore path pattern
)

// Choices of CSR templates, in the order the dashboard lists them.
var (
	signatureAlgorithms = []string{"SHA256WithRSA", "SHA384WithRSA", "ECDSAWithSHA256", "ECDSAWithSHA384", "PureEd25519"}
	keyAlgorithms       = []string{"RSA", "ECDSA", "Ed25519"}
	rsaSizes            = []int{2048, 3072, 4096}
	curves              = []string{"P-256", "P-384"}
)

// SignatureAlgorithms lists the signature algorithms a CSR template may
// name.
func SignatureAlgorithms() []string { return slices.Clone(signatureAlgorithms) }

// KeyAlgorithms lists the key algorithms a CSR template may name.
func KeyAlgorithms() []string { return slices.Clone(keyAlgorithms) }

// DefaultCAConnectors are the CA connector names a provisioning template
// may name until connectors are configured.
func DefaultCAConnectors() []string { return []string{"local", "acme", "digicert"} }

func pinAAD(account string) []byte { return []byte("emsign-cp/key-profile-pin/" + account) }
func keystoreAAD(account string) []byte {
	return []byte("emsign-cp/keystore-password/" + account)
}

// status is how views and audit entries name Enabled.
func status(enabled bool) string {
	if enabled {
		return "enabled"
	}
	return "disabled"
}

// ---- shared checks

// oneLine trims v and checks it is at most max characters of one line;
// required refuses "".
func oneLine(field, v string, max int, required bool) (string, error) {
	v = strings.TrimSpace(v)
	if required && v == "" {
		return "", invalid(field, "required")
	}
	if len([]rune(v)) > max {
		return "", invalid(field, "at most %d characters", max)
	}
	if strings.ContainsFunc(v, unicode.IsControl) {
		return "", invalid(field, "one line of text")
	}
	return v, nil
}

// secret checks a PIN or password as given (not trimmed: spaces may be
// part of it); the message never repeats it.
func secret(field, v string) error {
	if v == "" {
		return invalid(field, "required")
	}
	if len(v) > MaxSecret {
		return invalid(field, "at most %d bytes", MaxSecret)
	}
	if strings.ContainsFunc(v, unicode.IsControl) {
		return invalid(field, "no control characters")
	}
	return nil
}

// notFoundAs turns the store's ErrNotFound for a referenced object into a
// bad field.
func notFoundAs(err error, field, msg string) error {
	if errors.Is(err, store.ErrNotFound) {
		return invalid(field, "%s", msg)
	}
	return err
}

// ---- CSR templates

// CSRTemplateSpec is a new CSR template. CopyFromCertificate is true when
// not given (the rotation's default).
type CSRTemplateSpec struct {
	Name                string           `json:"name"`
	SignatureAlgorithm  string           `json:"signature_algorithm"`
	KeyAlgorithm        string           `json:"key_algorithm"`
	KeySize             int              `json:"key_size"`
	Curve               string           `json:"curve"`
	Subject             store.CSRSubject `json:"subject"`
	SANs                store.CSRSANs    `json:"sans"`
	CopyFromCertificate *bool            `json:"copy_from_certificate"`
}

// CSRTemplatePatch changes what is set.
type CSRTemplatePatch struct {
	Name                *string           `json:"name"`
	SignatureAlgorithm  *string           `json:"signature_algorithm"`
	KeyAlgorithm        *string           `json:"key_algorithm"`
	KeySize             *int              `json:"key_size"`
	Curve               *string           `json:"curve"`
	Subject             *store.CSRSubject `json:"subject"`
	SANs                *store.CSRSANs    `json:"sans"`
	CopyFromCertificate *bool             `json:"copy_from_certificate"`
}

// CSRTemplateView is a CSR template as shown.
type CSRTemplateView struct {
	ID                  string           `json:"id"`
	Name                string           `json:"name"`
	SignatureAlgorithm  string           `json:"signature_algorithm"`
	KeyAlgorithm        string           `json:"key_algorithm"`
	KeySize             int              `json:"key_size,omitempty"`
	Curve               string           `json:"curve,omitempty"`
	Subject             store.CSRSubject `json:"subject"`
	SANs                store.CSRSANs    `json:"sans"`
	CopyFromCertificate bool             `json:"copy_from_certificate"`
	Status              string           `json:"status"`
	CreatedAt           time.Time        `json:"created_at"`
	UpdatedAt           time.Time        `json:"updated_at"`
}

func csrView(t store.CSRTemplate) CSRTemplateView {
	return CSRTemplateView{ID: t.ID, Name: t.Name, SignatureAlgorithm: t.SignatureAlgorithm, KeyAlgorithm: t.KeyAlgorithm,
		KeySize: t.KeySize, Curve: t.Curve, Subject: t.Subject, SANs: t.SANs, CopyFromCertificate: t.CopyFromCertificate,
		Status: status(t.Enabled), CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}
}

var oidSyntax = regexp.MustCompile(`^[0-2](\.(0|[1-9][0-9]{0,17}))+$`)

// validOID accepts a dotted OID whose second arc fits its first (at most
// 39 under 0 and 1).
func validOID(s string) bool {
	if !oidSyntax.MatchString(s) {
		return false
	}
	parts := strings.Split(s, ".")
	if parts[0] != "2" {
		n, err := strconv.Atoi(parts[1])
		return err == nil && n <= 39
	}
	return true
}

var countryCode = regexp.MustCompile(`^[A-Z]{2}$`)

// dnsName accepts a host name, or a wildcard one (*.example.com).
var dnsName = regexp.MustCompile(`^(\*\.)?([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

func emailField(field, v string) error {
	a, err := mail.ParseAddress(v)
	if err != nil || a.Address != v || a.Name != "" {
		return invalid(field, "want an email address such as pki@example.com")
	}
	return nil
}

// checkCSRTemplate validates and normalizes t (names trimmed, country
// upper case).
func checkCSRTemplate(t *store.CSRTemplate) error {
	var err error
	if t.Name, err = oneLine("name", t.Name, MaxTemplateName, true); err != nil {
		return err
	}
	if !slices.Contains(keyAlgorithms, t.KeyAlgorithm) {
		return invalid("key_algorithm", "want one of %s", strings.Join(keyAlgorithms, ", "))
	}
	if !slices.Contains(signatureAlgorithms, t.SignatureAlgorithm) {
		return invalid("signature_algorithm", "want one of %s", strings.Join(signatureAlgorithms, ", "))
	}
	fits := map[string]func(string) bool{
		"RSA":     func(s string) bool { return strings.HasSuffix(s, "WithRSA") },
		"ECDSA":   func(s string) bool { return strings.HasPrefix(s, "ECDSAWith") },
		"Ed25519": func(s string) bool { return s == "PureEd25519" },
	}
	if !fits[t.KeyAlgorithm](t.SignatureAlgorithm) {
		return invalid("signature_algorithm", "an %s key cannot sign with %s", t.KeyAlgorithm, t.SignatureAlgorithm)
	}
	switch t.KeyAlgorithm {
	case "RSA":
		if !slices.Contains(rsaSizes, t.KeySize) {
			return invalid("key_size", "want 2048, 3072 or 4096 for an RSA key")
		}
		if t.Curve != "" {
			return invalid("curve", "only for an ECDSA key")
		}
	case "ECDSA":
		if !slices.Contains(curves, t.Curve) {
			return invalid("curve", "want P-256 or P-384 for an ECDSA key")
		}
		if t.KeySize != 0 {
			return invalid("key_size", "only for an RSA key (an ECDSA key's size is its curve's)")
		}
	case "Ed25519":
		if t.KeySize != 0 {
			return invalid("key_size", "only for an RSA key")
		}
		if t.Curve != "" {
			return invalid("curve", "only for an ECDSA key")
		}
	}
	if err := checkSubject(&t.Subject); err != nil {
		return err
	}
	return checkSANs(&t.SANs)
}

func checkSubject(s *store.CSRSubject) error {
	var err error
	for _, f := range []struct {
		field string
		v     *string
		max   int
	}{
		{"subject.cn", &s.CommonName, 64}, {"subject.o", &s.Organization, 64}, {"subject.ou", &s.OrganizationalUnit, 64},
		{"subject.l", &s.Locality, 128}, {"subject.st", &s.Province, 128}, {"subject.c", &s.Country, 2},
		{"subject.email", &s.Email, 128},
	} {
		if *f.v, err = oneLine(f.field, *f.v, f.max, false); err != nil {
			return err
		}
	}
	if s.Country != "" {
		s.Country = strings.ToUpper(s.Country)
		if !countryCode.MatchString(s.Country) {
			return invalid("subject.c", "want a two-letter country code (ISO 3166), such as IN")
		}
	}
	if s.Email != "" {
		if err := emailField("subject.email", s.Email); err != nil {
			return err
		}
	}
	if len(s.Custom) > MaxCustomSubject {
		return invalid("subject.custom", "at most %d", MaxCustomSubject)
	}
	for i := range s.Custom {
		c := &s.Custom[i]
		field := fmt.Sprintf("subject.custom[%d]", i)
		c.OID = strings.TrimSpace(c.OID)
		if !validOID(c.OID) {
			return invalid(field+".oid", "want a dotted object identifier, such as 2.5.4.5")
		}
		if c.Value, err = oneLine(field+".value", c.Value, MaxSubjectValue, true); err != nil {
			return err
		}
	}
	return nil
}

func checkSANs(s *store.CSRSANs) error {
	for _, l := range []struct {
		field string
		v     []string
		check func(field, v string) error
	}{
		{"sans.dns", s.DNS, func(field, v string) error {
			if len(v) > 253 || !dnsName.MatchString(v) {
				return invalid(field, "want a host name, such as www.example.com or *.example.com")
			}
			return nil
		}},
		{"sans.ip", s.IP, func(field, v string) error {
			if _, err := netip.ParseAddr(v); err != nil {
				return invalid(field, "want an IP address")
			}
			return nil
		}},
		{"sans.email", s.Email, emailField},
		{"sans.uri", s.URI, func(field, v string) error {
			u, err := url.Parse(v)
			if err != nil || u.Scheme == "" || (u.Host == "" && u.Opaque == "") || strings.ContainsFunc(v, unicode.IsSpace) {
				return invalid(field, "want an absolute URI, such as spiffe://example.org/web")
			}
			return nil
		}},
	} {
		if len(l.v) > MaxSANs {
			return invalid(l.field, "at most %d", MaxSANs)
		}
		for i := range l.v {
			l.v[i] = strings.TrimSpace(l.v[i])
			if err := l.check(fmt.Sprintf("%s[%d]", l.field, i), l.v[i]); err != nil {
				return err
			}
		}
	}
	// Netip's form, so that one address is not listed twice as
	// ::ffff:... and 1.2.3.4 variants.
	for i, v := range s.IP {
		s.IP[i] = netip.MustParseAddr(v).String()
	}
	return nil
}

func csrDetail(t store.CSRTemplate) string {
	key := t.KeyAlgorithm
	switch {
	case t.KeySize != 0:
		key += " " + strconv.Itoa(t.KeySize)
	case t.Curve != "":
		key += " " + t.Curve
	}
	return fmt.Sprintf("%q: %s, %s", t.Name, key, t.SignatureAlgorithm)
}

// CSRTemplates lists the account's CSR templates.
func (o *Ops) CSRTemplates(ctx context.Context, a Actor) ([]CSRTemplateView, error) {
	if err := o.allow(ctx, a, rbac.ViewTemplates, "csr_template.view", ""); err != nil {
		return nil, err
	}
	ts, err := o.st.CSRTemplates(ctx, a.Account)
	if err != nil {
		return nil, err
	}
	out := make([]CSRTemplateView, len(ts))
	for i, t := range ts {
		out[i] = csrView(t)
	}
	return out, nil
}

// CSRTemplate reads one.
func (o *Ops) CSRTemplate(ctx context.Context, a Actor, id string) (CSRTemplateView, error) {
	if err := o.allow(ctx, a, rbac.ViewTemplates, "csr_template.view", id); err != nil {
		return CSRTemplateView{}, err
	}
	t, err := o.st.CSRTemplate(ctx, a.Account, id)
	if err != nil {
		return CSRTemplateView{}, err
	}
	return csrView(t), nil
}

// CreateCSRTemplate adds an enabled CSR template.
func (o *Ops) CreateCSRTemplate(ctx context.Context, a Actor, s CSRTemplateSpec) (CSRTemplateView, error) {
	if err := o.allow(ctx, a, rbac.ManageTemplates, "csr_template.create", ""); err != nil {
		return CSRTemplateView{}, err
	}
	t := store.CSRTemplate{ID: admin.NewID(), Account: a.Account, Name: s.Name, SignatureAlgorithm: s.SignatureAlgorithm,
		KeyAlgorithm: s.KeyAlgorithm, KeySize: s.KeySize, Curve: s.Curve, Subject: s.Subject, SANs: s.SANs,
		CopyFromCertificate: s.CopyFromCertificate == nil || *s.CopyFromCertificate, Enabled: true,
		CreatedAt: o.now().UTC()}
	if err := checkCSRTemplate(&t); err != nil {
		return CSRTemplateView{}, err
	}
	if err := o.st.CreateCSRTemplate(ctx, t); err != nil {
		return CSRTemplateView{}, nameConflict(err)
	}
	o.audit(ctx, a, "csr_template.create", t.ID, csrDetail(t))
	return o.CSRTemplate(ctx, a, t.ID)
}

// nameConflict turns the store's taken name into a bad name.
func nameConflict(err error) error {
	if errors.Is(err, store.ErrConflict) && strings.Contains(err.Error(), "already exists") {
		return invalid("name", "already in use in this account")
	}
	return err
}

// UpdateCSRTemplate changes what p sets.
func (o *Ops) UpdateCSRTemplate(ctx context.Context, a Actor, id string, p CSRTemplatePatch) (CSRTemplateView, error) {
	if err := o.allow(ctx, a, rbac.ManageTemplates, "csr_template.update", id); err != nil {
		return CSRTemplateView{}, err
	}
	t, err := o.st.CSRTemplate(ctx, a.Account, id)
	if err != nil {
		return CSRTemplateView{}, err
	}
	var changed []string
	set := func(name string, dst *string, v *string) {
		if v != nil {
			*dst = *v
			changed = append(changed, name)
		}
	}
	set("name", &t.Name, p.Name)
	set("signature_algorithm", &t.SignatureAlgorithm, p.SignatureAlgorithm)
	set("key_algorithm", &t.KeyAlgorithm, p.KeyAlgorithm)
	set("curve", &t.Curve, p.Curve)
	if p.KeySize != nil {
		t.KeySize = *p.KeySize
		changed = append(changed, "key_size")
	}
	if p.Subject != nil {
		t.Subject = *p.Subject
		changed = append(changed, "subject")
	}
	if p.SANs != nil {
		t.SANs = *p.SANs
		changed = append(changed, "sans")
	}
	if p.CopyFromCertificate != nil {
		t.CopyFromCertificate = *p.CopyFromCertificate
		changed = append(changed, "copy_from_certificate")
	}
	if len(changed) == 0 {
		return CSRTemplateView{}, invalid("body", "nothing to change")
	}
	if err := checkCSRTemplate(&t); err != nil {
		return CSRTemplateView{}, err
	}
	t.UpdatedAt = o.now().UTC()
	if err := o.st.UpdateCSRTemplate(ctx, t); err != nil {
		return CSRTemplateView{}, nameConflict(err)
	}
	o.audit(ctx, a, "csr_template.update", id, csrDetail(t)+"; changed "+strings.Join(changed, ", "))
	return o.CSRTemplate(ctx, a, id)
}

// CloneCSRTemplate copies a CSR template's settings under a new name.
func (o *Ops) CloneCSRTemplate(ctx context.Context, a Actor, id, name string) (CSRTemplateView, error) {
	if err := o.allow(ctx, a, rbac.ManageTemplates, "csr_template.clone", id); err != nil {
		return CSRTemplateView{}, err
	}
	t, err := o.st.CSRTemplate(ctx, a.Account, id)
	if err != nil {
		return CSRTemplateView{}, err
	}
	if name, err = oneLine("name", name, MaxTemplateName, true); err != nil {
		return CSRTemplateView{}, err
	}
	src := t.Name
	t.ID, t.Name, t.Enabled, t.CreatedAt, t.UpdatedAt = admin.NewID(), name, true, o.now().UTC(), time.Time{}
	if err := o.st.CreateCSRTemplate(ctx, t); err != nil {
		return CSRTemplateView{}, nameConflict(err)
	}
	o.audit(ctx, a, "csr_template.clone", t.ID, fmt.Sprintf("%s; from %q (%s)", csrDetail(t), src, id))
	return o.CSRTemplate(ctx, a, t.ID)
}

// SetCSRTemplateEnabled enables or disables a CSR template.
func (o *Ops) SetCSRTemplateEnabled(ctx context.Context, a Actor, id string, enabled bool) (CSRTemplateView, error) {
	action := "csr_template." + strings.TrimSuffix(status(enabled), "d")
	if err := o.allow(ctx, a, rbac.ManageTemplates, action, id); err != nil {
		return CSRTemplateView{}, err
	}
	t, err := o.st.CSRTemplate(ctx, a.Account, id)
	if err != nil {
		return CSRTemplateView{}, err
	}
	t.Enabled, t.UpdatedAt = enabled, o.now().UTC()
	if err := o.st.UpdateCSRTemplate(ctx, t); err != nil {
		return CSRTemplateView{}, err
	}
	o.audit(ctx, a, action, id, csrDetail(t))
	return csrView(t), nil
}

// DeleteCSRTemplate deletes a CSR template no provisioning template uses
// (store.ErrConflict naming them).
func (o *Ops) DeleteCSRTemplate(ctx context.Context, a Actor, id string) error {
	if err := o.allow(ctx, a, rbac.ManageTemplates, "csr_template.delete", id); err != nil {
		return err
	}
	t, err := o.st.CSRTemplate(ctx, a.Account, id)
	if err != nil {
		return err
	}
	if err := o.st.DeleteCSRTemplate(ctx, a.Account, id); err != nil {
		return err
	}
	o.audit(ctx, a, "csr_template.delete", id, csrDetail(t))
	return nil
}

// ---- key profiles

// KeyProfileSpec is a new key profile. PIN (pkcs11) is sealed at once and
// never shown again.
type KeyProfileSpec struct {
	Name              string `json:"name"`
	Kind              string `json:"kind"`
	ModulePath        string `json:"module_path"`
	TokenLabel        string `json:"token_label"`
	TokenSerial       string `json:"token_serial"`
	Slot              *int   `json:"slot"`
	PIN               string `json:"pin"`
	PathPattern       string `json:"path_pattern"`
	PasswordMinLength int    `json:"password_min_length"`
}

// KeyProfilePatch changes what is set. Changing the kind drops the
// settings (and PIN) of the former kind that the patch does not give.
type KeyProfilePatch struct {
	Name              *string `json:"name"`
	Kind              *string `json:"kind"`
	ModulePath        *string `json:"module_path"`
	TokenLabel        *string `json:"token_label"`
	TokenSerial       *string `json:"token_serial"`
	Slot              *int    `json:"slot"`
	PIN               *string `json:"pin"`
	PathPattern       *string `json:"path_pattern"`
	PasswordMinLength *int    `json:"password_min_length"`
}

// KeyProfileView is a key profile as shown: its PIN only as PINSet.
type KeyProfileView struct {
	ID                string    `json:"id"`
	Name              string    `json:"name"`
	Kind              string    `json:"kind"`
	ModulePath        string    `json:"module_path,omitempty"`
	TokenLabel        string    `json:"token_label,omitempty"`
	TokenSerial       string    `json:"token_serial,omitempty"`
	Slot              *int      `json:"slot,omitempty"`
	PINSet            bool      `json:"pin_set"`
	PathPattern       string    `json:"path_pattern,omitempty"`
	PasswordMinLength int       `json:"password_min_length,omitempty"`
	Status            string    `json:"status"`
	CreatedAt         time.Time `json:"created_at"`
	UpdatedAt         time.Time `json:"updated_at"`
}

func keyProfileView(p store.KeyProfile) KeyProfileView {
	return KeyProfileView{ID: p.ID, Name: p.Name, Kind: p.Kind, ModulePath: p.ModulePath, TokenLabel: p.TokenLabel,
		TokenSerial: p.TokenSerial, Slot: p.Slot, PINSet: len(p.PINSealed) > 0, PathPattern: p.PathPattern,
		PasswordMinLength: p.PasswordMinLength, Status: status(p.Enabled), CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
}

var keyProfileKinds = []string{store.KeyProfileSoftware, store.KeyProfilePKCS12, store.KeyProfilePKCS11}

// Keystore password lengths of a PKCS#12 key profile.
const (
	DefaultPasswordMinLength = 16
	minPasswordLength        = 8
	maxPasswordLength        = 128
)

// absPath accepts an absolute path of either the bot's systems: the
// control plane may run on another OS than the bot.
var absPath = regexp.MustCompile(`^(/|[A-Za-z]:[\\/]|\\\\)`)

// pathPlaceholder finds {name} in a keystore path pattern.
var pathPlaceholder = regexp.MustCompile(`\{[^{}]*\}`)

// pathPlaceholders are what a keystore path pattern may hold: the new
// certificate's common name, serial number and issue date (YYYYMMDD).
var pathPlaceholders = []string{"{cn}", "{serial}", "{date}"}

func checkPath(field, v string) (string, error) {
	v, err := oneLine(field, v, MaxPath, false)
	if err != nil || v == "" {
		return v, err
	}
	if !absPath.MatchString(v) {
		return "", invalid(field, "want an absolute path")
	}
	for _, part := range strings.FieldsFunc(v, func(r rune) bool { return r == '/' || r == '\\' }) {
		if part == ".." {
			return "", invalid(field, "no .. in the path")
		}
	}
	return v, nil
}

// checkKeyProfile validates and normalizes p; pin is the new PIN ("" for
// none given).
func checkKeyProfile(p *store.KeyProfile, pin string) error {
	var err error
	if p.Name, err = oneLine("name", p.Name, MaxTemplateName, true); err != nil {
		return err
	}
	if !slices.Contains(keyProfileKinds, p.Kind) {
		return invalid("kind", "want one of %s", strings.Join(keyProfileKinds, ", "))
	}
	if p.ModulePath, err = checkPath("module_path", p.ModulePath); err != nil {
		return err
	}
	if p.TokenLabel, err = oneLine("token_label", p.TokenLabel, 32, false); err != nil { // CK_TOKEN_INFO's label: 32 bytes
		return err
	}
	if p.TokenSerial, err = oneLine("token_serial", p.TokenSerial, 16, false); err != nil {
		return err
	}
	if p.PathPattern, err = checkPath("path_pattern", p.PathPattern); err != nil {
		return err
	}
	if pin != "" {
		if err := secret("pin", pin); err != nil {
			return err
		}
	}
	pkcs11 := p.Kind == store.KeyProfilePKCS11
	pkcs12 := p.Kind == store.KeyProfilePKCS12
	for _, f := range []struct {
		field string
		set   bool
		ok    bool
		kind  string
	}{
		{"module_path", p.ModulePath != "", pkcs11, "pkcs11"},
		{"token_label", p.TokenLabel != "", pkcs11, "pkcs11"},
		{"token_serial", p.TokenSerial != "", pkcs11, "pkcs11"},
		{"slot", p.Slot != nil, pkcs11, "pkcs11"},
		{"pin", pin != "" || len(p.PINSealed) > 0, pkcs11, "pkcs11"},
		{"path_pattern", p.PathPattern != "", pkcs12, "pkcs12"},
		{"password_min_length", p.PasswordMinLength != 0, pkcs12, "pkcs12"},
	} {
		if f.set && !f.ok {
			return invalid(f.field, "only for a %s key profile", f.kind)
		}
	}
	switch p.Kind {
	case store.KeyProfilePKCS11:
		if p.ModulePath == "" {
			return invalid("module_path", "required: the PKCS#11 module's path, such as /usr/lib/softhsm/libsofthsm2.so")
		}
		if p.TokenLabel == "" && p.TokenSerial == "" {
			return invalid("token_label", "give the token's label or its serial")
		}
		if p.Slot != nil && *p.Slot < 0 {
			return invalid("slot", "want 0 or more")
		}
		if pin == "" && len(p.PINSealed) == 0 {
			return invalid("pin", "required: the token's user PIN")
		}
	case store.KeyProfilePKCS12:
		for _, ph := range pathPlaceholder.FindAllString(p.PathPattern, -1) {
			if !slices.Contains(pathPlaceholders, ph) {
				return invalid("path_pattern", "unknown placeholder %s: want %s", ph, strings.Join(pathPlaceholders, ", "))
			}
		}
		if p.PasswordMinLength == 0 {
			p.PasswordMinLength = DefaultPasswordMinLength
		}
		if p.PasswordMinLength < minPasswordLength || p.PasswordMinLength > maxPasswordLength {
			return invalid("password_min_length", "want %d to %d", minPasswordLength, maxPasswordLength)
		}
	}
	return nil
}

func keyProfileDetail(p store.KeyProfile) string {
	d := fmt.Sprintf("%q: %s", p.Name, p.Kind)
	if p.Kind == store.KeyProfilePKCS11 {
		d += ", module " + p.ModulePath
		if len(p.PINSealed) > 0 {
			d += ", PIN set"
		}
	}
	return d
}

func (o *Ops) sealPIN(account, pin string) ([]byte, error) {
	return o.sealer.Seal([]byte(pin), pinAAD(account))
}

// OpenKeyProfilePIN returns a key profile's PIN in clear: for the bot's
// job only, never for a person. "" when it has none.
func (o *Ops) OpenKeyProfilePIN(p store.KeyProfile) (string, error) {
	if len(p.PINSealed) == 0 {
		return "", nil
	}
	b, err := o.sealer.Open(p.PINSealed, pinAAD(p.Account))
	if err != nil {
		return "", fmt.Errorf("key profile %s PIN: %w", p.ID, err)
	}
	return string(b), nil
}

// KeyProfiles lists the account's key profiles.
func (o *Ops) KeyProfiles(ctx context.Context, a Actor) ([]KeyProfileView, error) {
	if err := o.allow(ctx, a, rbac.ViewTemplates, "key_profile.view", ""); err != nil {
		return nil, err
	}
	ps, err := o.st.KeyProfiles(ctx, a.Account)
	if err != nil {
		return nil, err
	}
	out := make([]KeyProfileView, len(ps))
	for i, p := range ps {
		out[i] = keyProfileView(p)
	}
	return out, nil
}

// KeyProfile reads one.
func (o *Ops) KeyProfile(ctx context.Context, a Actor, id string) (KeyProfileView, error) {
	if err := o.allow(ctx, a, rbac.ViewTemplates, "key_profile.view", id); err != nil {
		return KeyProfileView{}, err
	}
	p, err := o.st.KeyProfile(ctx, a.Account, id)
	if err != nil {
		return KeyProfileView{}, err
	}
	return keyProfileView(p), nil
}

// CreateKeyProfile adds an enabled key profile.
func (o *Ops) CreateKeyProfile(ctx context.Context, a Actor, s KeyProfileSpec) (KeyProfileView, error) {
	if err := o.allow(ctx, a, rbac.ManageTemplates, "key_profile.create", ""); err != nil {
		return KeyProfileView{}, err
	}
	p := store.KeyProfile{ID: admin.NewID(), Account: a.Account, Name: s.Name, Kind: s.Kind, ModulePath: s.ModulePath,
		TokenLabel: s.TokenLabel, TokenSerial: s.TokenSerial, Slot: s.Slot, PathPattern: s.PathPattern,
		PasswordMinLength: s.PasswordMinLength, Enabled: true, CreatedAt: o.now().UTC()}
	if err := checkKeyProfile(&p, s.PIN); err != nil {
		return KeyProfileView{}, err
	}
	if s.PIN != "" {
		sealed, err := o.sealPIN(a.Account, s.PIN)
		if err != nil {
			return KeyProfileView{}, err
		}
		p.PINSealed = sealed
	}
	if err := o.st.CreateKeyProfile(ctx, p); err != nil {
		return KeyProfileView{}, nameConflict(err)
	}
	o.audit(ctx, a, "key_profile.create", p.ID, keyProfileDetail(p))
	return keyProfileView(p), nil
}

// UpdateKeyProfile changes what p sets.
func (o *Ops) UpdateKeyProfile(ctx context.Context, a Actor, id string, patch KeyProfilePatch) (KeyProfileView, error) {
	if err := o.allow(ctx, a, rbac.ManageTemplates, "key_profile.update", id); err != nil {
		return KeyProfileView{}, err
	}
	p, err := o.st.KeyProfile(ctx, a.Account, id)
	if err != nil {
		return KeyProfileView{}, err
	}
	var changed []string
	if patch.Kind != nil && *patch.Kind != p.Kind {
		// The former kind's settings mean nothing to the new one.
		p = store.KeyProfile{ID: p.ID, Account: p.Account, Name: p.Name, Kind: *patch.Kind, Enabled: p.Enabled,
			CreatedAt: p.CreatedAt}
		changed = append(changed, "kind")
	}
	set := func(name string, dst *string, v *string) {
		if v != nil {
			*dst = *v
			changed = append(changed, name)
		}
	}
	set("name", &p.Name, patch.Name)
	set("module_path", &p.ModulePath, patch.ModulePath)
	set("token_label", &p.TokenLabel, patch.TokenLabel)
	set("token_serial", &p.TokenSerial, patch.TokenSerial)
	set("path_pattern", &p.PathPattern, patch.PathPattern)
	if patch.Slot != nil {
		p.Slot = patch.Slot
		changed = append(changed, "slot")
	}
	if patch.PasswordMinLength != nil {
		p.PasswordMinLength = *patch.PasswordMinLength
		changed = append(changed, "password_min_length")
	}
	pin := ""
	if patch.PIN != nil {
		if pin = *patch.PIN; pin == "" {
			return KeyProfileView{}, invalid("pin", "required")
		}
		changed = append(changed, "pin")
	}
	if len(changed) == 0 {
		return KeyProfileView{}, invalid("body", "nothing to change")
	}
	if err := checkKeyProfile(&p, pin); err != nil {
		return KeyProfileView{}, err
	}
	if pin != "" {
		if p.PINSealed, err = o.sealPIN(a.Account, pin); err != nil {
			return KeyProfileView{}, err
		}
	}
	p.UpdatedAt = o.now().UTC()
	if err := o.st.UpdateKeyProfile(ctx, p); err != nil {
		return KeyProfileView{}, nameConflict(err)
	}
	o.audit(ctx, a, "key_profile.update", id, keyProfileDetail(p)+"; changed "+strings.Join(changed, ", "))
	return keyProfileView(p), nil
}

// SetKeyProfilePIN replaces a PKCS#11 key profile's PIN ("edit the HSM
// password", P3).
func (o *Ops) SetKeyProfilePIN(ctx context.Context, a Actor, id, pin string) (KeyProfileView, error) {
	if err := o.allow(ctx, a, rbac.ManageTemplates, "key_profile.pin", id); err != nil {
		return KeyProfileView{}, err
	}
	p, err := o.st.KeyProfile(ctx, a.Account, id)
	if err != nil {
		return KeyProfileView{}, err
	}
	if p.Kind != store.KeyProfilePKCS11 {
		return KeyProfileView{}, invalid("pin", "only for a pkcs11 key profile")
	}
	if err := secret("pin", pin); err != nil {
		return KeyProfileView{}, err
	}
	if p.PINSealed, err = o.sealPIN(a.Account, pin); err != nil {
		return KeyProfileView{}, err
	}
	p.UpdatedAt = o.now().UTC()
	if err := o.st.UpdateKeyProfile(ctx, p); err != nil {
		return KeyProfileView{}, err
	}
	o.audit(ctx, a, "key_profile.pin", id, fmt.Sprintf("%q: PIN changed", p.Name))
	return keyProfileView(p), nil
}

// CloneKeyProfile copies a key profile's settings, its sealed PIN
// included, under a new name.
func (o *Ops) CloneKeyProfile(ctx context.Context, a Actor, id, name string) (KeyProfileView, error) {
	if err := o.allow(ctx, a, rbac.ManageTemplates, "key_profile.clone", id); err != nil {
		return KeyProfileView{}, err
	}
	p, err := o.st.KeyProfile(ctx, a.Account, id)
	if err != nil {
		return KeyProfileView{}, err
	}
	if name, err = oneLine("name", name, MaxTemplateName, true); err != nil {
		return KeyProfileView{}, err
	}
	src := p.Name
	p.ID, p.Name, p.Enabled, p.CreatedAt, p.UpdatedAt = admin.NewID(), name, true, o.now().UTC(), time.Time{}
	if err := o.st.CreateKeyProfile(ctx, p); err != nil {
		return KeyProfileView{}, nameConflict(err)
	}
	o.audit(ctx, a, "key_profile.clone", p.ID, fmt.Sprintf("%s; from %q (%s)", keyProfileDetail(p), src, id))
	return o.KeyProfile(ctx, a, p.ID)
}

// SetKeyProfileEnabled enables or disables a key profile.
func (o *Ops) SetKeyProfileEnabled(ctx context.Context, a Actor, id string, enabled bool) (KeyProfileView, error) {
	action := "key_profile." + strings.TrimSuffix(status(enabled), "d")
	if err := o.allow(ctx, a, rbac.ManageTemplates, action, id); err != nil {
		return KeyProfileView{}, err
	}
	p, err := o.st.KeyProfile(ctx, a.Account, id)
	if err != nil {
		return KeyProfileView{}, err
	}
	p.Enabled, p.UpdatedAt = enabled, o.now().UTC()
	if err := o.st.UpdateKeyProfile(ctx, p); err != nil {
		return KeyProfileView{}, err
	}
	o.audit(ctx, a, action, id, keyProfileDetail(p))
	return keyProfileView(p), nil
}

// DeleteKeyProfile deletes a key profile no provisioning template uses.
func (o *Ops) DeleteKeyProfile(ctx context.Context, a Actor, id string) error {
	if err := o.allow(ctx, a, rbac.ManageTemplates, "key_profile.delete", id); err != nil {
		return err
	}
	p, err := o.st.KeyProfile(ctx, a.Account, id)
	if err != nil {
		return err
	}
	if err := o.st.DeleteKeyProfile(ctx, a.Account, id); err != nil {
		return err
	}
	o.audit(ctx, a, "key_profile.delete", id, keyProfileDetail(p))
	return nil
}

// ---- provisioning templates

// ProvisioningTemplateSpec is a new provisioning template. Default, when
// not given, is true for the account's first template only (the product
// makes a new template the default; stealing the flag from an existing
// one silently would change what rotations use). KeyPair defaults to new,
// KeystorePasswordType to random; KeystorePassword (manual) is sealed at
// once and never shown again.
type ProvisioningTemplateSpec struct {
	Name                 string `json:"name"`
	Origin               string `json:"origin"`
	Default              *bool  `json:"default"`
	KeyPair              string `json:"key_pair"`
	KeystorePasswordType string `json:"keystore_password_type"`
	KeystorePassword     string `json:"keystore_password"`
	CSRTemplateID        string `json:"csr_template_id"`
	KeyProfileID         string `json:"key_profile_id"`
	CAConnector          string `json:"ca_connector"`
	CASettings           string `json:"ca_settings"`
}

// ProvisioningTemplatePatch changes what is set.
type ProvisioningTemplatePatch struct {
	Name                 *string `json:"name"`
	Origin               *string `json:"origin"`
	Default              *bool   `json:"default"`
	KeyPair              *string `json:"key_pair"`
	KeystorePasswordType *string `json:"keystore_password_type"`
	KeystorePassword     *string `json:"keystore_password"`
	CSRTemplateID        *string `json:"csr_template_id"`
	KeyProfileID         *string `json:"key_profile_id"`
	CAConnector          *string `json:"ca_connector"`
	CASettings           *string `json:"ca_settings"`
}

// ProvisioningTemplateView is a provisioning template as shown: a manual
// keystore password only as KeystorePasswordSet.
type ProvisioningTemplateView struct {
	ID                   string    `json:"id"`
	Name                 string    `json:"name"`
	Origin               string    `json:"origin"`
	Default              bool      `json:"default"`
	KeyPair              string    `json:"key_pair"`
	KeystorePasswordType string    `json:"keystore_password_type"`
	KeystorePasswordSet  bool      `json:"keystore_password_set"`
	CSRTemplateID        string    `json:"csr_template_id"`
	KeyProfileID         string    `json:"key_profile_id"`
	CAConnector          string    `json:"ca_connector"`
	CASettings           string    `json:"ca_settings"`
	Status               string    `json:"status"`
	CreatedAt            time.Time `json:"created_at"`
	UpdatedAt            time.Time `json:"updated_at"`
}

func provisioningView(t store.ProvisioningTemplate) ProvisioningTemplateView {
	return ProvisioningTemplateView{ID: t.ID, Name: t.Name, Origin: t.Origin, Default: t.Default, KeyPair: t.KeyPair,
		KeystorePasswordType: t.KeystorePassword, KeystorePasswordSet: len(t.KeystorePasswordSealed) > 0,
		CSRTemplateID: t.CSRTemplateID, KeyProfileID: t.KeyProfileID, CAConnector: t.CAConnector, CASettings: t.CASettings,
		Status: status(t.Enabled), CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}
}

// OpenKeystorePassword returns a provisioning template's manual keystore
// password in clear: for the bot's job only, never for a person. "" when
// it has none (random).
func (o *Ops) OpenKeystorePassword(t store.ProvisioningTemplate) (string, error) {
	if len(t.KeystorePasswordSealed) == 0 {
		return "", nil
	}
	b, err := o.sealer.Open(t.KeystorePasswordSealed, keystoreAAD(t.Account))
	if err != nil {
		return "", fmt.Errorf("provisioning template %s keystore password: %w", t.ID, err)
	}
	return string(b), nil
}

// checkProvisioning validates and normalizes t. password is the new manual
// password ("" none given); refsChanged says whether the CSR template and
// key profile were (re)chosen: only then must they be enabled.
func (o *Ops) checkProvisioning(ctx context.Context, t *store.ProvisioningTemplate, password string, connectors []string,
	csrChanged, profileChanged bool) error {
	var err error
	if t.Name, err = oneLine("name", t.Name, MaxTemplateName, true); err != nil {
		return err
	}
	if t.Origin, err = oneLine("origin", t.Origin, MaxTemplateText, false); err != nil {
		return err
	}
	if t.KeyPair == "" {
		t.KeyPair = store.KeyPairNew
	}
	if t.KeyPair != store.KeyPairNew && t.KeyPair != store.KeyPairExisting {
		return invalid("key_pair", "want new or existing")
	}
	if t.KeystorePassword == "" {
		t.KeystorePassword = store.KeystorePasswordRandom
	}
	if t.KeystorePassword != store.KeystorePasswordRandom && t.KeystorePassword != store.KeystorePasswordManual {
		return invalid("keystore_password_type", "want random or manual")
	}
	if t.CSRTemplateID = strings.TrimSpace(t.CSRTemplateID); t.CSRTemplateID != "" {
		c, err := o.st.CSRTemplate(ctx, t.Account, t.CSRTemplateID)
		if err != nil {
			return notFoundAs(err, "csr_template_id", "no such CSR template in this account")
		}
		if csrChanged && !c.Enabled {
			return invalid("csr_template_id", "CSR template %q is disabled", c.Name)
		}
	}
	minLength := minPasswordLength
	if t.KeyProfileID = strings.TrimSpace(t.KeyProfileID); t.KeyProfileID != "" {
		p, err := o.st.KeyProfile(ctx, t.Account, t.KeyProfileID)
		if err != nil {
			return notFoundAs(err, "key_profile_id", "no such key profile in this account")
		}
		if profileChanged && !p.Enabled {
			return invalid("key_profile_id", "key profile %q is disabled", p.Name)
		}
		if p.Kind == store.KeyProfilePKCS12 {
			minLength = p.PasswordMinLength
		}
	}
	switch t.KeystorePassword {
	case store.KeystorePasswordManual:
		if password == "" && len(t.KeystorePasswordSealed) == 0 {
			return invalid("keystore_password", "required with keystore_password_type manual")
		}
		if password == "" && profileChanged {
			// The kept password must suit the new key profile too.
			kept, err := o.OpenKeystorePassword(*t)
			if err != nil {
				return err
			}
			if len([]rune(kept)) < minLength {
				return invalid("keystore_password", "the key profile wants at least %d characters: give a new one", minLength)
			}
		}
		if password != "" {
			if err := secret("keystore_password", password); err != nil {
				return err
			}
			if len([]rune(password)) < minLength {
				return invalid("keystore_password", "at least %d characters", minLength)
			}
		}
	case store.KeystorePasswordRandom:
		if password != "" {
			return invalid("keystore_password", "only with keystore_password_type manual")
		}
		t.KeystorePasswordSealed = nil
	}
	t.CAConnector = strings.TrimSpace(t.CAConnector)
	if t.CAConnector == "" {
		return invalid("ca_connector", "required: one of %s", strings.Join(connectors, ", "))
	}
	if !slices.Contains(connectors, t.CAConnector) {
		return invalid("ca_connector", "unknown connector %q: want one of %s", t.CAConnector, strings.Join(connectors, ", "))
	}
	if t.CASettings, err = oneLine("ca_settings", t.CASettings, MaxTemplateText, false); err != nil {
		return err
	}
	if t.Default && !t.Enabled {
		return invalid("default", "a disabled template cannot be the default")
	}
	return nil
}

func provisioningDetail(t store.ProvisioningTemplate) string {
	d := fmt.Sprintf("%q: key pair %s, keystore password %s, CA connector %s", t.Name, t.KeyPair, t.KeystorePassword,
		t.CAConnector)
	if t.Default {
		d += ", default"
	}
	return d
}

// ProvisioningTemplates lists the account's provisioning templates.
func (o *Ops) ProvisioningTemplates(ctx context.Context, a Actor) ([]ProvisioningTemplateView, error) {
	if err := o.allow(ctx, a, rbac.ViewTemplates, "provisioning_template.view", ""); err != nil {
		return nil, err
	}
	ts, err := o.st.ProvisioningTemplates(ctx, a.Account)
	if err != nil {
		return nil, err
	}
	out := make([]ProvisioningTemplateView, len(ts))
	for i, t := range ts {
		out[i] = provisioningView(t)
	}
	return out, nil
}

// ProvisioningTemplate reads one.
func (o *Ops) ProvisioningTemplate(ctx context.Context, a Actor, id string) (ProvisioningTemplateView, error) {
	if err := o.allow(ctx, a, rbac.ViewTemplates, "provisioning_template.view", id); err != nil {
		return ProvisioningTemplateView{}, err
	}
	t, err := o.st.ProvisioningTemplate(ctx, a.Account, id)
	if err != nil {
		return ProvisioningTemplateView{}, err
	}
	return provisioningView(t), nil
}

func (o *Ops) sealKeystorePassword(t *store.ProvisioningTemplate, password string) error {
	if password == "" {
		return nil
	}
	sealed, err := o.sealer.Seal([]byte(password), keystoreAAD(t.Account))
	if err != nil {
		return err
	}
	t.KeystorePasswordSealed = sealed
	return nil
}

// refError turns the store's ErrNotFound for a CSR template or key profile
// deleted meanwhile into a bad field.
func refError(err error) error {
	switch {
	case !errors.Is(err, store.ErrNotFound):
		return nameConflict(err)
	case strings.Contains(err.Error(), "csr template"):
		return invalid("csr_template_id", "no such CSR template in this account")
	case strings.Contains(err.Error(), "key profile"):
		return invalid("key_profile_id", "no such key profile in this account")
	}
	return err
}

// CreateProvisioningTemplate adds an enabled provisioning template;
// connectors are the CA connector names it may use.
func (o *Ops) CreateProvisioningTemplate(ctx context.Context, a Actor, s ProvisioningTemplateSpec,
	connectors []string) (ProvisioningTemplateView, error) {
	if err := o.allow(ctx, a, rbac.ManageTemplates, "provisioning_template.create", ""); err != nil {
		return ProvisioningTemplateView{}, err
	}
	t := store.ProvisioningTemplate{ID: admin.NewID(), Account: a.Account, Name: s.Name, Origin: s.Origin,
		KeyPair: s.KeyPair, KeystorePassword: s.KeystorePasswordType, CSRTemplateID: s.CSRTemplateID,
		KeyProfileID: s.KeyProfileID, CAConnector: s.CAConnector, CASettings: s.CASettings, Enabled: true,
		CreatedAt: o.now().UTC()}
	if s.Default != nil {
		t.Default = *s.Default
	} else {
		all, err := o.st.ProvisioningTemplates(ctx, a.Account)
		if err != nil {
			return ProvisioningTemplateView{}, err
		}
		t.Default = !slices.ContainsFunc(all, func(x store.ProvisioningTemplate) bool { return x.Default })
	}
	if err := o.checkProvisioning(ctx, &t, s.KeystorePassword, connectors, true, true); err != nil {
		return ProvisioningTemplateView{}, err
	}
	if err := o.sealKeystorePassword(&t, s.KeystorePassword); err != nil {
		return ProvisioningTemplateView{}, err
	}
	if err := o.st.CreateProvisioningTemplate(ctx, t); err != nil {
		return ProvisioningTemplateView{}, refError(err)
	}
	o.audit(ctx, a, "provisioning_template.create", t.ID, provisioningDetail(t))
	return provisioningView(t), nil
}

// UpdateProvisioningTemplate changes what p sets.
func (o *Ops) UpdateProvisioningTemplate(ctx context.Context, a Actor, id string, p ProvisioningTemplatePatch,
	connectors []string) (ProvisioningTemplateView, error) {
	if err := o.allow(ctx, a, rbac.ManageTemplates, "provisioning_template.update", id); err != nil {
		return ProvisioningTemplateView{}, err
	}
	t, err := o.st.ProvisioningTemplate(ctx, a.Account, id)
	if err != nil {
		return ProvisioningTemplateView{}, err
	}
	var changed []string
	set := func(name string, dst *string, v *string) {
		if v != nil {
			*dst = *v
			changed = append(changed, name)
		}
	}
	set("name", &t.Name, p.Name)
	set("origin", &t.Origin, p.Origin)
	set("key_pair", &t.KeyPair, p.KeyPair)
	set("keystore_password_type", &t.KeystorePassword, p.KeystorePasswordType)
	set("csr_template_id", &t.CSRTemplateID, p.CSRTemplateID)
	set("key_profile_id", &t.KeyProfileID, p.KeyProfileID)
	set("ca_connector", &t.CAConnector, p.CAConnector)
	set("ca_settings", &t.CASettings, p.CASettings)
	if p.Default != nil {
		t.Default = *p.Default
		changed = append(changed, "default")
	}
	password := ""
	if p.KeystorePassword != nil {
		if password = *p.KeystorePassword; password == "" {
			return ProvisioningTemplateView{}, invalid("keystore_password", "required")
		}
		changed = append(changed, "keystore_password")
	}
	if len(changed) == 0 {
		return ProvisioningTemplateView{}, invalid("body", "nothing to change")
	}
	if err := o.checkProvisioning(ctx, &t, password, connectors, p.CSRTemplateID != nil, p.KeyProfileID != nil); err != nil {
		return ProvisioningTemplateView{}, err
	}
	if err := o.sealKeystorePassword(&t, password); err != nil {
		return ProvisioningTemplateView{}, err
	}
	t.UpdatedAt = o.now().UTC()
	if err := o.st.UpdateProvisioningTemplate(ctx, t); err != nil {
		return ProvisioningTemplateView{}, refError(err)
	}
	o.audit(ctx, a, "provisioning_template.update", id, provisioningDetail(t)+"; changed "+strings.Join(changed, ", "))
	return provisioningView(t), nil
}

// CloneProvisioningTemplate copies a provisioning template's settings,
// its sealed keystore password included, under a new name; the clone is
// never the default.
func (o *Ops) CloneProvisioningTemplate(ctx context.Context, a Actor, id, name string) (ProvisioningTemplateView, error) {
	if err := o.allow(ctx, a, rbac.ManageTemplates, "provisioning_template.clone", id); err != nil {
		return ProvisioningTemplateView{}, err
	}
	t, err := o.st.ProvisioningTemplate(ctx, a.Account, id)
	if err != nil {
		return ProvisioningTemplateView{}, err
	}
	if name, err = oneLine("name", name, MaxTemplateName, true); err != nil {
		return ProvisioningTemplateView{}, err
	}
	src := t.Name
	t.ID, t.Name, t.Default, t.Enabled, t.CreatedAt, t.UpdatedAt = admin.NewID(), name, false, true, o.now().UTC(), time.Time{}
	if err := o.st.CreateProvisioningTemplate(ctx, t); err != nil {
		return ProvisioningTemplateView{}, refError(err)
	}
	o.audit(ctx, a, "provisioning_template.clone", t.ID, fmt.Sprintf("%s; from %q (%s)", provisioningDetail(t), src, id))
	return o.ProvisioningTemplate(ctx, a, t.ID)
}

// SetProvisioningTemplateEnabled enables or disables a provisioning
// template; a disabled one stops being the default.
func (o *Ops) SetProvisioningTemplateEnabled(ctx context.Context, a Actor, id string, enabled bool) (ProvisioningTemplateView, error) {
	action := "provisioning_template." + strings.TrimSuffix(status(enabled), "d")
	if err := o.allow(ctx, a, rbac.ManageTemplates, action, id); err != nil {
		return ProvisioningTemplateView{}, err
	}
	t, err := o.st.ProvisioningTemplate(ctx, a.Account, id)
	if err != nil {
		return ProvisioningTemplateView{}, err
	}
	detail := ""
	if !enabled && t.Default {
		t.Default = false
		detail = "; no longer the default"
	}
	t.Enabled, t.UpdatedAt = enabled, o.now().UTC()
	if err := o.st.UpdateProvisioningTemplate(ctx, t); err != nil {
		return ProvisioningTemplateView{}, err
	}
	o.audit(ctx, a, action, id, provisioningDetail(t)+detail)
	return provisioningView(t), nil
}

// DeleteProvisioningTemplate deletes a provisioning template.
func (o *Ops) DeleteProvisioningTemplate(ctx context.Context, a Actor, id string) error {
	if err := o.allow(ctx, a, rbac.ManageTemplates, "provisioning_template.delete", id); err != nil {
		return err
	}
	t, err := o.st.ProvisioningTemplate(ctx, a.Account, id)
	if err != nil {
		return err
	}
	if err := o.st.DeleteProvisioningTemplate(ctx, a.Account, id); err != nil {
		return err
	}
	o.audit(ctx, a, "provisioning_template.delete", id, provisioningDetail(t))
	return nil
}
