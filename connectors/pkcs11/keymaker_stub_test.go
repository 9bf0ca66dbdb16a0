//go:build !cgo

package pkcs11

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/protocol"
)

// TestStubKeyMakerAndDeployer: without cgo, making a token key says to
// build with cgo, and the token deployer refuses in prepare, changing
// nothing.
func TestStubKeyMakerAndDeployer(t *testing.T) {
	km := NewKeyMaker(nil)
	spec := protocol.PKCS11Key{Module: "/x.so", Label: "web", PIN: protocol.NewTransitSecret("1")}
	if _, _, err := km.MakeKey(context.Background(), spec, "ecdsa-p256"); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=1") {
		t.Errorf("MakeKey: %v", err)
	}
	if _, _, err := km.FindKey(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=1") {
		t.Errorf("FindKey: %v", err)
	}
	d, err := NewDeployer(protocol.DeploySpec{Kind: protocol.DeployPKCS11, Target: "pkcs11:token=a?module-path=/x.so&pin-value=1"},
		deploy.Env{BackupDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stub"}, NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	res, err := d.Deploy(context.Background(), deploy.Material{Certificate: cert, KeyRef: &deploy.TokenKey{Label: "web", ID: "01"}}, nil)
	if !errors.Is(err, deploy.ErrRefused) || !strings.Contains(err.Error(), "CGO_ENABLED=1") || res.Outcome != deploy.OutcomeFailed {
		t.Errorf("Deploy: %v", err)
	}
}
