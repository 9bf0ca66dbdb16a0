package server_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/internal/testcert"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/server"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

const apiBadIssuer = "Distrusted Intermediate CA"

// filesOnBot activates a bot of the account holding n certificates of
// apiBadIssuer in PEM files, and returns their fingerprints.
func (e *env) filesOnBot(account, key string, n int) []string {
	e.t.Helper()
	ctx := context.Background()
	bot, token := e.createBot(key, "web")
	if err := e.st.ActivateBot(ctx, account, bot, admin.Hash(token), store.Activation{Hostname: "web", CertSerial: "0a",
		Capability: 2}); err != nil {
		e.t.Fatal(err)
	}
	g := testcert.NewGenerator(e.t)
	var fs []protocol.Finding
	for i := range n {
		l, err := protocol.ParseLocation(fmt.Sprintf("file:///etc/ssl/site-%d.pem#0", i))
		if err != nil {
			e.t.Fatal(err)
		}
		fs = append(fs, protocol.Finding{Location: l, Source: "file", Format: "pem", SeenAt: time.Now(),
			Chain: [][]byte{g.New(e.t, testcert.Options{CN: fmt.Sprintf("site-%d.example.com", i), Issuer: apiBadIssuer})}})
	}
	scan := admin.NewID()
	if err := e.st.StartScan(ctx, account, bot, protocol.ScanStart{ScanID: scan, Trigger: "schedule"}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.st.Ingest(ctx, account, bot, scan, protocol.FindingsBatch{Seq: 1, Findings: fs}); err != nil {
		e.t.Fatal(err)
	}
	certs, _, err := e.st.Certificates(ctx, account, store.CertificateFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	var fps []string
	for _, c := range certs {
		fps = append(fps, c.Fingerprint)
	}
	return fps
}

func (e *env) planBatch(key string) server.BatchView {
	e.t.Helper()
	r := e.user("POST", "/batches", key, map[string]any{"name": "distrust", "filter": map[string]any{"issuer": apiBadIssuer},
		"wave_size": 2})
	e.want(r, http.StatusCreated)
	var b server.BatchView
	r.json(e.t, &b)
	return b
}

// P9, P6: every role against every route (A1).
func TestBatchRoleMatrix(t *testing.T) {
	e := newEnv(t)
	account, adminKey := e.account(10)
	fps := e.filesOnBot(account, adminKey, 3)
	b := e.planBatch(adminKey)
	checkRoleMatrix(t, e, account, []roleRoute{
		{"GET", "/batches", nil, rbac.ViewOrders, http.StatusOK},
		{"GET", "/batches/" + b.ID, nil, rbac.ViewOrders, http.StatusOK},
		{"GET", "/batches/" + b.ID + "/items?state=pending", nil, rbac.ViewOrders, http.StatusOK},
		{"GET", "/batches/" + b.ID + "/report", nil, rbac.ViewOrders, http.StatusOK},
		{"GET", "/batches/" + b.ID + "/report.csv", nil, rbac.ViewOrders, http.StatusOK},
		{"POST", "/batches", func(role string) any {
			return map[string]any{"name": "by " + role, "filter": map[string]any{"q": "site-1"}}
		}, rbac.ManageOrders, http.StatusCreated},
		{"GET", "/schedules", nil, rbac.ViewOrders, http.StatusOK},
		{"POST", "/schedules", func(string) any {
			return map[string]any{"action": "renewal", "fingerprint": fps[0], "auto_renew_days": 30}
		}, rbac.ManageOrders, http.StatusCreated},
	})
	// Start, stop and cancel change state: each role gets its own object.
	for _, role := range rbac.Roles() {
		key, err := admin.CreateAPIKey(context.Background(), e.st, account, string(role))
		if err != nil {
			t.Fatal(err)
		}
		want := http.StatusForbidden
		if rbac.Can(role, rbac.ManageOrders) {
			want = http.StatusOK
		}
		for _, path := range []string{"/start", "/stop"} {
			b := e.planBatch(adminKey)
			if r := e.user("POST", "/batches/"+b.ID+path, key, nil); r.status != want {
				t.Errorf("%s POST %s: %d, want %d: %s", role, path, r.status, want, r.body)
			}
		}
		r := e.user("POST", "/schedules", adminKey, map[string]any{"action": "recheck", "fingerprint": fps[1],
			"at": time.Now().Add(time.Hour).Format(time.RFC3339)})
		e.want(r, http.StatusCreated)
		var s server.ScheduleView
		r.json(t, &s)
		if r := e.user("DELETE", "/schedules/"+s.ID, key, nil); r.status != want {
			t.Errorf("%s DELETE schedule: %d, want %d: %s", role, r.status, want, r.body)
		}
	}
}

// P9: plan, look, start, stop and report through the API.
func TestBatchAPI(t *testing.T) {
	e := newEnv(t)
	account, key := e.account(10)
	fps := e.filesOnBot(account, key, 5)

	bad := []struct {
		body  any
		field string
	}{
		{map[string]any{"name": "x"}, "filter"},
		{map[string]any{"name": "x", "filter": map[string]any{"issuer": "x"}, "wave_size": 5000}, "wave_size"},
		{map[string]any{"name": "x", "filter": map[string]any{"issuer": "x"}, "action": "renew"}, "action"},
		{map[string]any{"name": "x", "filter": map[string]any{"issuer": "x", "colour": "red"}}, "colour"},
		{map[string]any{"name": "x", "filter": map[string]any{"expires_before": "soon"}}, "expires_before"},
	}
	for _, b := range bad {
		r := e.user("POST", "/batches", key, b.body)
		e.want(r, http.StatusBadRequest)
		if msg := r.errorText(t); !strings.Contains(msg, b.field) {
			t.Errorf("error %q does not name %s", msg, b.field)
		}
	}
	r := e.user("POST", "/batches", key, map[string]any{"name": "distrust", "filter": map[string]any{"issuer": apiBadIssuer,
		"expires_after": "2020-01-01T00:00:00Z"}, "wave_size": 2, "max_failures": 1})
	e.want(r, http.StatusCreated)
	var b server.BatchView
	r.json(t, &b)
	if b.Status != store.BatchPlanned || b.Counts.Total != 5 || b.Counts.Pending != 5 || b.WaveSize != 2 || b.MaxFailures != 1 ||
		!strings.Contains(string(b.Filter), `"expires_after":"2020-01-01T00:00:00Z"`) {
		t.Fatalf("plan %s", r.body)
	}
	var items struct{ Items []server.BatchItemView }
	r = e.user("GET", "/batches/"+b.ID+"/items?limit=2&offset=2", key, nil)
	e.want(r, http.StatusOK)
	r.json(t, &items)
	if len(items.Items) != 2 || items.Items[0].Seq != 3 || items.Items[0].Wave != 2 || !strings.HasPrefix(items.Items[0].Location, "file:///") {
		t.Fatalf("items %s", r.body)
	}
	e.want(e.user("GET", "/batches/"+b.ID+"/items?state=lost", key, nil), http.StatusBadRequest)
	e.want(e.user("GET", "/batches/"+b.ID+"/items?offset=-1", key, nil), http.StatusBadRequest)
	e.want(e.user("GET", "/batches/nope", key, nil), http.StatusNotFound)
	e.want(e.user("POST", "/batches/nope/start", key, nil), http.StatusNotFound)

	e.want(e.user("POST", "/batches/"+b.ID+"/start", key, nil), http.StatusOK)
	e.want(e.user("POST", "/batches/"+b.ID+"/start", key, nil), http.StatusConflict)
	r = e.user("POST", "/batches/"+b.ID+"/stop", key, nil)
	e.want(r, http.StatusOK)
	r.json(t, &b)
	if b.Status != store.BatchStopping || b.Counts.Skipped != 5 {
		t.Fatalf("stopped %s", r.body)
	}
	var list struct{ Batches []server.BatchView }
	r = e.user("GET", "/batches", key, nil)
	e.want(r, http.StatusOK)
	r.json(t, &list)
	if len(list.Batches) != 1 || list.Batches[0].ID != b.ID {
		t.Fatalf("list %s", r.body)
	}

	var rep server.BatchReportView
	r = e.user("GET", "/batches/"+b.ID+"/report", key, nil)
	e.want(r, http.StatusOK)
	r.json(t, &rep)
	if rep.Batch.ID != b.ID || len(rep.Waves) != 3 || rep.Waves[0].Skipped != 2 || len(rep.Failures) != 0 {
		t.Fatalf("report %s", r.body)
	}
	r = e.user("GET", "/batches/"+b.ID+"/report.csv", key, nil)
	e.want(r, http.StatusOK)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Fatalf("content type %q", ct)
	}
	rows, err := csv.NewReader(strings.NewReader(string(r.body))).ReadAll()
	if err != nil || len(rows) != 6 || rows[0][0] != "seq" || rows[1][5] != store.ItemSkipped {
		t.Fatalf("CSV %q %v", rows, err)
	}

	// Schedules (P6).
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	r = e.user("POST", "/schedules", key, map[string]any{"action": "rotate", "fingerprint": fps[0], "at": at.Format(time.RFC3339)})
	e.want(r, http.StatusCreated)
	var s server.ScheduleView
	r.json(t, &s)
	if s.Action != "rotate" || s.At == nil || !s.At.Equal(at) || s.Status != store.SchedulePending {
		t.Fatalf("schedule %s", r.body)
	}
	r = e.user("POST", "/schedules", key, map[string]any{"action": "rotate", "fingerprint": fps[0]})
	e.want(r, http.StatusBadRequest)
	if !strings.Contains(r.errorText(t), "at") {
		t.Fatalf("error %s", r.body)
	}
	var ss struct{ Schedules []server.ScheduleView }
	r = e.user("GET", "/schedules", key, nil)
	e.want(r, http.StatusOK)
	r.json(t, &ss)
	if len(ss.Schedules) != 1 || ss.Schedules[0].ID != s.ID {
		t.Fatalf("schedules %s", r.body)
	}
	e.want(e.user("DELETE", "/schedules/"+s.ID, key, nil), http.StatusOK)
	e.want(e.user("DELETE", "/schedules/nope", key, nil), http.StatusNotFound)
}
