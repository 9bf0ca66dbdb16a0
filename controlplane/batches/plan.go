// Package batches is mass replacement (P9): every location of the
// certificates a filter matches (for example every certificate of one
// distrusted intermediate), planned as a dry run, then rotated in waves of
// a fixed size with a stop button, progress and a final report.
//
// The Planner stores a plan (store.CreateBatch); the Runner, run by every
// control plane replica, orders the waves of running batches through a
// Rotator (the ordering service) and follows their orders until they end.
// Claiming an item is one conditional store update, so two runners never
// order one location twice.
package batches

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// Limits of a plan.
const (
	// MaxItems bounds a batch: a filter matching more locations is
	// refused (ErrTooMany) rather than planned in part.
	MaxItems        = 100_000
	DefaultWaveSize = 10
	MaxWaveSize     = 1000
)

// ErrTooMany: the filter matches more than MaxItems locations.
var ErrTooMany = fmt.Errorf("matches more than %d locations: narrow the filter", MaxItems)

// PlanStore is what the planner needs of the store (store.Store has it).
type PlanStore interface {
	Certificates(ctx context.Context, account string, f store.CertificateFilter) ([]store.Certificate, string, error)
	Bots(ctx context.Context, account string) ([]store.Bot, error)
	CreateBatch(ctx context.Context, b store.Batch, items []store.BatchItem) error
	// SkipBatchItems marks items of a new batch skipped with their Error
	// (CreateBatch stores them all pending).
	SkipBatchItems(ctx context.Context, batchID string, items []store.BatchItem) error
}

// PlannerConfig is what a Planner needs.
type PlannerConfig struct {
	Store PlanStore
	// NewID makes batch IDs.
	NewID func() string
	Now   func() time.Time // time.Now when nil
	// Deployable lists the location URIs of a certificate a rotation can
	// write (the ordering service's Deployable); nil applies the package's
	// Deployable to each present location.
	Deployable func(c store.Certificate) []string
}

// Planner makes dry-run plans (P9).
type Planner struct {
	st         PlanStore
	newID      func() string
	now        func() time.Time
	deployable func(c store.Certificate) []string
}

// NewPlanner checks cfg.
func NewPlanner(cfg PlannerConfig) (*Planner, error) {
	if cfg.Store == nil || cfg.NewID == nil {
		return nil, errors.New("batches: planner store and NewID are required")
	}
	p := &Planner{st: cfg.Store, newID: cfg.NewID, now: cfg.Now, deployable: cfg.Deployable}
	if p.now == nil {
		p.now = time.Now
	}
	return p, nil
}

// PlanRequest is a mass replacement to plan. The caller (ops) has checked
// the fields.
type PlanRequest struct {
	Name string
	// Filter selects the certificates; its Source, Location and BotID
	// also select which of their locations are replaced.
	Filter store.CertificateFilter
	// FilterJSON is the filter as the user gave it, kept for the report.
	FilterJSON  string
	TemplateID  string
	Action      string // protocol.ActionRotate or ActionRekey
	WaveSize    int
	MaxFailures int
	CreatedBy   string
}

// Plan finds every present location of every certificate the filter
// matches, and stores the batch as planned with its items: deployable
// locations on active bots first, by bot then location, numbered in waves
// of WaveSize; then the locations that cannot be ordered (their bot is not
// active), skipped with the reason. tls and certstore locations are not
// items: they are verified, not written (see Deployable).
func (p *Planner) Plan(ctx context.Context, account string, req PlanRequest) (store.Batch, []store.BatchItem, error) {
	if req.WaveSize < 1 || req.WaveSize > MaxWaveSize {
		return store.Batch{}, nil, fmt.Errorf("batches: wave size %d: want 1..%d", req.WaveSize, MaxWaveSize)
	}
	if req.Action != protocol.ActionRotate && req.Action != protocol.ActionRekey {
		return store.Batch{}, nil, fmt.Errorf("batches: action %q: want %s or %s", req.Action, protocol.ActionRotate, protocol.ActionRekey)
	}
	bots, err := p.st.Bots(ctx, account)
	if err != nil {
		return store.Batch{}, nil, fmt.Errorf("batches: bots: %w", err)
	}
	status := make(map[string]string, len(bots))
	for _, b := range bots {
		status[b.ID] = b.Status
	}

	var cands []cand
	f := req.Filter
	f.Sort, f.Desc, f.Offset, f.Limit, f.After = store.SortFingerprint, false, 0, store.MaxPageSize, ""
	for {
		certs, next, err := p.st.Certificates(ctx, account, f)
		if err != nil {
			return store.Batch{}, nil, fmt.Errorf("batches: certificates: %w", err)
		}
		for _, c := range certs {
			ok := p.deployableSet(c)
			for _, l := range c.Locations {
				if !l.Present || !ok[l.URI] || !locationMatches(req.Filter, l) {
					continue
				}
				skip := ""
				if st := status[l.BotID]; st != protocol.BotActive {
					if st == "" {
						st = "unknown"
					}
					skip = fmt.Sprintf("bot %s is %s", l.BotID, st)
				}
				cands = append(cands, cand{fp: c.Fingerprint, uri: l.URI, bot: l.BotID, skip: skip})
				if len(cands) > MaxItems {
					return store.Batch{}, nil, fmt.Errorf("batches: filter: %w", ErrTooMany)
				}
			}
		}
		if next == "" {
			break
		}
		f.After = next
	}
	// Stable: orderable first, then by bot, location, certificate.
	slices.SortFunc(cands, func(a, b cand) int {
		return cmp.Or(cmp.Compare(boolInt(a.skip != ""), boolInt(b.skip != "")), cmp.Compare(a.bot, b.bot),
			cmp.Compare(a.uri, b.uri), cmp.Compare(a.fp, b.fp))
	})
	cands = interleaveBots(cands)
	b := store.Batch{
		ID: p.newID(), Account: account, Name: req.Name, Filter: req.FilterJSON, TemplateID: req.TemplateID,
		Action: req.Action, WaveSize: req.WaveSize, MaxFailures: req.MaxFailures, Status: store.BatchPlanned,
		CreatedBy: req.CreatedBy, CreatedAt: p.now().UTC(),
	}
	items := make([]store.BatchItem, len(cands))
	var skipped []store.BatchItem
	for i, c := range cands {
		it := store.BatchItem{BatchID: b.ID, Seq: i + 1, Wave: i/req.WaveSize + 1, Fingerprint: c.fp, Location: c.uri,
			BotID: c.bot, State: store.ItemPending}
		if c.skip != "" {
			it.State, it.Error = store.ItemSkipped, c.skip
			skipped = append(skipped, it)
		}
		items[i] = it
	}
	pending := make([]store.BatchItem, len(items))
	for i, it := range items {
		it.State, it.Error = store.ItemPending, ""
		pending[i] = it
	}
	if err := p.st.CreateBatch(ctx, b, pending); err != nil {
		return store.Batch{}, nil, fmt.Errorf("batches: store plan: %w", err)
	}
	// A crash here leaves those items pending in a planned batch: its
	// runner would then try them and fail them with the bot's state.
	if err := p.st.SkipBatchItems(ctx, b.ID, skipped); err != nil {
		return store.Batch{}, nil, fmt.Errorf("batches: store plan: %w", err)
	}
	b.Counts = countItems(items)
	return b, items, nil
}

// deployableSet is the set of c's location URIs a rotation can write.
func (p *Planner) deployableSet(c store.Certificate) map[string]bool {
	set := map[string]bool{}
	if p.deployable != nil {
		for _, u := range p.deployable(c) {
			set[u] = true
		}
		return set
	}
	for _, l := range c.Locations {
		if l.Present && Deployable(l) {
			set[l.URI] = true
		}
	}
	return set
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func countItems(items []store.BatchItem) store.BatchCounts {
	var c store.BatchCounts
	for _, it := range items {
		c.Total++
		switch it.State {
		case store.ItemPending:
			c.Pending++
		case store.ItemOrdered:
			c.Ordered++
		case store.ItemDone:
			c.Done++
		case store.ItemFailed:
			c.Failed++
		case store.ItemSkipped:
			c.Skipped++
		}
	}
	return c
}

// locationMatches applies the filter's location fields to one location:
// a search by source, bot or URI replaces only the locations it named,
// not every location of the certificates it found.
func locationMatches(f store.CertificateFilter, l store.Location) bool {
	if f.Source != "" && l.Source != f.Source {
		return false
	}
	if f.BotID != "" && l.BotID != f.BotID {
		return false
	}
	if f.Location != "" && !strings.Contains(strings.ToLower(l.URI), strings.ToLower(f.Location)) {
		return false
	}
	return true
}

// Deployable tells whether a rotation can write a certificate at l, by the
// ordering service's rule (PlannerConfig.Deployable gives the service's
// own): files (PEM, DER, JKS, PKCS#12 keystores), PKCS#11 tokens, LDAP
// entries, files over SSH, AWS ACM, F5 and Cloudflare custom
// certificates. TLS endpoints and Windows certificate stores are not: an
// endpoint is verified after the file behind it is replaced.
func Deployable(l store.Location) bool {
	switch l.Source {
	case protocol.SchemeFile:
		return slices.Contains([]string{protocol.FormatPEM, protocol.FormatDER, protocol.FormatJKS, protocol.FormatPKCS12, ""},
			l.Format)
	case protocol.SchemeJKS:
		return l.Format == protocol.FormatJKS || l.Format == protocol.FormatPKCS12 || l.Format == ""
	case protocol.SchemeSSH:
		return l.Format == protocol.FormatPEM || l.Format == protocol.FormatDER || l.Format == ""
	case protocol.SchemeAWS:
		return strings.HasPrefix(l.URI, "aws://acm/")
	case protocol.SchemeCloudflare:
		loc, err := protocol.ParseLocation(l.URI)
		return err == nil && strings.Count(strings.Trim(loc.Path, "/"), "/") == 1
	case protocol.SchemePKCS11, protocol.SchemeLDAP, protocol.SchemeLDAPS, protocol.SchemeF5:
		return true
	}
	return false
}

// cand is a location a plan may take; skip says why it cannot.
type cand struct {
	fp, uri, bot, skip string
}

// interleaveBots makes the bots take turns in a plan sorted by bot, the
// skipped items staying last, so that a wave spans every bot: grouped by
// bot, a wave of 500 over bots holding 2,500 locations each went to one
// bot at a time while the others idled (measured: the four bots of the
// benchmark worked strictly one after another). Within a bot the order is
// kept.
func interleaveBots(cands []cand) []cand {
	rank := make([]int, len(cands))
	seen := map[string]int{}
	for i, c := range cands {
		rank[i] = seen[c.bot]
		seen[c.bot]++
	}
	order := make([]int, len(cands))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int {
		a, b := cands[x], cands[y]
		return cmp.Or(cmp.Compare(boolInt(a.skip != ""), boolInt(b.skip != "")), cmp.Compare(rank[x], rank[y]), cmp.Compare(a.bot, b.bot))
	})
	out := make([]cand, len(cands))
	for i, j := range order {
		out[i] = cands[j]
	}
	return out
}
