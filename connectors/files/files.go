// Package files is the discovery connector for certificates kept in files
// (B4.6) and in Java keystores (B4.7). It walks a folder, or reads one file,
// and recognises what each file holds by its content, never by its name:
// PEM (certificates, PKCS#7 and private keys), DER certificates, PKCS#7
// certificate bundles, PKCS#12, JKS and JCEKS.
//
// A file: target reports every format; a jks: target only keystores (JKS,
// JCEKS, PKCS#12). The parsers are pure functions of bytes (Parse,
// ParseKeystore) so that they can be fuzzed; the walker around them only
// decides which files are worth reading.
package files

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/emsign/bot/connectors"
	"github.com/emsign/bot/protocol"
)

// DefaultMaxSize is the largest file read when neither Config.MaxSize nor the
// target's max_size says otherwise. Certificate files are a few kilobytes;
// a big cacerts is about 200 KiB. The cap keeps a walk of / from reading
// disk images and databases.
const DefaultMaxSize int64 = 10 << 20

// Config sets up a Source.
type Config struct {
	// Passwords are tried on every keystore and encrypted key after the
	// target's own (the CLI's --password).
	Passwords []protocol.Secret
	// MaxSize is the largest file read; 0 means DefaultMaxSize. A target's
	// max_size parameter overrides it.
	MaxSize int64
	// Logger receives debug notes on skipped files; nil discards them.
	// Passwords never reach it.
	Logger *slog.Logger
	// Now stamps findings; nil means time.Now.
	Now func() time.Time
}

// Source discovers certificates in files. It is safe for concurrent use:
// each Discover call keeps its own state.
type Source struct {
	passwords []protocol.Secret
	maxSize   int64
	log       *slog.Logger
	now       func() time.Time
}

var _ connectors.Source = (*Source)(nil)

// New makes a Source.
func New(cfg Config) (*Source, error) {
	if cfg.MaxSize < 0 {
		return nil, fmt.Errorf("files: max size %d is negative", cfg.MaxSize)
	}
	s := &Source{
		passwords: cfg.Passwords,
		maxSize:   cfg.MaxSize,
		log:       cfg.Logger,
		now:       cfg.Now,
	}
	if s.maxSize == 0 {
		s.maxSize = DefaultMaxSize
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Discover walks a file: or jks: target. Problems with one file or folder
// are findings with Error set; only a root that cannot be read, a bad
// parameter, a cancelled ctx or a failing emit end the walk with an error.
func (s *Source) Discover(ctx context.Context, t protocol.Target, emit connectors.Emit) error {
	if t.Scheme != protocol.SchemeFile && t.Scheme != protocol.SchemeJKS {
		return fmt.Errorf("files: cannot scan %s targets, only %s and %s", t.Scheme, protocol.SchemeFile, protocol.SchemeJKS)
	}
	maxSize := s.maxSize
	if v := t.Param(protocol.ParamMaxSize); v != "" {
		n, err := protocol.ParseSize(v)
		if err != nil {
			return fmt.Errorf("files: %s: %w", protocol.ParamMaxSize, err)
		}
		if n > 0 {
			maxSize = n
		}
	}
	w := &walker{
		ctx:           ctx,
		scheme:        t.Scheme,
		keystoresOnly: t.Scheme == protocol.SchemeJKS,
		passwords:     joinPasswords(t.Passwords(), s.passwords),
		maxSize:       maxSize,
		emit:          emit,
		log:           s.log,
		now:           s.now,
	}
	return w.walkRoot(t.FilePath())
}

// ScanFile reads one file and emits what it holds, with locations of the
// given scheme; the certstore connector uses it for trust-store bundles and
// Java's cacerts. Every format is recognised, and a file that holds no
// certificate is reported, since the caller named it.
func (s *Source) ScanFile(ctx context.Context, scheme, osPath string, passwords []protocol.Secret, emit connectors.Emit) error {
	w := &walker{
		ctx:       ctx,
		scheme:    scheme,
		passwords: joinPasswords(passwords, s.passwords),
		maxSize:   s.maxSize,
		emit:      emit,
		log:       s.log,
		now:       s.now,
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fi, err := os.Stat(osPath)
	if err != nil {
		return w.problem(osPath, "", err.Error())
	}
	return w.file(osPath, fi, true)
}

// joinPasswords lists the passwords to try, in order, without repeats. The
// empty password is always tried last (by the parsers), so it is left out.
func joinPasswords(lists ...[]protocol.Secret) []protocol.Secret {
	var out []protocol.Secret
	seen := map[string]bool{}
	for _, l := range lists {
		for _, p := range l {
			if p.IsZero() || seen[p.Reveal()] {
				continue
			}
			seen[p.Reveal()] = true
			out = append(out, p)
		}
	}
	return out
}

// finding turns an entry of a file into a finding.
func (w *walker) finding(osPath string, e Entry) protocol.Finding {
	f := protocol.Finding{
		Location: protocol.FileLocation(w.scheme, osPath, e.Name),
		Source:   w.scheme,
		Format:   e.Format,
		Chain:    e.Chain,
		Key:      e.Key,
		SeenAt:   w.now(),
	}
	if e.Err != "" {
		f.Error = filepath.Base(osPath) + ": " + e.Err
	}
	return f
}

// problem emits a per-location error for a file or folder. msg names the
// place itself when it comes from the os package (whose errors carry the
// path); otherwise the base name is put in front.
func (w *walker) problem(osPath, entry, msg string) error {
	return w.emit(protocol.Finding{
		Location: protocol.FileLocation(w.scheme, osPath, entry),
		Source:   w.scheme,
		Error:    msg,
		SeenAt:   w.now(),
	})
}
