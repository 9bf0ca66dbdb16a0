package ops

import (
	"context"
	"fmt"
	"strings"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// Limits of a bot's details (B7).
const (
	maxNameLen = 200
	maxTags    = 100
)

func checkBotName(name string) (string, error) {
	n := strings.TrimSpace(name)
	if n == "" {
		return "", invalid("name", "required")
	}
	if len(n) > maxNameLen {
		return "", invalid("name", "at most %d characters", maxNameLen)
	}
	return n, nil
}

// CreateBot adds a bot; its token is returned once (B2).
func (o *Ops) CreateBot(ctx context.Context, a Actor, name, group string) (id, token string, err error) {
	if err := o.allow(ctx, a, rbac.ManageBots, "bot.create", ""); err != nil {
		return "", "", err
	}
	if name, err = checkBotName(name); err != nil {
		return "", "", err
	}
	group = strings.TrimSpace(group)
	if len(group) > maxNameLen {
		return "", "", invalid("group", "at most %d characters", maxNameLen)
	}
	id, token, err = admin.CreateBot(ctx, o.st, a.Account, name, group)
	if err != nil {
		return "", "", err
	}
	o.audit(ctx, a, "bot.create", id, fmt.Sprintf("name %q, group %q", name, group))
	return id, token, nil
}

// UpdateBot changes a bot's name, group or tags (B7).
func (o *Ops) UpdateBot(ctx context.Context, a Actor, id string, p store.BotPatch) (store.Bot, error) {
	if err := o.allow(ctx, a, rbac.ManageBots, "bot.update", id); err != nil {
		return store.Bot{}, err
	}
	var changed []string
	if p.Name != nil {
		n, err := checkBotName(*p.Name)
		if err != nil {
			return store.Bot{}, err
		}
		p.Name = &n
		changed = append(changed, fmt.Sprintf("name %q", n))
	}
	if p.Group != nil {
		g := strings.TrimSpace(*p.Group)
		if len(g) > maxNameLen {
			return store.Bot{}, invalid("group", "at most %d characters", maxNameLen)
		}
		p.Group = &g
		changed = append(changed, fmt.Sprintf("group %q", g))
	}
	if p.Tags != nil {
		if len(*p.Tags) > maxTags {
			return store.Bot{}, invalid("tags", "at most %d", maxTags)
		}
		tags := make([]store.Tag, len(*p.Tags))
		for i, t := range *p.Tags {
			t.Name = strings.TrimSpace(t.Name)
			if t.Name == "" {
				return store.Bot{}, invalid(fmt.Sprintf("tags[%d].name", i), "required")
			}
			if len(t.Name) > maxNameLen || len(t.Value) > 1000 || len(t.Remarks) > 1000 {
				return store.Bot{}, invalid(fmt.Sprintf("tags[%d]", i), "name at most %d characters, value and remarks at most 1000",
					maxNameLen)
			}
			tags[i] = t
		}
		p.Tags = &tags
		changed = append(changed, fmt.Sprintf("tags: %d", len(tags)))
	}
	b, err := o.st.UpdateBot(ctx, a.Account, id, p)
	if err != nil {
		return store.Bot{}, err
	}
	detail := strings.Join(changed, ", ")
	if detail == "" {
		detail = "nothing changed"
	}
	o.audit(ctx, a, "bot.update", id, detail)
	return b, nil
}

// SetBotStatus suspends (protocol.BotSuspended) or deactivates
// (protocol.BotInactive) a bot (B8).
func (o *Ops) SetBotStatus(ctx context.Context, a Actor, id, status string) error {
	var action string
	switch status {
	case protocol.BotSuspended:
		action = "bot.suspend"
	case protocol.BotInactive:
		action = "bot.deactivate"
	default:
		return invalid("status", "want %s or %s", protocol.BotSuspended, protocol.BotInactive)
	}
	if err := o.allow(ctx, a, rbac.ManageBots, action, id); err != nil {
		return err
	}
	if err := o.st.SetBotStatus(ctx, a.Account, id, status); err != nil {
		return err
	}
	o.audit(ctx, a, action, id, "status "+status)
	return nil
}

// RegenerateToken gives the bot a new token (returned once) and revokes
// its certificate: it must activate again (B8).
func (o *Ops) RegenerateToken(ctx context.Context, a Actor, id string) (string, error) {
	if err := o.allow(ctx, a, rbac.ManageBots, "bot.token", id); err != nil {
		return "", err
	}
	token, err := admin.RegenerateToken(ctx, o.st, a.Account, id)
	if err != nil {
		return "", err
	}
	o.audit(ctx, a, "bot.token", id, "new token; certificate revoked")
	return token, nil
}

// RunScan queues a scan now; a suspended or deactivated bot cannot scan
// (store.ErrConflict).
func (o *Ops) RunScan(ctx context.Context, a Actor, id string) (string, error) {
	if err := o.allow(ctx, a, rbac.ManageBots, "bot.scan", id); err != nil {
		return "", err
	}
	b, err := o.st.Bot(ctx, a.Account, id)
	if err != nil {
		return "", err
	}
	if b.Status == protocol.BotSuspended || b.Status == protocol.BotInactive {
		return "", fmt.Errorf("bot is %s: it cannot scan: %w", b.Status, store.ErrConflict)
	}
	scanID := admin.NewID()
	if err := o.st.QueueScan(ctx, a.Account, b.ID, scanID, admin.NewID()); err != nil {
		return "", err
	}
	o.notify.Notify(b.ID)
	o.audit(ctx, a, "bot.scan", b.ID, "scan "+scanID)
	return scanID, nil
}
