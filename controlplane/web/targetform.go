package web

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/protocol"
)

// The add-target form (GET /bots/{id}/settings, form#add-target) offers a
// fieldset of labelled fields per kind of target; targetFromForm turns the
// chosen kind's fields into the target URI that ops.AddTargets parses.
// Every value is escaped with net/url; the few parts the URI syntax leaves
// unescaped (a tls target's HOSTS:PORTS, host names, region and zone
// lists) are checked against a strict character set instead, so nothing a
// user types can add a parameter or change the target's meaning.

// targetKindURI is the kind whose only field is the raw target URI.
const targetKindURI = "uri"

// targetField is one field of a kind's fieldset.
type targetField struct {
	Name     string // the form field's name, KIND_FIELD
	Label    string
	Hint     string
	Secret   bool // type=password, never filled back in
	Checkbox bool
	Required bool
}

// targetKind is one choice of the kind select and its fieldset.
type targetKind struct {
	Kind   string
	Label  string
	Hint   string
	Fields []targetField
}

// ID is the id of the kind's fieldset.
func (k targetKind) ID() string { return "target-" + k.Kind }

// FieldID is the id of one field's input, for its label.
func (f targetField) FieldID() string { return "t-" + strings.ReplaceAll(f.Name, "_", "-") }

const secretHint = "Write-only: never shown again. Or env:NAME / file:/path, read on the bot's machine."

// targetKinds lists the kinds in the order the form shows them.
func targetKinds() []targetKind {
	return []targetKind{
		{Kind: protocol.SchemeTLS, Label: "TLS endpoints", Hint: "The certificates network services present.", Fields: []targetField{
			{Name: "tls_hosts", Label: "Hosts", Required: true,
				Hint: "Names, IP addresses, CIDR blocks (10.0.0.0/24) or ranges (10.0.0.1-10.0.0.254), comma-separated."},
			{Name: "tls_ports", Label: "Ports", Hint: "e.g. 443,8443,1-899; 443 when empty."},
			{Name: "tls_sni", Label: "Server name (SNI)", Hint: "Optional."},
		}},
		{Kind: protocol.SchemeFile, Label: "Files", Hint: "PEM, DER, PKCS#7, PKCS#12 and keystores under a path.", Fields: []targetField{
			{Name: "file_path", Label: "Path", Required: true, Hint: "A file or directory on the bot's machine, e.g. /etc/ssl or C:\\certs."},
			{Name: "file_password", Label: "Password (PKCS#12, optional)", Secret: true, Hint: secretHint},
		}},
		{Kind: protocol.SchemeJKS, Label: "Java keystores", Fields: []targetField{
			{Name: "jks_path", Label: "Path", Required: true, Hint: "A keystore or a directory of them."},
			{Name: "jks_password", Label: "Keystore password", Secret: true, Hint: secretHint},
		}},
		{Kind: protocol.SchemeCertStore, Label: "OS certificate stores", Hint: "Every store of the bot's machine (Windows system stores; Linux trust stores). No fields."},
		{Kind: protocol.SchemeLDAP, Label: "LDAP directory", Fields: []targetField{
			{Name: "ldap_url", Label: "Server URL", Required: true, Hint: "ldap://HOST[:PORT] or ldaps://HOST[:PORT]."},
			{Name: "ldap_base_dn", Label: "Base DN (container)", Hint: "e.g. ou=People,dc=example,dc=com."},
			{Name: "ldap_bind_dn", Label: "Bind DN", Hint: "Empty for an anonymous bind."},
			{Name: "ldap_password", Label: "Bind password", Secret: true, Hint: secretHint},
			{Name: "ldap_starttls", Label: "Use StartTLS (ldap:// only)", Checkbox: true},
		}},
		{Kind: protocol.SchemePKCS11, Label: "HSM / PKCS#11 token", Fields: []targetField{
			{Name: "pkcs11_module", Label: "Module path", Required: true, Hint: "The PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so."},
			{Name: "pkcs11_token", Label: "Token label", Hint: "Empty for every token."},
			{Name: "pkcs11_pin", Label: "PIN", Secret: true, Hint: secretHint},
			{Name: "pkcs11_certs", Label: "Certificates", Checkbox: true},
			{Name: "pkcs11_keys", Label: "Keys", Checkbox: true},
		}},
		{Kind: protocol.SchemeSSH, Label: "Remote host over SSH", Fields: []targetField{
			{Name: "ssh_host", Label: "Host", Required: true},
			{Name: "ssh_port", Label: "Port", Hint: "22 when empty."},
			{Name: "ssh_user", Label: "User", Required: true},
			{Name: "ssh_password", Label: "Password", Secret: true, Hint: secretHint},
			{Name: "ssh_key_file", Label: "Private key file", Hint: "A path on the bot's machine (instead of a password)."},
			{Name: "ssh_passphrase", Label: "Key passphrase", Secret: true, Hint: secretHint},
			{Name: "ssh_paths", Label: "Paths to look in", Hint: "Absolute paths, comma-separated; / when empty."},
			{Name: "ssh_host_key", Label: "Host key fingerprint", Hint: "SHA256:..., as ssh-keygen -lf prints."},
			{Name: "ssh_known_hosts", Label: "known_hosts file", Hint: "A path on the bot's machine."},
			{Name: "ssh_insecure_host_key", Label: "Do not check the host key", Checkbox: true},
		}},
		{Kind: protocol.SchemeF5, Label: "F5 BIG-IP", Fields: []targetField{
			{Name: "f5_host", Label: "Host", Required: true},
			{Name: "f5_port", Label: "Port", Hint: "443 when empty."},
			{Name: "f5_user", Label: "User", Required: true},
			{Name: "f5_password", Label: "Password", Secret: true, Hint: secretHint},
			{Name: "f5_insecure", Label: "Do not verify the F5's certificate", Checkbox: true},
		}},
		{Kind: protocol.SchemeAWS, Label: "AWS (ACM and IAM)", Fields: []targetField{
			{Name: "aws_regions", Label: "Regions", Hint: "e.g. eu-west-1,us-east-1; all when empty."},
			{Name: "aws_access_key", Label: "Access key ID", Hint: "Empty to use the SDK's default credentials on the bot's machine."},
			{Name: "aws_secret_key", Label: "Secret access key", Secret: true, Hint: secretHint},
		}},
		{Kind: protocol.SchemeCloudflare, Label: "Cloudflare", Fields: []targetField{
			{Name: "cloudflare_zones", Label: "Zone IDs", Required: true, Hint: "32 hex digits each, comma-separated."},
			{Name: "cloudflare_api_token", Label: "API token", Secret: true, Hint: "Or email and global API key. " + secretHint},
			{Name: "cloudflare_email", Label: "Account email"},
			{Name: "cloudflare_api_key", Label: "Global API key", Secret: true, Hint: secretHint},
		}},
	}
}

// targetSecretField tells whether a form field holds a secret (and must
// never be written back into a page).
func targetSecretField(name string) bool {
	for _, k := range targetKinds() {
		for _, f := range k.Fields {
			if f.Name == name {
				return f.Secret
			}
		}
	}
	return false
}

// targetFieldLabel is a field's label for an error message ("Hosts (TLS
// endpoints)"); the name itself when unknown.
func targetFieldLabel(name string) string {
	for _, k := range targetKinds() {
		for _, f := range k.Fields {
			if f.Name == name {
				return f.Label + " (" + k.Label + ")"
			}
		}
	}
	if name == targetKindURI {
		return "Target URI"
	}
	if strings.HasPrefix(name, "targets") {
		// ops.AddTargets names targets[i]; the form adds one at a time.
		return "Target"
	}
	return name
}

// targetQuery builds a query string in the order parameters are added.
// Values are escaped so that protocol's parser (which percent-decodes and
// keeps '+' as '+') reads back exactly what was typed.
type targetQuery []string

func (q *targetQuery) add(name, value string) {
	*q = append(*q, name+"="+escapeTargetValue(value))
}

// addSet adds the parameter only when the field was filled in: an empty
// optional field means "not given", never an empty value.
func (q *targetQuery) addSet(name, value string) {
	if value != "" {
		q.add(name, value)
	}
}

func (q targetQuery) String() string { return strings.Join(q, "&") }

// escapeTargetValue is url.QueryEscape with spaces as %20: the target
// parser decodes with url.PathUnescape, which reads '+' literally.
func escapeTargetValue(v string) string {
	return strings.ReplaceAll(url.QueryEscape(v), "+", "%20")
}

var (
	// tlsHostChars: names, IPv4/IPv6 addresses, brackets, CIDR slashes and
	// range hyphens; nothing that could end the authority or start a query.
	tlsHostChars = regexp.MustCompile(`^[A-Za-z0-9._\-:\[\]/]+$`)
	portsChars   = regexp.MustCompile(`^[0-9,\-]+$`)
	hostChars    = regexp.MustCompile(`^[A-Za-z0-9._\-]+$`)
	regionChars  = regexp.MustCompile(`^[a-z0-9\-]+$`)
	driveLetter  = regexp.MustCompile(`^[A-Za-z]:[\\/]`)
)

func fieldErr(field, format string, args ...any) error {
	return &ops.InvalidError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// splitList splits a comma, space or newline separated list, dropping
// empty items.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

// targetFromForm builds the target URI of the form's chosen kind. A bad or
// missing field is an *ops.InvalidError naming the form field.
func targetFromForm(f url.Values) (string, error) {
	val := func(name string) string { return strings.TrimSpace(f.Get(name)) }
	// Secrets are taken as typed: a leading or trailing space may be part
	// of a password.
	secret := func(name string) string { return f.Get(name) }
	checked := func(name string) bool { return f.Get(name) != "" }

	var q targetQuery
	switch kind := val("kind"); kind {
	case targetKindURI:
		raw := val("uri")
		if raw == "" {
			return "", fieldErr("uri", "required")
		}
		return raw, nil

	case protocol.SchemeTLS:
		hosts, err := tlsHosts(val("tls_hosts"))
		if err != nil {
			return "", err
		}
		spec := hosts
		if ports := strings.Join(splitList(val("tls_ports")), ","); ports != "" {
			if !portsChars.MatchString(ports) {
				return "", fieldErr("tls_ports", "want ports and ranges such as 443,8443,1-899")
			}
			spec += ":" + ports
		}
		if sni := val("tls_sni"); sni != "" {
			if !hostChars.MatchString(sni) {
				return "", fieldErr("tls_sni", "want a host name")
			}
			q.add(protocol.ParamSNI, sni)
		}
		// HOSTS:PORTS holds CIDR slashes and brackets that url.URL would
		// escape; tlsHosts and portsChars allowed nothing else.
		u := protocol.SchemeTLS + "://" + spec
		if len(q) > 0 {
			u += "?" + q.String()
		}
		return u, nil

	case protocol.SchemeFile, protocol.SchemeJKS:
		p := val(kind + "_path")
		if p == "" {
			return "", fieldErr(kind+"_path", "required")
		}
		if pw := secret(kind + "_password"); pw != "" {
			q.add(protocol.ParamPassword, pw)
		}
		u := url.URL{Scheme: kind, Path: filePathToURI(p), RawQuery: q.String()}
		return u.String(), nil

	case protocol.SchemeCertStore:
		return protocol.SchemeCertStore + "://", nil

	case protocol.SchemeLDAP:
		base, err := url.Parse(val("ldap_url"))
		switch {
		case val("ldap_url") == "":
			return "", fieldErr("ldap_url", "required")
		case err != nil, base.Scheme != protocol.SchemeLDAP && base.Scheme != protocol.SchemeLDAPS, base.Host == "":
			return "", fieldErr("ldap_url", "want ldap://HOST[:PORT] or ldaps://HOST[:PORT]")
		case base.User != nil, base.RawQuery != "", base.Fragment != "":
			return "", fieldErr("ldap_url", "give only the scheme, host and port; the bind DN and password have their own fields")
		}
		if err := checkHostPortField("ldap_url", base.Host); err != nil {
			return "", err
		}
		dn := val("ldap_base_dn")
		if dn == "" {
			dn = strings.TrimPrefix(base.Path, "/")
		}
		q.addSet(protocol.ParamBindDN, val("ldap_bind_dn"))
		q.addSet(protocol.ParamPassword, secret("ldap_password"))
		if checked("ldap_starttls") {
			q.add(protocol.ParamStartTLS, "true")
		}
		u := url.URL{Scheme: base.Scheme, Host: base.Host, Path: "/" + dn, RawQuery: q.String()}
		return u.String(), nil

	case protocol.SchemePKCS11:
		module := val("pkcs11_module")
		if module == "" {
			return "", fieldErr("pkcs11_module", "required")
		}
		var attrs string
		if tok := val("pkcs11_token"); tok != "" {
			attrs = "token=" + url.PathEscape(tok)
		}
		q.add(protocol.ParamModulePath, module)
		q.addSet(protocol.ParamPINValue, secret("pkcs11_pin"))
		var objects []string
		if checked("pkcs11_certs") {
			objects = append(objects, "certs")
		}
		if checked("pkcs11_keys") {
			objects = append(objects, "keys")
		}
		if len(objects) > 0 {
			q.add(protocol.ParamObjects, strings.Join(objects, ","))
		}
		u := url.URL{Scheme: protocol.SchemePKCS11, Opaque: attrs, RawQuery: q.String()}
		return u.String(), nil

	case protocol.SchemeSSH:
		host, err := hostPortField(f, "ssh_host", "ssh_port")
		if err != nil {
			return "", err
		}
		user := val("ssh_user")
		if user == "" {
			return "", fieldErr("ssh_user", "required")
		}
		var paths []string
		for _, p := range strings.FieldsFunc(val("ssh_paths"), func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			if !strings.HasPrefix(p, "/") {
				return "", fieldErr("ssh_paths", "%q is not an absolute path", p)
			}
			paths = append(paths, p)
		}
		q.addSet(protocol.ParamPassword, secret("ssh_password"))
		q.addSet(protocol.ParamKeyFile, val("ssh_key_file"))
		q.addSet(protocol.ParamPassphrase, secret("ssh_passphrase"))
		q.addSet(protocol.ParamHostKey, val("ssh_host_key"))
		q.addSet(protocol.ParamKnownHosts, val("ssh_known_hosts"))
		if checked("ssh_insecure_host_key") {
			q.add(protocol.ParamInsecureHostKey, "true")
		}
		u := url.URL{Scheme: protocol.SchemeSSH, User: url.User(user), Host: host, RawQuery: q.String()}
		if len(paths) > 0 {
			u.Path = strings.Join(paths, ",")
		}
		return u.String(), nil

	case protocol.SchemeF5:
		host, err := hostPortField(f, "f5_host", "f5_port")
		if err != nil {
			return "", err
		}
		user := val("f5_user")
		if user == "" {
			return "", fieldErr("f5_user", "required")
		}
		q.add(protocol.ParamUser, user)
		q.addSet(protocol.ParamPassword, secret("f5_password"))
		if checked("f5_insecure") {
			q.add(protocol.ParamInsecure, "true")
		}
		u := url.URL{Scheme: protocol.SchemeF5, Host: host, RawQuery: q.String()}
		return u.String(), nil

	case protocol.SchemeAWS:
		regions := splitList(strings.ToLower(val("aws_regions")))
		if len(regions) == 0 {
			regions = []string{"all"}
		}
		for _, r := range regions {
			if !regionChars.MatchString(r) {
				return "", fieldErr("aws_regions", "%q is not a region name (e.g. eu-west-1) or all", r)
			}
		}
		q.addSet(protocol.ParamAccessKey, val("aws_access_key"))
		q.addSet(protocol.ParamSecretKey, secret("aws_secret_key"))
		u := url.URL{Scheme: protocol.SchemeAWS, Host: strings.Join(regions, ","), RawQuery: q.String()}
		return u.String(), nil

	case protocol.SchemeCloudflare:
		zones := splitList(strings.ToLower(val("cloudflare_zones")))
		if len(zones) == 0 {
			return "", fieldErr("cloudflare_zones", "required")
		}
		for _, z := range zones {
			if len(z) != 32 || strings.Trim(z, "0123456789abcdef") != "" {
				return "", fieldErr("cloudflare_zones", "%q is not a zone ID (32 hex digits)", z)
			}
		}
		q.addSet(protocol.ParamAPIToken, secret("cloudflare_api_token"))
		q.addSet(protocol.ParamEmail, val("cloudflare_email"))
		q.addSet(protocol.ParamAPIKey, secret("cloudflare_api_key"))
		u := url.URL{Scheme: protocol.SchemeCloudflare, Host: strings.Join(zones, ","), RawQuery: q.String()}
		return u.String(), nil

	case "":
		return "", fieldErr("kind", "choose a kind of target")
	default:
		return "", fieldErr("kind", "unknown kind %q", kind)
	}
}

// tlsHosts checks a tls target's host list and brackets bare IPv6
// addresses (which would otherwise run into the port list).
func tlsHosts(s string) (string, error) {
	items := splitList(s)
	if len(items) == 0 {
		return "", fieldErr("tls_hosts", "required")
	}
	for i, h := range items {
		if !tlsHostChars.MatchString(h) {
			return "", fieldErr("tls_hosts", "%q is not a host name, IP address, CIDR block or range", h)
		}
		if a, err := netip.ParseAddr(h); err == nil && a.Is6() {
			items[i] = "[" + h + "]"
		} else if p, err := netip.ParsePrefix(h); err == nil && p.Addr().Is6() {
			items[i] = "[" + p.Addr().String() + "]/" + strconv.Itoa(p.Bits())
		}
	}
	return strings.Join(items, ","), nil
}

// hostPortField reads a host field and an optional port field into
// HOST[:PORT] (IPv6 addresses bracketed).
func hostPortField(f url.Values, hostField, portField string) (string, error) {
	host := strings.TrimSpace(f.Get(hostField))
	port := strings.TrimSpace(f.Get(portField))
	if host == "" {
		return "", fieldErr(hostField, "required")
	}
	bare := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if _, err := netip.ParseAddr(bare); err != nil && !hostChars.MatchString(bare) {
		return "", fieldErr(hostField, "%q is not a host name or IP address", host)
	}
	if port == "" {
		if strings.Contains(bare, ":") {
			return "[" + bare + "]", nil
		}
		return bare, nil
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fieldErr(portField, "%q: want a port, 1 to 65535", port)
	}
	return net.JoinHostPort(bare, port), nil
}

// checkHostPortField checks a HOST[:PORT] taken from a URL.
func checkHostPortField(field, hp string) error {
	host, port := hp, ""
	if h, p, err := net.SplitHostPort(hp); err == nil {
		host, port = h, p
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if _, err := netip.ParseAddr(host); err != nil && !hostChars.MatchString(host) {
		return fieldErr(field, "%q is not a host name or IP address", host)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fieldErr(field, "port %q: want 1 to 65535", port)
		}
	}
	return nil
}

// filePathToURI turns a path typed for the bot's machine (which may be
// Windows while the control plane is not) into a URI path: C:\certs
// becomes /C:/certs.
func filePathToURI(p string) string {
	if driveLetter.MatchString(p) {
		return "/" + strings.ReplaceAll(p, `\`, "/")
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p
}
