package deploy

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/emsign/bot/agent/internal/atomicfile"
	"github.com/emsign/bot/agent/keygen"
)

// Modes of files that did not exist before (a new chain file).
const (
	newCertMode fs.FileMode = 0o644
	newKeyMode  fs.FileMode = 0o600
)

// tmpPrefix starts the temporary files written beside the targets; the
// leading dot keeps them out of a server's "*.pem" include globs.
const tmpPrefix = ".emsign-deploy-"

// file is one file of the location: what it held and what it will hold.
type file struct {
	role    string // "cert", "key", "cert+key", "chain"
	path    string // symlinks resolved: the file really written
	content []byte
	hasKey  bool
	exists  bool
	old     []byte
	mode    fs.FileMode
	own     Owner
}

// plan is everything prepare found; nothing is written before it is whole.
type plan struct {
	files        []*file
	newLeaf      *x509.Certificate
	oldLeaf      *x509.Certificate
	newFP, oldFP string
	notes        []string
}

func (p *plan) paths() []string {
	var out []string
	for _, f := range p.files {
		out = append(out, f.path)
	}
	return out
}

func (p *plan) summary() string {
	var parts []string
	for _, f := range p.files {
		state := fmt.Sprintf("mode %04o%s", f.mode.Perm(), f.own)
		if !f.exists {
			state = fmt.Sprintf("new file, mode %04o", f.mode.Perm())
		}
		parts = append(parts, fmt.Sprintf("%s %s (%s)", f.role, f.path, state))
	}
	msg := fmt.Sprintf("will replace certificate %s (%s, expires %s) with %s (%s, expires %s); files: %s",
		ShortFingerprint(p.oldFP), p.oldLeaf.Subject, p.oldLeaf.NotAfter.UTC().Format("2006-01-02"),
		ShortFingerprint(p.newFP), p.newLeaf.Subject, p.newLeaf.NotAfter.UTC().Format("2006-01-02"),
		strings.Join(parts, ", "))
	for _, n := range p.notes {
		msg += "; " + n
	}
	return msg
}

// prepare checks the new material and the old files and builds the plan.
// It writes nothing (a probe temp file is created and removed to prove a
// directory is writable). Errors never hold key material.
func (d *Deployer) prepare(certPEM, chainPEM, keyPEM []byte) (*plan, error) {
	certs, err := ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("new certificate: %w", err)
	}
	if len(certs) == 0 {
		return nil, errors.New("new certificate: no CERTIFICATE block")
	}
	more, err := ParseCertificatesPEM(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("new chain: %w", err)
	}
	p := &plan{newLeaf: certs[0], newFP: Fingerprint(certs[0])}
	chain := append(certs[1:], more...)
	key, err := keygen.ParsePEM(keyPEM)
	if err != nil {
		return p, fmt.Errorf("new key: %w", err)
	}
	if !KeyMatches(p.newLeaf, key) {
		return p, fmt.Errorf("the new certificate %s (%s) does not match the new key: nothing touched", ShortFingerprint(p.newFP), p.newLeaf.Subject)
	}
	keyBlock, err := keyPEMBlock(keyPEM)
	if err != nil {
		return p, err
	}
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.newLeaf.Raw})
	var chainBuf bytes.Buffer
	for _, c := range chain {
		_ = pem.Encode(&chainBuf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}

	cfg := d.cfg
	certPath, err := resolve(cfg.CertPath, "cert_path")
	if err != nil {
		return p, err
	}
	keyPath, err := resolve(cfg.KeyPath, "key_path")
	if err != nil {
		return p, err
	}
	combined := certPath == keyPath
	certContent := append([]byte{}, leafPEM...)
	if cfg.ChainInCert || combined {
		certContent = append(certContent, chainBuf.Bytes()...)
	}
	if combined {
		// HAProxy wants leaf, chain, key; nginx and Apache accept it too.
		p.files = append(p.files, &file{role: "cert+key", path: certPath, content: append(certContent, keyBlock...), hasKey: true})
	} else {
		p.files = append(p.files,
			&file{role: "cert", path: certPath, content: certContent},
			&file{role: "key", path: keyPath, content: keyBlock, hasKey: true})
	}
	switch {
	case cfg.ChainPath != "":
		if len(chain) == 0 {
			return p, fmt.Errorf("chain_path %s is set but the new certificate came with no chain", cfg.ChainPath)
		}
		chainPath, err := resolveMaybe(cfg.ChainPath)
		if err != nil {
			return p, err
		}
		if chainPath == certPath || chainPath == keyPath {
			return p, fmt.Errorf("chain_path %s is the certificate or key file once symlinks are followed", cfg.ChainPath)
		}
		p.files = append(p.files, &file{role: "chain", path: chainPath, content: chainBuf.Bytes()})
	case len(chain) > 0 && !cfg.ChainInCert && !combined:
		p.notes = append(p.notes, fmt.Sprintf("the chain (%d certificates) is not deployed: neither chain_path nor chain_in_cert is set", len(chain)))
	}

	for _, f := range p.files {
		if err := inspect(f); err != nil {
			return p, err
		}
		if err := ProbeWritable(filepath.Dir(f.path)); err != nil {
			return p, err
		}
		switch f.role {
		case "cert", "cert+key":
			old, err := ParseCertificatesPEM(f.old)
			if err != nil || len(old) == 0 {
				return p, fmt.Errorf("%s %s holds no readable certificate (check the path): %v", f.role, f.path, err)
			}
			p.oldLeaf, p.oldFP = old[0], Fingerprint(old[0])
		}
		if f.hasKey && !hasPrivateKey(f.old) {
			return p, fmt.Errorf("%s %s holds no private key (check key_path)", f.role, f.path)
		}
	}
	return p, nil
}

// inspect reads a target's old content, mode and owner. Certificate and
// key files must exist (a rotation replaces what is there); a chain file
// may be new.
func inspect(f *file) error {
	fi, err := os.Stat(f.path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && f.role == "chain":
		f.mode = newCertMode
		return nil
	case err != nil:
		return fmt.Errorf("%s file: %w", f.role, err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s %s is not a regular file", f.role, f.path)
	}
	old, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("%s file: %w", f.role, err)
	}
	f.exists, f.old, f.mode, f.own = true, old, fi.Mode().Perm(), OwnerOf(fi)
	return nil
}

// resolve follows symlinks (certbot's live/ → archive/), so the rename
// replaces the file the server reads and not the link.
func resolve(path, field string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	return real, nil
}

// resolveMaybe resolves a path that may not exist yet.
func resolveMaybe(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		dir, err := filepath.EvalSymlinks(filepath.Dir(path))
		if err != nil {
			return "", fmt.Errorf("chain_path: %w", err)
		}
		return filepath.Join(dir, filepath.Base(path)), nil
	}
	if err != nil {
		return "", fmt.Errorf("chain_path: %w", err)
	}
	return real, nil
}

// keyPEMBlock re-encodes the private key block of keyPEM alone, so stray
// text around it never lands in the server's file.
func keyPEMBlock(keyPEM []byte) ([]byte, error) {
	for rest := keyPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("new key: no private key block")
		}
		if strings.HasSuffix(b.Type, "PRIVATE KEY") {
			return pem.EncodeToMemory(b), nil
		}
	}
}

func hasPrivateKey(data []byte) bool {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return false
		}
		if strings.HasSuffix(b.Type, "PRIVATE KEY") {
			return true
		}
	}
}

// stage writes data to a temporary file beside path with the given mode
// and owner, synced, and returns its name; rename makes it path.
func stage(path string, data []byte, mode fs.FileMode, own Owner) (tmp string, err error) {
	f, err := os.CreateTemp(filepath.Dir(path), tmpPrefix+filepath.Base(path)+"-*")
	if err != nil {
		return "", err
	}
	tmp = f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	// Mode and owner before the content: a key is never readable by
	// anyone it should not be, even for a moment.
	if err = f.Chmod(mode); err != nil {
		return "", fmt.Errorf("chmod %04o: %w", mode, err)
	}
	if err = applyOwner(f, own); err != nil {
		return "", fmt.Errorf("chown to%s: %w", own, err)
	}
	if _, err = f.Write(data); err != nil {
		return "", err
	}
	if err = f.Sync(); err != nil {
		return "", fmt.Errorf("sync: %w", err)
	}
	if err = f.Close(); err != nil {
		return "", err
	}
	return tmp, nil
}

// replace stages every (path, data) and then renames them all, so a
// failure while staging changes nothing. changed says whether any target
// was replaced before an error.
func replace(items []*file, data func(*file) []byte) (changed bool, err error) {
	tmps := make([]string, len(items))
	cleanup := func(from int) {
		for _, t := range tmps[from:] {
			if t != "" {
				_ = os.Remove(t)
			}
		}
	}
	for i, f := range items {
		tmps[i], err = stage(f.path, data(f), f.mode, f.own)
		if err != nil {
			cleanup(0)
			return false, fmt.Errorf("%s %s: %w", f.role, f.path, err)
		}
	}
	for i, f := range items {
		if err := os.Rename(tmps[i], f.path); err != nil {
			cleanup(i)
			return i > 0, fmt.Errorf("%s %s: %w", f.role, f.path, err)
		}
	}
	for _, dir := range dirsOf(items) {
		if err := atomicfile.SyncDir(dir); err != nil {
			return true, err
		}
	}
	return true, nil
}

func dirsOf(items []*file) []string {
	var dirs []string
	for _, f := range items {
		if d := filepath.Dir(f.path); !contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// write replaces the targets with the new content. A file with a key
// that did not exist gets 0600; one that did keeps its mode, so a key is
// never wider than 0600 unless the old one was.
func (d *Deployer) write(p *plan) (changed bool, err error) {
	for _, f := range p.files {
		if !f.exists && f.hasKey {
			f.mode = newKeyMode
		}
	}
	return replace(p.files, func(f *file) []byte { return f.content })
}

// restore puts the old files back the same atomic way and removes the
// files that did not exist before.
func (d *Deployer) restore(p *plan) error {
	var existed []*file
	var errs []error
	for _, f := range p.files {
		if f.exists {
			existed = append(existed, f)
			continue
		}
		if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove new %s %s: %w", f.role, f.path, err))
		}
	}
	if _, err := replace(existed, func(f *file) []byte { return f.old }); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// manifestEntry tells a human (or a later tool) where a backup goes.
type manifestEntry struct {
	Role     string `json:"role"`
	Original string `json:"original"`
	Backup   string `json:"backup,omitempty"` // "" when the file did not exist: delete it to restore
	Mode     string `json:"mode,omitempty"`
	Owner    string `json:"owner,omitempty"`
}

// backup copies the old files, with their mode and owner, to a new
// timestamped directory under BackupDir (0700: it holds keys), synced.
func (d *Deployer) backup(p *plan) (string, error) {
	dir, err := NewBackupDir(d.cfg.BackupDir, "", d.cfg.Now())
	if err != nil {
		return "", err
	}
	var manifest []manifestEntry
	for i, f := range p.files {
		e := manifestEntry{Role: f.role, Original: f.path}
		if f.exists {
			e.Backup = fmt.Sprintf("%d-%s", i+1, filepath.Base(f.path))
			e.Mode = fmt.Sprintf("%04o", f.mode.Perm())
			e.Owner = strings.TrimSpace(f.own.String())
			if _, err := ReplaceFile(filepath.Join(dir, e.Backup), f.old, f.mode, f.own); err != nil {
				return dir, fmt.Errorf("copy %s: %w", f.path, err)
			}
		}
		manifest = append(manifest, e)
	}
	m, _ := json.MarshalIndent(manifest, "", "  ")
	if err := atomicfile.Write(dir, "manifest.json", append(m, '\n'), 0o600); err != nil {
		return dir, err
	}
	return dir, nil
}
