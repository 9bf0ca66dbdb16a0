package server_test

import (
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/internal/testcert"
	"github.com/emsign/bot/protocol"
)

// A location's attributes show in the user API, as the latest scan saw
// them; a change of attributes is no new location; none: no key at all.
func TestLocationAttributes(t *testing.T) {
	e := newEnv(t)
	account, key := e.account(1)
	_, otherKey := e.account(1)
	id, token := e.createBot(key, "web")
	b := e.activate(account, token)
	if b.id != id {
		t.Fatalf("activated %s, created %s", b.id, id)
	}
	g := testcert.NewGenerator(t)
	der := g.New(t, testcert.Options{CN: "www.example.com"})
	fp := protocol.Fingerprint(der)
	vip := protocol.Location{Scheme: "tls", Host: "10.0.0.5:443"}
	plain := protocol.Location{Scheme: "tls", Host: "10.0.0.6:443"}
	scan := func(attrs map[string]string) {
		t.Helper()
		id := admin.NewID()
		b.want(b.do("POST", protocol.PathScans, protocol.ScanStart{ScanID: id, Trigger: "schedule", Started: time.Now()}), http.StatusOK)
		b.want(b.do("POST", protocol.FindingsPath(id), protocol.FindingsBatch{Seq: 1, Findings: []protocol.Finding{
			{Location: vip, Source: "f5", Chain: [][]byte{der}, Attributes: attrs, SeenAt: time.Now()},
			{Location: plain, Source: "tls", Chain: [][]byte{der}, SeenAt: time.Now()},
		}}), http.StatusOK)
		b.want(b.do("POST", protocol.ScanCompletePath(id), protocol.ScanComplete{Finished: time.Now(), Batches: 1, Complete: true}), http.StatusOK)
	}
	type location map[string]any
	check := func(want map[string]string) {
		t.Helper()
		var list struct {
			Certificates []struct{ Locations []location }
		}
		e.user("GET", "/certificates", key, nil).json(t, &list)
		var one struct{ Locations []location }
		r := e.user("GET", "/certificates/"+fp, key, nil)
		e.want(r, http.StatusOK)
		r.json(t, &one)
		if len(list.Certificates) != 1 {
			t.Fatalf("%d certificates, want 1", len(list.Certificates))
		}
		for name, locs := range map[string][]location{"list": list.Certificates[0].Locations, "certificate": one.Locations} {
			if len(locs) != 2 || locs[0]["uri"] != vip.String() || locs[1]["uri"] != plain.String() {
				t.Fatalf("%s: locations %v", name, locs)
			}
			if _, ok := locs[1]["attributes"]; ok {
				t.Fatalf("%s: empty attributes shown: %v", name, locs[1])
			}
			got, ok := locs[0]["attributes"].(map[string]any)
			if want == nil {
				if _, shown := locs[0]["attributes"]; shown {
					t.Fatalf("%s: attributes %v, want none", name, locs[0]["attributes"])
				}
				continue
			}
			w := map[string]any{}
			for k, v := range want {
				w[k] = v
			}
			if !ok || !reflect.DeepEqual(got, w) {
				t.Fatalf("%s: attributes %v, want %v", name, locs[0]["attributes"], want)
			}
		}
	}
	scan(map[string]string{"virtual_servers": "/Common/vs_www", "failover": "active"})
	check(map[string]string{"virtual_servers": "/Common/vs_www", "failover": "active"})
	scan(map[string]string{"virtual_servers": "/Common/vs_www,/Common/vs_www2", "failover": "standby"})
	check(map[string]string{"virtual_servers": "/Common/vs_www,/Common/vs_www2", "failover": "standby"})
	scan(nil)
	check(nil)

	// Another account sees neither the certificate nor its attributes.
	e.want(e.user("GET", "/certificates/"+fp, otherKey, nil), http.StatusNotFound)
	var c struct{ Certificates []map[string]any }
	e.user("GET", "/certificates", otherKey, nil).json(t, &c)
	if len(c.Certificates) != 0 {
		t.Fatalf("other account sees %v", c.Certificates)
	}
}
