package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// TestNATSCLIRecipes performs the README's "Replay and inspect with the
// NATS CLI" recipes through nats.go, step by step, against a running
// deployment, so the recipes cannot rot.
func TestNATSCLIRecipes(t *testing.T) {
	ns := natstest.Embedded(t)
	d := deploy(t, ns.ClientURL(), 1, "CCRELAY_PROCESS_BACKOFF=50ms")
	d.startProcessors("deliveries")
	ctx := context.Background()
	nc, _ := natstest.Connect(t, ns.ClientURL())

	for i := 0; i < 5; i++ {
		b := deliveryReport(fmt.Sprintf("01RECIPE%d", i), "DELIVERED")
		if r := d.post("/v1/sinch/svc1", signed(sinchSecret, b, timeNow()), b); r.status != 202 {
			t.Fatalf("ingest: %d %s", r.status, r.body)
		}
	}
	eventually(t, "processed", func() bool { return d.processed("deliveries", "done") == 5 })
	events := mustStream(t, d)
	prefix := d.subjects.Prefix()

	// nats stream view CCRELAY_EVENTS --subject '<prefix>.in.sinch.>' --since 1h
	since := time.Now().Add(-time.Hour)
	cons, err := events.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{prefix + ".in.sinch.>"}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for i := 0; i < 5; i++ {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("view: %v", err)
		}
		meta, _ := m.Metadata()
		seqs = append(seqs, meta.Sequence.Stream)
	}

	// nats stream get CCRELAY_EVENTS <seq> --json | jq -r .data | base64 -d | nats pub <subject> --force-stdin
	m, err := events.GetMsg(ctx, seqs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(m.Subject, m.Data); err != nil { // nats pub: a core publish of the bare body
		t.Fatal(err)
	}
	// deliveries keeps no ledger: the re-run is applied again, and is no
	// newer than the status it left.
	stale := func() float64 { return d.procMetric("ccrelay_delivery_reports_stale_total", nil) }
	eventually(t, "one re-run applied again, to the same status", func() bool {
		return d.processed("deliveries", "done") == 6 && stale() == 1
	})

	// for seq in ...: nats stream get --json; keep ccrelay.in.sinch.*; nats pub
	republished := 0
	for seq := seqs[1]; seq <= seqs[4]; seq++ {
		m, err := events.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		if !strings.HasPrefix(m.Subject, prefix+".in.sinch.") {
			continue
		}
		if err := nc.Publish(m.Subject, m.Data); err != nil {
			t.Fatal(err)
		}
		republished++
	}
	eventually(t, "the stretch re-run", func() bool { return stale() == float64(1+republished) })
	if n := d.processed("deliveries", "skipped_duplicate"); n != 0 {
		t.Errorf("%v re-runs skipped by a ledger deliveries does not keep", n)
	}

	// nats consumer info CCRELAY_EVENTS <prefix>_DELIVERIES: lag drains to 0.
	eventually(t, "no lag", func() bool {
		c, err := events.Consumer(ctx, processors.ConsumerName(d.subjects, "deliveries"))
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})

	// A dead letter: a hand-published body the processor cannot identify.
	bad := []byte(`{"app_id":"A","message_delivery_report":{"status":"READ"}}`)
	if err := nc.Publish(d.subjects.Sinch("MESSAGE_DELIVERY", "svc1", "A", "00"), bad); err != nil {
		t.Fatal(err)
	}
	eventually(t, "dead-lettered", func() bool { return d.processed("deliveries", "dead_lettered") == 1 })

	// nats stream view CCRELAY_DLQ --subject '<prefix>.dlq.deliveries'; nats stream get CCRELAY_DLQ <seq>
	dlqStream, err := d.js.Stream(ctx, d.subjects.DeadLetterStream())
	if err != nil {
		t.Fatal(err)
	}
	dcons, err := dlqStream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{d.subjects.DeadLetter("deliveries")}})
	if err != nil {
		t.Fatal(err)
	}
	dl, err := dcons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := dl.Metadata()
	got, err := dlqStream.GetMsg(ctx, meta.Sequence.Stream)
	if err != nil {
		t.Fatal(err)
	}
	orig := got.Header.Get("Ccrelay-Original-Subject")
	if orig != d.subjects.Sinch("MESSAGE_DELIVERY", "svc1", "A", "00") || got.Header.Get("Ccrelay-Error") == "" || got.Header.Get("Ccrelay-Processor") != "deliveries" {
		t.Fatalf("dead letter headers %v", got.Header)
	}
	// ... | nats pub <original subject> --force-stdin; nats stream rmm CCRELAY_DLQ <seq> -f
	before := mustCount(t, events)
	if err := nc.Publish(orig, got.Data); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "requeued body stored", func() bool { return mustCount(t, events) == before+1 })
	if err := dlqStream.DeleteMsg(ctx, meta.Sequence.Stream); err != nil {
		t.Fatal(err)
	}
	if _, err := dlqStream.GetMsg(ctx, meta.Sequence.Stream); err == nil {
		t.Error("dead letter still there after rmm")
	}
}

func mustCount(t *testing.T, st jetstream.Stream) uint64 {
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}
