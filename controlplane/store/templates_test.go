package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/store"
)

func TestTemplatesCRUDAndIsolation(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	a := newFixture(t, st, 1).account
	b := newFixture(t, st, 1).account

	csr := store.CSRTemplate{ID: "c1", Account: a, Name: "web", SignatureAlgorithm: "ECDSAWithSHA256", KeyAlgorithm: "ECDSA",
		Curve: "P-256", Subject: store.CSRSubject{CommonName: "www.example.com", Country: "IN",
			Custom: []store.SubjectAttribute{{OID: "2.5.4.5", Value: "42"}}},
		SANs: store.CSRSANs{DNS: []string{"www.example.com"}, IP: []string{"192.0.2.1"}}, CopyFromCertificate: true, Enabled: true}
	if err := st.CreateCSRTemplate(ctx, csr); err != nil {
		t.Fatal(err)
	}
	dup := csr
	dup.ID = "c2"
	if err := st.CreateCSRTemplate(ctx, dup); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("same name in one account: %v", err)
	}
	dup.Account = b // another account may use the name
	if err := st.CreateCSRTemplate(ctx, dup); err != nil {
		t.Fatal(err)
	}
	got, err := st.CSRTemplate(ctx, a, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject.Custom[0].Value != "42" || got.SANs.IP[0] != "192.0.2.1" || !got.CopyFromCertificate || got.CreatedAt.IsZero() {
		t.Fatalf("read back %+v", got)
	}
	if _, err := st.CSRTemplate(ctx, b, "c1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another account's template: %v", err)
	}
	got.Name, got.Enabled = "web2", false
	if err := st.UpdateCSRTemplate(ctx, got); err != nil {
		t.Fatal(err)
	}
	got.Account = b // another account's object is not found, never changed
	if err := st.UpdateCSRTemplate(ctx, got); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update across accounts: %v", err)
	}
	list, err := st.CSRTemplates(ctx, a)
	if err != nil || len(list) != 1 || list[0].Name != "web2" || list[0].Enabled {
		t.Fatalf("list %+v %v", list, err)
	}

	slot := 3
	kp := store.KeyProfile{ID: "k1", Account: a, Name: "hsm", Kind: store.KeyProfilePKCS11, ModulePath: "/usr/lib/softhsm/libsofthsm2.so",
		TokenLabel: "t", Slot: &slot, PINSealed: []byte("sealed"), Enabled: true}
	if err := st.CreateKeyProfile(ctx, kp); err != nil {
		t.Fatal(err)
	}
	gk, err := st.KeyProfile(ctx, a, "k1")
	if err != nil || gk.Slot == nil || *gk.Slot != 3 || string(gk.PINSealed) != "sealed" {
		t.Fatalf("key profile %+v %v", gk, err)
	}
	if _, err := st.KeyProfile(ctx, b, "k1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another account's key profile: %v", err)
	}

	pt := store.ProvisioningTemplate{ID: "p1", Account: a, Name: "default", KeyPair: store.KeyPairNew,
		KeystorePassword: store.KeystorePasswordRandom, CSRTemplateID: "c1", KeyProfileID: "k1", CAConnector: "local",
		Default: true, Enabled: true}
	if err := st.CreateProvisioningTemplate(ctx, pt); err != nil {
		t.Fatal(err)
	}
	// References must be the account's own.
	bad := pt
	bad.ID, bad.Name, bad.Account, bad.Default = "p9", "x", b, false
	if err := st.CreateProvisioningTemplate(ctx, bad); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("reference to another account's CSR template: %v", err)
	}

	// In use: neither the CSR template nor the key profile may go.
	for what, del := range map[string]func() error{
		"csr template": func() error { return st.DeleteCSRTemplate(ctx, a, "c1") },
		"key profile":  func() error { return st.DeleteKeyProfile(ctx, a, "k1") },
	} {
		err := del()
		if !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), `"default"`) {
			t.Fatalf("delete %s in use: %v", what, err)
		}
	}
	if err := st.DeleteProvisioningTemplate(ctx, b, "p1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete across accounts: %v", err)
	}
	if err := st.DeleteProvisioningTemplate(ctx, a, "p1"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteCSRTemplate(ctx, a, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteKeyProfile(ctx, a, "k1"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteKeyProfile(ctx, a, "k1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestProvisioningDefaultUnique(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	a := newFixture(t, st, 1).account
	b := newFixture(t, st, 1).account
	mk := func(account, id string, def bool) store.ProvisioningTemplate {
		return store.ProvisioningTemplate{ID: id, Account: account, Name: id, KeyPair: store.KeyPairNew,
			KeystorePassword: store.KeystorePasswordRandom, CAConnector: "acme", Default: def, Enabled: true}
	}
	for _, p := range []store.ProvisioningTemplate{mk(a, "p1", true), mk(b, "q1", true), mk(a, "p2", true), mk(a, "p3", false)} {
		if err := st.CreateProvisioningTemplate(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	defaults := func(account string) []string {
		t.Helper()
		ts, err := st.ProvisioningTemplates(ctx, account)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, x := range ts {
			if x.Default {
				out = append(out, x.ID)
			}
		}
		return out
	}
	if d := defaults(a); len(d) != 1 || d[0] != "p2" {
		t.Fatalf("after creating p2 as default: %v", d)
	}
	p3, err := st.ProvisioningTemplate(ctx, a, "p3")
	if err != nil {
		t.Fatal(err)
	}
	p3.Default = true
	if err := st.UpdateProvisioningTemplate(ctx, p3); err != nil {
		t.Fatal(err)
	}
	if d := defaults(a); len(d) != 1 || d[0] != "p3" {
		t.Fatalf("after setting p3: %v", d)
	}
	// Another account's default is untouched, and cannot be cleared by
	// naming its ID.
	if d := defaults(b); len(d) != 1 || d[0] != "q1" {
		t.Fatalf("other account: %v", d)
	}
	q := mk(a, "q1", true)
	if err := st.UpdateProvisioningTemplate(ctx, q); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update another account's template: %v", err)
	}
	if d := defaults(b); len(d) != 1 || d[0] != "q1" {
		t.Fatalf("other account after a foreign update: %v", d)
	}
	// The index holds even if code forgets: a second default row is refused.
	if _, err := st.DB().ExecContext(ctx, `UPDATE provisioning_templates SET is_default = 1 WHERE id = 'p1'`); err == nil {
		t.Fatal("two defaults in one account accepted")
	}
}

func TestDashboardTemplateCounts(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	a := newFixture(t, st, 1).account
	b := newFixture(t, st, 1).account
	for i, en := range []bool{true, true, false} {
		id := string(rune('a' + i))
		if err := st.CreateCSRTemplate(ctx, store.CSRTemplate{ID: "c" + id, Account: a, Name: id, SignatureAlgorithm: "PureEd25519",
			KeyAlgorithm: "Ed25519", Enabled: en}); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateKeyProfile(ctx, store.KeyProfile{ID: "k" + id, Account: a, Name: id, Kind: store.KeyProfileSoftware,
			Enabled: !en}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CreateProvisioningTemplate(ctx, store.ProvisioningTemplate{ID: "p", Account: a, Name: "p", KeyPair: "new",
		KeystorePassword: "random", CAConnector: "local", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateCSRTemplate(ctx, store.CSRTemplate{ID: "other", Account: b, Name: "o", SignatureAlgorithm: "PureEd25519",
		KeyAlgorithm: "Ed25519", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	d, err := st.Dashboard(ctx, a, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := store.TemplateCounts{CSRTemplates: 2, ProvisioningTemplates: 1, KeyProfiles: 1}
	if d.Templates != want {
		t.Fatalf("template counts %+v, want %+v", d.Templates, want)
	}
}
