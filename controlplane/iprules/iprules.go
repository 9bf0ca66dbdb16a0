// Package iprules is the logic of IP restrictions (A4): checking an
// address range an administrator types, and deciding whether a client
// address may reach the account's data under the account's rules.
//
// A user with no enabled rule that applies to them (their own or one for
// all users) is not restricted; otherwise their address must lie in one of
// those rules' ranges. API keys are held to the rules for all users.
package iprules

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/emsign/bot/controlplane/store"
)

// Error is a range that does not check; Field is start_ip or end_ip (the
// form's field names).
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string { return e.Field + ": " + e.Msg }

// Range is a checked range: both ends of one family, Start <= End, both
// included.
type Range struct {
	Start, End netip.Addr
}

// Contains reports whether a (unmapped, as ParseAddr gives) lies in r.
func (r Range) Contains(a netip.Addr) bool {
	a = norm(a)
	if !a.IsValid() || a.Is4() != r.Start.Is4() {
		return false
	}
	return r.Start.Compare(a) <= 0 && a.Compare(r.End) <= 0
}

// String is the range as people read it: "10.0.0.0 – 10.0.0.255", or
// the one address.
func (r Range) String() string {
	if r.Start == r.End {
		return r.Start.String()
	}
	return r.Start.String() + " – " + r.End.String()
}

// norm unmaps an IPv4-mapped IPv6 address (::ffff:10.0.0.1, which a
// dual-stack listener reports for an IPv4 client) and drops an IPv6 zone,
// so that the client's address compares with ranges typed as IPv4.
func norm(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// ParseAddr parses a client's address (without port), unmapped and
// without zone.
func ParseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("ip address %q: %w", s, err)
	}
	return norm(a), nil
}

// ParseRange checks a range as typed: two addresses of the same family
// (an IPv4-mapped IPv6 address counts as IPv4), no zone, start not after
// end.
func ParseRange(start, end string) (Range, error) {
	s, err := parseEnd("start_ip", start)
	if err != nil {
		return Range{}, err
	}
	e, err := parseEnd("end_ip", end)
	if err != nil {
		return Range{}, err
	}
	if s.Is4() != e.Is4() {
		return Range{}, &Error{Field: "end_ip", Msg: "start and end must both be IPv4 or both IPv6 addresses"}
	}
	if s.Compare(e) > 0 {
		return Range{}, &Error{Field: "end_ip", Msg: fmt.Sprintf("%s comes before the start address %s", e, s)}
	}
	return Range{Start: s, End: e}, nil
}

func parseEnd(field, v string) (netip.Addr, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return netip.Addr{}, &Error{Field: field, Msg: "required"}
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Addr{}, &Error{Field: field, Msg: "not an IP address such as 192.0.2.10 or 2001:db8::1"}
	}
	if a.Zone() != "" {
		return netip.Addr{}, &Error{Field: field, Msg: "an IPv6 zone (%...) is not allowed"}
	}
	return a.Unmap(), nil
}

// RuleRange is a stored rule's range; ok is false when it does not parse
// (it then matches no address).
func RuleRange(r store.IPRule) (Range, bool) {
	rg, err := ParseRange(r.StartIP, r.EndIP)
	return rg, err == nil
}

// Applies reports whether an enabled rule restricts userID: it is theirs
// or for all users. userID "" (an API key) is restricted by the rules for
// all users only.
func Applies(r store.IPRule, userID string) bool {
	return r.Enabled && (r.UserID == "" || r.UserID == userID)
}

// Allowed reports whether userID ("" for an API key) may work from ip
// under the account's rules: yes when no enabled rule applies to them,
// else only from an address in one of those rules' ranges. An address
// that does not parse is refused when a rule applies (fail closed), as is
// any address against a stored rule that no longer parses.
func Allowed(rules []store.IPRule, userID, ip string) bool {
	restricted := false
	a, err := ParseAddr(ip)
	for _, r := range rules {
		if !Applies(r, userID) {
			continue
		}
		restricted = true
		if err != nil {
			continue
		}
		if rg, ok := RuleRange(r); ok && rg.Contains(a) {
			return true
		}
	}
	return !restricted
}
