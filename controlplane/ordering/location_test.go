package ordering

import (
	"strings"
	"testing"

	"github.com/emsign/bot/controlplane/store"
)

// One path on many servers (P9: a mass replacement over a fleet): the bot
// picks the location, and a URI held twice without a bot is refused
// rather than guessed.
func TestChooseLocation(t *testing.T) {
	const uri = "file:///etc/nginx/tls.pem"
	c := store.Certificate{Locations: []store.Location{
		{URI: uri, BotID: "bot-a", Source: "file", Format: "pem", Present: true},
		{URI: uri, BotID: "bot-b", Source: "file", Format: "pem", Present: true},
		{URI: "tls://10.0.0.1:443", BotID: "bot-a", Source: "tls", Present: true},
		{URI: "file:///old.pem", BotID: "bot-a", Source: "file", Format: "pem", Present: false},
	}}
	for _, tc := range []struct {
		name, uri, bot string
		wantBot, err   string
	}{
		{"named bot", uri, "bot-b", "bot-b", ""},
		{"other named bot", uri, "bot-a", "bot-a", ""},
		{"held twice, no bot", uri, "", "", "2 bots hold"},
		{"bot without it", uri, "bot-c", "", "bot bot-c holds no location"},
		{"only deployable on a bot", "", "bot-b", "bot-b", ""},
		{"two deployable, none named", "", "", "", "2 deployable locations"},
		{"tls", "tls://10.0.0.1:443", "", "", "tls location"},
		{"gone", "file:///old.pem", "", "", "no longer found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := chooseLocation(c, tc.uri, tc.bot)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || l.BotID != tc.wantBot {
				t.Fatalf("got %s %v, want bot %s", l.BotID, err, tc.wantBot)
			}
		})
	}
}
