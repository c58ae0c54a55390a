package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// sapStub answers every POST after delay.
func sapStub(b *testing.B, delay time.Duration) string {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if delay > 0 {
			time.Sleep(delay)
		}
		w.WriteHeader(http.StatusCreated)
	}))
	b.Cleanup(hs.Close)
	return hs.URL
}

func postTo(client *http.Client, url string, body []byte) error {
	res, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		return fmt.Errorf("HTTP %d", res.StatusCode)
	}
	return nil
}

type benchWorld struct {
	js       jetstream.JetStream
	url      string
	subjects messages.Subjects
}

func newBenchWorld(b *testing.B) *benchWorld {
	ns := natstest.Embedded(b)
	_, js := natstest.Connect(b, ns.ClientURL())
	s, _ := messages.NewSubjects("ccrelay")
	if err := messages.EnsureStreams(context.Background(), provision.Waiter{}, js, messages.StreamConfig{Replicas: 1, MaxAge: time.Hour, DedupWindow: time.Minute, MaxBytes: -1, DLQMaxAge: time.Hour}); err != nil {
		b.Fatal(err)
	}
	return &benchWorld{js: js, url: ns.ClientURL(), subjects: s}
}

func (w *benchWorld) publish(b *testing.B, n int, tag string) {
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s-%d", tag, i)
		ev := messages.Event{Subject: w.subjects.ContactLens("inst"), ID: id, Source: "/bench", Type: "t", Time: time.Now(),
			Body: fmt.Appendf(nil, `{"id":%q,"detail-type":"Contact Lens Post Call Rules Matched","time":"2026-11-21T09:58:00Z","detail":{"contactArn":"arn:aws:connect:r:1:instance/inst/contact/%s"}}`, id, id)}
		if _, err := w.js.PublishMsgAsync(ev.Msg()); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-w.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publish did not complete")
	}
}

// runRuntime processes n events with replicas runtimes of concurrency each,
// whose handler POSTs each event to sap, and returns the time and the CPU
// time it took.
func (w *benchWorld) runRuntime(b *testing.B, n, replicas, concurrency int, sap string) (took, cpu time.Duration) {
	var done atomic.Int64
	finished := make(chan struct{})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: replicas * concurrency}}
	handler := processors.HandlerFunc(func(ctx context.Context, ev *processors.Event) error {
		if err := postTo(client, sap, ev.Body); err != nil {
			return err
		}
		if done.Add(1) == int64(n) {
			close(finished)
		}
		return nil
	})
	cfg := processors.Config{Concurrency: concurrency, AckWait: 30 * time.Second, MaxDeliver: 5, Backoff: []time.Duration{time.Second},
		MaxAckPending: 10000, HandlerTimeout: time.Minute, LedgerTTL: time.Hour, ShutdownGrace: 5 * time.Second}
	ledger, err := processors.NewLedger(context.Background(), provision.Waiter{}, w.js, w.subjects.LedgerBucket(), time.Hour, cfg.AckWait, 1)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for r := 0; r < replicas; r++ {
		reg := prometheus.NewRegistry()
		rt, err := processors.New(cfg, processors.Deps{
			JS: w.js, Subjects: w.subjects, Ledger: ledger, DLQ: processors.NewDeadLetters(w.js, w.subjects),
			Metrics: processors.NewMetrics(reg), Registry: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Connect: func() (*nats.Conn, error) { return nats.Connect(w.url) },
		}, processors.Processor{Name: "bench", Filter: []string{w.subjects.ContactLensFilter()}, Handler: handler})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = rt.Run(ctx) }()
	}
	start, cpu0 := time.Now(), cpuTime(b)
	select {
	case <-finished:
	case <-time.After(5 * time.Minute):
		b.Fatal("not all processed")
	}
	took, cpu = time.Since(start), cpuTime(b)-cpu0
	cancel()
	wg.Wait()
	return took, cpu
}

// runReference is the least a processor does: JetStream consume, HTTP
// POST, ack, with concurrency workers; no watermill, ledger or metrics. It
// returns the time and the CPU time it took.
func (w *benchWorld) runReference(b *testing.B, n, concurrency int, sap string) (took, cpu time.Duration) {
	ctx := context.Background()
	cons, err := w.js.CreateOrUpdateConsumer(ctx, w.subjects.EventsStream(), jetstream.ConsumerConfig{Durable: "REFERENCE", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 10000})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(concurrency))
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
	var done atomic.Int64
	finished := make(chan struct{})
	msgs := make(chan jetstream.Msg)
	for i := 0; i < concurrency; i++ {
		go func() {
			for m := range msgs {
				if postTo(client, sap, m.Data()) == nil {
					_ = m.Ack()
					if done.Add(1) == int64(n) {
						close(finished)
					}
				} else {
					_ = m.Nak()
				}
			}
		}()
	}
	start, cpu0 := time.Now(), cpuTime(b)
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
	<-finished
	took, cpu = time.Since(start), cpuTime(b)-cpu0
	it.Stop()
	return took, cpu
}

// cpuTime is the CPU time this process has used so far. The runtime and
// the reference run in the same process as the embedded server and the SAP
// stub, so the CPU each run adds is what it costs per message, all parts
// included; on a shared machine that is steadier than throughput, which
// also measures the neighbours.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProcessorLittlesLaw: SAP answers after 100 ms, so concurrency C
// messages in flight bound one replica at C / 0.1 s.
func BenchmarkProcessorLittlesLaw(b *testing.B) {
	const concurrency = 32
	for _, replicas := range []int{1, 3} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			w := newBenchWorld(b)
			sap := sapStub(b, 100*time.Millisecond)
			n := replicas * concurrency * 25
			w.publish(b, n, "ll")
			b.ResetTimer()
			took, _ := w.runRuntime(b, n, replicas, concurrency, sap)
			rate := float64(n) / took.Seconds()
			bound := float64(replicas*concurrency) / 0.1
			b.ReportMetric(rate, "msg/s")
			b.ReportMetric(100*rate/bound, "%bound")
		})
	}
}

// BenchmarkProcessorVsReference: SAP answers at once; the runtime against
// the reference consumer, same concurrency, same stream contents.
func BenchmarkProcessorVsReference(b *testing.B) {
	const concurrency, n = 32, 5000
	w := newBenchWorld(b)
	sap := sapStub(b, 0)
	w.publish(b, n, "ref")
	b.ResetTimer()
	ref, refCPU := w.runReference(b, n, concurrency, sap)
	rt, rtCPU := w.runRuntime(b, n, 1, concurrency, sap)
	b.ReportMetric(float64(n)/ref.Seconds(), "ref_msg/s")
	b.ReportMetric(float64(n)/rt.Seconds(), "msg/s")
	b.ReportMetric(100*ref.Seconds()/rt.Seconds(), "%ref")
	b.ReportMetric(float64(refCPU.Microseconds())/n, "ref_cpu_µs/msg")
	b.ReportMetric(float64(rtCPU.Microseconds())/n, "cpu_µs/msg")
	b.ReportMetric(100*refCPU.Seconds()/rtCPU.Seconds(), "%ref_cpu")
}
