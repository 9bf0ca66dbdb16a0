package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"time"
)

// Export bundles carry a scan's findings across an air gap (emsign-bot scan
// --export FILE, emsign-cp import FILE, POST /api/v1/imports).
//
// A bundle is one file:
//
//	BundleMagic (8 bytes) | payload | signature | uint16 big-endian len(signature) | BundleEnd (8 bytes)
//
// The payload is gzip'd JSON Lines: a BundleHeader object, then Count
// Finding objects. The signature is ECDSA (ASN.1, as crypto/ecdsa SignASN1
// makes it) by the bot's private key over BundleDigest: the SHA-256 of
// everything before the signature (magic and payload). The bot's certificate
// travels in the header, so it is signed too. Any byte changed anywhere
// makes the bundle unreadable or its signature wrong.
const (
	BundleMagic   = "EMSBNDL1"
	BundleEnd     = "EMSBEND1"
	BundleVersion = 1
	// MaxBundleSize bounds a bundle an importer accepts.
	MaxBundleSize = 256 << 20
	// PathImports: POST a bundle (application/octet-stream) → ImportResult.
	PathImports = "/api/v1/imports"
	// TriggerImport is the trigger of a scan that came in a bundle.
	TriggerImport = "import"
)

// BundleHeader is the first line of a bundle's payload.
type BundleHeader struct {
	Version int    `json:"version"`
	BotID   string `json:"bot_id"`
	Account string `json:"account"`
	// ScanID is a fresh UUID per export; the import creates this scan.
	ScanID   string    `json:"scan_id"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Targets  int       `json:"targets"`
	// Complete is true when every target ran to its end.
	Complete bool   `json:"complete"`
	Stopped  string `json:"stopped,omitempty"`
	// Certificate is the bot's client certificate, PEM (bot.crt).
	Certificate  string `json:"certificate"`
	Count        int    `json:"count"`
	Certificates int    `json:"certificates"`
	Errors       int    `json:"errors"`
}

// ImportResult answers an import.
type ImportResult struct {
	ScanID   string `json:"scan_id"`
	BotID    string `json:"bot_id"`
	Findings int    `json:"findings"`
	// Imported is false when the bundle had been imported already (nothing
	// changed).
	Imported bool `json:"imported"`
}

// ErrBundleFormat is returned for a file that is not a well-formed bundle.
var ErrBundleFormat = errors.New("not a well-formed emsign bundle")

// SplitBundle returns the signed part (magic and payload), the payload and
// the signature of a bundle.
func SplitBundle(b []byte) (signed, payload, sig []byte, err error) {
	min := len(BundleMagic) + 2 + len(BundleEnd)
	if len(b) < min || !bytes.HasPrefix(b, []byte(BundleMagic)) || !bytes.HasSuffix(b, []byte(BundleEnd)) {
		return nil, nil, nil, ErrBundleFormat
	}
	rest := b[:len(b)-len(BundleEnd)]
	n := int(binary.BigEndian.Uint16(rest[len(rest)-2:]))
	rest = rest[:len(rest)-2]
	if n == 0 || n > len(rest)-len(BundleMagic) {
		return nil, nil, nil, ErrBundleFormat
	}
	signed = rest[:len(rest)-n]
	return signed, signed[len(BundleMagic):], rest[len(rest)-n:], nil
}

// BundleTrailer is what follows the signed part: the signature, its length
// and BundleEnd.
func BundleTrailer(sig []byte) []byte {
	out := make([]byte, 0, len(sig)+2+len(BundleEnd))
	out = append(out, sig...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(sig)))
	return append(out, BundleEnd...)
}

// BundleDigest is the SHA-256 that the signature covers.
func BundleDigest(signed []byte) []byte {
	h := sha256.Sum256(signed)
	return h[:]
}
