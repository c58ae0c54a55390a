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
	if p.Guarantee == Idempotent {
		return r.handleIdempotent(ctx, p, d, ev, duration)
	}
	work := Work{Processor: p.Name, ID: ev.ID, Sending: p.Confirms}
	claim, err := r.deps.Ledger.ClaimWork(ctx, work)
	switch {
	case errors.Is(err, ErrDone):
		return OutcomeSkipped, err
	case err != nil:
		return r.retryOrDeadLetter(ctx, p, ev, err)
	}
	if claim.TakenOver {
		event := ClaimTakenOver
		if claim.MaybeDone {
			event = ClaimMaybeDone
			ev.MaybeDone = true
		}
		r.deps.Metrics.Claims.WithLabelValues(p.Name, event).Inc()
		r.logDelivery(ctx, slog.LevelWarn, "took over the stale claim of a worker that stopped", p, ev, "maybe_done", claim.MaybeDone)
	}

	hctx, cancel := context.WithTimeout(ctx, r.cfg.HandlerTimeout)
	defer cancel()
	// lose ends the handler when its claim is lost: another worker has the
	// work, and this one must not go on with it.
	hctx, lose := context.WithCancelCause(hctx)
	defer lose(nil)
	stop := r.heartbeat(hctx, lose, d, claim)
	start := time.Now()
	err = safeHandle(withClaim(hctx, claim, lose), p.Handler, ev)
	duration.Observe(time.Since(start).Seconds())
	stop()
	lost := errors.Is(context.Cause(hctx), ErrClaimLost)

	// The ledger is written even if ctx ended: the work did (or did not)
	// happen either way.
	lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.RecordTimeout)
	defer lcancel()
	switch {
	case err == nil:
		// The side effect happened: record it, retrying through a leader
		// election, and keep the message in progress meanwhile so that no
		// other replica is handed it and repeats the work.
		keep := r.keepInProgress(lctx, d)
		derr := claim.Done(lctx)
		keep()
		if derr != nil {
			r.deps.Metrics.Claims.WithLabelValues(p.Name, ClaimUnrecorded).Inc()
			r.logDelivery(ctx, slog.LevelError, "completed work could not be recorded; the message is given back and whoever takes it over is told the work may be done", p, ev, "error", derr, "within", r.cfg.RecordTimeout.String())
			return OutcomeRetried, fmt.Errorf("completed, but %w", derr)
		}
		return OutcomeDone, nil
	case lost:
		// Another worker holds the claim, or may take it over any moment:
		// leave it to be taken over at once (a claim taken over already
		// is left alone), marked if the side effect may have started.
		r.deps.Metrics.Claims.WithLabelValues(p.Name, ClaimLost).Inc()
		if aerr := claim.Abandon(lctx); aerr != nil {
			r.logDelivery(ctx, slog.LevelWarn, "could not give up the lost claim; a retry waits until it is stale", p, ev, "error", aerr)
		}
		return OutcomeRetried, fmt.Errorf("%w: %w", context.Cause(hctx), err)
	case errors.Is(err, ErrMaybeDone):
		// The side effect may have happened: the retry must be told.
		if aerr := claim.Abandon(lctx); aerr != nil {
			r.logDelivery(ctx, slog.LevelWarn, "could not mark the claim; a retry waits until it is stale", p, ev, "error", aerr)
		}
		return r.retryOrDeadLetter(ctx, p, ev, err)
	case errors.Is(err, ErrIgnored):
		if rerr := claim.Release(lctx); rerr != nil {
			r.logDelivery(ctx, slog.LevelWarn, "could not release claim; it stays until it is stale", p, ev, "error", rerr)
		}
		return OutcomeIgnored, err
	case ev.MaybeDone:
		// An earlier attempt may have done the work; this one failed
		// with an answer, which says nothing of that one. The next
		// attempt must be told too: the claim is left marked.
		if aerr := claim.Abandon(lctx); aerr != nil {
			r.logDelivery(ctx, slog.LevelWarn, "could not mark the claim; a retry waits until it is stale", p, ev, "error", aerr)
		}
		if errors.Is(err, ErrPermanent) {
			return r.deadLetter(ctx, p, ev, err)
		}
		return r.retryOrDeadLetter(ctx, p, ev, err)
	}
	if rerr := claim.Release(lctx); rerr != nil {
		r.logDelivery(ctx, slog.LevelWarn, "could not release claim; a retry waits until it is stale", p, ev, "error", rerr)
	}
	if errors.Is(err, ErrPermanent) {
		return r.deadLetter(ctx, p, ev, err)
	}
	return r.retryOrDeadLetter(ctx, p, ev, err)
}

// handleIdempotent runs one delivery of an idempotent processor: no
// claim and no record, the handler's own write is both; the message is
// kept in progress while the handler runs.
func (r *Runtime) handleIdempotent(ctx context.Context, p Processor, d *delivery, ev *Event, duration prometheus.Observer) (string, error) {
	hctx, cancel := context.WithTimeout(ctx, r.cfg.HandlerTimeout)
	defer cancel()
	stop := r.heartbeat(hctx, nil, d, nil)
	start := time.Now()
	err := safeHandle(hctx, p.Handler, ev)
	duration.Observe(time.Since(start).Seconds())
	stop()
	switch {
	case err == nil:
		return OutcomeDone, nil
	case errors.Is(err, ErrIgnored):
		return OutcomeIgnored, err
	case errors.Is(err, ErrPermanent):
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
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Call())
	defer cancel()
	if _, err := r.deps.DLQ.Send(dctx, p.Name, ev, cause); err != nil {
		// Not stored as a dead letter: keep it in the stream and retry.
		return OutcomeRetried, fmt.Errorf("%w (and %w)", cause, err)
	}
	return OutcomeDeadLettered, cause
}

// heartbeat tells JetStream the delivery is still being worked on, and keeps
// the ledger claim fresh (if there is one), every AckWait/3 until stopped. It stops extending
// work that is no longer this worker's: when the claim was taken over, or
// could not be refreshed for so long that another worker may take it over,
// it calls lose, which ends the handler, and stops telling JetStream the
// message is in progress, so that it is redelivered. A re-armed timer
// rather than a goroutine with a ticker: most work ends long before the
// first beat, and then costs no goroutine at all.
func (r *Runtime) heartbeat(ctx context.Context, lose context.CancelCauseFunc, d *delivery, claim *Claim) (stop func()) {
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
		if claim == nil {
			_ = d.InProgress()
			t.Reset(every)
			return
		}
		// Refresh first: a message kept in progress on a claim that is
		// gone would keep the other worker's redelivery waiting.
		err := claim.Refresh(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return // stopped while refreshing: the handler ended, nothing is lost
		case errors.Is(err, ErrClaimLost):
			lose(err)
			return
		case err != nil && !claim.fresh(every):
			lose(fmt.Errorf("%w: it could not be refreshed (%w), and may be taken over before the next attempt", ErrClaimLost, err))
			return
		}
		_ = d.InProgress()
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

// keepInProgress tells JetStream the delivery is in progress every
// AckWait/3 until stopped, while its completion is being recorded.
func (r *Runtime) keepInProgress(ctx context.Context, d *delivery) (stop func()) {
	every := r.cfg.AckWait / 3
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = d.InProgress()
			}
		}
	}()
	return func() { cancel(); <-done }
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
