package protocol

import (
	"fmt"
	"net/url"
	"strconv"
)

// Location is where a certificate lives. Its String form is a URI, one scheme
// per source, and is the key the control plane deduplicates on:
//
//	tls://10.0.0.5:443?sni=www.example.com
//	file:///etc/nginx/bundle.pem#1
//	jks:///opt/app/keystore.jks#tomcat
//	certstore://LocalMachine/My/<thumbprint>
type Location struct {
	Scheme string
	// Host is host[:port] for network locations, the store location for
	// certstore, empty for local files.
	Host string
	// Path is slash-separated and unescaped. For an opaque URI such as
	// pkcs11:token=prod;object=web (RFC 7512), which has no "//" and whose
	// path does not start with '/', it is the part after the scheme as
	// written (still encoded).
	Path string
	// Query is already encoded (e.g. "sni=www.example.com").
	Query string
	// Entry names one certificate inside the place: a keystore alias or the
	// index of a block in a file.
	Entry string
}

// FileLocation is the location of an entry in a local file. scheme is file
// or jks; entry is an index or an alias, or "" for the whole file.
func FileLocation(scheme, osPath, entry string) Location {
	return Location{Scheme: scheme, Path: FileToURIPath(osPath), Entry: entry}
}

// IndexEntry names the i-th certificate of a file.
func IndexEntry(i int) string { return strconv.Itoa(i) }

// WithEntry returns a copy of l naming one entry.
func (l Location) WithEntry(entry string) Location {
	l.Entry = entry
	return l
}

func (l Location) String() string {
	u := url.URL{Scheme: l.Scheme, Host: l.Host, Path: l.Path, RawQuery: l.Query, Fragment: l.Entry}
	if l.Host == "" && l.Path != "" && l.Path[0] == '/' {
		// url.URL drops the empty authority: keep file:///path.
		return l.Scheme + "://" + u.EscapedPath() + suffix(u)
	}
	if l.Host == "" && l.Path != "" {
		// Opaque: url.URL would write scheme://path, making it the host.
		return l.Scheme + ":" + l.Path + suffix(u)
	}
	return u.String()
}

func suffix(u url.URL) string {
	s := ""
	if u.RawQuery != "" {
		s += "?" + u.RawQuery
	}
	if u.Fragment != "" {
		s += "#" + u.EscapedFragment()
	}
	return s
}

// ParseLocation reads the String form back.
func ParseLocation(s string) (Location, error) {
	l, err := parseLocation(s)
	if err != nil {
		return Location{}, err
	}
	// A location is a dedupe key, so it must survive its own round trip;
	// net/url reads a few URIs it cannot write back (a non-ASCII byte in an
	// IPv6 zone is escaped by String and then refused by Parse).
	if back, err := parseLocation(l.String()); err != nil || back != l {
		return Location{}, fmt.Errorf("location %q: does not read back from its own string form %q", s, l.String())
	}
	return l, nil
}

func parseLocation(s string) (Location, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Location{}, fmt.Errorf("location %q: %w", s, err)
	}
	if u.Scheme == "" {
		return Location{}, fmt.Errorf("location %q: no scheme", s)
	}
	path := u.Path
	if u.Opaque != "" {
		// pkcs11:token=...;object=... has no path, only this.
		path = u.Opaque
	}
	return Location{Scheme: u.Scheme, Host: u.Host, Path: path, Query: u.RawQuery, Entry: u.Fragment}, nil
}

// MarshalText renders the location as its URI.
func (l Location) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads a URI.
func (l *Location) UnmarshalText(b []byte) error {
	p, err := ParseLocation(string(b))
	if err != nil {
		return err
	}
	*l = p
	return nil
}
