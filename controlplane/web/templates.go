package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

// The three kinds of templates, by the path part that names them.
const (
	tplCSR          = "csr"
	tplKeyProfile   = "key-profiles"
	tplProvisioning = "provisioning"
)

func (s *Server) templateRoutes() {
	for _, k := range []string{tplCSR, tplKeyProfile, tplProvisioning} {
		base := "/templates/" + k
		s.mux.Handle("GET "+base, s.page(rbac.ViewTemplates, s.tplListPage(k)))
		s.mux.Handle("GET "+base+"/new", s.page(rbac.ManageTemplates, s.tplNewForm(k)))
		s.mux.Handle("POST "+base+"/new", s.page(rbac.ManageTemplates, s.tplSave(k, false)))
		s.mux.Handle("GET "+base+"/{id}", s.page(rbac.ManageTemplates, s.tplEditForm(k)))
		s.mux.Handle("POST "+base+"/{id}", s.page(rbac.ManageTemplates, s.tplSave(k, true)))
		s.mux.Handle("POST "+base+"/{id}/clone", s.page(rbac.ManageTemplates, s.tplAction(k, "clone")))
		s.mux.Handle("POST "+base+"/{id}/enable", s.page(rbac.ManageTemplates, s.tplAction(k, "enable")))
		s.mux.Handle("POST "+base+"/{id}/disable", s.page(rbac.ManageTemplates, s.tplAction(k, "disable")))
		s.mux.Handle("POST "+base+"/{id}/delete", s.page(rbac.ManageTemplates, s.tplAction(k, "delete")))
	}
	s.mux.Handle("POST /templates/key-profiles/{id}/pin", s.page(rbac.ManageTemplates, s.tplSetPIN))
}

// tplNoun is a kind as a sentence names it.
func tplNoun(kind string) string {
	switch kind {
	case tplCSR:
		return "CSR template"
	case tplKeyProfile:
		return "key profile"
	}
	return "provisioning template"
}

// tplSecretField tells the fields never put back into a page.
func tplSecretField(name string) bool { return name == "pin" || name == "keystore_password" }

// tplFieldLabels are the forms' labels, to name a field in a message.
var tplFieldLabels = map[string]string{
	"name": "Name", "signature_algorithm": "Signature algorithm", "key_algorithm": "Key algorithm",
	"key_size": "Key size", "curve": "Curve", "subject.cn": "Common name (CN)", "subject.o": "Organization (O)",
	"subject.ou": "Organizational unit (OU)", "subject.l": "Locality (L)", "subject.st": "State or province (ST)",
	"subject.c": "Country (C)", "subject.email": "Email address (subject)", "subject.custom": "Custom attributes",
	"sans.dns": "DNS names", "sans.ip": "IP addresses", "sans.email": "Email addresses (SAN)", "sans.uri": "URIs",
	"kind": "Kind", "module_path": "PKCS#11 module path", "token_label": "Token label", "token_serial": "Token serial",
	"slot": "Slot", "pin": "PIN", "path_pattern": "Keystore path pattern", "password_min_length": "Minimum password length",
	"origin": "Origin", "default": "Default", "key_pair": "Key pair", "keystore_password_type": "Keystore password",
	"keystore_password": "Manual keystore password", "csr_template_id": "CSR template", "key_profile_id": "Key profile",
	"ca_connector": "CA connector", "ca_settings": "CA settings", "body": "Form",
}

// tplFieldLabel names a field ("sans.dns[2]" is the third line of DNS
// names).
func tplFieldLabel(field string) string {
	base, idx, _ := strings.Cut(field, "[")
	label, ok := tplFieldLabels[base]
	if !ok {
		return field
	}
	if idx != "" {
		if n, err := strconv.Atoi(strings.SplitN(idx, "]", 2)[0]); err == nil {
			label += fmt.Sprintf(", line %d", n+1)
		}
	}
	return label
}

func tplInvalid(err error) (string, bool) {
	var inv *ops.InvalidError
	if !errors.As(err, &inv) {
		return "", false
	}
	return tplFieldLabel(inv.Field) + ": " + inv.Msg, true
}

// tplFail answers an error that is not bad input.
func (s *Server) tplFail(w http.ResponseWriter, r *http.Request, v *Viewer, kind string, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.fail(w, r, v, http.StatusNotFound, "No such "+tplNoun(kind)+" in this account.")
	case errors.Is(err, ops.ErrForbidden):
		s.fail(w, r, v, http.StatusForbidden, fmt.Sprintf("Your role (%s) does not allow this.", v.Role.Label()))
	default:
		s.serverError(w, r, v, err)
	}
}

// tplConflictMessage says why a delete was refused: the store names the
// provisioning templates that use the object.
func tplConflictMessage(kind string, err error) string {
	msg := err.Error()
	if _, users, ok := strings.Cut(msg, " is used by "); ok {
		users = strings.TrimSuffix(users, ": "+store.ErrConflict.Error())
		return "This " + tplNoun(kind) + " cannot be deleted: it is used by " + users + "."
	}
	return "This " + tplNoun(kind) + " cannot be changed so: it conflicts with another."
}

// ---- lists

type tplProvRow struct {
	ops.ProvisioningTemplateView
	CSRTemplateName, KeyProfileName string
}

type tplListData struct {
	Kind  string
	CSRF  string
	Error string
	CSR   []ops.CSRTemplateView
	KP    []ops.KeyProfileView
	Prov  []tplProvRow
}

// tplRowActions is what a row's buttons need.
type tplRowActions struct {
	Kind, CSRF, ID, Name string
	Enabled              bool
}

// Act is a row's buttons.
func (d tplListData) Act(id, name, status string) tplRowActions {
	return tplRowActions{Kind: d.Kind, CSRF: d.CSRF, ID: id, Name: name, Enabled: status == "enabled"}
}

// Path is the row's object's path.
func (a tplRowActions) Path() string { return "/templates/" + a.Kind + "/" + url.PathEscape(a.ID) }

func (s *Server) tplListPage(kind string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, v *Viewer) {
		s.renderTplList(w, r, v, http.StatusOK, kind, "")
	}
}

func (s *Server) renderTplList(w http.ResponseWriter, r *http.Request, v *Viewer, status int, kind, msg string) {
	ctx, a := r.Context(), v.Actor(r)
	d := tplListData{Kind: kind, CSRF: v.CSRF(), Error: msg}
	var err error
	switch kind {
	case tplCSR:
		d.CSR, err = s.ops.CSRTemplates(ctx, a)
		s.tplRenderOr(w, r, v, status, "tpl_csr", "CSR templates", d, err)
	case tplKeyProfile:
		d.KP, err = s.ops.KeyProfiles(ctx, a)
		s.tplRenderOr(w, r, v, status, "tpl_keyprofiles", "Key profiles", d, err)
	default:
		d.Prov, err = s.tplProvRows(ctx, a)
		s.tplRenderOr(w, r, v, status, "tpl_provisioning", "Provisioning templates", d, err)
	}
}

func (s *Server) tplRenderOr(w http.ResponseWriter, r *http.Request, v *Viewer, status int, page, title string, d any, err error) {
	if err != nil {
		s.tplFail(w, r, v, "", err)
		return
	}
	s.render(w, r, v, status, page, title, d)
}

func (s *Server) tplProvRows(ctx context.Context, a ops.Actor) ([]tplProvRow, error) {
	ts, err := s.ops.ProvisioningTemplates(ctx, a)
	if err != nil {
		return nil, err
	}
	csrs, err := s.ops.CSRTemplates(ctx, a)
	if err != nil {
		return nil, err
	}
	kps, err := s.ops.KeyProfiles(ctx, a)
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	for _, c := range csrs {
		names["c"+c.ID] = c.Name
	}
	for _, p := range kps {
		names["k"+p.ID] = p.Name
	}
	rows := make([]tplProvRow, len(ts))
	for i, t := range ts {
		rows[i] = tplProvRow{ProvisioningTemplateView: t, CSRTemplateName: names["c"+t.CSRTemplateID],
			KeyProfileName: names["k"+t.KeyProfileID]}
	}
	return rows, nil
}

// tplAction is a row's button: clone (field name), enable, disable,
// delete.
func (s *Server) tplAction(kind, action string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, v *Viewer) {
		ctx, a, id := r.Context(), v.Actor(r), r.PathValue("id")
		name := r.PostForm.Get("name")
		var err error
		switch kind + "/" + action {
		case tplCSR + "/clone":
			_, err = s.ops.CloneCSRTemplate(ctx, a, id, name)
		case tplCSR + "/enable", tplCSR + "/disable":
			_, err = s.ops.SetCSRTemplateEnabled(ctx, a, id, action == "enable")
		case tplCSR + "/delete":
			err = s.ops.DeleteCSRTemplate(ctx, a, id)
		case tplKeyProfile + "/clone":
			_, err = s.ops.CloneKeyProfile(ctx, a, id, name)
		case tplKeyProfile + "/enable", tplKeyProfile + "/disable":
			_, err = s.ops.SetKeyProfileEnabled(ctx, a, id, action == "enable")
		case tplKeyProfile + "/delete":
			err = s.ops.DeleteKeyProfile(ctx, a, id)
		case tplProvisioning + "/clone":
			_, err = s.ops.CloneProvisioningTemplate(ctx, a, id, name)
		case tplProvisioning + "/enable", tplProvisioning + "/disable":
			_, err = s.ops.SetProvisioningTemplateEnabled(ctx, a, id, action == "enable")
		case tplProvisioning + "/delete":
			err = s.ops.DeleteProvisioningTemplate(ctx, a, id)
		}
		if msg, ok := tplInvalid(err); ok {
			s.renderTplList(w, r, v, http.StatusBadRequest, kind, msg)
			return
		}
		if errors.Is(err, store.ErrConflict) {
			s.renderTplList(w, r, v, http.StatusConflict, kind, tplConflictMessage(kind, err))
			return
		}
		if err != nil {
			s.tplFail(w, r, v, kind, err)
			return
		}
		done := map[string]string{"clone": "cloned", "enable": "enabled", "disable": "disabled", "delete": "deleted"}[action]
		noun := tplNoun(kind)
		s.redirect(w, r, "/templates/"+kind, strings.ToUpper(noun[:1])+noun[1:]+" "+done+".")
	}
}

// ---- forms

// tplFormData is a create or edit form. Vals are its fields' values: the
// object's on edit, the ones posted after bad input; secrets never.
type tplFormData struct {
	Kind  string
	ID    string // "" for a new one
	Error string
	Vals  url.Values

	SignatureAlgorithms, KeyAlgorithms, KeySizes, Curves []string
	KeyProfileKinds                                      []string
	CSRTemplates                                         []ops.CSRTemplateView
	KeyProfiles                                          []ops.KeyProfileView
	Connectors                                           []string
	PINSet, PasswordSet                                  bool
}

// Val is a field's value; "" for secrets.
func (d tplFormData) Val(name string) string {
	if tplSecretField(name) {
		return ""
	}
	return d.Vals.Get(name)
}

// Is tells whether a field has value v (selects, radios).
func (d tplFormData) Is(name, v string) bool { return d.Vals.Get(name) == v }

// Checked tells whether a checkbox is ticked.
func (d tplFormData) Checked(name string) bool { return d.Vals.Get(name) != "" }

func (d tplFormData) Action() string {
	if d.ID == "" {
		return "/templates/" + d.Kind + "/new"
	}
	return "/templates/" + d.Kind + "/" + url.PathEscape(d.ID)
}

func (s *Server) tplNewForm(kind string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, v *Viewer) {
		vals := url.Values{}
		switch kind {
		case tplCSR:
			vals = url.Values{"key_algorithm": {"RSA"}, "key_size": {"2048"}, "signature_algorithm": {"SHA256WithRSA"},
				"copy_from_certificate": {"on"}}
		case tplKeyProfile:
			vals.Set("kind", store.KeyProfileSoftware)
		case tplProvisioning:
			vals = url.Values{"key_pair": {store.KeyPairNew}, "keystore_password_type": {store.KeystorePasswordRandom}}
		}
		s.renderTplForm(w, r, v, http.StatusOK, tplFormData{Kind: kind, Vals: vals})
	}
}

func (s *Server) tplEditForm(kind string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, v *Viewer) {
		ctx, a, id := r.Context(), v.Actor(r), r.PathValue("id")
		d := tplFormData{Kind: kind, ID: id}
		var err error
		switch kind {
		case tplCSR:
			var t ops.CSRTemplateView
			if t, err = s.ops.CSRTemplate(ctx, a, id); err == nil {
				d.Vals = tplCSRVals(t)
			}
		case tplKeyProfile:
			var p ops.KeyProfileView
			if p, err = s.ops.KeyProfile(ctx, a, id); err == nil {
				d.Vals, d.PINSet = tplKeyProfileVals(p), p.PINSet
			}
		default:
			var t ops.ProvisioningTemplateView
			if t, err = s.ops.ProvisioningTemplate(ctx, a, id); err == nil {
				d.Vals, d.PasswordSet = tplProvisioningVals(t), t.KeystorePasswordSet
			}
		}
		if err != nil {
			s.tplFail(w, r, v, kind, err)
			return
		}
		s.renderTplForm(w, r, v, http.StatusOK, d)
	}
}

func (s *Server) renderTplForm(w http.ResponseWriter, r *http.Request, v *Viewer, status int, d tplFormData) {
	verb := "New "
	if d.ID != "" {
		verb = "Edit "
	}
	switch d.Kind {
	case tplCSR:
		d.SignatureAlgorithms, d.KeyAlgorithms = ops.SignatureAlgorithms(), ops.KeyAlgorithms()
		d.KeySizes, d.Curves = []string{"2048", "3072", "4096"}, []string{"P-256", "P-384"}
		s.render(w, r, v, status, "tpl_csr_form", verb+"CSR template", d)
	case tplKeyProfile:
		d.KeyProfileKinds = []string{store.KeyProfileSoftware, store.KeyProfilePKCS12, store.KeyProfilePKCS11}
		s.render(w, r, v, status, "tpl_keyprofile_form", verb+"key profile", d)
	default:
		ctx, a := r.Context(), v.Actor(r)
		var err error
		if d.CSRTemplates, err = s.ops.CSRTemplates(ctx, a); err == nil {
			d.KeyProfiles, err = s.ops.KeyProfiles(ctx, a)
		}
		if err != nil {
			s.tplFail(w, r, v, d.Kind, err)
			return
		}
		d.Connectors = ops.DefaultCAConnectors()
		s.render(w, r, v, status, "tpl_provisioning_form", verb+"provisioning template", d)
	}
}

// tplSave creates (edit false) or updates an object from its form.
func (s *Server) tplSave(kind string, edit bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, v *Viewer) {
		ctx, a, f := r.Context(), v.Actor(r), r.PostForm
		id := ""
		if edit {
			id = r.PathValue("id")
		}
		var err error
		pinSet, passwordSet := false, false
		switch kind {
		case tplCSR:
			err = s.tplSaveCSR(ctx, a, id, f)
		case tplKeyProfile:
			pinSet, err = s.tplSaveKeyProfile(ctx, a, id, f)
		default:
			passwordSet, err = s.tplSaveProvisioning(ctx, a, id, f)
		}
		if msg, ok := tplInvalid(err); ok {
			s.renderTplForm(w, r, v, http.StatusBadRequest, tplFormData{Kind: kind, ID: id, Error: msg, Vals: f,
				PINSet: pinSet, PasswordSet: passwordSet})
			return
		}
		if err != nil {
			s.tplFail(w, r, v, kind, err)
			return
		}
		noun := tplNoun(kind)
		done := " created."
		if edit {
			done = " saved."
		}
		s.redirect(w, r, "/templates/"+kind, strings.ToUpper(noun[:1])+noun[1:]+" "+strings.TrimSpace(f.Get("name"))+done)
	}
}

// tplLines splits a textarea into its non-empty lines.
func tplLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// tplInt reads a number field; "" is 0.
func tplInt(f url.Values, name string) (int, error) {
	v := strings.TrimSpace(f.Get(name))
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, &ops.InvalidError{Field: name, Msg: "want a whole number"}
	}
	return n, nil
}

func tplCSRVals(t ops.CSRTemplateView) url.Values {
	vals := url.Values{"name": {t.Name}, "signature_algorithm": {t.SignatureAlgorithm}, "key_algorithm": {t.KeyAlgorithm},
		"curve": {t.Curve}, "subject_cn": {t.Subject.CommonName}, "subject_o": {t.Subject.Organization},
		"subject_ou": {t.Subject.OrganizationalUnit}, "subject_l": {t.Subject.Locality}, "subject_st": {t.Subject.Province},
		"subject_c": {t.Subject.Country}, "subject_email": {t.Subject.Email},
		"san_dns": {strings.Join(t.SANs.DNS, "\n")}, "san_ip": {strings.Join(t.SANs.IP, "\n")},
		"san_email": {strings.Join(t.SANs.Email, "\n")}, "san_uri": {strings.Join(t.SANs.URI, "\n")}}
	if t.KeySize != 0 {
		vals.Set("key_size", strconv.Itoa(t.KeySize))
	}
	var custom []string
	for _, c := range t.Subject.Custom {
		custom = append(custom, c.OID+"="+c.Value)
	}
	vals.Set("subject_custom", strings.Join(custom, "\n"))
	if t.CopyFromCertificate {
		vals.Set("copy_from_certificate", "on")
	}
	return vals
}

func (s *Server) tplSaveCSR(ctx context.Context, a ops.Actor, id string, f url.Values) error {
	size, err := tplInt(f, "key_size")
	if err != nil {
		return err
	}
	keyAlg, curve := f.Get("key_algorithm"), f.Get("curve")
	// Every field shows without JavaScript: a size or curve left chosen
	// for another algorithm means nothing.
	if keyAlg != "RSA" {
		size = 0
	}
	if keyAlg != "ECDSA" {
		curve = ""
	}
	subj := store.CSRSubject{CommonName: f.Get("subject_cn"), Organization: f.Get("subject_o"),
		OrganizationalUnit: f.Get("subject_ou"), Locality: f.Get("subject_l"), Province: f.Get("subject_st"),
		Country: f.Get("subject_c"), Email: f.Get("subject_email")}
	for i, l := range tplLines(f.Get("subject_custom")) {
		oid, val, ok := strings.Cut(l, "=")
		if !ok {
			return &ops.InvalidError{Field: fmt.Sprintf("subject.custom[%d]", i), Msg: "want OID=value, such as 2.5.4.5=1234"}
		}
		subj.Custom = append(subj.Custom, store.SubjectAttribute{OID: oid, Value: val})
	}
	sans := store.CSRSANs{DNS: tplLines(f.Get("san_dns")), IP: tplLines(f.Get("san_ip")),
		Email: tplLines(f.Get("san_email")), URI: tplLines(f.Get("san_uri"))}
	name, sig, copyFrom := f.Get("name"), f.Get("signature_algorithm"), f.Get("copy_from_certificate") != ""
	if id == "" {
		_, err = s.ops.CreateCSRTemplate(ctx, a, ops.CSRTemplateSpec{Name: name, SignatureAlgorithm: sig,
			KeyAlgorithm: keyAlg, KeySize: size, Curve: curve, Subject: subj, SANs: sans, CopyFromCertificate: &copyFrom})
		return err
	}
	_, err = s.ops.UpdateCSRTemplate(ctx, a, id, ops.CSRTemplatePatch{Name: &name, SignatureAlgorithm: &sig,
		KeyAlgorithm: &keyAlg, KeySize: &size, Curve: &curve, Subject: &subj, SANs: &sans, CopyFromCertificate: &copyFrom})
	return err
}

func tplKeyProfileVals(p ops.KeyProfileView) url.Values {
	vals := url.Values{"name": {p.Name}, "kind": {p.Kind}, "module_path": {p.ModulePath}, "token_label": {p.TokenLabel},
		"token_serial": {p.TokenSerial}, "path_pattern": {p.PathPattern}}
	if p.Slot != nil {
		vals.Set("slot", strconv.Itoa(*p.Slot))
	}
	if p.PasswordMinLength != 0 {
		vals.Set("password_min_length", strconv.Itoa(p.PasswordMinLength))
	}
	return vals
}

// tplSaveKeyProfile saves a key profile; pinSet says, after an error on
// edit, whether the profile has a PIN (for the form's hint).
func (s *Server) tplSaveKeyProfile(ctx context.Context, a ops.Actor, id string, f url.Values) (bool, error) {
	pinSet := false
	if id != "" {
		p, err := s.ops.KeyProfile(ctx, a, id)
		if err != nil {
			return false, err
		}
		pinSet = p.PINSet
	}
	kind, name := f.Get("kind"), f.Get("name")
	minLen, err := tplInt(f, "password_min_length")
	if err != nil {
		return pinSet, err
	}
	var slot *int
	if strings.TrimSpace(f.Get("slot")) != "" {
		n, err := tplInt(f, "slot")
		if err != nil {
			return pinSet, err
		}
		slot = &n
	}
	// Only the chosen kind's fields count: the others show without
	// JavaScript but mean nothing to it.
	modulePath, label, serial, pin := f.Get("module_path"), f.Get("token_label"), f.Get("token_serial"), f.Get("pin")
	pattern := f.Get("path_pattern")
	if kind != store.KeyProfilePKCS11 {
		modulePath, label, serial, pin, slot = "", "", "", "", nil
	}
	if kind != store.KeyProfilePKCS12 {
		pattern, minLen = "", 0
	}
	if id == "" {
		_, err = s.ops.CreateKeyProfile(ctx, a, ops.KeyProfileSpec{Name: name, Kind: kind, ModulePath: modulePath,
			TokenLabel: label, TokenSerial: serial, Slot: slot, PIN: pin, PathPattern: pattern, PasswordMinLength: minLen})
		return pinSet, err
	}
	p := ops.KeyProfilePatch{Name: &name, Kind: &kind}
	switch kind {
	case store.KeyProfilePKCS11:
		p.ModulePath, p.TokenLabel, p.TokenSerial, p.Slot = &modulePath, &label, &serial, slot
		if pin != "" {
			p.PIN = &pin
		}
	case store.KeyProfilePKCS12:
		p.PathPattern, p.PasswordMinLength = &pattern, &minLen
	}
	_, err = s.ops.UpdateKeyProfile(ctx, a, id, p)
	return pinSet, err
}

// tplSetPIN is the key profile form's separate "change PIN" form.
func (s *Server) tplSetPIN(w http.ResponseWriter, r *http.Request, v *Viewer) {
	id := r.PathValue("id")
	_, err := s.ops.SetKeyProfilePIN(r.Context(), v.Actor(r), id, r.PostForm.Get("pin"))
	if msg, ok := tplInvalid(err); ok {
		p, err := s.ops.KeyProfile(r.Context(), v.Actor(r), id)
		if err != nil {
			s.tplFail(w, r, v, tplKeyProfile, err)
			return
		}
		s.renderTplForm(w, r, v, http.StatusBadRequest, tplFormData{Kind: tplKeyProfile, ID: id, Error: msg,
			Vals: tplKeyProfileVals(p), PINSet: p.PINSet})
		return
	}
	if err != nil {
		s.tplFail(w, r, v, tplKeyProfile, err)
		return
	}
	s.redirect(w, r, "/templates/key-profiles", "PIN changed.")
}

func tplProvisioningVals(t ops.ProvisioningTemplateView) url.Values {
	vals := url.Values{"name": {t.Name}, "origin": {t.Origin}, "key_pair": {t.KeyPair},
		"keystore_password_type": {t.KeystorePasswordType}, "csr_template_id": {t.CSRTemplateID},
		"key_profile_id": {t.KeyProfileID}, "ca_connector": {t.CAConnector}, "ca_settings": {t.CASettings}}
	if t.Default {
		vals.Set("default", "on")
	}
	return vals
}

func (s *Server) tplSaveProvisioning(ctx context.Context, a ops.Actor, id string, f url.Values) (bool, error) {
	var cur ops.ProvisioningTemplateView
	if id != "" {
		var err error
		if cur, err = s.ops.ProvisioningTemplate(ctx, a, id); err != nil {
			return false, err
		}
	}
	passwordSet := cur.KeystorePasswordSet
	name, origin, keyPair, pwType := f.Get("name"), f.Get("origin"), f.Get("key_pair"), f.Get("keystore_password_type")
	password, csrID, kpID := f.Get("keystore_password"), f.Get("csr_template_id"), f.Get("key_profile_id")
	conn, settings, def := f.Get("ca_connector"), f.Get("ca_settings"), f.Get("default") != ""
	connectors := ops.DefaultCAConnectors()
	if id == "" {
		_, err := s.ops.CreateProvisioningTemplate(ctx, a, ops.ProvisioningTemplateSpec{Name: name, Origin: origin,
			Default: &def, KeyPair: keyPair, KeystorePasswordType: pwType, KeystorePassword: password,
			CSRTemplateID: csrID, KeyProfileID: kpID, CAConnector: conn, CASettings: settings}, connectors)
		return passwordSet, err
	}
	p := ops.ProvisioningTemplatePatch{Name: &name, Origin: &origin, Default: &def, KeyPair: &keyPair,
		KeystorePasswordType: &pwType, CAConnector: &conn, CASettings: &settings}
	// References are given only when changed: ops then requires them
	// enabled, and a template keeps working with one disabled since.
	if csrID != cur.CSRTemplateID {
		p.CSRTemplateID = &csrID
	}
	if kpID != cur.KeyProfileID {
		p.KeyProfileID = &kpID
	}
	if password != "" {
		p.KeystorePassword = &password
	}
	_, err := s.ops.UpdateProvisioningTemplate(ctx, a, id, p, connectors)
	return passwordSet, err
}
