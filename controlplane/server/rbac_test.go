package server_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/seal"
	"github.com/emsign/bot/controlplane/server"
	"github.com/emsign/bot/controlplane/store"
)

// zeroFP is a fingerprint no certificate has.
const zeroFP = "0000000000000000000000000000000000000000000000000000000000000000"

func TestRoleMatrix(t *testing.T) {
	e := newEnv(t)
	account, adminKey := e.account(1000)
	bot, _ := e.createBot(adminKey, "web")

	routes := []roleRoute{
		{"GET", "/dashboard", nil, rbac.ViewDashboard, http.StatusOK},
		{"GET", "/audit", nil, rbac.ViewAudit, http.StatusOK},
		{"GET", "/bots", nil, rbac.ViewBots, http.StatusOK},
		{"GET", "/bots/" + bot, nil, rbac.ViewBots, http.StatusOK},
		{"GET", "/bots/" + bot + "/targets", nil, rbac.ViewBots, http.StatusOK},
		{"GET", "/bots/" + bot + "/scans", nil, rbac.ViewBots, http.StatusOK},
		{"POST", "/bots", func(string) any { return map[string]string{"name": "x"} }, rbac.ManageBots, http.StatusCreated},
		{"PUT", "/bots/" + bot + "/targets", func(string) any { return map[string]any{"targets": []string{"tls://h:443"}} },
			rbac.ManageBots, http.StatusOK},
		{"POST", "/bots/" + bot + "/scans", func(string) any { return nil }, rbac.ManageBots, http.StatusAccepted},
		{"GET", "/certificates", nil, rbac.ViewCertificates, http.StatusOK},
		{"POST", "/imports", func(string) any { return "not a bundle" }, rbac.ImportBundles, http.StatusUnprocessableEntity},
		{"GET", "/users", nil, rbac.ViewUsers, http.StatusOK},
		{"POST", "/users", func(role string) any {
			return map[string]string{"email": role + "@example.com", "role": "basic_user", "password": "correct horse battery"}
		}, rbac.ManageUsers, http.StatusCreated},
		{"GET", "/apikeys", nil, rbac.ViewUsers, http.StatusOK},
		{"POST", "/apikeys", func(string) any { return map[string]string{"role": "basic_user"} }, rbac.ManageUsers, http.StatusCreated},
		// Orders (D7, S5): no certificate here, so the permitted roles get
		// the answer about it, the others 403.
		{"GET", "/orders", nil, rbac.ViewOrders, http.StatusOK},
		{"GET", "/orders/nope", nil, rbac.ViewOrders, http.StatusNotFound},
		{"GET", "/orders/nope/certificate", nil, rbac.ViewOrders, http.StatusNotFound},
		{"POST", "/certificates/" + zeroFP + "/rotate", func(string) any { return map[string]any{} }, rbac.ManageOrders,
			http.StatusNotFound},
		{"POST", "/certificates/" + zeroFP + "/revoke", func(string) any { return map[string]any{"reason": 4} },
			rbac.ManageOrders, http.StatusBadRequest},
		{"POST", "/certificates/" + zeroFP + "/suspend", func(string) any { return map[string]any{} }, rbac.ManageOrders,
			http.StatusBadRequest},
		{"POST", "/certificates/" + zeroFP + "/resume", func(string) any { return nil }, rbac.ManageOrders,
			http.StatusBadRequest},
	}
	checkRoleMatrix(t, e, account, routes)
}

func TestAPIChangesAudited(t *testing.T) {
	e := newEnv(t)
	_, key := e.account(10)
	keyID := admin.APIKeyID(key)
	const targetPw, userPw = "TargetPassw0rd", "correct horse battery"
	bot, token := e.createBot(key, "web")
	e.want(e.user("PUT", "/bots/"+bot+"/targets", key, map[string]any{"targets": []string{"file:///etc/ssl?password=" + targetPw}}),
		http.StatusOK)
	r := e.user("POST", "/bots/"+bot+"/token", key, nil)
	e.want(r, http.StatusOK)
	var tok map[string]string
	r.json(t, &tok)
	r = e.user("POST", "/users", key, map[string]string{"email": "bob@example.com", "role": "manager", "password": userPw})
	e.want(r, http.StatusCreated)
	var u map[string]any
	r.json(t, &u)
	for k := range u {
		if strings.Contains(k, "password") || strings.Contains(k, "totp") || strings.Contains(k, "hash") {
			t.Errorf("user shows %q", k)
		}
	}
	if u["email"] != "bob@example.com" || u["two_factor"] != false {
		t.Errorf("user %v", u)
	}
	r = e.user("POST", "/users", key, map[string]string{"email": "BOB@example.com", "role": "manager", "password": userPw})
	e.want(r, http.StatusBadRequest)
	var inv struct{ Error, Field string }
	r.json(t, &inv)
	if inv.Field != "email" || !strings.Contains(inv.Error, "already in use") {
		t.Errorf("duplicate email: %s", r.body)
	}
	r = e.user("POST", "/apikeys", key, map[string]string{"role": "basic_user"})
	e.want(r, http.StatusCreated)
	var nk map[string]string
	r.json(t, &nk)
	e.want(e.user("GET", "/bots", nk["api_key"], nil), http.StatusForbidden)
	e.want(e.user("GET", "/certificates", nk["api_key"], nil), http.StatusOK)
	e.want(e.user("DELETE", "/apikeys/"+nk["id"], key, nil), http.StatusOK)
	e.want(e.user("GET", "/certificates", nk["api_key"], nil), http.StatusUnauthorized)
	e.want(e.user("DELETE", "/apikeys/"+nk["id"], key, nil), http.StatusNotFound)

	r = e.user("GET", "/apikeys", key, nil)
	e.want(r, http.StatusOK)
	if strings.Contains(string(r.body), key) || strings.Contains(string(r.body), "hash") {
		t.Errorf("key list shows a secret: %s", r.body)
	}

	var page struct {
		Entries []struct {
			ID        int64  `json:"id"`
			ActorKind string `json:"actor_kind"`
			Actor     string `json:"actor"`
			Action    string `json:"action"`
			Object    string `json:"object"`
			Detail    string `json:"detail"`
			Remote    string `json:"remote"`
		} `json:"entries"`
		Next int64 `json:"next"`
	}
	r = e.user("GET", "/audit", key, nil)
	e.want(r, http.StatusOK)
	r.json(t, &page)
	var actions []string
	for _, en := range page.Entries {
		actions = append(actions, en.Action)
		if (en.Actor != keyID && en.Action != "denied") || en.ActorKind != "apikey" || en.Remote != "127.0.0.1" {
			t.Errorf("entry %+v", en)
		}
		for _, s := range []string{targetPw, userPw, token, tok["token"], key, nk["api_key"]} {
			if strings.Contains(en.Detail, s) || strings.Contains(en.Object, s) {
				t.Errorf("entry %+v holds a secret", en)
			}
		}
	}
	got := strings.Join(actions, " ")
	// The denial is the new basic_user key's GET /bots.
	want := "apikey.revoke denied apikey.create user.create bot.token targets.update bot.create"
	if got != want {
		t.Errorf("actions %q, want %q", got, want)
	}

	// Filters and pages.
	r = e.user("GET", "/audit?action=bot.&limit=1", key, nil)
	e.want(r, http.StatusOK)
	r.json(t, &page)
	if len(page.Entries) != 1 || page.Entries[0].Action != "bot.token" || page.Next == 0 {
		t.Fatalf("first page %+v", page)
	}
	r = e.user("GET", "/audit?action=bot.&limit=1&before="+jsonInt(page.Next), key, nil)
	e.want(r, http.StatusOK)
	r.json(t, &page)
	if len(page.Entries) != 1 || page.Entries[0].Action != "bot.create" || page.Entries[0].Object != bot {
		t.Fatalf("second page %+v", page)
	}
	e.want(e.user("GET", "/audit?before=x", key, nil), http.StatusBadRequest)

	// The dashboard's numbers, snake_case.
	r = e.user("GET", "/dashboard", key, nil)
	e.want(r, http.StatusOK)
	var d map[string]any
	r.json(t, &d)
	for _, k := range []string{"certificates", "endpoints", "keys", "expiring", "by_issuer", "by_key", "by_source", "bots"} {
		if _, ok := d[k]; !ok {
			t.Errorf("dashboard lacks %q: %s", k, r.body)
		}
	}
	if b := d["bots"].(map[string]any); b["total"] != float64(1) {
		t.Errorf("dashboard bots %v", b)
	}
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestDashboardMounted(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "cp.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := newEnv(t)
	key, err := seal.LoadKey(filepath.Join(dir, "secret.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.New(key)
	if err != nil {
		t.Fatal(err)
	}
	dash := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "dashboard "+r.URL.Path)
	})
	srv, err := server.New(server.Config{Store: st, CA: e.ca, Sealer: sealer, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Dashboard: dash, MaxWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tests := []struct {
		path   string
		status int
		body   string
	}{
		{"/", http.StatusTeapot, "dashboard /"},
		{"/certificates", http.StatusTeapot, "dashboard /certificates"},
		{"/api/v1/nope", http.StatusNotFound, "no such API route"},
		{"/api/v1/bots", http.StatusUnauthorized, "API key required"},
		{"/bot/v1/nope", http.StatusNotFound, "no such bot API call"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", tt.path, nil))
		if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.body) {
			t.Errorf("GET %s: %d %q, want %d %q", tt.path, rec.Code, rec.Body.String(), tt.status, tt.body)
		}
	}
}

// roleRoute is one user API route of a role matrix: the permission it
// needs and the status it answers when allowed.
type roleRoute struct {
	method, path string
	body         func(role string) any
	perm         rbac.Permission
	ok           int
}

// checkRoleMatrix calls every route with an API key of every role (A1): a
// role with the permission gets the route's status; one without gets 403
// naming the permission, and the refusal is audited against the key.
func checkRoleMatrix(t *testing.T, e *env, account string, routes []roleRoute) {
	t.Helper()
	ctx := context.Background()
	for _, role := range rbac.Roles() {
		key, err := admin.CreateAPIKey(ctx, e.st, account, string(role))
		if err != nil {
			t.Fatal(err)
		}
		for _, rt := range routes {
			t.Run(string(role)+" "+rt.method+" "+rt.path, func(t *testing.T) {
				var body any
				if rt.body != nil {
					body = rt.body(string(role))
				}
				r := e.user(rt.method, rt.path, key, body)
				if rbac.Can(role, rt.perm) {
					if r.status != rt.ok {
						t.Fatalf("status %d, want %d: %s", r.status, rt.ok, r.body)
					}
					return
				}
				if r.status != http.StatusForbidden {
					t.Fatalf("status %d, want 403: %s", r.status, r.body)
				}
				want := "forbidden: your role (" + string(role) + ") lacks " + string(rt.perm)
				if msg := r.errorText(t); msg != want {
					t.Fatalf("error %q, want %q", msg, want)
				}
				// The refusal is audited.
				entries, _, err := e.st.Audit(ctx, account, store.AuditFilter{Limit: 1})
				if err != nil {
					t.Fatal(err)
				}
				if len(entries) != 1 || entries[0].Action != "denied" || entries[0].Actor != admin.APIKeyID(key) ||
					entries[0].ActorKind != "apikey" || entries[0].Remote != "127.0.0.1" ||
					!strings.Contains(entries[0].Detail, string(rt.perm)) {
					t.Fatalf("refusal audited as %+v", entries)
				}
			})
		}
	}
}
