package web

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/emsign/bot/controlplane/ops"
)

// tplFind finds an object's ID by name through ops.
func tplFind(t *testing.T, e *btEnv, kind, name string) string {
	t.Helper()
	ctx, a := context.Background(), e.admin()
	switch kind {
	case tplCSR:
		l, err := e.ops.CSRTemplates(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range l {
			if x.Name == name {
				return x.ID
			}
		}
	case tplKeyProfile:
		l, err := e.ops.KeyProfiles(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range l {
			if x.Name == name {
				return x.ID
			}
		}
	default:
		l, err := e.ops.ProvisioningTemplates(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range l {
			if x.Name == name {
				return x.ID
			}
		}
	}
	return ""
}

func tplCSRForm(name string) url.Values {
	return url.Values{"name": {name}, "key_algorithm": {"ECDSA"}, "curve": {"P-256"}, "key_size": {"2048"},
		"signature_algorithm": {"ECDSAWithSHA256"}, "subject_cn": {"www.example.com"}, "subject_o": {"Acme"},
		"subject_c": {"in"}, "subject_custom": {"2.5.4.5=1234"}, "san_dns": {"www.example.com\r\n\r\n*.example.com\n"},
		"san_ip": {"10.0.0.1"}, "copy_from_certificate": {"on"}}
}

func tplKeyProfileForm(name, pin string) url.Values {
	return url.Values{"name": {name}, "kind": {"pkcs11"}, "module_path": {"/usr/lib/softhsm/libsofthsm2.so"},
		"token_label": {"tok"}, "slot": {"0"}, "pin": {pin}, "path_pattern": {"/ignored/for/pkcs11"}}
}

func tplProvisioningForm(name, csrID, kpID, password string) url.Values {
	return url.Values{"name": {name}, "origin": {"web"}, "key_pair": {"new"}, "keystore_password_type": {"manual"},
		"keystore_password": {password}, "csr_template_id": {csrID}, "key_profile_id": {kpID}, "ca_connector": {"acme"},
		"default": {"on"}}
}

// tplLifecycle creates, edits, clones, disables, enables and deletes one
// object of a kind through the forms.
func tplLifecycle(t *testing.T, e *btEnv, u btUser, kind string, form url.Values, check func(id string)) {
	t.Helper()
	base := "/templates/" + kind
	btWant(t, e.get(u, base+"/new"), http.StatusOK, `action="`+base+`/new"`)
	w := e.post(u, base+"/new", form)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("create %s: %d\n%s", kind, w.Code, btMain(w.Body.String()))
	}
	name := form.Get("name")
	id := tplFind(t, e, kind, name)
	if id == "" {
		t.Fatalf("%s %q not created", kind, name)
	}
	if check != nil {
		check(id)
	}
	btWant(t, e.get(u, base), http.StatusOK, name, `action="`+base+"/"+id+`/clone"`, `data-confirm="Delete`)
	btWant(t, e.get(u, base+"/"+id), http.StatusOK, `value="`+name+`"`)

	edited := url.Values{}
	for k, v := range form {
		edited[k] = v
	}
	edited.Set("name", name+" v2")
	if w := e.post(u, base+"/"+id, edited); w.Code != http.StatusSeeOther {
		t.Fatalf("edit %s: %d\n%s", kind, w.Code, btMain(w.Body.String()))
	}
	if tplFind(t, e, kind, name+" v2") != id {
		t.Fatalf("%s not renamed", kind)
	}
	if w := e.post(u, base+"/"+id+"/clone", url.Values{"name": {name + " copy"}}); w.Code != http.StatusSeeOther {
		t.Fatalf("clone %s: %d\n%s", kind, w.Code, btMain(w.Body.String()))
	}
	clone := tplFind(t, e, kind, name+" copy")
	if clone == "" || clone == id {
		t.Fatalf("%s not cloned", kind)
	}
	for _, action := range []string{"disable", "enable"} {
		if w := e.post(u, base+"/"+clone+"/"+action, nil); w.Code != http.StatusSeeOther {
			t.Fatalf("%s %s: %d\n%s", action, kind, w.Code, btMain(w.Body.String()))
		}
	}
	if w := e.post(u, base+"/"+clone+"/disable", nil); w.Code != http.StatusSeeOther {
		t.Fatalf("disable %s: %d", kind, w.Code)
	}
	btWant(t, e.get(u, base), http.StatusOK, `action="`+base+"/"+clone+`/enable"`)
	if w := e.post(u, base+"/"+clone+"/delete", nil); w.Code != http.StatusSeeOther {
		t.Fatalf("delete %s: %d\n%s", kind, w.Code, btMain(w.Body.String()))
	}
	if tplFind(t, e, kind, name+" copy") != "" {
		t.Fatalf("%s clone not deleted", kind)
	}
	btWant(t, e.post(u, base+"/"+clone+"/delete", nil), http.StatusNotFound)
}

func TestTemplatesLifecycle(t *testing.T) {
	e := newBTEnv(t, nil)
	u := e.login("administrator")
	ctx := context.Background()
	const pin, password = "s3cret-PIN<&>'\"", "keystore-pass<&>word-1234"

	tplLifecycle(t, e, u, tplCSR, tplCSRForm("web"), func(id string) {
		c, err := e.ops.CSRTemplate(ctx, e.admin(), id)
		if err != nil {
			t.Fatal(err)
		}
		// The RSA size is dropped for an ECDSA key; blank lines are not SANs.
		if c.KeySize != 0 || c.Curve != "P-256" || c.Subject.Country != "IN" || len(c.SANs.DNS) != 2 ||
			len(c.Subject.Custom) != 1 || !c.CopyFromCertificate {
			t.Errorf("CSR template %+v", c)
		}
	})
	tplLifecycle(t, e, u, tplKeyProfile, tplKeyProfileForm("hsm", pin), func(id string) {
		p, err := e.ops.KeyProfile(ctx, e.admin(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !p.PINSet || p.PathPattern != "" || p.Slot == nil {
			t.Errorf("key profile %+v", p)
		}
	})
	csr, kp := tplFind(t, e, tplCSR, "web v2"), tplFind(t, e, tplKeyProfile, "hsm v2")
	tplLifecycle(t, e, u, tplProvisioning, tplProvisioningForm("prov", csr, kp, password), func(id string) {
		p, err := e.ops.ProvisioningTemplate(ctx, e.admin(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !p.KeystorePasswordSet || !p.Default || p.CSRTemplateID != csr || p.CAConnector != "acme" {
			t.Errorf("provisioning template %+v", p)
		}
	})

	// Edit with the PIN left empty keeps it; the change PIN form sets one.
	kpForm := tplKeyProfileForm("hsm v2", "")
	if w := e.post(u, "/templates/key-profiles/"+kp, kpForm); w.Code != http.StatusSeeOther {
		t.Fatalf("edit without PIN: %d\n%s", w.Code, btMain(w.Body.String()))
	}
	const pin2 = "another-PIN-9876"
	if w := e.post(u, "/templates/key-profiles/"+kp+"/pin", url.Values{"pin": {pin2}}); w.Code != http.StatusSeeOther {
		t.Fatalf("change PIN: %d", w.Code)
	}
	btWant(t, e.post(u, "/templates/key-profiles/"+kp+"/pin", url.Values{"pin": {""}}), http.StatusBadRequest, "PIN: required")
	sp, err := e.st.KeyProfile(ctx, e.account, kp)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e.ops.OpenKeyProfilePIN(sp); err != nil || got != pin2 {
		t.Errorf("PIN after change: %q, %v", got, err)
	}
	btWant(t, e.get(u, "/templates/key-profiles/"+kp), http.StatusOK, `id="key-profile-pin"`, `type="password"`,
		"leave empty to keep the one set")

	// Editing a provisioning template without its password keeps it.
	prov := tplFind(t, e, tplProvisioning, "prov v2")
	if w := e.post(u, "/templates/provisioning/"+prov, tplProvisioningForm("prov v2", csr, kp, "")); w.Code != http.StatusSeeOther {
		t.Fatalf("edit without password: %d\n%s", w.Code, btMain(w.Body.String()))
	}
	spt, err := e.st.ProvisioningTemplate(ctx, e.account, prov)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e.ops.OpenKeystorePassword(spt); err != nil || got != password {
		t.Errorf("keystore password after edit: %v", err)
	}

	// No secret appears on any page, nor after a bad form that posted it.
	bad := tplKeyProfileForm("", pin)
	bodies := []string{}
	for _, p := range []string{"/templates/csr", "/templates/key-profiles", "/templates/provisioning",
		"/templates/key-profiles/" + kp, "/templates/provisioning/" + tplFind(t, e, tplProvisioning, "prov v2"),
		"/templates/provisioning/new", "/audit"} {
		bodies = append(bodies, e.get(u, p).Body.String())
	}
	bodies = append(bodies, btWant(t, e.post(u, "/templates/key-profiles/new", bad), http.StatusBadRequest, "Name: required"))
	badProv := tplProvisioningForm("", csr, kp, password)
	bodies = append(bodies, btWant(t, e.post(u, "/templates/provisioning/new", badProv), http.StatusBadRequest, "Name: required", `value="web"`))
	for i, b := range bodies {
		for _, s := range []string{pin, pin2, password} {
			for _, form := range []string{s, html.EscapeString(s), url.QueryEscape(s), "another-PIN", "keystore-pass"} {
				if strings.Contains(b, form) {
					t.Errorf("page %d holds a secret (%q)", i, form)
				}
			}
		}
	}
}

func TestTemplatesBadField(t *testing.T) {
	e := newBTEnv(t, nil)
	u := e.login("manager")
	for _, c := range []struct {
		kind  string
		form  url.Values
		wants []string
	}{
		{tplCSR, func() url.Values { f := tplCSRForm("x"); f.Set("subject_c", "India"); return f }(),
			[]string{"Country (C)", `value="x"`, `value="www.example.com"`}},
		{tplCSR, func() url.Values { f := tplCSRForm("x"); f.Set("san_ip", "10.0.0.1\nnot-an-ip"); return f }(),
			[]string{"IP addresses, line 2", "not-an-ip"}},
		{tplCSR, func() url.Values { f := tplCSRForm("x"); f.Set("signature_algorithm", "SHA256WithRSA"); return f }(),
			[]string{"Signature algorithm"}},
		{tplKeyProfile, func() url.Values { f := tplKeyProfileForm("k", "1234"); f.Del("module_path"); return f }(),
			[]string{"PKCS#11 module path: required", `value="tok"`}},
		{tplKeyProfile, url.Values{"name": {"k"}, "kind": {"pkcs12"}, "password_min_length": {"abc"}},
			[]string{"Minimum password length"}},
		{tplProvisioning, url.Values{"name": {"p"}, "ca_connector": {"nope"}}, []string{"CA connector: unknown"}},
		{tplProvisioning, url.Values{"name": {"p"}, "ca_connector": {"acme"}, "csr_template_id": {"missing"}},
			[]string{"CSR template: no such"}},
	} {
		t.Run(c.kind, func(t *testing.T) {
			body := btWant(t, e.post(u, "/templates/"+c.kind+"/new", c.form), http.StatusBadRequest, c.wants...)
			if !strings.Contains(body, `role="alert"`) {
				t.Error("no alert")
			}
		})
	}
}

func TestTemplatesRoles(t *testing.T) {
	e := newBTEnv(t, nil)
	ctx := context.Background()
	c, err := e.ops.CreateCSRTemplate(ctx, e.admin(), ops.CSRTemplateSpec{Name: "base", KeyAlgorithm: "RSA",
		KeySize: 2048, SignatureAlgorithm: "SHA256WithRSA"})
	if err != nil {
		t.Fatal(err)
	}
	std, basic, admin := e.login("standard_user"), e.login("basic_user"), e.login("administrator")

	for _, p := range []string{"/templates/csr", "/templates/key-profiles", "/templates/provisioning"} {
		body := btWant(t, e.get(std, p), http.StatusOK)
		if _, main, _ := strings.Cut(body, "<main"); strings.Contains(main, "<form") || strings.Contains(body, "/new\"") {
			t.Errorf("%s: a standard_user sees forms", p)
		}
		btWant(t, e.get(basic, p), http.StatusForbidden, `id="error-title"`)
	}
	if !strings.Contains(e.get(std, "/templates/csr").Body.String(), `id="nav-templates"`) {
		t.Error("no nav entry")
	}
	if strings.Contains(e.get(basic, "/bots").Body.String(), `id="nav-templates"`) {
		t.Error("nav entry for a basic_user")
	}
	for _, p := range []string{"/templates/csr/new", "/templates/csr/" + c.ID + "/delete", "/templates/csr/" + c.ID + "/clone",
		"/templates/csr/" + c.ID, "/templates/key-profiles/new", "/templates/provisioning/new"} {
		btWant(t, e.post(std, p, tplCSRForm("z")), http.StatusForbidden)
	}
	btWant(t, e.get(std, "/templates/csr/new"), http.StatusForbidden)
	// Without the CSRF token.
	btWant(t, e.post(admin, "/templates/csr/"+c.ID+"/delete", url.Values{"csrf": {""}}), http.StatusForbidden)
	if _, err := e.ops.CSRTemplate(ctx, e.admin(), c.ID); err != nil {
		t.Fatal("deleted without CSRF")
	}
	// Of another account: not found.
	other := e.loginIn(func() string {
		a, err := e.st.CreateAccount(ctx, "Other")
		if err != nil {
			t.Fatal(err)
		}
		return a.ID
	}(), "administrator")
	btWant(t, e.get(other, "/templates/csr/"+c.ID), http.StatusNotFound)
	btWant(t, e.post(other, "/templates/csr/"+c.ID+"/disable", nil), http.StatusNotFound)
}

func TestTemplatesDeleteInUse(t *testing.T) {
	e := newBTEnv(t, nil)
	ctx := context.Background()
	u := e.login("discovery_user")
	c, err := e.ops.CreateCSRTemplate(ctx, e.admin(), ops.CSRTemplateSpec{Name: "base", KeyAlgorithm: "RSA",
		KeySize: 2048, SignatureAlgorithm: "SHA256WithRSA"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ops.CreateProvisioningTemplate(ctx, e.admin(), ops.ProvisioningTemplateSpec{Name: "Web servers",
		CSRTemplateID: c.ID, CAConnector: "local"}, ops.DefaultCAConnectors()); err != nil {
		t.Fatal(err)
	}
	btWant(t, e.post(u, "/templates/csr/"+c.ID+"/delete", nil), http.StatusConflict, "Web servers", `id="csr-templates"`,
		`id="templates-error"`)
	// A disabled CSR template does not stop editing the provisioning
	// template that uses it.
	if w := e.post(u, "/templates/csr/"+c.ID+"/disable", nil); w.Code != http.StatusSeeOther {
		t.Fatal(w.Code)
	}
	pid := tplFind(t, e, tplProvisioning, "Web servers")
	f := url.Values{"name": {"Web servers"}, "origin": {"edited"}, "key_pair": {"new"}, "keystore_password_type": {"random"},
		"csr_template_id": {c.ID}, "ca_connector": {"local"}, "default": {"on"}}
	if w := e.post(u, "/templates/provisioning/"+pid, f); w.Code != http.StatusSeeOther {
		t.Fatalf("edit: %d\n%s", w.Code, btMain(w.Body.String()))
	}
	// A bad clone name answers the list with the message.
	btWant(t, e.post(u, "/templates/csr/"+c.ID+"/clone", url.Values{"name": {" "}}), http.StatusBadRequest, "Name: required")
}
