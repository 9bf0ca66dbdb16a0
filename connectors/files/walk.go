package files

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/emsign/bot/connectors"
	"github.com/emsign/bot/protocol"
)

// ErrNotKeystore says that a file under a jks target is no keystore.
var ErrNotKeystore = errors.New("no keystore found: not JKS, JCEKS or PKCS#12")

// walker is the state of one Discover or ScanFile call.
type walker struct {
	ctx           context.Context
	scheme        string
	keystoresOnly bool
	passwords     []protocol.Secret
	maxSize       int64
	emit          connectors.Emit
	log           *slog.Logger
	now           func() time.Time

	// rootReal is the walk's root with symlinks resolved: a symlinked
	// folder that points inside it is not followed, since its real path is
	// walked anyway (and that path is the stable location).
	rootReal string
	// seen holds the folders walked, so that no loop (a symlink to a parent,
	// a bind mount of a parent) is followed twice.
	seen dirSet
}

// walkRoot scans a target's path: one file, or a folder and all below it.
func (w *walker) walkRoot(root string) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	root = filepath.Clean(root)
	fi, err := os.Stat(root)
	if err != nil {
		return fmt.Errorf("files: %w", err)
	}
	if !fi.IsDir() {
		return w.file(root, fi, true)
	}
	w.rootReal = root
	if r, err := filepath.EvalSymlinks(root); err == nil {
		w.rootReal = r
	}
	if a, err := filepath.Abs(w.rootReal); err == nil {
		w.rootReal = a
	}
	w.seen = dirSet{}
	w.seen.add(root, fi)
	return w.dir(root)
}

// dir scans one folder, in name order.
func (w *walker) dir(path string) error {
	des, err := os.ReadDir(path)
	if err != nil {
		if err := w.problem(path, "", "cannot read folder: "+err.Error()); err != nil {
			return err
		}
		// ReadDir returns what it read before the error: go on with that.
	}
	for _, de := range des {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		if err := w.entry(filepath.Join(path, de.Name()), de); err != nil {
			return err
		}
	}
	return nil
}

// entry scans one item of a folder. Only emit failures and a cancelled ctx
// are returned; everything else is a finding or a silent skip.
func (w *walker) entry(path string, de fs.DirEntry) error {
	t := de.Type()
	switch {
	case t.IsDir():
		if isSystemDir(path) {
			w.skip(path, "kernel file system")
			return nil
		}
		fi, err := de.Info()
		if err != nil {
			return w.vanished(path, err)
		}
		if !w.seen.add(path, fi) {
			w.skip(path, "folder already walked")
			return nil
		}
		return w.dir(path)
	case t&fs.ModeSymlink != 0:
		return w.symlink(path)
	case t.IsRegular():
		fi, err := de.Info()
		if err != nil {
			return w.vanished(path, err)
		}
		return w.file(path, fi, false)
	default:
		// FIFOs, sockets and devices are never opened: a FIFO would block
		// the walk.
		if w.promises(path) {
			return w.problem(path, "", filepath.Base(path)+": not a regular file, not read")
		}
		w.skip(path, "not a regular file")
		return nil
	}
}

// symlink follows a link: to a file, which is read under the link's path,
// or to a folder outside the root, which is walked once.
func (w *walker) symlink(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if w.promises(path) {
			target, _ := os.Readlink(path)
			return w.problem(path, "", fmt.Sprintf("%s: broken symbolic link to %s", filepath.Base(path), target))
		}
		w.skip(path, "broken symbolic link")
		return nil
	}
	if !fi.IsDir() {
		return w.file(path, fi, false)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		w.skip(path, "symbolic link does not resolve")
		return nil
	}
	if a, err := filepath.Abs(real); err == nil {
		real = a
	}
	switch {
	case isInside(real, w.rootReal):
		w.skip(path, "links into the walked folder")
		return nil
	case isSystemDir(real):
		w.skip(path, "links to a kernel file system")
		return nil
	case !w.seen.add(real, fi):
		w.skip(path, "folder already walked")
		return nil
	}
	return w.dir(path)
}

// file reads one file if its first bytes (or its name) say it may hold
// certificates, and emits what it holds. explicit is true for a file the
// caller named: then a file with nothing in it is reported too.
func (w *walker) file(path string, fi os.FileInfo, explicit bool) error {
	promised := explicit || w.promises(path)
	if !fi.Mode().IsRegular() {
		if promised {
			return w.problem(path, "", filepath.Base(path)+": not a regular file, not read")
		}
		w.skip(path, "not a regular file")
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !explicit {
			w.skip(path, "vanished")
			return nil
		}
		return w.problem(path, "", err.Error())
	}
	defer f.Close()
	// One read brings the head, and for most certificate files (a few KiB)
	// the whole file; only the first sniffLen bytes decide whether to go on.
	size := fi.Size()
	first := min(size, int64(headLen))
	if size > w.maxSize {
		first = sniffLen
	}
	head := make([]byte, first)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return w.problem(path, "", err.Error())
	}
	head = head[:n]
	if size > w.maxSize {
		if promised || looksLikeCertificates(head) {
			return w.problem(path, "", fmt.Sprintf("%s: larger than the %s cap (%d bytes), not read", filepath.Base(path), formatSize(w.maxSize), size))
		}
		w.skip(path, "too large")
		return nil
	}
	switch {
	case promised:
	case w.keystoresOnly && !looksLikeKeystore(head):
		w.skip(path, "not a keystore")
		return nil
	case sniff(head) == kindBinary:
		w.skip(path, "binary")
		return nil
	}
	data := head
	if size > int64(len(head)) {
		if data, err = readRest(f, head, size, w.maxSize); err != nil {
			return w.problem(path, "", err.Error())
		}
	}
	if int64(len(data)) > w.maxSize {
		return w.problem(path, "", fmt.Sprintf("%s: larger than the %s cap, not read", filepath.Base(path), formatSize(w.maxSize)))
	}
	parse := Parse
	if w.keystoresOnly {
		parse = ParseKeystore
	}
	entries, err := parse(data, w.passwords)
	if err != nil {
		if promised {
			return w.problem(path, "", filepath.Base(path)+": "+err.Error())
		}
		w.skip(path, "no certificate")
		return nil
	}
	for _, e := range entries {
		if err := w.emit(w.finding(path, e)); err != nil {
			return err
		}
	}
	return nil
}

// readRest reads the rest of a file of the given size after head. A file
// that grew since it was measured is read on, up to max+1 bytes, so that
// the caller sees it is over the cap.
func readRest(f *os.File, head []byte, size, max int64) ([]byte, error) {
	buf := make([]byte, size)
	copy(buf, head)
	n, err := io.ReadFull(f, buf[len(head):])
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return buf[:len(head)+n], nil // shrank
	}
	if err != nil {
		return nil, err
	}
	more, err := io.ReadAll(io.LimitReader(f, max+1-size))
	if err != nil {
		return nil, err
	}
	return append(buf, more...), nil
}

// promises reports whether a file's name says it holds what this walk
// looks for.
func (w *walker) promises(path string) bool {
	if w.keystoresOnly {
		return hasKeystoreExtension(path)
	}
	return hasCertExtension(path)
}

// vanished handles an item that disappeared between listing and reading.
func (w *walker) vanished(path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		w.skip(path, "vanished")
		return nil
	}
	return w.problem(path, "", err.Error())
}

func (w *walker) skip(path, why string) {
	w.log.Debug("files: skipped", "path", path, "why", why)
}

// isSystemDir reports the kernel's pseudo file systems, which hold no
// certificates and files that never end or block.
func isSystemDir(path string) bool {
	if runtime.GOOS == "windows" {
		return false
	}
	switch path {
	case "/proc", "/sys", "/dev":
		return true
	}
	return false
}

// isInside reports whether path is dir or below it.
func isInside(path, dir string) bool {
	if path == dir {
		return true
	}
	if !strings.HasSuffix(dir, string(filepath.Separator)) {
		dir += string(filepath.Separator)
	}
	return strings.HasPrefix(path, dir)
}

// formatSize writes a byte count the way people say it.
func formatSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
