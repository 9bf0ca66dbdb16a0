package runner

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emsign/bot/agent/client"
	"github.com/emsign/bot/agent/internal/fakecp"
	"github.com/emsign/bot/protocol"
)

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without client or spool succeeded")
	}
}

func TestScanJob(t *testing.T) {
	b := newBot(t)
	b.tweak = func(c *Config) { c.BatchAge = time.Hour } // batches by count only: exact numbers below
	b.cp.SetConfig(scanConfig("v1", certDir(t, 25)+"?password=hunter2"))
	b.start(0)
	b.cp.AddJob(protocol.Job{ID: "job-1", Kind: protocol.JobScan, ScanID: "scan-1"})
	waitFor(t, "the job's result", func() bool {
		var ok bool
		b.cp.Do(func(cp *fakecp.Server) { _, ok = cp.Results["job-1"] })
		return ok
	})
	c := checkScan(t, b.cp, "scan-1", 25)
	if !c.Complete || c.Stopped != "" || c.Batches != 3 {
		t.Errorf("completion %+v, want complete in 3 batches of up to 10", c)
	}
	b.cp.Do(func(cp *fakecp.Server) {
		if st := cp.Starts["scan-1"]; st.Trigger != "job" || st.Targets != 1 {
			t.Errorf("start %+v", st)
		}
		if res := cp.Results["job-1"]; res.Status != "done" {
			t.Errorf("job result %+v", res)
		}
		want := "start scan-1,batch scan-1 1,batch scan-1 2,batch scan-1 3,complete scan-1,job job-1"
		if got := strings.Join(cp.Order, ","); got != want {
			t.Errorf("arrival order\n got %s\nwant %s", got, want)
		}
		if !cp.Versions["test"] || len(cp.Versions) != 1 {
			t.Errorf("version headers %v", cp.Versions)
		}
	})
	waitFor(t, "an empty spool", func() bool { return len(b.spoolFiles()) == 0 })
	if o, ok := b.mark(); ok {
		t.Errorf("open-scan marker left after the job: %+v", o)
	}
	logs := b.logs.String()
	if strings.Contains(logs, "hunter2") {
		t.Error("a target's password is in the log")
	}
	if !strings.Contains(logs, "password=REDACTED") {
		t.Error("the target is not logged (redacted)")
	}
}

func TestConfigETag(t *testing.T) {
	b := newBot(t)
	b.start(0)
	waitFor(t, "the first config fetch", func() bool {
		var n int
		b.cp.Do(func(cp *fakecp.Server) { n = cp.ConfigGets })
		return n >= 1
	})
	b.cp.AddJob(protocol.Job{ID: "cc-1", Kind: protocol.JobConfigChanged})
	waitFor(t, "cc-1's result", func() bool {
		var ok bool
		b.cp.Do(func(cp *fakecp.Server) { _, ok = cp.Results["cc-1"] })
		return ok
	})
	b.cp.Do(func(cp *fakecp.Server) {
		if cp.ConfigGets != 2 || cp.NotModified != 1 {
			t.Errorf("config gets %d, 304s %d; want 2 and 1", cp.ConfigGets, cp.NotModified)
		}
	})
	// A new version is fetched in full, and used by the next scan.
	b.cp.SetConfig(scanConfig("v2", certDir(t, 3)))
	b.cp.AddJob(protocol.Job{ID: "cc-2", Kind: protocol.JobConfigChanged})
	b.cp.AddJob(protocol.Job{ID: "scan-job", Kind: protocol.JobScan, ScanID: "s2"})
	waitFor(t, "the scan job's result", func() bool {
		var ok bool
		b.cp.Do(func(cp *fakecp.Server) { _, ok = cp.Results["scan-job"] })
		return ok
	})
	b.cp.Do(func(cp *fakecp.Server) {
		if cp.ConfigGets != 3 || cp.NotModified != 1 {
			t.Errorf("config gets %d, 304s %d; want 3 and 1", cp.ConfigGets, cp.NotModified)
		}
		if cp.Results["cc-2"].Status != "done" {
			t.Errorf("cc-2: %+v", cp.Results["cc-2"])
		}
	})
	checkScan(t, b.cp, "s2", 3)
}

// The control plane goes down during a scan and comes back: everything
// arrives, each batch once; acknowledgements lost on the way make the bot
// resend, and the control plane's duplicate answer is taken as an ack.
func TestControlPlaneDownThenUp(t *testing.T) {
	b := newBot(t)
	b.tweak = func(c *Config) { c.BatchAge = time.Hour } // batches by count only: exact numbers below
	b.cp.SetConfig(scanConfig("v1", certDir(t, 45)))
	b.cp.Do(func(cp *fakecp.Server) {
		cp.OnBatch = func(k fakecp.Key) bool {
			if k.Seq == 1 {
				b.cp.Do(func(cp *fakecp.Server) { cp.Down = true })
			}
			return false
		}
	})
	b.start(0)
	b.cp.AddJob(protocol.Job{ID: "job-1", Kind: protocol.JobScan, ScanID: "scan-1"})
	waitFor(t, "the scan to end in the spool while the control plane is down", func() bool { return b.spoolHas(".job") })
	b.cp.Do(func(cp *fakecp.Server) {
		if len(cp.Completes) != 0 {
			t.Error("a completion arrived while down")
		}
		cp.LoseAcks = 1 // the first post after it comes back loses its answer
		cp.Down = false
	})
	waitFor(t, "the job's result", func() bool {
		var ok bool
		b.cp.Do(func(cp *fakecp.Server) { _, ok = cp.Results["job-1"] })
		return ok
	})
	c := checkScan(t, b.cp, "scan-1", 45)
	if !c.Complete || c.Batches != 5 {
		t.Errorf("completion %+v", c)
	}
	b.cp.Do(func(cp *fakecp.Server) {
		for k, n := range cp.BatchPosts {
			want := 1
			if k.Seq == 2 { // its first answer was lost
				want = 2
			}
			if n != want {
				t.Errorf("batch %v posted %d times, want %d", k, n, want)
			}
		}
	})
	if !strings.Contains(b.logs.String(), "cannot reach the control plane") {
		t.Error("the outage was not logged")
	}
	waitFor(t, "an empty spool", func() bool { return len(b.spoolFiles()) == 0 })
}

// The bot is stopped mid-upload (after the control plane recorded a batch,
// before the bot got the ack) and started again on the same state: nothing
// is lost and nothing is counted twice.
func TestRestartMidUpload(t *testing.T) {
	b := newBot(t)
	b.cp.SetConfig(scanConfig("v1", certDir(t, 38)))
	b.cp.Do(func(cp *fakecp.Server) { cp.Down = true })
	stop1 := b.start(0)
	waitFor(t, "a config fetch attempt", func() bool { return strings.Contains(b.logs.String(), "fetch configuration") })
	b.cp.Do(func(cp *fakecp.Server) { cp.Down = false })
	b.cp.AddJob(protocol.Job{ID: "job-1", Kind: protocol.JobScan, ScanID: "scan-1"})

	// Hold the upload at batch 3: stop that bot there, ack lost.
	var stopping sync.Once
	stopped := make(chan struct{})
	b.cp.Do(func(cp *fakecp.Server) {
		cp.OnBatch = func(k fakecp.Key) bool {
			if k.Seq != 3 {
				return false
			}
			lose := false
			stopping.Do(func() {
				// Stop only once the scan is all in the spool: this
				// test is about the upload, not the scan.
				for deadline := time.Now().Add(10 * time.Second); !b.spoolHas(".job") && time.Now().Before(deadline); {
					time.Sleep(5 * time.Millisecond)
				}
				lose = true
				go func() { stop1(); close(stopped) }()
			})
			return lose
		}
	})
	select {
	case <-stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("the upload never reached batch 3")
	}
	if len(b.spoolFiles()) == 0 {
		t.Fatal("the first bot sent everything; the test stopped nothing")
	}
	b.start(0)
	waitFor(t, "the job's result", func() bool {
		var ok bool
		b.cp.Do(func(cp *fakecp.Server) { _, ok = cp.Results["job-1"] })
		return ok
	})
	checkScan(t, b.cp, "scan-1", 38)
	b.cp.Do(func(cp *fakecp.Server) {
		for k, n := range cp.BatchPosts {
			want := 1
			if k.Seq == 3 {
				want = 2
			}
			if n != want {
				t.Errorf("batch %v posted %d times, want %d", k, n, want)
			}
		}
	})
}

func TestUnauthorizedKeepsRetrying(t *testing.T) {
	b := newBot(t)
	b.cp.SetConfig(scanConfig("v1", certDir(t, 2)))
	b.cp.Do(func(cp *fakecp.Server) { cp.Refuse = "bot suspended" })
	b.start(0)
	waitFor(t, "the refusal in the log, several times", func() bool {
		return strings.Count(b.logs.String(), "the control plane refuses this bot") >= 3
	})
	if !strings.Contains(b.logs.String(), "bot suspended") {
		t.Error("the control plane's reason is not logged")
	}
	b.cp.Do(func(cp *fakecp.Server) { cp.Refuse = "" })
	b.cp.AddJob(protocol.Job{ID: "job-1", Kind: protocol.JobScan, ScanID: "scan-1"})
	waitFor(t, "the job's result once the bot is accepted again", func() bool {
		var ok bool
		b.cp.Do(func(cp *fakecp.Server) { _, ok = cp.Results["job-1"] })
		return ok
	})
	checkScan(t, b.cp, "scan-1", 2)
}

func TestMaxRuntimeStopsScan(t *testing.T) {
	b := newBot(t)
	cfg := scanConfig("v1", certDir(t, 4), stallingTarget(t))
	cfg.MaxRuntime = protocol.Duration(300 * time.Millisecond)
	b.cp.SetConfig(cfg)
	b.start(0)
	b.cp.AddJob(protocol.Job{ID: "job-1", Kind: protocol.JobScan, ScanID: "scan-1"})
	waitFor(t, "the job's result", func() bool {
		var ok bool
		b.cp.Do(func(cp *fakecp.Server) { _, ok = cp.Results["job-1"] })
		return ok
	})
	c := checkScan(t, b.cp, "scan-1", 4)
	if c.Complete || !strings.Contains(c.Stopped, "max runtime of 300ms reached") {
		t.Errorf("completion %+v, want incomplete, stopped by max runtime", c)
	}
	b.cp.Do(func(cp *fakecp.Server) {
		if cp.Results["job-1"].Status != "done" {
			t.Errorf("job result %+v", cp.Results["job-1"])
		}
	})
}

// SIGTERM during a scan: the scan stops, its start, batches and an
// incomplete completion stay spooled and arrive after the next start.
func TestStopDuringScan(t *testing.T) {
	b := newBot(t)
	b.cp.SetConfig(scanConfig("v1", certDir(t, 3), stallingTarget(t)))
	b.cp.Do(func(cp *fakecp.Server) {
		cp.OnBatch = func(fakecp.Key) bool { return true } // nothing acked by the first bot
	})
	stop := b.start(0)
	b.cp.AddJob(protocol.Job{ID: "job-1", Kind: protocol.JobScan, ScanID: "scan-1"})
	waitFor(t, "the scan to reach the stalling target", func() bool {
		return strings.Contains(b.logs.String(), "scanning target=tls://")
	})
	start := time.Now()
	stop()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stopping took %s", d)
	}
	if !b.spoolHas(".complete") || !b.spoolHas(".job") {
		t.Fatalf("spool after stop: %v", b.spoolFiles())
	}
	if o, ok := b.mark(); ok {
		t.Errorf("open-scan marker left after a stop: %+v", o)
	}
	b.cp.Do(func(cp *fakecp.Server) { cp.OnBatch = nil })
	b.start(0)
	waitFor(t, "the job's result", func() bool {
		var ok bool
		b.cp.Do(func(cp *fakecp.Server) { _, ok = cp.Results["job-1"] })
		return ok
	})
	c := checkScan(t, b.cp, "scan-1", 3)
	if c.Complete || c.Stopped != "the bot was stopped during the scan" {
		t.Errorf("completion %+v", c)
	}
	b.cp.Do(func(cp *fakecp.Server) {
		if cp.Results["job-1"].Status != "failed" {
			t.Errorf("job result %+v", cp.Results["job-1"])
		}
	})
}

func TestSpoolFullRefusesScan(t *testing.T) {
	b := newBot(t)
	b.cp.SetConfig(scanConfig("v1", certDir(t, 2)))
	b.start(64) // smaller than a scan start
	b.cp.AddJob(protocol.Job{ID: "job-1", Kind: protocol.JobScan, ScanID: "scan-1"})
	waitFor(t, "the job's result", func() bool {
		var ok bool
		b.cp.Do(func(cp *fakecp.Server) { _, ok = cp.Results["job-1"] })
		return ok
	})
	b.cp.Do(func(cp *fakecp.Server) {
		res := cp.Results["job-1"]
		if res.Status != "failed" || !strings.Contains(res.Error, "spool is full") {
			t.Errorf("job result %+v, want failed: spool is full", res)
		}
		if len(cp.Starts) != 0 {
			t.Errorf("a refused scan was started: %v", cp.Starts)
		}
	})
	if !strings.Contains(b.logs.String(), "spool is full") {
		t.Error("the refusal is not logged")
	}
}

func TestJobsOfNoKnownKindFail(t *testing.T) {
	b := newBot(t)
	b.start(0)
	b.cp.AddJob(protocol.Job{ID: "r-1", Kind: "frobnicate"})
	b.cp.AddJob(protocol.Job{ID: "s-1", Kind: protocol.JobScan, ScanID: "../../x"})
	waitFor(t, "both results", func() bool {
		var n int
		b.cp.Do(func(cp *fakecp.Server) { n = len(cp.Results) })
		return n == 2
	})
	b.cp.Do(func(cp *fakecp.Server) {
		if r := cp.Results["r-1"]; r.Status != "failed" || !strings.Contains(r.Error, `"frobnicate"`) {
			t.Errorf("unknown kind: %+v", r)
		}
		if r := cp.Results["s-1"]; r.Status != "failed" || !strings.Contains(r.Error, "not usable") {
			t.Errorf("bad scan id: %+v", r)
		}
	})
}

// The schedule: a scan runs when the injected clock reaches the next
// daily or weekly time in the schedule's zone, not before, then again a
// day or a week later.
func TestScheduledScans(t *testing.T) {
	kolkata, _ := time.LoadLocation("Asia/Kolkata")
	newYork, _ := time.LoadLocation("America/New_York")
	tests := []struct {
		name     string
		schedule protocol.Schedule
		start    time.Time
		first    time.Time
		second   time.Time
	}{
		{"daily in Kolkata", protocol.Schedule{Kind: protocol.ScheduleDaily, Time: "02:00", Timezone: "Asia/Kolkata"},
			time.Date(2026, 3, 2, 1, 0, 0, 0, kolkata), time.Date(2026, 3, 2, 2, 0, 0, 0, kolkata), time.Date(2026, 3, 3, 2, 0, 0, 0, kolkata)},
		{"daily, time already passed today", protocol.Schedule{Kind: protocol.ScheduleDaily, Time: "02:00", Timezone: "Asia/Kolkata"},
			time.Date(2026, 3, 2, 3, 0, 0, 0, kolkata), time.Date(2026, 3, 3, 2, 0, 0, 0, kolkata), time.Date(2026, 3, 4, 2, 0, 0, 0, kolkata)},
		{"weekly across New York's spring-forward", protocol.Schedule{Kind: protocol.ScheduleWeekly, Weekday: "mon", Time: "09:30", Timezone: "America/New_York"},
			time.Date(2026, 3, 4, 12, 0, 0, 0, newYork), time.Date(2026, 3, 9, 9, 30, 0, 0, newYork), time.Date(2026, 3, 16, 9, 30, 0, 0, newYork)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBot(t)
			clock := newFakeClock(tc.start)
			b.clock = clock
			var ids atomic.Int64
			b.tweak = func(c *Config) {
				c.NewID = func() string { return fmt.Sprintf("sched-%d", ids.Add(1)) }
			}
			cfg := scanConfig("v1", certDir(t, 1))
			cfg.Schedule = tc.schedule
			b.cp.SetConfig(cfg)
			b.start(0)
			waitFor(t, "the loop to wait after the first config fetch", func() bool {
				var n int
				b.cp.Do(func(cp *fakecp.Server) { n = cp.ConfigGets })
				return n >= 1 && clock.Afters() >= 1
			})
			started := func() map[string]protocol.ScanStart {
				out := map[string]protocol.ScanStart{}
				b.cp.Do(func(cp *fakecp.Server) {
					for k, v := range cp.Starts {
						out[k] = v
					}
				})
				return out
			}
			for i, at := range []time.Time{tc.first, tc.second} {
				id := fmt.Sprintf("sched-%d", i+1)
				before := clock.Afters()
				clock.Set(at.Add(-time.Minute))
				waitFor(t, "the loop to wait again", func() bool { return clock.Afters() > before })
				time.Sleep(30 * time.Millisecond)
				if _, ok := started()[id]; ok {
					t.Fatalf("%s ran a minute early", id)
				}
				clock.Set(at)
				waitFor(t, id+" to start", func() bool { _, ok := started()[id]; return ok })
				st := started()[id]
				if st.Trigger != "schedule" || !st.Started.Equal(at) {
					t.Errorf("%s: start %+v, want trigger schedule at %s", id, st, at)
				}
				waitFor(t, id+" to complete", func() bool {
					var ok bool
					b.cp.Do(func(cp *fakecp.Server) { _, ok = cp.Completes[id] })
					return ok
				})
			}
			if n := len(started()); n != 2 {
				t.Errorf("%d scans, want 2", n)
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	b := client.Backoff{Min: time.Second, Max: time.Minute, Rand: func() float64 { return 0.999999 }}
	tests := []struct {
		attempt int
		max     time.Duration
	}{{0, time.Second}, {1, 2 * time.Second}, {3, 8 * time.Second}, {6, time.Minute}, {40, time.Minute}}
	for _, tc := range tests {
		d := b.Delay(tc.attempt)
		if d > tc.max || d < tc.max/2 {
			t.Errorf("attempt %d: %s, want in [%s, %s]", tc.attempt, d, tc.max/2, tc.max)
		}
	}
	low := client.Backoff{Min: time.Second, Max: time.Minute, Rand: func() float64 { return 0 }}
	if d := low.Delay(2); d != 2*time.Second {
		t.Errorf("jitter floor: %s, want 2s", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := client.Sleep(ctx, time.Hour); err == nil {
		t.Error("Sleep ignored a cancelled context")
	}
}
