// Package testcert makes certificates for the control plane's tests and
// benchmarks: quick (one shared key per generator), real DER.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// Generator issues self-signed leaf certificates from one key.
type Generator struct {
	key    *ecdsa.PrivateKey
	serial int64
}

// NewGenerator makes a generator.
func NewGenerator(tb testing.TB) *Generator {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return &Generator{key: k}
}

// Options describe a certificate; zero fields get defaults.
type Options struct {
	CN       string
	SANs     []string
	Issuer   string // the issuer CN (the certificate is still self-signed)
	NotAfter time.Time
}

// New issues a certificate and returns its DER.
func (g *Generator) New(tb testing.TB, o Options) []byte {
	tb.Helper()
	g.serial++
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	subject := pkix.Name{CommonName: o.CN, Organization: []string{"Test"}}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(g.serial),
		Subject:      subject,
		NotBefore:    o.NotAfter.AddDate(-1, 0, 0),
		NotAfter:     o.NotAfter,
		DNSNames:     o.SANs,
	}
	parent := tmpl
	if o.Issuer != "" {
		parent = &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: o.Issuer}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &g.key.PublicKey, g.key)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}
