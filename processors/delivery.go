package processors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
)

// nakDelay spaces redeliveries after transient errors.
type nakDelay struct{ backoff func(uint64) time.Duration }

func (d nakDelay) WaitTime(delivered uint64) time.Duration { return d.backoff(delivered) }

// errNoDelivery is a watermill message that did not come through the
// runtime's unmarshaler; it cannot happen, and is retried if it does.
var errNoDelivery = errors.New("processors: message without its delivery")

// handlerFunc wraps p's handler with the runtime's guarantees, for the
// deliveries of one subscriber, which it takes from handoff.
func (r *Runtime) handlerFunc(p Processor, handoff *handoff) message.NoPublishHandlerFunc {
	m := r.deps.Metrics
	inFlight := m.InFlight.WithLabelValues(p.Name)
	duration := m.Duration.WithLabelValues(p.Name)
	return func(msg *message.Message) error {
		d := handoff.take(msg)
		if d == nil {
			r.deps.Logger.Error("watermill message without its delivery; retrying", "processor", p.Name, "uuid", msg.UUID)
			return errNoDelivery
		}
		inFlight.Inc()
		defer inFlight.Dec()
		ev := d.ev
		outcome, err := r.handle(msg.Context(), p, d, ev, duration)
		m.Messages.WithLabelValues(p.Name, outcome).Inc()
		switch outcome {
		case OutcomeRetried:
			r.logDelivery(msg.Context(), slog.LevelWarn, "processing failed; will retry", p, ev, "error", err, "retry_in", r.backoff(p, ev.Deliveries).String())
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
func (r *Runtime) handle(ctx context.Context, p Processor, d *delivery, ev *Event, duration prometheus.Observer) (string, error) {
	if d.idErr != "" {
		err := Permanentf("cannot identify the event: %s", d.idErr)
		return r.deadLetter(ctx, p, ev, err)
	}
	// Events a Selector does not want never get here: the consumer
	// acknowledged them (Runtime.ignoreUnwanted).
	claim, err := r.deps.Ledger.Claim(ctx, p.Name, ev.ID)
	switch {
	case errors.Is(err, ErrDone):
		return OutcomeSkipped, err
	case err != nil:
		return r.retryOrDeadLetter(ctx, p, ev, err)
	}

	hctx, cancel := context.WithTimeout(ctx, r.cfg.HandlerTimeout)
	defer cancel()
	stop := r.heartbeat(hctx, d, claim)
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
	if !p.Patient && ev.Deliveries >= uint64(r.cfg.MaxDeliver) { // #nosec G115 -- Config.Validate keeps MaxDeliver positive
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
// the ledger claim fresh, every AckWait/3 until stopped. A re-armed timer
// rather than a goroutine with a ticker: most work ends long before the
// first beat, and then costs no goroutine at all.
func (r *Runtime) heartbeat(ctx context.Context, d *delivery, claim *Claim) (stop func()) {
	every := r.cfg.AckWait / 3
	ctx, cancel := context.WithCancel(ctx)
	var (
		mu      sync.Mutex // held by a beat; stop waits for it
		stopped bool
		t       *time.Timer
	)
	mu.Lock()
	t = time.AfterFunc(every, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		_ = d.InProgress()
		_ = claim.Refresh(ctx)
		t.Reset(every)
	})
	mu.Unlock()
	return func() {
		cancel() // ends a refresh under way, so the lock comes free
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
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
