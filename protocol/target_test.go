package protocol

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testSecret is a password that must never show up in a string meant for
// people: String(), error messages.
const testSecret = "hunter2-Zq9"

// targetWant is what a target that parses must look like. Zero fields are
// not checked, except where noted.
type targetWant struct {
	scheme string
	host   string
	path   string
	params map[string][]string
	// passwords are the revealed values, in order; nil means none.
	passwords []string
	// spec is Endpoints.String() (tls only).
	spec string
	// count is Endpoints.Count() (tls only).
	count uint64
	// str is Target.String().
	str string
}

// secretFiles writes secret files for the table and returns their paths.
func secretFiles(t *testing.T) (lf, crlf, plain, missing string) {
	t.Helper()
	dir := t.TempDir()
	lf = filepath.Join(dir, "pw-lf.txt")
	crlf = filepath.Join(dir, "pw-crlf.txt")
	plain = filepath.Join(dir, "pw.txt")
	missing = filepath.Join(dir, "nope.txt")
	for p, v := range map[string]string{lf: "from-file\n", crlf: "from-file-crlf\r\n", plain: "no newline+at end"} {
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return lf, crlf, plain, missing
}

func TestParseTargetGood(t *testing.T) {
	t.Setenv("EMSIGN_TEST_PW", "from-env")
	lf, crlf, plain, _ := secretFiles(t)

	tests := []struct {
		raw  string
		want targetWant
	}{
		// tls: host forms.
		{"tls://www.example.com", targetWant{scheme: "tls", host: "www.example.com", spec: "www.example.com:443", count: 1, str: "tls://www.example.com"}},
		{"tls://www.example.com:8443", targetWant{spec: "www.example.com:8443", count: 1}},
		{"TLS://WWW.Example.COM.", targetWant{scheme: "tls", host: "WWW.Example.COM.", spec: "www.example.com:443", str: "tls://WWW.Example.COM."}},
		{"tls://localhost", targetWant{spec: "localhost:443", count: 1}},
		{"tls://internal_name.corp", targetWant{spec: "internal_name.corp:443", count: 1}},
		{"tls://10.0.0.5", targetWant{spec: "10.0.0.5:443", count: 1}},
		{"tls://10.0.0.5:443", targetWant{spec: "10.0.0.5:443", count: 1}},
		{"tls://[2001:db8::1]", targetWant{host: "[2001:db8::1]", spec: "[2001:db8::1]:443", count: 1}},
		{"tls://[2001:db8::1]:8443", targetWant{spec: "[2001:db8::1]:8443", count: 1}},
		{"tls://[2001:DB8:0:0::1]:8443", targetWant{spec: "[2001:db8::1]:8443", count: 1}},
		{"tls://[::ffff:10.0.0.1]", targetWant{spec: "10.0.0.1:443", count: 1}},
		{"tls://[10.0.0.1]:443", targetWant{spec: "10.0.0.1:443", count: 1}},
		{"tls://10.0.0.1-10.0.0.254", targetWant{spec: "10.0.0.1-10.0.0.254:443", count: 254}},
		{"tls://10.0.0.254-10.0.1.1", targetWant{spec: "10.0.0.254-10.0.1.1:443", count: 4}},
		{"tls://10.0.0.7-10.0.0.7", targetWant{spec: "10.0.0.7:443", count: 1}},
		{"tls://10.0.0.0/24", targetWant{host: "10.0.0.0/24", spec: "10.0.0.0-10.0.0.255:443", count: 256}},
		{"tls://10.0.0.77/24:443", targetWant{spec: "10.0.0.0-10.0.0.255:443", count: 256}},
		{"tls://10.0.0.9/32", targetWant{spec: "10.0.0.9:443", count: 1}},
		{"tls://0.0.0.0/0:443", targetWant{spec: "0.0.0.0-255.255.255.255:443", count: 1 << 32}},
		{"tls://[2001:db8::]/120", targetWant{spec: "[2001:db8::]-[2001:db8::ff]:443", count: 256}},
		{"tls://[2001:db8::]/96", targetWant{count: 1 << 32}},
		{"tls://[2001:db8::1]-[2001:db8::10]:443", targetWant{spec: "[2001:db8::1]-[2001:db8::10]:443", count: 16}},
		{"tls://a.example,10.0.0.1,[::1],10.0.1.0/30,10.0.2.1-10.0.2.2:443", targetWant{spec: "a.example,10.0.0.1,[::1],10.0.1.0-10.0.1.3,10.0.2.1-10.0.2.2:443", count: 1 + 1 + 1 + 4 + 2}},
		{"tls://a.example, b.example", targetWant{spec: "a.example,b.example:443", count: 2}},
		// tls: ports.
		{"tls://h:443,8443", targetWant{spec: "h:443,8443", count: 2}},
		{"tls://h:8443,443", targetWant{spec: "h:443,8443", count: 2}},
		{"tls://h:1-899", targetWant{spec: "h:1-899", count: 899}},
		{"tls://h:8443,443,1-899,900,443", targetWant{spec: "h:1-900,8443", count: 901}},
		{"tls://h:10-20,15-30,5", targetWant{spec: "h:5,10-30", count: 22}},
		{"tls://h:1,65535", targetWant{spec: "h:1,65535", count: 2}},
		{"tls://h:1-65535", targetWant{spec: "h:1-65535", count: 65535}},
		{"tls://h: 443 , 8443", targetWant{spec: "h:443,8443", count: 2}},
		{"tls://10.0.0.0/24:443,8443,1-899", targetWant{spec: "10.0.0.0-10.0.0.255:1-899,8443", count: 256 * 900}},
		{"tls://10.0.0.0/8:1-65535", targetWant{count: (1 << 24) * 65535}},
		// tls: sni.
		{"tls://10.0.0.5:443?sni=www.example.com", targetWant{params: map[string][]string{"sni": {"www.example.com"}}, str: "tls://10.0.0.5:443?sni=www.example.com"}},
		// file and jks.
		{"file:///etc/ssl", targetWant{scheme: "file", host: "", path: "/etc/ssl", str: "file:///etc/ssl"}},
		{"file:///", targetWant{path: "/", str: "file:///"}},
		{"FILE:///etc/ssl/", targetWant{scheme: "file", path: "/etc/ssl/", str: "file:///etc/ssl/"}},
		{"file://localhost/etc/ssl", targetWant{host: "", path: "/etc/ssl", str: "file:///etc/ssl"}},
		{"file:///opt/my%20certs/a%23b%3Fc%25d.pem", targetWant{path: "/opt/my certs/a#b?c%d.pem", str: "file:///opt/my%20certs/a%23b%3Fc%25d.pem"}},
		{"file:///opt/%E8%A8%BC%E6%98%8E%E6%9B%B8", targetWant{path: "/opt/証明書", str: "file:///opt/%E8%A8%BC%E6%98%8E%E6%9B%B8"}},
		{"file:///opt/a+b", targetWant{path: "/opt/a+b", str: "file:///opt/a+b"}},
		{"file:///C:/certs", targetWant{path: "/C:/certs", str: "file:///C:/certs"}},
		{"file:///etc?max_size=10MB", targetWant{params: map[string][]string{"max_size": {"10MB"}}, str: "file:///etc?max_size=10MB"}},
		{"jks:///opt/app/keystore.jks?password=changeit", targetWant{scheme: "jks", path: "/opt/app/keystore.jks", passwords: []string{"changeit"}, str: "jks:///opt/app/keystore.jks?password=REDACTED"}},
		// secrets: every form, repeatable, in order.
		{"jks:///ks.jks?password=a&password=env:EMSIGN_TEST_PW&password=file:" + lf + "&password=file:" + crlf + "&password=file:" + plain,
			targetWant{passwords: []string{"a", "from-env", "from-file", "from-file-crlf", "no newline+at end"},
				str: "jks:///ks.jks?password=REDACTED&password=REDACTED&password=REDACTED&password=REDACTED&password=REDACTED"}},
		{"jks:///ks.jks?password=a+b", targetWant{passwords: []string{"a+b"}}},
		{"jks:///ks.jks?password=a%2Bb+c", targetWant{passwords: []string{"a+b+c"}}},
		{"jks:///ks.jks?password=p%26ss%3Dw%23rd%20x", targetWant{passwords: []string{"p&ss=w#rd x"}}},
		{"jks:///ks.jks?password=a=b", targetWant{passwords: []string{"a=b"}}},
		{"jks:///ks.jks?password=", targetWant{passwords: []string{""}, str: "jks:///ks.jks?password=REDACTED"}},
		{"jks:///ks.jks?&password=x&", targetWant{passwords: []string{"x"}}},
		{"file:///etc?password=x&max_size=1G", targetWant{passwords: []string{"x"}, params: map[string][]string{"max_size": {"1G"}}, str: "file:///etc?max_size=1G&password=REDACTED"}},
		// certstore.
		{"certstore://", targetWant{scheme: "certstore", host: "", path: "", str: "certstore://"}},
		{"certstore:///", targetWant{host: "", path: "", str: "certstore://"}},
		{"certstore://LocalMachine", targetWant{host: "LocalMachine", path: "", str: "certstore://LocalMachine"}},
		{"certstore://LocalMachine/My", targetWant{scheme: "certstore", host: "LocalMachine", path: "My", str: "certstore://LocalMachine/My"}},
		{"certstore://CurrentUser/Root/", targetWant{host: "CurrentUser", path: "Root", str: "certstore://CurrentUser/Root"}},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			got, err := ParseTarget(tc.raw)
			if err != nil {
				t.Fatalf("ParseTarget(%q): %v", tc.raw, err)
			}
			checkTarget(t, got, tc.want)
		})
	}
}

func checkTarget(t *testing.T, got Target, w targetWant) {
	t.Helper()
	if w.scheme != "" && got.Scheme != w.scheme {
		t.Errorf("Scheme = %q, want %q", got.Scheme, w.scheme)
	}
	if (w.scheme != "" || w.host != "") && got.Host != w.host {
		t.Errorf("Host = %q, want %q", got.Host, w.host)
	}
	if (w.scheme != "" && w.scheme != SchemeTLS || w.path != "") && got.Path != w.path {
		t.Errorf("Path = %q, want %q", got.Path, w.path)
	}
	if w.params != nil {
		if fmt.Sprint(got.Params) != fmt.Sprint(w.params) {
			t.Errorf("Params = %v, want %v", got.Params, w.params)
		}
		for k, v := range w.params {
			if got.Param(k) != v[len(v)-1] {
				t.Errorf("Param(%q) = %q, want %q", k, got.Param(k), v[len(v)-1])
			}
		}
	}
	var pw []string
	for _, s := range got.Passwords() {
		pw = append(pw, s.Reveal())
	}
	if !slices.Equal(pw, w.passwords) {
		t.Errorf("Passwords = %q, want %q", pw, w.passwords)
	}
	if w.spec != "" && got.Endpoints.String() != w.spec {
		t.Errorf("Endpoints = %q, want %q", got.Endpoints.String(), w.spec)
	}
	if w.count != 0 && got.Endpoints.Count() != w.count {
		t.Errorf("Count = %d, want %d", got.Endpoints.Count(), w.count)
	}
	if got.Scheme != SchemeTLS && got.Endpoints.Count() != 0 {
		t.Errorf("%s target has %d endpoints", got.Scheme, got.Endpoints.Count())
	}
	if w.str != "" && got.String() != w.str {
		t.Errorf("String = %q, want %q", got.String(), w.str)
	}
	for _, s := range got.Passwords() {
		if v := s.Reveal(); len(v) > 1 && strings.Contains(got.String(), v) {
			t.Errorf("String %q shows password %q", got.String(), v)
		}
	}
	// The string form parses back to the same target (secrets aside).
	again, err := ParseTarget(got.String())
	if err != nil {
		t.Fatalf("ParseTarget(String() = %q): %v", got.String(), err)
	}
	if again.Scheme != got.Scheme || again.Host != got.Host || again.Path != got.Path ||
		fmt.Sprint(again.Params) != fmt.Sprint(got.Params) || len(again.Passwords()) != len(got.Passwords()) ||
		again.Endpoints.String() != got.Endpoints.String() {
		t.Errorf("String %q parses back to %+v, want %+v", got.String(), again, got)
	}
}

func TestParseTargetBad(t *testing.T) {
	_, _, _, missing := secretFiles(t)
	os.Unsetenv("EMSIGN_TEST_UNSET") //nolint:errcheck // absent is what the test needs

	tests := []struct {
		raw string
		// want are substrings of the error message.
		want []string
	}{
		// Not a target at all.
		{"", []string{"not a target URI"}},
		{"www.example.com", []string{"not a target URI", "tls://"}},
		{"/etc/ssl", []string{"not a target URI"}},
		{"tls:www.example.com", []string{"write tls://"}},
		{"http://www.example.com", []string{`unknown scheme "http"`, "aws, certstore, cloudflare, f5, file, jks, ldap, ldaps, pkcs11, ssh, tls"}},
		{"ssh://admin:pw@10.0.0.9/etc?insecure_host_key=true", []string{"user info"}},
		{"ssh://10.0.0.9/etc?password=x&insecure_host_key=true", []string{"no user"}},
		{"ssh://admin@10.0.0.9/etc?password=x", []string{"host key must be checked"}},
		{"ssh://admin@10.0.0.9/etc?insecure_host_key=true", []string{"password=... or key_file"}},
		{"ssh://admin@10.0.0.9/etc?password=x&host_key=MD5:aa", []string{"SHA256:"}},
		{"f5://bigip.example.com", []string{"user and password are required"}},
		{"aws://Europe", []string{"not an AWS region"}},
		{"aws://eu-west-1?access_key=AKIA", []string{"together"}},
		{"cloudflare://notazone?api_token=x", []string{"not a Cloudflare zone ID"}},
		{"cloudflare://0123456789abcdef0123456789abcdef?api_key=x", []string{"email"}},
		{"cloudflare://0123456789abcdef0123456789abcdef?api_token=x&endpoint=ftp://x", []string{"endpoint"}},
		{"ldap:///dc=example,dc=com", []string{"no server"}},
		{"ldap://dc1/dc=x?scope=tree", []string{`scope "tree"`}},
		{"ldaps://dc1/dc=x?starttls=true", []string{"starttls is for ldap://"}},
		{"ldap://dc1/dc=x?bind_dn=cn%3Dadmin", []string{"bind_dn needs a password"}},
		{"ldap://dc1/dc=x?page_size=0", []string{"page_size"}},
		{"pkcs11:token=prod", []string{"module-path is required"}},
		{"pkcs11:token=prod;colour=red?module-path=/m.so", []string{`unknown path attribute "colour"`}},
		{"pkcs11:slot-id=x?module-path=/m.so", []string{`slot-id "x"`}},
		{"pkcs11:token=a?module-path=/m.so&objects=all", []string{`objects "all"`}},
		{"pkcs11://token=a?module-path=/m.so", []string{"without //"}},
		{"tls://", []string{"no host"}},
		// Hosts.
		{"tls://999.1.1.1", []string{"999.1.1.1 is not an IP address"}},
		{"tls://999.1.1.1:443", []string{"999.1.1.1 is not an IP address"}},
		{"tls://10.0.0", []string{"10.0.0 is not an IP address"}},
		{"tls://10.0.0.1,999.1.1.1", []string{"999.1.1.1 is not an IP address"}},
		{"tls://10.0.0.9-10.0.0.1", []string{"10.0.0.9-10.0.0.1", "ends before it starts"}},
		{"tls://[2001:db8::9]-[2001:db8::1]", []string{"ends before it starts"}},
		{"tls://10.0.0.1-[2001:db8::1]", []string{"mixes IPv4 and IPv6"}},
		{"tls://10.0.0.1-10.0.0.300", []string{"10.0.0.300 is not an IP address"}},
		{"tls://10.0.0.0/33", []string{"10.0.0.0/33 is not a CIDR block"}},
		{"tls://10.0.0.0/x", []string{"is not a CIDR block"}},
		{"tls://[2001:db8::]/95", []string{"[2001:db8::]/95", "more than 2^32 addresses"}},
		{"tls://[2001:db8::]/64:443", []string{"more than 2^32 addresses"}},
		{"tls://[::]/0", []string{"more than 2^32 addresses"}},
		{"tls://[2001:db8::]-[2001:db8::1:0:0]", []string{"more than 2^32 addresses"}},
		{"tls://[fe80::1%25eth0]", []string{"is not an IP address"}},
		{"tls://[fe80::1%eth0]:443", []string{"is not an IP address"}},
		{"tls://[2001:db8::1", []string{"is not an IP address"}},
		{"tls://bad!host", []string{"bad!host is not a host name", "'!'"}},
		{"tls://-lead.example", []string{"-lead.example is not a host name"}},
		{"tls://a..example", []string{"a..example is not a host name"}},
		{"tls://" + strings.Repeat("a", 64) + ".example", []string{"is not a host name"}},
		{"tls://exämple.com", []string{"exämple.com is not a host name"}},
		{"tls://a.example,,b.example", []string{"empty host"}},
		{"tls://a.example/path", []string{"a.example/path is not a CIDR block"}},
		// Unbracketed IPv6 is rejected with a hint.
		{"tls://::1", []string{"brackets"}},
		{"tls://2001:db8::1", []string{"2001:db8::1", "brackets"}},
		{"tls://fe80::1:443", []string{"brackets"}},
		{"tls://10.0.0.1,2001:db8::1", []string{"brackets"}},
		// Ports.
		{"tls://h:", []string{"empty port list"}},
		{"tls://[::1]:", []string{"empty port list"}},
		{"tls://h:0", []string{`"0" is not a port (1-65535)`}},
		{"tls://h:65536", []string{`"65536" is not a port`}},
		{"tls://h:https", []string{`"https" is not a port`}},
		{"tls://h:+443", []string{`"+443" is not a port`}},
		{"tls://h:443,", []string{`"" is not a port`}},
		{"tls://h:900-800", []string{"port range 900-800 ends before it starts"}},
		{"tls://h:1-2-3", []string{"is not a port"}},
		// Parameters.
		{"tls://h?foo=1", []string{`unknown parameter "foo" for tls targets (allowed: sni)`}},
		{"tls://h?password=" + testSecret, []string{`unknown parameter "password" for tls targets`}},
		{"certstore://LocalMachine/My?password=" + testSecret, []string{`unknown parameter "password": certstore targets take none`}},
		{"file:///etc?sni=a.example", []string{`unknown parameter "sni" for file targets (allowed: max_size, password)`}},
		{"file:///etc?Password=" + testSecret, []string{`unknown parameter "Password"`}},
		{"tls://h?sni=a.example&sni=b.example", []string{"sni given more than once"}},
		{"tls://h?sni=bad!name", []string{"sni: bad!name is not a host name"}},
		{"tls://h?sni=a%zz", []string{"parameter sni: bad percent-encoding"}},
		{"jks:///ks.jks?password=a%zz" + testSecret, []string{"parameter password: bad percent-encoding"}},
		{"jks:///ks.jks?password=a#" + testSecret, []string{"'#' is not allowed", "%23"}},
		{"file:///etc?max_size=lots", []string{`max_size: "lots" is not a size`}},
		{"file:///etc?max_size=10XB", []string{`max_size: "10XB" is not a size`}},
		{"file:///etc?max_size=10KM", []string{"max_size", "unknown unit"}},
		{"file:///etc?max_size=99999999T", []string{"max_size", "too large"}},
		{"file:///etc?max_size=lots&max_size=1MB", []string{`max_size: "lots" is not a size`}},
		// Secrets that cannot be resolved.
		{"jks:///ks.jks?password=env:EMSIGN_TEST_UNSET", []string{"parameter password: environment variable EMSIGN_TEST_UNSET is not set"}},
		{"jks:///ks.jks?password=" + testSecret + "&password=file:" + missing, []string{"parameter password: secret file", "nope.txt"}},
		// Paths.
		{"file://relative", []string{`file targets read local paths: write file:///PATH (three slashes), not a host "relative"`}},
		{"file://etc/ssl", []string{"file:///PATH (three slashes)", `not a host "etc"`}},
		{"jks://server/opt/ks.jks?password=" + testSecret, []string{"jks:///PATH (three slashes)", `"server"`}},
		{"file://", []string{"no path: write file:///PATH"}},
		{"file://localhost", []string{"no path"}},
		{"jks://?password=" + testSecret, []string{"no path: write jks:///PATH"}},
		{"file:///etc/%zz", []string{"path:", "%zz"}},
		// Certificate stores.
		{"certstore:///My", []string{"a store name needs a location: certstore://LocalMachine/My"}},
		{"certstore://LocalMachine/My/extra", []string{"write certstore://LOCATION/STORE"}},
		// Credentials in the authority are secrets too.
		{"tls://admin:" + testSecret + "@www.example.com", []string{"tls://"}},
		{"jks://admin:" + testSecret + "@/opt/ks.jks", []string{"jks://"}},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			got, err := ParseTarget(tc.raw)
			if err == nil {
				t.Fatalf("ParseTarget(%q) = %v, want an error", tc.raw, got)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			var te *TargetError
			if !errors.As(err, &te) {
				t.Fatalf("error %T is not a *TargetError", err)
			}
			if errors.Unwrap(err) == nil || errors.Unwrap(err) != te.Err {
				t.Errorf("Unwrap = %v, want the fault", errors.Unwrap(err))
			}
			if !strings.HasPrefix(msg, "target "+te.Target+": ") {
				t.Errorf("error %q does not start by naming the target %q", msg, te.Target)
			}
			if strings.Contains(msg, testSecret) {
				t.Errorf("error %q shows the secret", msg)
			}
			if strings.Contains(tc.raw, "password=") && strings.Contains(tc.raw, testSecret) && !strings.Contains(te.Target, "REDACTED") {
				t.Errorf("target %q in the error is not redacted", te.Target)
			}
			if !reflectZeroTarget(got) {
				t.Errorf("a failed parse returned %+v", got)
			}
		})
	}
}

func reflectZeroTarget(t Target) bool {
	return t.Scheme == "" && t.Host == "" && t.Path == "" && t.Params == nil && t.Secrets == nil && t.Endpoints.Count() == 0
}

func TestTargetErrorNamesTargetWithSecretRedacted(t *testing.T) {
	t.Setenv("KS_PASS", testSecret+"-env")
	raw := "jks://nohost/opt/app.jks?max_size=10MB&password=" + testSecret + "&password=env:KS_PASS"
	_, err := ParseTarget(raw)
	var te *TargetError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want a *TargetError", err)
	}
	want := "jks://nohost/opt/app.jks?max_size=10MB&password=REDACTED&password=REDACTED"
	if te.Target != want {
		t.Errorf("Target = %q, want %q", te.Target, want)
	}
	if msg := err.Error(); !strings.Contains(msg, want) || !strings.Contains(msg, `not a host "nohost"`) {
		t.Errorf("Error() = %q", msg)
	}
	for _, s := range []string{testSecret, "KS_PASS"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q shows %q", err, s)
		}
	}
	// Formatting the error any way shows no secret either.
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		if s := fmt.Sprintf(verb, err); strings.Contains(s, testSecret) {
			t.Errorf("%s of the error shows the secret: %s", verb, s)
		}
	}
}

// Secret parameter names are matched however they are cased or encoded, and
// a parameter that is not known may be a misspelt secret: the error shows
// neither value.
func TestTargetErrorRedactsLookalikeSecrets(t *testing.T) {
	for _, raw := range []string{
		"jks:///ks.jks?PASSWORD=" + testSecret,
		"jks:///ks.jks?Password=" + testSecret,
		"jks:///ks.jks?passwd=" + testSecret,
		"jks:///ks.jks?pass%77ord=" + testSecret + "&x",
		"tls://h?api_key=" + testSecret,
		"tls://h?token=" + testSecret,
		"certstore://LocalMachine/My?pin=" + testSecret,
		"file:///x?passphrase=" + testSecret + "&max_size=oops",
		"tls://admin:" + testSecret + "@www.example.com:443",
		"tls://" + testSecret + "@www.example.com",
		"file://u:" + testSecret + "@/etc/ssl",
		"file://u:" + testSecret + "@localhost/etc/ssl",
	} {
		_, err := ParseTarget(raw)
		if err == nil {
			t.Errorf("ParseTarget(%q) succeeded", raw)
			continue
		}
		if strings.Contains(err.Error(), testSecret) {
			t.Errorf("ParseTarget(%q): error shows the secret: %v", raw, err)
		}
		if !strings.Contains(err.Error(), "REDACTED") {
			t.Errorf("ParseTarget(%q): error %q does not show where the secret was", raw, err)
		}
	}
}

func TestTargetStringRedacts(t *testing.T) {
	t.Setenv("EMSIGN_TEST_PW", testSecret+"-env")
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(testSecret+"-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	raw := "jks:///opt/app/keystore.jks?password=" + testSecret + "&password=env:EMSIGN_TEST_PW&password=file:" + pwFile + "&max_size=1MB"
	tg, err := ParseTarget(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := "jks:///opt/app/keystore.jks?max_size=1MB&password=REDACTED&password=REDACTED&password=REDACTED"
	if got := tg.String(); got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	var revealed []string
	for _, s := range tg.Passwords() {
		revealed = append(revealed, s.Reveal())
	}
	if w := []string{testSecret, testSecret + "-env", testSecret + "-file"}; !slices.Equal(revealed, w) {
		t.Errorf("passwords = %q, want %q", revealed, w)
	}
	// The whole target, however printed, hides them.
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		if s := fmt.Sprintf(verb, tg); strings.Contains(s, testSecret) {
			t.Errorf("%s of the target shows a secret: %s", verb, s)
		}
	}
	if s := fmt.Sprintf("%+v", tg.Secrets); strings.Contains(s, testSecret) {
		t.Errorf("Secrets print as %s", s)
	}
}

// A parameter value that holds an encoded '&' must come back out of String
// in a form that parses to the same value.
func TestTargetStringEscapesParams(t *testing.T) {
	tg := Target{Scheme: SchemeFile, Path: "/etc", Params: map[string][]string{ParamMaxSize: {"1&max_size=2", "3"}}}
	s := tg.String()
	again, err := parseTarget(s, true)
	if err != nil {
		// max_size is validated, so this value does not parse; but it must
		// fail as a bad size, not as a split-up parameter.
		if !strings.Contains(err.Error(), "max_size") || strings.Contains(err.Error(), "unknown parameter") {
			t.Fatalf("String %q parses back with %v", s, err)
		}
		return
	}
	if !slices.Equal(again.Params[ParamMaxSize], tg.Params[ParamMaxSize]) {
		t.Errorf("String %q parses back to %q", s, again.Params[ParamMaxSize])
	}
}

// Every max_size given is checked, not just the last one.
func TestParseTargetChecksEveryMaxSize(t *testing.T) {
	if tg, err := ParseTarget("file:///etc?max_size=lots&max_size=1MB"); err == nil {
		t.Errorf("ParseTarget accepted max_size=lots: %v", tg)
	}
}

func TestTargetFilePath(t *testing.T) {
	tg, err := ParseTarget("file:///opt/my%20certs/site.pem")
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.FromSlash("/opt/my certs/site.pem")
	if got := tg.FilePath(); got != want {
		t.Errorf("FilePath = %q, want %q", got, want)
	}
	tg, err = ParseTarget("file:///C:/certs")
	if err != nil {
		t.Fatal(err)
	}
	want = "/C:/certs"
	if filepath.Separator == '\\' {
		want = `C:\certs`
	}
	if got := tg.FilePath(); got != want {
		t.Errorf("FilePath = %q, want %q", got, want)
	}
}

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"0": 0, "1": 1, "10485760": 10485760, "10MB": 10 << 20, "10mb": 10 << 20, "512KiB": 512 << 10,
		"512kib": 512 << 10, "1G": 1 << 30, "1GB": 1 << 30, "2T": 2 << 40, "7B": 7, "10 MB": 10 << 20,
		"8589934591G": 8589934591 << 30,
	}
	for s, want := range good {
		got, err := ParseSize(s)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "MB", "-1", "-1MB", "1.5G", "10XB", "lots", "1 2", "9223372036854775807K", "8589934592G", "99999999T"} {
		if got, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", s, got)
		}
	}
	if got, err := ParseSize(fmt.Sprint(int64(math.MaxInt64))); err != nil || got != math.MaxInt64 {
		t.Errorf("ParseSize(MaxInt64) = %d, %v", got, err)
	}
}

func TestResolveSecret(t *testing.T) {
	t.Setenv("EMSIGN_TEST_EMPTY", "")
	t.Setenv("EMSIGN_TEST_PW", "from env\n")
	lf, crlf, plain, missing := secretFiles(t)
	good := map[string]string{
		"plain":                      "plain",
		"":                           "",
		"a+b":                        "a+b",
		"env:EMSIGN_TEST_PW":         "from env\n", // only files lose their newline
		"env:EMSIGN_TEST_EMPTY":      "",
		"file:" + lf:                 "from-file",
		"file:" + crlf:               "from-file-crlf",
		"file:" + plain:              "no newline+at end",
		"ENV:EMSIGN_TEST_PW":         "ENV:EMSIGN_TEST_PW",
		"envy:EMSIGN_TEST_PW":        "envy:EMSIGN_TEST_PW",
		" file:" + filepath.Base(lf): " file:" + filepath.Base(lf),
	}
	for in, want := range good {
		s, err := ResolveSecret(in)
		if err != nil || s.Reveal() != want {
			t.Errorf("ResolveSecret(%q) = %q, %v; want %q", in, s.Reveal(), err, want)
		}
	}
	for _, in := range []string{"env:EMSIGN_TEST_SURELY_UNSET", "file:" + missing, "file:"} {
		if _, err := ResolveSecret(in); err == nil {
			t.Errorf("ResolveSecret(%q) succeeded", in)
		}
	}
}

func TestEndpointSpecAllOrder(t *testing.T) {
	tg, err := ParseTarget("tls://b.example,10.0.0.1-10.0.0.2,[2001:db8::1]:443,80")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"b.example:80", "b.example:443",
		"10.0.0.1:80", "10.0.0.1:443",
		"10.0.0.2:80", "10.0.0.2:443",
		"[2001:db8::1]:80", "[2001:db8::1]:443",
	}
	var got []string
	for e := range tg.Endpoints.All() {
		got = append(got, e.HostPort())
		if e.Host == "b.example" {
			if e.Addr.IsValid() {
				t.Errorf("name %s has an address %v", e.Host, e.Addr)
			}
		} else if !e.Addr.IsValid() || e.Addr.String() != e.Host {
			t.Errorf("endpoint %+v: Addr does not match Host", e)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("All = %q, want %q", got, want)
	}
	if n := tg.Endpoints.Count(); n != uint64(len(want)) {
		t.Errorf("Count = %d, want %d", n, len(want))
	}
}

func TestEndpointSpecCountMatchesAll(t *testing.T) {
	for _, s := range []string{
		"h", "h:1-10,5-20,100", "10.0.0.0/28:443,8443", "[2001:db8::]/124:1-3",
		"255.255.255.254/31", "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]/127:1,2",
		"0.0.0.0-0.0.0.3", "a,b,c,10.0.0.1,10.0.0.1", "[::]-[::2]",
	} {
		spec, err := ParseEndpointSpec(s)
		if err != nil {
			t.Fatalf("ParseEndpointSpec(%q): %v", s, err)
		}
		var n uint64
		seen := map[string]int{}
		for e := range spec.All() {
			n++
			seen[e.HostPort()]++
		}
		if n != spec.Count() {
			t.Errorf("%q: All yields %d endpoints, Count says %d", s, n, spec.Count())
		}
		// Round trip through String.
		again, err := ParseEndpointSpec(spec.String())
		if err != nil || again.String() != spec.String() || again.Count() != spec.Count() {
			t.Errorf("%q: String %q parses back to %q (%v)", s, spec.String(), again.String(), err)
		}
	}
}

func TestEndpointSpecAllStopsAtEndOfAddressSpace(t *testing.T) {
	spec, err := ParseEndpointSpec("255.255.255.254/31")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for e := range spec.All() {
		got = append(got, e.HostPort())
	}
	if want := []string{"255.255.255.254:443", "255.255.255.255:443"}; !slices.Equal(got, want) {
		t.Errorf("All = %q, want %q", got, want)
	}
}

func TestEndpointHostPort(t *testing.T) {
	for e, want := range map[Endpoint]string{
		{Host: "www.example.com", Port: 443}:                                       "www.example.com:443",
		{Host: "10.0.0.1", Addr: netip.MustParseAddr("10.0.0.1"), Port: 8443}:      "10.0.0.1:8443",
		{Host: "2001:db8::1", Addr: netip.MustParseAddr("2001:db8::1"), Port: 443}: "[2001:db8::1]:443",
	} {
		if got := e.HostPort(); got != want {
			t.Errorf("%+v.HostPort() = %q, want %q", e, got, want)
		}
	}
}

// The spec of tls://10.0.0.0/8:1-65535 holds about 2^40 endpoints. Taking
// the first ten must touch only those ten: the list is never built.
func TestEndpointSpecAllIsLazy(t *testing.T) {
	tg, err := ParseTarget("tls://10.0.0.0/8:1-65535")
	if err != nil {
		t.Fatal(err)
	}
	spec := tg.Endpoints
	if got, want := spec.Count(), uint64(1<<24)*65535; got != want {
		t.Fatalf("Count = %d, want %d", got, want)
	}
	var first []string
	for e := range spec.All() {
		first = append(first, e.HostPort())
		if len(first) == 10 {
			break
		}
	}
	want := []string{"10.0.0.0:1", "10.0.0.0:2", "10.0.0.0:3", "10.0.0.0:4", "10.0.0.0:5",
		"10.0.0.0:6", "10.0.0.0:7", "10.0.0.0:8", "10.0.0.0:9", "10.0.0.0:10"}
	if !slices.Equal(first, want) {
		t.Errorf("first ten = %q, want %q", first, want)
	}

	// Iteration cost is counted, not timed: the ports iterated (yields)
	// and the allocations made.
	yields := 0
	allocs := testing.AllocsPerRun(100, func() {
		n := 0
		for range spec.All() {
			yields++
			if n++; n == 10 {
				break
			}
		}
	})
	if yields != 10*101 { // AllocsPerRun runs the function once more to warm up
		t.Errorf("yielded %d endpoints over 101 runs, want %d", yields, 10*101)
	}
	// A handful of closures and the one host's string; a materialised list
	// would be billions.
	if allocs > 10 {
		t.Errorf("taking 10 endpoints made %.0f allocations", allocs)
	}
	allocs = testing.AllocsPerRun(10, func() { _ = spec.Count() })
	if allocs > 20 {
		t.Errorf("Count made %.0f allocations", allocs)
	}
}

func TestParsePortListMerges(t *testing.T) {
	for in, want := range map[string]string{
		"443":                   "443",
		"8443,443":              "443,8443",
		"443,443":               "443",
		"1-899,443":             "1-899",
		"1-10,11-20":            "1-20",
		"1-10,12-20":            "1-10,12-20",
		"20-30,1-5,6,7-8,25-40": "1-8,20-40",
		"65535,1":               "1,65535",
	} {
		l, err := ParsePortList(in)
		if err != nil {
			t.Errorf("ParsePortList(%q): %v", in, err)
			continue
		}
		if l.String() != want {
			t.Errorf("ParsePortList(%q) = %q, want %q", in, l.String(), want)
		}
		var ports []uint16
		for p := range l.All() {
			ports = append(ports, p)
		}
		if !slices.IsSorted(ports) || len(ports) != l.Count() || len(slices.Compact(slices.Clone(ports))) != len(ports) {
			t.Errorf("ParsePortList(%q).All() = %v (Count %d): not sorted and distinct", in, ports, l.Count())
		}
	}
}

// B4.2, B4.3: directory and HSM targets.
func TestParseLDAPAndPKCS11Targets(t *testing.T) {
	t.Setenv("TEST_LDAP_PW", "s3cret-ldap")
	tests := []struct {
		raw    string
		check  func(t *testing.T, tg Target)
		string string
	}{
		{
			raw: "ldap://127.0.0.1:3890/ou=pki,dc=example,dc=com?bind_dn=cn%3Dadmin%2Cdc%3Dexample%2Cdc%3Dcom&password=env:TEST_LDAP_PW&scope=one",
			check: func(t *testing.T, tg Target) {
				if tg.Host != "127.0.0.1:3890" || tg.BaseDN() != "ou=pki,dc=example,dc=com" || tg.Param(ParamBindDN) != "cn=admin,dc=example,dc=com" ||
					tg.Param(ParamScope) != "one" || tg.Passwords()[0].Reveal() != "s3cret-ldap" {
					t.Errorf("%+v", tg)
				}
			},
			string: "ldap://127.0.0.1:3890/ou=pki,dc=example,dc=com?bind_dn=cn=admin,dc=example,dc=com&scope=one&password=REDACTED",
		},
		{
			raw: "ldaps://dc1.corp.example/dc=corp,dc=example",
			check: func(t *testing.T, tg Target) {
				if tg.Scheme != SchemeLDAPS || tg.Host != "dc1.corp.example" || tg.BaseDN() != "dc=corp,dc=example" {
					t.Errorf("%+v", tg)
				}
			},
			string: "ldaps://dc1.corp.example/dc=corp,dc=example",
		},
		{
			raw: "pkcs11:token=prod%20hsm;object=web?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234&objects=certs,keys",
			check: func(t *testing.T, tg Target) {
				attrs, err := tg.PathAttrs()
				pin, ok := tg.PIN()
				if err != nil || attrs["token"] != "prod hsm" || attrs["object"] != "web" || !ok || pin.Reveal() != "1234" ||
					tg.Param(ParamModulePath) != "/usr/lib/softhsm/libsofthsm2.so" || tg.Param(ParamObjects) != "certs,keys" {
					t.Errorf("%+v %v %v", tg, attrs, err)
				}
			},
			string: "pkcs11:token=prod%20hsm;object=web?module-path=/usr/lib/softhsm/libsofthsm2.so&objects=certs,keys&pin-value=REDACTED",
		},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			tg, err := ParseTarget(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, tg)
			if got := tg.String(); got != tc.string {
				t.Errorf("String() = %q, want %q", got, tc.string)
			}
			if strings.Contains(tg.String(), "1234") || strings.Contains(tg.String(), "s3cret") {
				t.Error("String() shows a secret")
			}
		})
	}
}

// B4.5, B4.8-B4.10: remote and cloud targets.
func TestParseRemoteAndCloudTargets(t *testing.T) {
	tests := []struct{ raw, string string }{
		{"ssh://certscan@127.0.0.1:2222/etc/ssl,/opt/app?password=Passw0rd!&host_key=SHA256:abc",
			"ssh://certscan@127.0.0.1:2222/etc/ssl,/opt/app?host_key=SHA256:abc&password=REDACTED"},
		{"f5://10.0.0.2:443?user=admin&password=x&partition=Common", "f5://10.0.0.2:443?partition=Common&user=admin&password=REDACTED"},
		{"aws://eu-west-1,us-east-1?access_key=AKIAEXAMPLE&secret_key=s3cret", "aws://eu-west-1,us-east-1?access_key=AKIAEXAMPLE&secret_key=REDACTED"},
		{"aws://all", "aws://all"},
		{"cloudflare://0123456789abcdef0123456789abcdef?email=a@example.com&api_key=k",
			"cloudflare://0123456789abcdef0123456789abcdef?email=a@example.com&api_key=REDACTED"},
	}
	for _, tc := range tests {
		tg, err := ParseTarget(tc.raw)
		if err != nil {
			t.Errorf("%s: %v", tc.raw, err)
			continue
		}
		if got := tg.String(); got != tc.string {
			t.Errorf("String() = %q, want %q", got, tc.string)
		}
		if again, err := ParseTarget(tg.String()); err != nil || again.User != tg.User || again.Host != tg.Host {
			t.Errorf("%s does not read back: %v", tg, err)
		}
	}
	tg, _ := ParseTarget("ssh://certscan@127.0.0.1:2222/etc/ssl,/opt/app?password=x&insecure_host_key=true")
	if tg.User != "certscan" || strings.Join(tg.SSHPaths(), " ") != "/etc/ssl /opt/app" {
		t.Errorf("user %q paths %v", tg.User, tg.SSHPaths())
	}
}
