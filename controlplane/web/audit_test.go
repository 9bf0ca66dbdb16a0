package web

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/ops"
)

var (
	authAuditRow   = regexp.MustCompile(`<tr data-audit="(\d+)">`)
	authAuditOlder = regexp.MustCompile(`<a href="([^"]+)" id="audit-older"`)
)

func TestAuditPage(t *testing.T) {
	e := newAuthEnv(t)
	e.user("ana@example.com", "administrator")
	e.user("fin@example.com", "finance_manager")
	ctx := context.Background()
	cli := ops.Actor{Account: e.account, Kind: ops.ActorCLI, Name: "root", Role: "administrator"}
	for i := range auditPageSize + 5 {
		e.clock.Add(time.Second)
		if err := e.ops.Record(ctx, cli, "bot.test", fmt.Sprintf("bot-%d", i), "<b>detail</b>"); err != nil {
			t.Fatal(err)
		}
	}
	b := e.browser()
	b.login("fin@example.com", "/") // a Finance Manager reads the audit log

	p := b.get("/audit")
	if p.status != http.StatusOK || !strings.Contains(p.body, `<table id="audit">`) {
		t.Fatalf("audit: %d", p.status)
	}
	rows := authAuditRow.FindAllStringSubmatch(p.body, -1)
	if len(rows) != auditPageSize {
		t.Fatalf("%d rows, want %d", len(rows), auditPageSize)
	}
	// Newest first: the login, then the last test entry.
	if !strings.Contains(p.body, "user.login") || strings.Index(p.body, "user.login") > strings.Index(p.body, "bot-104") {
		t.Error("the login is not listed first")
	}
	if strings.Contains(p.body, "<b>detail</b>") || !strings.Contains(p.body, "&lt;b&gt;detail&lt;/b&gt;") {
		t.Error("detail not escaped")
	}
	m := authAuditOlder.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatal("no Older link")
	}
	older := b.get(html.UnescapeString(m[1]))
	if n := len(authAuditRow.FindAllStringSubmatch(older.body, -1)); older.status != http.StatusOK || n != 6 {
		t.Fatalf("older page: %d, %d rows", older.status, n)
	}
	if authAuditOlder.MatchString(older.body) || !strings.Contains(older.body, `id="audit-newest"`) {
		t.Error("last page links")
	}

	filters := []struct {
		query string
		rows  int
	}{
		{"actor=" + url.QueryEscape("fin@example.com"), 1},
		{"action=user.", 1},
		{"action=bot.&actor=root", auditPageSize},
		{"actor=nobody", 0},
	}
	for _, f := range filters {
		a := b.get("/audit?" + f.query)
		if n := len(authAuditRow.FindAllStringSubmatch(a.body, -1)); a.status != http.StatusOK || n != f.rows {
			t.Errorf("%s: %d, %d rows, want %d", f.query, a.status, n, f.rows)
		}
	}
	if a := b.get("/audit?before=x"); a.status != http.StatusBadRequest {
		t.Errorf("bad cursor: %d", a.status)
	}
}
