package web

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/protocol"
)

// hostilePassword holds every character that could end a value or start
// another parameter, a fragment or an escape.
const hostilePassword = "p&w=1#x?y%z +a/b;c"

func TestTargetFromForm(t *testing.T) {
	zone := "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name   string
		form   url.Values
		want   string
		check  func(t *testing.T, tg protocol.Target)
		secret map[string]string // parameter → value the parser must read back
	}{
		{name: "tls", form: url.Values{"kind": {"tls"}, "tls_hosts": {"www.example.com, 10.0.0.0/24 10.1.0.1-10.1.0.9,2001:db8::1"},
			"tls_ports": {"443,8443,1-899"}, "tls_sni": {"www.example.com"}},
			want: "tls://www.example.com,10.0.0.0/24,10.1.0.1-10.1.0.9,[2001:db8::1]:443,8443,1-899?sni=www.example.com",
			check: func(t *testing.T, tg protocol.Target) {
				if tg.Endpoints.Count() == 0 {
					t.Error("no endpoints")
				}
			}},
		{name: "tls default port", form: url.Values{"kind": {"tls"}, "tls_hosts": {"example.com"}}, want: "tls://example.com"},
		{name: "file", form: url.Values{"kind": {"file"}, "file_path": {"/etc/ssl/my certs#1"}},
			want: "file:///etc/ssl/my%20certs%231",
			check: func(t *testing.T, tg protocol.Target) {
				if tg.Path != "/etc/ssl/my certs#1" {
					t.Errorf("path %q", tg.Path)
				}
			}},
		{name: "file windows", form: url.Values{"kind": {"file"}, "file_path": {`C:\certs\web`}, "file_password": {hostilePassword}},
			want: "file:///C:/certs/web?password=p%26w%3D1%23x%3Fy%25z%20%2Ba%2Fb%3Bc", secret: map[string]string{"password": hostilePassword}},
		{name: "jks", form: url.Values{"kind": {"jks"}, "jks_path": {"/opt/app/keystore.jks"}, "jks_password": {hostilePassword}},
			want: "jks:///opt/app/keystore.jks?password=p%26w%3D1%23x%3Fy%25z%20%2Ba%2Fb%3Bc", secret: map[string]string{"password": hostilePassword}},
		{name: "jks env reference", form: url.Values{"kind": {"jks"}, "jks_path": {"/opt"}, "jks_password": {"env:KS_PASS"}},
			want: "jks:///opt?password=env%3AKS_PASS"},
		{name: "certstore", form: url.Values{"kind": {"certstore"}}, want: "certstore://"},
		{name: "ldap", form: url.Values{"kind": {"ldap"}, "ldap_url": {"ldap://dc1.example.com:389"},
			"ldap_base_dn": {"ou=Web, Servers,dc=example,dc=com"}, "ldap_bind_dn": {"cn=admin,dc=example,dc=com"},
			"ldap_password": {hostilePassword}, "ldap_starttls": {"true"}},
			want:   "ldap://dc1.example.com:389/ou=Web,%20Servers,dc=example,dc=com?bind_dn=cn%3Dadmin%2Cdc%3Dexample%2Cdc%3Dcom&password=p%26w%3D1%23x%3Fy%25z%20%2Ba%2Fb%3Bc&starttls=true",
			secret: map[string]string{"password": hostilePassword},
			check: func(t *testing.T, tg protocol.Target) {
				if tg.BaseDN() != "ou=Web, Servers,dc=example,dc=com" || tg.Param("bind_dn") != "cn=admin,dc=example,dc=com" ||
					tg.Param("starttls") != "true" {
					t.Errorf("base %q bind %q", tg.BaseDN(), tg.Param("bind_dn"))
				}
			}},
		{name: "ldaps base from url", form: url.Values{"kind": {"ldap"}, "ldap_url": {"ldaps://dc1.example.com/dc=example,dc=com"}},
			want: "ldaps://dc1.example.com/dc=example,dc=com"},
		{name: "pkcs11", form: url.Values{"kind": {"pkcs11"}, "pkcs11_module": {"/usr/lib/softhsm/libsofthsm2.so"},
			"pkcs11_token": {"prod;token=x?"}, "pkcs11_pin": {hostilePassword}, "pkcs11_certs": {"true"}, "pkcs11_keys": {"true"}},
			want:   "pkcs11:token=prod%3Btoken=x%3F?module-path=%2Fusr%2Flib%2Fsofthsm%2Flibsofthsm2.so&pin-value=p%26w%3D1%23x%3Fy%25z%20%2Ba%2Fb%3Bc&objects=certs%2Ckeys",
			secret: map[string]string{"pin-value": hostilePassword},
			check: func(t *testing.T, tg protocol.Target) {
				attrs, err := tg.PathAttrs()
				if err != nil || attrs["token"] != "prod;token=x?" || len(attrs) != 1 {
					t.Errorf("attrs %v %v", attrs, err)
				}
				if tg.Param("objects") != "certs,keys" || tg.Param("module-path") != "/usr/lib/softhsm/libsofthsm2.so" {
					t.Errorf("params %v", tg.Params)
				}
			}},
		{name: "ssh", form: url.Values{"kind": {"ssh"}, "ssh_host": {"web1.example.com"}, "ssh_port": {"2222"}, "ssh_user": {"deploy"},
			"ssh_password": {hostilePassword}, "ssh_paths": {"/etc/ssl, /opt/my app"}, "ssh_host_key": {"SHA256:abc+/="}},
			want:   "ssh://deploy@web1.example.com:2222/etc/ssl,/opt/my%20app?password=p%26w%3D1%23x%3Fy%25z%20%2Ba%2Fb%3Bc&host_key=SHA256%3Aabc%2B%2F%3D",
			secret: map[string]string{"password": hostilePassword},
			check: func(t *testing.T, tg protocol.Target) {
				if tg.User != "deploy" || tg.Host != "web1.example.com:2222" || tg.Param("host_key") != "SHA256:abc+/=" {
					t.Errorf("user %q host %q key %q", tg.User, tg.Host, tg.Param("host_key"))
				}
				if p := tg.SSHPaths(); len(p) != 2 || p[1] != "/opt/my app" {
					t.Errorf("paths %q", p)
				}
			}},
		{name: "ssh key file", form: url.Values{"kind": {"ssh"}, "ssh_host": {"::1"}, "ssh_user": {"root"},
			"ssh_key_file": {"/home/bot/.ssh/id_ed25519"}, "ssh_insecure_host_key": {"true"}},
			want: "ssh://root@[::1]?key_file=%2Fhome%2Fbot%2F.ssh%2Fid_ed25519&insecure_host_key=true"},
		{name: "f5", form: url.Values{"kind": {"f5"}, "f5_host": {"bigip.example.com"}, "f5_port": {"8443"}, "f5_user": {"admin"},
			"f5_password": {hostilePassword}},
			want: "f5://bigip.example.com:8443?user=admin&password=p%26w%3D1%23x%3Fy%25z%20%2Ba%2Fb%3Bc", secret: map[string]string{"password": hostilePassword}},
		{name: "aws", form: url.Values{"kind": {"aws"}, "aws_regions": {"eu-west-1, us-east-1"}, "aws_access_key": {"AKIAEXAMPLE"},
			"aws_secret_key": {hostilePassword}},
			want: "aws://eu-west-1,us-east-1?access_key=AKIAEXAMPLE&secret_key=p%26w%3D1%23x%3Fy%25z%20%2Ba%2Fb%3Bc", secret: map[string]string{"secret_key": hostilePassword}},
		{name: "aws default credentials", form: url.Values{"kind": {"aws"}}, want: "aws://all"},
		{name: "cloudflare token", form: url.Values{"kind": {"cloudflare"}, "cloudflare_zones": {zone}, "cloudflare_api_token": {hostilePassword}},
			want: "cloudflare://" + zone + "?api_token=p%26w%3D1%23x%3Fy%25z%20%2Ba%2Fb%3Bc", secret: map[string]string{"api_token": hostilePassword}},
		{name: "cloudflare key", form: url.Values{"kind": {"cloudflare"}, "cloudflare_zones": {zone}, "cloudflare_email": {"ops+cf@example.com"},
			"cloudflare_api_key": {"k"}},
			want: "cloudflare://" + zone + "?email=ops%2Bcf%40example.com&api_key=k",
			check: func(t *testing.T, tg protocol.Target) {
				if tg.Param("email") != "ops+cf@example.com" {
					t.Errorf("email %q", tg.Param("email"))
				}
			}},
		{name: "uri", form: url.Values{"kind": {"uri"}, "uri": {" tls://example.com:443 "}}, want: "tls://example.com:443"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := targetFromForm(tc.form)
			if err != nil {
				t.Fatalf("targetFromForm: %v", err)
			}
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			tg, err := protocol.ParseTargetUnresolved(got)
			if err != nil {
				t.Fatalf("does not parse: %v", err)
			}
			for k, v := range tc.secret {
				if s := tg.Secrets[k]; len(s) != 1 || s[0].Reveal() != v {
					t.Errorf("secret %s read back wrong", k)
				}
			}
			if tc.check != nil {
				tc.check(t, tg)
			}
		})
	}
}

func TestTargetFromFormRefuses(t *testing.T) {
	tests := []struct {
		name  string
		form  url.Values
		field string
	}{
		{"no kind", url.Values{}, "kind"},
		{"unknown kind", url.Values{"kind": {"gopher"}}, "kind"},
		{"tls no hosts", url.Values{"kind": {"tls"}}, "tls_hosts"},
		{"tls host injects a parameter", url.Values{"kind": {"tls"}, "tls_hosts": {"example.com?sni=evil"}}, "tls_hosts"},
		{"tls host with user info", url.Values{"kind": {"tls"}, "tls_hosts": {"a@example.com"}}, "tls_hosts"},
		{"tls bad ports", url.Values{"kind": {"tls"}, "tls_hosts": {"example.com"}, "tls_ports": {"443?x=1"}}, "tls_ports"},
		{"tls bad sni", url.Values{"kind": {"tls"}, "tls_hosts": {"example.com"}, "tls_sni": {"a&b"}}, "tls_sni"},
		{"file no path", url.Values{"kind": {"file"}}, "file_path"},
		{"jks no path", url.Values{"kind": {"jks"}, "jks_password": {"x"}}, "jks_path"},
		{"ldap no url", url.Values{"kind": {"ldap"}}, "ldap_url"},
		{"ldap http url", url.Values{"kind": {"ldap"}, "ldap_url": {"http://dc1"}}, "ldap_url"},
		{"ldap password in url", url.Values{"kind": {"ldap"}, "ldap_url": {"ldap://u:secret@dc1"}}, "ldap_url"},
		{"pkcs11 no module", url.Values{"kind": {"pkcs11"}}, "pkcs11_module"},
		{"ssh no host", url.Values{"kind": {"ssh"}, "ssh_user": {"u"}}, "ssh_host"},
		{"ssh host injects", url.Values{"kind": {"ssh"}, "ssh_host": {"h/x?password=y"}, "ssh_user": {"u"}}, "ssh_host"},
		{"ssh bad port", url.Values{"kind": {"ssh"}, "ssh_host": {"h"}, "ssh_port": {"99999"}, "ssh_user": {"u"}}, "ssh_port"},
		{"ssh no user", url.Values{"kind": {"ssh"}, "ssh_host": {"h"}}, "ssh_user"},
		{"ssh relative path", url.Values{"kind": {"ssh"}, "ssh_host": {"h"}, "ssh_user": {"u"}, "ssh_paths": {"etc"}}, "ssh_paths"},
		{"f5 no user", url.Values{"kind": {"f5"}, "f5_host": {"h"}}, "f5_user"},
		{"aws bad region", url.Values{"kind": {"aws"}, "aws_regions": {"eu-west-1?x"}}, "aws_regions"},
		{"cloudflare bad zone", url.Values{"kind": {"cloudflare"}, "cloudflare_zones": {"zone"}}, "cloudflare_zones"},
		{"uri empty", url.Values{"kind": {"uri"}}, "uri"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := targetFromForm(tc.form)
			var inv *ops.InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("got %q, %v; want an InvalidError", got, err)
			}
			if inv.Field != tc.field {
				t.Errorf("field %q, want %q (%v)", inv.Field, tc.field, err)
			}
		})
	}
}

// The parser, not the form, judges what the form cannot: such targets come
// back from ops.AddTargets as its error. Here: they are at least built.
func TestTargetFromFormLeavesRulesToParser(t *testing.T) {
	// An ssh target without a host key check is built, and refused by
	// the parser with a message naming the fault.
	raw, err := targetFromForm(url.Values{"kind": {"ssh"}, "ssh_host": {"h"}, "ssh_user": {"u"}, "ssh_password": {"pw-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = protocol.ParseTargetUnresolved(raw)
	if err == nil {
		t.Fatal("parsed without a host key check")
	}
	if strings.Contains(err.Error(), "pw-secret") {
		t.Errorf("error shows the password: %v", err)
	}
}
