package local

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/emsign/bot/connectors/ca"
	"golang.org/x/crypto/ocsp"
)

// OCSP answers a DER OCSP request (RFC 6960) with a DER response signed by
// the CA itself: good, revoked (suspended ones as revoked with reason
// certificateHold, which RFC 6960 2.2 allows to turn good again) or
// unknown. A request it cannot parse gets a malformedRequest response, one
// for another issuer an unauthorized response (RFC 6960 2.3), both with a
// nil error; an error means the CA could not answer (the ledger failed),
// and Handler then sends internalError.
//
// The request's nonce is not echoed: golang.org/x/crypto/ocsp neither
// reads request extensions nor writes response extensions (RFC 5019
// responders need not); openssl warns "no nonce in response" and goes on.
func (a *CA) OCSP(ctx context.Context, request []byte) ([]byte, error) {
	if _, ok := a.cfg.Signer.Public().(ed25519.PublicKey); ok {
		return nil, fmt.Errorf("local ca: ocsp: %w: golang.org/x/crypto/ocsp cannot sign with Ed25519", ca.ErrNotSupported)
	}
	req, err := ocsp.ParseRequest(request)
	if err != nil {
		a.log.Debug("local ca: ocsp: malformed request", "error", err)
		return ocsp.MalformedRequestErrorResponse, nil
	}
	if !req.HashAlgorithm.Available() {
		return ocsp.MalformedRequestErrorResponse, nil
	}
	h := req.HashAlgorithm.New()
	h.Write(a.cfg.Certificate.RawSubject)
	nameHash := h.Sum(nil)
	h.Reset()
	h.Write(publicKeyBits(a.cfg.Certificate.PublicKey))
	keyHash := h.Sum(nil)
	if !bytes.Equal(nameHash, req.IssuerNameHash) || !bytes.Equal(keyHash, req.IssuerKeyHash) {
		// Another CA's certificate: RFC 6960 2.3 says unauthorized.
		return ocsp.UnauthorizedErrorResponse, nil
	}
	now := a.cfg.Now()
	tmpl := ocsp.Response{
		SerialNumber: req.SerialNumber,
		ThisUpdate:   now,
		NextUpdate:   now.Add(a.cfg.OCSPValidity),
		IssuerHash:   req.HashAlgorithm,
		Status:       ocsp.Unknown,
	}
	rec, err := a.cfg.Ledger.Get(ctx, SerialString(req.SerialNumber))
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("local ca: ocsp: ledger: %w", err)
	case rec.Status == ca.StatusGood:
		tmpl.Status = ocsp.Good
	case rec.Status == ca.StatusRevoked || rec.Status == ca.StatusSuspended:
		tmpl.Status = ocsp.Revoked
		tmpl.RevokedAt = rec.RevokedAt
		tmpl.RevocationReason = rec.Reason
		if tmpl.RevokedAt.IsZero() {
			tmpl.RevokedAt = now
		}
	}
	der, err := ocsp.CreateResponse(a.cfg.Certificate, a.cfg.Certificate, tmpl, a.cfg.Signer)
	if err != nil {
		return nil, fmt.Errorf("local ca: ocsp: sign: %w", err)
	}
	return der, nil
}
