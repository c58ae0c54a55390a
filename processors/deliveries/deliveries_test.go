package deliveries_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/test/expect"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/deliveries"
	"github.com/ccrelay/ccrelay/test/metricstest"
	"github.com/ccrelay/ccrelay/test/natstest"
)

func report(msgID, status string, at time.Time, reason string) *processors.Event {
	r := ""
	if reason != "" {
		r = fmt.Sprintf(`,"reason":{"code":%q,"description":"d"}`, reason)
	}
	body := fmt.Appendf(nil, `{"app_id":"APP","event_time":%q,"message_delivery_report":{"message_id":%q,"status":%q,
"channel_identity":{"channel":"WHATSAPP","identity":"46","app_id":"APP"},"conversation_id":"CV","contact_id":"CT"%s}}`,
		at.Format(time.RFC3339Nano), msgID, status, r)
	return &processors.Event{ID: msgID + ":" + status, Body: body}
}

func setup(t *testing.T) (*deliveries.Processor, *prometheus.Registry) {
	ns := natstest.Embedded(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	reg := prometheus.NewRegistry()
	p, err := deliveries.New(deliveries.Config{StatusTTL: time.Hour}, processors.Env{JS: js, Replicas: 1, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Provision(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p, reg
}

func TestLatestStatusWins(t *testing.T) {
	p, reg := setup(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	steps := []struct {
		ev   *processors.Event
		want messages.SinchDeliveryStatus
	}{
		{report("M1", "DELIVERED", t0.Add(2*time.Second), ""), "DELIVERED"},
		{report("M1", "QUEUED_ON_CHANNEL", t0.Add(1*time.Second), ""), "DELIVERED"}, // late, older
		{report("M1", "READ", t0.Add(3*time.Second), ""), "READ"},
		{report("M2", "READ", t0, ""), "READ"},
		{report("M2", "DELIVERED", t0, ""), "READ"}, // same time: read beats delivered
		{report("M3", "FAILED", t0, "RECIPIENT_NOT_REACHABLE"), "FAILED"},
	}
	for i, s := range steps {
		if err := p.Handle(ctx, s.ev); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		id := s.ev.ID[:2]
		got, err := p.Lookup(ctx, id)
		if err != nil || got.Status != s.want {
			t.Fatalf("step %d: %s status %q %v, want %q", i, id, got.Status, err, s.want)
		}
	}
	m3, _ := p.Lookup(ctx, "M3")
	if m3.Reason == nil {
		t.Fatalf("M3 kept no reason: %+v", m3)
	}
	expect.All(t,
		expect.Check{Name: "M3 reason", Got: m3.Reason.Code, Want: "RECIPIENT_NOT_REACHABLE"},
		expect.Check{Name: "M3 channel", Got: m3.Channel, Want: "WHATSAPP"},
		expect.Check{Name: "M3 contact", Got: m3.ContactID, Want: "CT"},
	)
	reports := func(status, reason string) float64 {
		return metricstest.Value(t, reg, "ccrelay_delivery_reports_total", map[string]string{"channel": "WHATSAPP", "status": status, "reason": reason})
	}
	if n := reports("FAILED", "RECIPIENT_NOT_REACHABLE"); n != 1 {
		t.Errorf("failed report counted %v", n)
	}
	if n := reports("READ", "none"); n != 2 {
		t.Errorf("read reports counted %v", n)
	}
	if err := p.Handle(ctx, &processors.Event{Body: []byte(`{"app_id":"A","message":{"id":"X","contact_message":{"text_message":{"text":"x"}}}}`)}); err == nil {
		t.Error("an inbound message was not refused")
	}
}

// Replicas applying reports of one message in any order and at once keep
// the newest.
func TestConcurrentReportsKeepNewest(t *testing.T) {
	p, _ := setup(t)
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	var evs []*processors.Event
	for i := 0; i < 40; i++ {
		evs = append(evs, report("MX", "DELIVERED", t0.Add(time.Duration(i)*time.Millisecond), ""))
	}
	rand.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	var wg sync.WaitGroup
	for _, ev := range evs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Handle(context.Background(), ev); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, _ := p.Lookup(context.Background(), "MX")
	if want := t0.Add(39 * time.Millisecond); !got.EventTime.Equal(want) {
		t.Fatalf("kept %v, want the newest %v", got.EventTime, want)
	}
}

// TestAnyMessageIDAndLabels: ids a KV key cannot hold as they are (the
// Java SDK's "message id", dots, non-ASCII) are kept under keys of their
// own, and caller-chosen channel and reason values fold into "other".
func TestAnyMessageIDAndLabels(t *testing.T) {
	p, reg := setup(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	ids := []string{"message id", "a.b.c", "ü-id", "=3d", "ULID01", "a/b", "*", ">"}
	for _, id := range ids {
		if err := p.Handle(ctx, report(id, "DELIVERED", t0, "")); err != nil {
			t.Fatalf("%q: %v", id, err)
		}
	}
	keys := map[string]string{}
	for _, id := range ids {
		got, err := p.Lookup(ctx, id)
		if err != nil || got.MessageID != id {
			t.Errorf("%q: kept %+v %v", id, got, err)
		}
		if prev, dup := keys[deliveries.Key(id)]; dup {
			t.Errorf("%q and %q share key %q", id, prev, deliveries.Key(id))
		}
		keys[deliveries.Key(id)] = id
	}
	body := []byte(`{"app_id":"APP","message_delivery_report":{"message_id":"M9","status":"FAILED_SOMEHOW","channel_identity":{"channel":"MY_OWN_CHANNEL"},"reason":{"code":"ATTACKER_CHOSEN_1"}}}`)
	if err := p.Handle(ctx, &processors.Event{ID: "x", Body: body}); err != nil {
		t.Fatal(err)
	}
	if v := metricstest.Value(t, reg, "ccrelay_delivery_reports_total", map[string]string{"channel": "other", "status": "other", "reason": "other"}); v != 1 {
		t.Errorf("unknown values not folded into other: %v", v)
	}
}

// replicas returns n processors on one status bucket, as n replicas of
// ccrelay run them: each remembers only what it wrote or read itself.
func replicas(t *testing.T, n int) ([]*deliveries.Processor, []*prometheus.Registry, jetstream.JetStream) {
	ns := natstest.Embedded(t)
	var ps []*deliveries.Processor
	var regs []*prometheus.Registry
	var js jetstream.JetStream
	for range n {
		_, js = natstest.Connect(t, ns.ClientURL())
		reg := prometheus.NewRegistry()
		p, err := deliveries.New(deliveries.Config{StatusTTL: time.Hour}, processors.Env{JS: js, Replicas: 1, Registry: reg})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Provision(context.Background()); err != nil {
			t.Fatal(err)
		}
		ps, regs = append(ps, p), append(regs, reg)
	}
	return ps, regs, js
}

func requests(t *testing.T, reg *prometheus.Registry, path string) float64 {
	return metricstest.Value(t, reg, "ccrelay_delivery_status_requests_total", map[string]string{"path": path})
}

// TestThreeReplicasRaceOneMessage: three replicas handed the reports of
// the same messages (each report to one of them, some twice, in any
// order, at once) keep each message's newest status, whatever each
// replica remembered.
func TestThreeReplicasRaceOneMessage(t *testing.T) {
	ps, _, _ := replicas(t, 3)
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	statuses := []string{"QUEUED_ON_CHANNEL", "DELIVERED", "READ"}
	for round := range 20 {
		id := fmt.Sprintf("M%02d", round)
		var evs []*processors.Event
		for i, s := range statuses {
			ev := report(id, s, t0.Add(time.Duration(i)*time.Second), "")
			evs = append(evs, ev, ev) // a redelivery too
		}
		// Same event time, ranked: READ beats DELIVERED.
		evs = append(evs, report(id, "DELIVERED", t0.Add(2*time.Second), ""))
		rand.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		var wg sync.WaitGroup
		for i, ev := range evs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := ps[i%3].Handle(context.Background(), ev); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		for _, p := range ps {
			got, err := p.Lookup(context.Background(), id)
			if err != nil || got.Status != "READ" || !got.EventTime.Equal(t0.Add(2*time.Second)) {
				t.Fatalf("round %d: kept %s at %v (%v), want READ at +2s", round, got.Status, got.EventTime, err)
			}
		}
		// A late report to a replica that remembers an older status, and
		// to one that remembers nothing of it, changes nothing.
		for _, p := range ps {
			if err := p.Handle(context.Background(), report(id, "DELIVERED", t0.Add(time.Second), "")); err != nil {
				t.Fatal(err)
			}
		}
		if got, _ := ps[0].Lookup(context.Background(), id); got.Status != "READ" {
			t.Fatalf("round %d: a late report replaced READ with %s", round, got.Status)
		}
	}
}

// TestOneWritePerReport: a replica handed a message's reports in order
// makes one request per report (a create, then conditional writes on the
// revision it wrote) and reads nothing back; a late report costs a read
// and applies nothing; a report after another replica wrote costs a
// refused write and a read.
func TestOneWritePerReport(t *testing.T) {
	ps, regs, js := replicas(t, 2)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	const n = 50
	for i := range n {
		for j, s := range []string{"QUEUED_ON_CHANNEL", "DELIVERED", "READ"} {
			if err := ps[0].Handle(ctx, report(fmt.Sprintf("W%d", i), s, t0.Add(time.Duration(j)*time.Second), "")); err != nil {
				t.Fatal(err)
			}
		}
		// A late one: known older, read back to be sure (a status may
		// have been deleted), not written.
		if err := ps[0].Handle(ctx, report(fmt.Sprintf("W%d", i), "DELIVERED", t0.Add(time.Second), "")); err != nil {
			t.Fatal(err)
		}
	}
	expect.All(t,
		expect.Check{Name: "writes", Got: requests(t, regs[0], "write"), Want: float64(3 * n)},
		expect.Check{Name: "reads", Got: requests(t, regs[0], "read"), Want: float64(n)},
		expect.Check{Name: "stale", Got: metricstest.Value(t, regs[0], "ccrelay_delivery_reports_stale_total", nil), Want: float64(n)},
	)
	// The other replica has not seen W0: its create is refused, it reads
	// READ back and keeps it.
	if err := ps[1].Handle(ctx, report("W0", "DELIVERED", t0.Add(time.Second), "")); err != nil {
		t.Fatal(err)
	}
	expect.All(t,
		expect.Check{Name: "conflicts", Got: requests(t, regs[1], "conflict"), Want: 1.0},
		expect.Check{Name: "reads", Got: requests(t, regs[1], "read"), Want: 1.0},
	)
	// A status deleted by hand (nats kv del) is written again: by a newer
	// report, and by one older than what this replica remembers (a replay).
	kv, err := js.KeyValue(ctx, messages.Subjects{}.DeliveryStatusBucket())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ev   *processors.Event
		want messages.SinchDeliveryStatus
	}{
		{report("W1", "FAILED", t0.Add(time.Hour), "RECIPIENT_NOT_REACHABLE"), "FAILED"},
		{report("W2", "DELIVERED", t0.Add(time.Second), ""), "DELIVERED"},
	} {
		id := c.ev.ID[:2]
		if err := kv.Delete(ctx, deliveries.Key(id)); err != nil {
			t.Fatal(err)
		}
		if err := ps[0].Handle(ctx, c.ev); err != nil {
			t.Fatal(err)
		}
		if got, err := ps[0].Lookup(ctx, id); err != nil || got.Status != c.want {
			t.Fatalf("%s after a delete by hand: %s %v, want %s", id, got.Status, err, c.want)
		}
	}
}

// TestTimelessReports: a report without a time of its own is ordered by
// the time ingest stored it with (ce-time); a bare copy of one,
// republished by hand without headers, has none and never replaces a
// timed status.
func TestTimelessReports(t *testing.T) {
	p, _ := setup(t)
	ctx := context.Background()
	timeless := func(status string) []byte {
		return fmt.Appendf(nil, `{"app_id":"APP","message_delivery_report":{"message_id":"T1","status":%q,"channel_identity":{"channel":"SMS","identity":"46","app_id":"APP"}}}`, status)
	}
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	stored := func(status string, at time.Time) *processors.Event {
		return &processors.Event{ID: "T1:" + status, Body: timeless(status), Header: nats.Header{messages.HeaderTime: {at.Format(time.RFC3339Nano)}}, Time: at}
	}
	for _, ev := range []*processors.Event{stored("QUEUED_ON_CHANNEL", t0), stored("DELIVERED", t0.Add(time.Second))} {
		if err := p.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	// The NATS CLI re-run of the QUEUED report: the body alone, stored
	// now (the runtime's Event.Time would be the copy's store time).
	bare := &processors.Event{ID: "T1:QUEUED_ON_CHANNEL", Body: timeless("QUEUED_ON_CHANNEL"), Header: nats.Header{}, Time: time.Now()}
	if err := p.Handle(ctx, bare); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Lookup(ctx, "T1"); err != nil || got.Status != "DELIVERED" || !got.EventTime.Equal(t0.Add(time.Second)) {
		t.Fatalf("after a bare re-run: %s at %v (%v), want DELIVERED at +1s", got.Status, got.EventTime, err)
	}
}
