package processors_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/test/expect"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/test/metricstest"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// recorder is a processor whose behaviour is chosen by the event id's
// prefix, and which counts the side effects it completed.
type recorder struct {
	// release ends the handling of "hold" events.
	release  chan struct{}
	mu       sync.Mutex
	done     map[string]int
	attempts map[string]int
	at       map[string][]time.Time
}

func (r *recorder) Handle(ctx context.Context, ev *processors.Event) error {
	e, err := messages.DecodeContactLensEvent(ev.Body)
	if err != nil {
		return processors.Permanent(err)
	}
	r.mu.Lock()
	r.attempts[e.ID]++
	r.at[e.ID] = append(r.at[e.ID], time.Now())
	n := r.attempts[e.ID]
	r.mu.Unlock()
	kind, _, _ := strings.Cut(e.ID, "-")
	switch kind {
	case "fail2":
		if n <= 2 {
			return fmt.Errorf("transient failure %d", n)
		}
	case "always":
		return fmt.Errorf("still down")
	case "permanent":
		return processors.Permanentf("SAP said 400")
	case "once": // permanent the first time only, so a requeue succeeds
		if n == 1 {
			return processors.Permanentf("bad data, fixed later")
		}
	case "panic":
		panic("boom")
	case "ignore":
		return processors.Ignored("nothing to do")
	case "first": // a transient failure the first time only
		if n == 1 {
			return fmt.Errorf("transient failure")
		}
	case "maybe": // no answer up to the last delivery, then done
		if n <= 3 {
			return fmt.Errorf("no answer: %w", processors.ErrMaybeDone)
		}
	case "hold":
		select {
		case <-r.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	case "slow":
		select {
		case <-time.After(3 * time.Second): // twice the ack wait
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	r.done[e.ID]++
	r.mu.Unlock()
	return nil
}

func (r *recorder) count(id string) (done, attempts int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done[id], r.attempts[id]
}

type fixture struct {
	js       jetstream.JetStream
	subjects messages.Subjects
	rec      *recorder
	reg      *prometheus.Registry
	dlq      *processors.DeadLetters
	proc     *processors.Processor
	cancel   context.CancelFunc
	done     chan error
}

func start(t *testing.T, url string, replicas int) *fixture {
	t.Helper()
	return startWith(t, url, replicas, func(r *recorder) processors.Handler { return r })
}

// startWith runs replicas runtimes whose handler handler makes of the
// fixture's recorder.
func startWith(t *testing.T, url string, replicas int, handler func(*recorder) processors.Handler, opts ...func(*processors.Processor)) *fixture {
	t.Helper()
	_, js := natstest.Connect(t, url)
	subjects, _ := messages.NewSubjects("ccrelay")
	ctx := context.Background()
	sc := messages.StreamConfig{Replicas: 1, MaxAge: time.Hour, DedupWindow: time.Minute, MaxBytes: -1, DLQMaxAge: time.Hour}
	if err := messages.EnsureStreams(ctx, provision.Waiter{}, js, sc); err != nil {
		t.Fatal(err)
	}
	f := &fixture{js: js, subjects: subjects, rec: &recorder{release: make(chan struct{}), done: map[string]int{}, attempts: map[string]int{}, at: map[string][]time.Time{}}, reg: prometheus.NewRegistry(), done: make(chan error, replicas)}
	cfg := processors.Config{Concurrency: 4, AckWait: 1500 * time.Millisecond, MaxDeliver: 3, Backoff: []time.Duration{50 * time.Millisecond},
		MaxAckPending: 100, HandlerTimeout: 20 * time.Second, CallTimeout: 500 * time.Millisecond, RecordTimeout: 10 * time.Second, LedgerTTL: time.Hour, ShutdownGrace: 5 * time.Second}
	ledger, err := processors.NewLedger(ctx, provision.Waiter{}, js, subjects.LedgerBucket(), cfg.LedgerTTL, cfg.AckWait, 1)
	if err != nil {
		t.Fatal(err)
	}
	f.dlq = processors.NewDeadLetters(js, subjects)
	m := processors.NewMetrics(f.reg)
	rctx, cancel := context.WithCancel(ctx)
	f.cancel = cancel
	for i := 0; i < replicas; i++ {
		rt, err := processors.New(cfg, processors.Deps{
			JS: js, Subjects: subjects, Ledger: ledger, DLQ: f.dlq, Metrics: m, Registry: prometheus.NewRegistry(),
			Connect: func() (*nats.Conn, error) { return nats.Connect(url) },
			Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		}, f.processor(handler, opts))
		if err != nil {
			t.Fatal(err)
		}
		go func() { f.done <- rt.Run(rctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for i := 0; i < replicas; i++ {
			<-f.done
		}
	})
	return f
}

// processor is the fixture's processor, made once for every replica.
func (f *fixture) processor(handler func(*recorder) processors.Handler, opts []func(*processors.Processor)) processors.Processor {
	if f.proc == nil {
		p := processors.Processor{Name: "recorder", Filter: []string{f.subjects.ContactLensFilter()}, Handler: handler(f.rec)}
		for _, o := range opts {
			o(&p)
		}
		f.proc = &p
	}
	return *f.proc
}

// serial makes the fixture's processor consume one message at a time, as
// a partitioned processor (the relay) does.
func serial(p *processors.Processor) {
	p.Partitions, p.Filter = [][]string{p.Filter}, nil
}

func contactLens(id string) []byte {
	return fmt.Appendf(nil, `{"id":%q,"detail-type":"Contact Lens Post Call Rules Matched","time":"2026-11-21T09:58:00Z",
"detail":{"contactArn":"arn:aws:connect:eu-central-1:1:instance/I1/contact/C-%s"}}`, id, id)
}

// publish stores an event as ingest would (headers) or as an operator with
// the NATS CLI would (body only).
func (f *fixture) publish(t *testing.T, id string, withHeaders bool) {
	t.Helper()
	ev := messages.Event{Subject: f.subjects.ContactLens("I1"), ID: id, Source: "/test", Type: messages.TypeContactLensPostCall, Time: time.Now(), Body: contactLens(id)}
	msg := ev.Msg()
	if !withHeaders {
		msg = &nats.Msg{Subject: ev.Subject, Data: ev.Body}
	}
	if _, err := f.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRuntimeOutcomes(t *testing.T) {
	ns := natstest.Embedded(t)
	f := start(t, ns.ClientURL(), 1)

	for _, id := range []string{"ok-1", "fail2-1", "permanent-1", "always-1", "panic-1", "ignore-1", "slow-1"} {
		f.publish(t, id, true)
	}
	f.publish(t, "ok-handpublished", false)

	eventually(t, "ok and hand-published done", func() bool {
		a, _ := f.rec.count("ok-1")
		b, _ := f.rec.count("ok-handpublished")
		return a == 1 && b == 1
	})
	eventually(t, "transient failures retried to success", func() bool { d, _ := f.rec.count("fail2-1"); return d == 1 })
	eventually(t, "slow work done", func() bool { d, _ := f.rec.count("slow-1"); return d == 1 })
	if _, n := f.rec.count("slow-1"); n != 1 {
		t.Errorf("slow work was delivered %d times: progress was not reported", n)
	}
	if _, n := f.rec.count("permanent-1"); n != 1 {
		t.Errorf("a permanent failure was tried %d times", n)
	}
	var dls []processors.DeadLetter
	eventually(t, "three dead letters", func() bool {
		var err error
		dls, err = f.dlq.List(context.Background(), "recorder")
		return err == nil && len(dls) == 3
	})
	byID := map[string]processors.DeadLetter{}
	for _, dl := range dls {
		byID[dl.Header.Get("ce-id")] = dl
	}
	dl := byID["permanent-1"]
	expect.All(t,
		expect.Check{Name: "permanent: error names SAP's answer", Got: strings.Contains(dl.Error, "SAP said 400"), Want: true},
		expect.Check{Name: "permanent: deliveries", Got: dl.Deliveries, Want: uint64(1)},
		expect.Check{Name: "permanent: subject", Got: dl.Subject, Want: f.subjects.ContactLens("I1")},
		expect.Check{Name: "permanent: body", Got: string(dl.Body), Want: string(contactLens("permanent-1"))},
	)
	dl = byID["always-1"]
	expect.All(t,
		expect.Check{Name: "exhausted: error says it gave up", Got: strings.Contains(dl.Error, "gave up after 3 deliveries"), Want: true},
		expect.Check{Name: "exhausted: deliveries", Got: dl.Deliveries, Want: uint64(3)},
	)
	if dl := byID["panic-1"]; !strings.Contains(dl.Error, "panicked") {
		t.Errorf("panic dead letter %+v", dl)
	}
	if _, n := f.rec.count("always-1"); n != 3 {
		t.Errorf("always-failing tried %d times, want MaxDeliver 3", n)
	}

	// Replays of completed work do nothing; with or without headers.
	f.publishNewMsgID(t, "ok-1")
	f.publish(t, "ok-handpublished", false)
	want := map[string]float64{processors.OutcomeSkipped: 2}
	eventually(t, "replays skipped", func() bool {
		return outcomes(t, f, processors.OutcomeSkipped) == want[processors.OutcomeSkipped]
	})
	if d, _ := f.rec.count("ok-1"); d != 1 {
		t.Errorf("a replay repeated a side effect: %d", d)
	}
	for outcome, n := range map[string]float64{
		processors.OutcomeDone: 4, processors.OutcomeDeadLettered: 3, processors.OutcomeIgnored: 1,
	} {
		if got := outcomes(t, f, outcome); got != n {
			t.Errorf("outcome %s counted %v, want %v", outcome, got, n)
		}
	}
	if got := outcomes(t, f, processors.OutcomeRetried); got < 2+2+2 {
		t.Errorf("retried counted %v", got)
	}
}

// publishNewMsgID replays a stored event with a fresh Nats-Msg-Id, as
// 'ccrelay replay' and the CLI recipes do, so stream dedup lets it through.
func (f *fixture) publishNewMsgID(t *testing.T, id string) {
	t.Helper()
	ev := messages.Event{Subject: f.subjects.ContactLens("I1"), ID: id, Source: "/test", Type: messages.TypeContactLensPostCall, Time: time.Now(), Body: contactLens(id)}
	msg := ev.Msg()
	msg.Header.Set(nats.MsgIdHdr, "replay-"+id+time.Now().String())
	if _, err := f.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

func TestRequeue(t *testing.T) {
	ns := natstest.Embedded(t)
	f := start(t, ns.ClientURL(), 1)
	f.publish(t, "once-1", true)
	var dls []processors.DeadLetter
	eventually(t, "dead letter", func() bool {
		dls, _ = f.dlq.List(context.Background(), "")
		return len(dls) == 1
	})
	dl, err := f.dlq.Requeue(context.Background(), dls[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if dl.Processor != "recorder" {
		t.Fatalf("requeued a dead letter of %q, want recorder", dl.Processor)
	}
	eventually(t, "requeued event processed", func() bool { d, _ := f.rec.count("once-1"); return d == 1 })
	if rest, _ := f.dlq.List(context.Background(), ""); len(rest) != 0 {
		t.Errorf("dead letter still there after requeue: %d", len(rest))
	}
	if _, err := f.dlq.Requeue(context.Background(), dls[0].Seq); err == nil {
		t.Error("requeued the same dead letter twice")
	}
}

// Two replicas on one consumer: every event is handled exactly once.
func TestReplicasShareTheWork(t *testing.T) {
	ns := natstest.Embedded(t)
	f := start(t, ns.ClientURL(), 2)
	for i := 0; i < 200; i++ {
		f.publish(t, fmt.Sprintf("ok-%d", i), true)
	}
	eventually(t, "all done", func() bool {
		f.rec.mu.Lock()
		defer f.rec.mu.Unlock()
		return len(f.rec.done) == 200
	})
	f.rec.mu.Lock()
	defer f.rec.mu.Unlock()
	for id, n := range f.rec.done {
		if n != 1 {
			t.Errorf("%s done %d times", id, n)
		}
	}
}

func outcomes(t *testing.T, f *fixture, outcome string) float64 {
	return metricstest.Value(t, f.reg, "ccrelay_processor_messages_total", map[string]string{"processor": "recorder", "outcome": outcome})
}

// Transient failures are retried after the configured backoff (50 ms
// here), not after the ack wait (1.5 s): the consumer's BackOff must not
// stretch NAK delays.
func TestRetriesFollowBackoff(t *testing.T) {
	ns := natstest.Embedded(t)
	f := start(t, ns.ClientURL(), 1)
	f.publish(t, "always-spacing", true)
	eventually(t, "dead-lettered after MaxDeliver", func() bool { return outcomes(t, f, processors.OutcomeDeadLettered) == 1 })
	f.rec.mu.Lock()
	defer f.rec.mu.Unlock()
	at := f.rec.at["always-spacing"]
	if len(at) != 3 {
		t.Fatalf("%d deliveries, want 3", len(at))
	}
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap >= 1500*time.Millisecond {
			t.Errorf("delivery %d came %v after the previous: the ack wait, not the backoff", i+1, gap)
		}
	}
}

// A runtime asked to stop before it finished starting stops cleanly.
func TestStopWhileStarting(t *testing.T) {
	ns := natstest.Embedded(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	s, _ := messages.NewSubjects("ccrelay")
	if err := messages.EnsureStreams(context.Background(), provision.Waiter{}, js, messages.StreamConfig{Replicas: 1, MaxAge: time.Hour, DedupWindow: time.Minute, MaxBytes: -1, DLQMaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	ledger, err := processors.NewLedger(context.Background(), provision.Waiter{}, js, s.LedgerBucket(), time.Hour, time.Second, 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg := processors.Config{Concurrency: 1, AckWait: time.Second, MaxDeliver: 1, Backoff: []time.Duration{time.Second}, MaxAckPending: 1,
		HandlerTimeout: time.Second, CallTimeout: 300 * time.Millisecond, RecordTimeout: time.Second, LedgerTTL: time.Hour, ShutdownGrace: time.Second}
	reg := prometheus.NewRegistry()
	rt, err := processors.New(cfg, processors.Deps{JS: js, Subjects: s, Ledger: ledger, DLQ: processors.NewDeadLetters(js, s), Metrics: processors.NewMetrics(reg), Registry: reg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Connect: func() (*nats.Conn, error) { return nats.Connect(ns.ClientURL()) }},
		processors.Processor{Name: "early", Filter: []string{s.ContactLensFilter()}, Handler: processors.HandlerFunc(func(context.Context, *processors.Event) error { return nil })})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := rt.Run(ctx); err != nil {
		t.Fatalf("stop during start-up reported %v", err)
	}
}

// TestRuntimePullsOnlyWhatItCanWorkOn: with every handler busy, the runtime
// holds no message it is not working on (each would have its ack timer run
// in the client, and be redelivered to another replica), and once handlers
// free up it takes the rest, each once.
func TestRuntimePullsOnlyWhatItCanWorkOn(t *testing.T) {
	ns := natstest.Embedded(t)
	f := start(t, ns.ClientURL(), 1)
	const n, concurrency = 12, 4 // start's Concurrency
	for i := range n {
		f.publish(t, fmt.Sprintf("hold-%d", i), true)
	}
	running := func() int {
		f.rec.mu.Lock()
		defer f.rec.mu.Unlock()
		k := 0
		for id := range f.rec.attempts {
			if strings.HasPrefix(id, "hold-") {
				k++
			}
		}
		return k
	}
	eventually(t, "every handler busy", func() bool { return running() == concurrency })
	cons, err := f.js.Consumer(context.Background(), f.subjects.EventsStream(), processors.ConsumerName(f.subjects, "recorder"))
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		info, err := cons.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending != concurrency || info.NumPending != n-concurrency {
			t.Fatalf("handed out %d (want %d, the busy handlers), %d left in the stream (want %d)", info.NumAckPending, concurrency, info.NumPending, n-concurrency)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := running(); got != concurrency {
		t.Fatalf("%d events started with %d handlers", got, concurrency)
	}
	close(f.rec.release)
	eventually(t, "every event done", func() bool {
		for i := range n {
			if d, _ := f.rec.count(fmt.Sprintf("hold-%d", i)); d != 1 {
				return false
			}
		}
		return true
	})
	for i := range n {
		if d, a := f.rec.count(fmt.Sprintf("hold-%d", i)); d != 1 || a != 1 {
			t.Errorf("hold-%d: done %d, attempts %d", i, d, a)
		}
	}
	pulled := metricstest.Value(t, f.reg, "ccrelay_processor_pulled_messages_total", map[string]string{"processor": "recorder"})
	pulls := metricstest.Value(t, f.reg, "ccrelay_processor_pulls_total", map[string]string{"processor": "recorder", "result": "ok"})
	if pulled != n || pulls < 1 {
		t.Errorf("%v messages in %v pulls; want %d", pulled, pulls, n)
	}
}

// choosy is a recorder that says, as a Selector reading the body, that it
// wants no "skip-" event.
type choosy struct{ *recorder }

func (c choosy) Wants(ev *processors.Event) (bool, string) {
	if e, err := messages.DecodeContactLensEvent(ev.Body); err == nil && strings.HasPrefix(e.ID, "skip-") {
		return false, "not for me"
	}
	return true, ""
}

// TestUnwantedEventsAreAcknowledgedAsIgnored: events a Selector does not
// want never reach the handler, are acknowledged, and count as ignored;
// the rest are handled as before, hand-published ones included.
func TestUnwantedEventsAreAcknowledgedAsIgnored(t *testing.T) {
	ns := natstest.Embedded(t)
	f := startWith(t, ns.ClientURL(), 1, func(r *recorder) processors.Handler { return choosy{r} })
	for i := range 5 {
		f.publish(t, fmt.Sprintf("skip-%d", i), true)
	}
	f.publish(t, "skip-by-hand", false) // no ce-id: the id comes from the body
	f.publish(t, "plain-1", true)
	eventually(t, "the wanted event done", func() bool { d, _ := f.rec.count("plain-1"); return d == 1 })
	eventually(t, "six ignored", func() bool { return outcomes(t, f, processors.OutcomeIgnored) == 6 })
	cons, err := f.js.Consumer(context.Background(), f.subjects.EventsStream(), processors.ConsumerName(f.subjects, "recorder"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "every event acknowledged", func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0
	})
	for _, id := range []string{"skip-0", "skip-4", "skip-by-hand"} {
		if _, attempts := f.rec.count(id); attempts != 0 {
			t.Errorf("%s reached the handler %d times", id, attempts)
		}
	}
	if got := outcomes(t, f, processors.OutcomeDone); got != 1 {
		t.Errorf("%v done, want 1", got)
	}
}
