package server

import (
	"context"
	"net/http"

	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

// CSR templates (P1), key profiles (P3) and provisioning templates (P2):
// the same routes for each kind under /api/v1/csr-templates,
// /api/v1/key-profiles and /api/v1/provisioning-templates:
//
//	GET    /        list                 ViewTemplates
//	POST   /        create               ManageTemplates
//	GET    /{id}    read                 ViewTemplates
//	PATCH  /{id}    change what is given ManageTemplates
//	DELETE /{id}    delete               ManageTemplates (409 while a provisioning template uses it)
//	POST   /{id}/clone   {"name": ...}   ManageTemplates
//	POST   /{id}/disable, /{id}/enable   ManageTemplates
//
// and PUT /api/v1/key-profiles/{id}/pin {"pin": ...} (P3: "edit the HSM
// password"). Secrets (a PIN, a manual keystore password) are write-only:
// answers say pin_set, keystore_password_set.

// templateRoute is one user API route of templates.
type templateRoute struct {
	pattern string
	perm    rbac.Permission
	action  string
	h       userHandler
}

// templateKind is what differs between the three kinds: the ops calls.
type templateKind[V, S, P any] struct {
	path, action string
	list         func(ctx context.Context, a ops.Actor) ([]V, error)
	get          func(ctx context.Context, a ops.Actor, id string) (V, error)
	create       func(ctx context.Context, a ops.Actor, s S) (V, error)
	update       func(ctx context.Context, a ops.Actor, id string, p P) (V, error)
	clone        func(ctx context.Context, a ops.Actor, id, name string) (V, error)
	enable       func(ctx context.Context, a ops.Actor, id string, enabled bool) (V, error)
	del          func(ctx context.Context, a ops.Actor, id string) error
}

func (k templateKind[V, S, P]) routes(s *Server, prefix string) []templateRoute {
	base := prefix + "/" + k.path
	return []templateRoute{
		{"GET " + base, rbac.ViewTemplates, "", func(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
			vs, err := k.list(r.Context(), a)
			if err != nil {
				s.opsError(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{k.action + "s": vs})
		}},
		{"POST " + base, rbac.ManageTemplates, k.action + ".create", func(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
			var spec S
			if err := readJSON(w, r, &spec, maxBody, true); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
			s.templateAnswer(w, r, http.StatusCreated)(k.create(r.Context(), a, spec))
		}},
		{"GET " + base + "/{id}", rbac.ViewTemplates, "", func(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
			s.templateAnswer(w, r, http.StatusOK)(k.get(r.Context(), a, r.PathValue("id")))
		}},
		{"PATCH " + base + "/{id}", rbac.ManageTemplates, k.action + ".update", func(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
			var p P
			if err := readJSON(w, r, &p, maxBody, true); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
			s.templateAnswer(w, r, http.StatusOK)(k.update(r.Context(), a, r.PathValue("id"), p))
		}},
		{"DELETE " + base + "/{id}", rbac.ManageTemplates, k.action + ".delete", func(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
			id := r.PathValue("id")
			if err := k.del(r.Context(), a, id); err != nil {
				s.opsError(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"id": id, "status": "deleted"})
		}},
		{"POST " + base + "/{id}/clone", rbac.ManageTemplates, k.action + ".clone", func(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
			var req struct {
				Name string `json:"name"`
			}
			if err := readJSON(w, r, &req, maxBody, true); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
			s.templateAnswer(w, r, http.StatusCreated)(k.clone(r.Context(), a, r.PathValue("id"), req.Name))
		}},
		{"POST " + base + "/{id}/disable", rbac.ManageTemplates, k.action + ".disable", func(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
			s.templateAnswer(w, r, http.StatusOK)(k.enable(r.Context(), a, r.PathValue("id"), false))
		}},
		{"POST " + base + "/{id}/enable", rbac.ManageTemplates, k.action + ".enable", func(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
			s.templateAnswer(w, r, http.StatusOK)(k.enable(r.Context(), a, r.PathValue("id"), true))
		}},
	}
}

// templateAnswer writes v, or the error.
func (s *Server) templateAnswer(w http.ResponseWriter, r *http.Request, status int) func(v any, err error) {
	return func(v any, err error) {
		if err != nil {
			s.opsError(w, r, err)
			return
		}
		writeJSON(w, status, v)
	}
}

// templateRoutes are the routes of the three kinds; routes() registers
// them.
func (s *Server) templateRoutes(prefix string) []templateRoute {
	o := s.ops
	// The CA connectors a provisioning template may name; configured
	// connectors replace this list when they come.
	connectors := ops.DefaultCAConnectors()
	var out []templateRoute
	out = append(out, templateKind[ops.CSRTemplateView, ops.CSRTemplateSpec, ops.CSRTemplatePatch]{
		path: "csr-templates", action: "csr_template",
		list: o.CSRTemplates, get: o.CSRTemplate, create: o.CreateCSRTemplate, update: o.UpdateCSRTemplate,
		clone: o.CloneCSRTemplate, enable: o.SetCSRTemplateEnabled, del: o.DeleteCSRTemplate,
	}.routes(s, prefix)...)
	out = append(out, templateKind[ops.KeyProfileView, ops.KeyProfileSpec, ops.KeyProfilePatch]{
		path: "key-profiles", action: "key_profile",
		list: o.KeyProfiles, get: o.KeyProfile, create: o.CreateKeyProfile, update: o.UpdateKeyProfile,
		clone: o.CloneKeyProfile, enable: o.SetKeyProfileEnabled, del: o.DeleteKeyProfile,
	}.routes(s, prefix)...)
	out = append(out, templateKind[ops.ProvisioningTemplateView, ops.ProvisioningTemplateSpec, ops.ProvisioningTemplatePatch]{
		path: "provisioning-templates", action: "provisioning_template",
		list: o.ProvisioningTemplates, get: o.ProvisioningTemplate,
		create: func(ctx context.Context, a ops.Actor, sp ops.ProvisioningTemplateSpec) (ops.ProvisioningTemplateView, error) {
			return o.CreateProvisioningTemplate(ctx, a, sp, connectors)
		},
		update: func(ctx context.Context, a ops.Actor, id string, p ops.ProvisioningTemplatePatch) (ops.ProvisioningTemplateView, error) {
			return o.UpdateProvisioningTemplate(ctx, a, id, p, connectors)
		},
		clone: o.CloneProvisioningTemplate, enable: o.SetProvisioningTemplateEnabled, del: o.DeleteProvisioningTemplate,
	}.routes(s, prefix)...)
	out = append(out, templateRoute{"PUT " + prefix + "/key-profiles/{id}/pin", rbac.ManageTemplates, "key_profile.pin",
		func(w http.ResponseWriter, r *http.Request, _ store.APIKey, a ops.Actor) {
			var req struct {
				PIN string `json:"pin"`
			}
			if err := readJSON(w, r, &req, maxBody, true); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
			s.templateAnswer(w, r, http.StatusOK)(o.SetKeyProfilePIN(r.Context(), a, r.PathValue("id"), req.PIN))
		}})
	return out
}
