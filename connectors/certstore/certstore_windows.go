//go:build windows

package certstore

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"unsafe"

	"github.com/emsign/bot/protocol"
	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
)

// certKeyProvInfoPropID is CERT_KEY_PROV_INFO_PROP_ID (wincrypt.h). A
// certificate has it when a private key that belongs to it was installed
// with it, in a CryptoAPI CSP or a CNG key storage provider alike.
const certKeyProvInfoPropID = 2

// servicesKey is where each service's certificate stores live in the
// registry: one subkey per service that has any.
const servicesKey = `SOFTWARE\Microsoft\Cryptography\Services`

// winLocation is a system store location, as crypt32 names it with a
// CERT_SYSTEM_STORE_* flag.
type winLocation struct {
	name string
	flag uint32
	// stores are read by certstore:// and certstore://LOCATION; any
	// other store of the location can be named in a target.
	stores []string
	// services says the stores are each service's My store, listed from
	// the registry (e.g. NTDS\My, where domain controllers keep their
	// LDAPS certificate).
	services bool
}

func winLocations() []winLocation {
	return []winLocation{
		{
			name: "LocalMachine",
			flag: windows.CERT_SYSTEM_STORE_LOCAL_MACHINE,
			// Disallowed is beyond the usual list because a certificate
			// an administrator distrusted is installed too, and worth
			// seeing. AuthRoot is left out: Root already shows it (the
			// system store is a collection over both).
			stores: []string{"My", "Root", "CA", "WebHosting", "TrustedPeople", "TrustedPublisher", "Remote Desktop", "Disallowed"},
		},
		{
			// The account the bot runs as: LocalSystem for the service.
			name:   "CurrentUser",
			flag:   windows.CERT_SYSTEM_STORE_CURRENT_USER,
			stores: []string{"My"},
		},
		{
			name:     "Services",
			flag:     windows.CERT_SYSTEM_STORE_SERVICES,
			services: true,
		},
	}
}

func (s *Source) discover(sc *scan, t protocol.Target) error {
	locs := winLocations()
	if t.Host != "" {
		i := slices.IndexFunc(locs, func(l winLocation) bool { return strings.EqualFold(l.name, t.Host) })
		if i < 0 {
			names := make([]string, len(locs))
			for i, l := range locs {
				names[i] = l.name
			}
			return unknownStoreError("location", t.Host, names)
		}
		locs = locs[i : i+1]
	}
	// CertGetCertificateContextProperty is not in x/sys/windows.
	getProp := windows.NewLazySystemDLL("crypt32.dll").NewProc("CertGetCertificateContextProperty")
	if err := getProp.Find(); err != nil {
		return fmt.Errorf("crypt32: %w", err)
	}
	w := &winReader{scan: sc, getProp: getProp}
	for _, loc := range locs {
		stores := loc.stores
		if loc.services {
			var err error
			if stores, err = serviceStores(); err != nil {
				if err := sc.store(loc.name, "").problem(fmt.Errorf(`list service stores (HKLM\%s): %w`, servicesKey, err)); err != nil {
					return err
				}
			}
		}
		if t.Path != "" {
			name, known := canonicalStore(t.Path, stores)
			found, err := w.readStore(loc, name)
			if err != nil {
				return err
			}
			// A store of the usual list may be missing (WebHosting
			// without IIS); one the target made up is a typo to report.
			if !found && !known {
				return fmt.Errorf("store %s/%s does not exist", loc.name, name)
			}
			continue
		}
		for _, name := range stores {
			if _, err := w.readStore(loc, name); err != nil {
				return err
			}
		}
	}
	return nil
}

// canonicalStore spells a store name the way the list does, since crypt32
// matches names without regard to case but locations should not vary.
func canonicalStore(name string, stores []string) (string, bool) {
	if i := slices.IndexFunc(stores, func(s string) bool { return strings.EqualFold(s, name) }); i >= 0 {
		return stores[i], true
	}
	return name, false
}

// serviceStores lists the My store of every service that has certificate
// stores, as crypt32 names them: SERVICE\My.
func serviceStores() ([]string, error) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, servicesKey, registry.ENUMERATE_SUB_KEYS)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	defer k.Close()
	names, err := k.ReadSubKeyNames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	stores := make([]string, len(names))
	for i, n := range names {
		stores[i] = n + `\My`
	}
	return stores, nil
}

// winReader reads the system stores of one Discover.
type winReader struct {
	*scan
	getProp *windows.LazyProc
}

// readStore emits the certificates of one system store. found is false
// when the store does not exist.
func (w *winReader) readStore(loc winLocation, name string) (found bool, err error) {
	ss := w.store(loc.name, name)
	p, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return true, ss.problem(fmt.Errorf("store name %q: %w", name, err))
	}
	// Read-only and open-existing: a scan must neither need write access
	// nor create the stores it looks for.
	h, err := windows.CertOpenStore(windows.CERT_STORE_PROV_SYSTEM_W, 0, 0,
		loc.flag|windows.CERT_STORE_OPEN_EXISTING_FLAG|windows.CERT_STORE_READONLY_FLAG,
		uintptr(unsafe.Pointer(p)))
	runtime.KeepAlive(p)
	if err != nil {
		if isNotFound(err) {
			w.log.Debug("no such store", "store", loc.name+`\`+name)
			return false, nil
		}
		return true, ss.problem(fmt.Errorf(`open %s\%s: %w`, loc.name, name, err))
	}
	defer windows.CertCloseStore(h, 0)

	var cc *windows.CertContext
	for {
		if err := w.ctx.Err(); err != nil {
			if cc != nil {
				windows.CertFreeCertificateContext(cc)
			}
			return true, err
		}
		// Each call frees the context passed in and returns the next.
		cc, err = windows.CertEnumCertificatesInStore(h, cc)
		if cc == nil {
			if errors.Is(err, windows.Errno(windows.CRYPT_E_NOT_FOUND)) {
				return true, nil
			}
			return true, ss.problem(fmt.Errorf(`enumerate %s\%s: %w`, loc.name, name, err))
		}
		// The context's memory belongs to crypt32: copy before the next call.
		der := bytes.Clone(unsafe.Slice(cc.EncodedCert, cc.Length))
		var key *protocol.KeyInfo
		if w.hasPrivateKey(cc) {
			key = publicKeyInfo(der)
		}
		var msg string
		if _, err := x509.ParseCertificate(der); err != nil {
			msg = fmt.Sprintf(`%s\%s: %v`, loc.name, name, err)
		}
		if err := ss.cert([][]byte{der}, key, msg); err != nil {
			windows.CertFreeCertificateContext(cc)
			return true, err
		}
	}
}

// hasPrivateKey asks whether the certificate carries a key provider,
// without opening the key: opening it could prompt for a smart card or a
// password, and the scan only needs to know that the key is there.
func (w *winReader) hasPrivateKey(cc *windows.CertContext) bool {
	var size uint32
	// With no buffer, the call only reports whether the property is set
	// (and its size).
	r, _, _ := w.getProp.Call(uintptr(unsafe.Pointer(cc)), certKeyProvInfoPropID, 0, uintptr(unsafe.Pointer(&size)))
	return r != 0
}

// isNotFound tells a store or key that does not exist from one that
// cannot be read. crypt32 passes on the registry's ERROR_FILE_NOT_FOUND,
// sometimes as an HRESULT.
func isNotFound(err error) bool {
	const hresultFileNotFound = windows.Errno(0x80070002)
	return errors.Is(err, windows.ERROR_FILE_NOT_FOUND) || errors.Is(err, hresultFileNotFound)
}
