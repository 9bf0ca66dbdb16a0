// Package pkcs11 finds the certificates and keys an HSM or smart card holds,
// through its PKCS#11 module (B4.2). A target is an RFC 7512 URI:
//
//	pkcs11:token=prod?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/emsign/hsm.pin
//
// Talking to a PKCS#11 module needs cgo; a build without cgo has a stub
// whose New and Discover say so (see README.md).
package pkcs11

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emsign/bot/protocol"
)

// FormatPKCS11 is the Finding.Format of everything this connector finds.
const FormatPKCS11 = protocol.FormatPKCS11

// errNoCgo is what the stub build answers.
var errNoCgo = errors.New("pkcs11: this build has no PKCS#11 support: build the bot with cgo " +
	"(CGO_ENABLED=1; for Windows use gcc-mingw-w64-x86-64: CC=x86_64-w64-mingw32-gcc)")

// Config tunes a Source.
type Config struct {
	Logger *slog.Logger
	Now    func() time.Time
	// KeyDetails, when set, is called with the full description of every
	// key object that is emitted as a finding (objects=keys), just before
	// the finding: the flags protocol.KeyInfo has no room for yet.
	KeyDetails func(KeyObject)
}

// KeyObject describes a key object of a token without revealing it.
type KeyObject struct {
	Location protocol.Location
	// Class is the RFC 7512 object type: private, public or secret-key.
	Class     string
	Label     string
	ID        []byte
	Algorithm string
	Bits      int
	// The flags are nil when the token does not say.
	Extractable      *bool
	Sensitive        *bool
	AlwaysSensitive  *bool
	NeverExtractable *bool
	// Local is true for keys generated on the token.
	Local *bool
	// Usage lists what the key may do: sign, verify, encrypt, decrypt,
	// wrap, unwrap, derive.
	Usage []string
}

// Source is the PKCS#11 discovery connector.
type Source struct {
	cfg Config
	log *slog.Logger
}

func fillConfig(cfg Config) Config {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg
}

// settings is a target merged with its config file: what to load, which
// tokens to scan, which objects to report, and the PIN.
type settings struct {
	modulePath string
	moduleName string
	// attrs are the RFC 7512 path attributes (token, serial, slot-id, ...,
	// object, type, id).
	attrs  map[string]string
	certs  bool
	keys   bool
	pin    protocol.Secret
	hasPIN bool
}

// configKeys are the keys a config file (config=FILE) may hold.
var configKeys = []string{"module-path", "module-name", "token", "manufacturer", "serial", "model", "slot-id",
	"objects", "pin-source", "pin-value"}

// resolve merges the target with its config file; the target wins.
func resolve(t protocol.Target) (settings, error) {
	s := settings{attrs: map[string]string{}}
	if file := t.Param(protocol.ParamConfig); file != "" {
		c, err := readConfig(file)
		if err != nil {
			return settings{}, err
		}
		s = c
	}
	attrs, err := t.PathAttrs()
	if err != nil {
		return settings{}, fmt.Errorf("pkcs11: target: %w", err)
	}
	for k, v := range attrs {
		s.attrs[k] = v
	}
	if v := t.Param(protocol.ParamModulePath); v != "" {
		s.modulePath, s.moduleName = v, ""
	} else if v := t.Param(protocol.ParamModuleName); v != "" {
		s.moduleName, s.modulePath = v, ""
	}
	if objs := t.Params[protocol.ParamObjects]; len(objs) > 0 {
		if s.certs, s.keys, err = parseObjects(strings.Join(objs, ",")); err != nil {
			return settings{}, fmt.Errorf("pkcs11: target: %w", err)
		}
	} else if !s.certs && !s.keys {
		s.certs = true
	}
	if pin, ok := t.PIN(); ok {
		s.pin, s.hasPIN = pin, true
	}
	if s.modulePath == "" && s.moduleName == "" {
		return settings{}, errors.New("pkcs11: no module: give module-path=PATH (e.g. /usr/lib/softhsm/libsofthsm2.so) in the target or its config file")
	}
	if id, ok := s.attrs["slot-id"]; ok {
		if _, err := strconv.ParseUint(id, 10, 64); err != nil {
			return settings{}, fmt.Errorf("pkcs11: slot-id %q is not a number", id)
		}
	}
	if ty, ok := s.attrs["type"]; ok {
		switch ty {
		case "cert":
			s.certs, s.keys = true, false
		case "private", "public", "secret-key":
			s.certs, s.keys = false, true
		default:
			return settings{}, fmt.Errorf("pkcs11: type %q: want cert, private, public or secret-key", ty)
		}
	}
	return s, nil
}

func parseObjects(v string) (certs, keys bool, err error) {
	for part := range strings.SplitSeq(v, ",") {
		switch strings.TrimSpace(part) {
		case "certs":
			certs = true
		case "keys":
			keys = true
		default:
			return false, false, fmt.Errorf("objects %q: want certs, keys or certs,keys", v)
		}
	}
	return certs, keys, nil
}

// readConfig reads an HSM configuration file: KEY=VALUE lines (configKeys),
// '#' comments. Errors name the line and key, never a value: the file may
// hold a PIN.
func readConfig(path string) (settings, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return settings{}, fmt.Errorf("pkcs11: config file: %w", err)
	}
	s := settings{attrs: map[string]string{}}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return settings{}, fmt.Errorf("pkcs11: config file %s line %d: want KEY=VALUE", path, n)
		}
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
			v = v[1 : len(v)-1]
		}
		if !slices.Contains(configKeys, k) {
			return settings{}, fmt.Errorf("pkcs11: config file %s line %d: unknown key %q (allowed: %s)", path, n, k, strings.Join(configKeys, ", "))
		}
		if seen[k] {
			return settings{}, fmt.Errorf("pkcs11: config file %s line %d: %s given twice", path, n, k)
		}
		seen[k] = true
		switch k {
		case "module-path":
			s.modulePath = v
		case "module-name":
			s.moduleName = v
		case "objects":
			if s.certs, s.keys, err = parseObjects(v); err != nil {
				return settings{}, fmt.Errorf("pkcs11: config file %s line %d: %w", path, n, err)
			}
		case "pin-value":
			s.pin, s.hasPIN = protocol.NewSecret(v), true
		case "pin-source":
			// RFC 7512 writes file:/path; a bare absolute path is taken as
			// a file too, never as the PIN itself.
			if filepath.IsAbs(v) {
				v = "file:" + v
			}
			if !strings.HasPrefix(v, "file:") && !strings.HasPrefix(v, "env:") {
				return settings{}, fmt.Errorf("pkcs11: config file %s line %d: pin-source: want file:/PATH or env:NAME", path, n)
			}
			pin, err := protocol.ResolveSecret(v)
			if err != nil {
				return settings{}, fmt.Errorf("pkcs11: config file %s line %d: pin-source: %w", path, n, err)
			}
			s.pin, s.hasPIN = pin, true
		default:
			s.attrs[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return settings{}, fmt.Errorf("pkcs11: config file %s: %w", path, err)
	}
	if seen["pin-source"] && seen["pin-value"] {
		return settings{}, fmt.Errorf("pkcs11: config file %s: give pin-value or pin-source, not both", path)
	}
	if seen["module-path"] && seen["module-name"] {
		return settings{}, fmt.Errorf("pkcs11: config file %s: give module-path or module-name, not both", path)
	}
	return s, nil
}

// modulePath finds the library to load. A module-name is looked for as
// lib<name>.so (<name>.dll on Windows) in the usual module folders.
func (s settings) module() (string, error) {
	if s.modulePath != "" {
		if _, err := os.Stat(s.modulePath); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return "", fmt.Errorf("pkcs11: module %s does not exist: module-path must name the HSM's PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so", s.modulePath)
			}
			return "", fmt.Errorf("pkcs11: module: %w", err)
		}
		if p, err := filepath.EvalSymlinks(s.modulePath); err == nil {
			return p, nil
		}
		return s.modulePath, nil
	}
	name := s.moduleName
	files := []string{"lib" + name + ".so", name + ".so", name}
	dirs := []string{"/usr/lib/x86_64-linux-gnu/pkcs11", "/usr/lib/aarch64-linux-gnu/pkcs11", "/usr/lib64/pkcs11",
		"/usr/lib/pkcs11", "/usr/lib/softhsm", "/usr/lib/x86_64-linux-gnu/softhsm", "/usr/lib64/softhsm",
		"/usr/local/lib/softhsm", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"}
	if runtime.GOOS == "windows" {
		files = []string{name + ".dll", name}
		dirs = []string{os.Getenv("SystemRoot") + `\System32`}
	}
	if strings.ContainsAny(name, `/\`) {
		return "", fmt.Errorf("pkcs11: module-name %q is a path: give it as module-path", name)
	}
	for _, d := range dirs {
		for _, f := range files {
			p := filepath.Join(d, f)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				if r, err := filepath.EvalSymlinks(p); err == nil {
					return r, nil
				}
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("pkcs11: module-name %q: no lib%s.so in %s: give module-path", name, name, strings.Join(dirs, ", "))
}

// tokenSelectors are the path attributes that choose tokens (the others,
// object, type and id, choose objects).
var tokenSelectors = []string{"token", "manufacturer", "serial", "model", "slot-id", "slot-description",
	"slot-manufacturer", "library-manufacturer", "library-description", "library-version"}

// selection renders the token-choosing attributes of s for messages.
func (s settings) selection() string {
	var parts []string
	for _, k := range tokenSelectors {
		if v, ok := s.attrs[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	if len(parts) == 0 {
		return "any token"
	}
	return strings.Join(parts, ";")
}

// pathEscape percent-encodes an RFC 7512 attribute value: unreserved
// characters and a few safe sub-delimiters stay, everything else (';', '?',
// '/', '=', '&', '%', '#', spaces, non-ASCII) becomes %XX.
func pathEscape(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~:@!$'()*+,", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// idEscape writes an object ID as RFC 7512 wants it: every byte %XX.
func idEscape(id []byte) string {
	var b strings.Builder
	for _, c := range id {
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// tokenLocation names a token: pkcs11:token=LABEL;serial=SERIAL. The
// serial keeps two tokens with one label apart.
func tokenLocation(label, serial string) protocol.Location {
	p := "token=" + pathEscape(label)
	if serial != "" {
		p += ";serial=" + pathEscape(serial)
	}
	return protocol.Location{Scheme: protocol.SchemePKCS11, Path: p}
}

// objectLocation names an object of a token:
// pkcs11:token=LABEL;serial=SERIAL;object=LABEL;type=TYPE;id=%01. extra
// (vendor attributes, x-...) tells apart objects that share all of these.
func objectLocation(token protocol.Location, label, typ string, id []byte, extra string) protocol.Location {
	p := token.Path
	if label != "" {
		p += ";object=" + pathEscape(label)
	}
	p += ";type=" + typ
	if len(id) > 0 {
		p += ";id=" + idEscape(id)
	}
	if extra != "" {
		p += ";" + extra
	}
	return protocol.Location{Scheme: protocol.SchemePKCS11, Path: p}
}
