package ordering

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/emsign/bot/connectors/ca"
	"github.com/emsign/bot/controlplane/store"
)

// Associated data of what ops seals: the same strings as ops uses
// (controlplane/ops targets.go, templates.go). ops' tests seal through ops
// and open here, so a drift fails them.
func rotationAAD(account, jobID string) []byte {
	return []byte("emsign-cp/rotation/" + account + "/" + jobID)
}
func pinAAD(account string) []byte      { return []byte("emsign-cp/key-profile-pin/" + account) }
func keystoreAAD(account string) []byte { return []byte("emsign-cp/keystore-password/" + account) }
func targetsAAD(botID string) []byte    { return []byte("emsign-cp/targets/" + botID) }

func (s *Service) openPIN(p store.KeyProfile) (string, error) {
	if len(p.PINSealed) == 0 {
		return "", nil
	}
	b, err := s.sealer.Open(p.PINSealed, pinAAD(p.Account))
	if err != nil {
		return "", fmt.Errorf("key profile %s PIN: %w", p.ID, err)
	}
	return string(b), nil
}

func (s *Service) openKeystorePassword(t store.ProvisioningTemplate) (string, error) {
	if len(t.KeystorePasswordSealed) == 0 {
		return "", nil
	}
	b, err := s.sealer.Open(t.KeystorePasswordSealed, keystoreAAD(t.Account))
	if err != nil {
		return "", fmt.Errorf("provisioning template %s keystore password: %w", t.ID, err)
	}
	return string(b), nil
}

func (s *Service) openTargets(b store.Bot) ([]string, error) {
	if len(b.Targets.Sealed) == 0 {
		return nil, nil
	}
	p, err := s.sealer.Open(b.Targets.Sealed, targetsAAD(b.ID))
	if err != nil {
		return nil, fmt.Errorf("bot %s targets: %w", b.ID, err)
	}
	var t struct {
		Targets []string `json:"targets"`
	}
	if err := json.Unmarshal(p, &t); err != nil {
		return nil, fmt.Errorf("bot %s targets: %w", b.ID, err)
	}
	return t.Targets, nil
}

// issuedOrder is the order that issued the certificate fp.
func (s *Service) issuedOrder(ctx context.Context, account, fp string) (store.Order, error) {
	fp = strings.ToLower(fp)
	for off := 0; ; off += 100 {
		os, err := s.st.Orders(ctx, account, store.OrderFilter{Fingerprint: fp, Limit: 100, Offset: off})
		if err != nil {
			return store.Order{}, fmt.Errorf("ordering: orders of %s: %w", fp, err)
		}
		for _, o := range os {
			if strings.EqualFold(o.NewFingerprint, fp) && o.CertPEM != "" {
				return o, nil
			}
		}
		if len(os) < 100 {
			break
		}
	}
	return store.Order{}, invalid("fingerprint", "certificate %s was not issued through emSign: revoke or suspend it at the CA that issued it", fp)
}

// Revoke revokes a certificate issued through an order, at its CA, with
// a reason (RFC 5280) and the person's remarks (D7).
func (s *Service) Revoke(ctx context.Context, account, fingerprint string, reason int, remarks, actor string) (store.Order, error) {
	if reason < 0 || reason > 10 || reason == 7 {
		return store.Order{}, invalid("reason", "want an RFC 5280 reason code: 0-6, 8-10")
	}
	if reason == ca.ReasonCertificateHold {
		return store.Order{}, invalid("reason", "6 (certificateHold) is a suspension: suspend instead")
	}
	return s.lifecycle(ctx, account, fingerprint, "revoke", actor, remarks, func(iss ca.Issuer, o store.Order, req *ca.RevokeRequest) error {
		req.Reason = reason
		return iss.Revoke(ctx, req)
	}, store.OrderRevoked, fmt.Sprintf("revoked (reason %d)", reason))
}

// Suspend puts a certificate issued through an order on hold, when its CA
// can (the local CA can; ACME and DigiCert cannot).
func (s *Service) Suspend(ctx context.Context, account, fingerprint, remarks, actor string) (store.Order, error) {
	return s.lifecycle(ctx, account, fingerprint, "suspend", actor, remarks, func(iss ca.Issuer, o store.Order, req *ca.RevokeRequest) error {
		sp, ok := iss.(ca.Suspender)
		if !ok {
			return invalid("fingerprint", "the %s CA cannot suspend: revoke instead", o.Connector)
		}
		req.Reason = ca.ReasonCertificateHold
		return sp.Suspend(ctx, req)
	}, store.OrderSuspended, "suspended")
}

// Resume lifts a suspension; the order goes back to the status it had.
func (s *Service) Resume(ctx context.Context, account, fingerprint, actor string) (store.Order, error) {
	return s.lifecycle(ctx, account, fingerprint, "resume", actor, "", func(iss ca.Issuer, o store.Order, req *ca.RevokeRequest) error {
		sp, ok := iss.(ca.Suspender)
		if !ok {
			return invalid("fingerprint", "the %s CA cannot suspend or resume", o.Connector)
		}
		if o.Status != store.OrderSuspended {
			return conflict("certificate %s is not suspended (order %s is %s)", fingerprint, o.ID, o.Status)
		}
		return sp.Resume(ctx, req.Certificate.SerialNumber.Text(16))
	}, "", "resumed")
}

func (s *Service) lifecycle(ctx context.Context, account, fingerprint, what, actor, remarks string,
	do func(ca.Issuer, store.Order, *ca.RevokeRequest) error, status, msg string) (store.Order, error) {
	if fingerprint == "" {
		return store.Order{}, invalid("fingerprint", "required")
	}
	if len(remarks) > 1000 {
		return store.Order{}, invalid("remarks", "at most 1000 characters")
	}
	o, err := s.issuedOrder(ctx, account, fingerprint)
	if err != nil {
		return store.Order{}, err
	}
	cert, err := parseCertPEM(o.CertPEM)
	if err != nil {
		return store.Order{}, fmt.Errorf("ordering: order %s certificate: %w", o.ID, err)
	}
	if o.Status == store.OrderRevoked {
		return store.Order{}, conflict("certificate %s is already revoked", fingerprint)
	}
	iss, err := s.issuer(ctx, account, o.Connector, o.CASettings)
	if err != nil {
		return store.Order{}, fmt.Errorf("ordering: %w", err)
	}
	req := &ca.RevokeRequest{Certificate: cert, CAOrderID: o.CAOrderID, Remarks: remarks}
	if err := do(iss, o, req); err != nil {
		var ie *InvalidError
		if errors.As(err, &ie) || errors.Is(err, store.ErrConflict) {
			return store.Order{}, err
		}
		if errors.Is(err, ca.ErrRejected) || errors.Is(err, ca.ErrNotSupported) || errors.Is(err, ca.ErrNotIssuedHere) {
			return store.Order{}, conflict("the CA refused to %s %s: %v", what, fingerprint, err)
		}
		return store.Order{}, fmt.Errorf("ordering: %s %s: %w", what, fingerprint, err)
	}
	if o.Connector == KindLocal {
		s.locals.dropCRL(account)
	}
	if status == "" {
		status = s.statusBeforeSuspension(ctx, o)
	}
	if remarks != "" {
		msg += ": " + remarks
	}
	if actor != "" {
		msg += " (by " + actor + ")"
	}
	p := store.OrderPatch{Status: &status}
	if remarks != "" {
		p.Remarks = &remarks
	}
	got, err := s.st.TransitionOrder(ctx, account, o.ID, nil, p, store.OrderEvent{Time: s.now().UTC(), Status: status, OK: true,
		Message: msg})
	if err != nil {
		return store.Order{}, fmt.Errorf("ordering: order %s to %s: %w", o.ID, status, err)
	}
	s.log.Info("certificate "+what, "account", account, "order", o.ID, "fingerprint", fingerprint)
	return got, nil
}

// statusBeforeSuspension is the order's status before its last
// suspension (issued when the history does not tell).
func (s *Service) statusBeforeSuspension(ctx context.Context, o store.Order) string {
	evs, err := s.st.OrderEvents(ctx, o.Account, o.ID)
	if err != nil {
		return store.OrderIssued
	}
	for i := len(evs) - 1; i > 0; i-- {
		if evs[i].Status == store.OrderSuspended && evs[i].Step == "" && evs[i-1].Status != store.OrderSuspended {
			return evs[i-1].Status
		}
	}
	return store.OrderIssued
}
