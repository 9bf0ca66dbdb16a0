package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

const (
	apiPIN        = "Api-Pin-31337"
	apiPIN2       = "Api-Pin-27182"
	apiKeystorePw = "Api-Keystore-Password-1"
)

func csrBody(name string) map[string]any {
	return map[string]any{"name": name, "signature_algorithm": "ECDSAWithSHA256", "key_algorithm": "ECDSA", "curve": "P-256",
		"subject": map[string]any{"cn": "www.example.com", "c": "IN"}, "sans": map[string]any{"dns": []string{"www.example.com"}}}
}

// createTemplate posts body to path and returns the new object's ID.
func (e *env) createTemplate(key, path string, body any) string {
	e.t.Helper()
	r := e.user("POST", path, key, body)
	e.want(r, http.StatusCreated)
	var v struct{ ID string }
	r.json(e.t, &v)
	return v.ID
}

func TestTemplateRoleMatrix(t *testing.T) {
	e := newEnv(t)
	account, adminKey := e.account(10)
	csr := e.createTemplate(adminKey, "/csr-templates", csrBody("base"))
	kp := e.createTemplate(adminKey, "/key-profiles", map[string]any{"name": "base", "kind": "software"})
	pt := e.createTemplate(adminKey, "/provisioning-templates", map[string]any{"name": "base", "ca_connector": "local"})

	type route = roleRoute
	var routes []route
	for _, k := range []struct {
		path, id string
		body     func(name string) any
		patch    any
	}{
		{"/csr-templates", csr, func(n string) any { return csrBody(n) }, map[string]any{"subject": map[string]any{"cn": "x.example.com"}}},
		{"/key-profiles", kp, func(n string) any { return map[string]any{"name": n, "kind": "software"} }, map[string]any{"kind": "software", "name": "base"}},
		{"/provisioning-templates", pt, func(n string) any { return map[string]any{"name": n, "ca_connector": "acme"} },
			map[string]any{"origin": "discovered"}},
	} {
		routes = append(routes,
			route{"GET", k.path, nil, rbac.ViewTemplates, http.StatusOK},
			route{"GET", k.path + "/" + k.id, nil, rbac.ViewTemplates, http.StatusOK},
			route{"POST", k.path, func(role string) any { return k.body("new " + role) }, rbac.ManageTemplates, http.StatusCreated},
			route{"PATCH", k.path + "/" + k.id, func(string) any { return k.patch }, rbac.ManageTemplates, http.StatusOK},
			route{"POST", k.path + "/" + k.id + "/clone", func(role string) any { return map[string]string{"name": "copy " + role} },
				rbac.ManageTemplates, http.StatusCreated},
			route{"POST", k.path + "/" + k.id + "/disable", nil, rbac.ManageTemplates, http.StatusOK},
			route{"POST", k.path + "/" + k.id + "/enable", nil, rbac.ManageTemplates, http.StatusOK},
			// The role is checked before the object is looked up: a
			// refusal is 403, an allowed delete of nothing 404.
			route{"DELETE", k.path + "/nope", nil, rbac.ManageTemplates, http.StatusNotFound},
		)
	}
	checkRoleMatrix(t, e, account, routes)
}

func TestTemplateAPI(t *testing.T) {
	e := newEnv(t)
	account, key := e.account(10)
	_, otherKey := e.account(10)

	// Strict JSON and fields named.
	for _, tc := range []struct {
		path  string
		body  any
		field string // "" for a body error
		text  string
	}{
		{"/csr-templates", map[string]any{"name": "x", "colour": "red"}, "", "unknown field"},
		{"/csr-templates", map[string]any{"name": "x", "key_size": "big"}, "", "key_size"},
		{"/csr-templates", func() any { b := csrBody("x"); b["signature_algorithm"] = "SHA256WithRSA"; return b }(),
			"signature_algorithm", "cannot sign"},
		{"/csr-templates", func() any { b := csrBody("x"); b["subject"] = map[string]any{"c": "India"}; return b }(), "subject.c", ""},
		{"/key-profiles", map[string]any{"name": "h", "kind": "pkcs11", "module_path": "/lib.so", "token_label": "t"}, "pin", ""},
		{"/provisioning-templates", map[string]any{"name": "p", "ca_connector": "verisign"}, "ca_connector", "verisign"},
	} {
		r := e.user("POST", tc.path, key, tc.body)
		e.want(r, http.StatusBadRequest)
		var inv struct{ Error, Field string }
		r.json(t, &inv)
		if inv.Field != tc.field || !strings.Contains(inv.Error, tc.text) {
			t.Errorf("POST %s %v: %s", tc.path, tc.body, r.body)
		}
	}

	csr := e.createTemplate(key, "/csr-templates", csrBody("web"))
	hsm := e.createTemplate(key, "/key-profiles", map[string]any{"name": "hsm", "kind": "pkcs11",
		"module_path": "/usr/lib/softhsm/libsofthsm2.so", "token_label": "tok", "slot": 0, "pin": apiPIN})
	pt := e.createTemplate(key, "/provisioning-templates", map[string]any{"name": "rotate", "csr_template_id": csr, "key_profile_id": hsm,
		"keystore_password_type": "manual", "keystore_password": apiKeystorePw, "ca_connector": "acme", "origin": "discovered"})

	r := e.user("GET", "/key-profiles/"+hsm, key, nil)
	e.want(r, http.StatusOK)
	var kp map[string]any
	r.json(t, &kp)
	if kp["pin_set"] != true || kp["slot"] != float64(0) {
		t.Errorf("key profile %s", r.body)
	}
	e.want(e.user("PUT", "/key-profiles/"+hsm+"/pin", key, map[string]string{"pin": apiPIN2}), http.StatusOK)
	r = e.user("GET", "/provisioning-templates/"+pt, key, nil)
	e.want(r, http.StatusOK)
	var p map[string]any
	r.json(t, &p)
	if p["keystore_password_set"] != true || p["default"] != true || p["csr_template_id"] != csr {
		t.Errorf("provisioning template %s", r.body)
	}
	r = e.user("POST", "/key-profiles/"+hsm+"/clone", key, map[string]string{"name": "hsm 2"})
	e.want(r, http.StatusCreated)
	var c map[string]any
	r.json(t, &c)
	if c["pin_set"] != true || c["name"] != "hsm 2" {
		t.Errorf("clone %s", r.body)
	}
	e.want(e.user("POST", "/key-profiles/"+hsm+"/clone", key, map[string]string{"name": "hsm 2"}), http.StatusBadRequest)

	// In use: 409 naming the provisioning template.
	for _, path := range []string{"/csr-templates/" + csr, "/key-profiles/" + hsm} {
		r = e.user("DELETE", path, key, nil)
		e.want(r, http.StatusConflict)
		if !strings.Contains(r.errorText(t), `"rotate"`) {
			t.Errorf("DELETE %s: %s", path, r.body)
		}
	}
	// Another account sees nothing and changes nothing.
	for _, rq := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/csr-templates/" + csr, nil},
		{"PATCH", "/key-profiles/" + hsm, map[string]string{"name": "mine"}},
		{"PUT", "/key-profiles/" + hsm + "/pin", map[string]string{"pin": "x"}},
		{"POST", "/provisioning-templates/" + pt + "/clone", map[string]string{"name": "mine"}},
		{"POST", "/provisioning-templates/" + pt + "/disable", nil},
		{"DELETE", "/provisioning-templates/" + pt, nil},
	} {
		e.want(e.user(rq.method, rq.path, otherKey, rq.body), http.StatusNotFound)
	}
	r = e.user("GET", "/provisioning-templates", otherKey, nil)
	e.want(r, http.StatusOK)
	if strings.Contains(string(r.body), pt) {
		t.Errorf("other account lists %s", r.body)
	}

	e.want(e.user("DELETE", "/provisioning-templates/"+pt, key, nil), http.StatusOK)
	e.want(e.user("DELETE", "/csr-templates/"+csr, key, nil), http.StatusOK)
	e.want(e.user("GET", "/csr-templates/"+csr, key, nil), http.StatusNotFound)

	// The dashboard counts the enabled ones: the key profile and its clone
	// are left.
	r = e.user("GET", "/dashboard", key, nil)
	e.want(r, http.StatusOK)
	var d struct {
		Templates map[string]int `json:"templates"`
	}
	r.json(t, &d)
	if d.Templates["csr_templates"] != 0 || d.Templates["key_profiles"] != 2 || d.Templates["provisioning_templates"] != 0 {
		t.Errorf("dashboard templates %v", d.Templates)
	}

	// No answer and no audit entry holds a secret.
	var all strings.Builder
	for _, path := range []string{"/key-profiles", "/provisioning-templates", "/audit?limit=1000"} {
		r = e.user("GET", path, key, nil)
		e.want(r, http.StatusOK)
		all.Write(r.body)
	}
	entries, _, err := e.st.Audit(context.Background(), account, store.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		all.WriteString(en.Detail + en.Object)
	}
	for _, s := range []string{apiPIN, apiPIN2, apiKeystorePw} {
		if strings.Contains(all.String(), s) {
			t.Errorf("a secret is shown: %s", s)
		}
	}
	if !strings.Contains(all.String(), "key_profile.pin") || !strings.Contains(all.String(), "provisioning_template.create") {
		t.Errorf("audit lacks the template changes")
	}
}
