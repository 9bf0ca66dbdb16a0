package ops

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emsign/bot/controlplane/ordering"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

// ErrOrderingOff: the control plane was started without an ordering
// service (the order methods answer it).
var ErrOrderingOff = errors.New("ordering is not configured")

// Ordering is the ordering service, nil when not configured.
func (o *Ops) Ordering() *ordering.Service { return o.order }

// orderError maps the ordering service's bad input onto InvalidError, so
// that every caller of ops answers it the same way (400 naming the field).
func orderError(err error) error {
	var ie *ordering.InvalidError
	if errors.As(err, &ie) {
		return &InvalidError{Field: ie.Field, Msg: ie.Msg}
	}
	return err
}

// Rotate orders a new certificate for one location of a certificate and
// sends the rotate job to the bot that holds it (D7, B9; ManageOrders).
// The audit entry names the certificate, the location, the action and the
// template, never a keystore password.
func (o *Ops) Rotate(ctx context.Context, a Actor, req ordering.RotateRequest) (store.Order, error) {
	action := req.Action
	if action == "" {
		action = "rotate"
	}
	audit := "certificate." + action
	if err := o.allow(ctx, a, rbac.ManageOrders, audit, req.Fingerprint); err != nil {
		return store.Order{}, err
	}
	if o.order == nil {
		return store.Order{}, ErrOrderingOff
	}
	req.CreatedBy = a.Name
	ord, err := o.order.Rotate(ctx, a.Account, req)
	if err != nil {
		return store.Order{}, orderError(err)
	}
	detail := fmt.Sprintf("order %s: %s at %s with template %s", ord.ID, ord.Action, ord.Location, ord.TemplateID)
	if len(req.Deploy.Reload) > 0 {
		detail += "; reload " + strings.Join(req.Deploy.Reload, " ")
	}
	o.audit(ctx, a, audit, req.Fingerprint, detail)
	return ord, nil
}

// RevokeCertificate revokes a certificate issued through an order, with an
// RFC 5280 reason and remarks (D7; ManageOrders).
func (o *Ops) RevokeCertificate(ctx context.Context, a Actor, fp string, reason int, remarks string) (store.Order, error) {
	return o.lifecycle(ctx, a, "certificate.revoke", fp, fmt.Sprintf("reason %d", reason), remarks,
		func() (store.Order, error) { return o.order.Revoke(ctx, a.Account, fp, reason, remarks, a.Name) })
}

// SuspendCertificate puts a certificate issued through an order on hold
// (D7; ManageOrders).
func (o *Ops) SuspendCertificate(ctx context.Context, a Actor, fp, remarks string) (store.Order, error) {
	return o.lifecycle(ctx, a, "certificate.suspend", fp, "", remarks,
		func() (store.Order, error) { return o.order.Suspend(ctx, a.Account, fp, remarks, a.Name) })
}

// ResumeCertificate lifts a suspension (D7; ManageOrders).
func (o *Ops) ResumeCertificate(ctx context.Context, a Actor, fp string) (store.Order, error) {
	return o.lifecycle(ctx, a, "certificate.resume", fp, "", "",
		func() (store.Order, error) { return o.order.Resume(ctx, a.Account, fp, a.Name) })
}

func (o *Ops) lifecycle(ctx context.Context, a Actor, action, fp, what, remarks string,
	do func() (store.Order, error)) (store.Order, error) {
	if err := o.allow(ctx, a, rbac.ManageOrders, action, fp); err != nil {
		return store.Order{}, err
	}
	if o.order == nil {
		return store.Order{}, ErrOrderingOff
	}
	ord, err := do()
	if err != nil {
		return store.Order{}, orderError(err)
	}
	detail := "order " + ord.ID
	if what != "" {
		detail += ": " + what
	}
	if remarks != "" {
		detail += "; remarks: " + remarks
	}
	o.audit(ctx, a, action, fp, detail)
	return ord, nil
}
