package protocol

import (
	"errors"
	"fmt"
	"iter"
	"math/big"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// DefaultTLSPort is the port a tls target scans when it names none.
const DefaultTLSPort = 443

// maxRangeAddresses bounds one address range or CIDR block. An IPv4 /0 is
// allowed; an IPv6 /64 is not, since it could never be swept.
const maxRangeAddresses = 1 << 32

// Endpoint is one host and port a tls target expands to.
type Endpoint struct {
	// Host is the name or address as the target gave it (an address from a
	// range is written out).
	Host string
	// Addr is set when Host is an IP address.
	Addr netip.Addr
	Port uint16
}

// HostPort renders the endpoint for net.Dial ("[::1]:443" for IPv6).
func (e Endpoint) HostPort() string {
	if e.Addr.IsValid() {
		return netip.AddrPortFrom(e.Addr, e.Port).String()
	}
	return e.Host + ":" + strconv.Itoa(int(e.Port))
}

// hostItem is one element of a host list: a name, or an address range
// (a single address is a range of one).
type hostItem struct {
	name     string
	from, to netip.Addr
}

// HostList is a parsed list of hosts: names, addresses, ranges and CIDR
// blocks. It never holds the expanded addresses.
type HostList struct {
	items []hostItem
}

// PortList is a parsed, sorted list of disjoint port ranges.
type PortList struct {
	ranges [][2]uint16
}

// EndpointSpec is the HOSTS:PORTS part of a tls target.
type EndpointSpec struct {
	Hosts HostList
	Ports PortList
}

// Count is the number of endpoints the spec expands to.
func (s EndpointSpec) Count() uint64 {
	return s.Hosts.Count() * uint64(s.Ports.Count())
}

// All yields every endpoint, host by host, without materialising the list.
func (s EndpointSpec) All() iter.Seq[Endpoint] {
	return func(yield func(Endpoint) bool) {
		for host, addr := range s.Hosts.All() {
			for p := range s.Ports.All() {
				if !yield(Endpoint{Host: host, Addr: addr, Port: p}) {
					return
				}
			}
		}
	}
}

// String renders the spec in the syntax ParseEndpointSpec reads.
func (s EndpointSpec) String() string {
	hosts := s.Hosts.String()
	return hosts + ":" + s.Ports.String()
}

// ParseEndpointSpec reads HOSTS[:PORTS]. HOSTS is a comma list of FQDNs,
// IPv4 addresses, [IPv6] addresses, ranges (10.0.0.1-10.0.0.254) and CIDR
// blocks (10.0.0.0/24); PORTS a comma list of ports and ranges (1-899).
// Without PORTS the port is 443.
func ParseEndpointSpec(s string) (EndpointSpec, error) {
	if s == "" {
		return EndpointSpec{}, errors.New("no host given")
	}
	// Unbracketed, an IPv6 address would be cut at its last colon and
	// reported as a bad address ("2001:db8: is not an IP address").
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if a, err := netip.ParseAddr(part); err == nil && a.Is6() {
			return EndpointSpec{}, fmt.Errorf("%s: an IPv6 address must be written in brackets, e.g. [2001:db8::1]:443", part)
		}
	}
	hostsPart, portsPart := s, ""
	if i := lastColonOutsideBrackets(s); i >= 0 {
		hostsPart, portsPart = s[:i], s[i+1:]
		if portsPart == "" {
			return EndpointSpec{}, errors.New("empty port list after ':'")
		}
	}
	hosts, err := ParseHostList(hostsPart)
	if err != nil {
		return EndpointSpec{}, err
	}
	ports := PortList{ranges: [][2]uint16{{DefaultTLSPort, DefaultTLSPort}}}
	if portsPart != "" {
		if ports, err = ParsePortList(portsPart); err != nil {
			return EndpointSpec{}, err
		}
	}
	return EndpointSpec{Hosts: hosts, Ports: ports}, nil
}

func lastColonOutsideBrackets(s string) int {
	depth := 0
	for i := len(s) - 1; i >= 0; i-- {
		switch s[i] {
		case ']':
			depth++
		case '[':
			depth--
		case ':':
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// ParseHostList reads a comma list of hosts (see ParseEndpointSpec).
func ParseHostList(s string) (HostList, error) {
	var l HostList
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return HostList{}, fmt.Errorf("empty host in %q", s)
		}
		item, err := parseHostItem(part)
		if err != nil {
			return HostList{}, err
		}
		l.items = append(l.items, item)
	}
	return l, nil
}

func parseHostItem(s string) (hostItem, error) {
	switch {
	case strings.Contains(s, "/"):
		p, err := netip.ParsePrefix(unbracket(s))
		if err != nil {
			return hostItem{}, fmt.Errorf("%s is not a CIDR block", s)
		}
		p = p.Masked()
		from := p.Addr()
		to := lastInPrefix(p)
		if err := checkRangeSize(s, from, to); err != nil {
			return hostItem{}, err
		}
		return hostItem{from: from, to: to}, nil
	case isAddressRange(s):
		a, b, _ := strings.Cut(s, "-")
		from, err := parseAddr(a)
		if err != nil {
			return hostItem{}, err
		}
		to, err := parseAddr(b)
		if err != nil {
			return hostItem{}, err
		}
		if from.Is4() != to.Is4() {
			return hostItem{}, fmt.Errorf("range %s mixes IPv4 and IPv6", s)
		}
		if to.Less(from) {
			return hostItem{}, fmt.Errorf("range %s ends before it starts", s)
		}
		if err := checkRangeSize(s, from, to); err != nil {
			return hostItem{}, err
		}
		return hostItem{from: from, to: to}, nil
	case looksLikeAddress(s):
		a, err := parseAddr(s)
		if err != nil {
			return hostItem{}, err
		}
		return hostItem{from: a, to: a}, nil
	default:
		if err := checkHostname(s); err != nil {
			return hostItem{}, err
		}
		return hostItem{name: strings.ToLower(strings.TrimSuffix(s, "."))}, nil
	}
}

func isAddressRange(s string) bool {
	a, b, ok := strings.Cut(s, "-")
	return ok && looksLikeAddress(a) && looksLikeAddress(b)
}

// looksLikeAddress tells an address someone meant to write (digits and dots,
// or anything in brackets or with a colon) from a host name, so that
// 999.1.1.1 is reported as a bad address rather than looked up in DNS.
func looksLikeAddress(s string) bool {
	if strings.HasPrefix(s, "[") || strings.Contains(s, ":") {
		return true
	}
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && r != '.' {
			return false
		}
	}
	return true
}

func unbracket(s string) string {
	if strings.HasPrefix(s, "[") {
		if i := strings.Index(s, "]"); i > 0 {
			return s[1:i] + s[i+1:]
		}
	}
	return s
}

func parseAddr(s string) (netip.Addr, error) {
	bracketed := strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]")
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%s is not an IP address", s)
	}
	if a.Is6() && !bracketed && !a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("IPv6 address %s must be written in brackets: [%s]", s, s)
	}
	return a.Unmap(), nil
}

func lastInPrefix(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func rangeSize(from, to netip.Addr) *big.Int {
	f := new(big.Int).SetBytes(from.AsSlice())
	t := new(big.Int).SetBytes(to.AsSlice())
	return t.Sub(t, f).Add(t, big.NewInt(1))
}

func checkRangeSize(s string, from, to netip.Addr) error {
	if rangeSize(from, to).Cmp(big.NewInt(maxRangeAddresses)) > 0 {
		return fmt.Errorf("%s holds more than 2^32 addresses, too many to scan", s)
	}
	return nil
}

// checkHostname accepts RFC 1123 host names (letters, digits, hyphens and
// underscores, which real internal names use, in dot-separated labels).
func checkHostname(s string) error {
	name := strings.TrimSuffix(s, ".")
	if len(name) == 0 || len(name) > 253 {
		return fmt.Errorf("%s is not a host name", s)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%s is not a host name", s)
		}
		for _, r := range label {
			ok := r == '-' || r == '_' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
			if !ok {
				return fmt.Errorf("%s is not a host name: %q is not allowed", s, r)
			}
		}
	}
	return nil
}

// Count is the number of hosts the list expands to.
func (l HostList) Count() uint64 {
	var n uint64
	for _, it := range l.items {
		if it.name != "" {
			n++
			continue
		}
		n += rangeSize(it.from, it.to).Uint64()
	}
	return n
}

// All yields each host as written and, for addresses, the address.
func (l HostList) All() iter.Seq2[string, netip.Addr] {
	return func(yield func(string, netip.Addr) bool) {
		for _, it := range l.items {
			if it.name != "" {
				if !yield(it.name, netip.Addr{}) {
					return
				}
				continue
			}
			for a := it.from; a.IsValid(); a = a.Next() {
				if !yield(a.String(), a) {
					return
				}
				if a == it.to {
					break
				}
			}
		}
	}
}

func (l HostList) String() string {
	parts := make([]string, 0, len(l.items))
	for _, it := range l.items {
		switch {
		case it.name != "":
			parts = append(parts, it.name)
		case it.from == it.to:
			parts = append(parts, bracket(it.from))
		default:
			parts = append(parts, bracket(it.from)+"-"+bracket(it.to))
		}
	}
	return strings.Join(parts, ",")
}

func bracket(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

// ParsePortList reads a comma list of ports and ranges such as 443,8443,1-899.
func ParsePortList(s string) (PortList, error) {
	var rs [][2]uint16
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		from, err := parsePort(lo)
		if err != nil {
			return PortList{}, err
		}
		to := from
		if isRange {
			if to, err = parsePort(hi); err != nil {
				return PortList{}, err
			}
			if to < from {
				return PortList{}, fmt.Errorf("port range %s ends before it starts", part)
			}
		}
		rs = append(rs, [2]uint16{from, to})
	}
	slices.SortFunc(rs, func(a, b [2]uint16) int { return int(a[0]) - int(b[0]) })
	merged := rs[:1]
	for _, r := range rs[1:] {
		last := &merged[len(merged)-1]
		if int(r[0]) <= int(last[1])+1 {
			last[1] = max(last[1], r[1])
			continue
		}
		merged = append(merged, r)
	}
	return PortList{ranges: merged}, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port (1-65535)", s)
	}
	return uint16(n), nil
}

// Count is the number of ports in the list.
func (l PortList) Count() int {
	n := 0
	for _, r := range l.ranges {
		n += int(r[1]) - int(r[0]) + 1
	}
	return n
}

// All yields each port in ascending order.
func (l PortList) All() iter.Seq[uint16] {
	return func(yield func(uint16) bool) {
		for _, r := range l.ranges {
			for p := int(r[0]); p <= int(r[1]); p++ {
				if !yield(uint16(p)) {
					return
				}
			}
		}
	}
}

func (l PortList) String() string {
	parts := make([]string, 0, len(l.ranges))
	for _, r := range l.ranges {
		if r[0] == r[1] {
			parts = append(parts, strconv.Itoa(int(r[0])))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", r[0], r[1]))
		}
	}
	return strings.Join(parts, ",")
}
