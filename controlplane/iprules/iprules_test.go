package iprules_test

import (
	"errors"
	"testing"

	"github.com/emsign/bot/controlplane/iprules"
	"github.com/emsign/bot/controlplane/store"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		start, end string
		want       string // Range.String, or "" for an error
		wantField  string
	}{
		{"10.0.0.0", "10.0.0.255", "10.0.0.0 – 10.0.0.255", ""},
		{" 192.0.2.7 ", "192.0.2.7", "192.0.2.7", ""},
		{"2001:db8::", "2001:db8::ffff", "2001:db8:: – 2001:db8::ffff", ""},
		{"::ffff:10.0.0.1", "10.0.0.9", "10.0.0.1 – 10.0.0.9", ""},
		{"", "10.0.0.1", "", "start_ip"},
		{"10.0.0.1", "", "", "end_ip"},
		{"10.0.0", "10.0.0.1", "", "start_ip"},
		{"10.0.0.0/24", "10.0.0.1", "", "start_ip"},
		{"10.0.0.1", "example.com", "", "end_ip"},
		{"10.0.0.1", "2001:db8::1", "", "end_ip"},
		{"10.0.0.9", "10.0.0.1", "", "end_ip"},
		{"2001:db8::2", "2001:db8::1", "", "end_ip"},
		{"fe80::1%eth0", "fe80::2", "", "start_ip"},
	}
	for _, tt := range tests {
		t.Run(tt.start+"-"+tt.end, func(t *testing.T) {
			r, err := iprules.ParseRange(tt.start, tt.end)
			if tt.want != "" {
				if err != nil || r.String() != tt.want {
					t.Fatalf("got %v, %v; want %s", r, err, tt.want)
				}
				return
			}
			var e *iprules.Error
			if !errors.As(err, &e) || e.Field != tt.wantField {
				t.Fatalf("got %v, %v; want an error on %s", r, err, tt.wantField)
			}
		})
	}
}

func TestAllowed(t *testing.T) {
	rule := func(user, start, end string, enabled bool) store.IPRule {
		return store.IPRule{UserID: user, StartIP: start, EndIP: end, Enabled: enabled}
	}
	office := rule("", "10.0.0.0", "10.0.0.255", true)
	v6 := rule("", "2001:db8::", "2001:db8::ffff", true)
	aliceHome := rule("alice", "198.51.100.7", "198.51.100.7", true)
	tests := []struct {
		name  string
		rules []store.IPRule
		user  string
		ip    string
		want  bool
	}{
		{"no rules", nil, "alice", "203.0.113.9", true},
		{"no rules, unparseable address", nil, "alice", "garbage", true},
		{"in the all-users range", []store.IPRule{office}, "alice", "10.0.0.17", true},
		{"range start included", []store.IPRule{office}, "alice", "10.0.0.0", true},
		{"range end included", []store.IPRule{office}, "alice", "10.0.0.255", true},
		{"outside the all-users range", []store.IPRule{office}, "alice", "10.0.1.0", false},
		{"API key held to all-users rules", []store.IPRule{office}, "", "192.0.2.1", false},
		{"API key in the all-users range", []store.IPRule{office}, "", "10.0.0.1", true},
		{"API key not held to a user's rule", []store.IPRule{aliceHome}, "", "192.0.2.1", true},
		{"disabled rule ignored", []store.IPRule{rule("", "10.0.0.0", "10.0.0.255", false)}, "alice", "192.0.2.1", true},
		{"disabled rule does not allow", []store.IPRule{office, rule("", "192.0.2.0", "192.0.2.255", false)}, "alice", "192.0.2.1", false},
		{"own rule allows", []store.IPRule{office, aliceHome}, "alice", "198.51.100.7", true},
		{"another user's rule does not allow", []store.IPRule{office, aliceHome}, "bob", "198.51.100.7", false},
		{"another user's rule does not restrict", []store.IPRule{aliceHome}, "bob", "203.0.113.9", true},
		{"own rule restricts", []store.IPRule{aliceHome}, "alice", "203.0.113.9", false},
		{"IPv4-mapped client in IPv4 range", []store.IPRule{office}, "alice", "::ffff:10.0.0.9", true},
		{"IPv4-mapped client outside", []store.IPRule{office}, "alice", "::ffff:10.0.1.9", false},
		{"IPv6 client in IPv6 range", []store.IPRule{v6}, "alice", "2001:db8::42", true},
		{"IPv6 client with zone", []store.IPRule{rule("", "fe80::", "fe80::ffff", true)}, "alice", "fe80::1%eth0", true},
		{"IPv6 client outside", []store.IPRule{v6}, "alice", "2001:db8::1:0", false},
		{"IPv6 client, IPv4 range", []store.IPRule{office}, "alice", "2001:db8::1", false},
		{"IPv4 client, IPv6 range", []store.IPRule{v6}, "alice", "10.0.0.1", false},
		{"IPv4 client, IPv6 range that would hold it as ::a00:1", []store.IPRule{rule("", "::", "::ffff", true)}, "alice", "0.0.0.1", false},
		{"either of two ranges", []store.IPRule{office, v6}, "alice", "2001:db8::1", true},
		{"unparseable client address refused", []store.IPRule{office}, "alice", "garbage", false},
		{"broken stored rule matches nothing", []store.IPRule{rule("", "x", "y", true)}, "alice", "10.0.0.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := iprules.Allowed(tt.rules, tt.user, tt.ip); got != tt.want {
				t.Fatalf("Allowed(%s, %s) = %v, want %v", tt.user, tt.ip, got, tt.want)
			}
		})
	}
}
