// Package testsvc starts throwaway services for tests: an OpenLDAP slapd on
// loopback and SoftHSM2 tokens in a per-test folder. A missing tool fails
// the test, naming the Debian package to install; nothing is skipped.
package testsvc

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
)

// The directory every Slapd serves.
const (
	Suffix = "dc=example,dc=com"
	RootDN = "cn=admin," + Suffix
	// DefaultRootPW is the rootdn's password unless StartSlapdWithPassword
	// gives another.
	DefaultRootPW = "Adm1n-pw_Testsvc7"
)

const slapdInstall = "slapd is not installed: run `echo \"slapd slapd/no_configuration boolean true\" | debconf-set-selections` then " +
	"`DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slapd ldap-utils` (Debian package slapd)"

// Slapd is a running slapd on 127.0.0.1, stopped by the test's cleanup.
type Slapd struct {
	tb     testing.TB
	Dir    string
	Port   int
	RootDN string
	RootPW string
	cmd    *exec.Cmd
	done   chan struct{}
	log    *bytes.Buffer
}

// StartSlapd starts a slapd serving Suffix with rootdn RootDN and password
// DefaultRootPW, and adds the suffix entry.
func StartSlapd(tb testing.TB) *Slapd { return StartSlapdWithPassword(tb, DefaultRootPW) }

// StartSlapdWithPassword is StartSlapd with the rootdn's password given.
func StartSlapdWithPassword(tb testing.TB, rootPW string) *Slapd {
	tb.Helper()
	bin := "/usr/sbin/slapd"
	if p, err := exec.LookPath("slapd"); err == nil {
		bin = p
	}
	if _, err := os.Stat(bin); err != nil {
		tb.Fatal(slapdInstall)
	}
	if _, err := os.Stat("/usr/lib/ldap/back_mdb.so"); err != nil {
		tb.Fatalf("slapd's back_mdb module is missing: %s", slapdInstall)
	}
	dir := tb.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		tb.Fatal(err)
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile %[1]s/slapd.pid
database mdb
maxsize 104857600
dbnosync
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
directory %[1]s/db
access to * by * read
`, dir, Suffix, RootDN, ssha(rootPW))
	confFile := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	s := &Slapd{tb: tb, Dir: dir, RootDN: RootDN, RootPW: rootPW}
	// slapd cannot listen on port 0: pick a free port below the ephemeral
	// range and try another if someone took it meanwhile. -d 0 keeps slapd
	// in the foreground, so that it is stopped by its own process.
	var lastErr error
	for range 8 {
		s.Port = freeLowPort()
		s.log = &bytes.Buffer{}
		s.cmd = exec.Command(bin, "-d", "0", "-f", confFile, "-h", "ldap://"+s.Addr()+"/")
		s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
		if err := s.cmd.Start(); err != nil {
			tb.Fatalf("slapd: %v", err)
		}
		s.done = make(chan struct{})
		go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.done)
		if lastErr = s.waitReady(); lastErr == nil {
			tb.Cleanup(s.stop)
			s.Add(Suffix, map[string][]string{"objectClass": {"dcObject", "organization"}, "o": {"Example"}, "dc": {"example"}})
			return s
		}
		s.stop()
	}
	tb.Fatalf("slapd did not start: %v", lastErr)
	return nil
}

// Addr is the server's HOST:PORT.
func (s *Slapd) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is ldap://HOST:PORT.
func (s *Slapd) URL() string { return "ldap://" + s.Addr() }

func (s *Slapd) waitReady() error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("slapd exited: %s", s.log)
		default:
		}
		if c, err := s.bind(); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("slapd did not answer within 15s: %s", s.log)
}

func (s *Slapd) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

func (s *Slapd) bind() (*goldap.Conn, error) {
	c, err := goldap.DialURL(s.URL(), goldap.DialWithDialer(&net.Dialer{Timeout: time.Second}))
	if err != nil {
		return nil, err
	}
	if err := c.Bind(s.RootDN, s.RootPW); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Add adds one entry as the rootdn. Binary values (certificates) go in as
// strings holding their bytes.
func (s *Slapd) Add(dn string, attrs map[string][]string) {
	s.tb.Helper()
	c, err := s.bind()
	if err != nil {
		s.tb.Fatal(err)
	}
	defer c.Close()
	req := goldap.NewAddRequest(dn, nil)
	for name, vals := range attrs {
		req.Attribute(name, vals)
	}
	if err := c.Add(req); err != nil {
		s.tb.Fatalf("add %s: %v", dn, err)
	}
}

// AddOU adds the organizational unit ou=NAME,parent and returns its DN.
func (s *Slapd) AddOU(name, parent string) string {
	s.tb.Helper()
	dn := "ou=" + name + "," + parent
	s.Add(dn, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {name}})
	return dn
}

// AddUser adds cn=CN,parent, an inetOrgPerson and pkiUser with the
// certificates (DER) as userCertificate;binary, and returns its DN.
func (s *Slapd) AddUser(cn, parent string, certs ...[]byte) string {
	s.tb.Helper()
	dn := "cn=" + goldap.EscapeDN(cn) + "," + parent
	attrs := map[string][]string{"objectClass": {"inetOrgPerson", "pkiUser"}, "cn": {cn}, "sn": {cn}}
	if len(certs) > 0 {
		attrs["userCertificate;binary"] = ders(certs)
	}
	s.Add(dn, attrs)
	return dn
}

// AddCA adds cn=CN,parent, an applicationProcess and pkiCA with the
// certificates (DER) as cACertificate;binary, and returns its DN.
func (s *Slapd) AddCA(cn, parent string, certs ...[]byte) string {
	s.tb.Helper()
	dn := "cn=" + goldap.EscapeDN(cn) + "," + parent
	s.Add(dn, map[string][]string{"objectClass": {"applicationProcess", "pkiCA"}, "cn": {cn}, "cACertificate;binary": ders(certs)})
	return dn
}

func ders(certs [][]byte) []string {
	out := make([]string, len(certs))
	for i, c := range certs {
		out[i] = string(c)
	}
	return out
}

// ssha is slappasswd's default {SSHA} scheme: SHA-1 of password and salt.
func ssha(pw string) string {
	salt := make([]byte, 8)
	_, _ = rand.Read(salt)
	h := sha1.Sum(append([]byte(pw), salt...))
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(h[:], salt...))
}

// freeLowPort picks a free port between 20000 and 32000, below the
// kernel's ephemeral range.
func freeLowPort() int {
	for {
		n, _ := rand.Int(rand.Reader, big.NewInt(12000))
		p := 20000 + int(n.Int64())
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		_ = l.Close()
		return p
	}
}
