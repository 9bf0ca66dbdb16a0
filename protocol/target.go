package protocol

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// Target schemes: one per kind of place the bot scans.
const (
	SchemeTLS       = "tls"
	SchemeFile      = "file"
	SchemeJKS       = "jks"
	SchemeCertStore = "certstore"
	SchemeLDAP      = "ldap"
	SchemeLDAPS     = "ldaps"
	// SchemePKCS11 targets are RFC 7512 URIs: pkcs11:token=LABEL?module-path=...
	SchemePKCS11     = "pkcs11"
	SchemeSSH        = "ssh"
	SchemeF5         = "f5"
	SchemeAWS        = "aws"
	SchemeCloudflare = "cloudflare"
)

// Parameter names a target may carry. Secret ones are resolved at parse time
// and kept as Secret values, never in Params.
const (
	ParamPassword = "password"
	ParamSNI      = "sni"
	ParamMaxSize  = "max_size"
)

// secretParams are the parameters whose values are secrets, whatever the
// scheme; they may be written as a value, env:NAME or file:/path.
var secretParams = []string{ParamPassword, "pin", ParamPassphrase, ParamSecretKey, ParamAPIKey, "token", ParamPINValue, ParamPINSource,
	ParamAPIToken, ParamSessionToken}

// SSH, F5, AWS and Cloudflare parameters.
const (
	ParamKeyFile         = "key_file"
	ParamPassphrase      = "passphrase"
	ParamKnownHosts      = "known_hosts"
	ParamHostKey         = "host_key"
	ParamInsecureHostKey = "insecure_host_key"
	ParamSudo            = "sudo"
	ParamUser            = "user"
	ParamPartition       = "partition"
	ParamAccessKey       = "access_key"
	ParamSecretKey       = "secret_key"
	ParamSessionToken    = "session_token"
	ParamEndpoint        = "endpoint"
	ParamEmail           = "email"
	ParamAPIKey          = "api_key"
	ParamAPIToken        = "api_token"
)

// LDAP and PKCS#11 parameters.
const (
	ParamBindDN     = "bind_dn"
	ParamFilter     = "filter"
	ParamScope      = "scope"
	ParamStartTLS   = "starttls"
	ParamCAFile     = "ca_file"
	ParamPageSize   = "page_size"
	ParamReferrals  = "referrals"
	ParamInsecure   = "insecure"
	ParamModulePath = "module-path"
	ParamModuleName = "module-name"
	ParamPINValue   = "pin-value"
	// ParamPINSource names a file holding the PIN (RFC 7512); it is read at
	// parse time like any file: secret and kept as the PIN.
	ParamPINSource = "pin-source"
	ParamObjects   = "objects"
	ParamConfig    = "config"
)

// pkcs11PathAttrs are the RFC 7512 path attributes a target may name.
var pkcs11PathAttrs = []string{"token", "manufacturer", "serial", "model", "slot-id", "slot-description",
	"slot-manufacturer", "library-manufacturer", "library-description", "library-version", "object", "type", "id"}

// targetRule says what one scheme accepts.
type targetRule struct {
	params   []string // non-secret parameters allowed
	secrets  []string // secret parameters allowed
	validate func(*Target) error
	// opaque schemes are written SCHEME:ATTRS?PARAMS (RFC 7512), not
	// SCHEME://HOST/PATH.
	opaque bool
	// userInfo schemes take USER@ before the host (never a password there).
	userInfo bool
}

var ldapRule = targetRule{
	params:   []string{ParamBindDN, ParamFilter, ParamScope, ParamStartTLS, ParamCAFile, ParamPageSize, ParamReferrals, ParamInsecure},
	secrets:  []string{ParamPassword},
	validate: validateLDAP,
}

func targetRules() map[string]targetRule {
	return map[string]targetRule{
		SchemeTLS:       {params: []string{ParamSNI}, validate: validateTLS},
		SchemeFile:      {params: []string{ParamMaxSize}, secrets: []string{ParamPassword}, validate: validatePath},
		SchemeJKS:       {params: []string{ParamMaxSize}, secrets: []string{ParamPassword}, validate: validatePath},
		SchemeCertStore: {validate: validateCertStore},
		SchemeLDAP:      ldapRule,
		SchemeLDAPS:     ldapRule,
		SchemeSSH: {
			params:   []string{ParamKeyFile, ParamKnownHosts, ParamHostKey, ParamInsecureHostKey, ParamSudo, ParamMaxSize},
			secrets:  []string{ParamPassword, ParamPassphrase},
			validate: validateSSH,
			userInfo: true,
		},
		SchemeF5: {
			params:   []string{ParamUser, ParamCAFile, ParamInsecure, ParamPartition},
			secrets:  []string{ParamPassword},
			validate: validateF5,
		},
		SchemeAWS: {
			params:   []string{ParamAccessKey, ParamEndpoint},
			secrets:  []string{ParamSecretKey, ParamSessionToken},
			validate: validateAWS,
		},
		SchemeCloudflare: {
			params:   []string{ParamEmail, ParamEndpoint},
			secrets:  []string{ParamAPIKey, ParamAPIToken},
			validate: validateCloudflare,
		},
		SchemePKCS11: {
			params:   []string{ParamModulePath, ParamModuleName, ParamObjects, ParamConfig},
			secrets:  []string{ParamPINValue, ParamPINSource},
			validate: validatePKCS11,
			opaque:   true,
		},
	}
}

// Target is one thing to scan, parsed and validated from its URI form, such
// as tls://10.0.0.0/24:443,8443 or jks:///opt/app?password=env:KS_PASS.
type Target struct {
	Scheme string
	// Host is the authority as written: HOSTS:PORTS for tls, the store
	// location for certstore, empty for file and jks.
	Host string
	// Path is the path part: a file system path (slash-separated, as in the
	// URI) for file and jks, the store name for certstore.
	Path string
	// Params holds the non-secret parameters, each possibly repeated.
	Params map[string][]string
	// Secrets holds the secret parameters, resolved.
	Secrets map[string][]Secret
	// Endpoints is set for tls targets.
	Endpoints EndpointSpec
	// User is the login name of schemes that take USER@HOST (ssh).
	User string
}

// TargetError is a target that does not parse: it names the target (with
// secrets redacted) and the fault.
type TargetError struct {
	Target string
	Err    error
}

func (e *TargetError) Error() string { return fmt.Sprintf("target %s: %v", e.Target, e.Err) }
func (e *TargetError) Unwrap() error { return e.Err }

// ParseTarget reads a target URI. Secret parameters written as env:NAME or
// file:/path are resolved here, so a missing variable or file is reported
// before anything is scanned.
func ParseTarget(raw string) (Target, error) {
	t, err := parseTarget(raw, true)
	if err != nil {
		return Target{}, &TargetError{Target: redactURI(raw), Err: err}
	}
	return t, nil
}

// ParseTargetUnresolved reads a target as ParseTarget does but leaves
// env:NAME and file:/path secrets unresolved (their Secret is empty). The
// control plane validates with it: the bot resolves those references on its
// own machine, and the control plane must not read files a user names.
func ParseTargetUnresolved(raw string) (Target, error) {
	t, err := parseTarget(raw, false)
	if err != nil {
		return Target{}, &TargetError{Target: redactURI(raw), Err: err}
	}
	return t, nil
}

func parseTarget(raw string, resolve bool) (Target, error) {
	if s, rest, ok := strings.Cut(raw, ":"); ok && targetRules()[strings.ToLower(s)].opaque {
		return parseOpaque(strings.ToLower(s), rest, resolve)
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		if s, _, ok := strings.Cut(raw, ":"); ok && targetRules()[strings.ToLower(s)].validate != nil {
			return Target{}, fmt.Errorf("write %s://...", strings.ToLower(s))
		}
		return Target{}, errors.New("not a target URI: expected SCHEME://..., e.g. tls://host:443 or file:///etc/ssl")
	}
	scheme = strings.ToLower(scheme)
	rule, known := targetRules()[scheme]
	if !known {
		return Target{}, fmt.Errorf("unknown scheme %q (known: %s)", scheme, strings.Join(knownSchemes(), ", "))
	}
	rest, query, _ := strings.Cut(rest, "?")
	if strings.Contains(query, "#") {
		return Target{}, errors.New("'#' is not allowed in a target; percent-encode it as %23")
	}
	t := Target{Scheme: scheme, Params: map[string][]string{}, Secrets: map[string][]Secret{}}
	if authority, _, _ := strings.Cut(rest, "/"); strings.Contains(authority, "@") {
		user, _, _ := strings.Cut(authority, "@")
		if !rule.userInfo || strings.Contains(user, ":") {
			// Said without echoing the authority: it may hold a password.
			return Target{}, errors.New("user info (NAME:PASSWORD@) is not allowed in a target: give a password as ?password=...")
		}
		u, err := url.PathUnescape(user)
		if err != nil || u == "" {
			return Target{}, errors.New("bad user name before '@'")
		}
		t.User = u
		rest = rest[len(user)+1:]
	}
	// tls authorities hold CIDR slashes, so they are not split at '/'.
	if scheme == SchemeTLS {
		t.Host = rest
	} else {
		host, path, _ := strings.Cut(rest, "/")
		t.Host = host
		if path != "" || strings.HasSuffix(rest, "/") || strings.Contains(rest, "/") {
			p, err := url.PathUnescape("/" + path)
			if err != nil {
				return Target{}, fmt.Errorf("path: %w", err)
			}
			t.Path = p
		}
	}
	if err := parseParams(&t, query, rule, resolve); err != nil {
		return Target{}, err
	}
	if err := rule.validate(&t); err != nil {
		return Target{}, err
	}
	return t, nil
}

// parseOpaque reads SCHEME:ATTR=V;ATTR=V?PARAM=V&PARAM=V (RFC 7512). The
// path attributes stay in Path as written (percent-encoded); PathAttrs
// decodes them.
func parseOpaque(scheme, rest string, resolve bool) (Target, error) {
	rule := targetRules()[scheme]
	if strings.HasPrefix(rest, "//") {
		return Target{}, fmt.Errorf("write %s:ATTR=VALUE;...?..., without //", scheme)
	}
	path, query, _ := strings.Cut(rest, "?")
	if strings.ContainsAny(rest, "#") {
		return Target{}, errors.New("'#' is not allowed in a target; percent-encode it as %23")
	}
	t := Target{Scheme: scheme, Path: path, Params: map[string][]string{}, Secrets: map[string][]Secret{}}
	if err := parseParams(&t, query, rule, resolve); err != nil {
		return Target{}, err
	}
	if err := rule.validate(&t); err != nil {
		return Target{}, err
	}
	return t, nil
}

// PathAttrs decodes the path attributes of an opaque target
// (pkcs11:token=prod;object=web gives token and object).
func (t Target) PathAttrs() (map[string]string, error) {
	attrs := map[string]string{}
	if t.Path == "" {
		return attrs, nil
	}
	for kv := range strings.SplitSeq(t.Path, ";") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("path attribute %q: want NAME=VALUE", kv)
		}
		val, err := url.PathUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("path attribute %s: bad percent-encoding", k)
		}
		if _, dup := attrs[k]; dup {
			return nil, fmt.Errorf("path attribute %s given twice", k)
		}
		attrs[k] = val
	}
	return attrs, nil
}

func validatePKCS11(t *Target) error {
	attrs, err := t.PathAttrs()
	if err != nil {
		return err
	}
	for k := range attrs {
		if !slices.Contains(pkcs11PathAttrs, k) {
			return fmt.Errorf("unknown path attribute %q (allowed: %s)", k, strings.Join(pkcs11PathAttrs, ", "))
		}
	}
	if id, ok := attrs["slot-id"]; ok {
		if _, err := strconv.ParseUint(id, 10, 64); err != nil {
			return fmt.Errorf("slot-id %q is not a number", id)
		}
	}
	if len(t.Secrets[ParamPINValue]) > 0 && len(t.Secrets[ParamPINSource]) > 0 {
		return errors.New("give pin-value or pin-source, not both")
	}
	if len(t.Params[ParamModulePath]) == 0 && len(t.Params[ParamModuleName]) == 0 && len(t.Params[ParamConfig]) == 0 {
		return errors.New("module-path is required (the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so), or module-name, or config=FILE")
	}
	for _, o := range t.Params[ParamObjects] {
		for part := range strings.SplitSeq(o, ",") {
			if part != "certs" && part != "keys" {
				return fmt.Errorf("objects %q: want certs, keys or certs,keys", o)
			}
		}
	}
	return nil
}

// PIN is a pkcs11 target's PIN from pin-value or pin-source.
func (t Target) PIN() (Secret, bool) {
	for _, k := range []string{ParamPINValue, ParamPINSource} {
		if v := t.Secrets[k]; len(v) > 0 {
			return v[len(v)-1], true
		}
	}
	return Secret{}, false
}

func validateLDAP(t *Target) error {
	if t.Host == "" {
		return fmt.Errorf("no server: write %s://HOST[:PORT]/BASE-DN", t.Scheme)
	}
	if h, p, err := net.SplitHostPort(t.Host); err == nil {
		if _, perr := parsePort(p); perr != nil || h == "" {
			return fmt.Errorf("%q is not HOST:PORT", t.Host)
		}
	}
	switch t.Param(ParamScope) {
	case "", "sub", "one", "base":
	default:
		return fmt.Errorf("scope %q: want sub, one or base", t.Param(ParamScope))
	}
	for _, b := range []string{ParamStartTLS, ParamReferrals, ParamInsecure} {
		if v := t.Param(b); v != "" {
			if _, err := strconv.ParseBool(v); err != nil {
				return fmt.Errorf("%s %q: want true or false", b, v)
			}
		}
	}
	if t.Scheme == SchemeLDAPS && t.Param(ParamStartTLS) == "true" {
		return errors.New("starttls is for ldap://; ldaps:// is TLS from the start")
	}
	if v := t.Param(ParamPageSize); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 10000 {
			return fmt.Errorf("page_size %q: want 1 to 10000", v)
		}
	}
	if t.Param(ParamBindDN) != "" && len(t.Passwords()) == 0 {
		return errors.New("bind_dn needs a password (password=..., env:NAME or file:/path)")
	}
	return nil
}

func validateSSH(t *Target) error {
	if t.Host == "" {
		return errors.New("no host: write ssh://USER@HOST[:PORT]/PATH[,PATH...]")
	}
	if t.User == "" {
		return errors.New("no user: write ssh://USER@HOST[:PORT]/PATH")
	}
	if err := checkHostPort(t.Host); err != nil {
		return err
	}
	for _, p := range t.SSHPaths() {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("remote path %q must be absolute", p)
		}
	}
	if len(t.Passwords()) == 0 && t.Param(ParamKeyFile) == "" {
		return errors.New("give password=... or key_file=...")
	}
	if t.Param(ParamKnownHosts) == "" && t.Param(ParamHostKey) == "" && t.Param(ParamInsecureHostKey) != "true" {
		return errors.New("the host key must be checked: give known_hosts=FILE or host_key=SHA256:..., or insecure_host_key=true to skip it")
	}
	if hk := t.Param(ParamHostKey); hk != "" && !strings.HasPrefix(hk, "SHA256:") {
		return fmt.Errorf("host_key %q: want SHA256:BASE64, as ssh-keygen -lf prints", hk)
	}
	return checkBools(t, ParamInsecureHostKey, ParamSudo)
}

// SSHPaths lists an ssh target's remote paths (PATH[,PATH...]); "/" when
// none is given.
func (t Target) SSHPaths() []string {
	if t.Path == "" || t.Path == "/" {
		return []string{"/"}
	}
	var out []string
	for p := range strings.SplitSeq(t.Path, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func validateF5(t *Target) error {
	if t.Host == "" {
		return errors.New("no host: write f5://HOST[:PORT]?user=...&password=...")
	}
	if err := checkHostPort(t.Host); err != nil {
		return err
	}
	if t.Param(ParamUser) == "" || len(t.Passwords()) == 0 {
		return errors.New("user and password are required")
	}
	return checkBools(t, ParamInsecure)
}

func validateAWS(t *Target) error {
	if t.Host == "" {
		return errors.New("no region: write aws://REGION[,REGION...] or aws://all")
	}
	for r := range strings.SplitSeq(t.Host, ",") {
		if r == "all" {
			continue
		}
		if !isRegionName(r) {
			return fmt.Errorf("%q is not an AWS region name (e.g. eu-west-1)", r)
		}
	}
	hasKey, hasSecret := t.Param(ParamAccessKey) != "", len(t.Secrets[ParamSecretKey]) > 0
	if hasKey != hasSecret {
		return errors.New("give access_key and secret_key together, or neither (the SDK's default credentials)")
	}
	return checkEndpoint(t)
}

func isRegionName(r string) bool {
	if r == "" || strings.HasPrefix(r, "-") || strings.HasSuffix(r, "-") || !strings.Contains(r, "-") {
		return false
	}
	for _, c := range r {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

func validateCloudflare(t *Target) error {
	if t.Host == "" {
		return errors.New("no zone: write cloudflare://ZONE-ID[,ZONE-ID...]")
	}
	for z := range strings.SplitSeq(t.Host, ",") {
		if len(z) != 32 || strings.Trim(strings.ToLower(z), "0123456789abcdef") != "" {
			return fmt.Errorf("%q is not a Cloudflare zone ID (32 hex digits)", z)
		}
	}
	apiKey, token := len(t.Secrets[ParamAPIKey]) > 0, len(t.Secrets[ParamAPIToken]) > 0
	switch {
	case apiKey && token:
		return errors.New("give api_token, or email and api_key, not both")
	case apiKey && t.Param(ParamEmail) == "":
		return errors.New("api_key needs the account's email")
	case !apiKey && !token:
		return errors.New("give api_token=..., or email=...&api_key=...")
	}
	return checkEndpoint(t)
}

func checkEndpoint(t *Target) error {
	if e := t.Param(ParamEndpoint); e != "" {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("endpoint %q: want an http(s) URL", e)
		}
	}
	return nil
}

func checkHostPort(hostport string) error {
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		if _, perr := parsePort(p); perr != nil || h == "" {
			return fmt.Errorf("%q is not HOST:PORT", hostport)
		}
	}
	return nil
}

func checkBools(t *Target, names ...string) error {
	for _, b := range names {
		if v := t.Param(b); v != "" {
			if _, err := strconv.ParseBool(v); err != nil {
				return fmt.Errorf("%s %q: want true or false", b, v)
			}
		}
	}
	return nil
}

// BaseDN is an ldap target's base DN (the "container name" of B4.3).
func (t Target) BaseDN() string { return strings.TrimPrefix(t.Path, "/") }

func knownSchemes() []string {
	var s []string
	for k := range targetRules() {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}

// parseParams splits the query by hand rather than with url.ParseQuery,
// which would turn '+' in a password into a space.
func parseParams(t *Target, query string, rule targetRule, resolve bool) error {
	if query == "" {
		return nil
	}
	for kv := range strings.SplitSeq(query, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		key, err := url.PathUnescape(k)
		if err != nil {
			return fmt.Errorf("parameter %q: %w", k, err)
		}
		val, err := url.PathUnescape(v)
		if err != nil {
			return fmt.Errorf("parameter %s: bad percent-encoding", key)
		}
		switch {
		case slices.Contains(rule.secrets, key):
			if !resolve && (strings.HasPrefix(val, "env:") || strings.HasPrefix(val, "file:")) {
				t.Secrets[key] = append(t.Secrets[key], Secret{})
				continue
			}
			s, err := ResolveSecret(val)
			if err != nil {
				return fmt.Errorf("parameter %s: %w", key, err)
			}
			t.Secrets[key] = append(t.Secrets[key], s)
		case slices.Contains(rule.params, key):
			t.Params[key] = append(t.Params[key], val)
		default:
			allowed := append(slices.Clone(rule.params), rule.secrets...)
			if len(allowed) == 0 {
				return fmt.Errorf("unknown parameter %q: %s targets take none", key, t.Scheme)
			}
			return fmt.Errorf("unknown parameter %q for %s targets (allowed: %s)", key, t.Scheme, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// ResolveSecret reads a secret written as a value, env:NAME or file:/path.
// A file's trailing newline is dropped.
func ResolveSecret(v string) (Secret, error) {
	switch {
	case strings.HasPrefix(v, "env:"):
		name := strings.TrimPrefix(v, "env:")
		val, ok := os.LookupEnv(name)
		if !ok {
			return Secret{}, fmt.Errorf("environment variable %s is not set", name)
		}
		return NewSecret(val), nil
	case strings.HasPrefix(v, "file:"):
		path := strings.TrimPrefix(v, "file:")
		b, err := os.ReadFile(path)
		if err != nil {
			return Secret{}, fmt.Errorf("secret file: %w", err)
		}
		return NewSecret(strings.TrimRight(string(b), "\r\n")), nil
	default:
		return NewSecret(v), nil
	}
}

func validateTLS(t *Target) error {
	spec, err := ParseEndpointSpec(t.Host)
	if err != nil {
		return err
	}
	t.Endpoints = spec
	if sni := t.Params[ParamSNI]; len(sni) > 1 {
		return errors.New("sni given more than once")
	} else if len(sni) == 1 {
		if err := checkHostname(sni[0]); err != nil {
			return fmt.Errorf("sni: %w", err)
		}
	}
	return nil
}

func validatePath(t *Target) error {
	if t.Host != "" && t.Host != "localhost" {
		return fmt.Errorf("%s targets read local paths: write %s:///PATH (three slashes), not a host %q", t.Scheme, t.Scheme, t.Host)
	}
	t.Host = ""
	if t.Path == "" {
		return fmt.Errorf("no path: write %s:///PATH", t.Scheme)
	}
	for _, v := range t.Params[ParamMaxSize] {
		if _, err := ParseSize(v); err != nil {
			return fmt.Errorf("max_size: %w", err)
		}
	}
	return nil
}

func validateCertStore(t *Target) error {
	// certstore:// is every store; certstore://LocalMachine/My one of them.
	if t.Path != "" && strings.Count(strings.Trim(t.Path, "/"), "/") > 0 {
		return fmt.Errorf("store path %q: write certstore://LOCATION/STORE", t.Path)
	}
	if t.Host == "" && strings.Trim(t.Path, "/") != "" {
		return errors.New("a store name needs a location: certstore://LocalMachine/My")
	}
	t.Path = strings.Trim(t.Path, "/")
	return nil
}

// FilePath is the path of a file or jks target in the local OS's form:
// file:///C:/certs becomes C:\certs on Windows.
func (t Target) FilePath() string {
	return URIPathToFile(t.Path)
}

// URIPathToFile turns a URI path into an OS path.
func URIPathToFile(p string) string {
	if runtime.GOOS == "windows" && len(p) >= 3 && p[0] == '/' && p[2] == ':' {
		p = p[1:]
	}
	return filepath.FromSlash(p)
}

// FileToURIPath turns an OS path into a URI path (C:\x becomes /C:/x).
func FileToURIPath(p string) string {
	p = filepath.ToSlash(p)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p
}

// Param returns the last value of a non-secret parameter, or "".
func (t Target) Param(name string) string {
	v := t.Params[name]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// Passwords returns the target's passwords in the order given.
func (t Target) Passwords() []Secret { return t.Secrets[ParamPassword] }

// String renders the target with its secrets redacted: safe to log.
func (t Target) String() string {
	var b strings.Builder
	b.WriteString(t.Scheme)
	if targetRules()[t.Scheme].opaque {
		b.WriteString(":")
		b.WriteString(t.Path)
	} else {
		b.WriteString("://")
		if t.User != "" {
			b.WriteString(url.PathEscape(t.User))
			b.WriteString("@")
		}
		b.WriteString(t.Host)
		if t.Scheme == SchemeCertStore && t.Path != "" {
			b.WriteString("/")
		}
		b.WriteString((&url.URL{Path: t.Path}).EscapedPath())
	}
	var q []string
	for _, k := range sortedKeys(t.Params) {
		for _, v := range t.Params[k] {
			q = append(q, queryEscape(k)+"="+queryEscape(v))
		}
	}
	for _, k := range sortedKeys(t.Secrets) {
		for range t.Secrets[k] {
			q = append(q, k+"="+redacted)
		}
	}
	if len(q) > 0 {
		b.WriteString("?")
		b.WriteString(strings.Join(q, "&"))
	}
	return b.String()
}

// queryEscape escapes a parameter name or value so that parseParams reads
// it back, and no more: DNs and paths stay readable (cn=admin,dc=x, /usr/lib).
func queryEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		keep := c > ' ' && c < 0x7f && !strings.ContainsRune("%&#?\"<>\\^`{|}", rune(c))
		if keep {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// publicParams are the parameters whose values an error message may show.
var publicParams = []string{ParamSNI, ParamMaxSize, ParamBindDN, ParamFilter, ParamScope, ParamStartTLS, ParamCAFile,
	ParamPageSize, ParamReferrals, ParamInsecure, ParamModulePath, ParamModuleName, ParamObjects, ParamConfig,
	ParamKeyFile, ParamKnownHosts, ParamHostKey, ParamInsecureHostKey, ParamSudo, ParamUser, ParamPartition,
	ParamAccessKey, ParamEndpoint, ParamEmail}

// redactURI hides the values of secret parameters in a target that may not
// have parsed, so that an error message never shows a password. A parameter
// it does not know may be a secret misspelt (Password=, passwd=), so only
// the values of known public parameters are kept; so is user info
// (NAME:PASSWORD@) in the authority.
func redactURI(raw string) string {
	base, query, hasQuery := strings.Cut(raw, "?")
	if scheme, rest, ok := strings.Cut(base, "://"); ok {
		authority, path, hasPath := strings.Cut(rest, "/")
		if i := strings.LastIndex(authority, "@"); i >= 0 {
			base = scheme + "://" + redacted + authority[i:]
			if hasPath {
				base += "/" + path
			}
		}
	}
	if !hasQuery {
		return base
	}
	parts := strings.Split(query, "&")
	for i, kv := range parts {
		k, _, hasValue := strings.Cut(kv, "=")
		if !hasValue {
			continue
		}
		if key, err := url.PathUnescape(k); err != nil || !slices.Contains(publicParams, key) {
			parts[i] = k + "=" + redacted
		}
	}
	return base + "?" + strings.Join(parts, "&")
}

// ParseSize reads a byte count such as 10485760, 10MB, 512KiB or 1G.
func ParseSize(s string) (int64, error) {
	num := strings.TrimRight(s, "BbiIKkMmGgTt")
	unit := strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(s, num), "B"), "b"))
	unit = strings.TrimSuffix(strings.TrimSuffix(unit, "I"), "i")
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	mult := map[string]int64{"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("%q is not a size: unknown unit", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a size: too large", s)
	}
	return n * mult, nil
}
