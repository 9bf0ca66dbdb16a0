package certstore

import (
	"errors"
	"log/slog"
	"net"
	"slices"
	"testing"

	"github.com/emsign/bot/protocol"
)

// stringAddr is an address of a kind net does not define.
type stringAddr string

func (a stringAddr) Network() string { return "test" }
func (a stringAddr) String() string  { return string(a) }

func TestMachineInfo(t *testing.T) {
	addrs := []net.Addr{
		&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)},
		&net.IPNet{IP: net.ParseIP("::1"), Mask: net.CIDRMask(128, 128)},
		&net.IPNet{IP: net.ParseIP("192.168.1.20").To4(), Mask: net.CIDRMask(24, 32)},
		&net.IPNet{IP: net.ParseIP("169.254.3.4"), Mask: net.CIDRMask(16, 32)},
		&net.IPNet{IP: net.ParseIP("fe80::abcd"), Mask: net.CIDRMask(64, 128)},
		&net.IPAddr{IP: net.ParseIP("2001:db8::7")},
		&net.IPNet{IP: net.ParseIP("192.168.1.20"), Mask: net.CIDRMask(24, 32)}, // again, 16-byte form
		stringAddr("10.9.8.7/8"),
		stringAddr("not an address"),
	}
	log := slog.New(slog.DiscardHandler)
	m := machineInfo(func() (string, error) { return "web01", nil }, func() ([]net.Addr, error) { return addrs, nil }, log)
	want := protocol.MachineInfo{Hostname: "web01", IPs: []string{"192.168.1.20", "2001:db8::7", "10.9.8.7"}}
	if m.Hostname != want.Hostname || !slices.Equal(m.IPs, want.IPs) {
		t.Errorf("machineInfo = %+v, want %+v", m, want)
	}

	// Failures leave the fields empty and do not stop the scan.
	m = machineInfo(func() (string, error) { return "", errors.New("no name") },
		func() ([]net.Addr, error) { return nil, errors.New("no interfaces") }, log)
	if m.Hostname != "" || len(m.IPs) != 0 {
		t.Errorf("machineInfo on failures = %+v", m)
	}
}

func TestLocations(t *testing.T) {
	der := []byte{0x30, 0x03, 0x02, 0x01, 0x01}
	// SHA-1 of those five bytes, uppercase, as Windows shows thumbprints.
	tp := Thumbprint(der)
	if len(tp) != 40 || tp != upper(tp) {
		t.Fatalf("Thumbprint = %q, want 40 uppercase hex digits", tp)
	}
	if got, want := CertLocation("LocalMachine", "Remote Desktop", tp).String(), "certstore://LocalMachine/Remote%20Desktop/"+tp; got != want {
		t.Errorf("CertLocation = %s, want %s", got, want)
	}
	if got, want := StoreLocation("System", "java-cacerts").String(), "certstore://System/java-cacerts"; got != want {
		t.Errorf("StoreLocation = %s, want %s", got, want)
	}
	l, err := protocol.ParseLocation(CertLocation("Services", `NTDS\My`, tp).String())
	if err != nil || l.Host != "Services" || l.Path != `/NTDS\My/`+tp {
		t.Errorf("service store location does not round-trip: %+v, %v", l, err)
	}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
