package ops_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

// Secrets of templates; none may reach the audit log or a view.
const (
	hsmPIN      = "Pin-4711-hsm"
	hsmPIN2     = "Pin-0815-new"
	keystorePw  = "Keystore-Passw0rd-1"
	keystorePw2 = "Keystore-Passw0rd-2"
)

// otherAccount is the command line's actor in a second account of the
// same store.
func (e *env) otherAccount() ops.Actor {
	e.t.Helper()
	a, err := e.st.CreateAccount(e.ctx, "Other")
	if err != nil {
		e.t.Fatal(err)
	}
	return ops.Actor{Account: a.ID, Kind: ops.ActorCLI, ID: "root", Name: "root", Role: rbac.Administrator}
}

func tplPtr[T any](v T) *T { return &v }

func validCSR() ops.CSRTemplateSpec {
	return ops.CSRTemplateSpec{Name: "web", SignatureAlgorithm: "SHA256WithRSA", KeyAlgorithm: "RSA", KeySize: 2048,
		Subject: store.CSRSubject{CommonName: "www.example.com", Country: "in", Email: "pki@example.com",
			Custom: []store.SubjectAttribute{{OID: "2.5.4.5", Value: "42"}}},
		SANs: store.CSRSANs{DNS: []string{"www.example.com", "*.example.com"}, IP: []string{"192.0.2.1", "2001:db8::1"},
			Email: []string{"pki@example.com"}, URI: []string{"spiffe://example.org/web"}}}
}

func validHSM() ops.KeyProfileSpec {
	return ops.KeyProfileSpec{Name: "hsm", Kind: "pkcs11", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", TokenLabel: "tok",
		PIN: hsmPIN}
}

func TestCSRTemplateValidation(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name  string
		edit  func(s *ops.CSRTemplateSpec)
		field string
	}{
		{"ok", func(s *ops.CSRTemplateSpec) {}, ""},
		{"ecdsa ok", func(s *ops.CSRTemplateSpec) {
			s.KeyAlgorithm, s.KeySize, s.Curve, s.SignatureAlgorithm = "ECDSA", 0, "P-384", "ECDSAWithSHA384"
		}, ""},
		{"ed25519 ok", func(s *ops.CSRTemplateSpec) {
			s.KeyAlgorithm, s.KeySize, s.SignatureAlgorithm = "Ed25519", 0, "PureEd25519"
		}, ""},
		{"no name", func(s *ops.CSRTemplateSpec) { s.Name = "  " }, "name"},
		{"long name", func(s *ops.CSRTemplateSpec) { s.Name = strings.Repeat("x", 201) }, "name"},
		{"name two lines", func(s *ops.CSRTemplateSpec) { s.Name = "a\nb" }, "name"},
		{"key algorithm", func(s *ops.CSRTemplateSpec) { s.KeyAlgorithm = "DSA" }, "key_algorithm"},
		{"signature algorithm", func(s *ops.CSRTemplateSpec) { s.SignatureAlgorithm = "MD5WithRSA" }, "signature_algorithm"},
		{"ecdsa key, rsa signature", func(s *ops.CSRTemplateSpec) {
			s.KeyAlgorithm, s.KeySize, s.Curve = "ECDSA", 0, "P-256"
		}, "signature_algorithm"},
		{"rsa key, ed25519 signature", func(s *ops.CSRTemplateSpec) { s.SignatureAlgorithm = "PureEd25519" }, "signature_algorithm"},
		{"rsa size", func(s *ops.CSRTemplateSpec) { s.KeySize = 1024 }, "key_size"},
		{"rsa with curve", func(s *ops.CSRTemplateSpec) { s.Curve = "P-256" }, "curve"},
		{"ecdsa curve", func(s *ops.CSRTemplateSpec) {
			s.KeyAlgorithm, s.KeySize, s.Curve, s.SignatureAlgorithm = "ECDSA", 0, "P-521", "ECDSAWithSHA256"
		}, "curve"},
		{"ecdsa with size", func(s *ops.CSRTemplateSpec) {
			s.KeyAlgorithm, s.Curve, s.SignatureAlgorithm = "ECDSA", "P-256", "ECDSAWithSHA256"
		}, "key_size"},
		{"cn too long", func(s *ops.CSRTemplateSpec) { s.Subject.CommonName = strings.Repeat("a", 65) }, "subject.cn"},
		{"o control", func(s *ops.CSRTemplateSpec) { s.Subject.Organization = "a\x00" }, "subject.o"},
		{"ou too long", func(s *ops.CSRTemplateSpec) { s.Subject.OrganizationalUnit = strings.Repeat("a", 65) }, "subject.ou"},
		{"l too long", func(s *ops.CSRTemplateSpec) { s.Subject.Locality = strings.Repeat("a", 129) }, "subject.l"},
		{"st too long", func(s *ops.CSRTemplateSpec) { s.Subject.Province = strings.Repeat("a", 129) }, "subject.st"},
		{"country three letters", func(s *ops.CSRTemplateSpec) { s.Subject.Country = "IND" }, "subject.c"},
		{"country digits", func(s *ops.CSRTemplateSpec) { s.Subject.Country = "1N" }, "subject.c"},
		{"subject email", func(s *ops.CSRTemplateSpec) { s.Subject.Email = "not an email" }, "subject.email"},
		{"custom oid", func(s *ops.CSRTemplateSpec) { s.Subject.Custom[0].OID = "2.5.x" }, "subject.custom[0].oid"},
		{"custom oid first arc", func(s *ops.CSRTemplateSpec) { s.Subject.Custom[0].OID = "3.1" }, "subject.custom[0].oid"},
		{"custom oid second arc", func(s *ops.CSRTemplateSpec) { s.Subject.Custom[0].OID = "1.40.1" }, "subject.custom[0].oid"},
		{"custom value", func(s *ops.CSRTemplateSpec) { s.Subject.Custom[0].Value = "" }, "subject.custom[0].value"},
		{"dns", func(s *ops.CSRTemplateSpec) { s.SANs.DNS = []string{"ok.example.com", "bad name"} }, "sans.dns[1]"},
		{"ip", func(s *ops.CSRTemplateSpec) { s.SANs.IP = []string{"300.1.1.1"} }, "sans.ip[0]"},
		{"email", func(s *ops.CSRTemplateSpec) { s.SANs.Email = []string{"x@"} }, "sans.email[0]"},
		{"uri", func(s *ops.CSRTemplateSpec) { s.SANs.URI = []string{"/relative"} }, "sans.uri[0]"},
		{"too many dns", func(s *ops.CSRTemplateSpec) { s.SANs.DNS = make([]string, 101) }, "sans.dns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := validCSR()
			s.Name = "t " + tc.name
			tc.edit(&s)
			v, err := e.o.CreateCSRTemplate(e.ctx, e.cli(), s)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if v.Status != "enabled" || !v.CopyFromCertificate {
					t.Fatalf("view %+v", v)
				}
				return
			}
			var ie *ops.InvalidError
			if !errors.As(err, &ie) || ie.Field != tc.field {
				t.Fatalf("got %v, want a bad %s", err, tc.field)
			}
		})
	}
	// Normalized: the country in upper case.
	s := validCSR()
	s.CopyFromCertificate = tplPtr(false)
	v, err := e.o.CreateCSRTemplate(e.ctx, e.cli(), s)
	if err != nil {
		t.Fatal(err)
	}
	if v.Subject.Country != "IN" || v.CopyFromCertificate {
		t.Fatalf("view %+v", v)
	}
	if _, err := e.o.CreateCSRTemplate(e.ctx, e.cli(), s); !isInvalid(err, "name") {
		t.Fatalf("taken name: %v", err)
	}
	// A patch is checked as a whole: an RSA signature for a new ECDSA key.
	if _, err := e.o.UpdateCSRTemplate(e.ctx, e.cli(), v.ID, ops.CSRTemplatePatch{KeyAlgorithm: tplPtr("ECDSA"),
		KeySize: tplPtr(0), Curve: tplPtr("P-256")}); !isInvalid(err, "signature_algorithm") {
		t.Fatalf("patch to an incompatible pair: %v", err)
	}
	if _, err := e.o.UpdateCSRTemplate(e.ctx, e.cli(), v.ID, ops.CSRTemplatePatch{}); !isInvalid(err, "body") {
		t.Fatalf("empty patch: %v", err)
	}
	v, err = e.o.UpdateCSRTemplate(e.ctx, e.cli(), v.ID, ops.CSRTemplatePatch{KeyAlgorithm: tplPtr("ECDSA"), KeySize: tplPtr(0),
		Curve: tplPtr("P-256"), SignatureAlgorithm: tplPtr("ECDSAWithSHA256")})
	if err != nil || v.Curve != "P-256" {
		t.Fatalf("patch: %+v %v", v, err)
	}
}

func isInvalid(err error, field string) bool {
	var ie *ops.InvalidError
	return errors.As(err, &ie) && ie.Field == field
}

func TestKeyProfileValidation(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name  string
		spec  ops.KeyProfileSpec
		field string
	}{
		{"hsm ok", validHSM(), ""},
		{"hsm by serial and slot", ops.KeyProfileSpec{Kind: "pkcs11", ModulePath: `C:\hsm\cryptoki.dll`, TokenSerial: "1234",
			Slot: tplPtr(0), PIN: hsmPIN}, ""},
		{"software ok", ops.KeyProfileSpec{Kind: "software"}, ""},
		{"pkcs12 ok", ops.KeyProfileSpec{Kind: "pkcs12", PathPattern: "/etc/ssl/{cn}-{date}.p12", PasswordMinLength: 20}, ""},
		{"kind", ops.KeyProfileSpec{Kind: "tpm"}, "kind"},
		{"module required", ops.KeyProfileSpec{Kind: "pkcs11", TokenLabel: "t", PIN: hsmPIN}, "module_path"},
		{"module relative", ops.KeyProfileSpec{Kind: "pkcs11", ModulePath: "lib.so", TokenLabel: "t", PIN: hsmPIN}, "module_path"},
		{"token", ops.KeyProfileSpec{Kind: "pkcs11", ModulePath: "/lib.so", PIN: hsmPIN}, "token_label"},
		{"token label too long", ops.KeyProfileSpec{Kind: "pkcs11", ModulePath: "/lib.so", TokenLabel: strings.Repeat("t", 33),
			PIN: hsmPIN}, "token_label"},
		{"token serial too long", ops.KeyProfileSpec{Kind: "pkcs11", ModulePath: "/lib.so", TokenSerial: strings.Repeat("1", 17),
			PIN: hsmPIN}, "token_serial"},
		{"slot", ops.KeyProfileSpec{Kind: "pkcs11", ModulePath: "/lib.so", TokenLabel: "t", Slot: tplPtr(-1), PIN: hsmPIN}, "slot"},
		{"pin required", ops.KeyProfileSpec{Kind: "pkcs11", ModulePath: "/lib.so", TokenLabel: "t"}, "pin"},
		{"pin control", ops.KeyProfileSpec{Kind: "pkcs11", ModulePath: "/lib.so", TokenLabel: "t", PIN: "a\nb"}, "pin"},
		{"pin for software", ops.KeyProfileSpec{Kind: "software", PIN: hsmPIN}, "pin"},
		{"module for pkcs12", ops.KeyProfileSpec{Kind: "pkcs12", ModulePath: "/lib.so"}, "module_path"},
		{"slot for software", ops.KeyProfileSpec{Kind: "software", Slot: tplPtr(1)}, "slot"},
		{"path for pkcs11", ops.KeyProfileSpec{Kind: "pkcs11", ModulePath: "/lib.so", TokenLabel: "t", PIN: hsmPIN,
			PathPattern: "/x.p12"}, "path_pattern"},
		{"path relative", ops.KeyProfileSpec{Kind: "pkcs12", PathPattern: "x.p12"}, "path_pattern"},
		{"path dotdot", ops.KeyProfileSpec{Kind: "pkcs12", PathPattern: "/etc/../x.p12"}, "path_pattern"},
		{"path placeholder", ops.KeyProfileSpec{Kind: "pkcs12", PathPattern: "/etc/{host}.p12"}, "path_pattern"},
		{"min length low", ops.KeyProfileSpec{Kind: "pkcs12", PasswordMinLength: 4}, "password_min_length"},
		{"min length for software", ops.KeyProfileSpec{Kind: "software", PasswordMinLength: 12}, "password_min_length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.spec
			s.Name = "p " + tc.name
			v, err := e.o.CreateKeyProfile(e.ctx, e.cli(), s)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if v.PINSet != (s.PIN != "") || (s.Kind == "pkcs12" && v.PasswordMinLength < 16) {
					t.Fatalf("view %+v", v)
				}
				return
			}
			if !isInvalid(err, tc.field) {
				t.Fatalf("got %v, want a bad %s", err, tc.field)
			}
		})
	}
}

func TestProvisioningValidation(t *testing.T) {
	e := newEnv(t)
	csr, err := e.o.CreateCSRTemplate(e.ctx, e.cli(), validCSR())
	if err != nil {
		t.Fatal(err)
	}
	p12, err := e.o.CreateKeyProfile(e.ctx, e.cli(), ops.KeyProfileSpec{Name: "p12", Kind: "pkcs12", PasswordMinLength: 20})
	if err != nil {
		t.Fatal(err)
	}
	off, err := e.o.CreateCSRTemplate(e.ctx, e.cli(), func() ops.CSRTemplateSpec { s := validCSR(); s.Name = "off"; return s }())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.o.SetCSRTemplateEnabled(e.ctx, e.cli(), off.ID, false); err != nil {
		t.Fatal(err)
	}
	otherCSR, err := e.o.CreateCSRTemplate(e.ctx, e.otherAccount(), validCSR())
	if err != nil {
		t.Fatal(err)
	}
	conns := ops.DefaultCAConnectors()
	valid := func() ops.ProvisioningTemplateSpec {
		return ops.ProvisioningTemplateSpec{Name: "web", Origin: "discovered", KeyPair: "new", KeystorePasswordType: "manual",
			KeystorePassword: keystorePw + "-long-enough", CSRTemplateID: csr.ID, KeyProfileID: p12.ID, CAConnector: "acme",
			CASettings: "pebble"}
	}
	for _, tc := range []struct {
		name  string
		edit  func(s *ops.ProvisioningTemplateSpec)
		field string
	}{
		{"ok", func(s *ops.ProvisioningTemplateSpec) {}, ""},
		{"defaults", func(s *ops.ProvisioningTemplateSpec) {
			s.KeyPair, s.KeystorePasswordType, s.KeystorePassword, s.CSRTemplateID, s.KeyProfileID = "", "", "", "", ""
		}, ""},
		{"name", func(s *ops.ProvisioningTemplateSpec) { s.Name = "" }, "name"},
		{"origin", func(s *ops.ProvisioningTemplateSpec) { s.Origin = strings.Repeat("o", 201) }, "origin"},
		{"key pair", func(s *ops.ProvisioningTemplateSpec) { s.KeyPair = "old" }, "key_pair"},
		{"password type", func(s *ops.ProvisioningTemplateSpec) { s.KeystorePasswordType = "none" }, "keystore_password_type"},
		{"manual without password", func(s *ops.ProvisioningTemplateSpec) { s.KeystorePassword = "" }, "keystore_password"},
		{"password shorter than the profile's minimum", func(s *ops.ProvisioningTemplateSpec) {
			s.KeystorePassword = "short-password-1"
		}, "keystore_password"},
		{"password with random", func(s *ops.ProvisioningTemplateSpec) { s.KeystorePasswordType = "random" }, "keystore_password"},
		{"csr template unknown", func(s *ops.ProvisioningTemplateSpec) { s.CSRTemplateID = "nope" }, "csr_template_id"},
		{"csr template of another account", func(s *ops.ProvisioningTemplateSpec) { s.CSRTemplateID = otherCSR.ID }, "csr_template_id"},
		{"csr template disabled", func(s *ops.ProvisioningTemplateSpec) { s.CSRTemplateID = off.ID }, "csr_template_id"},
		{"key profile", func(s *ops.ProvisioningTemplateSpec) { s.KeyProfileID = "nope" }, "key_profile_id"},
		{"connector missing", func(s *ops.ProvisioningTemplateSpec) { s.CAConnector = "" }, "ca_connector"},
		{"connector unknown", func(s *ops.ProvisioningTemplateSpec) { s.CAConnector = "adcs" }, "ca_connector"},
		{"ca settings", func(s *ops.ProvisioningTemplateSpec) { s.CASettings = "a\tb" }, "ca_settings"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := valid()
			s.Name = "t " + tc.name
			tc.edit(&s)
			v, err := e.o.CreateProvisioningTemplate(e.ctx, e.cli(), s, conns)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if v.KeyPair != "new" || v.KeystorePasswordSet != (s.KeystorePassword != "") {
					t.Fatalf("view %+v", v)
				}
				return
			}
			if !isInvalid(err, tc.field) {
				t.Fatalf("got %v, want a bad %s", err, tc.field)
			}
		})
	}
}

func TestProvisioningDefault(t *testing.T) {
	e := newEnv(t)
	conns := ops.DefaultCAConnectors()
	mk := func(name string, def *bool) ops.ProvisioningTemplateView {
		t.Helper()
		v, err := e.o.CreateProvisioningTemplate(e.ctx, e.cli(), ops.ProvisioningTemplateSpec{Name: name, CAConnector: "local",
			Default: def}, conns)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	first := mk("first", nil)   // the account's first: the default
	second := mk("second", nil) // not: the first keeps it
	if !first.Default || second.Default {
		t.Fatalf("defaults: %v %v", first.Default, second.Default)
	}
	third := mk("third", tplPtr(true))
	defaults := func() (out []string) {
		vs, err := e.o.ProvisioningTemplates(e.ctx, e.cli())
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			if v.Default {
				out = append(out, v.Name)
			}
		}
		return out
	}
	if d := defaults(); len(d) != 1 || d[0] != "third" {
		t.Fatalf("defaults %v", d)
	}
	// Disabling the default clears it; a disabled one cannot become it.
	if v, err := e.o.SetProvisioningTemplateEnabled(e.ctx, e.cli(), third.ID, false); err != nil || v.Default {
		t.Fatalf("disable: %+v %v", v, err)
	}
	if !strings.Contains(e.last().Detail, "no longer the default") {
		t.Errorf("audit %+v", e.last())
	}
	if _, err := e.o.UpdateProvisioningTemplate(e.ctx, e.cli(), third.ID, ops.ProvisioningTemplatePatch{Default: tplPtr(true)},
		conns); !isInvalid(err, "default") {
		t.Fatalf("disabled default: %v", err)
	}
	if _, err := e.o.UpdateProvisioningTemplate(e.ctx, e.cli(), second.ID, ops.ProvisioningTemplatePatch{Default: tplPtr(true)},
		conns); err != nil {
		t.Fatal(err)
	}
	if d := defaults(); len(d) != 1 || d[0] != "second" {
		t.Fatalf("defaults %v", d)
	}
	// A clone is never the default.
	c, err := e.o.CloneProvisioningTemplate(e.ctx, e.cli(), second.ID, "second copy")
	if err != nil || c.Default || c.CAConnector != "local" {
		t.Fatalf("clone %+v %v", c, err)
	}
}

func TestTemplateSecretsAndClone(t *testing.T) {
	e := newEnv(t)
	admin := e.user("admin@example.com", rbac.Administrator)
	hsm, err := e.o.CreateKeyProfile(e.ctx, admin, validHSM())
	if err != nil {
		t.Fatal(err)
	}
	clone, err := e.o.CloneKeyProfile(e.ctx, admin, hsm.ID, "hsm copy")
	if err != nil {
		t.Fatal(err)
	}
	if !clone.PINSet || clone.ModulePath != hsm.ModulePath || clone.ID == hsm.ID {
		t.Fatalf("clone %+v", clone)
	}
	orig, err := e.st.KeyProfile(e.ctx, e.account, hsm.ID)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := e.st.KeyProfile(e.ctx, e.account, clone.ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(cp.PINSealed) != string(orig.PINSealed) || strings.Contains(string(cp.PINSealed), hsmPIN) {
		t.Fatal("the clone's PIN is not the original's sealed value")
	}
	if pin, err := e.o.OpenKeyProfilePIN(cp); err != nil || pin != hsmPIN {
		t.Fatalf("clone's PIN opens to %q, %v", pin, err)
	}
	// The clone's PIN changes on its own.
	if _, err := e.o.SetKeyProfilePIN(e.ctx, admin, clone.ID, hsmPIN2); err != nil {
		t.Fatal(err)
	}
	cp, _ = e.st.KeyProfile(e.ctx, e.account, clone.ID)
	orig, _ = e.st.KeyProfile(e.ctx, e.account, hsm.ID)
	if pin, _ := e.o.OpenKeyProfilePIN(cp); pin != hsmPIN2 {
		t.Fatalf("new PIN %q", pin)
	}
	if pin, _ := e.o.OpenKeyProfilePIN(orig); pin != hsmPIN {
		t.Fatalf("original PIN %q", pin)
	}
	if _, err := e.o.UpdateKeyProfile(e.ctx, admin, hsm.ID, ops.KeyProfilePatch{PIN: tplPtr(hsmPIN2), TokenLabel: tplPtr("tok2")}); err != nil {
		t.Fatal(err)
	}
	sw, err := e.o.CreateKeyProfile(e.ctx, admin, ops.KeyProfileSpec{Name: "sw", Kind: "software"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.o.SetKeyProfilePIN(e.ctx, admin, sw.ID, hsmPIN); !isInvalid(err, "pin") {
		t.Fatalf("PIN on a software profile: %v", err)
	}
	// Changing the kind drops the HSM settings, PIN included.
	v, err := e.o.UpdateKeyProfile(e.ctx, admin, clone.ID, ops.KeyProfilePatch{Kind: tplPtr("software")})
	if err != nil || v.PINSet || v.ModulePath != "" {
		t.Fatalf("to software: %+v %v", v, err)
	}

	pt, err := e.o.CreateProvisioningTemplate(e.ctx, admin, ops.ProvisioningTemplateSpec{Name: "manual",
		KeystorePasswordType: "manual", KeystorePassword: keystorePw, KeyProfileID: hsm.ID, CAConnector: "local"},
		ops.DefaultCAConnectors())
	if err != nil {
		t.Fatal(err)
	}
	ptc, err := e.o.CloneProvisioningTemplate(e.ctx, admin, pt.ID, "manual copy")
	if err != nil || !ptc.KeystorePasswordSet {
		t.Fatalf("clone %+v %v", ptc, err)
	}
	st, _ := e.st.ProvisioningTemplate(e.ctx, e.account, ptc.ID)
	if pw, err := e.o.OpenKeystorePassword(st); err != nil || pw != keystorePw {
		t.Fatalf("clone's keystore password %q %v", pw, err)
	}
	if _, err := e.o.UpdateProvisioningTemplate(e.ctx, admin, pt.ID, ops.ProvisioningTemplatePatch{KeystorePassword: tplPtr(keystorePw2)},
		ops.DefaultCAConnectors()); err != nil {
		t.Fatal(err)
	}
	// A stricter PKCS#12 key profile refuses the kept (shorter) password.
	strict, err := e.o.CreateKeyProfile(e.ctx, admin, ops.KeyProfileSpec{Name: "strict", Kind: "pkcs12", PasswordMinLength: 64})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.o.UpdateProvisioningTemplate(e.ctx, admin, ptc.ID, ops.ProvisioningTemplatePatch{KeyProfileID: tplPtr(strict.ID)},
		ops.DefaultCAConnectors()); !isInvalid(err, "keystore_password") {
		t.Fatalf("kept password under the new profile's minimum: %v", err)
	}
	// To random: the sealed password goes.
	v2, err := e.o.UpdateProvisioningTemplate(e.ctx, admin, ptc.ID, ops.ProvisioningTemplatePatch{KeystorePasswordType: tplPtr("random")},
		ops.DefaultCAConnectors())
	if err != nil || v2.KeystorePasswordSet {
		t.Fatalf("to random: %+v %v", v2, err)
	}

	// Delete refused while used, naming the user.
	err = e.o.DeleteKeyProfile(e.ctx, admin, hsm.ID)
	if !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), `"manual"`) {
		t.Fatalf("delete a used key profile: %v", err)
	}

	var actions []string
	for _, en := range e.audit() {
		actions = append(actions, en.Action)
		for _, s := range []string{hsmPIN, hsmPIN2, keystorePw, keystorePw2} {
			if strings.Contains(en.Detail, s) || strings.Contains(en.Object, s) {
				t.Errorf("audit entry %+v holds a secret", en)
			}
		}
	}
	for _, want := range []string{"key_profile.create", "key_profile.clone", "key_profile.pin", "key_profile.update",
		"provisioning_template.create", "provisioning_template.clone", "provisioning_template.update"} {
		if !strings.Contains(" "+strings.Join(actions, " ")+" ", " "+want+" ") {
			t.Errorf("no %s in %v", want, actions)
		}
	}
}

func TestTemplatePermissions(t *testing.T) {
	e := newEnv(t)
	csr, err := e.o.CreateCSRTemplate(e.ctx, e.cli(), validCSR())
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range rbac.Roles() {
		a := e.key(role)
		t.Run(string(role), func(t *testing.T) {
			_, viewErr := e.o.CSRTemplates(e.ctx, a)
			_, createErr := e.o.CreateKeyProfile(e.ctx, a, ops.KeyProfileSpec{Name: "sw " + string(role), Kind: "software"})
			_, disableErr := e.o.SetCSRTemplateEnabled(e.ctx, a, csr.ID, false)
			for _, c := range []struct {
				err  error
				perm rbac.Permission
			}{{viewErr, rbac.ViewTemplates}, {createErr, rbac.ManageTemplates}, {disableErr, rbac.ManageTemplates}} {
				if rbac.Can(role, c.perm) != (c.err == nil) {
					t.Errorf("%s: %v", c.perm, c.err)
				}
				if c.err != nil && !errors.Is(c.err, ops.ErrForbidden) {
					t.Errorf("%s: %v, want forbidden", c.perm, c.err)
				}
			}
		})
	}
	// Another account's object is not found, for reads and changes.
	other := e.otherAccount()
	if _, err := e.o.CSRTemplate(e.ctx, other, csr.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other account: %v", err)
	}
	if err := e.o.DeleteCSRTemplate(e.ctx, other, csr.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other account deletes: %v", err)
	}
	if _, err := e.o.CSRTemplate(e.ctx, e.cli(), csr.ID); err != nil {
		t.Fatal(err)
	}
}
