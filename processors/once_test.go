package processors_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// ledgerEntries returns the ledger's entries and how many writes its
// bucket took.
func (f *fixture) ledgerEntries(t *testing.T) (map[string]map[string]any, uint64) {
	t.Helper()
	ctx := context.Background()
	kv, err := f.js.KeyValue(ctx, f.subjects.LedgerBucket())
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(e.Value(), &m); err != nil {
			t.Fatal(err)
		}
		out[k] = m
	}
	return out, st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq
}

// TestOnceRecords: work of a Once processor is claimed in the ledger and
// recorded done before the message is acknowledged: two writes per event,
// on a concurrent consumer and on a serial one (one message at a time, as
// the relay's) alike. A later copy of the event (a replay) is skipped.
// (An acknowledgement confirmed on a serial consumer once stood for the
// done write; a consumer placed back over messages another had
// acknowledged, as the relay's are when their partitions change, then
// repeated them.)
func TestOnceRecords(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []func(*processors.Processor)
	}{
		{"serial consumer", []func(*processors.Processor){serial}},
		{"concurrent consumer", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := natstest.Embedded(t)
			f := startWith(t, ns.ClientURL(), 1, func(r *recorder) processors.Handler { return r }, tc.opts...)
			const n = 20
			for i := range n {
				f.publish(t, fmt.Sprintf("ok-%d", i), true)
			}
			eventually(t, "all done", func() bool { return outcomes(t, f, processors.OutcomeDone) == n })
			entries, writes := f.ledgerEntries(t)
			if writes != 2*n || len(entries) != n {
				t.Fatalf("%d ledger writes for %d entries, want a claim and a done per event", writes, len(entries))
			}
			for k, e := range entries {
				if e["state"] != "done" {
					t.Fatalf("entry %s = %v, want done", k, e)
				}
			}
			for i := range n {
				f.publishNewMsgID(t, fmt.Sprintf("ok-%d", i))
			}
			eventually(t, "replays skipped", func() bool { return outcomes(t, f, processors.OutcomeSkipped) == n })
			for i := range n {
				if d, a := f.rec.count(fmt.Sprintf("ok-%d", i)); d != 1 || a != 1 {
					t.Fatalf("ok-%d: done %d times in %d attempts, want once", i, d, a)
				}
			}
		})
	}
}

// TestCopyWhileTheOriginalRuns: a copy of an event stored while the
// original is being handled waits for it, and is skipped once it is done.
func TestCopyWhileTheOriginalRuns(t *testing.T) {
	ns := natstest.Embedded(t)
	f := start(t, ns.ClientURL(), 1)
	f.publish(t, "hold-1", true)
	eventually(t, "the original started", func() bool { _, a := f.rec.count("hold-1"); return a == 1 })
	f.publishNewMsgID(t, "hold-1")
	eventually(t, "the copy waits", func() bool { return outcomes(t, f, processors.OutcomeRetried) >= 2 })
	close(f.rec.release)
	eventually(t, "the copy skipped", func() bool { return outcomes(t, f, processors.OutcomeSkipped) == 1 })
	if d, a := f.rec.count("hold-1"); d != 1 || a != 1 {
		t.Fatalf("hold-1: done %d times in %d attempts, want once", d, a)
	}
}

// TestCopyDoesTheWorkFirst: the original fails once and waits for its
// retry; a copy stored meanwhile may do the work first. The original's
// retry is then skipped as done, whichever came first, and nothing is
// dead-lettered. (With the ack floor as the record of work done, the
// original's own delivery held the floor back, and the original waited
// for it until it was dead-lettered.)
func TestCopyDoesTheWorkFirst(t *testing.T) {
	ns := natstest.Embedded(t)
	f := start(t, ns.ClientURL(), 1)
	const n = 10
	for i := range n {
		id := fmt.Sprintf("first-%d", i)
		f.publish(t, id, true)
		eventually(t, "the original failed once", func() bool { _, a := f.rec.count(id); return a >= 1 })
		f.publishNewMsgID(t, id)
	}
	eventually(t, "every event done, and its other copy skipped", func() bool {
		return outcomes(t, f, processors.OutcomeDone) == n && outcomes(t, f, processors.OutcomeSkipped) == n
	})
	for i := range n {
		if d, _ := f.rec.count(fmt.Sprintf("first-%d", i)); d != 1 {
			t.Errorf("first-%d done %d times, want once", i, d)
		}
	}
	if dl := outcomes(t, f, processors.OutcomeDeadLettered); dl != 0 {
		t.Errorf("%v dead letters", dl)
	}
}

// TestRequeueAfterMaybeDone: work dead-lettered while its claim was kept
// (its outcome unknown, delivery after delivery) is done again when
// requeued: the dead letter's acknowledgement is no record of the work.
func TestRequeueAfterMaybeDone(t *testing.T) {
	ns := natstest.Embedded(t)
	f := startWith(t, ns.ClientURL(), 1, func(r *recorder) processors.Handler { return r }, serial)
	f.publish(t, "maybe-1", true)
	var dls []processors.DeadLetter
	eventually(t, "dead letter", func() bool {
		dls, _ = f.dlq.List(context.Background(), "")
		return len(dls) == 1
	})
	if _, err := f.dlq.Requeue(context.Background(), dls[0].Seq); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the requeued event done", func() bool { d, _ := f.rec.count("maybe-1"); return d == 1 })
	if s := outcomes(t, f, processors.OutcomeSkipped); s != 0 {
		t.Errorf("%v skipped as done", s)
	}
}
