//go:build windows

package certstore

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/emsign/bot/protocol"
	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
	"software.sslmate.com/src/go-pkcs12"
)

// installWithKey puts a new certificate and its private key into
// CurrentUser\My the way importing a PFX does, and removes it when the
// test ends. It returns the certificate's thumbprint.
func installWithKey(t *testing.T) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "certstore windows test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	// 3DES and SHA-1: what every Windows (and Wine) imports.
	pfx, err := pkcs12.LegacyDES.Encode(key, cert, nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := windows.UTF16PtrFromString("test")
	blob := windows.CryptDataBlob{Size: uint32(len(pfx)), Data: &pfx[0]}
	tmp, err := windows.PFXImportCertStore(&blob, pw, windows.CRYPT_USER_KEYSET)
	if err != nil {
		t.Fatalf("PFXImportCertStore: %v", err)
	}
	defer windows.CertCloseStore(tmp, 0)
	cc, err := windows.CertEnumCertificatesInStore(tmp, nil)
	if err != nil {
		t.Fatalf("the imported PFX holds no certificate: %v", err)
	}
	defer windows.CertFreeCertificateContext(cc)

	my := openCurrentUserMy(t)
	var added *windows.CertContext
	err = windows.CertAddCertificateContextToStore(my, cc, windows.CERT_STORE_ADD_REPLACE_EXISTING, &added)
	if err != nil {
		windows.CertCloseStore(my, 0)
		t.Fatalf(`add to CurrentUser\My: %v`, err)
	}
	// Release everything now: Wine writes a store back to the registry only
	// when its last reference goes, and the scan must see what another
	// process would.
	windows.CertFreeCertificateContext(added)
	windows.CertCloseStore(my, 0)
	t.Cleanup(func() { removeFromCurrentUserMy(t, der) })
	return Thumbprint(der)
}

func openCurrentUserMy(t *testing.T) windows.Handle {
	t.Helper()
	name, _ := windows.UTF16PtrFromString("My")
	my, err := windows.CertOpenStore(windows.CERT_STORE_PROV_SYSTEM_W, 0, 0,
		windows.CERT_SYSTEM_STORE_CURRENT_USER, uintptr(unsafe.Pointer(name)))
	if err != nil {
		t.Fatalf(`open CurrentUser\My for writing: %v`, err)
	}
	return my
}

func removeFromCurrentUserMy(t *testing.T, der []byte) {
	my := openCurrentUserMy(t)
	defer windows.CertCloseStore(my, 0)
	sum := sha1.Sum(der)
	hash := windows.CryptHashBlob{Size: uint32(len(sum)), Data: &sum[0]}
	cc, err := windows.CertFindCertificateInStore(my, windows.X509_ASN_ENCODING, 0,
		windows.CERT_FIND_SHA1_HASH, unsafe.Pointer(&hash), nil)
	if err != nil {
		t.Errorf(`find the test certificate in CurrentUser\My to remove it: %v`, err)
		return
	}
	if err := windows.CertDeleteCertificateFromStore(cc); err != nil {
		t.Errorf(`remove the test certificate from CurrentUser\My: %v`, err)
	}
	// Wine (8.0) reports success but keeps the certificate in the
	// registry; remove its key there too. On Windows it is gone already.
	err = registry.DeleteKey(registry.CURRENT_USER, `Software\Microsoft\SystemCertificates\My\Certificates\`+Thumbprint(der))
	if err != nil && !errors.Is(err, windows.ERROR_FILE_NOT_FOUND) {
		t.Errorf("remove the test certificate's registry key: %v", err)
	}
}

func discoverAll(t *testing.T, target string) ([]protocol.Finding, error) {
	t.Helper()
	src, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	tg, err := protocol.ParseTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	var got []protocol.Finding
	err = src.Discover(context.Background(), tg, func(f protocol.Finding) error {
		got = append(got, f)
		return nil
	})
	return got, err
}

func TestWindowsStores(t *testing.T) {
	thumb := installWithKey(t)

	got, err := discoverAll(t, "certstore://")
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	perStore := map[string]int{}
	var mine *protocol.Finding
	for i, f := range got {
		if f.Error != "" {
			t.Logf("problem at %s: %s", f.Location, f.Error)
		}
		if f.Machine == nil || f.Machine.Hostname == "" {
			t.Errorf("%s: machine = %+v, want a hostname", f.Location, f.Machine)
		}
		if len(f.Chain) == 0 {
			continue
		}
		store := f.Location.Host + "/" + strings.SplitN(strings.TrimPrefix(f.Location.Path, "/"), "/", 2)[0]
		perStore[store]++
		if !strings.HasSuffix(f.Location.Path, "/"+Thumbprint(f.Chain[0])) {
			t.Errorf("%s: location does not end in the thumbprint", f.Location)
		}
		if f.Location.String() == "certstore://CurrentUser/My/"+thumb {
			mine = &got[i]
		}
	}
	t.Logf("certificates per store: %v", perStore)
	if len(got) > 0 {
		t.Logf("machine: %+v", *got[0].Machine)
	}
	if perStore["LocalMachine/Root"] == 0 {
		t.Errorf(`no certificate in LocalMachine\Root`)
	}
	if mine == nil {
		t.Fatalf(`the certificate installed with its key (%s) was not found in CurrentUser\My`, thumb)
	}
	if mine.Key == nil || mine.Key.Algorithm != "RSA" || mine.Key.Bits != 2048 {
		t.Errorf("installed certificate: key = %+v, want RSA 2048", mine.Key)
	}
	for _, f := range got {
		if f.Key != nil {
			t.Logf("has a private key: %s", f.Location)
		}
	}
}

func TestWindowsTargets(t *testing.T) {
	got, err := discoverAll(t, "certstore://localmachine/root")
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if len(got) == 0 {
		t.Fatal(`nothing found in LocalMachine\Root`)
	}
	for _, f := range got {
		if f.Location.Host != "LocalMachine" || !strings.HasPrefix(f.Location.Path, "/Root/") {
			t.Errorf("location %s, want certstore://LocalMachine/Root/...", f.Location)
		}
	}

	if _, err := discoverAll(t, "certstore://LocalMachine/NoSuchStore"); err == nil ||
		err.Error() != `certstore: store LocalMachine/NoSuchStore does not exist` {
		t.Errorf("made-up store: %v", err)
	}
	if _, err := discoverAll(t, "certstore://System/ca-certificates"); err == nil ||
		!strings.Contains(err.Error(), `unknown store location "System" (known: LocalMachine, CurrentUser, Services)`) {
		t.Errorf("linux location on windows: %v", err)
	}
	// A store of the usual list that this machine lacks is not an error.
	if _, err := discoverAll(t, "certstore://LocalMachine/WebHosting"); err != nil {
		t.Errorf("WebHosting: %v", err)
	}
}
