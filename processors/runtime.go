package processors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
)

// Handler does one processor's work for one event. A nil error means the
// side effect is complete; errors are transient unless marked with
// Permanent, or ErrIgnored for events the processor has nothing to do with.
// ctx ends at CCRELAY_PROCESS_HANDLER_TIMEOUT or at shutdown.
type Handler interface {
	Handle(ctx context.Context, ev *Event) error
}

// Selector is implemented by handlers that can tell, cheaply and without
// side effects, that an event is none of theirs (most inbound messages are
// text, which the attachments processor ignores). Such events are
// acknowledged as ignored without touching the ledger: claiming and
// releasing would cost two writes and leave a marker per event.
type Selector interface {
	// Wants reports whether the handler acts on ev, and if not, why.
	Wants(ev *Event) (bool, string)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, ev *Event) error

// Handle implements Handler.
func (f HandlerFunc) Handle(ctx context.Context, ev *Event) error { return f(ctx, ev) }

// Processor is one named processor: what it consumes and what it does.
type Processor struct {
	// Name is the processor's name: in consumer and DLQ subject names,
	// metrics and logs. Lower-case letters, digits and '-'.
	Name string
	// Filter lists the subjects it consumes.
	Filter []string
	// Handler does the work.
	Handler Handler
}

// Deps are what the runtime runs on.
type Deps struct {
	// JS is used for the consumers, the ledger and the dead letters.
	JS jetstream.JetStream
	// Waiter waits for JetStream while consumers are created or bound.
	Waiter   provision.Waiter
	Subjects messages.Subjects
	// Connect opens a new NATS connection. Each processor gets its own:
	// watermill's subscriber drains its connection when it closes.
	Connect  func() (*nats.Conn, error)
	Ledger   *Ledger
	DLQ      *DeadLetters
	Metrics  *Metrics
	Registry prometheus.Registerer
	Logger   *slog.Logger
}

// Runtime runs processors until its context ends.
type Runtime struct {
	cfg   Config
	deps  Deps
	procs []Processor
	names map[string]string // processor -> consumer
}

// New checks the processors and returns a Runtime for them.
func New(cfg Config, deps Deps, procs ...Processor) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Runtime{cfg: cfg, deps: deps, procs: procs, names: map[string]string{}}
	for _, p := range procs {
		if p.Name == "" || strings.Trim(p.Name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return nil, fmt.Errorf("processor name %q: use lower-case letters, digits and '-'", p.Name)
		}
		if len(p.Filter) == 0 || p.Handler == nil {
			return nil, fmt.Errorf("processor %s: needs subjects and a handler", p.Name)
		}
		r.names[p.Name] = ConsumerName(deps.Subjects, p.Name)
	}
	deps.Registry.MustRegister(newConsumerCollector(deps.JS, deps.Subjects, r.names))
	return r, nil
}

// ConsumerName is the durable consumer of processor.
func ConsumerName(s messages.Subjects, processor string) string {
	return s.Bucket(strings.ToUpper(strings.ReplaceAll(processor, "-", "_")))
}

// EnsureConsumer creates p's durable consumer, or updates it where its
// configuration differs. Safe when several replicas start at once.
func (r *Runtime) EnsureConsumer(ctx context.Context, p Processor) (jetstream.Consumer, error) {
	// Transient errors are spaced by NAK delays (CCRELAY_PROCESS_BACKOFF).
	// The consumer's BackOff stays at AckWait: nats-server dates a NAK'd
	// message's redelivery from BackOff[deliveries-1] - AckWait + delay,
	// so a growing BackOff would stretch every NAK delay after the first
	// (measured: 50ms became 1.5s, then 4.5s). Redeliveries after an ack
	// timeout (a replica that died) come after AckWait.
	backoff := []time.Duration{r.cfg.AckWait}
	cc := jetstream.ConsumerConfig{
		Durable:        r.names[p.Name],
		Description:    "ccrelay processor " + p.Name,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        r.cfg.AckWait,
		MaxDeliver:     r.cfg.MaxDeliver,
		BackOff:        backoff,
		MaxAckPending:  r.cfg.MaxAckPending,
		FilterSubjects: p.Filter,
	}
	return r.deps.Waiter.Consumer(ctx, r.deps.JS, r.deps.Subjects.EventsStream(), cc)
}

// Run runs every processor until ctx ends, then stops taking messages and
// waits for the ones in flight (unanswered ones are redelivered elsewhere).
func (r *Runtime) Run(ctx context.Context) error {
	logger := routerLogger{watermill.NewSlogLoggerWithLevelMapping(r.deps.Logger, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: r.cfg.HandlerTimeout}, logger)
	if err != nil {
		return err
	}
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	g := &gate{}
	for _, p := range r.procs {
		cons, err := r.EnsureConsumer(ctx, p)
		if err != nil {
			if ctx.Err() != nil {
				return nil // asked to stop while starting: nothing to undo
			}
			return err
		}
		nc, err := r.deps.Connect()
		if err != nil {
			return fmt.Errorf("processor %s: %w", p.Name, err)
		}
		conns = append(conns, nc)
		sub, err := wmjs.NewSubscriber(wmjs.SubscriberConfig{
			Conn:   nc,
			Logger: logger,
			// The subscriber gives up waiting for the handler after this;
			// the handler itself is bounded by HandlerTimeout.
			AckWaitTimeout:      r.cfg.HandlerTimeout + time.Minute,
			ResourceInitializer: bind(cons, g),
			NakDelay:            nakDelay{r.cfg},
			// One message per subscription: more would wait in the client
			// while the ack timer runs. Concurrency comes from running
			// Concurrency subscriptions on the one consumer.
			ConsumeOptions: []jetstream.PullConsumeOpt{jetstream.PullMaxMessages(1)},
			Unmarshaler:    unmarshaler{subjects: r.deps.Subjects},
			// A plain ack, not one waiting for confirmation: if it is lost,
			// the redelivery finds the work done in the ledger and is skipped.
			AckAsync: true,
		})
		if err != nil {
			return fmt.Errorf("processor %s: %w", p.Name, err)
		}
		h := r.handlerFunc(p, nc)
		for i := 0; i < r.cfg.Concurrency; i++ {
			router.AddConsumerHandler(fmt.Sprintf("%s-%d", p.Name, i), p.Name, sub, h)
		}
		stop, err := r.watchMaxDeliveries(ctx, nc, p)
		if err != nil {
			return err
		}
		defer stop()
		r.deps.Logger.Info("processor started", "processor", p.Name, "consumer", r.names[p.Name], "subjects", p.Filter, "concurrency", r.cfg.Concurrency)
	}
	// The router runs on its own context so that shutdown can happen in
	// order: first the gate stops new deliveries and lets those in flight
	// finish, then the router closes. watermill-nats' subscriber closes its
	// output channel while consume callbacks may still send on it (a send
	// on a closed channel: a panic, and a data race); with the gate closed
	// no callback is left to do so.
	rctx, rcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer rcancel()
	done := make(chan error, 1)
	go func() { done <- router.Run(rctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	if !g.close(r.cfg.ShutdownGrace) {
		r.deps.Logger.Warn("shutdown: deliveries still running after the grace period; they will be redelivered", "grace", r.cfg.ShutdownGrace)
	}
	rcancel()
	return <-done
}

// routerLogger is the logger of watermill's router and subscribers. The
// runtime logs each delivery's outcome itself, once, at the level the
// outcome deserves (a retry is a WARN); the router's "Handler returned
// error" for the same delivery would repeat it at ERROR, so an SAP outage
// would flood the ERROR level with retries that are going to succeed.
type routerLogger struct{ watermill.LoggerAdapter }

const routerHandlerError = "Handler returned error"

func (l routerLogger) Error(msg string, err error, fields watermill.LogFields) {
	if msg == routerHandlerError {
		l.LoggerAdapter.Debug(msg, fields.Add(watermill.LogFields{"error": err}))
		return
	}
	l.LoggerAdapter.Error(msg, err, fields)
}

func (l routerLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return routerLogger{l.LoggerAdapter.With(fields)}
}

// bind hands watermill the consumer ccrelay created, behind the gate.
func bind(c jetstream.Consumer, g *gate) wmjs.ResourceInitializer {
	return func(context.Context, jetstream.JetStream, string) (jetstream.Consumer, func(context.Context, watermill.LoggerAdapter), error) {
		return gatedConsumer{Consumer: c, gate: g}, nil, nil
	}
}

// gate admits consume callbacks until it is closed, and lets close wait
// for the ones admitted.
type gate struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

func (g *gate) leave() { g.wg.Done() }

// close stops admitting and waits up to grace for the admitted to leave.
func (g *gate) close(grace time.Duration) bool {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	left := make(chan struct{})
	go func() { g.wg.Wait(); close(left) }()
	select {
	case <-left:
		return true
	case <-time.After(grace):
		return false
	}
}

// gatedConsumer runs consume callbacks only while its gate is open.
type gatedConsumer struct {
	jetstream.Consumer
	gate *gate
}

func (c gatedConsumer) Consume(h jetstream.MessageHandler, opts ...jetstream.PullConsumeOpt) (jetstream.ConsumeContext, error) {
	return c.Consumer.Consume(func(m jetstream.Msg) {
		if !c.gate.enter() {
			// Shutting down: hand it back at once, for another replica.
			_ = m.Nak()
			return
		}
		defer c.gate.leave()
		h(m)
	}, opts...)
}

// nakDelay spaces redeliveries after transient errors.
type nakDelay struct{ cfg Config }

func (d nakDelay) WaitTime(delivered uint64) time.Duration { return d.cfg.backoff(delivered) }

// handlerFunc wraps p's handler with the runtime's guarantees.
func (r *Runtime) handlerFunc(p Processor, nc *nats.Conn) message.NoPublishHandlerFunc {
	m := r.deps.Metrics
	inFlight := m.InFlight.WithLabelValues(p.Name)
	duration := m.Duration.WithLabelValues(p.Name)
	return func(msg *message.Message) error {
		inFlight.Inc()
		defer inFlight.Dec()
		ev := eventOf(msg)
		outcome, err := r.handle(msg.Context(), p, nc, msg.Metadata[mdReply], msg.Metadata[mdIDError], ev, duration)
		m.Messages.WithLabelValues(p.Name, outcome).Inc()
		switch outcome {
		case OutcomeRetried:
			r.logDelivery(msg.Context(), slog.LevelWarn, "processing failed; will retry", p, ev, "error", err, "retry_in", r.cfg.backoff(ev.Deliveries).String())
			return err // nak, with backoff
		case OutcomeDeadLettered:
			r.logDelivery(msg.Context(), slog.LevelError, "dead-lettered", p, ev, "error", err)
		case OutcomeDone:
			r.logDelivery(msg.Context(), slog.LevelDebug, "processed", p, ev)
		default:
			r.logDelivery(msg.Context(), slog.LevelDebug, "acknowledged", p, ev, "outcome", outcome, "reason", err)
		}
		return nil
	}
}

// logDelivery logs one delivery with its ids. It checks the level first:
// this runs for every message, and most outcomes are logged at debug.
func (r *Runtime) logDelivery(ctx context.Context, level slog.Level, msg string, p Processor, ev *Event, args ...any) {
	if !r.deps.Logger.Enabled(ctx, level) {
		return
	}
	args = append(args, "processor", p.Name, "dedup_id", ev.ID, "seq", ev.Seq, "deliveries", ev.Deliveries, "subject", ev.Subject)
	r.deps.Logger.Log(ctx, level, msg, args...)
}

// handle runs one delivery and returns its outcome. The error explains
// every outcome but done.
func (r *Runtime) handle(ctx context.Context, p Processor, nc *nats.Conn, reply, idErr string, ev *Event, duration prometheus.Observer) (string, error) {
	if idErr != "" {
		err := Permanentf("cannot identify the event: %s", idErr)
		return r.deadLetter(ctx, p, ev, err)
	}
	if sel, ok := p.Handler.(Selector); ok {
		if wants, why := sel.Wants(ev); !wants {
			return OutcomeIgnored, Ignored(why)
		}
	}
	claim, err := r.deps.Ledger.Claim(ctx, p.Name, ev.ID)
	switch {
	case errors.Is(err, ErrDone):
		return OutcomeSkipped, err
	case err != nil:
		return r.retryOrDeadLetter(ctx, p, ev, err)
	}

	hctx, cancel := context.WithTimeout(ctx, r.cfg.HandlerTimeout)
	defer cancel()
	stop := r.heartbeat(hctx, nc, reply, claim)
	start := time.Now()
	err = safeHandle(hctx, p.Handler, ev)
	duration.Observe(time.Since(start).Seconds())
	stop()

	// The ledger is written even if ctx ended: the work did (or did not)
	// happen either way.
	lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer lcancel()
	switch {
	case err == nil:
		if derr := claim.Done(lctx); derr != nil {
			// The side effect happened; retrying would repeat it. Ack, and
			// let sink-side checks cover a replay.
			r.deps.Logger.Error("could not record completed work", "processor", p.Name, "dedup_id", ev.ID, "error", derr)
		}
		return OutcomeDone, nil
	case errors.Is(err, ErrIgnored):
		_ = claim.Release(lctx)
		return OutcomeIgnored, err
	}
	if rerr := claim.Release(lctx); rerr != nil {
		r.deps.Logger.Warn("could not release claim; a retry waits until it is stale", "processor", p.Name, "dedup_id", ev.ID, "error", rerr)
	}
	if errors.Is(err, ErrPermanent) {
		return r.deadLetter(ctx, p, ev, err)
	}
	return r.retryOrDeadLetter(ctx, p, ev, err)
}

func (r *Runtime) retryOrDeadLetter(ctx context.Context, p Processor, ev *Event, err error) (string, error) {
	if ev.Deliveries >= uint64(r.cfg.MaxDeliver) { // #nosec G115 -- Config.Validate keeps MaxDeliver positive
		return r.deadLetter(ctx, p, ev, fmt.Errorf("gave up after %d deliveries: %w", ev.Deliveries, err))
	}
	return OutcomeRetried, err
}

func (r *Runtime) deadLetter(ctx context.Context, p Processor, ev *Event, cause error) (string, error) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := r.deps.DLQ.Send(dctx, p.Name, ev, cause); err != nil {
		// Not stored as a dead letter: keep it in the stream and retry.
		return OutcomeRetried, fmt.Errorf("%w (and %w)", cause, err)
	}
	return OutcomeDeadLettered, cause
}

// heartbeat tells JetStream the delivery is still being worked on, and keeps
// the ledger claim fresh, every AckWait/3 until stopped.
func (r *Runtime) heartbeat(ctx context.Context, nc *nats.Conn, reply string, claim *Claim) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(r.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if reply != "" {
					// "+WPI" is JetStream's in-progress acknowledgement.
					_ = nc.Publish(reply, []byte("+WPI"))
				}
				_ = claim.Refresh(ctx)
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// PanicError is a handler panic, turned into a transient error: the message
// is retried, and dead-lettered if it keeps panicking.
type PanicError struct {
	Value any
	Stack string
}

func (e *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }

func safeHandle(ctx context.Context, h Handler, ev *Event) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: string(debug.Stack())}
		}
	}()
	return h.Handle(ctx, ev)
}

// watchMaxDeliveries dead-letters messages JetStream stopped delivering
// without ever getting an answer (the replica died on each delivery), which
// the handler wrapper cannot see.
func (r *Runtime) watchMaxDeliveries(ctx context.Context, nc *nats.Conn, p Processor) (func(), error) {
	subj := fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", r.deps.Subjects.EventsStream(), r.names[p.Name])
	sub, err := nc.Subscribe(subj, func(m *nats.Msg) {
		var adv struct {
			StreamSeq  uint64 `json:"stream_seq"`
			Deliveries uint64 `json:"deliveries"`
		}
		if json.Unmarshal(m.Data, &adv) != nil || adv.StreamSeq == 0 {
			return
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		st, err := r.deps.JS.Stream(actx, r.deps.Subjects.EventsStream())
		var raw *jetstream.RawStreamMsg
		if err == nil {
			raw, err = st.GetMsg(actx, adv.StreamSeq)
		}
		if err != nil {
			r.deps.Logger.Error("max deliveries advisory: message gone", "processor", p.Name, "seq", adv.StreamSeq, "error", err)
			return
		}
		ev := &Event{Subject: raw.Subject, ID: raw.Header.Get(messages.HeaderID), Header: raw.Header, Body: raw.Data, Seq: adv.StreamSeq, Deliveries: adv.Deliveries}
		stored, err := r.deps.DLQ.Send(actx, p.Name, ev, fmt.Errorf("delivered %d times without an answer", adv.Deliveries))
		if err != nil {
			r.deps.Logger.Error("max deliveries advisory: dead-letter failed", "processor", p.Name, "seq", adv.StreamSeq, "error", err)
			return
		}
		// Every replica receives the advisory; the dead letter's dedup id
		// stores it once, and only the replica that stored it counts it.
		if stored {
			r.deps.Metrics.Messages.WithLabelValues(p.Name, OutcomeDeadLettered).Inc()
			r.deps.Logger.Error("dead-lettered", "processor", p.Name, "seq", adv.StreamSeq, "deliveries", adv.Deliveries, "error", "delivered without an answer")
		}
	})
	if err != nil {
		return nil, fmt.Errorf("watch max deliveries: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}
