package batches

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/emsign/bot/controlplane/store"
)

// ReportStore is what a report reads.
type ReportStore interface {
	Batch(ctx context.Context, account, id string) (store.Batch, error)
	BatchItems(ctx context.Context, account, id string, limit, offset int) ([]store.BatchItem, error)
	Orders(ctx context.Context, account string, f store.OrderFilter) ([]store.Order, error)
}

// Report is a batch's outcome (P9): counts by state, each wave's span and
// every failure with its error.
type Report struct {
	Batch    store.Batch
	Waves    []WaveReport
	Failures []ReportItem
	// Items are every item with its order's times, for the CSV.
	Items []ReportItem
}

// WaveReport is one wave: its items by state and how long it took, from
// its first order to its last order's end (Finished nil while one runs).
type WaveReport struct {
	Wave                                     int
	Items, Done, Failed, Skipped, Unfinished int
	Started, Finished                        *time.Time
	Duration                                 time.Duration
}

// ReportItem is one item with its order's times.
type ReportItem struct {
	store.BatchItem
	OrderStatus string
	OrderedAt   *time.Time
	FinishedAt  *time.Time
}

// reportPage is the page size of the report's reads.
const reportPage = 1000

// BuildReport reads a batch, its items and its orders.
func BuildReport(ctx context.Context, st ReportStore, account, id string) (Report, error) {
	b, err := st.Batch(ctx, account, id)
	if err != nil {
		return Report{}, err
	}
	orders := map[string]store.Order{}
	for offset := 0; ; offset += reportPage {
		os, err := st.Orders(ctx, account, store.OrderFilter{BatchID: id, Limit: reportPage, Offset: offset})
		if err != nil {
			return Report{}, fmt.Errorf("batches: report orders: %w", err)
		}
		for _, o := range os {
			orders[o.ID] = o
		}
		if len(os) == 0 {
			break
		}
	}
	rep := Report{Batch: b}
	waves := map[int]*WaveReport{}
	var order []int
	for offset := 0; ; offset += reportPage {
		items, err := st.BatchItems(ctx, account, id, reportPage, offset)
		if err != nil {
			return Report{}, fmt.Errorf("batches: report items: %w", err)
		}
		for _, it := range items {
			ri := ReportItem{BatchItem: it}
			if IsClaim(ri.OrderID) {
				ri.OrderID = ""
			}
			w := waves[it.Wave]
			if w == nil {
				w = &WaveReport{Wave: it.Wave}
				waves[it.Wave] = w
				order = append(order, it.Wave)
			}
			w.Items++
			if o, ok := orders[ri.OrderID]; ok {
				ri.OrderStatus = o.Status
				created := o.CreatedAt
				ri.OrderedAt = &created
				if w.Started == nil || created.Before(*w.Started) {
					w.Started = &created
				}
				if it.State == store.ItemDone || it.State == store.ItemFailed {
					upd := o.UpdatedAt
					ri.FinishedAt = &upd
					if w.Finished == nil || upd.After(*w.Finished) {
						w.Finished = &upd
					}
				}
			}
			switch it.State {
			case store.ItemDone:
				w.Done++
			case store.ItemFailed:
				w.Failed++
				rep.Failures = append(rep.Failures, ri)
			case store.ItemSkipped:
				w.Skipped++
			default:
				w.Unfinished++
			}
			rep.Items = append(rep.Items, ri)
		}
		if len(items) < reportPage {
			break
		}
	}
	for _, n := range order {
		w := waves[n]
		if w.Unfinished > 0 {
			w.Finished = nil
		}
		if w.Started != nil && w.Finished != nil {
			w.Duration = w.Finished.Sub(*w.Started)
		}
		rep.Waves = append(rep.Waves, *w)
	}
	return rep, nil
}

// CSVHeader is the first row of a report's CSV.
var CSVHeader = []string{"seq", "wave", "bot", "location", "fingerprint", "state", "order", "order_status", "ordered_at",
	"finished_at", "error"}

// WriteCSV writes one row per item. Cells that a spreadsheet would read as
// a formula are quoted with a leading apostrophe.
func (r Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	for _, it := range r.Items {
		row := []string{strconv.Itoa(it.Seq), strconv.Itoa(it.Wave), it.BotID, it.Location, it.Fingerprint, it.State,
			it.OrderID, it.OrderStatus, csvTime(it.OrderedAt), csvTime(it.FinishedAt), it.Error}
		for i := range row {
			row[i] = safeCell(row[i])
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func csvTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// safeCell neutralises a cell a spreadsheet would run as a formula.
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
