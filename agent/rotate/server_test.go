//go:build !windows

package rotate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/agent/keygen"
	"github.com/emsign/bot/internal/testsvc"
	"github.com/emsign/bot/protocol"
)

// TestRotateOpenSSL rotates PEM files served by a real openssl s_server
// and restarted by an allowed reload command (B9, P1, P8): the endpoint
// serves the new certificate, the CSR asks for the old certificate's
// names, and the failures end as they must.
func TestRotateOpenSSL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts openssl s_server")
	}
	const full = "key:ok csr:ok issued:ok prepare:ok backup:ok write:ok reload:ok verify:ok"
	cases := []struct {
		name         string
		emptyKeyPath bool // key_path "": found beside the certificate
		pending      int  // pending answers before the certificate
		shortLived   bool // the reload script refuses it
		notAllowed   bool // the reload command is not in allowed_reload
		renew        bool
		wantOutcome  string
		wantSteps    string
	}{
		{name: "rotate", wantOutcome: protocol.OutcomeDeployed, wantSteps: full},
		{name: "pending then issued", pending: 2, wantOutcome: protocol.OutcomeDeployed, wantSteps: full},
		{name: "key path found beside the certificate", emptyKeyPath: true, wantOutcome: protocol.OutcomeDeployed, wantSteps: full},
		{name: "renew keeps the key", renew: true, wantOutcome: protocol.OutcomeDeployed, wantSteps: full},
		{name: "reload fails", shortLived: true, wantOutcome: protocol.OutcomeRolledBack,
			wantSteps: "key:ok csr:ok issued:ok prepare:ok backup:ok write:ok reload:FAILED rollback:ok"},
		{name: "reload not allowed", notAllowed: true, wantOutcome: protocol.OutcomeFailed, wantSteps: "prepare:FAILED"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cp := newFakeCP(t)
			cp.Pending = tc.pending
			if tc.shortLived {
				cp.Lifetime = 5 * time.Minute
			}
			old := cp.oldLeaf(t, keygen.ECDSAP256, keygen.SEC1)
			dir := t.TempDir()
			certPath, keyPath := filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
			if tc.emptyKeyPath {
				keyPath = filepath.Join(dir, "site.key")
				// A decoy: a key of another certificate beside it.
				other := cp.oldLeaf(t, keygen.ECDSAP256, keygen.PKCS8)
				writeFile(t, filepath.Join(dir, "another.key"), other.keyPEM, 0o600)
			}
			writeFile(t, certPath, old.certPEM, 0o644)
			writeFile(t, keyPath, old.keyPEM, 0o640)
			srv := testsvc.StartSServer(t, certPath, keyPath)
			srv.WaitServes(t, "www.rotate.test", deploy.Fingerprint(old.cert))
			allowed := []string{srv.Script}
			if tc.notAllowed {
				allowed = []string{"systemctl reload nginx"}
			}
			stateDir := t.TempDir()
			r, logs := newRotator(t, cp, stateDir, allowed, nil)
			order := fmt.Sprintf("order-%d", i)
			rot := protocol.Rotation{
				OrderID: order, Action: protocol.ActionRotate, Location: "file://" + certPath,
				OldCertificate: old.cert.Raw,
				Key:            protocol.KeySpec{Where: protocol.KeyWhereSoftware, Algorithm: "ecdsa-p256"},
				CSR:            protocol.CSRSpec{CopyFromCertificate: true},
				Deploy: protocol.DeploySpec{Kind: protocol.DeployPEM, CertPath: certPath, KeyPath: keyPath, ChainInCert: true,
					Reload: []string{srv.Script}, Verify: []protocol.VerifyEndpoint{{Address: srv.Addr, ServerName: "www.rotate.test"}},
					VerifyTimeout: protocol.Duration(10 * time.Second)},
			}
			if tc.renew {
				rot.Action = protocol.ActionRenew
			}
			if tc.emptyKeyPath {
				rot.Deploy.KeyPath = ""
			}
			before := map[string][]byte{certPath: readFile(t, certPath), keyPath: readFile(t, keyPath)}

			res := r.Run(context.Background(), "job-"+order, rot)
			logSteps(t, res)
			noSecrets(t, res, logs.String())
			if res.OrderID != order || res.Outcome != tc.wantOutcome || stepNames(res.Steps) != tc.wantSteps {
				t.Fatalf("order %s outcome %s steps %s; want %s %s", res.OrderID, res.Outcome, stepNames(res.Steps), tc.wantOutcome, tc.wantSteps)
			}
			for j := 1; j < len(res.Steps); j++ {
				if res.Steps[j].Time.Before(res.Steps[j-1].Time) {
					t.Errorf("step %d is dated before step %d", j, j-1)
				}
			}
			if _, err := os.Stat(keptFile(stateDir, order)); !os.IsNotExist(err) {
				t.Errorf("the kept key of a finished rotation is still there: %v", err)
			}
			posts := cp.posts(order)
			switch tc.wantOutcome {
			case protocol.OutcomeDeployed:
				srv.WaitServes(t, "www.rotate.test", res.Fingerprint)
				if len(posts) != tc.pending+1 || cp.issued() != 1 {
					t.Errorf("%d posts, %d certificates issued; want %d and 1", len(posts), cp.issued(), tc.pending+1)
				}
				csr := csrOf(t, posts[0])
				if !slices.Equal(csr.DNSNames, old.cert.DNSNames) || len(csr.IPAddresses) != 1 || !csr.IPAddresses[0].Equal(old.cert.IPAddresses[0]) ||
					csr.Subject.CommonName != old.cert.Subject.CommonName || !slices.Equal(csr.Subject.Organization, old.cert.Subject.Organization) {
					t.Errorf("CSR asks for %s %v %v, want the old certificate's %s %v %v", csr.Subject, csr.DNSNames, csr.IPAddresses,
						old.cert.Subject, old.cert.DNSNames, old.cert.IPAddresses)
				}
				newKey, err := keygen.ParsePEM(readFile(t, keyPath))
				if err != nil {
					t.Fatal(err)
				}
				if same := samePublic(newKey.Public(), old.key.Public()); same != tc.renew {
					t.Errorf("key file holds the old key: %v, want %v", same, tc.renew)
				}
				if !samePublic(csr.PublicKey, newKey.Public()) {
					t.Error("the key file does not hold the CSR's key")
				}
				if f, _ := keygen.FormatOf(readFile(t, keyPath)); f != keygen.SEC1 {
					t.Errorf("key written as %s, want the old file's %s", f, keygen.SEC1)
				}
				if tc.emptyKeyPath && !strings.Contains(res.Steps[0].Message, "site.key (found beside the certificate)") {
					t.Errorf("key step %q does not name the key file found", res.Steps[0].Message)
				}
			case protocol.OutcomeRolledBack:
				srv.WaitServes(t, "www.rotate.test", deploy.Fingerprint(old.cert))
				for p, b := range before {
					if string(readFile(t, p)) != string(b) {
						t.Errorf("%s is not what it was before", p)
					}
				}
				if res.Fingerprint != "" {
					t.Errorf("fingerprint %s for a rotation that was rolled back", res.Fingerprint)
				}
			case protocol.OutcomeFailed:
				if len(posts) != 0 {
					t.Errorf("%d CSRs posted for a rotation refused before it began", len(posts))
				}
				want := fmt.Sprintf("reload command %q is not in this bot's allowed_reload: allow it with emsign-bot configure --allow-reload", srv.Script)
				if !strings.Contains(res.Steps[0].Message, want) {
					t.Errorf("message %q, want %q", res.Steps[0].Message, want)
				}
				for p, b := range before {
					if string(readFile(t, p)) != string(b) {
						t.Errorf("%s was changed", p)
					}
				}
				if entries, _ := os.ReadDir(stateDir); len(entries) != 0 {
					t.Errorf("state directory holds %v after a refused rotation", entries)
				}
			}
		})
	}
}
