package web

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/xuri/excelize/v2"

	"github.com/emsign/bot/controlplane/store"
)

// exportHeader names the columns of both exports.
var exportHeader = []string{"Common name", "SANs", "Issuer", "Serial", "Not before", "Not after", "Days left",
	"Key algorithm", "Key bits", "Signature algorithm", "CA", "Fingerprint SHA-256", "Locations", "Bots"}

// exportPageSize is how many certificates an export reads at a time: the
// whole inventory is never held in memory.
const exportPageSize = store.MaxPageSize

// xlsxMaxCell is the most characters a spreadsheet cell holds.
const xlsxMaxCell = 32767

// exportRow is one certificate's cells, text neutralised against formula
// injection: the numbers stay numbers (ints) for the spreadsheet.
func exportRow(c store.Certificate, now time.Time, botNames map[string]string) []any {
	uris := make([]string, 0, len(c.Locations))
	var bots []string
	seen := map[string]bool{}
	for _, l := range c.Locations {
		uris = append(uris, l.URI)
		if l.BotID != "" && !seen[l.BotID] {
			seen[l.BotID] = true
			name := botNames[l.BotID]
			if name == "" {
				name = l.BotID
			}
			bots = append(bots, name)
		}
	}
	ca := "no"
	if c.IsCA {
		ca = "yes"
	}
	return []any{
		safeCell(c.CommonName), safeCell(strings.Join(c.SANs, "\n")), safeCell(c.Issuer), safeCell(c.Serial),
		c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), daysLeft(now, c.NotAfter),
		safeCell(c.KeyAlgorithm), c.KeyBits, safeCell(c.SignatureAlgorithm), ca, c.Fingerprint,
		safeCell(strings.Join(uris, "\n")), safeCell(strings.Join(bots, "\n")),
	}
}

// safeCell keeps a spreadsheet from reading text as a formula (CSV and
// formula injection): a cell starting with = + - @, a tab or a carriage
// return gets a leading apostrophe, which spreadsheets show as text.
func safeCell(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

// exportData is the search an export runs, with the bots' names.
type exportData struct {
	q     certQuery
	names map[string]string
}

// prepareExport reads the search and records the export in the audit log
// before any of it is sent. ok is false when the answer was already
// written (bad input, a failure).
func (s *Server) prepareExport(w http.ResponseWriter, r *http.Request, v *Viewer, format string) (exportData, bool) {
	cq, err := parseCertQuery(r.URL.Query())
	if err != nil {
		s.fail(w, r, v, http.StatusBadRequest, err.Error())
		return exportData{}, false
	}
	bots, err := s.st.Bots(r.Context(), v.User.Account)
	if err != nil {
		s.serverError(w, r, v, err)
		return exportData{}, false
	}
	names := make(map[string]string, len(bots))
	for _, b := range bots {
		names[b.ID] = b.Name
	}
	if err := s.ops.Record(r.Context(), v.Actor(r), "certificates.export", format, cq.Summary()); err != nil {
		s.serverError(w, r, v, fmt.Errorf("audit export: %w", err))
		return exportData{}, false
	}
	return exportData{q: cq, names: names}, true
}

// eachCertificate walks every match of the search in the fingerprint
// order (the only one with a cursor, which stays fast at any depth), a
// page at a time.
func (s *Server) eachCertificate(ctx context.Context, account string, f store.CertificateFilter, fn func(store.Certificate) error) error {
	f.Sort, f.Desc, f.Offset, f.Limit, f.After = store.SortFingerprint, false, 0, exportPageSize, ""
	for {
		certs, next, err := s.st.Certificates(ctx, account, f)
		if err != nil {
			return err
		}
		for _, c := range certs {
			if err := fn(c); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		f.After = next
	}
}

// exportName is the download's file name: dated, so that exports of
// different days do not overwrite each other.
func exportName(now time.Time, ext string) string {
	return "certificates-" + now.UTC().Format("2006-01-02-150405") + "." + ext
}

func (s *Server) exportCSV(w http.ResponseWriter, r *http.Request, v *Viewer) {
	ed, ok := s.prepareExport(w, r, v, "csv")
	if !ok {
		return
	}
	now := s.now()
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+exportName(now, "csv")+`"`)
	w.WriteHeader(http.StatusOK)
	// Written as it is read: a large inventory is never held whole.
	cw := csv.NewWriter(w)
	row := make([]string, len(exportHeader))
	err := cw.Write(exportHeader)
	if err == nil {
		err = s.eachCertificate(r.Context(), v.User.Account, ed.q.Filter, func(c store.Certificate) error {
			for i, cell := range exportRow(c, now, ed.names) {
				switch x := cell.(type) {
				case string:
					row[i] = x
				case int:
					row[i] = strconv.Itoa(x)
				}
			}
			return cw.Write(row)
		})
	}
	if err == nil {
		cw.Flush()
		err = cw.Error()
	}
	if err != nil {
		// The status is sent: break the connection so that the browser
		// reports a failed download instead of keeping a truncated file.
		s.log.Error("certificate export failed", "format", "csv", "err", err)
		panic(http.ErrAbortHandler)
	}
}

func (s *Server) exportXLSX(w http.ResponseWriter, r *http.Request, v *Viewer) {
	ed, ok := s.prepareExport(w, r, v, "xlsx")
	if !ok {
		return
	}
	now := s.now()
	f := excelize.NewFile()
	defer f.Close()
	const sheet = "Certificates"
	if err := f.SetSheetName("Sheet1", sheet); err != nil {
		s.serverError(w, r, v, fmt.Errorf("xlsx: %w", err))
		return
	}
	sw, err := f.NewStreamWriter(sheet)
	if err != nil {
		s.serverError(w, r, v, fmt.Errorf("xlsx: %w", err))
		return
	}
	header := make([]any, len(exportHeader))
	for i, h := range exportHeader {
		header[i] = h
	}
	if err := sw.SetRow("A1", header); err != nil {
		s.serverError(w, r, v, fmt.Errorf("xlsx: %w", err))
		return
	}
	// The stream writer keeps rows in a temporary file past a threshold,
	// not in memory.
	n := 1
	err = s.eachCertificate(r.Context(), v.User.Account, ed.q.Filter, func(c store.Certificate) error {
		n++
		cells := exportRow(c, now, ed.names)
		for i, cell := range cells {
			if x, ok := cell.(string); ok && len(x) > xlsxMaxCell {
				cells[i] = truncateRunes(x, xlsxMaxCell)
			}
		}
		cell, err := excelize.CoordinatesToCellName(1, n)
		if err != nil {
			return err
		}
		return sw.SetRow(cell, cells)
	})
	if err == nil {
		err = sw.Flush()
	}
	if err != nil {
		s.serverError(w, r, v, fmt.Errorf("xlsx export: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
	w.Header().Set("Content-Disposition", `attachment; filename="`+exportName(now, "xlsx")+`"`)
	w.WriteHeader(http.StatusOK)
	if err := f.Write(w); err != nil && !errors.Is(err, context.Canceled) {
		s.log.Error("certificate export failed", "format", "xlsx", "err", err)
		panic(http.ErrAbortHandler)
	}
}

// truncateRunes cuts s to at most n characters (a spreadsheet counts
// characters, not bytes), never inside one.
func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}
