//go:build linux

package certstore

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/emsign/bot/connectors/files"
	"github.com/emsign/bot/protocol"
)

// locationSystem is the one store location on Linux: the machine's trust
// stores, shared by every user.
const locationSystem = "System"

// maxFileSize bounds one store file. The largest real bundles are well
// under a megabyte; the bound only keeps a stray huge file in a
// certificate directory from being read whole.
const maxFileSize = 64 << 20

// javaPasswords open Java's cacerts: changeit, which every JDK and
// distribution ships it with, then (tried by files) the empty password of
// JDK 18+'s PKCS#12 trust stores. The password only guards the keystore's
// integrity: trusted certificates in a JKS are not encrypted.
var javaPasswords = []protocol.Secret{protocol.NewSecret("changeit")}

// linuxStore is one trust store, made of the files a distribution or Java
// keeps it in. Paths are absolute, before a Config.Roots prefix.
type linuxStore struct {
	name string
	// bundles are PEM files of many certificates (or single PEM/DER ones).
	bundles []string
	// dirs are directories of certificate files, read with their
	// subdirectories.
	dirs []string
	// fallbackDirs are read, without subdirectories, only when none of
	// fallbackUnless exists. /etc/ssl/certs holds, one file per
	// certificate, what the distribution's bundle holds (on Debian, RHEL
	// and SUSE alike), so it only adds something where no bundle was built.
	fallbackDirs   []string
	fallbackUnless []string
	// keystores are Java keystores (JKS or PKCS#12), as glob patterns.
	keystores []string
	// apart says the store's files are its own even when another store
	// also reads them: update-ca-certificates links the administrator's
	// certificates into /etc/ssl/certs, and local must still show them.
	apart bool
}

// linuxStores lists the stores in the order they are read. A file that
// several stores name (distributions link their bundles to each other) is
// reported by the first store that reads it, so the order matters: the
// distribution-specific stores come before the generic ones.
func linuxStores(javaHome string) []linuxStore {
	pki := []string{
		"/etc/pki/tls/certs/ca-bundle.crt",                  // Fedora, RHEL, CentOS
		"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // RHEL 7+, where the above links to
		"/etc/pki/tls/cert.pem",                             // OpenSSL's default CA file on RHEL
		"/etc/pki/tls/cacert.pem",                           // OpenELEC
	}
	debian := []string{"/etc/ssl/certs/ca-certificates.crt"} // Debian, Ubuntu, Alpine, Gentoo
	arch := []string{"/etc/ca-certificates/extracted/tls-ca-bundle.pem"}
	suse := []string{"/var/lib/ca-certificates/ca-bundle.pem", "/etc/ssl/ca-bundle.pem"}
	java := []string{
		"/etc/ssl/certs/java/cacerts",              // Debian, Ubuntu (ca-certificates-java)
		"/etc/pki/ca-trust/extracted/java/cacerts", // RHEL, Fedora
		"/etc/pki/java/cacerts",
		"/var/lib/ca-certificates/java-cacerts", // SUSE
		"/usr/lib/jvm/*/lib/security/cacerts",
		"/usr/lib/jvm/*/jre/lib/security/cacerts", // Java 8 layout
		"/usr/java/*/lib/security/cacerts",        // Oracle's RPMs
		"/usr/java/*/jre/lib/security/cacerts",
	}
	if javaHome != "" && filepath.IsAbs(javaHome) {
		java = append(java,
			filepath.Join(escapeGlob(javaHome), "lib/security/cacerts"),
			filepath.Join(escapeGlob(javaHome), "jre/lib/security/cacerts"))
	}
	return []linuxStore{
		{name: "pki", bundles: pki},
		{
			name:           "ca-certificates",
			bundles:        debian,
			fallbackDirs:   []string{"/etc/ssl/certs"},
			fallbackUnless: slices.Concat(pki, debian, arch, suse),
		},
		{name: "ca-trust", bundles: arch}, // Arch (p11-kit's update-ca-trust)
		{name: "ca-bundle", bundles: suse},
		{name: "openssl", bundles: []string{"/etc/ssl/cert.pem", "/usr/lib/ssl/cert.pem", "/usr/local/ssl/cert.pem"}},
		{
			// Certificates an administrator added, before the tools merge
			// them into the bundles above: the same roots show up there
			// too, but only here is it plain that someone put them in.
			name:  "local",
			apart: true,
			dirs: []string{
				"/usr/local/share/ca-certificates",          // Debian, Ubuntu
				"/etc/pki/ca-trust/source/anchors",          // RHEL, Fedora
				"/etc/ca-certificates/trust-source/anchors", // Arch
				"/etc/pki/trust/anchors",                    // SUSE
			},
		},
		{name: "java-cacerts", keystores: java, apart: true},
	}
}

func storeNames(stores []linuxStore) []string {
	names := make([]string, len(stores))
	for i, st := range stores {
		names[i] = st.name
	}
	return names
}

func (s *Source) discover(sc *scan, t protocol.Target) error {
	stores := linuxStores(os.Getenv("JAVA_HOME"))
	if t.Host != "" && !strings.EqualFold(t.Host, locationSystem) {
		return unknownStoreError("location", t.Host, []string{locationSystem})
	}
	if t.Path != "" {
		i := slices.IndexFunc(stores, func(st linuxStore) bool { return strings.EqualFold(st.name, t.Path) })
		if i < 0 {
			return unknownStoreError("name", t.Path, storeNames(stores))
		}
		stores = stores[i : i+1]
	}
	r := &linuxReader{scan: sc, read: map[claimKey]string{}}
	for _, st := range stores {
		if err := r.readStore(s.roots, st); err != nil {
			return err
		}
	}
	return nil
}

// linuxReader reads the stores of one Discover.
type linuxReader struct {
	*scan
	// read maps the real path of each file read to the store that read
	// it, so that a file several stores name is reported once.
	read map[claimKey]string
}

// claimKey is a file read by a group of stores: by the system bundle
// stores together, or by one store kept apart.
type claimKey struct{ group, real string }

func (r *linuxReader) readStore(roots []string, st linuxStore) error {
	ss := &linuxStoreScan{storeScan: r.store(locationSystem, st.name)}
	if st.apart {
		ss.group = st.name
	}
	for _, root := range roots {
		for _, p := range st.bundles {
			if err := r.readFile(ss, filepath.Join(root, p), true); err != nil {
				return err
			}
		}
		for _, p := range st.dirs {
			if err := r.readDir(ss, filepath.Join(root, p), true, map[string]bool{}); err != nil {
				return err
			}
		}
		if len(st.fallbackDirs) > 0 && !anyExists(root, st.fallbackUnless) {
			for _, p := range st.fallbackDirs {
				if err := r.readDir(ss, filepath.Join(root, p), false, map[string]bool{}); err != nil {
					return err
				}
			}
		}
		if err := r.readKeystores(ss, root, st.keystores); err != nil {
			return err
		}
	}
	return nil
}

func anyExists(root string, paths []string) bool {
	for _, p := range paths {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			return true
		}
	}
	return false
}

// resolve follows p's symbolic links. A path that is not there is no
// store (exists is false, err nil); one that is there but does not resolve,
// such as a dangling link, is a problem to report.
func resolve(p string) (real string, fi fs.FileInfo, exists bool, err error) {
	if _, err := os.Lstat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil, false, nil
		}
		return "", nil, true, err
	}
	real, err = filepath.EvalSymlinks(p)
	if err != nil {
		return "", nil, true, fmt.Errorf("%s: %w", p, err)
	}
	fi, err = os.Stat(real)
	if err != nil {
		return "", nil, true, err
	}
	return real, fi, true, nil
}

// claim records that the store reads the file at real; false if an earlier
// store (or this one, through another link) already did.
func (r *linuxReader) claim(ss *linuxStoreScan, p, real string) bool {
	k := claimKey{group: ss.group, real: real}
	if by, ok := r.read[k]; ok {
		r.log.Debug("file already read", "path", p, "real_path", real, "store", by)
		return false
	}
	r.read[k] = ss.name
	return true
}

// linuxStoreScan is a store being read, with the group its files are
// claimed in ("" for the system bundle stores).
type linuxStoreScan struct {
	*storeScan
	group string
}

// readFile reads a certificate file. bundle says the store names this file
// itself, so a file without certificates is a problem; in a directory such
// a file is skipped unless its name says it should hold one.
func (r *linuxReader) readFile(ss *linuxStoreScan, p string, bundle bool) error {
	data, ok, err := r.load(ss, p, "a certificate file")
	if !ok {
		return err
	}
	entries, err := files.Parse(data, nil)
	// Nothing readable: the bare sentinel, or no entry at all. (files.Parse
	// wraps ErrNotCertificate with what was wrong when the file had
	// certificate blocks none of which was whole: a problem whatever the
	// file's name, reported below.)
	if err == files.ErrNotCertificate || (err == nil && len(entries) == 0) { //nolint:errorlint // the bare sentinel only.
		if len(bytes.TrimSpace(data)) == 0 || !(bundle || hasCertExt(p)) {
			r.log.Debug("no certificate in file", "path", p)
			return nil
		}
		err = errors.New("holds no certificate")
	}
	if err != nil {
		return ss.problem(fmt.Errorf("%s: %w", p, err))
	}
	return r.report(ss, p, entries)
}

func hasCertExt(p string) bool {
	switch strings.ToLower(filepath.Ext(p)) {
	case ".pem", ".crt", ".cer", ".der":
		return true
	}
	return false
}

// readDir reads every certificate file in dir, and in its subdirectories
// when recurse is set. visited holds the real paths of the directories on
// the way down, so a link back up does not loop.
func (r *linuxReader) readDir(ss *linuxStoreScan, dir string, recurse bool, visited map[string]bool) error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	real, fi, exists, err := resolve(dir)
	if !exists {
		return nil
	}
	if err != nil {
		return ss.problem(err)
	}
	if !fi.IsDir() {
		return ss.problem(fmt.Errorf("%s is not a directory", dir))
	}
	if visited[real] {
		return nil
	}
	visited[real] = true
	entries, err := os.ReadDir(real)
	if err != nil {
		return ss.problem(fmt.Errorf("%s: %w", dir, err))
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		_, fi, exists, err := resolve(p)
		switch {
		case !exists:
			// Removed since the directory was listed.
		case err != nil:
			if err := ss.problem(err); err != nil {
				return err
			}
		case fi.IsDir():
			if !recurse {
				continue
			}
			if err := r.readDir(ss, p, recurse, visited); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := r.readFile(ss, p, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// load reads the file at p for the store. ok is false when there is nothing
// to parse: the file is absent, already read, or a problem, which load has
// reported; err is then an error that ends the discovery, if any. what
// names the kind of file expected, for the problem of a directory.
func (r *linuxReader) load(ss *linuxStoreScan, p, what string) (data []byte, ok bool, err error) {
	if err := r.ctx.Err(); err != nil {
		return nil, false, err
	}
	real, fi, exists, err := resolve(p)
	if !exists {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, ss.problem(err)
	}
	if fi.IsDir() {
		return nil, false, ss.problem(fmt.Errorf("%s is a directory, not %s", p, what))
	}
	if !r.claim(ss, p, real) {
		return nil, false, nil
	}
	data, err = readLimited(real)
	if err != nil {
		return nil, false, ss.problem(fmt.Errorf("%s: %w", p, err))
	}
	return data, true, nil
}

func readLimited(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("larger than %d MiB, not read", maxFileSize>>20)
	}
	return data, nil
}

// report emits what files.Parse found in the file at p: each certificate,
// and each problem, naming the file.
func (r *linuxReader) report(ss *linuxStoreScan, p string, entries []files.Entry) error {
	for _, e := range entries {
		if len(e.Chain) == 0 || len(e.Chain[0]) == 0 {
			if e.Err != "" {
				if err := ss.problem(fmt.Errorf("%s: %s", p, e.Err)); err != nil {
					return err
				}
			}
			continue
		}
		var msgs []string
		if e.Err != "" {
			msgs = append(msgs, e.Err)
		}
		// files reports certificates Go does not parse; say why here.
		if _, err := x509.ParseCertificate(e.Chain[0]); err != nil {
			msgs = append(msgs, err.Error())
		}
		var msg string
		if len(msgs) > 0 {
			msg = fmt.Sprintf("%s#%s: %s", p, e.Name, strings.Join(msgs, "; "))
		}
		// A store tells of a private key by its public half: files leaves
		// the size unknown when no password opened the key.
		var key *protocol.KeyInfo
		if e.Key != nil {
			key = publicKeyInfo(e.Chain[0])
		}
		if err := ss.cert(e.Chain, key, msg); err != nil {
			return err
		}
	}
	return nil
}

// readKeystores reads Java's cacerts files. patterns are globs with any
// literal part already escaped.
func (r *linuxReader) readKeystores(ss *linuxStoreScan, root string, patterns []string) error {
	for _, pat := range patterns {
		// Glob skips what does not exist, and keeps a dangling link for
		// readKeystore to report.
		paths, err := filepath.Glob(filepath.Join(escapeGlob(root), pat))
		if err != nil {
			return fmt.Errorf("pattern %s: %w", pat, err)
		}
		for _, p := range paths {
			if err := r.readKeystore(ss, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// readKeystore reads a Java keystore: JKS, JCEKS or PKCS#12, opened with
// no password or changeit.
func (r *linuxReader) readKeystore(ss *linuxStoreScan, p string) error {
	data, ok, err := r.load(ss, p, "a keystore")
	if !ok {
		return err
	}
	entries, err := files.ParseKeystore(data, javaPasswords)
	if errors.Is(err, files.ErrNotCertificate) {
		err = files.ErrNotKeystore
	}
	if err != nil {
		return ss.problem(fmt.Errorf("%s: %w", p, err))
	}
	return r.report(ss, p, entries)
}

// escapeGlob quotes the glob metacharacters in a literal path, so that a
// root or JAVA_HOME with brackets in its name is not read as a pattern.
func escapeGlob(p string) string {
	var b strings.Builder
	for _, c := range p {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}
