package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// keyOrder makes an order that made (alg set) or kept a key, straight in
// the store, then moves it to status.
func (e *ordEnv) keyOrder(fp, location, alg, where, ref, status string) store.Order {
	e.t.Helper()
	ctx := context.Background()
	o := store.Order{ID: admin.NewID(), Account: e.account, BotID: e.botID, Action: protocol.ActionRotate, Fingerprint: fp,
		Location: location, TemplateID: e.template, Connector: "local", CreatedBy: "test", DeployKind: protocol.DeployPEM,
		KeyWhere: where, KeyAlgorithm: alg, KeyRef: ref}
	if err := e.st.CreateOrder(ctx, o, nil); err != nil {
		e.t.Fatal(err)
	}
	o, err := e.st.TransitionOrder(ctx, e.account, o.ID, nil, store.OrderPatch{Status: &status}, store.OrderEvent{OK: true})
	if err != nil {
		e.t.Fatal(err)
	}
	return o
}

// TestKeysPageByRole: every role that may view certificates sees the key
// inventory and its nav link; order links only with orders.view (P4, A1).
func TestKeysPageByRole(t *testing.T) {
	e := newOrdEnv(t)
	o := e.keyOrder(e.fp, ordFileURI, "ecdsa-p256", protocol.KeyWhereSoftware, "", store.OrderRotated)
	for _, role := range rbac.Roles() {
		t.Run(string(role), func(t *testing.T) {
			u := e.login(string(role))
			w := e.get(u, "/keys")
			if !rbac.Can(role, rbac.ViewCertificates) {
				btWant(t, w, http.StatusForbidden, `id="error-title"`)
				return
			}
			body := btWant(t, w, http.StatusOK, `id="nav-keys"`, `id="keys-found"`, `id="keys-made"`,
				`data-order="`+o.ID+`"`, "ecdsa-p256")
			link := `href="/orders/` + o.ID + `"`
			if shown, want := strings.Contains(body, link), rbac.Can(role, rbac.ViewOrders); shown != want {
				t.Errorf("order link shown %v, want %v", shown, want)
			}
		})
	}
}

// TestKeysPage: the two tables, a location's history newest first with
// the key replaced, escaping (P4), the filter and bad input, and
// another account's view.
func TestKeysPage(t *testing.T) {
	e := newOrdEnv(t)
	ctx := context.Background()
	adm := e.login("administrator")

	// A key object on a token whose label is a script.
	keyLoc, err := protocol.ParseLocation("pkcs11:token=prod;object=web;type=private;id=%01")
	if err != nil {
		t.Fatal(err)
	}
	scan := admin.NewID()
	if err := e.st.StartScan(ctx, e.account, e.botID, protocol.ScanStart{ScanID: scan, Trigger: protocol.TriggerSchedule}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Ingest(ctx, e.account, e.botID, scan, protocol.FindingsBatch{Seq: 1, Findings: []protocol.Finding{
		{Location: keyLoc, Source: "pkcs11", Format: "pkcs11", SeenAt: e.now,
			Key: &protocol.KeyInfo{Algorithm: "RSA", Bits: 3072, Class: protocol.KeyClassPrivate, ID: "01", Label: xssCN}},
	}}); err != nil {
		t.Fatal(err)
	}

	first := e.keyOrder(e.fp, ordFileURI, "ecdsa-p256", protocol.KeyWhereSoftware, "", store.OrderRotated)
	renew := e.keyOrder(e.fp, ordFileURI, "", protocol.KeyWhereSoftware, "", store.OrderDeployed)
	xss := e.keyOrder(e.xssFP, ordRawXSS, "rsa-3072", protocol.KeyWherePKCS11, xssCN, store.OrderFailed)

	body := btWant(t, e.get(adm, "/keys"), http.StatusOK, `data-key="`+keyLoc.String()+`"`, "RSA 3072",
		`data-location="`+ordFileURI+`"`, "&lt;script&gt;alert(1)", "ECDSA 256", "kept", "token")
	// The renewal (newer) comes before the rotation in its location.
	if i, j := strings.Index(body, `data-order="`+renew.ID+`"`), strings.Index(body, `data-order="`+first.ID+`"`); i < 0 || j < 0 || i > j {
		t.Errorf("history not newest first: renewal at %d, rotation at %d", i, j)
	}
	for _, bad := range []string{xssCN, "<script>", "style="} {
		if strings.Contains(body, bad) {
			t.Errorf("page holds %q (unescaped or inline)", bad)
		}
	}
	if n := strings.Count(body, "<script"); n != 1 {
		t.Errorf("%d script elements, want only the layout's app.js", n)
	}

	// The filter: one location, with its history only.
	only := btWant(t, e.get(adm, "/keys?"+url.Values{"location": {ordFileURI}, "bot": {e.botID}}.Encode()), http.StatusOK,
		`data-order="`+first.ID+`"`)
	if strings.Contains(only, `data-order="`+xss.ID+`"`) || strings.Contains(only, `data-key="`+keyLoc.String()+`"`) {
		t.Error("the location filter lets another location through")
	}
	btWant(t, e.get(adm, "/keys?location=file%3A%2F%2F%2Fnowhere"), http.StatusOK, `id="keys-made-empty"`)
	for _, q := range []string{"page=0", "page=x", "location=a%0Ab", "location=" + strings.Repeat("a", maxKeyLocation+1)} {
		btWant(t, e.get(adm, "/keys?"+q), http.StatusBadRequest, `id="keys-error"`)
	}

	// Another account's user sees none of it.
	other, err := e.st.CreateAccount(ctx, "Other")
	if err != nil {
		t.Fatal(err)
	}
	ob := btWant(t, e.get(e.loginIn(other.ID, "administrator"), "/keys"), http.StatusOK, `id="keys-made-empty"`, "No keys found")
	if strings.Contains(ob, first.ID) || strings.Contains(ob, keyLoc.String()) {
		t.Error("another account sees this account's keys")
	}
}

// TestKeysPaging: 50 rows a page, with the links.
func TestKeysPaging(t *testing.T) {
	e := newOrdEnv(t)
	adm := e.login("administrator")
	for range keyPageSize + 1 {
		e.keyOrder(e.fp, ordFileURI, "ecdsa-p256", protocol.KeyWhereSoftware, "", store.OrderRotated)
	}
	btWant(t, e.get(adm, "/keys"), http.StatusOK, `id="keys-next"`)
	p2 := btWant(t, e.get(adm, "/keys?page=2"), http.StatusOK, `id="keys-prev"`)
	if strings.Contains(p2, `id="keys-next"`) {
		t.Error("page 2 links to a page 3")
	}
	for _, tc := range []struct {
		q    keyQuery
		page int
		want string
	}{
		{keyQuery{}, 1, "/keys"},
		{keyQuery{}, 2, "/keys?page=2"},
		{keyQuery{Location: "file:///a b", Bot: "b1"}, 3, "/keys?bot=b1&location=file%3A%2F%2F%2Fa+b&page=3"},
	} {
		if got := tc.q.Link(tc.page); got != tc.want {
			t.Errorf("Link(%d) of %+v = %q, want %q", tc.page, tc.q, got, tc.want)
		}
	}
}
