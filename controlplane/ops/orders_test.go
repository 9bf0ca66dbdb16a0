package ops_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/internal/testcert"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/ordering"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/seal"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

const (
	ldapPassword     = "ldap-Bind-pw-99"
	keystorePassword = "Keystore-pw-manual-1"
	ldapLoc          = "ldap://127.0.0.1:389/cn=web,dc=example,dc=com?userCertificate;binary#0"
	jksLoc           = "jks:///opt/app/keystore.jks#app"
)

// withOrdering gives the env an Ops with an ordering service (same store
// and sealer key), and a bot of protocol 2 holding one certificate in a
// JKS keystore and an LDAP entry, found through an LDAP target with a
// password.
func withOrdering(t *testing.T, e *env) (o *ops.Ops, svc *ordering.Service, botID, fp string) {
	t.Helper()
	sealer, err := seal.New(bytes.Repeat([]byte{7}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err = ordering.New(ordering.Config{Store: e.st, Sealer: sealer, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	o, err = ops.New(ops.Config{Store: e.st, Sealer: sealer, Logger: log, Ordering: svc, Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	botID, token, err := o.CreateBot(e.ctx, e.cli(), "ldap-bot", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.ActivateBot(e.ctx, e.account, botID, admin.Hash(token), store.Activation{Capability: 2, CertSerial: "0a"}); err != nil {
		t.Fatal(err)
	}
	target := "ldap://127.0.0.1:389/dc=example,dc=com?bind_dn=cn=admin,dc=example,dc=com&password=" + ldapPassword
	if _, err := o.SetTargets(e.ctx, e.cli(), botID, ops.TargetSettings{Targets: []string{target}}); err != nil {
		t.Fatal(err)
	}
	der := testcert.NewGenerator(t).New(t, testcert.Options{CN: "web.example.com", SANs: []string{"web.example.com"}})
	if err := e.st.StartScan(e.ctx, e.account, botID, protocol.ScanStart{ScanID: "s", Trigger: "schedule"}); err != nil {
		t.Fatal(err)
	}
	loc := func(s string) protocol.Location { l, _ := protocol.ParseLocation(s); return l }
	if _, err := e.st.Ingest(e.ctx, e.account, botID, "s", protocol.FindingsBatch{Seq: 1, Findings: []protocol.Finding{
		{Location: loc(ldapLoc), Source: "ldap", Format: "ldap", Chain: [][]byte{der}, SeenAt: e.now},
		{Location: loc(jksLoc), Source: "jks", Format: "jks", Chain: [][]byte{der}, SeenAt: e.now},
	}}); err != nil {
		t.Fatal(err)
	}
	return o, svc, botID, protocol.Fingerprint(der)
}

// D7, P2, P3, A2: Rotate is for Administrators and Managers, audited
// without secrets; the secrets ops sealed (an HSM PIN, a manual keystore
// password, a target's password) reach the bot's job.
func TestRotateThroughOps(t *testing.T) {
	e := newEnv(t)
	// Without an ordering service.
	if _, err := e.o.Rotate(e.ctx, e.cli(), ordering.RotateRequest{Fingerprint: "x"}); !errors.Is(err, ops.ErrOrderingOff) {
		t.Fatalf("no ordering: %v", err)
	}
	o, svc, botID, fp := withOrdering(t, e)
	for _, r := range []rbac.Role{rbac.FinanceManager, rbac.StandardUser, rbac.BasicUser, rbac.DiscoveryUser} {
		_, err := o.Rotate(e.ctx, e.key(r), ordering.RotateRequest{Fingerprint: fp})
		if !errors.Is(err, ops.ErrForbidden) || !strings.Contains(err.Error(), string(rbac.ManageOrders)) {
			t.Fatalf("%s: %v", r, err)
		}
		if last := e.last(); last.Action != ops.ActionDenied || !strings.Contains(last.Detail, "certificate.rotate") {
			t.Fatalf("refusal audited as %+v", last)
		}
	}
	kp, err := o.CreateKeyProfile(e.ctx, e.cli(), validHSM())
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := o.CreateProvisioningTemplate(e.ctx, e.cli(), ops.ProvisioningTemplateSpec{Name: "hsm",
		KeystorePasswordType: "manual", KeystorePassword: keystorePassword, KeyProfileID: kp.ID, CAConnector: "local"},
		ops.DefaultCAConnectors())
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		loc   string
		check func(t *testing.T, r *protocol.Rotation)
	}{
		{"jks with the template's password and the HSM's PIN", jksLoc, func(t *testing.T, r *protocol.Rotation) {
			if r.Deploy.Kind != protocol.DeployJKS || r.Deploy.KeystorePassword.Reveal() != keystorePassword ||
				r.Key.PKCS11 == nil || r.Key.PKCS11.PIN.Reveal() != hsmPIN {
				t.Fatalf("rotation %+v", r)
			}
		}},
		{"ldap through the bot's target", ldapLoc, func(t *testing.T, r *protocol.Rotation) {
			if r.Deploy.Kind != protocol.DeployLDAP || !strings.Contains(r.Deploy.Target, "password="+ldapPassword) ||
				r.Deploy.Object != "cn=web,dc=example,dc=com#userCertificate;binary" {
				t.Fatalf("deploy %+v", r.Deploy)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ord, err := o.Rotate(e.ctx, e.user("m-"+tt.name[:3]+"@example.com", rbac.Manager),
				ordering.RotateRequest{Fingerprint: fp, Location: tt.loc, TemplateID: tpl.ID})
			if err != nil {
				t.Fatal(err)
			}
			last := e.last()
			if last.Action != "certificate.rotate" || last.Object != fp || !strings.Contains(last.Detail, ord.ID) {
				t.Fatalf("audit %+v", last)
			}
			taken, err := e.st.TakeJobs(e.ctx, botID)
			var jobs []store.Job
			for _, j := range taken {
				if j.Kind == protocol.JobRotate { // SetTargets queued a config_changed
					jobs = append(jobs, j)
				}
			}
			if err != nil || len(jobs) != 1 {
				t.Fatalf("jobs %v %v", jobs, err)
			}
			r, err := svc.JobRotation(e.ctx, jobs[0])
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, r)
		})
	}
	for _, a := range e.audit() {
		for _, secret := range []string{hsmPIN, keystorePassword, ldapPassword} {
			if strings.Contains(a.Detail, secret) {
				t.Fatalf("secret in the audit log: %+v", a)
			}
		}
	}
	// Bad input comes back as an ops.InvalidError naming the field.
	_, err = o.Rotate(e.ctx, e.cli(), ordering.RotateRequest{Fingerprint: fp, Location: "tls://x:443"})
	var ie *ops.InvalidError
	if !errors.As(err, &ie) || ie.Field != "location" {
		t.Fatalf("bad location: %v", err)
	}
	// Revoking what was not issued here is refused, naming the field.
	if _, err := o.RevokeCertificate(e.ctx, e.cli(), fp, 1, "x"); !errors.As(err, &ie) || ie.Field != "fingerprint" {
		t.Fatalf("revoke: %v", err)
	}
	if _, err := o.SuspendCertificate(e.ctx, e.key(rbac.StandardUser), fp, ""); !errors.Is(err, ops.ErrForbidden) {
		t.Fatalf("suspend by a standard user: %v", err)
	}
}
