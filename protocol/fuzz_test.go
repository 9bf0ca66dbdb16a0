package protocol

import (
	"errors"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
)

// fuzzCanary replaces every secret in a fuzzed target, so that the checks
// can look for it in what ParseTarget prints.
const fuzzCanary = "qZ7canaryX9"

// targetSeeds are good and bad targets for FuzzParseTarget; the corpus under
// testdata/fuzz/FuzzParseTarget holds more.
var targetSeeds = []string{
	"tls://www.example.com",
	"tls://10.0.0.0/24:443,8443,1-899",
	"tls://10.0.0.1-10.0.0.254:443?sni=www.example.com",
	"tls://[2001:db8::1]:8443",
	"tls://[2001:db8::]/120:1-3",
	"tls://a.example,10.0.0.1,[::1],10.0.1.0/30",
	"tls://999.1.1.1",
	"tls://::1",
	"tls://h:900-800",
	"file:///etc/ssl?max_size=10MB",
	"file:///opt/my%20certs/a%23b.pem",
	"file://relative",
	"jks:///opt/app/keystore.jks?password=changeit&password=a+b%26c",
	"jks:///ks.jks?password=env:EMSIGN_FUZZ_PW",
	"jks:///ks.jks?PASSWORD=x",
	"certstore://",
	"certstore://LocalMachine/My",
	"certstore://LocalMachine/My/x",
	"http://x",
	"tls://admin:pw@host",
	"file:///x?max_size=1%26max_size%3D2&max_size=3",
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range targetSeeds {
		f.Add(s)
	}
	os.Setenv("EMSIGN_FUZZ_PW", "from-env") //nolint:errcheck // a fuzz target cannot use t.Setenv
	f.Fuzz(func(t *testing.T, raw string) {
		if readsSpecialFile(raw) {
			return // password=file:/dev/zero would read forever
		}
		tg, err := ParseTarget(raw)
		if err != nil {
			var te *TargetError
			if !errors.As(err, &te) {
				t.Fatalf("ParseTarget(%q): error %T is not a *TargetError", raw, err)
			}
		} else {
			checkParsedTarget(t, raw, tg)
		}

		// With each secret replaced by the canary, neither the error nor the
		// string form shows it.
		withCanary := replaceSecrets(raw, fuzzCanary)
		if readsSpecialFile(withCanary) {
			return
		}
		tc, err := ParseTarget(withCanary)
		if err != nil {
			if strings.Contains(err.Error(), fuzzCanary) {
				t.Fatalf("ParseTarget(%q): error shows the secret: %v", withCanary, err)
			}
			return
		}
		if s := tc.String(); strings.Contains(s, fuzzCanary) {
			t.Fatalf("ParseTarget(%q).String() = %q shows the secret", withCanary, s)
		}
	})
}

func checkParsedTarget(t *testing.T, raw string, tg Target) {
	s := tg.String()
	// String does not depend on the secrets' values.
	swapped := tg
	swapped.Secrets = map[string][]Secret{}
	for k, v := range tg.Secrets {
		for range v {
			swapped.Secrets[k] = append(swapped.Secrets[k], NewSecret(fuzzCanary))
		}
	}
	if s2 := swapped.String(); s2 != s || strings.Contains(s2, fuzzCanary) {
		t.Fatalf("ParseTarget(%q): String depends on the secrets: %q vs %q", raw, s, s2)
	}
	n := 0
	for _, v := range tg.Secrets {
		n += len(v)
	}
	if strings.Count(s, "="+redacted) < n {
		t.Fatalf("ParseTarget(%q).String() = %q: %d secrets, fewer REDACTED", raw, s, n)
	}

	// The string form parses back to the same target.
	again, err := ParseTarget(s)
	if err != nil {
		t.Fatalf("ParseTarget(%q).String() = %q does not parse: %v", raw, s, err)
	}
	if again.Scheme != tg.Scheme || again.Host != tg.Host || again.Path != tg.Path {
		t.Fatalf("ParseTarget(%q) = %q %q %q; its String %q parses to %q %q %q",
			raw, tg.Scheme, tg.Host, tg.Path, s, again.Scheme, again.Host, again.Path)
	}
	if len(again.Params) != len(tg.Params) {
		t.Fatalf("String %q: params %v, want %v", s, again.Params, tg.Params)
	}
	for k, v := range tg.Params {
		if !slices.Equal(again.Params[k], v) {
			t.Fatalf("String %q: params %v, want %v", s, again.Params, tg.Params)
		}
	}
	for k, v := range tg.Secrets {
		if len(again.Secrets[k]) != len(v) {
			t.Fatalf("String %q: %d %s, want %d", s, len(again.Secrets[k]), k, len(v))
		}
	}
	if again.String() != s {
		t.Fatalf("String is not stable: %q then %q", s, again.String())
	}

	// Endpoints: Count never panics, and is right for what All yields first.
	count := tg.Endpoints.Count()
	if tg.Scheme != SchemeTLS {
		if count != 0 {
			t.Fatalf("%s target with %d endpoints", tg.Scheme, count)
		}
		return
	}
	if count == 0 {
		t.Fatalf("ParseTarget(%q): tls target with no endpoints", raw)
	}
	var seen uint64
	for e := range tg.Endpoints.All() {
		if e.Port == 0 || e.Host == "" {
			t.Fatalf("ParseTarget(%q): endpoint %+v", raw, e)
		}
		if seen++; seen == 1000 {
			break
		}
	}
	if seen != min(count, 1000) {
		t.Fatalf("ParseTarget(%q): All yields %d, Count %d", raw, seen, count)
	}
	spec, err := ParseEndpointSpec(tg.Endpoints.String())
	if err != nil || spec.Count() != count || spec.String() != tg.Endpoints.String() {
		t.Fatalf("ParseTarget(%q): endpoints %q parse back as %q (%v)", raw, tg.Endpoints.String(), spec.String(), err)
	}
	if c := again.Endpoints.Count(); c != count {
		t.Fatalf("String %q: %d endpoints, want %d", s, c, count)
	}
}

// queryParams splits a target's query the way ParseTarget does.
func queryParams(raw string) (base string, parts []string) {
	base, query, ok := strings.Cut(raw, "?")
	if !ok {
		return raw, nil
	}
	return base, strings.Split(query, "&")
}

// isSecretKey reports whether a parameter name is, or is written like, one
// of the secret parameters.
func isSecretKey(k string) bool {
	if u, err := url.PathUnescape(k); err == nil {
		k = u
	}
	return slices.Contains(secretParams, strings.ToLower(strings.TrimSpace(k)))
}

// replaceSecrets puts v in place of every secret in a raw target: secret
// parameters, and user info in the authority.
func replaceSecrets(raw, v string) string {
	base, parts := queryParams(raw)
	for i, kv := range parts {
		if k, _, ok := strings.Cut(kv, "="); ok && isSecretKey(k) {
			parts[i] = k + "=" + v
		}
	}
	if scheme, rest, ok := strings.Cut(base, "://"); ok {
		authority, path, slash := strings.Cut(rest, "/")
		if i := strings.LastIndex(authority, "@"); i >= 0 {
			authority = "u:" + v + authority[i:]
			rest = authority
			if slash {
				rest += "/" + path
			}
			base = scheme + "://" + rest
		}
	}
	if parts == nil {
		return base
	}
	return base + "?" + strings.Join(parts, "&")
}

// readsSpecialFile reports whether a target asks for a secret from a file
// that is not a small regular one (a device, a pipe, /proc/kcore), which the
// fuzzer must not read.
func readsSpecialFile(raw string) bool {
	_, parts := queryParams(raw)
	for _, kv := range parts {
		_, v, _ := strings.Cut(kv, "=")
		if u, err := url.PathUnescape(v); err == nil {
			v = u
		}
		if p, ok := strings.CutPrefix(v, "file:"); ok {
			if fi, err := os.Stat(p); err == nil && (!fi.Mode().IsRegular() || fi.Size() > 1<<20) {
				return true
			}
		}
	}
	return false
}

var locationSeeds = []string{
	"tls://10.0.0.5:443?sni=www.example.com",
	"tls://[2001:db8::1]:443",
	"tls://[fe80::1%25eth0]:443",
	"file:///etc/nginx/site.pem",
	"file:///x/b.pem#0",
	"file:///opt/my%20certs/a%23b.pem#my%20alias",
	"file:////server/share/x.pem",
	"file:///C:%5Ccerts%5Csite.pem",
	"jks:///opt/app/keystore.jks#tomcat",
	"jks:///ks.jks#%D0%BA%D0%BB%D1%8E%D1%87",
	"certstore://LocalMachine/My/3f2504e04f8941d39a0c0305e82c3301a1b2c3d4",
	"pkcs11:token=prod;object=web;type=cert",
	"ldap://dc1/cn=web,ou=pki,dc=example,dc=com",
	"x:",
	"x:?q#f",
}

func FuzzParseLocation(f *testing.F) {
	for _, s := range locationSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLocation(s)
		if err != nil {
			return
		}
		if l.Scheme == "" {
			t.Fatalf("ParseLocation(%q) = %#v: no scheme", s, l)
		}
		s2 := l.String()
		l2, err := ParseLocation(s2)
		if err != nil {
			t.Fatalf("ParseLocation(%q) = %#v, whose String %q does not parse: %v", s, l, s2, err)
		}
		if l2 != l {
			t.Fatalf("ParseLocation(%q) = %#v; String %q parses to %#v", s, l, s2, l2)
		}
		if s3 := l2.String(); s3 != s2 {
			t.Fatalf("String is not stable: %q then %q", s2, s3)
		}
		b, err := l.MarshalText()
		if err != nil || string(b) != s2 {
			t.Fatalf("MarshalText = %q, %v; want %q", b, err, s2)
		}
		var l3 Location
		if err := l3.UnmarshalText(b); err != nil || l3 != l {
			t.Fatalf("UnmarshalText(%q) = %#v, %v", b, l3, err)
		}
	})
}
