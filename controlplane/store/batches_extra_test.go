package store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/store"
)

// P9, issue 11: claiming a wave is one conditional update: only in a
// running batch, only once every earlier wave ended, only once.
func TestClaimBatchWave(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	f := newFixture(t, st, 1)
	items := []store.BatchItem{
		{Seq: 1, Wave: 1, Location: "file:///a.pem", BotID: f.bot},
		{Seq: 2, Wave: 1, Location: "file:///b.pem", BotID: f.bot},
		{Seq: 3, Wave: 2, Location: "file:///c.pem", BotID: f.bot},
		{Seq: 4, Wave: 2, Location: "file:///d.pem", BotID: f.bot},
	}
	for i := range items {
		items[i].BatchID, items[i].State = "b1", store.ItemPending
	}
	if err := st.CreateBatch(ctx, store.Batch{ID: "b1", Account: f.account, Name: "x", Action: "rotate", WaveSize: 2,
		Status: store.BatchPlanned}, items); err != nil {
		t.Fatal(err)
	}
	if err := st.SkipBatchItems(ctx, "b1", []store.BatchItem{{Seq: 4, Error: "bot is inactive"}}); err != nil {
		t.Fatal(err)
	}
	claim := func(wave int, mark string) []int {
		t.Helper()
		got, err := st.ClaimBatchWave(ctx, "b1", wave, mark)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int
		for _, it := range got {
			if it.OrderID != mark || it.State != store.ItemOrdered {
				t.Fatalf("claimed %+v", it)
			}
			seqs = append(seqs, it.Seq)
		}
		return seqs
	}
	if got := claim(1, "claim:a:1"); got != nil {
		t.Fatalf("claimed %v in a planned batch", got)
	}
	if err := st.SetBatchStatus(ctx, f.account, "b1", []string{store.BatchPlanned}, store.BatchRunning, time.Now()); err != nil {
		t.Fatal(err)
	}
	release := func(seq int, mark string) []int {
		ok, err := st.ReleaseBatchItem(ctx, "b1", seq, mark)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return []int{seq}
		}
		return nil
	}
	steps := []struct {
		name string
		do   func() []int
		want []int
	}{
		{"wave 2 while wave 1 is pending", func() []int { return claim(2, "claim:a:1") }, nil},
		{"wave 1", func() []int { return claim(1, "claim:a:2") }, []int{1, 2}},
		{"wave 1 again", func() []int { return claim(1, "claim:b:1") }, nil},
		{"release with another claim", func() []int { return release(1, "claim:b:1") }, nil},
		{"release", func() []int { return release(1, "claim:a:2") }, []int{1}},
		{"wave 1 after release", func() []int { return claim(1, "claim:b:2") }, []int{1}},
		{"wave 2 while wave 1 is ordered", func() []int { return claim(2, "claim:b:3") }, nil},
		{"wave 2 once wave 1 ended, skipped item left out", func() []int {
			for _, seq := range []int{1, 2} {
				if err := st.SetBatchItem(ctx, "b1", seq, "o", store.ItemDone, ""); err != nil {
					t.Fatal(err)
				}
			}
			return claim(2, "claim:b:4")
		}, []int{3}},
	}
	for _, s := range steps {
		if got := s.do(); fmt.Sprint(got) != fmt.Sprint(s.want) {
			t.Fatalf("%s: %v, want %v", s.name, got, s.want)
		}
	}
	ordered, err := st.BatchItemsInState(ctx, "b1", store.ItemOrdered, 10, 0)
	if err != nil || len(ordered) != 1 || ordered[0].Seq != 3 || ordered[0].OrderID != "claim:b:4" {
		t.Fatalf("ordered items %+v (%v)", ordered, err)
	}
	skipped, err := st.BatchItemsInState(ctx, "b1", store.ItemSkipped, 10, 0)
	if err != nil || len(skipped) != 1 || skipped[0].Error != "bot is inactive" {
		t.Fatalf("skipped items %+v (%v)", skipped, err)
	}
	if n, err := st.SkipPendingBatchItems(ctx, "b1", "stopped by alice"); err != nil || n != 0 {
		t.Fatalf("skip pending: %d %v", n, err)
	}
}

// P6: a due schedule is claimed by one of many replicas.
func TestClaimScheduleOnce(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	f := newFixture(t, st, 1)
	now := time.Now()
	if err := st.CreateSchedule(ctx, store.Schedule{ID: "s1", Account: f.account, Action: store.ScheduleRotate,
		Fingerprint: "ab", At: now.Add(-time.Minute), Status: store.SchedulePending}); err != nil {
		t.Fatal(err)
	}
	var won atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			ok, err := st.ClaimSchedule(ctx, "s1", now)
			if err != nil {
				t.Error(err)
			}
			if ok {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d claims won", won.Load())
	}
	if err := st.SetScheduleResult(ctx, "s1", "order-1", ""); err != nil {
		t.Fatal(err)
	}
	ss, err := st.Schedules(ctx, f.account)
	if err != nil || len(ss) != 1 || ss[0].Status != store.ScheduleFired || ss[0].LastOrderID != "order-1" {
		t.Fatalf("schedules %+v (%v)", ss, err)
	}
	if err := st.SetScheduleResult(ctx, "nope", "", "x"); err == nil {
		t.Fatal("result of a missing schedule recorded")
	}
}
