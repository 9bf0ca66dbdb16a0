// Package certstore discovers the certificates installed in the operating
// system's certificate stores (B4.4): the Windows system stores through
// crypt32, and on Linux the trust stores that distributions and Java keep
// as files. Every finding names the machine it was read on.
//
// Targets: certstore:// reads every store of the machine;
// certstore://LOCATION reads every store of one location;
// certstore://LOCATION/STORE reads one store (certstore://LocalMachine/My on
// Windows, certstore://System/java-cacerts on Linux). A certificate's
// location is certstore://LOCATION/STORE/THUMBPRINT, the thumbprint being
// the SHA-1 of its DER in uppercase hex, as Windows shows it.
package certstore

import (
	"context"
	"crypto/sha1" //nolint:gosec // the thumbprint is SHA-1 by definition; it names, it does not protect.
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/emsign/bot/connectors"
	"github.com/emsign/bot/protocol"
)

// sourceName is Finding.Source for everything this package finds.
const sourceName = "certstore"

// Config configures a Source. Every field is optional.
type Config struct {
	Logger *slog.Logger
	// Now stamps findings (SeenAt); time.Now by default.
	Now func() time.Time
	// Hostname names the machine; os.Hostname by default.
	Hostname func() (string, error)
	// Addrs lists the machine's addresses; net.InterfaceAddrs by default.
	Addrs func() ([]net.Addr, error)
	// Roots, on Linux, are the file system roots the stores are read
	// under, "/" by default; tests point them at a temporary directory.
	// Each store is the union of what it holds under every root. Symbolic
	// links are resolved by the operating system, so an absolute link
	// inside a root points outside it. Ignored on Windows.
	Roots []string
}

// Source reads the local certificate stores. It is safe for concurrent use.
type Source struct {
	log      *slog.Logger
	now      func() time.Time
	hostname func() (string, error)
	addrs    func() ([]net.Addr, error)
	roots    []string
}

var _ connectors.Source = (*Source)(nil)

// New returns a Source reading the stores of the machine it runs on.
func New(cfg Config) (*Source, error) {
	s := &Source{
		log:      cfg.Logger,
		now:      cfg.Now,
		hostname: cfg.Hostname,
		addrs:    cfg.Addrs,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.hostname == nil {
		s.hostname = os.Hostname
	}
	if s.addrs == nil {
		s.addrs = net.InterfaceAddrs
	}
	for _, r := range cfg.Roots {
		if r == "" {
			r = "/"
		}
		if !filepath.IsAbs(r) {
			return nil, fmt.Errorf("certstore: root %q is not an absolute path", r)
		}
		s.roots = append(s.roots, filepath.Clean(r))
	}
	if len(s.roots) == 0 {
		s.roots = []string{"/"}
	}
	return s, nil
}

// Discover streams the certificates of the stores t names. A store that is
// absent is skipped; one that is present but unreadable is a finding with
// Error set. Only a target that names no store of this machine, or an
// error from emit or ctx, ends the discovery with an error.
func (s *Source) Discover(ctx context.Context, t protocol.Target, emit connectors.Emit) error {
	if t.Scheme != protocol.SchemeCertStore {
		return fmt.Errorf("certstore: cannot scan %s targets", t.Scheme)
	}
	sc := &scan{
		ctx:     ctx,
		log:     s.log.With("target", t.String()),
		now:     s.now,
		machine: machineInfo(s.hostname, s.addrs, s.log),
		emitFn:  emit,
	}
	err := s.discover(sc, t)
	switch {
	case err == nil:
		return nil
	case sc.emitErr != nil:
		// The receiver's own error, returned as it gave it.
		return sc.emitErr
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		return fmt.Errorf("certstore: %w", err)
	}
}

// scan is one run of Discover: what every finding shares.
type scan struct {
	ctx     context.Context
	log     *slog.Logger
	now     func() time.Time
	machine protocol.MachineInfo
	emitFn  connectors.Emit
	emitErr error
}

func (sc *scan) emit(f protocol.Finding) error {
	if err := sc.ctx.Err(); err != nil {
		return err
	}
	f.Source = sourceName
	f.Format = protocol.FormatCertStore
	// Each finding gets its own copy: a receiver that edits one must not
	// change the others.
	m := sc.machine
	m.IPs = slices.Clone(m.IPs)
	f.Machine = &m
	f.SeenAt = sc.now()
	if err := sc.emitFn(f); err != nil {
		sc.emitErr = err
		return err
	}
	return nil
}

// store starts reading one store.
func (sc *scan) store(location, name string) *storeScan {
	return &storeScan{scan: sc, location: location, name: name, seen: map[string]bool{}}
}

// storeScan emits the findings of one store, each certificate once: the
// same root is often both in a bundle and in a file of its own.
type storeScan struct {
	*scan
	location, name string
	seen           map[string]bool // thumbprints emitted
}

// cert emits a certificate (chain[0]) found in the store, unless the store
// already reported it. problem, if not empty, is recorded with it.
func (st *storeScan) cert(chain [][]byte, key *protocol.KeyInfo, problem string) error {
	tp := Thumbprint(chain[0])
	if st.seen[tp] {
		return nil
	}
	st.seen[tp] = true
	return st.emit(protocol.Finding{
		Location: CertLocation(st.location, st.name, tp),
		Chain:    chain,
		Key:      key,
		Error:    problem,
	})
}

// problem emits a finding for a part of the store that could not be read.
func (st *storeScan) problem(err error) error {
	st.log.Warn("certificate store problem", "store", st.location+"/"+st.name, "err", err)
	return st.emit(protocol.Finding{
		Location: StoreLocation(st.location, st.name),
		Error:    err.Error(),
	})
}

// Thumbprint is what Windows calls a certificate's thumbprint: the SHA-1
// of its DER, in uppercase hex.
func Thumbprint(der []byte) string {
	return fmt.Sprintf("%X", sha1.Sum(der)) //nolint:gosec // see the import.
}

// CertLocation is the location of one certificate in a store:
// certstore://LOCATION/STORE/THUMBPRINT.
func CertLocation(location, store, thumbprint string) protocol.Location {
	return protocol.Location{Scheme: protocol.SchemeCertStore, Host: location, Path: "/" + store + "/" + thumbprint}
}

// StoreLocation is the location of a whole store, for problems that belong
// to no one certificate: certstore://LOCATION/STORE.
func StoreLocation(location, store string) protocol.Location {
	return protocol.Location{Scheme: protocol.SchemeCertStore, Host: location, Path: "/" + store}
}

// publicKeyInfo describes the key pair of a certificate from its public
// half: what a store tells about a private key without opening it.
func publicKeyInfo(der []byte) *protocol.KeyInfo {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return &protocol.KeyInfo{Algorithm: "unknown"}
	}
	alg, bits := protocol.PublicKeyInfo(c.PublicKey)
	return &protocol.KeyInfo{Algorithm: alg, Bits: bits}
}

// machineInfo names this machine by its hostname and the addresses others
// can reach it on (B4.4). Loopback, link-local and unspecified addresses
// are left out: every machine has them, so they identify none. A failure
// is logged and leaves the field empty rather than failing the scan: the
// certificates are still worth reporting.
func machineInfo(hostname func() (string, error), addrs func() ([]net.Addr, error), log *slog.Logger) protocol.MachineInfo {
	var m protocol.MachineInfo
	if h, err := hostname(); err != nil {
		log.Warn("cannot read the hostname", "err", err)
	} else {
		m.Hostname = h
	}
	as, err := addrs()
	if err != nil {
		log.Warn("cannot list the network addresses", "err", err)
	}
	for _, a := range as {
		ip, ok := addrOf(a)
		if !ok || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
			ip.IsMulticast() || ip.IsUnspecified() {
			continue
		}
		if s := ip.String(); !slices.Contains(m.IPs, s) {
			m.IPs = append(m.IPs, s)
		}
	}
	return m
}

func addrOf(a net.Addr) (netip.Addr, bool) {
	var ip net.IP
	switch v := a.(type) {
	case *net.IPNet:
		ip = v.IP
	case *net.IPAddr:
		ip = v.IP
	default:
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			return p.Addr().Unmap().WithZone(""), true
		}
		if p, err := netip.ParseAddr(a.String()); err == nil {
			return p.Unmap().WithZone(""), true
		}
		return netip.Addr{}, false
	}
	addr, ok := netip.AddrFromSlice(ip)
	return addr.Unmap(), ok
}

// unknownStoreError is a target naming a store this machine does not have.
func unknownStoreError(kind, name string, known []string) error {
	return fmt.Errorf("unknown store %s %q (known: %s)", kind, name, strings.Join(known, ", "))
}
