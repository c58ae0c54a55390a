package deliveries_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/test/expect"

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
