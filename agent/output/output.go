// Package output prints scan findings for people (a table) and for programs
// (JSON Lines, CSV). JSON and CSV stream one line per finding as it arrives;
// the table waits for the end so that it can sort by days to expiry.
package output

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/emsign/bot/protocol"
)

// Formats accepted by New.
const (
	FormatTable = "table"
	FormatJSON  = "json"
	FormatCSV   = "csv"
)

// Writer prints findings. Close flushes what is buffered.
type Writer interface {
	Write(protocol.Finding) error
	Close() error
}

// New returns the writer for format. now is the clock days-left is counted
// from.
func New(format string, w io.Writer, now func() time.Time) (Writer, error) {
	switch format {
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return &jsonWriter{enc: enc}, nil
	case FormatCSV:
		return newCSVWriter(w), nil
	case FormatTable, "":
		return &tableWriter{w: w, now: now}, nil
	default:
		return nil, fmt.Errorf("unknown format %q (table, json or csv)", format)
	}
}

type jsonWriter struct{ enc *json.Encoder }

func (j *jsonWriter) Write(f protocol.Finding) error { return j.enc.Encode(protocol.NewRecord(f)) }
func (j *jsonWriter) Close() error                   { return nil }

// csvColumns are the CSV header; they match the JSON field names.
var csvColumns = []string{
	"location", "source", "format", "fingerprint_sha256", "subject", "sans", "issuer", "serial",
	"not_before", "not_after", "key_algorithm", "key_bits", "signature_algorithm", "chain",
	"has_private_key", "tls_version", "tls_cipher_suite", "tls_group", "error",
}

type csvWriter struct {
	w      *csv.Writer
	header bool
}

func newCSVWriter(w io.Writer) *csvWriter { return &csvWriter{w: csv.NewWriter(w)} }

func (c *csvWriter) Write(f protocol.Finding) error {
	if !c.header {
		c.header = true
		if err := c.w.Write(csvColumns); err != nil {
			return err
		}
	}
	r := protocol.NewRecord(f)
	var tlsVersion, tlsSuite, tlsGroup string
	if r.TLS != nil {
		tlsVersion, tlsSuite, tlsGroup = r.TLS.Version, r.TLS.CipherSuite, r.TLS.Group
	}
	bits := ""
	if r.KeyBits > 0 {
		bits = strconv.Itoa(r.KeyBits)
	}
	row := []string{
		r.Location, r.Source, r.Format, r.FingerprintSHA256, r.Subject, strings.Join(r.SANs, " "), r.Issuer, r.Serial,
		rfc3339(r.NotBefore), rfc3339(r.NotAfter), r.KeyAlgorithm, bits, r.SignatureAlgorithm,
		strings.Join(r.Chain, " "), strconv.FormatBool(r.HasPrivateKey), tlsVersion, tlsSuite, tlsGroup, r.Error,
	}
	if err := c.w.Write(row); err != nil {
		return err
	}
	// Flush per row: a consumer reading a pipe sees each line as it is found.
	c.w.Flush()
	return c.w.Error()
}

func (c *csvWriter) Close() error {
	if !c.header {
		if err := c.w.Write(csvColumns); err != nil {
			return err
		}
	}
	c.w.Flush()
	return c.w.Error()
}

func rfc3339(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.Format(time.RFC3339)
}

// tableRow keeps just what the table prints, so that a large scan does not
// hold whole certificates until the end.
type tableRow struct {
	notAfter time.Time
	name     string
	issuer   string
	key      string
	location string
	err      string
}

type tableWriter struct {
	w    io.Writer
	now  func() time.Time
	rows []tableRow
	keys []tableRow
	errs []tableRow
}

func (t *tableWriter) Write(f protocol.Finding) error {
	r := protocol.NewRecord(f)
	row := tableRow{location: r.Location, err: r.Error}
	if r.Kind == protocol.RecordKey && r.Error == "" {
		row.key = strings.TrimSpace(r.KeyAlgorithm + " " + bitsText(r.KeyBits))
		row.name = r.PrivateKey.Label
		row.issuer = r.PrivateKey.Class
		t.keys = append(t.keys, row)
		return nil
	}
	if r.FingerprintSHA256 == "" || r.NotAfter == nil {
		t.errs = append(t.errs, row)
		return nil
	}
	row.notAfter = *r.NotAfter
	row.name = displayName(r)
	row.issuer = r.IssuerCommonName
	if row.issuer == "" {
		row.issuer = r.Issuer
	}
	row.key = r.KeyAlgorithm
	if r.KeyBits > 0 {
		row.key += " " + strconv.Itoa(r.KeyBits)
	}
	t.rows = append(t.rows, row)
	if r.Error != "" {
		t.errs = append(t.errs, row)
	}
	return nil
}

func displayName(r protocol.CertificateRecord) string {
	switch {
	case r.CommonName != "":
		return r.CommonName
	case len(r.SANs) > 0:
		return r.SANs[0]
	default:
		return r.Subject
	}
}

func (t *tableWriter) Close() error {
	now := t.now()
	// Worst first: expired, then soonest to expire.
	slices.SortStableFunc(t.rows, func(a, b tableRow) int { return a.notAfter.Compare(b.notAfter) })
	tw := tabwriter.NewWriter(t.w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DAYS LEFT\tEXPIRES\tNAME\tISSUER\tKEY\tLOCATION")
	for _, r := range t.rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", daysLeft(r.notAfter, now), r.notAfter.Format("2006-01-02"),
			clip(r.name, 48), clip(r.issuer, 40), r.key, r.location)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(t.keys) > 0 {
		fmt.Fprintf(t.w, "\nKEYS (%d)\n", len(t.keys))
		tw = tabwriter.NewWriter(t.w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tCLASS\tLABEL\tLOCATION")
		for _, r := range t.keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.key, r.issuer, clip(r.name, 40), r.location)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(t.errs) > 0 {
		fmt.Fprintf(t.w, "\nERRORS (%d)\n", len(t.errs))
		tw = tabwriter.NewWriter(t.w, 0, 0, 2, ' ', 0)
		for _, r := range t.errs {
			fmt.Fprintf(tw, "%s\t%s\n", r.location, r.err)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func bitsText(bits int) string {
	if bits == 0 {
		return ""
	}
	return strconv.Itoa(bits)
}

func daysLeft(notAfter, now time.Time) string {
	d := notAfter.Sub(now)
	if d < 0 {
		return "expired " + strconv.Itoa(int(-d.Hours()/24)) + "d ago"
	}
	return strconv.Itoa(int(d.Hours() / 24))
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
