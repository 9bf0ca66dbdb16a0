package ops

import (
	"context"
	"errors"
	"fmt"

	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

// ActionDenied is the audit action of a refused change; its detail names
// the action attempted.
const ActionDenied = "denied"

// Record appends an audit entry for an event that is not a change made
// through ops: a login, a logout, a failed login, a download.
func (o *Ops) Record(ctx context.Context, a Actor, action, object, detail string) error {
	if action == "" {
		return errors.New("audit: empty action")
	}
	return o.append(ctx, a, action, object, detail)
}

// allow checks that the actor's role has p; a refusal is audited as
// "denied" with the attempted action, and answered with ErrForbidden
// naming the permission.
func (o *Ops) allow(ctx context.Context, a Actor, p rbac.Permission, action, object string) error {
	if err := checkActor(a); err != nil {
		return err
	}
	if rbac.Can(a.Role, p) {
		return nil
	}
	return o.deny(ctx, a, action, object, fmt.Sprintf("your role (%s) lacks %s", a.Role, p))
}

// deny audits a refused change and returns ErrForbidden with why.
func (o *Ops) deny(ctx context.Context, a Actor, action, object, why string) error {
	o.audit(ctx, a, ActionDenied, object, action+": "+why)
	return fmt.Errorf("%w: %s", ErrForbidden, why)
}

func checkActor(a Actor) error {
	if a.Account == "" || a.Kind == "" || a.Name == "" {
		return errors.New("ops: actor without account, kind or name")
	}
	return nil
}

// audit appends an entry after a change is made. The change is done by
// then: a failing audit log is logged loudly rather than reported as a
// failed change (which would, e.g., lose a bot token shown only once).
func (o *Ops) audit(ctx context.Context, a Actor, action, object, detail string) {
	if err := o.append(ctx, a, action, object, detail); err != nil {
		o.log.Error("audit entry not written", "account", a.Account, "actor", a.Name, "action", action, "object", object,
			"err", err)
	}
}

func (o *Ops) append(ctx context.Context, a Actor, action, object, detail string) error {
	if err := checkActor(a); err != nil {
		return err
	}
	err := o.st.AppendAudit(ctx, store.AuditEntry{
		Account: a.Account, At: o.now().UTC(), ActorKind: a.Kind, Actor: a.Name, Action: action, Object: object,
		Detail: detail, Remote: a.Remote,
	})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}
