//go:build linux

package certstore

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/protocol"
	"github.com/pavlo-v-chernykh/keystore-go/v4"
	"software.sslmate.com/src/go-pkcs12"
)

// testCert is a generated self-signed CA certificate and its key.
type testCert struct {
	der []byte
	key *ecdsa.PrivateKey
}

func newCert(t *testing.T, cn string) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"certstore test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{der: der, key: key}
}

func pemOf(ders ...[]byte) []byte {
	var b bytes.Buffer
	for _, d := range ders {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: d})
	}
	return b.Bytes()
}

// trustedPEM writes OpenSSL's TRUSTED CERTIFICATE form: the DER followed
// by trust settings (here: trusted for server authentication).
func trustedPEM(t *testing.T, der []byte) []byte {
	t.Helper()
	aux, err := asn1.Marshal(struct{ Trust []asn1.ObjectIdentifier }{
		Trust: []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "TRUSTED CERTIFICATE", Bytes: slices.Concat(der, aux)})
}

// sha1Upper is the thumbprint, computed here independently of the code.
func sha1Upper(der []byte) string {
	sum := sha1.Sum(der)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

func loc(store string, c testCert) string {
	return "certstore://System/" + store + "/" + sha1Upper(c.der)
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func writeJKS(t *testing.T, path, password string, trusted []testCert, withKey *testCert) {
	t.Helper()
	ks := keystore.New()
	for i, c := range trusted {
		err := ks.SetTrustedCertificateEntry("ca"+string(rune('a'+i)), keystore.TrustedCertificateEntry{
			CreationTime: time.Now(),
			Certificate:  keystore.Certificate{Type: "X509", Content: c.der},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if withKey != nil {
		pk, err := x509.MarshalPKCS8PrivateKey(withKey.key)
		if err != nil {
			t.Fatal(err)
		}
		err = ks.SetPrivateKeyEntry("server", keystore.PrivateKeyEntry{
			CreationTime:     time.Now(),
			PrivateKey:       pk,
			CertificateChain: []keystore.Certificate{{Type: "X509", Content: withKey.der}},
		}, []byte(password))
		if err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	if err := ks.Store(&b, []byte(password)); err != nil {
		t.Fatal(err)
	}
	write(t, path, b.Bytes())
}

// fixture is a fake file system root holding the stores of several
// distributions at once, with the faults a real machine may have.
type fixture struct {
	root, fallbackRoot string
	c                  []testCert
}

func newFixture(t *testing.T) fixture {
	f := fixture{root: t.TempDir(), fallbackRoot: t.TempDir()}
	for i := range 11 {
		f.c = append(f.c, newCert(t, "Test Root "+string(rune('A'+i))))
	}
	c, r := f.c, f.root
	at := func(p string) string { return filepath.Join(r, p) }

	// ca-certificates: a bundle with a duplicate, comments, and a block cut
	// off at the end.
	write(t, at("etc/ssl/certs/ca-certificates.crt"), slices.Concat(
		[]byte("# comment\n"), pemOf(c[0].der, c[1].der), []byte("junk between blocks\n"),
		pemOf(c[2].der, c[0].der), []byte("-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAK\n")))
	// openssl: a link to the same bundle.
	symlink(t, at("etc/ssl/certs/ca-certificates.crt"), at("etc/ssl/cert.pem"))

	// pki: the bundle path is a directory; the extracted bundle holds a
	// TRUSTED CERTIFICATE; cert.pem links to it.
	if err := os.MkdirAll(at("etc/pki/tls/certs/ca-bundle.crt"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, at("etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"), slices.Concat(trustedPEM(t, c[3].der), pemOf(c[0].der)))
	symlink(t, "../ca-trust/extracted/pem/tls-ca-bundle.pem", at("etc/pki/tls/cert.pem"))

	// ca-bundle (SUSE): a dangling link.
	symlink(t, at("var/lib/ca-certificates/gone.pem"), at("etc/ssl/ca-bundle.pem"))

	// local: PEM and DER, the same certificate twice, a note, a broken
	// .crt, and a link back up that must not loop.
	write(t, at("usr/local/share/ca-certificates/a.crt"), pemOf(c[4].der))
	write(t, at("usr/local/share/ca-certificates/sub/b.der"), c[4].der)
	write(t, at("usr/local/share/ca-certificates/sub/c.crt"), c[5].der)
	write(t, at("usr/local/share/ca-certificates/notes.txt"), []byte("added by ops\n"))
	write(t, at("usr/local/share/ca-certificates/bad.crt"), []byte("not a certificate\n"))
	symlink(t, "..", at("usr/local/share/ca-certificates/sub/up"))

	// java-cacerts: Debian's JKS, a JDK linking to it, a JDK with a
	// PKCS#12 trust store (one certificate also in the JKS), and JAVA_HOME
	// (with glob characters in its name) with a JKS whose password is not
	// changeit and which holds a private key entry.
	writeJKS(t, at("etc/ssl/certs/java/cacerts"), "changeit", []testCert{c[6], c[7]}, nil)
	symlink(t, at("etc/ssl/certs/java/cacerts"), at("usr/lib/jvm/jdk-a/lib/security/cacerts"))
	p12, err := pkcs12.Passwordless.EncodeTrustStore([]*x509.Certificate{mustParse(t, c[8].der), mustParse(t, c[6].der)}, "")
	if err != nil {
		t.Fatal(err)
	}
	write(t, at("usr/lib/jvm/jdk-b/lib/security/cacerts"), p12)
	writeJKS(t, at("opt/my[jdk]/lib/security/cacerts"), "secret", []testCert{c[10]}, &c[9])

	// A Debian machine whose bundle was never built: the directory is read
	// instead, hash links and all; its java subdirectory is not.
	fr := func(p string) string { return filepath.Join(f.fallbackRoot, p) }
	write(t, fr("etc/ssl/certs/Test_Root_A.pem"), pemOf(c[0].der))
	symlink(t, "Test_Root_A.pem", fr("etc/ssl/certs/1a2b3c4d.0"))
	write(t, fr("etc/ssl/certs/Test_Root_B.crt"), c[1].der)
	symlink(t, fr("usr/share/ca-certificates/removed.crt"), fr("etc/ssl/certs/5e6f7a8b.0"))
	write(t, fr("etc/ssl/certs/java/Test_Root_C.pem"), pemOf(c[2].der))
	// update-ca-certificates links the administrator's certificates in.
	write(t, fr("usr/local/share/ca-certificates/ours.crt"), pemOf(c[5].der))
	symlink(t, fr("usr/local/share/ca-certificates/ours.crt"), fr("etc/ssl/certs/ours.pem"))
	return f
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// problem is an expected error finding: its location and a part of its
// message (the path it names).
type problem struct{ location, contains string }

func TestDiscover(t *testing.T) {
	f := newFixture(t)
	t.Setenv("JAVA_HOME", "/opt/my[jdk]")
	c := f.c
	at := func(p string) string { return filepath.Join(f.root, p) }

	// The bundle's last block is cut off: the problem names its line.
	bundle, err := os.ReadFile(at("etc/ssl/certs/ca-certificates.crt"))
	if err != nil {
		t.Fatal(err)
	}
	truncated := fmt.Sprintf(`: PEM block "CERTIFICATE" at line %d is truncated`,
		1+bytes.Count(bundle[:bytes.LastIndex(bundle, []byte("-----BEGIN "))], []byte("\n")))

	caCerts := []string{loc("ca-certificates", c[0]), loc("ca-certificates", c[1]), loc("ca-certificates", c[2])}
	caProblems := []problem{{"certstore://System/ca-certificates", at("etc/ssl/certs/ca-certificates.crt") + truncated}}
	pkiCerts := []string{loc("pki", c[3]), loc("pki", c[0])}
	pkiProblems := []problem{{"certstore://System/pki", at("etc/pki/tls/certs/ca-bundle.crt") + " is a directory"}}
	bundleProblems := []problem{{"certstore://System/ca-bundle", at("etc/ssl/ca-bundle.pem")}}
	localCerts := []string{loc("local", c[4]), loc("local", c[5])}
	localProblems := []problem{{"certstore://System/local", at("usr/local/share/ca-certificates/bad.crt") + ": holds no certificate"}}
	javaCerts := []string{loc("java-cacerts", c[6]), loc("java-cacerts", c[7]), loc("java-cacerts", c[8]), loc("java-cacerts", c[9]), loc("java-cacerts", c[10])}
	javaProblems := []problem{{"certstore://System/java-cacerts", at("opt/my[jdk]/lib/security/cacerts") + ": no password fits"}}

	tests := []struct {
		name     string
		target   string
		roots    []string
		certs    []string
		problems []problem
		err      string // a part of the error Discover returns
	}{
		{
			name:     "every store",
			target:   "certstore://",
			certs:    slices.Concat(pkiCerts, caCerts, localCerts, javaCerts),
			problems: slices.Concat(pkiProblems, caProblems, bundleProblems, localProblems, javaProblems),
		},
		{
			name:     "every store of the location",
			target:   "certstore://System",
			certs:    slices.Concat(pkiCerts, caCerts, localCerts, javaCerts),
			problems: slices.Concat(pkiProblems, caProblems, bundleProblems, localProblems, javaProblems),
		},
		{
			name:     "java only",
			target:   "certstore://System/java-cacerts",
			certs:    javaCerts,
			problems: javaProblems,
		},
		{
			// Alone, openssl reads the bundle ca-certificates reports when
			// every store is scanned.
			name:     "a store linking to another's file",
			target:   "certstore://System/openssl",
			certs:    []string{loc("openssl", c[0]), loc("openssl", c[1]), loc("openssl", c[2])},
			problems: []problem{{"certstore://System/openssl", at("etc/ssl/cert.pem") + truncated}},
		},
		{
			name:     "names in any case",
			target:   "certstore://system/LOCAL",
			certs:    localCerts,
			problems: localProblems,
		},
		{
			name:     "a missing store is no error",
			target:   "certstore://System/ca-trust",
			certs:    nil,
			problems: nil,
		},
		{
			name:   "directory without a bundle",
			target: "certstore://System/ca-certificates",
			roots:  []string{f.fallbackRoot},
			certs:  []string{loc("ca-certificates", c[0]), loc("ca-certificates", c[1]), loc("ca-certificates", c[5])},
			problems: []problem{{"certstore://System/ca-certificates",
				filepath.Join(f.fallbackRoot, "etc/ssl/certs/5e6f7a8b.0")}},
		},
		{
			// The administrator's certificate is in both stores.
			name:   "every store, directory without a bundle",
			target: "certstore://",
			roots:  []string{f.fallbackRoot},
			certs:  []string{loc("ca-certificates", c[0]), loc("ca-certificates", c[1]), loc("ca-certificates", c[5]), loc("local", c[5])},
			problems: []problem{{"certstore://System/ca-certificates",
				filepath.Join(f.fallbackRoot, "etc/ssl/certs/5e6f7a8b.0")}},
		},
		{
			name:     "several roots make one store",
			target:   "certstore://System/ca-certificates",
			roots:    []string{f.root, f.fallbackRoot},
			certs:    slices.Concat(caCerts, []string{loc("ca-certificates", c[5])}),
			problems: slices.Concat(caProblems, []problem{{"certstore://System/ca-certificates", filepath.Join(f.fallbackRoot, "etc/ssl/certs/5e6f7a8b.0")}}),
		},
		{
			name:   "unknown store",
			target: "certstore://System/nope",
			err:    `certstore: unknown store name "nope" (known: pki, ca-certificates, ca-trust, ca-bundle, openssl, local, java-cacerts)`,
		},
		{
			name:   "windows location on linux",
			target: "certstore://LocalMachine/My",
			err:    `certstore: unknown store location "LocalMachine" (known: System)`,
		},
		{
			name:   "not a certstore target",
			target: "file:///etc/ssl",
			err:    "certstore: cannot scan file targets",
		},
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			roots := tc.roots
			if roots == nil {
				roots = []string{f.root}
			}
			src, err := New(Config{
				Now:      func() time.Time { return now },
				Hostname: func() (string, error) { return "testhost", nil },
				Addrs: func() ([]net.Addr, error) {
					return []net.Addr{
						&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)},
						&net.IPNet{IP: net.ParseIP("10.1.2.3"), Mask: net.CIDRMask(24, 32)},
						&net.IPNet{IP: net.ParseIP("fe80::1"), Mask: net.CIDRMask(64, 128)},
						&net.IPNet{IP: net.ParseIP("2001:db8::5"), Mask: net.CIDRMask(64, 128)},
					}, nil
				},
				Roots: roots,
			})
			if err != nil {
				t.Fatal(err)
			}
			target, err := protocol.ParseTarget(tc.target)
			if err != nil {
				t.Fatal(err)
			}
			var got []protocol.Finding
			err = src.Discover(context.Background(), target, func(f protocol.Finding) error {
				got = append(got, f)
				return nil
			})
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("Discover error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Discover: %v", err)
			}
			var certs []string
			var problems []protocol.Finding
			for _, f := range got {
				checkCommon(t, f, now)
				if len(f.Chain) == 0 {
					problems = append(problems, f)
					continue
				}
				checkCert(t, f, c)
				certs = append(certs, f.Location.String())
			}
			slices.Sort(certs)
			want := slices.Sorted(slices.Values(tc.certs))
			if !slices.Equal(certs, want) {
				t.Errorf("certificates found:\n  %s\nwant:\n  %s", strings.Join(certs, "\n  "), strings.Join(want, "\n  "))
			}
			checkProblems(t, problems, tc.problems)
		})
	}
}

func checkCommon(t *testing.T, f protocol.Finding, now time.Time) {
	t.Helper()
	if f.Source != "certstore" || f.Format != protocol.FormatCertStore {
		t.Errorf("%s: source %q format %q", f.Location, f.Source, f.Format)
	}
	if f.Machine == nil || f.Machine.Hostname != "testhost" || !slices.Equal(f.Machine.IPs, []string{"10.1.2.3", "2001:db8::5"}) {
		t.Errorf("%s: machine = %+v, want testhost with 10.1.2.3 and 2001:db8::5", f.Location, f.Machine)
	}
	if !f.SeenAt.Equal(now) {
		t.Errorf("%s: seen at %v", f.Location, f.SeenAt)
	}
}

func checkCert(t *testing.T, f protocol.Finding, c []testCert) {
	t.Helper()
	l := f.Location
	if l.Scheme != "certstore" || l.Host != "System" || !strings.HasSuffix(l.Path, "/"+sha1Upper(f.Chain[0])) {
		t.Errorf("location %+v does not end in the thumbprint of its certificate %s", l, sha1Upper(f.Chain[0]))
	}
	if f.Error != "" {
		t.Errorf("%s: unexpected error %q", l, f.Error)
	}
	if _, err := x509.ParseCertificate(f.Chain[0]); err != nil {
		t.Errorf("%s: chain[0] is not the certificate's DER: %v", l, err)
	}
	// Only the JAVA_HOME keystore's private key entry has a key.
	if bytes.Equal(f.Chain[0], c[9].der) {
		if f.Key == nil || f.Key.Algorithm != "ECDSA" || f.Key.Bits != 256 || f.Key.Extractable != nil {
			t.Errorf("%s: key = %+v, want ECDSA 256 of unknown extractability", l, f.Key)
		}
	} else if f.Key != nil {
		t.Errorf("%s: key %+v on a trusted certificate", l, f.Key)
	}
}

func checkProblems(t *testing.T, got []protocol.Finding, want []problem) {
	t.Helper()
	left := slices.Clone(want)
	for _, f := range got {
		i := slices.IndexFunc(left, func(p problem) bool {
			return f.Location.String() == p.location && strings.Contains(f.Error, p.contains)
		})
		if i < 0 {
			t.Errorf("unexpected problem at %s: %s", f.Location, f.Error)
			continue
		}
		left = slices.Delete(left, i, i+1)
	}
	for _, p := range left {
		t.Errorf("missing problem at %s naming %s", p.location, p.contains)
	}
}

func TestDiscoverStopsWhenEmitFails(t *testing.T) {
	f := newFixture(t)
	src, err := New(Config{Roots: []string{f.root}})
	if err != nil {
		t.Fatal(err)
	}
	target, err := protocol.ParseTarget("certstore://")
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("receiver is full")
	n := 0
	err = src.Discover(context.Background(), target, func(protocol.Finding) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("Discover = %v after %d findings, want the receiver's error after 1", err, n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = src.Discover(ctx, target, func(protocol.Finding) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Discover with a cancelled context = %v", err)
	}
}

func TestNewRejectsRelativeRoot(t *testing.T) {
	if _, err := New(Config{Roots: []string{"etc"}}); err == nil || !strings.HasPrefix(err.Error(), "certstore: ") {
		t.Errorf("New with a relative root = %v", err)
	}
}

// TestThisMachine reads the real stores of the machine the tests run on,
// which has the ca-certificates package.
func TestThisMachine(t *testing.T) {
	const bundle = "/etc/ssl/certs/ca-certificates.crt"
	if _, err := os.Stat(bundle); err != nil {
		t.Fatalf("%v: install the CA certificates (apt-get install ca-certificates) to run this test", err)
	}
	src, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	target, err := protocol.ParseTarget("certstore://")
	if err != nil {
		t.Fatal(err)
	}
	perStore := map[string]int{}
	var machine *protocol.MachineInfo
	err = src.Discover(context.Background(), target, func(f protocol.Finding) error {
		if f.Error != "" {
			t.Logf("%s: %s", f.Location, f.Error)
		}
		store, _, _ := strings.Cut(strings.TrimPrefix(f.Location.Path, "/"), "/")
		if len(f.Chain) > 0 {
			perStore[store]++
		}
		if store == "ca-certificates" && f.Error != "" {
			t.Errorf("problem in the system bundle: %s", f.Error)
		}
		machine = f.Machine
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("certificates per store: %v; machine %+v", perStore, machine)
	if perStore["ca-certificates"] == 0 {
		t.Errorf("no certificate found in ca-certificates (%s)", bundle)
	}
	if machine == nil || machine.Hostname == "" {
		t.Errorf("machine = %+v, want a hostname", machine)
	}
	if _, err := os.Stat("/etc/ssl/certs/java/cacerts"); err == nil && perStore["java-cacerts"] == 0 {
		t.Errorf("no certificate found in java-cacerts, though /etc/ssl/certs/java/cacerts exists")
	}
}
