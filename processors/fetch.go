package processors

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages/broker"
)

// fetchWait is how long one pull request waits for messages. It bounds how
// long a stopping consumer waits for its last request to end.
const fetchWait = time.Second

// fetchRetry spaces pull requests after one failed (no connection, the
// consumer gone while the operator recreates it).
const fetchRetry = time.Second

// batchingConsumer is the consumer watermill-nats' subscriber consumes
// through. It replaces the subscriber's one-message pulls (one pull request,
// which the server parses and answers, per message) with pulls of as many
// messages as there are free handling slots, and runs the callbacks of a
// batch concurrently, up to slots. It never pulls a message no slot is free
// for: a message waiting in the client would have its ack timer run while
// no handler works on it, and be redelivered to another replica while it
// waits. The gate lets shutdown stop new deliveries and wait for the ones
// running.
type batchingConsumer struct {
	jetstream.Consumer
	gate   *gate
	slots  int
	logger *slog.Logger
	// nats is told of every pull's result: the outage it is part of is
	// logged once per process, each failed pull at debug.
	nats *broker.Part
	// pulls counts pull requests by result; pulled the messages they
	// delivered.
	pullsOK, pullsFailed, pulled prometheus.Counter
	// deliver builds each message's delivery, once, for answered and for
	// watermill's subscriber.
	deliver func(jetstream.Msg) *delivery
	// answered, when set, answers a delivery before it reaches watermill
	// and reports whether it did (events the processor does not want).
	answered func(*delivery) bool
}

// Consume implements jetstream.Consumer for the subscriber: h is its
// message handler, which hands the message to the router and returns once
// it is answered. opts are the subscriber's; the pull size is decided here.
func (c batchingConsumer) Consume(h jetstream.MessageHandler, _ ...jetstream.PullConsumeOpt) (jetstream.ConsumeContext, error) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fetcher{c: c, h: h, free: make(chan struct{}, c.slots), stopNow: cancel, draining: make(chan struct{}), closed: make(chan struct{})}
	for range c.slots {
		f.free <- struct{}{}
	}
	go f.run(ctx)
	return f, nil
}

// fetcher is one running Consume; it is its jetstream.ConsumeContext.
type fetcher struct {
	c       batchingConsumer
	h       jetstream.MessageHandler
	free    chan struct{} // one token per free slot
	stopNow context.CancelFunc

	once     sync.Once
	draining chan struct{}
	closed   chan struct{}
	handlers sync.WaitGroup
}

func (f *fetcher) run(ctx context.Context) {
	defer close(f.closed)
	defer f.handlers.Wait()
	for {
		// One free slot, then every other free one, without waiting.
		select {
		case <-f.draining:
			return
		case <-ctx.Done():
			return
		case <-f.free:
		}
		n := 1
	more:
		for n < f.c.slots {
			select {
			case <-f.free:
				n++
			default:
				break more
			}
		}
		used, err := f.fetch(ctx, n)
		for range n - used {
			f.free <- struct{}{}
		}
		if err == nil {
			f.c.nats.Succeeded()
		} else {
			if ctx.Err() != nil {
				return // stopped mid-pull: not an outage
			}
			f.c.logger.Debug("pulling messages failed; retrying", "error", err, "retry_in", fetchRetry.String())
			f.c.nats.Failed(err)
			select {
			case <-f.draining:
				return
			case <-ctx.Done():
				return
			case <-time.After(fetchRetry):
			}
		}
	}
}

// fetch pulls up to n messages and starts a handler for each; it returns
// how many slots it gave to handlers.
func (f *fetcher) fetch(ctx context.Context, n int) (used int, err error) {
	fctx, cancel := context.WithTimeout(ctx, fetchWait)
	defer cancel()
	batch, err := f.c.Fetch(n, jetstream.FetchContext(fctx))
	if err != nil {
		f.c.pullsFailed.Inc()
		return 0, err
	}
	for m := range batch.Messages() {
		f.c.pulled.Inc()
		if f.stopping() || !f.c.gate.enter() {
			// Shutting down: hand it back at once, for another replica.
			_ = m.Nak()
			continue
		}
		used++
		f.handlers.Add(1)
		go func() {
			defer f.handlers.Done()
			defer func() { f.free <- struct{}{} }()
			defer f.c.gate.leave()
			d := f.c.deliver(m)
			if f.c.answered != nil && f.c.answered(d) {
				return
			}
			f.h(d)
		}()
	}
	// The request ending at its expiry, or the consumer stopping, is no
	// failure.
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		f.c.pullsFailed.Inc()
		return used, err
	}
	f.c.pullsOK.Inc()
	return used, nil
}

func (f *fetcher) stopping() bool {
	select {
	case <-f.draining:
		return true
	default:
		return false
	}
}

// Stop ends the running pull request now; messages it was still to
// deliver are redelivered after the consumer's AckWait.
func (f *fetcher) Stop() {
	f.once.Do(func() { close(f.draining) })
	f.stopNow()
}

// Drain lets the running pull request end (within fetchWait), handing back
// what it still delivers, and stops.
func (f *fetcher) Drain() { f.once.Do(func() { close(f.draining) }) }

// Closed is closed once no pull request and no handler is running.
func (f *fetcher) Closed() <-chan struct{} { return f.closed }
