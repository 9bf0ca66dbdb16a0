package local

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
)

// CRL signs a fresh CRL of every revoked and suspended certificate the
// ledger lists (suspended ones with reason certificateHold), numbered by
// the ledger's counter, valid for Config.CRLInterval.
func (a *CA) CRL(ctx context.Context) ([]byte, error) {
	if a.cfg.Certificate.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return nil, fmt.Errorf("local ca: crl: the CA certificate lacks the cRLSign key usage")
	}
	recs, err := a.cfg.Ledger.Revoked(ctx)
	if err != nil {
		return nil, fmt.Errorf("local ca: crl: ledger: %w", err)
	}
	now := a.cfg.Now()
	entries := make([]x509.RevocationListEntry, 0, len(recs))
	for _, r := range recs {
		n, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("local ca: crl: ledger serial %q is not hex", r.Serial)
		}
		at := r.RevokedAt
		if at.IsZero() {
			at = now
		}
		entries = append(entries, x509.RevocationListEntry{
			SerialNumber:   n,
			RevocationTime: at,
			// Zero (unspecified) leaves the extension out, as RFC 5280
			// 5.3.1 asks.
			ReasonCode: r.Reason,
		})
	}
	number, err := a.cfg.Ledger.NextCRLNumber(ctx)
	if err != nil {
		return nil, fmt.Errorf("local ca: crl: ledger: %w", err)
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                now,
		NextUpdate:                now.Add(a.cfg.CRLInterval),
		RevokedCertificateEntries: entries,
	}, a.crlIssuer(), a.cfg.Signer)
	if err != nil {
		return nil, fmt.Errorf("local ca: crl: sign: %w", err)
	}
	return der, nil
}

// crlIssuer is the CA certificate with a subject key identifier, which
// x509.CreateRevocationList needs for the CRL's authority key identifier.
func (a *CA) crlIssuer() *x509.Certificate {
	if len(a.cfg.Certificate.SubjectKeyId) > 0 {
		return a.cfg.Certificate
	}
	c := *a.cfg.Certificate
	c.SubjectKeyId = a.caKeyID
	return &c
}
