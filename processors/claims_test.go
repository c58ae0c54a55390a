package processors_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/test/metricstest"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// confirming is a handler with a side effect that must not be repeated: it
// confirms its claim right before it, as the relay does. Events whose id
// starts "pause" stop on their first attempt between the claim and the
// side effect, as a replica that is paused (SIGSTOP, a VM freeze, a long
// GC) would, and take no notice of their context meanwhile.
type confirming struct {
	rec     *recorder
	started chan string
	resume  chan struct{}

	mu        sync.Mutex
	attempts  map[string]int
	confirms  map[string][]error
	maybeDone map[string][]bool
}

func newConfirming(r *recorder) *confirming {
	return &confirming{rec: r, started: make(chan string, 1), resume: make(chan struct{}),
		attempts: map[string]int{}, confirms: map[string][]error{}, maybeDone: map[string][]bool{}}
}

func (c *confirming) Handle(ctx context.Context, ev *processors.Event) error {
	e, err := messages.DecodeContactLensEvent(ev.Body)
	if err != nil {
		return processors.Permanent(err)
	}
	c.mu.Lock()
	c.attempts[e.ID]++
	first := c.attempts[e.ID] == 1
	c.maybeDone[e.ID] = append(c.maybeDone[e.ID], ev.MaybeDone)
	c.mu.Unlock()
	if first && strings.HasPrefix(e.ID, "pause") {
		c.started <- e.ID
		<-c.resume
	}
	err = processors.Confirm(ctx)
	c.mu.Lock()
	c.confirms[e.ID] = append(c.confirms[e.ID], err)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.rec.mu.Lock()
	c.rec.done[e.ID]++
	c.rec.mu.Unlock()
	return nil
}

// ledgerKey is the runtime's key of a processor's work on an event id.
func ledgerKey(processor, id string) string {
	sum := sha256.Sum256([]byte(id))
	return processor + "." + hex.EncodeToString(sum[:16])
}

// TestPausedWorkerDoesNotActOnALostClaim: a worker stops between its claim
// and its side effect; meanwhile another worker takes the claim over (as
// it would once the claim went stale). When the first comes back it finds
// the claim gone and does not act; the work is done once, by whoever holds
// the claim, and the loss is counted.
func TestPausedWorkerDoesNotActOnALostClaim(t *testing.T) {
	ns := natstest.Embedded(t)
	var c *confirming
	f := startWith(t, ns.ClientURL(), 1, func(r *recorder) processors.Handler { c = newConfirming(r); return c })
	f.publish(t, "pause-1", true)
	id := <-c.started

	// The other worker's takeover: the claim rewritten under another owner,
	// who then died in turn (its claim is stale at once, so that the
	// fixture's few deliveries are not spent waiting for it).
	kv, err := f.js.KeyValue(context.Background(), f.subjects.LedgerBucket())
	if err != nil {
		t.Fatal(err)
	}
	key := ledgerKey("recorder", id)
	cur, err := kv.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("the paused worker's claim: %v", err)
	}
	other := fmt.Appendf(nil, `{"state":"working","at":%d,"owner":"other-replica"}`, time.Now().Add(-time.Minute).UnixNano())
	if _, err := kv.Update(context.Background(), key, other, cur.Revision()); err != nil {
		t.Fatal(err)
	}
	close(c.resume)

	// The message is done once, after a takeover of the other's claim.
	eventually(t, "the work done after the other claim went stale", func() bool { d, _ := f.rec.count(id); return d == 1 })
	time.Sleep(2 * time.Second) // a redelivery, if any, would come within AckWait
	if d, _ := f.rec.count(id); d != 1 {
		t.Errorf("side effect done %d times, want 1", d)
	}
	c.mu.Lock()
	first := c.confirms[id][0]
	c.mu.Unlock()
	if !errors.Is(first, processors.ErrClaimLost) {
		t.Errorf("the paused worker's confirm: %v, want ErrClaimLost", first)
	}
	lost := metricstest.Value(t, f.reg, "ccrelay_processor_claim_events_total", map[string]string{"processor": "recorder", "event": processors.ClaimLost})
	taken := metricstest.Value(t, f.reg, "ccrelay_processor_claim_events_total", map[string]string{"processor": "recorder", "event": processors.ClaimTakenOver})
	if lost != 1 || taken != 1 {
		t.Errorf("claim events: lost %v, taken over %v; want 1 and 1", lost, taken)
	}
	if !f.recordedDone(t, key) {
		t.Errorf("the work is not recorded as done")
	}
}

// recordedDone reports whether the ledger holds the work under key as done.
func (f *fixture) recordedDone(t *testing.T, key string) bool {
	t.Helper()
	kv, err := f.js.KeyValue(context.Background(), f.subjects.LedgerBucket())
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), key)
	if err != nil || !strings.Contains(string(e.Value()), `"state":"done"`) {
		t.Logf("ledger entry %s: %v %v", key, err, e)
		return false
	}
	return true
}

// TestTakeoverAfterAConfirmSaysMaybeDone: a worker confirmed its claim
// (its side effect may have happened) and stopped for good; the worker
// that takes the stale claim over is told the work may be done, and the
// takeover is counted as such. A stale claim that was never confirmed is
// taken over without it.
func TestTakeoverAfterAConfirmSaysMaybeDone(t *testing.T) {
	ns := natstest.Embedded(t)
	var c *confirming
	f := startWith(t, ns.ClientURL(), 1, func(r *recorder) processors.Handler { c = newConfirming(r); return c })
	kv, err := f.js.KeyValue(context.Background(), f.subjects.LedgerBucket())
	if err != nil {
		t.Fatal(err)
	}
	stale := time.Now().Add(-time.Minute).UnixNano()
	for id, state := range map[string]string{"sent-1": "sending", "claimed-1": "working"} {
		if _, err := kv.Create(context.Background(), ledgerKey("recorder", id), fmt.Appendf(nil, `{"state":%q,"at":%d,"owner":"dead-replica"}`, state, stale)); err != nil {
			t.Fatal(err)
		}
		f.publish(t, id, true)
	}
	eventually(t, "both done", func() bool {
		a, _ := f.rec.count("sent-1")
		b, _ := f.rec.count("claimed-1")
		return a == 1 && b == 1
	})
	c.mu.Lock()
	sent, claimed := c.maybeDone["sent-1"], c.maybeDone["claimed-1"]
	c.mu.Unlock()
	if len(sent) != 1 || !sent[0] || len(claimed) != 1 || claimed[0] {
		t.Errorf("MaybeDone: after a confirm %v, after a claim only %v; want [true] and [false]", sent, claimed)
	}
	for event, want := range map[string]float64{processors.ClaimTakenOver: 1, processors.ClaimMaybeDone: 1} {
		if got := metricstest.Value(t, f.reg, "ccrelay_processor_claim_events_total", map[string]string{"processor": "recorder", "event": event}); got != want {
			t.Errorf("claim event %s counted %v, want %v", event, got, want)
		}
	}
}

// TestDeadLetterOfABodyAtTheLimit: a hand-published event whose body is
// just under the server's max_payload fails for good; its dead letter,
// with the dead-letter headers, would be over the limit. It is stored
// without its body (which stays in the events stream) rather than retried
// for ever, and a requeue brings the event back whole.
func TestDeadLetterOfABodyAtTheLimit(t *testing.T) {
	ns := natstest.Embedded(t)
	f := start(t, ns.ClientURL(), 1)
	nc, _ := natstest.Connect(t, ns.ClientURL())
	id := "permanent-big"
	small := contactLens(id)
	pad := int(nc.MaxPayload()) - len(small) - 400
	body := append([]byte(`{"pad":"`+strings.Repeat("x", pad)+`",`), small[1:]...)
	ev := messages.Event{Subject: f.subjects.ContactLens("I1"), ID: id, Source: "/test", Type: messages.TypeContactLensPostCall, Time: time.Now(), Body: body}
	if _, err := f.js.PublishMsg(context.Background(), ev.Msg()); err != nil {
		t.Fatal(err)
	}
	var dls []processors.DeadLetter
	eventually(t, "the dead letter", func() bool {
		var err error
		dls, err = f.dlq.List(context.Background(), "recorder")
		return err == nil && len(dls) == 1
	})
	if n := dls[0].Header.Get(messages.HeaderDLQBodyOmitted); n != fmt.Sprint(len(body)) || len(dls[0].Body) != 0 {
		t.Errorf("dead letter: %s=%q with %d body bytes; want the body's length and no body", messages.HeaderDLQBodyOmitted, n, len(dls[0].Body))
	}
	if _, attempts := f.rec.count(id); attempts != 1 {
		t.Errorf("handled %d times, want 1", attempts)
	}
	dl, err := f.dlq.Requeue(context.Background(), dls[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.js.Stream(context.Background(), f.subjects.EventsStream())
	last, err := st.GetLastMsgForSubject(context.Background(), dl.Subject)
	if err != nil || string(last.Data) != string(body) || last.Header.Get(messages.HeaderDLQBodyOmitted) != "" {
		t.Errorf("requeued event: %v, %d bytes (want %d), omitted header %q", err, len(last.Data), len(body), last.Header.Get(messages.HeaderDLQBodyOmitted))
	}
}
