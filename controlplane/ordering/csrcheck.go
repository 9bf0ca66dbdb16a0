package ordering

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/emsign/bot/agent/keygen"
	"github.com/emsign/bot/connectors/ca"
	"github.com/emsign/bot/connectors/ca/digicert"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// maxCSR bounds a posted CSR (a 16384-bit RSA CSR is about 3 KB).
const maxCSR = 64 << 10

// parseCSR reads a PEM CSR and checks its signature and key.
func parseCSR(p string) (*x509.CertificateRequest, error) {
	if len(p) > maxCSR {
		return nil, invalid("csr", "larger than %d bytes", maxCSR)
	}
	b, _ := pem.Decode([]byte(p))
	if b == nil || (b.Type != "CERTIFICATE REQUEST" && b.Type != "NEW CERTIFICATE REQUEST") {
		return nil, invalid("csr", "want a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, invalid("csr", "does not parse: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, invalid("csr", "signature does not verify: %v", err)
	}
	if err := checkKey(csr.PublicKey); err != nil {
		return nil, invalid("csr", "public key: %v", err)
	}
	return csr, nil
}

// checkKey accepts the keys a CA issues for: RSA 2048..16384 bits, ECDSA
// P-256/P-384/P-521, Ed25519.
func checkKey(k crypto.PublicKey) error {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 16384 {
			return fmt.Errorf("RSA %d bits outside 2048..16384", n)
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return fmt.Errorf("ECDSA curve %s not accepted", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("%T not accepted", k)
	}
	return nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// expectedNames is the subject and SANs the order's CSR must carry: the
// CSR spec the rotation was sent with, with the defaults the bot takes
// from the old certificate (keygen.Template.WithDefaults, the bot's own
// rule, so both sides agree).
func expectedNames(spec protocol.CSRSpec, old *x509.Certificate) (keygen.Template, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return keygen.Template{}, err
	}
	var t keygen.Template
	if err := json.Unmarshal(b, &t); err != nil {
		return keygen.Template{}, fmt.Errorf("csr spec: %w", err)
	}
	if spec.CopyFromCertificate {
		t = t.WithDefaults(old)
	}
	return t, nil
}

// compareNames says how csr differs from what was asked: "" when it is
// exactly that (order aside; DNS names case-insensitively).
func compareNames(want keygen.Template, csr *x509.CertificateRequest) string {
	got := keygen.FromCertificate(&x509.Certificate{Subject: csr.Subject, DNSNames: csr.DNSNames,
		IPAddresses: csr.IPAddresses, EmailAddresses: csr.EmailAddresses, URIs: csr.URIs})
	var diffs []string
	cmp := func(field string, w, g []string, fold bool) {
		norm := func(v []string) []string {
			out := make([]string, 0, len(v))
			for _, s := range v {
				if fold {
					s = strings.ToLower(strings.TrimSuffix(s, "."))
				}
				out = append(out, s)
			}
			slices.Sort(out)
			return slices.Compact(out)
		}
		nw, ng := norm(w), norm(g)
		if slices.Equal(nw, ng) {
			return
		}
		var extra, missing []string
		for _, s := range ng {
			if !slices.Contains(nw, s) {
				extra = append(extra, s)
			}
		}
		for _, s := range nw {
			if !slices.Contains(ng, s) {
				missing = append(missing, s)
			}
		}
		d := field + ":"
		if len(extra) > 0 {
			d += fmt.Sprintf(" not asked %q", extra)
		}
		if len(missing) > 0 {
			d += fmt.Sprintf(" missing %q", missing)
		}
		diffs = append(diffs, d)
	}
	one := func(s string) []string {
		if s == "" {
			return nil
		}
		return []string{s}
	}
	ips := func(v []net.IP) []string {
		out := []string{}
		for _, ip := range v {
			out = append(out, ip.String())
		}
		return out
	}
	uris := func(t keygen.Template) []string {
		out := slices.Clone(t.URIStrings)
		for _, u := range t.URIs {
			out = append(out, u.String())
		}
		return out
	}
	extra := func(t keygen.Template) []string {
		out := []string{}
		for _, a := range t.ExtraNames {
			out = append(out, a.OID+"="+a.Value)
		}
		return out
	}
	cmp("subject cn", one(want.CommonName), one(got.CommonName), false)
	cmp("subject o", want.Organization, got.Organization, false)
	cmp("subject ou", want.OrganizationalUnit, got.OrganizationalUnit, false)
	cmp("subject l", want.Locality, got.Locality, false)
	cmp("subject st", want.Province, got.Province, false)
	cmp("subject c", want.Country, got.Country, false)
	cmp("subject email", want.Email, got.Email, false)
	cmp("subject attributes", extra(want), extra(got), false)
	cmp("dns names", want.DNSNames, got.DNSNames, true)
	cmp("ip addresses", ips(want.IPAddresses), ips(got.IPAddresses), false)
	cmp("email addresses", want.EmailAddresses, got.EmailAddresses, true)
	cmp("uris", uris(want), uris(got), false)
	return strings.Join(diffs, "; ")
}

// fingerprint is the SHA-256 of DER, hex.
func fingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

func certPEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// parseCertPEM reads the first certificate of PEM text.
func parseCertPEM(p string) (*x509.Certificate, error) {
	b, _ := pem.Decode([]byte(p))
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

// OrderCSR answers a bot's CSR for one of its orders: the certificate
// when issued, pending while the CA works. Exactly one call (on any
// replica) asks the CA; a CSR posted again for the same key gets the same
// certificate, for another key a conflict.
func (s *Service) OrderCSR(ctx context.Context, bot store.Bot, orderID, csrPEM string) (protocol.OrderCertificate, error) {
	o, err := s.st.OrderForBot(ctx, bot.ID, orderID)
	if err != nil {
		return protocol.OrderCertificate{}, fmt.Errorf("ordering: order %s: %w", orderID, err)
	}
	csr, err := parseCSR(csrPEM)
	if err != nil {
		return protocol.OrderCertificate{}, err
	}
	if o.CertPEM != "" {
		return issuedAnswer(o, csr)
	}
	switch o.Status {
	case store.OrderInitiated, store.OrderOrdering:
	case store.OrderFailed:
		return protocol.OrderCertificate{}, &RejectedError{Reason: "order " + o.ID + " failed: " + o.Error}
	default:
		return protocol.OrderCertificate{}, conflict("order %s is %s: it takes no CSR", o.ID, o.Status)
	}
	if o.CSRPEM != "" {
		if prev, err := parseCSR(o.CSRPEM); err == nil && !samePublicKey(prev.PublicKey, csr.PublicKey) &&
			o.Status == store.OrderOrdering {
			return protocol.OrderCertificate{}, conflict("order %s is being issued for another key", o.ID)
		}
	}
	if err := s.checkNames(ctx, o, csr); err != nil {
		return protocol.OrderCertificate{}, err
	}
	now := s.now().UTC()
	o, claimed, err := s.st.ClaimOrdering(ctx, bot.ID, o.ID, csrPEM, now, now.Add(-staleOrdering))
	if err != nil {
		return protocol.OrderCertificate{}, fmt.Errorf("ordering: claim order %s: %w", orderID, err)
	}
	call := s.call(o.ID, claimed)
	if claimed {
		go s.issue(context.WithoutCancel(ctx), o, csr, call)
	}
	if call != nil {
		t := time.NewTimer(s.issueWait)
		defer t.Stop()
		select {
		case <-call.done:
		case <-t.C:
		case <-ctx.Done():
			return protocol.OrderCertificate{}, fmt.Errorf("ordering: %w", ctx.Err())
		}
		if o, err = s.st.OrderForBot(ctx, bot.ID, o.ID); err != nil {
			return protocol.OrderCertificate{}, fmt.Errorf("ordering: order %s: %w", orderID, err)
		}
	}
	switch {
	case o.CertPEM != "":
		return issuedAnswer(o, csr)
	case o.Status == store.OrderFailed:
		return protocol.OrderCertificate{}, &RejectedError{Reason: o.Error}
	}
	return protocol.OrderCertificate{Status: protocol.OrderPending, RetryAfter: protocol.Duration(pendingRetry)}, nil
}

// call is this process's CA call of an order: a new one when claimed,
// the one under way otherwise (nil when another replica makes it).
func (s *Service) call(orderID string, claimed bool) *issueCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	if claimed {
		c := &issueCall{done: make(chan struct{})}
		s.inflight[orderID] = c
		return c
	}
	return s.inflight[orderID]
}

// issuedAnswer answers a CSR of an order already issued: the certificate
// for the same key, a conflict for another.
func issuedAnswer(o store.Order, csr *x509.CertificateRequest) (protocol.OrderCertificate, error) {
	c, err := parseCertPEM(o.CertPEM)
	if err != nil {
		return protocol.OrderCertificate{}, fmt.Errorf("ordering: order %s certificate: %w", o.ID, err)
	}
	if !samePublicKey(c.PublicKey, csr.PublicKey) {
		return protocol.OrderCertificate{}, conflict("order %s already issued for another key", o.ID)
	}
	return protocol.OrderCertificate{Status: protocol.OrderIssued, Certificate: o.CertPEM, Chain: o.ChainPEM}, nil
}

// checkNames refuses a CSR asking for names the order did not: a bot may
// not obtain a certificate for other names than the rotation's.
//
// The expected names are rebuilt from the order's provisioning template's
// CSR template and the certificate replaced (the store gives no read of a
// job's payload); a template edited while an order is under way makes its
// CSR differ, and the error says so.
func (s *Service) checkNames(ctx context.Context, o store.Order, csr *x509.CertificateRequest) error {
	leaf, _, err := s.st.CertificateDER(ctx, o.Account, o.Fingerprint)
	if err != nil {
		return fmt.Errorf("ordering: certificate %s of order %s: %w", o.Fingerprint, o.ID, err)
	}
	old, err := x509.ParseCertificate(leaf)
	if err != nil {
		return fmt.Errorf("ordering: certificate %s: %w", o.Fingerprint, err)
	}
	tmpl, err := s.st.ProvisioningTemplate(ctx, o.Account, o.TemplateID)
	if err != nil {
		return fmt.Errorf("ordering: provisioning template %s of order %s: %w", o.TemplateID, o.ID, err)
	}
	spec, err := s.csrSpec(ctx, tmpl)
	if err != nil {
		return err
	}
	want, err := expectedNames(spec, old)
	if err != nil {
		return fmt.Errorf("ordering: %w", err)
	}
	if d := compareNames(want, csr); d != "" {
		return invalid("csr", "the names differ from the order's (%s): a CSR must ask exactly what the rotation asked "+
			"(if the CSR template changed since the order, order again)", d)
	}
	return nil
}

// collector is a CA that can fetch an order placed earlier (DigiCert).
type collector interface {
	Collect(ctx context.Context, orderID string) (*ca.IssueResponse, error)
}

// issue asks the CA for the order's certificate and records the outcome;
// it runs detached from the bot's request.
func (s *Service) issue(parent context.Context, o store.Order, csr *x509.CertificateRequest, call *issueCall) {
	ctx, cancel := context.WithTimeout(parent, issueTimeout)
	defer cancel()
	defer func() {
		s.mu.Lock()
		delete(s.inflight, o.ID)
		s.mu.Unlock()
		close(call.done)
	}()
	resp, err := s.askCA(ctx, o, csr)
	call.err = err
	now := s.now().UTC()
	var pend *digicert.PendingError
	var rej *RejectedError
	switch {
	case err == nil:
		chain := ""
		for _, c := range resp.Chain {
			chain += certPEM(c)
		}
		fp := fingerprint(resp.Certificate.Raw)
		p := store.OrderPatch{Status: ptr(store.OrderIssued), CertPEM: ptr(certPEM(resp.Certificate)), ChainPEM: &chain,
			NewFingerprint: &fp, CAOrderID: &resp.CAOrderID}
		_, err = s.st.TransitionOrder(ctx, o.Account, o.ID, []string{store.OrderOrdering}, p, store.OrderEvent{Time: now,
			Status: store.OrderIssued, OK: true, Message: describeIssue(o.Connector, o.CASettings, resp.Certificate)})
		if err != nil {
			// The CA issued but the store did not take it: the next CSR,
			// after the claim goes stale, asks again with the same
			// OrderRef (the local and ACME connectors answer it with the
			// same certificate).
			s.log.Error("issued certificate not recorded", "order", o.ID, "err", err)
			return
		}
		s.log.Info("certificate issued", "account", o.Account, "order", o.ID, "fingerprint", fp, "connector", o.Connector)
	case errors.Is(err, ca.ErrRejected) || errors.As(err, &rej):
		msg := "the CA refused: " + clip(err.Error())
		if _, err := s.st.TransitionOrder(ctx, o.Account, o.ID, []string{store.OrderOrdering},
			store.OrderPatch{Status: ptr(store.OrderFailed), Error: &msg},
			store.OrderEvent{Time: now, Status: store.OrderFailed, Message: msg}); err != nil {
			s.log.Error("order failure not recorded", "order", o.ID, "err", err)
		}
	default:
		// Pending at the CA, or a failure worth retrying: back to
		// initiated so that the bot's next CSR post claims it again (a
		// DigiCert order is then collected, not bought twice).
		p := store.OrderPatch{Status: ptr(store.OrderInitiated)}
		msg := "the CA did not answer yet, retried at the bot's next post: " + clip(err.Error())
		if errors.As(err, &pend) {
			p.CAOrderID = &pend.OrderID
			msg = "pending at the CA: " + clip(err.Error())
		}
		if _, err := s.st.TransitionOrder(ctx, o.Account, o.ID, []string{store.OrderOrdering}, p,
			store.OrderEvent{Time: now, Status: store.OrderInitiated, Message: msg}); err != nil {
			s.log.Error("order retry not recorded", "order", o.ID, "err", err)
		}
		s.log.Warn("ca call did not issue", "order", o.ID, "connector", o.Connector, "err", err)
	}
}

// askCA issues (or renews, or collects) the order's certificate.
func (s *Service) askCA(ctx context.Context, o store.Order, csr *x509.CertificateRequest) (*ca.IssueResponse, error) {
	iss, err := s.issuer(ctx, o.Account, o.Connector, o.CASettings)
	if err != nil {
		return nil, err
	}
	if c, ok := iss.(collector); ok && o.CAOrderID != "" {
		resp, err := c.Collect(ctx, o.CAOrderID)
		if err != nil {
			return nil, err
		}
		if !samePublicKey(resp.Certificate.PublicKey, csr.PublicKey) {
			return nil, &RejectedError{Reason: "the CA's order " + o.CAOrderID + " is for another key"}
		}
		return resp, nil
	}
	if o.Action == protocol.ActionRenew {
		leaf, _, err := s.st.CertificateDER(ctx, o.Account, o.Fingerprint)
		if err == nil {
			if old, err := x509.ParseCertificate(leaf); err == nil {
				resp, err := iss.Renew(ctx, &ca.RenewRequest{Certificate: old, CSR: csr, CAOrderID: s.caOrderOf(ctx, o),
					OrderRef: o.ID})
				if !errors.Is(err, ca.ErrNotIssuedHere) {
					return resp, err
				}
			}
		}
	}
	return iss.Issue(ctx, &ca.IssueRequest{CSR: csr, OrderRef: o.ID})
}

// caOrderOf finds the CA's reference of the certificate an order
// replaces, when an earlier order issued it.
func (s *Service) caOrderOf(ctx context.Context, o store.Order) string {
	prev, err := s.issuedOrder(ctx, o.Account, o.Fingerprint)
	if err != nil {
		return ""
	}
	return prev.CAOrderID
}
