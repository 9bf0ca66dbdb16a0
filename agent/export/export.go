// Package export writes a scan's findings as a signed bundle (the format is
// documented in protocol/bundle.go) for air-gapped networks: the bundle is
// carried on removable media and imported with emsign-cp import or POST
// /api/v1/imports. Findings are spooled to a temporary file while the scan
// runs, so a scan is never held whole in memory.
package export

import (
	"bufio"
	"compress/gzip"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/emsign/bot/agent/state"
	"github.com/emsign/bot/protocol"
)

// Identity is who signs a bundle: an activated bot.
type Identity struct {
	BotID   string
	Account string
	// CertDER is the bot's client certificate.
	CertDER []byte
	Signer  crypto.Signer
}

// FromState is the identity of an activated bot's state.
func FromState(s *state.State) (Identity, error) {
	if len(s.Certificate.Certificate) == 0 {
		return Identity{}, errors.New("export: the state has no client certificate")
	}
	signer, ok := s.Certificate.PrivateKey.(crypto.Signer)
	if !ok {
		return Identity{}, errors.New("export: the bot's key cannot sign")
	}
	return Identity{BotID: s.Settings.BotID, Account: s.Settings.Account, CertDER: s.Certificate.Certificate[0], Signer: signer}, nil
}

// Summary is how the scan ended; it goes into the bundle's header.
type Summary struct {
	Started  time.Time
	Finished time.Time
	Targets  int
	Complete bool
	Stopped  string
}

// Exporter collects findings and writes the bundle on Finish. Write is safe
// for concurrent use.
type Exporter struct {
	path string
	id   Identity

	mu     sync.Mutex
	spool  *os.File
	buf    *bufio.Writer
	enc    *json.Encoder
	count  int
	certs  int
	errors int
	done   bool
}

// New starts an export to path. The spool lives next to path, so that the
// bundle can be renamed into place.
func New(path string, id Identity) (*Exporter, error) {
	if id.BotID == "" || id.Account == "" || len(id.CertDER) == 0 || id.Signer == nil {
		return nil, errors.New("export: bot ID, account, certificate and key are required")
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-export-findings-*")
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	e := &Exporter{path: path, id: id, spool: f, buf: bufio.NewWriter(f)}
	e.enc = json.NewEncoder(e.buf)
	e.enc.SetEscapeHTML(false)
	return e, nil
}

// Write adds a finding.
func (e *Exporter) Write(f protocol.Finding) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		return errors.New("export: already finished")
	}
	if err := e.enc.Encode(f); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	e.count++
	if len(f.Chain) > 0 {
		e.certs++
	}
	if f.Error != "" {
		e.errors++
	}
	return nil
}

// Abort drops the export; nothing is written at path.
func (e *Exporter) Abort() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		return
	}
	e.done = true
	_ = e.spool.Close()
	_ = os.Remove(e.spool.Name())
}

// Finish writes the signed bundle atomically (temporary file, sync,
// rename) and returns its header.
func (e *Exporter) Finish(sum Summary) (protocol.BundleHeader, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		return protocol.BundleHeader{}, errors.New("export: already finished")
	}
	e.done = true
	defer func() {
		_ = e.spool.Close()
		_ = os.Remove(e.spool.Name())
	}()
	hdr := protocol.BundleHeader{
		Version: protocol.BundleVersion, BotID: e.id.BotID, Account: e.id.Account, ScanID: uuid.NewString(),
		Started: sum.Started.UTC(), Finished: sum.Finished.UTC(), Targets: sum.Targets,
		Complete: sum.Complete && sum.Stopped == "", Stopped: sum.Stopped,
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.id.CertDER})),
		Count:       e.count, Certificates: e.certs, Errors: e.errors,
	}
	if err := e.buf.Flush(); err != nil {
		return hdr, fmt.Errorf("export: %w", err)
	}
	if _, err := e.spool.Seek(0, io.SeekStart); err != nil {
		return hdr, fmt.Errorf("export: %w", err)
	}
	if err := writeBundle(e.path, hdr, e.spool, e.id.Signer); err != nil {
		return hdr, err
	}
	return hdr, nil
}

// writeBundle writes magic, payload (gzip of header line and findings) and
// trailer to a temporary file and renames it to path.
func writeBundle(path string, hdr protocol.BundleHeader, findings io.Reader, signer crypto.Signer) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-export-*")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	bw := bufio.NewWriter(f)
	var h hash.Hash = sha256.New()
	signed := io.MultiWriter(bw, h)
	if _, err = io.WriteString(signed, protocol.BundleMagic); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	zw := gzip.NewWriter(signed)
	line, err := json.Marshal(hdr)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if _, err = zw.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if _, err = io.Copy(zw, findings); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err = zw.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	sig, err := signer.Sign(rand.Reader, h.Sum(nil), crypto.SHA256)
	if err != nil {
		return fmt.Errorf("export: sign: %w", err)
	}
	if _, err = bw.Write(protocol.BundleTrailer(sig)); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}
