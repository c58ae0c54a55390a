package processors

import (
	"context"
	"fmt"
	"log/slog"
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
	"github.com/ccrelay/ccrelay/messages/broker"
	"github.com/ccrelay/ccrelay/messages/provision"
)

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
	// Outage is the process's NATS outage, which the pull loops report
	// to (the broker's); nil gives the runtime one of its own.
	Outage *broker.Outage
}

// Runtime runs processors until its context ends.
type Runtime struct {
	cfg       Config
	deps      Deps
	procs     []Processor
	consumers map[string][]consumer // by processor
}

// Names are the processors the runtime runs: those asked for, less any
// that had nothing configured.
func (r *Runtime) Names() []string {
	out := make([]string, len(r.procs))
	for i, p := range r.procs {
		out[i] = p.Name
	}
	return out
}

// consumer is one durable consumer of a processor.
type consumer struct {
	name   string
	filter []string
	// serial consumers hold one message unanswered at a time.
	serial bool
}

// New checks the processors and returns a Runtime for them.
func New(cfg Config, deps Deps, procs ...Processor) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Outage == nil {
		deps.Outage = broker.NewOutage(deps.Logger)
	}
	r := &Runtime{cfg: cfg, deps: deps, procs: procs, consumers: map[string][]consumer{}}
	names := map[string][]string{}
	for _, p := range procs {
		if p.Name == "" || strings.Trim(p.Name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return nil, fmt.Errorf("processor name %q: use lower-case letters, digits and '-'", p.Name)
		}
		if (len(p.Filter) == 0 && len(p.Partitions) == 0) || p.Handler == nil {
			return nil, fmt.Errorf("processor %s: needs subjects and a handler", p.Name)
		}
		for _, d := range p.Backoff {
			if d <= 0 {
				return nil, fmt.Errorf("processor %s: backoff durations must be positive", p.Name)
			}
		}
		r.consumers[p.Name] = consumersOf(deps.Subjects, p)
		for _, c := range r.consumers[p.Name] {
			names[p.Name] = append(names[p.Name], c.name)
		}
	}
	deps.Registry.MustRegister(newConsumerCollector(deps.JS, deps.Subjects, names))
	return r, nil
}

// consumersOf returns p's consumers: one on Filter, or one per partition
// (named after the processor and the partition's number).
func consumersOf(s messages.Subjects, p Processor) []consumer {
	if len(p.Partitions) == 0 {
		return []consumer{{name: ConsumerName(s, p.Name), filter: p.Filter}}
	}
	cs := make([]consumer, len(p.Partitions))
	for i, f := range p.Partitions {
		cs[i] = consumer{name: PartitionConsumerName(s, p.Name, i), filter: f, serial: true}
	}
	return cs
}

// backoff is p's wait before redelivery number n+1.
func (r *Runtime) backoff(p Processor, n uint64) time.Duration {
	if len(p.Backoff) > 0 {
		return backoffOf(p.Backoff, n)
	}
	return r.cfg.backoff(n)
}

// PartitionConsumerName is the durable consumer of partition i of a
// partitioned processor.
func PartitionConsumerName(s messages.Subjects, processor string, i int) string {
	return fmt.Sprintf("%s_P%d", ConsumerName(s, processor), i)
}

// ConsumerName is the durable consumer of processor.
func ConsumerName(s messages.Subjects, processor string) string {
	return s.Bucket(strings.ToUpper(strings.ReplaceAll(processor, "-", "_")))
}

// ensureConsumer creates one of p's durable consumers, or updates it where
// its configuration differs. Safe when several replicas start at once.
func (r *Runtime) ensureConsumer(ctx context.Context, p Processor, c consumer) (jetstream.Consumer, error) {
	// Transient errors are spaced by NAK delays (CCRELAY_PROCESS_BACKOFF).
	// The consumer's BackOff stays at AckWait: nats-server dates a NAK'd
	// message's redelivery from BackOff[deliveries-1] - AckWait + delay,
	// so a growing BackOff would stretch every NAK delay after the first
	// (measured: 50ms became 1.5s, then 4.5s). Redeliveries after an ack
	// timeout (a replica that died) come after AckWait.
	backoff := []time.Duration{r.cfg.AckWait}
	cc := jetstream.ConsumerConfig{
		Durable:        c.name,
		Description:    "ccrelay processor " + p.Name,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        r.cfg.AckWait,
		MaxDeliver:     r.cfg.MaxDeliver,
		BackOff:        backoff,
		MaxAckPending:  r.cfg.MaxAckPending,
		FilterSubjects: c.filter,
	}
	if p.Patient {
		cc.MaxDeliver = -1
	}
	if c.serial {
		cc.MaxAckPending = 1
	}
	return r.deps.Waiter.Consumer(ctx, r.deps.JS, r.deps.Subjects.EventsStream(), cc)
}

// Run runs every processor until ctx ends, then stops taking messages and
// waits for the ones in flight (unanswered ones are redelivered elsewhere).
func (r *Runtime) Run(ctx context.Context) error {
	logger := routerLogger{watermill.NewSlogLoggerWithLevelMapping(r.deps.Logger, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug}), r.deps.Logger}
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
		for _, c := range r.consumers[p.Name] {
			nc, err := r.subscribe(ctx, router, logger, g, p, c)
			if nc != nil {
				conns = append(conns, nc)
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil // asked to stop while starting: nothing to undo
				}
				return err
			}
			if !p.Patient {
				stop, err := r.watchMaxDeliveries(ctx, nc, p, c.name)
				if err != nil {
					return err
				}
				defer stop()
			}
		}
		if len(p.Partitions) > 0 {
			r.deps.Logger.Info("processor started", "processor", p.Name, "consumers", len(p.Partitions), "partitioned", true, "subjects_per_consumer", len(p.Partitions[0]))
		} else {
			r.deps.Logger.Info("processor started", "processor", p.Name, "consumer", r.consumers[p.Name][0].name, "subjects", p.Filter, "concurrency", r.cfg.Concurrency)
		}
	}
	var bg sync.WaitGroup
	bctx, bcancel := context.WithCancel(ctx)
	defer func() { bcancel(); bg.Wait() }()
	for _, p := range r.procs {
		if p.Background == nil {
			continue
		}
		bg.Add(1)
		go func() {
			defer bg.Done()
			if err := p.Background(bctx); err != nil && bctx.Err() == nil {
				r.deps.Logger.Error("background work stopped", "processor", p.Name, "error", err)
			}
		}()
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

// subscribe adds the handlers of one of p's consumers to router, on a
// connection of their own, which it returns.
func (r *Runtime) subscribe(ctx context.Context, router *message.Router, logger watermill.LoggerAdapter, g *gate, p Processor, c consumer) (*nats.Conn, error) {
	cons, err := r.ensureConsumer(ctx, p, c)
	if err != nil {
		return nil, err
	}
	nc, err := r.deps.Connect()
	if err != nil {
		return nil, fmt.Errorf("processor %s: %w", p.Name, err)
	}
	u := unmarshaler{subjects: r.deps.Subjects, handoff: &handoff{}, call: r.cfg.Call()}
	if p.Guarantee == Once && c.serial {
		// A lost ack would hold the partition until AckWait (its
		// redelivery is then skipped as done): the ack is confirmed,
		// retried. Elsewhere a lost ack costs one skipped redelivery.
		u.confirm = r.cfg.RecordTimeout
	}
	n := r.cfg.Concurrency
	if c.serial {
		n = 1 // one message at a time is all the consumer hands out
	}
	sub, err := wmjs.NewSubscriber(wmjs.SubscriberConfig{
		Conn:   nc,
		Logger: logger,
		// The subscriber gives up waiting for the handler after this;
		// the handler itself is bounded by HandlerTimeout.
		AckWaitTimeout: r.cfg.HandlerTimeout + time.Minute,
		// Concurrency comes from the consumer: it pulls as many messages
		// as it has free slots and hands each to the one subscription
		// (the router runs each message in its own goroutine).
		ResourceInitializer: bind(batchingConsumer{
			Consumer: cons, gate: g, slots: n,
			logger:      r.deps.Logger.With("processor", p.Name, "consumer", c.name),
			nats:        r.deps.Outage.Part("processor " + p.Name + " (consumer " + c.name + ")"),
			pullsOK:     r.deps.Metrics.Pulls.WithLabelValues(p.Name, "ok"),
			pullsFailed: r.deps.Metrics.Pulls.WithLabelValues(p.Name, "error"),
			pulled:      r.deps.Metrics.Pulled.WithLabelValues(p.Name),
			deliver:     u.deliver,
			answered:    r.ignoreUnwanted(p),
		}),
		NakDelay:    nakDelay{func(n uint64) time.Duration { return r.backoff(p, n) }},
		Unmarshaler: u,
		// Acks are not waited for, but on a Once processor's serial
		// consumer (delivery.Ack): a redelivery after a lost one is
		// skipped, or applied again to the same end.
		AckAsync: true,
	})
	if err != nil {
		return nc, fmt.Errorf("processor %s: %w", p.Name, err)
	}
	router.AddConsumerHandler(c.name, p.Name, sub, r.handlerFunc(p, u.handoff))
	return nc, nil
}

// ignoreUnwanted acknowledges, before watermill sees them, the deliveries
// p's Selector does not want, as ignored: most inbound messages are text,
// which the attachments processor only routes and ignores, and turning each
// into a watermill message and back cost more than the decision. It is the
// one place a Selector is asked; only events without an id (dead-lettered
// by the handler path) pass unasked. It is nil for a handler without a
// Selector.
func (r *Runtime) ignoreUnwanted(p Processor) func(*delivery) bool {
	sel, ok := p.Handler.(Selector)
	if !ok {
		return nil
	}
	ignored := r.deps.Metrics.Messages.WithLabelValues(p.Name, OutcomeIgnored)
	return func(d *delivery) bool {
		if d.idErr != "" {
			return false
		}
		ev := d.ev
		wants, why := sel.Wants(ev)
		if wants {
			return false
		}
		// A plain ack: if it is lost, the redelivery is ignored again.
		_ = d.Msg.Ack()
		ignored.Inc()
		r.logDelivery(context.Background(), slog.LevelDebug, "acknowledged", p, ev, "outcome", OutcomeIgnored, "reason", Ignored(why))
		return true
	}
}

// routerLogger is the logger of watermill's router and subscribers. The
// runtime logs each delivery's outcome itself, once, at the level the
// outcome deserves (a retry is a WARN); the router's "Handler returned
// error" for the same delivery would repeat it at ERROR, so an SAP outage
// would flood the ERROR level with retries that are going to succeed.
//
// watermill-nats logs every message at Info and Trace; the adapter builds
// their fields before slog drops them, so those levels are checked first.
type routerLogger struct {
	watermill.LoggerAdapter
	slog *slog.Logger
}

const routerHandlerError = "Handler returned error"

func (l routerLogger) Info(msg string, fields watermill.LogFields) {
	if l.slog.Enabled(context.Background(), slog.LevelDebug) { // Info is mapped to Debug
		l.LoggerAdapter.Info(msg, fields)
	}
}

func (l routerLogger) Debug(msg string, fields watermill.LogFields) {
	if l.slog.Enabled(context.Background(), slog.LevelDebug) {
		l.LoggerAdapter.Debug(msg, fields)
	}
}

func (l routerLogger) Trace(msg string, fields watermill.LogFields) {
	if l.slog.Enabled(context.Background(), watermill.LevelTrace) {
		l.LoggerAdapter.Trace(msg, fields)
	}
}

func (l routerLogger) Error(msg string, err error, fields watermill.LogFields) {
	if msg == routerHandlerError {
		l.LoggerAdapter.Debug(msg, fields.Add(watermill.LogFields{"error": err}))
		return
	}
	l.LoggerAdapter.Error(msg, err, fields)
}

func (l routerLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return routerLogger{l.LoggerAdapter.With(fields), l.slog}
}
