// Package imports takes in the signed bundles of air-gapped bots (see
// protocol/bundle.go): it verifies the bundle, the bot's certificate and that
// the bot is the account's, then ingests the findings as one scan through
// the store's idempotent ingestion. Importing a bundle twice changes
// nothing.
package imports

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/emsign/bot/controlplane/pki"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// ErrRefused wraps every reason a bundle is refused (as opposed to a store
// failure).
var ErrRefused = errors.New("bundle refused")

func refused(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// BatchSize is the number of findings per ingested batch.
const BatchSize = 500

// maxLine bounds one JSON line of the payload.
const maxLine = 64 << 20

var idPattern = regexp.MustCompile(protocol.IDPattern)

// Bundle is a bundle whose signature and certificate were verified.
type Bundle struct {
	Header      protocol.BundleHeader
	Certificate *x509.Certificate
	payload     []byte
}

// Verify checks a bundle: its form, that its certificate was issued by the
// bot CA (roots) for client authentication, that the signature over it is
// the certificate's key's, and that the findings decode and number what the
// header says. It reads nothing from the store.
func Verify(data []byte, roots *x509.CertPool, now time.Time) (*Bundle, error) {
	if len(data) > protocol.MaxBundleSize {
		return nil, refused("larger than %d bytes", protocol.MaxBundleSize)
	}
	signed, payload, sig, err := protocol.SplitBundle(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, refused("payload: %v", err)
	}
	br := bufio.NewReaderSize(zr, 64<<10)
	line, err := readLine(br)
	if err != nil {
		return nil, refused("header: %v", err)
	}
	var hdr protocol.BundleHeader
	if err := decodeLine(line, &hdr, true); err != nil {
		return nil, refused("header: %v", err)
	}
	if hdr.Version != protocol.BundleVersion {
		return nil, refused("format version %d is not supported (want %d)", hdr.Version, protocol.BundleVersion)
	}
	blk, rest := pem.Decode([]byte(hdr.Certificate))
	if blk == nil || blk.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, refused("header: certificate: want one PEM certificate")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, refused("header: certificate: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, refused("bot certificate not issued by this control plane: %v", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, refused("bot certificate: want an ECDSA key")
	}
	if !ecdsa.VerifyASN1(pub, protocol.BundleDigest(signed), sig) {
		return nil, refused("signature does not verify: the bundle was altered or not signed by bot %s", cert.Subject.CommonName)
	}
	if hdr.BotID != cert.Subject.CommonName {
		return nil, refused("header names bot %q, certificate bot %q", hdr.BotID, cert.Subject.CommonName)
	}
	if !idPattern.MatchString(hdr.ScanID) {
		return nil, refused("scan_id %q: want at most 128 letters, digits, '.', '_' or '-'", hdr.ScanID)
	}
	b := &Bundle{Header: hdr, Certificate: cert, payload: payload}
	// Decode everything once before anything is ingested.
	if err := b.Findings(func(protocol.Finding) error { return nil }); err != nil {
		return nil, err
	}
	return b, nil
}

// Findings calls fn with each finding in order.
func (b *Bundle) Findings(fn func(protocol.Finding) error) error {
	zr, err := gzip.NewReader(bytes.NewReader(b.payload))
	if err != nil {
		return refused("payload: %v", err)
	}
	zr.Multistream(false)
	br := bufio.NewReaderSize(zr, 64<<10)
	if _, err := readLine(br); err != nil {
		return refused("header: %v", err)
	}
	n := 0
	for {
		line, err := readLine(br)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return refused("finding %d: %v", n+1, err)
		}
		// Like the bot API, fields a newer bot adds are ignored.
		var f protocol.Finding
		if err := decodeLine(line, &f, false); err != nil {
			return refused("finding %d: %v", n+1, err)
		}
		n++
		if n > b.Header.Count {
			return refused("more findings than the %d the header counts", b.Header.Count)
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	if n != b.Header.Count {
		return refused("%d findings, the header counts %d", n, b.Header.Count)
	}
	return nil
}

// readLine reads one newline-terminated line; io.EOF at a clean end.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLine {
			return nil, errors.New("line too long")
		}
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(line) == 0 {
				return nil, io.EOF
			}
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// decodeLine decodes one JSON object; strict refuses unknown fields.
func decodeLine(line []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// Import verifies data and ingests it for account. A bundle whose scan was
// already imported changes nothing (Imported false); one whose import was
// interrupted is completed.
func Import(ctx context.Context, st store.Store, roots *x509.CertPool, account string, data []byte, now time.Time) (protocol.ImportResult, error) {
	b, err := Verify(data, roots, now)
	if err != nil {
		return protocol.ImportResult{}, err
	}
	h := b.Header
	res := protocol.ImportResult{ScanID: h.ScanID, BotID: h.BotID, Findings: h.Count}
	if h.Account != account {
		return res, refused("the bundle is of account %s, not %s", h.Account, account)
	}
	bot, err := st.BotByCertificate(ctx, b.Certificate.Subject.CommonName, pki.SerialString(b.Certificate))
	if errors.Is(err, store.ErrNotFound) {
		return res, refused("bot %s: certificate revoked or replaced (the bot was activated again or deactivated)", h.BotID)
	}
	if err != nil {
		return res, err
	}
	if bot.Account != account {
		return res, refused("bot %s does not belong to account %s", h.BotID, account)
	}
	if bot.Status != protocol.BotActive {
		return res, refused("bot %s is %s", h.BotID, bot.Status)
	}
	sc, err := st.Scan(ctx, account, bot.ID, h.ScanID)
	switch {
	case err == nil && sc.Finished != nil:
		return res, nil // already imported
	case err == nil:
	case errors.Is(err, store.ErrNotFound):
		if err := st.StartScan(ctx, account, bot.ID, protocol.ScanStart{
			ScanID: h.ScanID, Trigger: protocol.TriggerImport, Started: h.Started, Targets: h.Targets,
		}); err != nil {
			return res, err
		}
	default:
		return res, err
	}
	var seq int64
	batch := make([]protocol.Finding, 0, BatchSize)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		seq++
		_, err := st.Ingest(ctx, account, bot.ID, h.ScanID, protocol.FindingsBatch{Seq: seq, Findings: batch})
		batch = batch[:0]
		return err
	}
	if err := b.Findings(func(f protocol.Finding) error {
		batch = append(batch, f)
		if len(batch) == BatchSize {
			return flush()
		}
		return nil
	}); err != nil {
		return res, err
	}
	if err := flush(); err != nil {
		return res, err
	}
	if err := st.CompleteScan(ctx, account, bot.ID, h.ScanID, protocol.ScanComplete{
		Finished: h.Finished, Batches: seq, Certificates: h.Certificates, Errors: h.Errors,
		Complete: h.Complete, Stopped: h.Stopped,
	}); err != nil {
		return res, err
	}
	res.Imported = true
	return res, nil
}
