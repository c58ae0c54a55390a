package e2e_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
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
	// close stops the server before the test ends, so that a run measured
	// after it does not share the process with its background work.
	close func()
}

func newBenchWorld(b *testing.B) *benchWorld {
	ns := natstest.Embedded(b)
	nc, js := natstest.Connect(b, ns.ClientURL())
	s, _ := messages.NewSubjects("ccrelay")
	if err := messages.EnsureStreams(context.Background(), provision.Waiter{}, js, messages.StreamConfig{Replicas: 1, MaxAge: time.Hour, DedupWindow: time.Minute, MaxBytes: -1, DLQMaxAge: time.Hour}); err != nil {
		b.Fatal(err)
	}
	return &benchWorld{js: js, url: ns.ClientURL(), subjects: s, close: func() { nc.Close(); natstest.Stop(ns) }}
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
func (w *benchWorld) runRuntime(b *testing.B, n, replicas, concurrency int, sap string, g processors.Guarantee) (took, cpu time.Duration) {
	var done atomic.Int64
	finished := make(chan struct{})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: replicas * concurrency}}
	// An idempotent processor's own record: one KV put after the POST,
	// as summaries records each contact's outcome.
	var status jetstream.KeyValue
	if g == processors.Idempotent {
		status = w.statusBucket(b, "BENCH_STATUS")
	}
	handler := processors.HandlerFunc(func(ctx context.Context, ev *processors.Event) error {
		if err := postTo(client, sap, ev.Body); err != nil {
			return err
		}
		if status != nil {
			if _, err := status.Put(ctx, statusKeyOf(ev.ID), []byte("written")); err != nil {
				return err
			}
		}
		if done.Add(1) == int64(n) {
			close(finished)
		}
		return nil
	})
	cfg := processors.Config{Concurrency: concurrency, AckWait: 30 * time.Second, MaxDeliver: 5, Backoff: []time.Duration{time.Second},
		MaxAckPending: 10000, HandlerTimeout: time.Minute, CallTimeout: 5 * time.Second, RecordTimeout: time.Minute, LedgerTTL: time.Hour, ShutdownGrace: 5 * time.Second}
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
		}, processors.Processor{Name: "bench", Filter: []string{w.subjects.ContactLensFilter()}, Handler: handler, Guarantee: g})
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

// statusBucket creates a KV bucket as the processors' own are.
func (w *benchWorld) statusBucket(b *testing.B, name string) jetstream.KeyValue {
	kv, err := w.js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: name, History: 1, TTL: time.Hour, Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	return kv
}

// statusKeyOf is a KV key for a dedup id.
func statusKeyOf(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:16])
}

// refWrite is what the reference loop writes beside its POST.
type refWrite int

const (
	refBare refWrite = iota // nothing
	refPut                  // a KV put after it: an idempotent processor's own record
	refTwo                  // a create before and a put after: claim and done
)

// runReference is the least a processor does: JetStream consume, HTTP
// POST, ack, with concurrency workers; no watermill, ledger or metrics,
// and beside the POST the writes of write. It returns the time and the CPU
// time it took. refTwo pays what "each side effect once across replicas
// and replays" costs at the least: before the POST, a claim that only one
// worker can make (a KV create: a JetStream write conditional on the key
// being new), after it, the record that it is done, both stored and
// acknowledged.
func (w *benchWorld) runReference(b *testing.B, n, concurrency int, sap string, write refWrite) (took, cpu time.Duration) {
	ctx := context.Background()
	name := fmt.Sprintf("REFERENCE_%d", write)
	var kv jetstream.KeyValue
	if write != refBare {
		kv = w.statusBucket(b, name)
	}
	cons, err := w.js.CreateOrUpdateConsumer(ctx, w.subjects.EventsStream(), jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 10000})
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
	work := func(m jetstream.Msg) error {
		key := statusKeyOf(m.Headers().Get(jetstream.MsgIDHeader))
		if write == refTwo {
			if _, err := kv.Create(ctx, key, []byte("working")); err != nil {
				return err
			}
		}
		if err := postTo(client, sap, m.Data()); err != nil {
			return err
		}
		if write == refPut || write == refTwo {
			_, err := kv.Put(ctx, key, []byte("done"))
			return err
		}
		return nil
	}
	msgs := make(chan jetstream.Msg)
	for i := 0; i < concurrency; i++ {
		go func() {
			for m := range msgs {
				if err := work(m); err != nil {
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
	select {
	case <-finished:
	case <-time.After(5 * time.Minute):
		b.Fatal("not all processed")
	}
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
			took, _ := w.runRuntime(b, n, replicas, concurrency, sap, processors.Once)
			rate := float64(n) / took.Seconds()
			bound := float64(replicas*concurrency) / 0.1
			b.ReportMetric(rate, "msg/s")
			b.ReportMetric(100*rate/bound, "%bound")
		})
	}
}

// BenchmarkProcessorVsReference: SAP answers at once; the runtime against
// the bare loop (ref) and against the bare loop paying the writes the
// processor's guarantee needs (ref_write), same concurrency, same stream
// contents: for guarantee=once on a consumer with many messages out
// (attachments) a KV create before the POST and a put after it (the claim
// and done: the ack floor cannot record the work there; forward's serial
// consumers make it one write, BenchmarkForward), for
// guarantee=idempotent (summaries) a KV put after it, which the runtime's
// handler makes too. The runtime against ref_write is the cost of its own
// machinery; ref_write against ref is the cost of the guarantee.
func BenchmarkProcessorVsReference(b *testing.B) {
	const concurrency, n = 32, 5000
	sap := sapStub(b, 0)
	// Each on a server of its own holding the same events, started after
	// the run before it stopped and its garbage was collected: one run's
	// writes, consumers and heap do not weigh on the next.
	measure := func(run func(w *benchWorld) (time.Duration, time.Duration)) (took, cpu time.Duration) {
		b.StopTimer()
		w := newBenchWorld(b)
		defer w.close()
		w.publish(b, n, "ref")
		runtime.GC()
		b.StartTimer()
		return run(w)
	}
	for _, c := range []struct {
		g     processors.Guarantee
		write refWrite
	}{{processors.Once, refTwo}, {processors.Idempotent, refPut}} {
		b.Run("guarantee="+c.g.String(), func(b *testing.B) {
			ref, refCPU := measure(func(w *benchWorld) (time.Duration, time.Duration) {
				return w.runReference(b, n, concurrency, sap, refBare)
			})
			refW, refWCPU := measure(func(w *benchWorld) (time.Duration, time.Duration) {
				return w.runReference(b, n, concurrency, sap, c.write)
			})
			rt, rtCPU := measure(func(w *benchWorld) (time.Duration, time.Duration) {
				return w.runRuntime(b, n, 1, concurrency, sap, c.g)
			})
			b.ReportMetric(float64(n)/ref.Seconds(), "ref_msg/s")
			b.ReportMetric(float64(n)/refW.Seconds(), "ref_write_msg/s")
			b.ReportMetric(float64(n)/rt.Seconds(), "msg/s")
			b.ReportMetric(100*ref.Seconds()/rt.Seconds(), "%ref")
			b.ReportMetric(100*refW.Seconds()/rt.Seconds(), "%ref_write")
			b.ReportMetric(float64(refCPU.Microseconds())/n, "ref_cpu_µs/msg")
			b.ReportMetric(float64(refWCPU.Microseconds())/n, "ref_write_cpu_µs/msg")
			b.ReportMetric(float64(rtCPU.Microseconds())/n, "cpu_µs/msg")
			b.ReportMetric(100*refWCPU.Seconds()/rtCPU.Seconds(), "%ref_write_cpu")
		})
	}
}
