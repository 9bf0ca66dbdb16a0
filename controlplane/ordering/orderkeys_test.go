package ordering_test

import (
	"context"
	"testing"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/ordering"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// P4, S4: the order records where it deploys and the key it makes, for the
// key inventory and the keystore count.
func TestRotateRecordsKey(t *testing.T) {
	for _, tc := range []struct {
		name      string
		action    string
		hsm       bool // a PKCS#11 key profile (SoftHSM2's module path; no token is opened here)
		wantWhere string
		wantAlg   string
		wantRef   bool
	}{
		{"rotate pem in software", protocol.ActionRotate, false, protocol.KeyWhereSoftware, "ecdsa-p256", false},
		{"renew keeps the key", protocol.ActionRenew, false, protocol.KeyWhereSoftware, "", false},
		{"rekey on a token", protocol.ActionRekey, true, protocol.KeyWherePKCS11, "ecdsa-p384", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			ctx := context.Background()
			req := ordering.RotateRequest{Fingerprint: e.fp, Action: tc.action}
			if tc.hsm {
				req.TemplateID = hsmTemplate(t, e)
			}
			o, err := e.svc.Rotate(ctx, e.account, req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.st.Order(ctx, e.account, o.ID)
			if err != nil {
				t.Fatal(err)
			}
			wantRef := ""
			if tc.wantRef {
				wantRef = "emsign-" + o.ID // the label keySpec gives a new token key
			}
			if got.DeployKind != protocol.DeployPEM || got.KeyWhere != tc.wantWhere || got.KeyAlgorithm != tc.wantAlg ||
				got.KeyRef != wantRef {
				t.Fatalf("deploy %q, key where %q, algorithm %q, ref %q; want pem, %q, %q, %q",
					got.DeployKind, got.KeyWhere, got.KeyAlgorithm, got.KeyRef, tc.wantWhere, tc.wantAlg, wantRef)
			}
		})
	}
}

// hsmTemplate makes a provisioning template whose key profile is a
// PKCS#11 token and whose CSR template asks for ECDSA P-384.
func hsmTemplate(t *testing.T, e *env) string {
	t.Helper()
	ctx := context.Background()
	pin, err := e.sealer.Seal([]byte("1234"), []byte("emsign-cp/key-profile-pin/"+e.account))
	if err != nil {
		t.Fatal(err)
	}
	kp := admin.NewID()
	if err := e.st.CreateKeyProfile(ctx, store.KeyProfile{ID: kp, Account: e.account, Name: "hsm", Kind: store.KeyProfilePKCS11,
		ModulePath: "/usr/lib/softhsm/libsofthsm2.so", TokenLabel: "prod", PINSealed: pin, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	csrT := admin.NewID()
	if err := e.st.CreateCSRTemplate(ctx, store.CSRTemplate{ID: csrT, Account: e.account, Name: "p384", KeyAlgorithm: "ECDSA",
		Curve: "P-384", CopyFromCertificate: true, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	tid := admin.NewID()
	if err := e.st.CreateProvisioningTemplate(ctx, store.ProvisioningTemplate{ID: tid, Account: e.account, Name: "hsm",
		KeyPair: store.KeyPairNew, KeystorePassword: store.KeystorePasswordRandom, CSRTemplateID: csrT, KeyProfileID: kp,
		CAConnector: "local", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	return tid
}
