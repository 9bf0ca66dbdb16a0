// Package ca is the contract between the control plane's ordering and the
// certificate authorities it orders from (P7): one small interface every
// CA connector implements (connectors/ca/<name>), and optional
// capabilities a caller finds by type assertion (a CA that can suspend, or
// serve a CRL). Connectors import this package and protocol only.
package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"time"
)

// Issuer is a certificate authority the control plane orders from.
type Issuer interface {
	// Issue signs the CSR (or orders it signed) and returns the
	// certificate with its chain.
	Issue(ctx context.Context, req *IssueRequest) (*IssueResponse, error)
	// Renew issues a successor of a certificate this CA issued, for the
	// CSR (a new key, or the same one). A CA without a renewal of its own
	// issues anew.
	Renew(ctx context.Context, req *RenewRequest) (*IssueResponse, error)
	// Revoke revokes a certificate this CA issued.
	Revoke(ctx context.Context, req *RevokeRequest) error
	// Status says whether a certificate this CA issued is good, revoked or
	// suspended, as the CA knows it.
	Status(ctx context.Context, req *StatusRequest) (*StatusResponse, error)
}

// Suspender is a CA that can suspend a certificate (certificateHold) and
// lift the suspension.
type Suspender interface {
	Suspend(ctx context.Context, req *RevokeRequest) error
	Resume(ctx context.Context, serial string) error
}

// CRLProvider is a CA that publishes a CRL of what it revoked.
type CRLProvider interface {
	// CRL returns the current CRL, DER.
	CRL(ctx context.Context) ([]byte, error)
}

// OCSPResponder is a CA that answers OCSP requests (RFC 6960) for what it
// issued.
type OCSPResponder interface {
	// OCSP answers a DER OCSP request with a DER response.
	OCSP(ctx context.Context, request []byte) ([]byte, error)
}

// IssueRequest is one certificate to issue.
type IssueRequest struct {
	CSR *x509.CertificateRequest
	// Lifetime asks for a validity period; zero takes the CA's default.
	// A CA may shorten it (its own or the CA/Browser Forum's maximum).
	Lifetime time.Duration
	// Profile names the CA's product or template (a DigiCert product, a
	// local CA's profile); "" takes the connector's default.
	Profile string
	// OrderRef is the caller's idempotency key: a CA that supports one
	// (an order ID it remembers) returns the same certificate when asked
	// twice with the same reference.
	OrderRef string
}

// IssueResponse is an issued certificate.
type IssueResponse struct {
	Certificate *x509.Certificate
	// Chain holds the intermediates, issuing CA first (no root unless the
	// CA sends it).
	Chain []*x509.Certificate
	// CAOrderID is the CA's own reference for the order, kept for renewal,
	// revocation and support calls ("" when the CA has none).
	CAOrderID string
}

// RenewRequest renews a certificate.
type RenewRequest struct {
	Certificate *x509.Certificate
	CSR         *x509.CertificateRequest
	CAOrderID   string
	Lifetime    time.Duration
	Profile     string
	OrderRef    string
}

// Revocation reasons (RFC 5280 5.3.1) a caller may give.
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonCACompromise         = 2
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
	ReasonCertificateHold      = 6
)

// RevokeRequest revokes (or suspends) a certificate.
type RevokeRequest struct {
	Certificate *x509.Certificate
	CAOrderID   string
	Reason      int
	// Remarks are the person's words, for the CA's record (D7).
	Remarks string
}

// StatusRequest asks about a certificate.
type StatusRequest struct {
	Certificate *x509.Certificate
	CAOrderID   string
}

// Certificate statuses.
const (
	StatusGood      = "good"
	StatusRevoked   = "revoked"
	StatusSuspended = "suspended"
	StatusUnknown   = "unknown"
)

// StatusResponse is what the CA knows of a certificate.
type StatusResponse struct {
	Status    string
	RevokedAt time.Time
	Reason    int
}

// Errors connectors wrap, so that ordering can tell a refusal (do not
// retry) from a failure (retry later).
var (
	// ErrRejected: the CA refused the request (policy, a name it will not
	// certify, a bad CSR). Retrying the same request will not help.
	ErrRejected = errors.New("rejected by the CA")
	// ErrNotIssuedHere: the certificate is not one this CA issued.
	ErrNotIssuedHere = errors.New("not issued by this CA")
	// ErrNotSupported: the CA cannot do this (e.g. suspend).
	ErrNotSupported = errors.New("not supported by this CA")
)
