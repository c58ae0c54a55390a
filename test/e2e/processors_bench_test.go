package e2e_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/deliveries"
	"github.com/ccrelay/ccrelay/processors/service"
)

// publishReports stores the delivery reports of n/3 messages, QUEUED,
// DELIVERED and READ each, as ingest stores them.
func (w *benchWorld) publishReports(b *testing.B, n int) {
	for i := 0; i < n/3; i++ {
		msgID := fmt.Sprintf("01BENCH%019d", i)
		for _, status := range []string{"QUEUED_ON_CHANNEL", "DELIVERED", "READ"} {
			body := deliveryReport(msgID, status)
			ev := messages.Event{Subject: w.subjects.Sinch(string(messages.TriggerMessageDelivery), "svc1", appID, messages.Partition(msgID)),
				ID: msgID + ":" + status, Source: "/sinch/svc1", Type: messages.TypeSinchPrefix + "message_delivery", Time: time.Now(), ReceivedAt: time.Now(), Body: body}
			if _, err := w.js.PublishMsgAsync(ev.Msg()); err != nil {
				b.Fatal(err)
			}
		}
	}
	select {
	case <-w.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publish did not complete")
	}
}

// drained waits until consumer name has every message of the stream
// answered.
func (w *benchWorld) drained(b *testing.B, name string) {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		info, err := w.js.Consumer(context.Background(), w.subjects.EventsStream(), name)
		if err == nil {
			ci, err := info.Info(context.Background())
			if err == nil && ci.NumPending == 0 && ci.NumAckPending == 0 && ci.Delivered.Stream > 0 {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatalf("consumer %s not drained", name)
}

// runDeliveries runs the real deliveries processor, one replica with
// concurrency 32, until the reports are all answered.
func (w *benchWorld) runDeliveries(b *testing.B) (took, cpu time.Duration) {
	cfg, err := config.Load([]string{"CCRELAY_PROCESS_CONCURRENCY=32"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rt, err := service.New(ctx, cfg.Processors, []string{deliveries.Name}, service.Deps{
		JS: w.js, Connect: func() (*nats.Conn, error) { return nats.Connect(w.url) },
		Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), cpuTime(b)
	wg.Add(1)
	go func() { defer wg.Done(); _ = rt.Run(ctx) }()
	w.drained(b, processors.ConsumerName(w.subjects, deliveries.Name))
	took, cpu = time.Since(start), cpuTime(b)-cpu0
	cancel()
	wg.Wait()
	return took, cpu
}

// runKVReference is the least a status keeper does: JetStream consume, one
// KV put keyed by the message id, ack, with 32 workers; no decoding, no
// order between reports, no metrics.
func (w *benchWorld) runKVReference(b *testing.B, n int) (took, cpu time.Duration) {
	ctx := context.Background()
	kv, err := w.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "REFERENCE_STATUS", History: 1, TTL: time.Hour, Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	const concurrency = 32
	start, cpu0 := time.Now(), cpuTime(b)
	cons, err := w.js.CreateOrUpdateConsumer(ctx, w.subjects.EventsStream(), jetstream.ConsumerConfig{Durable: "REFERENCE_KV", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(concurrency))
	if err != nil {
		b.Fatal(err)
	}
	var done atomic.Int64
	finished := make(chan struct{})
	msgs := make(chan jetstream.Msg)
	for range concurrency {
		go func() {
			for m := range msgs {
				id, _, _ := strings.Cut(m.Headers().Get(jetstream.MsgIDHeader), ":")
				if _, err := kv.Put(ctx, id, m.Data()); err != nil {
					b.Error(err)
					_ = m.Nak()
					continue
				}
				_ = m.Ack()
				if done.Add(1) == int64(n) {
					close(finished)
				}
			}
		}()
	}
	go func() {
		for {
			m, err := it.Next()
			if err != nil {
				close(msgs)
				return
			}
			msgs <- m
		}
	}()
	select {
	case <-finished:
	case <-time.After(5 * time.Minute):
		b.Fatal("not all processed")
	}
	took, cpu = time.Since(start), cpuTime(b)-cpu0
	it.Stop()
	return took, cpu
}

// BenchmarkDeliveriesVsReference: the deliveries processor draining a
// backlog of Sinch delivery reports against a bare consume -> KV put ->
// ack loop over the same reports, each on a server of its own.
func BenchmarkDeliveriesVsReference(b *testing.B) {
	const n = 15000
	measure := func(run func(w *benchWorld) (time.Duration, time.Duration)) (took, cpu time.Duration) {
		b.StopTimer()
		w := newBenchWorld(b)
		defer w.close()
		w.publishReports(b, n)
		runtime.GC()
		b.StartTimer()
		return run(w)
	}
	ref, refCPU := measure(func(w *benchWorld) (time.Duration, time.Duration) { return w.runKVReference(b, n) })
	rt, rtCPU := measure(func(w *benchWorld) (time.Duration, time.Duration) { return w.runDeliveries(b) })
	b.ReportMetric(float64(n)/ref.Seconds(), "ref_msg/s")
	b.ReportMetric(float64(n)/rt.Seconds(), "msg/s")
	b.ReportMetric(100*ref.Seconds()/rt.Seconds(), "%ref")
	b.ReportMetric(float64(refCPU.Microseconds())/n, "ref_cpu_µs/msg")
	b.ReportMetric(float64(rtCPU.Microseconds())/n, "cpu_µs/msg")
	b.ReportMetric(100*refCPU.Seconds()/rtCPU.Seconds(), "%ref_cpu")
}
