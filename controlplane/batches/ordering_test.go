package batches_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"testing"
	"time"

	"github.com/emsign/bot/agent/keygen"
	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/batches"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/ordering"
	"github.com/emsign/bot/controlplane/seal"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// P9 with the real ordering service and the account's private CA: the
// runner's orders become rotate jobs for the bot, which (played here as
// the bot does it) posts a CSR, gets the certificate and reports the
// deployment; wave after wave to the end.
func TestRunWithOrdering(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 6)
	key := make([]byte, seal.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.New(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.CreateProvisioningTemplate(ctx, store.ProvisioningTemplate{ID: admin.NewID(), Account: f.account,
		Name: "default", Default: true, KeyPair: store.KeyPairNew, KeystorePassword: store.KeystorePasswordRandom,
		CAConnector: ordering.KindLocal, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	svc, err := ordering.New(ordering.Config{Store: f.st, Sealer: sealer, Logger: quiet(), IssueWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	o, err := ops.New(ops.Config{Store: f.st, Sealer: sealer, Logger: quiet(), Ordering: svc})
	if err != nil {
		t.Fatal(err)
	}
	runner, err := batches.NewRunner(batches.RunnerConfig{Store: f.st, Rotator: o.BatchRotator(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := f.plan(t, 4, 0)
	start(t, f, b.ID)
	bot, err := f.st.Bot(ctx, f.account, f.active)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	scans := 0
	for round := 0; round < 5 && batchOf(t, f, b.ID).Status == store.BatchRunning; round++ {
		pass(t, runner)
		jobs, err := f.st.TakeJobs(ctx, f.active)
		if err != nil {
			t.Fatal(err)
		}
		// A bot whose rotations are all done gets a recheck scan, but
		// not between waves: only once the batch has nothing pending.
		if slices.ContainsFunc(jobs, func(j store.Job) bool { return j.Kind == protocol.JobScan }) {
			if bb := batchOf(t, f, b.ID); bb.Counts.Pending > 0 {
				t.Errorf("a recheck scan between waves (%d items pending)", bb.Counts.Pending)
			}
			scans++
		}
		jobs = slices.DeleteFunc(jobs, func(j store.Job) bool { return j.Kind != protocol.JobRotate })
		if len(jobs) > 4 {
			t.Fatalf("%d rotate jobs at once, wave size 4", len(jobs))
		}
		for _, j := range jobs {
			rot, err := svc.JobRotation(ctx, j)
			if err != nil {
				t.Fatal(err)
			}
			seen[rot.Location]++
			old, err := x509.ParseCertificate(rot.OldCertificate)
			if err != nil {
				t.Fatal(err)
			}
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			csr, err := keygen.CreateCSR(keygen.Template{CommonName: rot.CSR.CommonName, DNSNames: rot.CSR.DNSNames}.WithDefaults(old), k, nil)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := svc.OrderCSR(ctx, bot, rot.OrderID, string(keygen.EncodeCSR(csr)))
			if err != nil || cert.Status != protocol.OrderIssued {
				t.Fatalf("CSR: %+v %v", cert, err)
			}
			blk, _ := pem.Decode([]byte(cert.Certificate))
			if blk == nil {
				t.Fatalf("certificate %q", cert.Certificate)
			}
			if err := svc.RotationFinished(ctx, bot, j, protocol.JobResult{Status: protocol.JobDone, Rotation: &protocol.RotationResult{
				OrderID: rot.OrderID, Outcome: protocol.OutcomeDeployed, Fingerprint: protocol.Fingerprint(blk.Bytes),
				Steps: []protocol.RotationStep{{Name: protocol.StepVerify, OK: true, Message: "verified", Time: time.Now()}}}}); err != nil {
				t.Fatal(err)
			}
		}
		pass(t, runner)
	}
	got := batchOf(t, f, b.ID)
	if got.Status != store.BatchDone || got.Counts.Done != 6 || got.Counts.Skipped != 2 {
		t.Fatalf("batch %s %+v", got.Status, got.Counts)
	}
	if len(seen) != 6 {
		t.Fatalf("locations rotated %v", seen)
	}
	last, err := f.st.TakeJobs(ctx, f.active)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range last {
		if j.Kind == protocol.JobScan {
			scans++
		}
	}
	if scans != 1 {
		t.Errorf("%d recheck scans, want one after the last wave", scans)
	}
	for l, n := range seen {
		if n != 1 {
			t.Errorf("%s rotated %d times", l, n)
		}
	}
	orders, err := f.st.Orders(ctx, f.account, store.OrderFilter{BatchID: b.ID})
	if err != nil || len(orders) != 6 {
		t.Fatalf("%d orders of the batch (%v)", len(orders), err)
	}
	for _, o := range orders {
		if o.Status != store.OrderRotated || o.CreatedBy != "alice@example.com" || o.Connector != ordering.KindLocal {
			t.Errorf("order %s %s by %s via %s", o.ID, o.Status, o.CreatedBy, o.Connector)
		}
	}
}
