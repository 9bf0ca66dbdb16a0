package protocol

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestLocationStringRoundTrip(t *testing.T) {
	tests := []struct {
		loc  Location
		want string
	}{
		// The forms the issue names.
		{Location{Scheme: "tls", Host: "10.0.0.5:443", Query: "sni=www.example.com"}, "tls://10.0.0.5:443?sni=www.example.com"},
		{Location{Scheme: "file", Path: "/etc/nginx/site.pem"}, "file:///etc/nginx/site.pem"},
		{Location{Scheme: "file", Path: "/x/b.pem", Entry: "0"}, "file:///x/b.pem#0"},
		{Location{Scheme: "jks", Path: "/opt/app/keystore.jks", Entry: "tomcat"}, "jks:///opt/app/keystore.jks#tomcat"},
		{Location{Scheme: "certstore", Host: "LocalMachine", Path: "/My/3F2504E04F8941D39A0C0305E82C3301A1B2C3D4"}, "certstore://LocalMachine/My/3F2504E04F8941D39A0C0305E82C3301A1B2C3D4"},
		// tls hosts.
		{Location{Scheme: "tls", Host: "www.example.com:8443"}, "tls://www.example.com:8443"},
		{Location{Scheme: "tls", Host: "[2001:db8::1]:443"}, "tls://[2001:db8::1]:443"},
		{Location{Scheme: "tls", Host: "[2001:db8::1]:443", Query: "sni=www.example.com"}, "tls://[2001:db8::1]:443?sni=www.example.com"},
		{Location{Scheme: "tls", Host: "[::1]:8443"}, "tls://[::1]:8443"},
		{Location{Scheme: "tls", Host: "[fe80::1%eth0]:443"}, "tls://[fe80::1%25eth0]:443"},
		{Location{Scheme: "tls", Host: "[::ffff:10.0.0.1]:443"}, "tls://[::ffff:10.0.0.1]:443"},
		// Entries: aliases with spaces, '#', '%', '?', '/', unicode.
		{Location{Scheme: "jks", Path: "/ks.jks", Entry: "my alias"}, "jks:///ks.jks#my%20alias"},
		{Location{Scheme: "jks", Path: "/ks.jks", Entry: "a#b"}, "jks:///ks.jks#a%23b"},
		{Location{Scheme: "jks", Path: "/ks.jks", Entry: "100%"}, "jks:///ks.jks#100%25"},
		{Location{Scheme: "jks", Path: "/ks.jks", Entry: "who?what"}, "jks:///ks.jks#who?what"},
		{Location{Scheme: "jks", Path: "/ks.jks", Entry: "cn=web/ou=pki"}, "jks:///ks.jks#cn=web/ou=pki"},
		{Location{Scheme: "jks", Path: "/ks.jks", Entry: "ключ"}, "jks:///ks.jks#%D0%BA%D0%BB%D1%8E%D1%87"},
		{Location{Scheme: "jks", Path: "/ks.jks", Entry: "証明書 🔑"}, ""},
		{Location{Scheme: "jks", Path: "/ks.jks", Entry: " lead and trail "}, ""},
		{Location{Scheme: "jks", Path: "/ks.jks", Entry: "##"}, "jks:///ks.jks#%23%23"},
		// Paths with characters that mean something in a URI.
		{Location{Scheme: "file", Path: "/opt/my certs/site.pem"}, "file:///opt/my%20certs/site.pem"},
		{Location{Scheme: "file", Path: "/opt/a#b.pem", Entry: "2"}, "file:///opt/a%23b.pem#2"},
		{Location{Scheme: "file", Path: "/opt/a?b.pem"}, "file:///opt/a%3Fb.pem"},
		{Location{Scheme: "file", Path: "/opt/100%.pem"}, "file:///opt/100%25.pem"},
		{Location{Scheme: "file", Path: "/opt/a+b;c=d@e.pem"}, "file:///opt/a+b;c=d@e.pem"},
		{Location{Scheme: "file", Path: "/opt/証明書.pem"}, "file:///opt/%E8%A8%BC%E6%98%8E%E6%9B%B8.pem"},
		{Location{Scheme: "file", Path: "//server/share/site.pem"}, "file:////server/share/site.pem"},
		{Location{Scheme: "file", Path: "/"}, "file:///"},
		{Location{Scheme: "file", Path: "/C:/certs/site.pem", Entry: "1"}, "file:///C:/certs/site.pem#1"},
		{Location{Scheme: "file", Path: `/C:\certs\site.pem`}, "file:///C:%5Ccerts%5Csite.pem"},
		// Other sources from the design.
		{Location{Scheme: "ssh", Host: "10.0.0.9", Path: "/etc/ssl/certs/api.pem"}, "ssh://10.0.0.9/etc/ssl/certs/api.pem"},
		{Location{Scheme: "f5", Host: "10.0.0.2", Path: "/Common/site.crt"}, "f5://10.0.0.2/Common/site.crt"},
		{Location{Scheme: "ldap", Host: "dc1", Path: "/cn=web,ou=pki,dc=example,dc=com"}, "ldap://dc1/cn=web,ou=pki,dc=example,dc=com"},
		{Location{Scheme: "certstore", Host: "CurrentUser", Path: "/Root/ab"}, "certstore://CurrentUser/Root/ab"},
		// An opaque URI (RFC 7512) keeps its part after the scheme.
		{Location{Scheme: "pkcs11", Path: "token=prod;object=web;type=cert"}, "pkcs11:token=prod;object=web;type=cert"},
		{Location{Scheme: "pkcs11", Path: "token=my%20token;object=web", Query: "pin-source=file:/pin"}, "pkcs11:token=my%20token;object=web?pin-source=file:/pin"},
	}
	for _, tc := range tests {
		t.Run(tc.loc.Scheme+" "+tc.loc.Host+tc.loc.Path+"#"+tc.loc.Entry, func(t *testing.T) {
			s := tc.loc.String()
			if tc.want != "" && s != tc.want {
				t.Errorf("String = %q, want %q", s, tc.want)
			}
			back, err := ParseLocation(s)
			if err != nil {
				t.Fatalf("ParseLocation(%q): %v", s, err)
			}
			if back != tc.loc {
				t.Errorf("ParseLocation(%q) = %#v, want %#v", s, back, tc.loc)
			}
			if again := back.String(); again != s {
				t.Errorf("String of the parsed location = %q, want %q", again, s)
			}
			// As JSON, a location is its URI.
			b, err := json.Marshal(struct{ L Location }{tc.loc})
			if err != nil {
				t.Fatal(err)
			}
			wantJSON, _ := json.Marshal(struct{ L string }{s})
			if string(b) != string(wantJSON) {
				t.Errorf("JSON = %s, want %s", b, wantJSON)
			}
			var got struct{ L Location }
			if err := json.Unmarshal(b, &got); err != nil || got.L != tc.loc {
				t.Errorf("JSON %s reads back as %#v, %v", b, got.L, err)
			}
		})
	}
}

// Locations the control plane reads from bots: the string form is the
// dedupe key, so parsing and printing it again gives it back unchanged.
func TestParseLocationCanonical(t *testing.T) {
	for _, s := range []string{
		"tls://10.0.0.5:443?sni=www.example.com",
		"tls://[2001:db8::5]:443?sni=www.example.com",
		"file:///etc/nginx/site.pem",
		"file:///x/b.pem#0",
		"jks:///opt/app/keystore.jks#tomcat",
		"jks:///opt/app/keystore.jks#my%20alias",
		"certstore://LocalMachine/My/3f2504e04f8941d39a0c0305e82c3301a1b2c3d4",
		"pkcs11:token=prod;object=web;type=cert",
		"ldap://dc1/cn=web,ou=pki,dc=example,dc=com",
		"ssh://10.0.0.9/etc/ssl/certs/api.pem",
		"cloudflare://zone/023e105f4ecef8ad9ca31a8372d0c353/0a4d1e6b-5f6a-4e4e-9f5a-0b3c1b6c8d2e",
	} {
		l, err := ParseLocation(s)
		if err != nil {
			t.Errorf("ParseLocation(%q): %v", s, err)
			continue
		}
		if got := l.String(); got != s {
			t.Errorf("ParseLocation(%q).String() = %q", s, got)
		}
	}
	l, err := ParseLocation("jks:///opt/app/keystore.jks#tomcat")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Location{Scheme: "jks", Path: "/opt/app/keystore.jks", Entry: "tomcat"}); l != want {
		t.Errorf("ParseLocation = %#v, want %#v", l, want)
	}
	l, err = ParseLocation("TLS://[2001:DB8::5]:443")
	if err != nil {
		t.Fatal(err)
	}
	if l.Scheme != "tls" || l.Host != "[2001:DB8::5]:443" {
		t.Errorf("ParseLocation = %#v", l)
	}
}

func TestParseLocationErrors(t *testing.T) {
	for _, s := range []string{
		"",
		"/etc/nginx/site.pem",
		"no-scheme",
		"://x",
		"tls://[::1",
		"tls://host:port",
		"file:///a%zz",
		"file:///x#%zz",
		"tls://a b:443",
		"tls://h\x00:443",
		// net/url reads this zone but cannot write it back (found by
		// FuzzParseLocation): refused, since the string is a dedupe key.
		"a://[::%25\xd6]",
	} {
		l, err := ParseLocation(s)
		if err == nil {
			t.Errorf("ParseLocation(%q) = %#v, want an error", s, l)
			continue
		}
		if !strings.Contains(err.Error(), "location") {
			t.Errorf("ParseLocation(%q): error %q does not say what it was reading", s, err)
		}
	}
	var l Location
	if err := l.UnmarshalText([]byte("no scheme")); err == nil {
		t.Error("UnmarshalText accepted a location without a scheme")
	}
	if err := json.Unmarshal([]byte(`"tls://[::1"`), &l); err == nil {
		t.Error("json.Unmarshal accepted a bad location")
	}
}

func TestFileLocation(t *testing.T) {
	l := FileLocation(SchemeFile, filepath.FromSlash("/etc/nginx/site.pem"), IndexEntry(3))
	if got, want := l.String(), "file:///etc/nginx/site.pem#3"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if got := l.WithEntry("").String(); got != "file:///etc/nginx/site.pem" {
		t.Errorf("WithEntry(\"\") = %q", got)
	}
	if l.Entry != "3" {
		t.Errorf("WithEntry changed the original: %#v", l)
	}
	if got := l.WithEntry("tomcat").Entry; got != "tomcat" {
		t.Errorf("WithEntry = %q", got)
	}
	if got := IndexEntry(0); got != "0" {
		t.Errorf("IndexEntry(0) = %q", got)
	}
}

// Windows paths become /C:/... URI paths on Windows. Elsewhere a backslash is
// an ordinary file name character and is kept (and escaped in the URI), so a
// path read on one machine names the same file when read back there.
func TestFileToURIPathWindowsLooking(t *testing.T) {
	windows := filepath.Separator == '\\'
	tests := []struct {
		osPath           string
		onWindows, other string
	}{
		{`C:\certs\site.pem`, "/C:/certs/site.pem", `/C:\certs\site.pem`},
		{`C:\Program Files\App\keystore.jks`, "/C:/Program Files/App/keystore.jks", `/C:\Program Files\App\keystore.jks`},
		{`\\server\share\site.pem`, "//server/share/site.pem", `/\\server\share\site.pem`},
		{"C:/certs/site.pem", "/C:/certs/site.pem", "/C:/certs/site.pem"},
		{"/etc/ssl/site.pem", "/etc/ssl/site.pem", "/etc/ssl/site.pem"},
		{`D:\証明書\a#b.pem`, "/D:/証明書/a#b.pem", `/D:\証明書\a#b.pem`},
	}
	for _, tc := range tests {
		want := tc.other
		if windows {
			want = tc.onWindows
		}
		got := FileToURIPath(tc.osPath)
		if got != want {
			t.Errorf("FileToURIPath(%q) = %q, want %q", tc.osPath, got, want)
		}
		for _, entry := range []string{"", "0", "my alias"} {
			l := FileLocation(SchemeJKS, tc.osPath, entry)
			back, err := ParseLocation(l.String())
			if err != nil {
				t.Errorf("ParseLocation(%q): %v", l.String(), err)
				continue
			}
			if back != l {
				t.Errorf("%q: ParseLocation(%q) = %#v, want %#v", tc.osPath, l.String(), back, l)
			}
		}
		// The URI path turns back into the OS path where the OS path was
		// absolute.
		if filepath.IsAbs(tc.osPath) {
			if back := URIPathToFile(got); back != filepath.FromSlash(tc.osPath) {
				t.Errorf("URIPathToFile(%q) = %q, want %q", got, back, filepath.FromSlash(tc.osPath))
			}
		}
	}
}
