package server_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/internal/testcert"
	"github.com/emsign/bot/protocol"
)

func TestUserBotRoutes(t *testing.T) {
	e := newEnv(t)
	account, key := e.account(1)

	// Authentication.
	e.want(e.user("GET", "/bots", "", nil), http.StatusUnauthorized)
	e.want(e.user("GET", "/bots", key+"x", nil), http.StatusUnauthorized)
	e.want(e.user("GET", "/bots", "emcp_nonsense", nil), http.StatusUnauthorized)

	// Create: the token once; a second bot is over the limit.
	e.want(e.user("POST", "/bots", key, map[string]string{"name": " "}), http.StatusBadRequest)
	e.want(e.user("POST", "/bots", key, `{"name":"x","colour":"red"}`), http.StatusBadRequest)
	id, token := e.createBot(key, "web")
	if len(token) != 36 || token[14] != '4' {
		t.Fatalf("token %q is not a UUIDv4", token)
	}
	r := e.user("POST", "/bots", key, map[string]string{"name": "second"})
	e.want(r, http.StatusConflict)
	if !strings.Contains(r.errorText(t), "bot limit") {
		t.Fatalf("limit error %q", r.body)
	}

	var v admin.BotView
	r = e.user("GET", "/bots/"+id, key, nil)
	e.want(r, http.StatusOK)
	r.json(t, &v)
	if v.Status != protocol.BotActivationPending || v.Name != "web" || v.LastScan != nil || v.NextScan != nil {
		t.Fatalf("bot %+v", v)
	}
	e.want(e.user("GET", "/bots/nope", key, nil), http.StatusNotFound)

	// Edit (B7).
	r = e.user("PATCH", "/bots/"+id, key, map[string]any{"name": "web-1", "group": "dmz",
		"tags": []map[string]string{{"name": "owner", "value": "payments", "remarks": "pager 42"}}})
	e.want(r, http.StatusOK)
	r.json(t, &v)
	if v.Name != "web-1" || v.Group != "dmz" || len(v.Tags) != 1 || v.Tags[0].Remarks != "pager 42" {
		t.Fatalf("patched %+v", v)
	}
	for _, bad := range []string{`{"name":""}`, `{"tags":[{"value":"x"}]}`, `{"tags":"x"}`, `{"nmae":"x"}`, `not json`} {
		r = e.user("PATCH", "/bots/"+id, key, bad)
		e.want(r, http.StatusBadRequest)
	}
	if r := e.user("PATCH", "/bots/"+id, key, `{"tags":"x"}`); !strings.Contains(r.errorText(t), "tags") {
		t.Fatalf("error does not name the field: %s", r.body)
	}

	// Targets.
	good := map[string]any{"targets": []string{"tls://10.0.0.0/30:443,8443", "jks:///opt/app?password=env:KS_PASS", "file:///etc/ssl?password=s3cret"},
		"schedule": map[string]string{"kind": "weekly", "time": "02:30", "weekday": "sun", "timezone": "Asia/Kolkata"},
		"threads":  16, "max_runtime": "2h"}
	r = e.user("PUT", "/bots/"+id+"/targets", key, good)
	e.want(r, http.StatusOK)
	var tr struct {
		Targets    []string
		Schedule   protocol.Schedule
		Threads    int
		MaxRuntime string `json:"max_runtime"`
	}
	r.json(t, &tr)
	if len(tr.Targets) != 3 || tr.Targets[2] != "file:///etc/ssl?password=REDACTED" || tr.Threads != 16 || tr.MaxRuntime != "2h0m0s" {
		t.Fatalf("targets answer %+v", tr)
	}
	if strings.Contains(string(r.body), "s3cret") || strings.Contains(string(r.body), "KS_PASS") {
		t.Fatalf("secret in answer: %s", r.body)
	}
	badTargets := []struct {
		body  any
		field string
	}{
		{map[string]any{"targets": []string{"tls://h:443", "gopher://x"}}, "targets[1]"},
		{map[string]any{"targets": []string{"file:///x?password=topsecret&colour=red"}}, "targets[0]"},
		{map[string]any{"targets": []string{}, "schedule": map[string]string{"kind": "hourly"}}, "schedule.kind"},
		{map[string]any{"targets": []string{}, "schedule": map[string]string{"kind": "daily", "time": "25:00"}}, "schedule.time"},
		{map[string]any{"targets": []string{}, "schedule": map[string]string{"kind": "daily", "time": "01:00", "timezone": "Mars/Base"}}, "timezone"},
		{map[string]any{"targets": []string{}, "threads": -1}, "threads"},
		{map[string]any{"targets": []string{}, "max_runtime": "soon"}, "duration"},
		{map[string]any{"targets": "tls://x:443"}, "targets"},
	}
	for _, bt := range badTargets {
		r = e.user("PUT", "/bots/"+id+"/targets", key, bt.body)
		e.want(r, http.StatusBadRequest)
		if msg := r.errorText(t); !strings.Contains(msg, bt.field) || strings.Contains(msg, "topsecret") {
			t.Errorf("error %q should name %q and hide secrets", msg, bt.field)
		}
	}
	r = e.user("GET", "/bots/"+id+"/targets", key, nil)
	e.want(r, http.StatusOK)
	r.json(t, &tr)
	if len(tr.Targets) != 3 || tr.Schedule.Weekday != "sun" {
		t.Fatalf("GET targets %+v", tr)
	}
	r = e.user("GET", "/bots/"+id, key, nil)
	r.json(t, &v)
	if v.NextScan == nil || v.NextScan.In(time.FixedZone("IST", 5*3600+1800)).Weekday() != time.Sunday || v.Targets != 3 {
		t.Fatalf("next scan %v, targets %d", v.NextScan, v.Targets)
	}

	// Scans.
	r = e.user("POST", "/bots/"+id+"/scans", key, nil)
	e.want(r, http.StatusAccepted)
	var sr map[string]string
	r.json(t, &sr)
	r = e.user("GET", "/bots/"+id+"/scans", key, nil)
	e.want(r, http.StatusOK)
	var scans struct{ Scans []admin.ScanView }
	r.json(t, &scans)
	if len(scans.Scans) != 1 || scans.Scans[0].ID != sr["scan_id"] || scans.Scans[0].Trigger != "job" {
		t.Fatalf("scans %+v", scans)
	}
	e.want(e.user("GET", "/bots/"+id+"/scans/"+sr["scan_id"], key, nil), http.StatusOK)
	e.want(e.user("GET", "/bots/"+id+"/scans/nope", key, nil), http.StatusNotFound)

	// Token, suspend, deactivate.
	r = e.user("POST", "/bots/"+id+"/token", key, nil)
	e.want(r, http.StatusOK)
	var tok map[string]string
	r.json(t, &tok)
	if tok["token"] == token || len(tok["token"]) != 36 {
		t.Fatalf("new token %q", tok["token"])
	}
	e.want(e.user("POST", "/bots/"+id+"/suspend", key, nil), http.StatusOK)
	e.want(e.user("POST", "/bots/"+id+"/scans", key, nil), http.StatusConflict)
	e.want(e.user("POST", "/bots/"+id+"/deactivate", key, nil), http.StatusOK)
	e.want(e.user("POST", "/bots/"+id+"/suspend", key, nil), http.StatusConflict)
	e.want(e.user("POST", "/bots/"+id+"/token", key, nil), http.StatusConflict)

	var list struct{ Bots []admin.BotView }
	r = e.user("GET", "/bots", key, nil)
	e.want(r, http.StatusOK)
	r.json(t, &list)
	if len(list.Bots) != 1 || list.Bots[0].Status != protocol.BotInactive {
		t.Fatalf("list %+v", list)
	}
	// The inactive bot frees its place.
	e.createBot(key, "replacement")
	_ = account
}

func TestImportTargets(t *testing.T) {
	e := newEnv(t)
	_, key := e.account(3)
	a, _ := e.createBot(key, "a")
	b, _ := e.createBot(key, "b")
	_, otherKey := e.account(1)
	other, _ := e.createBot(otherKey, "other")
	e.want(e.user("PUT", "/bots/"+a+"/targets", key, map[string]any{"targets": []string{"tls://a:443", "tls://shared:443"}}), http.StatusOK)
	e.want(e.user("PUT", "/bots/"+b+"/targets", key, map[string]any{"targets": []string{"tls://shared:443"},
		"schedule": map[string]string{"kind": "daily", "time": "01:00"}}), http.StatusOK)
	r := e.user("POST", "/bots/"+b+"/targets/import", key, map[string]string{"from_bot": a})
	e.want(r, http.StatusOK)
	var tr struct {
		Targets  []string
		Schedule protocol.Schedule
	}
	r.json(t, &tr)
	if strings.Join(tr.Targets, " ") != "tls://shared:443 tls://a:443" || tr.Schedule.Kind != "daily" {
		t.Fatalf("imported %+v", tr)
	}
	e.want(e.user("POST", "/bots/"+b+"/targets/import", key, map[string]string{"from_bot": other}), http.StatusNotFound)
	e.want(e.user("POST", "/bots/"+b+"/targets/import", key, map[string]string{}), http.StatusBadRequest)
}

// scanFixture: an active bot with one scan of three findings (one cert at
// two places, one error).
func scanFixture(t *testing.T, e *env, key, account string) (*bot, string, []byte) {
	t.Helper()
	id, token := e.createBot(key, "web")
	b := e.activate(account, token)
	if b.id != id {
		t.Fatalf("activated %s, created %s", b.id, id)
	}
	g := testcert.NewGenerator(t)
	der := g.New(t, testcert.Options{CN: "www.example.com", SANs: []string{"www.example.com"}, Issuer: "Example CA"})
	scan := admin.NewID()
	b.want(b.do("POST", protocol.PathScans, protocol.ScanStart{ScanID: scan, Trigger: "schedule", Started: time.Now(), Targets: 2}), http.StatusOK)
	batch := protocol.FindingsBatch{Seq: 1, Findings: []protocol.Finding{
		{Location: protocol.Location{Scheme: "tls", Host: "10.0.0.5:443"}, Source: "tls", Chain: [][]byte{der, der}, SeenAt: time.Now()},
		{Location: protocol.FileLocation("file", "/etc/ssl/www.pem", "0"), Source: "file", Format: "pem", Chain: [][]byte{der}},
		{Location: protocol.Location{Scheme: "tls", Host: "10.0.0.6:443"}, Source: "tls", Error: "handshake timeout"},
	}}
	r := b.do("POST", protocol.FindingsPath(scan), batch)
	b.want(r, http.StatusOK)
	var ack protocol.FindingsAck
	r.json(t, &ack)
	if ack.Seq != 1 || ack.Duplicate {
		t.Fatalf("ack %+v", ack)
	}
	r = b.do("POST", protocol.FindingsPath(scan), batch)
	r.json(t, &ack)
	if !ack.Duplicate {
		t.Fatalf("repeated batch ack %+v", ack)
	}
	b.want(b.do("POST", protocol.ScanCompletePath(scan), protocol.ScanComplete{Finished: time.Now(), Batches: 1, Complete: true}), http.StatusOK)
	return b, scan, der
}

func TestBotFlowAndCertificates(t *testing.T) {
	e := newEnv(t)
	account, key := e.account(1)
	b, scan, der := scanFixture(t, e, key, account)
	fp := protocol.Fingerprint(der)

	var v admin.BotView
	r := e.user("GET", "/bots/"+b.id, key, nil)
	r.json(t, &v)
	if v.Status != protocol.BotActive || v.Host != "web01" || v.OS != "linux" || len(v.IPs) != 1 || v.Version != "1.0.1" ||
		v.LastSeen == nil || v.LastScan == nil || v.LastScan.ID != scan || v.LastScan.Findings != 2 || v.LastScan.Errors != 1 {
		t.Fatalf("bot after scan %+v (last scan %+v)", v, v.LastScan)
	}
	r = e.user("GET", "/bots/"+b.id+"/scans/"+scan, key, nil)
	var sv admin.ScanView
	r.json(t, &sv)
	if !sv.Complete || len(sv.ErrorList) != 1 || sv.ErrorList[0].Error != "handshake timeout" {
		t.Fatalf("scan %+v", sv)
	}

	type certs struct {
		Certificates []struct {
			Fingerprint string `json:"fingerprint_sha256"`
			Subject     string
			SANs        []string
			Issuer      string
			NotAfter    time.Time `json:"not_after"`
			Locations   []struct {
				URI     string
				Bot     string
				Present bool
			}
		}
		Next string
	}
	queries := []struct {
		query string
		want  int
	}{
		{"", 1},
		{"q=WWW.example", 1},
		{"q=nothing", 0},
		{"issuer=example+ca", 1},
		{"expires_before=2031-01-01T00:00:00Z", 1},
		{"expires_after=2031-01-01T00:00:00Z", 0},
		{"source=file", 1},
		{"source=jks", 0},
		{"location=10.0.0.5", 1},
		{"bot=" + b.id, 1},
		{"bot=someone-else", 0},
		{"limit=1", 1},
	}
	for _, q := range queries {
		r := e.user("GET", "/certificates?"+q.query, key, nil)
		e.want(r, http.StatusOK)
		var c certs
		r.json(t, &c)
		if len(c.Certificates) != q.want {
			t.Fatalf("%s: %d certificates, want %d", q.query, len(c.Certificates), q.want)
		}
		if q.want == 1 {
			got := c.Certificates[0]
			if got.Fingerprint != fp || len(got.Locations) != 2 || got.Locations[0].Bot != b.id || !got.Locations[0].Present ||
				!strings.Contains(got.Subject, "www.example.com") || got.SANs[0] != "www.example.com" {
				t.Fatalf("%s: %+v", q.query, got)
			}
		}
	}
	for _, bad := range []string{"expires_before=tomorrow", "limit=0", "limit=1001", "next=zz"} {
		r := e.user("GET", "/certificates?"+bad, key, nil)
		e.want(r, http.StatusBadRequest)
		name, _, _ := strings.Cut(bad, "=")
		if !strings.Contains(r.errorText(t), name) {
			t.Errorf("%s: error %q does not name the field", bad, r.body)
		}
	}
	e.want(e.user("GET", "/certificates/"+fp, key, nil), http.StatusOK)
	e.want(e.user("GET", "/certificates/"+strings.Repeat("0", 64), key, nil), http.StatusNotFound)
	e.want(e.user("GET", "/certificates/xyz", key, nil), http.StatusBadRequest)

	// Downloads.
	r = e.user("GET", "/certificates/"+fp+"/download", key, nil)
	e.want(r, http.StatusOK)
	if blk, _ := pem.Decode(r.body); blk == nil || !bytes.Equal(blk.Bytes, der) {
		t.Fatalf("pem download %q", r.body)
	}
	r = e.user("GET", "/certificates/"+fp+"/download?format=der", key, nil)
	if !bytes.Equal(r.body, der) {
		t.Fatal("der download differs")
	}
	r = e.user("GET", "/certificates/"+fp+"/download?format=p7b", key, nil)
	e.want(r, http.StatusOK)
	p7, err := pkcs7.Parse(r.body)
	if err != nil || len(p7.Certificates) != 2 || !bytes.Equal(p7.Certificates[0].Raw, der) {
		t.Fatalf("p7b: %v", err)
	}
	e.want(e.user("GET", "/certificates/"+fp+"/download?format=pfx", key, nil), http.StatusBadRequest)

	// A job result; a job of nobody.
	e.want(e.user("POST", "/bots/"+b.id+"/scans", key, nil), http.StatusAccepted)
	r = b.do("GET", protocol.PathJobs, nil)
	var jobs protocol.JobsResponse
	r.json(t, &jobs)
	if len(jobs.Jobs) != 1 || jobs.Jobs[0].Kind != protocol.JobScan || jobs.Jobs[0].ScanID == "" {
		t.Fatalf("jobs %+v", jobs)
	}
	b.want(b.do("POST", protocol.JobResultPath(jobs.Jobs[0].ID), protocol.JobResult{Status: "done"}), http.StatusOK)
	b.want(b.do("POST", protocol.JobResultPath("nope"), protocol.JobResult{Status: "done"}), http.StatusNotFound)
	b.want(b.do("POST", protocol.JobResultPath(jobs.Jobs[0].ID), protocol.JobResult{Status: "maybe"}), http.StatusBadRequest)
	// The bot starts the queued scan with the job's scan ID.
	b.want(b.do("POST", protocol.PathScans, protocol.ScanStart{ScanID: jobs.Jobs[0].ScanID, Trigger: "job"}), http.StatusOK)
	b.want(b.do("POST", protocol.PathScans, protocol.ScanStart{ScanID: "bad id!"}), http.StatusBadRequest)

	// No client certificate: refused.
	e.want(e.do(e.transport(), "GET", protocol.PathConfig, "", nil), http.StatusUnauthorized)
}

func TestAccountIsolation(t *testing.T) {
	e := newEnv(t)
	accA, keyA := e.account(2)
	accB, keyB := e.account(2)
	botA, scanA, _ := scanFixture(t, e, keyA, accA)
	botB, scanB, derB := scanFixture(t, e, keyB, accB)
	_ = botA
	fpB := protocol.Fingerprint(derB)

	// Every user route, with A's key on B's objects: 404.
	routes := []struct{ method, path string }{
		{"GET", "/bots/" + botB.id},
		{"PATCH", "/bots/" + botB.id},
		{"POST", "/bots/" + botB.id + "/suspend"},
		{"POST", "/bots/" + botB.id + "/deactivate"},
		{"POST", "/bots/" + botB.id + "/token"},
		{"GET", "/bots/" + botB.id + "/targets"},
		{"PUT", "/bots/" + botB.id + "/targets"},
		{"POST", "/bots/" + botB.id + "/targets/import"},
		{"POST", "/bots/" + botA.id + "/targets/import"}, // from B's bot
		{"POST", "/bots/" + botB.id + "/scans"},
		{"GET", "/bots/" + botB.id + "/scans"},
		{"GET", "/bots/" + botB.id + "/scans/" + scanB},
		{"GET", "/bots/" + botA.id + "/scans/" + scanB}, // B's scan under A's bot
		{"GET", "/certificates/" + fpB},
		{"GET", "/certificates/" + fpB + "/download"},
	}
	bodies := map[string]any{
		"PATCH": map[string]string{"name": "mine now"},
		"PUT":   map[string]any{"targets": []string{"tls://x:443"}},
	}
	for _, rt := range routes {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			body := bodies[rt.method]
			if strings.HasSuffix(rt.path, "/import") {
				body = map[string]string{"from_bot": botB.id}
			}
			r := e.user(rt.method, rt.path, keyA, body)
			e.want(r, http.StatusNotFound)
		})
	}
	// Lists show only the account's own.
	var list struct{ Bots []admin.BotView }
	e.user("GET", "/bots", keyA, nil).json(t, &list)
	if len(list.Bots) != 1 || list.Bots[0].ID != botA.id {
		t.Fatalf("A's bots: %+v", list.Bots)
	}
	var c struct{ Certificates []map[string]any }
	e.user("GET", "/certificates?bot="+botB.id, keyA, nil).json(t, &c)
	if len(c.Certificates) != 0 {
		t.Fatalf("A sees B's certificates: %+v", c)
	}
	// B's bot is untouched.
	var v admin.BotView
	e.user("GET", "/bots/"+botB.id, keyB, nil).json(t, &v)
	if v.Status != protocol.BotActive || v.Name != "web" {
		t.Fatalf("B's bot changed: %+v", v)
	}

	// A bot of A cannot post into B's scan.
	g := testcert.NewGenerator(t)
	f := protocol.Finding{Location: protocol.Location{Scheme: "tls", Host: "evil:443"}, Source: "tls", Chain: [][]byte{g.New(t, testcert.Options{CN: "evil"})}}
	botA.want(botA.do("POST", protocol.FindingsPath(scanB), protocol.FindingsBatch{Seq: 9, Findings: []protocol.Finding{f}}), http.StatusNotFound)
	botA.want(botA.do("POST", protocol.ScanCompletePath(scanB), protocol.ScanComplete{Complete: true}), http.StatusNotFound)
	botA.want(botA.do("POST", protocol.PathScans, protocol.ScanStart{ScanID: scanB}), http.StatusNotFound)
	// Nor finish B's job.
	e.want(e.user("POST", "/bots/"+botB.id+"/scans", keyB, nil), http.StatusAccepted)
	var jobs protocol.JobsResponse
	botB.do("GET", protocol.PathJobs, nil).json(t, &jobs)
	botA.want(botA.do("POST", protocol.JobResultPath(jobs.Jobs[0].ID), protocol.JobResult{Status: "done"}), http.StatusNotFound)
	_ = scanA
}

func TestActivationRefused(t *testing.T) {
	e := newEnv(t)
	account, key := e.account(10)
	other, _ := e.account(1)

	used, usedToken := e.createBot(key, "used")
	e.activate(account, usedToken)
	_ = used
	suspended, suspendedToken := e.createBot(key, "suspended")
	e.want(e.user("POST", "/bots/"+suspended+"/suspend", key, nil), http.StatusOK)
	inactive, inactiveToken := e.createBot(key, "inactive")
	e.want(e.user("POST", "/bots/"+inactive+"/deactivate", key, nil), http.StatusOK)
	_, goodToken := e.createBot(key, "good")

	tests := []struct {
		name, account, token string
	}{
		{"wrong account", other, goodToken},
		{"unknown account", "9999999999", goodToken},
		{"wrong token", account, "f8368fea-d5da-4502-a39b-43e6752f3b5e"},
		{"used token", account, usedToken},
		{"suspended bot", account, suspendedToken},
		{"inactive bot", account, inactiveToken},
	}
	var first string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := e.tryActivate(tt.account, tt.token)
			e.want(r, http.StatusUnauthorized)
			if first == "" {
				first = string(r.body)
			}
			if string(r.body) != first || r.errorText(t) != "activation refused" {
				t.Fatalf("answer %q differs from %q", r.body, first)
			}
		})
	}
	if strings.Contains(e.logs.String(), goodToken) || strings.Contains(e.logs.String(), usedToken) {
		t.Fatal("a token is in the logs")
	}

	// A regenerated token revokes the certificate; the new token activates.
	id, token := e.createBot(key, "regen")
	b := e.activate(account, token)
	b.want(b.do("GET", protocol.PathConfig, nil), http.StatusOK)
	var tok map[string]string
	e.user("POST", "/bots/"+id+"/token", key, nil).json(t, &tok)
	r := b.do("GET", protocol.PathConfig, nil)
	b.want(r, http.StatusUnauthorized)
	b.want(b.do("GET", protocol.PathJobs, nil), http.StatusUnauthorized)
	r, _ = e.tryActivate(account, token)
	e.want(r, http.StatusUnauthorized)
	b2 := e.activate(account, tok["token"])
	b2.want(b2.do("GET", protocol.PathConfig, nil), http.StatusOK)
	b.want(b.do("GET", protocol.PathConfig, nil), http.StatusUnauthorized)

	// A suspended bot's certificate is refused too.
	e.want(e.user("POST", "/bots/"+id+"/suspend", key, nil), http.StatusOK)
	b2.want(b2.do("GET", protocol.PathConfig, nil), http.StatusForbidden)

	// A bad CSR is a 400 and does not consume the token.
	_, t2 := e.createBot(key, "csr")
	r = e.do(e.transport(), "POST", protocol.PathActivate, "", protocol.ActivateRequest{Account: account, Token: t2, CSR: "junk"})
	e.want(r, http.StatusBadRequest)
	e.activate(account, t2)
}

func TestLongPoll(t *testing.T) {
	e := newEnv(t)
	account, key := e.account(1)
	id, token := e.createBot(key, "web")
	b := e.activate(account, token)

	// Nothing pending: an immediate empty answer without wait.
	var jobs protocol.JobsResponse
	r := b.do("GET", protocol.PathJobs, nil)
	b.want(r, http.StatusOK)
	r.json(t, &jobs)
	if jobs.Jobs == nil || len(jobs.Jobs) != 0 {
		t.Fatalf("jobs %s", r.body)
	}
	b.want(b.do("GET", protocol.PathJobs+"?wait=soon", nil), http.StatusBadRequest)

	// A poll wakes when a scan is queued.
	type result struct {
		r       response
		elapsed time.Duration
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		r := b.do("GET", protocol.PathJobs+"?wait=8s", nil)
		done <- result{r, time.Since(start)}
	}()
	time.Sleep(300 * time.Millisecond)
	e.want(e.user("POST", "/bots/"+id+"/scans", key, nil), http.StatusAccepted)
	res := <-done
	res.r.json(t, &jobs)
	if len(jobs.Jobs) != 1 || jobs.Jobs[0].Kind != protocol.JobScan {
		t.Fatalf("jobs %s", res.r.body)
	}
	if res.elapsed > 5*time.Second {
		t.Fatalf("the poll took %v: not woken", res.elapsed)
	}

	// A pending job answers at once, even with a wait.
	e.want(e.user("PUT", "/bots/"+id+"/targets", key, map[string]any{"targets": []string{"tls://a:443"}}), http.StatusOK)
	start = time.Now()
	b.do("GET", protocol.PathJobs+"?wait=8s", nil).json(t, &jobs)
	if len(jobs.Jobs) != 1 || jobs.Jobs[0].Kind != protocol.JobConfigChanged || time.Since(start) > 3*time.Second {
		t.Fatalf("jobs %+v after %v", jobs, time.Since(start))
	}
	// A short wait with nothing ends empty.
	b.do("GET", protocol.PathJobs+"?wait=200ms", nil).json(t, &jobs)
	if len(jobs.Jobs) != 0 {
		t.Fatalf("jobs %+v", jobs)
	}
}

func TestConfigETag(t *testing.T) {
	e := newEnv(t)
	account, key := e.account(1)
	id, token := e.createBot(key, "web")
	b := e.activate(account, token)

	r := b.do("GET", protocol.PathConfig, nil)
	b.want(r, http.StatusOK)
	var cfg protocol.BotConfig
	r.json(t, &cfg)
	if cfg.BotID != id || cfg.Schedule.Kind != protocol.ScheduleOnDemand || len(cfg.Targets) != 0 || cfg.Version == "" {
		t.Fatalf("config %+v", cfg)
	}
	etag := r.header.Get("ETag")
	if etag != `"`+cfg.Version+`"` {
		t.Fatalf("ETag %q, version %q", etag, cfg.Version)
	}
	r = b.do("GET", protocol.PathConfig, nil, "If-None-Match", etag)
	b.want(r, http.StatusNotModified)

	e.want(e.user("PUT", "/bots/"+id+"/targets", key, map[string]any{
		"targets":  []string{"jks:///opt/app?password=changeit&password=env:KS_PASS"},
		"schedule": map[string]string{"kind": "daily", "time": "03:00"}, "threads": 4, "max_runtime": "90m"}), http.StatusOK)
	r = b.do("GET", protocol.PathConfig, nil, "If-None-Match", etag)
	b.want(r, http.StatusOK)
	r.json(t, &cfg)
	// The bot gets the targets as given, secrets included (mTLS only).
	if len(cfg.Targets) != 1 || cfg.Targets[0] != "jks:///opt/app?password=changeit&password=env:KS_PASS" ||
		cfg.Threads != 4 || time.Duration(cfg.MaxRuntime) != 90*time.Minute || cfg.Schedule.Time != "03:00" {
		t.Fatalf("config %+v", cfg)
	}
	if r.header.Get("ETag") == etag {
		t.Fatal("ETag unchanged after a change")
	}
}

// TestSecretsAtRest: a target's password is in no file of the data
// directory, no user API answer, no log line; nor is a bot token.
func TestSecretsAtRest(t *testing.T) {
	e := newEnv(t)
	account, key := e.account(2)
	id, token := e.createBot(key, "web")
	_, pendingToken := e.createBot(key, "pending")
	const secret = "hunter2-secret"
	r := e.user("PUT", "/bots/"+id+"/targets", key, map[string]any{"targets": []string{
		"jks:///opt/app/keystore.jks?password=" + secret, "tls://10.0.0.1:443"}})
	e.want(r, http.StatusOK)
	b := e.activate(account, token)
	cfg := b.do("GET", protocol.PathConfig, nil)
	if !strings.Contains(string(cfg.body), secret) {
		t.Fatal("the bot does not get the password")
	}
	// A bad target with a secret: the error hides it.
	r = e.user("PUT", "/bots/"+id+"/targets", key, map[string]any{"targets": []string{"jks://host/x?password=" + secret}})
	e.want(r, http.StatusBadRequest)

	var answers []byte
	for _, p := range []string{"/bots", "/bots/" + id, "/bots/" + id + "/targets", "/bots/" + id + "/scans"} {
		answers = append(answers, e.user("GET", p, key, nil).body...)
	}
	answers = append(answers, r.body...)
	if bytes.Contains(answers, []byte(secret)) {
		t.Fatalf("secret in an answer: %s", answers)
	}
	if strings.Contains(e.logs.String(), secret) || strings.Contains(e.logs.String(), token) {
		t.Fatal("secret or token in the logs")
	}
	// The files, WAL included, while the store is open.
	files, err := filepath.Glob(filepath.Join(e.dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	sawWAL := false
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, "-wal") && len(b) > 0 {
			sawWAL = true
		}
		for _, s := range []string{secret, token, pendingToken, key} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds %q in clear", filepath.Base(f), s)
			}
		}
	}
	if !sawWAL {
		t.Error("no WAL file looked at")
	}
	st, err := os.Stat(filepath.Join(e.dir, "secret.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secret.key: %v %v", st, err)
	}
}

func TestCAAndServerCertificate(t *testing.T) {
	e := newEnv(t)
	pemCA, err := os.ReadFile(filepath.Join(e.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemCA)
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || !ca.IsCA {
		t.Fatalf("ca.pem: %v", err)
	}
	account, key := e.account(1)
	_, token := e.createBot(key, "b")
	b := e.activate(account, token)
	leaf := b.cert.Leaf
	if leaf == nil {
		leaf, _ = x509.ParseCertificate(b.cert.Certificate[0])
	}
	if leaf.Subject.CommonName != b.id || len(leaf.URIs) != 1 || leaf.URIs[0].String() != "urn:emsign:bot:"+b.id {
		t.Fatalf("bot certificate subject %v URIs %v", leaf.Subject, leaf.URIs)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: e.ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
}
