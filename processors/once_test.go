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

// TestOnceInOneWrite: work of a Once processor costs the ledger one write
// (the claim, naming the delivery); the confirmed acknowledgement records
// it done. A later copy of the event (a replay) reads that from the
// consumer's ack floor and is skipped, and the entry is marked done then;
// a copy that comes while the original is still being handled waits for
// it, and is skipped once it is done.
func TestOnceInOneWrite(t *testing.T) {
	ns := natstest.Embedded(t)
	f := start(t, ns.ClientURL(), 1)
	const n = 20
	for i := range n {
		f.publish(t, fmt.Sprintf("ok-%d", i), true)
	}
	eventually(t, "all done", func() bool { return outcomes(t, f, processors.OutcomeDone) == n })
	entries, writes := f.ledgerEntries(t)
	if writes != n || len(entries) != n {
		t.Fatalf("%d ledger writes for %d entries, want one per event (%d)", writes, len(entries), n)
	}
	for k, e := range entries {
		if e["state"] != "working" || e["seq"] == nil || e["consumer"] != processors.ConsumerName(f.subjects, "recorder") {
			t.Fatalf("entry %s = %v, want a claim naming its delivery", k, e)
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
	entries, _ = f.ledgerEntries(t)
	for k, e := range entries {
		if e["state"] != "done" {
			t.Fatalf("entry %s = %v after a replay found it acknowledged, want done", k, e)
		}
	}

	// A copy while the original is held: it waits, then is skipped.
	f.publish(t, "hold-1", true)
	eventually(t, "the original started", func() bool { _, a := f.rec.count("hold-1"); return a == 1 })
	f.publishNewMsgID(t, "hold-1")
	eventually(t, "the copy waits", func() bool { return outcomes(t, f, processors.OutcomeRetried) >= 2 })
	close(f.rec.release)
	eventually(t, "the copy skipped", func() bool { return outcomes(t, f, processors.OutcomeSkipped) == n+1 })
	if d, a := f.rec.count("hold-1"); d != 1 || a != 1 {
		t.Fatalf("hold-1: done %d times in %d attempts, want once", d, a)
	}
}

// TestRequeueAfterMaybeDone: work dead-lettered while its claim was kept
// (its outcome unknown, delivery after delivery) is done again when
// requeued: the dead letter's acknowledgement is no record of the work.
func TestRequeueAfterMaybeDone(t *testing.T) {
	ns := natstest.Embedded(t)
	f := start(t, ns.ClientURL(), 1)
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
