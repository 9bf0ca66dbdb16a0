package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// targetsAAD binds a bot's sealed targets to the bot: sealed targets
// copied onto another bot do not open there.
func targetsAAD(botID string) []byte { return []byte("emsign-cp/targets/" + botID) }

type sealedTargets struct {
	Targets []string `json:"targets"`
}

// OpenTargets returns a bot's targets in clear, secrets included: for the
// bot's own configuration only, never for a person.
func (o *Ops) OpenTargets(b store.Bot) ([]string, error) {
	if len(b.Targets.Sealed) == 0 {
		return []string{}, nil
	}
	p, err := o.sealer.Open(b.Targets.Sealed, targetsAAD(b.ID))
	if err != nil {
		return nil, fmt.Errorf("bot %s targets: %w", b.ID, err)
	}
	var t sealedTargets
	if err := json.Unmarshal(p, &t); err != nil {
		return nil, fmt.Errorf("bot %s targets: %w", b.ID, err)
	}
	if t.Targets == nil {
		t.Targets = []string{}
	}
	return t.Targets, nil
}

func (o *Ops) sealTargets(botID string, targets []string) ([]byte, error) {
	p, err := json.Marshal(sealedTargets{Targets: targets})
	if err != nil {
		return nil, err
	}
	return o.sealer.Seal(p, targetsAAD(botID))
}

// RedactTarget is a target safe to show: its secrets replaced.
func RedactTarget(raw string) string {
	t, err := protocol.ParseTargetUnresolved(raw)
	if err != nil {
		// Stored targets were validated; if the parser changed since, show
		// only the scheme.
		scheme, _, _ := strings.Cut(raw, ":")
		return scheme + "://(not readable: REDACTED)"
	}
	return t.String()
}

// settings is what a bot's stored configuration shows: targets redacted.
func settings(b store.Bot, targets []string) TargetSettings {
	shown := make([]string, len(targets))
	for i, t := range targets {
		shown[i] = RedactTarget(t)
	}
	sched := b.Targets.Schedule
	if sched.Kind == "" {
		sched.Kind = protocol.ScheduleOnDemand
	}
	return TargetSettings{Targets: shown, Schedule: sched, Threads: b.Targets.Threads,
		MaxRuntime: protocol.Duration(b.Targets.MaxRuntime)}
}

// Targets reads a bot's targets (redacted) and schedule.
func (o *Ops) Targets(ctx context.Context, a Actor, id string) (TargetSettings, error) {
	if err := o.allow(ctx, a, rbac.ViewBots, "targets.view", id); err != nil {
		return TargetSettings{}, err
	}
	b, err := o.st.Bot(ctx, a.Account, id)
	if err != nil {
		return TargetSettings{}, err
	}
	raw, err := o.OpenTargets(b)
	if err != nil {
		return TargetSettings{}, err
	}
	return settings(b, raw), nil
}

// checkTargets validates targets as the bot will read them.
func checkTargets(targets []string) error {
	if len(targets) > MaxTargets {
		return invalid("targets", "at most %d", MaxTargets)
	}
	for i, t := range targets {
		if _, err := protocol.ParseTargetUnresolved(t); err != nil {
			// The TargetError shows the target with its secrets redacted.
			return invalid(fmt.Sprintf("targets[%d]", i), "%v", err)
		}
	}
	return nil
}

// checkSchedule validates a schedule (on demand when empty) and the limits.
func checkSchedule(s *protocol.Schedule, threads int, maxRuntime time.Duration) error {
	if s.Kind == "" {
		s.Kind = protocol.ScheduleOnDemand
	}
	if err := s.Validate(); err != nil {
		// "schedule time "25:00": want HH:MM" names schedule.time.
		field, msg := "schedule", strings.TrimPrefix(err.Error(), "schedule ")
		if word, rest, ok := strings.Cut(msg, " "); ok && !strings.HasSuffix(word, ":") {
			field, msg = "schedule."+word, rest
		}
		return invalid(field, "%s", msg)
	}
	if threads < 0 || threads > MaxThreads {
		return invalid("threads", "want 0 (the bot's default) to %d", MaxThreads)
	}
	if maxRuntime < 0 {
		return invalid("max_runtime", "want 0 (no limit) or more")
	}
	return nil
}

// schemes lists the targets' kinds, each once, in order: what the audit
// log says of targets (their URIs may carry passwords).
func schemes(targets []string) string {
	var out []string
	for _, t := range targets {
		s, _, _ := strings.Cut(t, ":")
		s = strings.ToLower(s)
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return strings.Join(out, ", ")
}

func countTargets(targets []string) string {
	if len(targets) == 0 {
		return "targets: 0"
	}
	return fmt.Sprintf("targets: %d (%s)", len(targets), schemes(targets))
}

func scheduleText(s protocol.Schedule, threads int, maxRuntime time.Duration) string {
	parts := []string{"schedule " + s.Kind}
	if s.Time != "" {
		parts = append(parts, "at "+s.Time)
	}
	if s.Weekday != "" {
		parts = append(parts, "on "+s.Weekday)
	}
	if s.Timezone != "" {
		parts = append(parts, s.Timezone)
	}
	return strings.Join(parts, " ") + fmt.Sprintf(", threads %d, max runtime %s", threads, maxRuntime)
}

// save seals and stores the targets, wakes the bot and returns the new
// settings (redacted).
func (o *Ops) save(ctx context.Context, a Actor, b store.Bot, targets []string, s protocol.Schedule, threads int,
	maxRuntime time.Duration) (TargetSettings, error) {
	sealed, err := o.sealTargets(b.ID, targets)
	if err != nil {
		return TargetSettings{}, err
	}
	tc := store.TargetConfig{Sealed: sealed, Count: len(targets), Schedule: s, Threads: threads, MaxRuntime: maxRuntime}
	if err := o.st.SetTargets(ctx, a.Account, b.ID, tc, admin.NewID()); err != nil {
		return TargetSettings{}, err
	}
	o.notify.Notify(b.ID)
	b, err = o.st.Bot(ctx, a.Account, b.ID)
	if err != nil {
		return TargetSettings{}, err
	}
	return settings(b, targets), nil
}

// SetTargets replaces a bot's targets (given in clear) and schedule.
func (o *Ops) SetTargets(ctx context.Context, a Actor, id string, ts TargetSettings) (TargetSettings, error) {
	if err := o.allow(ctx, a, rbac.ManageBots, "targets.update", id); err != nil {
		return TargetSettings{}, err
	}
	if ts.Targets == nil {
		ts.Targets = []string{}
	}
	if err := checkTargets(ts.Targets); err != nil {
		return TargetSettings{}, err
	}
	maxRuntime := time.Duration(ts.MaxRuntime)
	if err := checkSchedule(&ts.Schedule, ts.Threads, maxRuntime); err != nil {
		return TargetSettings{}, err
	}
	b, err := o.st.Bot(ctx, a.Account, id)
	if err != nil {
		return TargetSettings{}, err
	}
	out, err := o.save(ctx, a, b, ts.Targets, ts.Schedule, ts.Threads, maxRuntime)
	if err != nil {
		return TargetSettings{}, err
	}
	o.audit(ctx, a, "targets.update", id, countTargets(ts.Targets)+"; "+scheduleText(ts.Schedule, ts.Threads, maxRuntime))
	return out, nil
}

// AddTargets appends targets (in clear) to a bot's; one already there is
// not doubled.
func (o *Ops) AddTargets(ctx context.Context, a Actor, id string, raw []string) (TargetSettings, error) {
	if err := o.allow(ctx, a, rbac.ManageBots, "targets.add", id); err != nil {
		return TargetSettings{}, err
	}
	var add []string
	for _, t := range raw {
		if t = strings.TrimSpace(t); t != "" {
			add = append(add, t)
		}
	}
	if len(add) == 0 {
		return TargetSettings{}, invalid("targets", "none given")
	}
	if err := checkTargets(add); err != nil {
		return TargetSettings{}, err
	}
	b, have, err := o.botTargets(ctx, a, id)
	if err != nil {
		return TargetSettings{}, err
	}
	var added []string
	for _, t := range add {
		if !slices.Contains(have, t) {
			have = append(have, t)
			added = append(added, t)
		}
	}
	if len(have) > MaxTargets {
		return TargetSettings{}, invalid("targets", "at most %d", MaxTargets)
	}
	out, err := o.save(ctx, a, b, have, b.Targets.Schedule, b.Targets.Threads, b.Targets.MaxRuntime)
	if err != nil {
		return TargetSettings{}, err
	}
	o.audit(ctx, a, "targets.add", id, fmt.Sprintf("added %d; %s", len(added), countTargets(have)))
	return out, nil
}

func (o *Ops) botTargets(ctx context.Context, a Actor, id string) (store.Bot, []string, error) {
	b, err := o.st.Bot(ctx, a.Account, id)
	if err != nil {
		return store.Bot{}, nil, err
	}
	have, err := o.OpenTargets(b)
	if err != nil {
		return store.Bot{}, nil, err
	}
	return b, have, nil
}

// RemoveTargets removes the targets at these indexes (0-based, as
// Targets lists them).
func (o *Ops) RemoveTargets(ctx context.Context, a Actor, id string, indexes []int) (TargetSettings, error) {
	if err := o.allow(ctx, a, rbac.ManageBots, "targets.remove", id); err != nil {
		return TargetSettings{}, err
	}
	if len(indexes) == 0 {
		return TargetSettings{}, invalid("targets", "none chosen")
	}
	b, have, err := o.botTargets(ctx, a, id)
	if err != nil {
		return TargetSettings{}, err
	}
	drop := map[int]bool{}
	for _, i := range indexes {
		if i < 0 || i >= len(have) {
			return TargetSettings{}, invalid("targets", "no target %d", i)
		}
		drop[i] = true
	}
	kept := make([]string, 0, len(have))
	for i, t := range have {
		if !drop[i] {
			kept = append(kept, t)
		}
	}
	out, err := o.save(ctx, a, b, kept, b.Targets.Schedule, b.Targets.Threads, b.Targets.MaxRuntime)
	if err != nil {
		return TargetSettings{}, err
	}
	o.audit(ctx, a, "targets.remove", id, fmt.Sprintf("removed %d; %s", len(drop), countTargets(kept)))
	return out, nil
}

// SetSchedule changes when and how a bot scans, keeping its targets.
func (o *Ops) SetSchedule(ctx context.Context, a Actor, id string, s protocol.Schedule, threads int,
	maxRuntime time.Duration) (TargetSettings, error) {
	if err := o.allow(ctx, a, rbac.ManageBots, "targets.schedule", id); err != nil {
		return TargetSettings{}, err
	}
	if err := checkSchedule(&s, threads, maxRuntime); err != nil {
		return TargetSettings{}, err
	}
	b, have, err := o.botTargets(ctx, a, id)
	if err != nil {
		return TargetSettings{}, err
	}
	out, err := o.save(ctx, a, b, have, s, threads, maxRuntime)
	if err != nil {
		return TargetSettings{}, err
	}
	o.audit(ctx, a, "targets.schedule", id, scheduleText(s, threads, maxRuntime))
	return out, nil
}

// ImportTargets adds src's targets to dst's (B6); one already there is
// not doubled. dst keeps its schedule.
func (o *Ops) ImportTargets(ctx context.Context, a Actor, dst, src string) (TargetSettings, error) {
	if err := o.allow(ctx, a, rbac.ManageBots, "targets.import", dst); err != nil {
		return TargetSettings{}, err
	}
	if src == "" {
		return TargetSettings{}, invalid("from_bot", "required")
	}
	b, have, err := o.botTargets(ctx, a, dst)
	if err != nil {
		return TargetSettings{}, err
	}
	_, add, err := o.botTargets(ctx, a, src)
	if err != nil {
		return TargetSettings{}, fmt.Errorf("from_bot: %w", err)
	}
	n := 0
	for _, t := range add {
		if !slices.Contains(have, t) {
			have = append(have, t)
			n++
		}
	}
	if len(have) > MaxTargets {
		return TargetSettings{}, invalid("targets", "at most %d", MaxTargets)
	}
	out, err := o.save(ctx, a, b, have, b.Targets.Schedule, b.Targets.Threads, b.Targets.MaxRuntime)
	if err != nil {
		return TargetSettings{}, err
	}
	o.audit(ctx, a, "targets.import", dst, fmt.Sprintf("from bot %s: added %d; %s", src, n, countTargets(have)))
	return out, nil
}
