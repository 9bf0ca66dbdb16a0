package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/server"
	"github.com/emsign/bot/protocol"
)

// P4: every role that may view the inventory reads the key inventory; the
// others get 403 (A1).
func TestKeysRoles(t *testing.T) {
	e := newEnv(t)
	account, _ := e.account(1)
	checkRoleMatrix(t, e, account, []roleRoute{
		{"GET", "/keys", nil, rbac.ViewCertificates, http.StatusOK},
		{"GET", "/keys?location=" + url.QueryEscape(apiPEMLoc) + "&limit=5&offset=5", nil, rbac.ViewCertificates, http.StatusOK},
	})
}

// P4: the keys rotations made, with where they were made, the certificate
// they serve and the key they replaced; each location's history; the
// filter, paging and bad input; another account sees none of it.
func TestKeysInventory(t *testing.T) {
	e := newEnv(t)
	f := newOrdersFixture(t, e)
	ctx := context.Background()
	_, otherKey := e.account(1)

	// A key object on a token, found by the same scan.
	keyLoc, err := protocol.ParseLocation("pkcs11:token=prod;object=web;type=private;id=%01")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Ingest(ctx, f.account, f.b.id, "s1", protocol.FindingsBatch{Seq: 2, Findings: []protocol.Finding{
		{Location: keyLoc, Source: "pkcs11", Format: "pkcs11", SeenAt: time.Now(),
			Key: &protocol.KeyInfo{Algorithm: "RSA", Bits: 3072, Class: protocol.KeyClassPrivate, ID: "01", Label: "web"}},
	}}); err != nil {
		t.Fatal(err)
	}

	var orders []server.OrderView
	for _, body := range []map[string]any{
		{"location": apiPEMLoc},
		{"location": apiJKSLoc},
		{"location": apiPEMLoc, "action": protocol.ActionRenew}, // keeps the key: history only
	} {
		r := e.user("POST", "/certificates/"+f.fp+"/rotate", f.key, body)
		e.want(r, http.StatusAccepted)
		var o server.OrderView
		r.json(t, &o)
		orders = append(orders, o)
	}
	cert, err := e.st.Certificate(ctx, f.account, f.fp)
	if err != nil {
		t.Fatal(err)
	}
	wantOld := server.KeyName(cert.KeyAlgorithm, cert.KeyBits)

	get := func(key, query string) server.KeysView {
		t.Helper()
		r := e.user("GET", "/keys"+query, key, nil)
		e.want(r, http.StatusOK)
		var v server.KeysView
		r.json(t, &v)
		return v
	}
	v := get(f.key, "")
	if len(v.Found) != 1 || v.Found[0].URI != keyLoc.String() || v.Found[0].Label != "web" || v.Found[0].Bits != 3072 ||
		v.Found[0].KeyID != "01" || !v.Found[0].Present {
		t.Errorf("found %+v", v.Found)
	}
	if len(v.Made) != 2 || v.Made[0].OrderID != orders[1].ID || v.Made[1].OrderID != orders[0].ID {
		t.Fatalf("made, newest first: %+v", v.Made)
	}
	pem := v.Made[1]
	if pem.Algorithm == "" || pem.Where != protocol.KeyWhereSoftware || pem.DeployKind != protocol.DeployPEM ||
		pem.Location != apiPEMLoc || pem.BotID != f.b.id || pem.Replaced != f.fp || wantOld == "" || pem.ReplacedKey != wantOld {
		t.Errorf("pem key %+v (want replaced key %q)", pem, wantOld)
	}
	if v.Made[0].DeployKind != protocol.DeployJKS {
		t.Errorf("jks key %+v", v.Made[0])
	}
	if len(v.Locations) != 2 || v.Locations[0].Location != apiJKSLoc || v.Locations[1].Location != apiPEMLoc {
		t.Fatalf("locations %+v", v.Locations)
	}
	if h := v.Locations[1].Orders; len(h) != 2 || h[0].OrderID != orders[0].ID || h[1].OrderID != orders[2].ID ||
		h[1].Algorithm != "" || h[1].Action != protocol.ActionRenew || h[1].ReplacedKey != wantOld {
		t.Errorf("pem history, oldest first: %+v", h)
	}
	if v.Limit != 100 || v.Offset != 0 {
		t.Errorf("paging %d/%d", v.Limit, v.Offset)
	}

	for _, tc := range []struct {
		name, query string
		made        int
	}{
		{"by location", "?location=" + url.QueryEscape(apiJKSLoc), 1},
		{"by location and bot", "?location=" + url.QueryEscape(apiPEMLoc) + "&bot=" + f.b.id, 1},
		{"another bot", "?location=" + url.QueryEscape(apiPEMLoc) + "&bot=nope", 0},
		{"first page", "?limit=1", 1},
		{"second page", "?limit=1&offset=1", 1},
		{"past the end", "?offset=2", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if v := get(f.key, tc.query); len(v.Made) != tc.made || len(v.Locations) != tc.made {
				t.Fatalf("made %+v, locations %+v", v.Made, v.Locations)
			}
		})
	}
	for _, bad := range []string{"?limit=0", "?limit=1001", "?limit=x", "?offset=-1"} {
		r := e.user("GET", "/keys"+bad, f.key, nil)
		e.want(r, http.StatusBadRequest)
		if name, _, _ := strings.Cut(bad[1:], "="); !strings.HasPrefix(r.errorText(t), name+":") {
			t.Errorf("%s: error %q does not name the field", bad, r.errorText(t))
		}
	}

	// Account isolation: another account's administrator sees nothing,
	// even filtering on this account's location and bot.
	for _, q := range []string{"", "?location=" + url.QueryEscape(apiPEMLoc) + "&bot=" + f.b.id} {
		if v := get(otherKey, q); len(v.Made) != 0 || len(v.Found) != 0 || len(v.Locations) != 0 {
			t.Errorf("other account %q: %+v", q, v)
		}
	}
	// A read-only role with the inventory but not the orders still sees it.
	basic, err := admin.CreateAPIKey(ctx, e.st, f.account, "basic_user")
	if err != nil {
		t.Fatal(err)
	}
	if v := get(basic, ""); len(v.Made) != 2 {
		t.Errorf("basic user: %+v", v.Made)
	}
}
