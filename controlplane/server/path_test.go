package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/protocol"
)

// The path a bot reports (at activation, then on every call) is shown per
// bot; a new value replaces the old one, and anything is kept as given, cut
// to a bounded length.
func TestBotPathFollowsHeader(t *testing.T) {
	e := newEnv(t)
	account, key := e.account(1)
	id, token := e.createBot(key, "web")
	b := e.activate(account, token)

	path := func() string {
		t.Helper()
		var v admin.BotView
		r := e.user("GET", "/bots/"+id, key, nil)
		e.want(r, http.StatusOK)
		r.json(t, &v)
		var list struct {
			Bots []admin.BotView `json:"bots"`
		}
		r = e.user("GET", "/bots", key, nil)
		e.want(r, http.StatusOK)
		r.json(t, &list)
		if len(list.Bots) != 1 || list.Bots[0].Path != v.Path {
			t.Fatalf("list %+v, bot path %q", list.Bots, v.Path)
		}
		return v.Path
	}

	// Without the header the path stays as it was.
	b.want(b.do("GET", protocol.PathConfig, nil), http.StatusOK)
	if p := path(); p != "" {
		t.Fatalf("path %q before any report", p)
	}
	b.want(b.do("GET", protocol.PathConfig, nil, protocol.HeaderBotPath, "direct"), http.StatusOK)
	if p := path(); p != "direct" {
		t.Fatalf("path %q, want direct", p)
	}
	b.want(b.do("GET", protocol.PathConfig, nil, protocol.HeaderBotPath, "via relay.example:8443"), http.StatusOK)
	if p := path(); p != "via relay.example:8443" {
		t.Fatalf("path %q after a new header", p)
	}
	b.want(b.do("GET", protocol.PathConfig, nil), http.StatusOK)
	if p := path(); p != "via relay.example:8443" {
		t.Fatalf("path %q after a call without the header", p)
	}

	// Garbage is the bot's word: shown as given, capped.
	garbage := "carrier pigeon <b>" + strings.Repeat("é", 400)
	b.want(b.do("GET", protocol.PathConfig, nil, protocol.HeaderBotPath, garbage), http.StatusOK)
	p := path()
	if len(p) > 300 || len(p) < 250 || !strings.HasPrefix(garbage, p) {
		t.Fatalf("garbage path %q (%d bytes)", p, len(p))
	}
}

// The path given at activation is shown until the bot reports another.
func TestBotPathFromActivation(t *testing.T) {
	e := newEnv(t)
	account, key := e.account(1)
	id, token := e.createBot(key, "web")
	c, _ := csr(t)
	r := e.do(e.transport(), "POST", protocol.PathActivate, "", protocol.ActivateRequest{
		Account: account, Token: token, Hostname: "web01", OS: "linux", Arch: "amd64",
		Version: "1.0.0", CSR: c, Capability: protocol.CapabilityVersion, Path: "proxy" + strings.Repeat("x", 1000),
	})
	e.want(r, http.StatusOK)
	var v admin.BotView
	r = e.user("GET", "/bots/"+id, key, nil)
	e.want(r, http.StatusOK)
	r.json(t, &v)
	if len(v.Path) != 300 || !strings.HasPrefix(v.Path, "proxyxx") {
		t.Fatalf("activation path %q", v.Path)
	}
}

// A bot activated under an older protocol and upgraded in place reports
// its new version on every call, and is offered rotations from then on; a
// lower or malformed number changes nothing (B9).
func TestBotCapabilityRaisedByHeader(t *testing.T) {
	e := newEnv(t)
	account, key := e.account(1)
	id, token := e.createBot(key, "web")
	b := e.activate(account, token)
	ctx := context.Background()
	if _, err := e.st.DB().ExecContext(ctx, `UPDATE bots SET capability = 1 WHERE id = ?`, id); err != nil {
		t.Fatal(err)
	}
	capability := func() int {
		t.Helper()
		bot, err := e.st.Bot(ctx, account, id)
		if err != nil {
			t.Fatal(err)
		}
		return bot.Capability
	}
	for _, step := range []struct {
		header string
		want   int
	}{
		{"", 1},
		{"two", 1},
		{"2", 2},
		{"1", 2},
	} {
		var h []string
		if step.header != "" {
			h = []string{protocol.HeaderBotCapability, step.header}
		}
		b.want(b.do("GET", protocol.PathConfig, nil, h...), http.StatusOK)
		if got := capability(); got != step.want {
			t.Errorf("after a call with capability %q: %d, want %d", step.header, got, step.want)
		}
	}
}
