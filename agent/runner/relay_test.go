package runner

import (
	"context"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/emsign/bot/agent/internal/fakecp"
	"github.com/emsign/bot/agent/netpath"
	"github.com/emsign/bot/agent/relay"
	"github.com/emsign/bot/protocol"
)

// The bot reaches the control plane via a relay that stops mid-upload
// (its open tunnels cut) and comes back on the same port: the bot keeps
// its findings spooled meanwhile and drains them after; nothing is lost.
func TestRelayRestartMidUpload(t *testing.T) {
	b := newBot(t)
	u, err := url.Parse(b.cp.URL)
	if err != nil {
		t.Fatal(err)
	}
	startRelay := func(listen string) (addr string, stop func()) {
		r, err := relay.New(relay.Config{Listen: listen, Upstream: u.Host})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Serve(ctx) }()
		var once sync.Once
		stop = func() {
			once.Do(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("relay: %v", err)
				}
			})
		}
		t.Cleanup(stop)
		return r.Addr().String(), stop
	}
	addr, stopRelay := startRelay("127.0.0.1:0")
	np, err := netpath.New(netpath.Settings{URL: b.cp.URL, Via: addr})
	if err != nil {
		t.Fatal(err)
	}
	b.dial = np.DialContext
	b.tweak = func(c *Config) { c.BatchAge = time.Hour }
	b.cp.SetConfig(scanConfig("v1", certDir(t, 45)))
	stopping := make(chan struct{})
	b.cp.Do(func(cp *fakecp.Server) {
		cp.OnBatch = func(k fakecp.Key) bool {
			if k.Seq == 1 {
				close(stopping)
				// The relay goes away with this batch's answer in flight.
				stopRelay()
				return true
			}
			return false
		}
	})
	b.start(0)
	b.cp.AddJob(protocol.Job{ID: "job-1", Kind: protocol.JobScan, ScanID: "scan-1"})
	<-stopping
	waitFor(t, "the scan to end in the spool while the relay is down", func() bool { return b.spoolHas(".job") })
	b.cp.Do(func(cp *fakecp.Server) {
		cp.OnBatch = nil
		if len(cp.Completes) != 0 {
			t.Error("a completion arrived while the relay was down")
		}
	})
	startRelay(addr)
	waitFor(t, "the job's result", func() bool {
		var ok bool
		b.cp.Do(func(cp *fakecp.Server) { _, ok = cp.Results["job-1"] })
		return ok
	})
	c := checkScan(t, b.cp, "scan-1", 45)
	if !c.Complete || c.Batches != 5 {
		t.Errorf("completion %+v", c)
	}
	waitFor(t, "an empty spool", func() bool { return len(b.spoolFiles()) == 0 })
}
