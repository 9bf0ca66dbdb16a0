package ldap

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
)

// The test directory: one throwaway slapd for the package, started by the
// first test that needs it and stopped by TestMain.
const (
	suffix     = "dc=example,dc=com"
	rootDN     = "cn=admin," + suffix
	rootPW     = "Adm1n-pw_Zq7"
	readerDN   = "cn=reader," + suffix
	readerPW   = "Rd3r-pw_Xq9v"
	installMsg = "slapd is not installed: run " +
		"`echo \"slapd slapd/no_configuration boolean true\" | debconf-set-selections` then " +
		"`DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slapd ldap-utils`"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	os.Exit(code)
}

var (
	sharedOnce sync.Once
	shared     *slapd
	sharedErr  error
)

// slapd is a running test server.
type slapd struct {
	dir     string
	port    int // ldap://127.0.0.1:port
	tlsPort int // ldaps://127.0.0.1:tlsPort
	caFile  string
	ca      *testCA
}

func (s *slapd) hostPort() string    { return "127.0.0.1:" + strconv.Itoa(s.port) }
func (s *slapd) tlsHostPort() string { return "127.0.0.1:" + strconv.Itoa(s.tlsPort) }

// needSlapd returns the package's server, loaded with the fixture entries.
// A missing slapd fails the test: it is never skipped.
func needSlapd(t *testing.T) *slapd {
	t.Helper()
	sharedOnce.Do(func() {
		shared, sharedErr = startSlapd()
		if sharedErr == nil {
			sharedErr = shared.loadFixture()
		}
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func findTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := "/usr/sbin/" + name
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", errors.New(installMsg)
}

func startSlapd() (*slapd, error) {
	bin, err := findTool("slapd")
	if err != nil {
		return nil, err
	}
	passwd, err := findTool("slappasswd")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat("/usr/lib/ldap/back_mdb.so"); err != nil {
		return nil, fmt.Errorf("slapd's back_mdb module is missing (%v); %s", err, installMsg)
	}
	dir, err := os.MkdirTemp("", "ldaptest-slapd-")
	if err != nil {
		return nil, err
	}
	hash, err := exec.Command(passwd, "-s", rootPW).Output()
	if err != nil {
		return nil, fmt.Errorf("slappasswd: %v", err)
	}
	ca := newTestCA()
	certPEM, keyPEM := ca.serverCert("127.0.0.1")
	s := &slapd{dir: dir, caFile: filepath.Join(dir, "ca.pem"), ca: ca}
	for name, data := range map[string][]byte{
		"ca.pem":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}),
		"server.pem": certPEM,
		"server.key": keyPEM,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile %[1]s/slapd.pid
TLSCACertificateFile %[1]s/ca.pem
TLSCertificateFile %[1]s/server.pem
TLSCertificateKeyFile %[1]s/server.key
sizelimit size.soft=1000 size.hard=1000 size.prtotal=unlimited
database mdb
maxsize 104857600
dbnosync
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
directory %[1]s/db
access to dn.subtree="ou=restricted,%[2]s" by users read by * none
access to attrs=userPassword by self read by anonymous auth by * none
access to * by * read
`, dir, suffix, rootDN, strings.TrimSpace(string(hash)))
	confFile := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	// slapd cannot listen on port 0: pick free ports below the ephemeral
	// range and try again if another process took one meanwhile.
	var lastErr error
	for attempt := 0; attempt < 8; attempt++ {
		s.port, s.tlsPort = freePort(), freePort()
		if s.port == s.tlsPort {
			continue
		}
		urls := fmt.Sprintf("ldap://%s/ ldaps://%s/", s.hostPort(), s.tlsHostPort())
		out, err := exec.Command(bin, "-f", confFile, "-h", urls).CombinedOutput()
		if err != nil {
			lastErr = fmt.Errorf("slapd: %v: %s", err, out)
			continue
		}
		if err := s.waitReady(); err != nil {
			lastErr = err
			s.stop()
			continue
		}
		return s, nil
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

func freePort() int {
	for {
		p := 20000 + int(randUint(12000))
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		_ = l.Close()
		return p
	}
}

func randUint(n int64) int64 {
	v, _ := rand.Int(rand.Reader, big.NewInt(n))
	return v.Int64()
}

func (s *slapd) waitReady() error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c, err := goldap.DialURL("ldap://"+s.hostPort(), goldap.DialWithDialer(&net.Dialer{Timeout: time.Second}))
		if err == nil {
			_, err = c.Search(goldap.NewSearchRequest("", goldap.ScopeBaseObject, 0, 0, 5, false, "(objectClass=*)", nil, nil))
			c.Close()
			if err == nil {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("slapd did not answer within 15s")
}

// stop ends the server by the PID in its pid file.
func (s *slapd) stop() {
	pidFile := filepath.Join(s.dir, "slapd.pid")
	if b, err := os.ReadFile(pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Signal(syscall.SIGTERM)
				for i := 0; i < 50; i++ {
					if _, err := os.Stat(pidFile); err != nil {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				_ = p.Kill()
			}
		}
	}
	_ = os.RemoveAll(s.dir)
}

// admin connects as the rootdn.
func (s *slapd) admin() (*goldap.Conn, error) {
	c, err := goldap.DialURL("ldap://" + s.hostPort())
	if err != nil {
		return nil, err
	}
	if err := c.Bind(rootDN, rootPW); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// entry is one entry to add: attributes with string or binary values.
type entry struct {
	dn    string
	attrs [][2]any // name, []string or [][]byte
}

func add(c *goldap.Conn, e entry) error {
	req := goldap.NewAddRequest(e.dn, nil)
	for _, a := range e.attrs {
		name := a[0].(string)
		switch v := a[1].(type) {
		case []string:
			req.Attribute(name, v)
		case [][]byte:
			vals := make([]string, len(v))
			for i, b := range v {
				vals[i] = string(b)
			}
			req.Attribute(name, vals)
		case string:
			req.Attribute(name, []string{v})
		case []byte:
			req.Attribute(name, []string{string(v)})
		}
	}
	if err := c.Add(req); err != nil {
		return fmt.Errorf("add %s: %w", e.dn, err)
	}
	return nil
}

// testCA signs the test certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// leafKey is shared by the leaves: only the certificates matter.
	leafKey *ecdsa.PrivateKey
}

func newTestCA() *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "LDAP Test Root CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, leafKey: leafKey}
}

// leaf issues a certificate for cn.
func (ca *testCA) leaf(cn string) []byte {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(randUint(1 << 62)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(48 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, ca.leafKey.Public(), ca.key)
	if err != nil {
		panic(err)
	}
	return der
}

// serverCert issues slapd's TLS certificate for an IP address.
func (ca *testCA) serverCert(ip string) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(randUint(1 << 62)),
		Subject:      pkix.Name{CommonName: ip},
		IPAddresses:  []net.IP{net.ParseIP(ip)},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(48 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		panic(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
}
