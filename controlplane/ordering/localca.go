package ordering

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/emsign/bot/connectors/ca/local"
	"github.com/emsign/bot/controlplane/store"
)

// The local CA (P7): one private root per account, made at first use.
const (
	localCAName     = "emSign Private CA"
	localCALifetime = 10 * 365 * 24 * time.Hour
	// crlCacheFor is how long a CRL is served before a new one is signed
	// (local.CA.CRL signs at each call); a revocation through this
	// service drops it at once.
	crlCacheFor = time.Hour
)

func localCAAAD(account string) []byte { return []byte("emsign-cp/local-ca-key/" + account) }

// localCAs caches each account's built local.CA and its CRL.
type localCAs struct {
	s  *Service
	mu sync.Mutex
	m  map[string]*localEntry
}

type localEntry struct {
	ca      *local.CA
	cert    *x509.Certificate
	crl     []byte
	crlTime time.Time
}

func newLocalCAs(s *Service) *localCAs { return &localCAs{s: s, m: map[string]*localEntry{}} }

// get is the account's local CA; create makes it when the account has
// none (otherwise store.ErrNotFound).
func (l *localCAs) get(ctx context.Context, account string, create bool) (*local.CA, error) {
	e, err := l.entry(ctx, account, create)
	if err != nil {
		return nil, err
	}
	return e.ca, nil
}

func (l *localCAs) entry(ctx context.Context, account string, create bool) (*localEntry, error) {
	l.mu.Lock()
	e, ok := l.m[account]
	l.mu.Unlock()
	if ok {
		return e, nil
	}
	rec, err := l.s.st.LocalCA(ctx, account)
	if errors.Is(err, store.ErrNotFound) && create {
		rec, err = l.create(ctx, account)
	}
	if err != nil {
		return nil, fmt.Errorf("local ca of %s: %w", account, err)
	}
	e, err = l.build(rec)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	if prev, ok := l.m[account]; ok {
		e = prev
	} else {
		l.m[account] = e
	}
	l.mu.Unlock()
	return e, nil
}

// create makes the account's root; when another call (or replica) made
// one first, that one is used.
func (l *localCAs) create(ctx context.Context, account string) (store.LocalCA, error) {
	acc, err := l.s.st.Account(ctx, account)
	if err != nil {
		return store.LocalCA{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return store.LocalCA{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return store.LocalCA{}, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return store.LocalCA{}, err
	}
	ski := sha1.Sum(pubDER)
	now := l.s.now().UTC()
	name := pkix.Name{CommonName: localCAName + " " + acc.Name, Organization: []string{acc.Name},
		OrganizationalUnit: []string{localCAName}, SerialNumber: account}
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)), Subject: name, Issuer: name,
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(localCALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true, SubjectKeyId: ski[:],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return store.LocalCA{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return store.LocalCA{}, err
	}
	sealed, err := l.s.sealer.Seal(keyDER, localCAAAD(account))
	if err != nil {
		return store.LocalCA{}, err
	}
	rec := store.LocalCA{Account: account, CertPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		KeySealed: sealed, CreatedAt: now}
	err = l.s.st.CreateLocalCA(ctx, rec)
	if errors.Is(err, store.ErrConflict) {
		return l.s.st.LocalCA(ctx, account)
	}
	if err != nil {
		return store.LocalCA{}, err
	}
	l.s.log.Info("local ca created", "account", account)
	return rec, nil
}

func (l *localCAs) build(rec store.LocalCA) (*localEntry, error) {
	cert, err := parseCertPEM(rec.CertPEM)
	if err != nil {
		return nil, fmt.Errorf("local ca of %s: certificate: %w", rec.Account, err)
	}
	keyDER, err := l.s.sealer.Open(rec.KeySealed, localCAAAD(rec.Account))
	if err != nil {
		return nil, fmt.Errorf("local ca of %s: key does not open: %w", rec.Account, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return nil, fmt.Errorf("local ca of %s: key: %w", rec.Account, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("local ca of %s: key is not a signer", rec.Account)
	}
	cfg := local.Config{Certificate: cert, Signer: signer, Ledger: l.s.st.CALedger(rec.Account), Now: l.s.now,
		Logger: l.s.log.With("account", rec.Account)}
	if l.s.publicURL != "" {
		base := l.s.publicURL + "/ca/" + url.PathEscape(rec.Account)
		cfg.CRLURL, cfg.OCSPURL, cfg.IssuerURL = base+"/crl", base+"/ocsp", base+"/ca.crt"
	}
	c, err := local.New(cfg)
	if err != nil {
		return nil, err
	}
	return &localEntry{ca: c, cert: cert}, nil
}

// dropCRL forgets an account's cached CRL (after a revocation).
func (l *localCAs) dropCRL(account string) {
	l.mu.Lock()
	if e, ok := l.m[account]; ok {
		e.crl = nil
	}
	l.mu.Unlock()
}

func (l *localCAs) crl(ctx context.Context, account string) ([]byte, error) {
	e, err := l.entry(ctx, account, false)
	if err != nil {
		return nil, err
	}
	now := l.s.now()
	l.mu.Lock()
	if e.crl != nil && now.Sub(e.crlTime) < crlCacheFor {
		b := e.crl
		l.mu.Unlock()
		return b, nil
	}
	l.mu.Unlock()
	b, err := e.ca.CRL(ctx)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	e.crl, e.crlTime = b, now
	l.mu.Unlock()
	return b, nil
}

// CAHandler serves the local CAs' public files, without login (relying
// parties fetch them from the URLs in the certificates):
//
//	GET       /ca/{account}/crl           the CRL, DER (cached up to an hour)
//	POST      /ca/{account}/ocsp          OCSP (RFC 6960)
//	GET       /ca/{account}/ocsp/{base64} OCSP
//	GET       /ca/{account}/ca.crt        the CA certificate, DER
//
// An account without a local CA is 404 (a GET never makes one).
func (s *Service) CAHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/ca/")
		if !ok {
			http.NotFound(w, r)
			return
		}
		acct, sub, _ := strings.Cut(rest, "/")
		account, err := url.PathUnescape(acct)
		if err != nil || account == "" {
			http.NotFound(w, r)
			return
		}
		e, err := s.locals.entry(r.Context(), account, false)
		if errors.Is(err, store.ErrNotFound) {
			http.NotFound(w, r)
			return
		}
		if err != nil {
			s.log.Error("local ca", "account", account, "err", err)
			http.Error(w, "local CA unavailable", http.StatusInternalServerError)
			return
		}
		switch {
		case sub == "ca.crt":
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
				return
			}
			w.Header().Set("Content-Type", "application/pkix-cert")
			_, _ = w.Write(e.cert.Raw)
		case sub == "crl":
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
				return
			}
			der, err := s.locals.crl(r.Context(), account)
			if err != nil {
				s.log.Error("local ca crl", "account", account, "err", err)
				http.Error(w, "crl unavailable", http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/pkix-crl")
			_, _ = w.Write(der)
		case sub == "ocsp" || sub == "ocsp/" || strings.HasPrefix(sub, "ocsp/"):
			// local.CA.Handler serves /ocsp and /ocsp/{base64} as they
			// stand after the account prefix.
			r2 := r.Clone(r.Context())
			r2.URL.RawPath = "/" + sub
			r2.URL.Path, _ = url.PathUnescape(r2.URL.RawPath)
			e.ca.Handler().ServeHTTP(w, r2)
		default:
			http.NotFound(w, r)
		}
	})
}
