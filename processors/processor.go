package processors

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/messages/seal"
	"github.com/ccrelay/ccrelay/sinks/c4c"
	"github.com/ccrelay/ccrelay/sinks/egress"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
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
	// Partitions, when set, are consumed instead of Filter: one durable
	// consumer per element, each holding at most one message unanswered
	// across all replicas (MaxAckPending 1), so the events of a partition
	// are handled one after the other, in stream order, and a partition
	// waiting on a retry holds up no other.
	Partitions [][]string
	// Guarantee is what the processor's side effect needs from the
	// runtime: Once (the default) or Idempotent.
	Guarantee Guarantee
	// Patient processors retry transient failures for as long as the
	// stream keeps the event: no delivery limit, no dead letter for them.
	Patient bool
	// Confirms: the handler calls Confirm right before its side effect (a
	// delivery to Contact Pro), so that a worker that lost its claim
	// (paused past its life) does not act on it. Its claims are stored
	// as sending from the start, so Confirm costs no write while the
	// claim is young, and a worker that takes one over is told the work
	// may be done (Event.MaybeDone). Only for Once processors.
	Confirms bool
	// Backoff replaces CCRELAY_PROCESS_BACKOFF for this processor.
	Backoff []time.Duration
	// Handler does the work.
	Handler Handler
	// Background, when set, runs beside the consumer until ctx ends (a
	// periodic sweep); Run waits for it to return at shutdown. An error it
	// returns before then is logged at ERROR.
	Background func(ctx context.Context) error
}

// Guarantee is what a processor's side effect needs for an event that is
// handled more than once: redelivered after a lost ack or a replica's
// death, replayed, published again, or handled by two replicas at once.
type Guarantee int

const (
	// Once: the side effect must not be repeated (an upload to C4C, a
	// delivery to Contact Pro). The runtime claims the work in the ledger
	// before the handler runs, so one worker at a time does it, and
	// records it done before the message is acknowledged, so no later
	// copy of the event does it again.
	Once Guarantee = iota
	// Idempotent: handling an event twice, or two events in any order,
	// ends in the same state (a compare-and-set write ordered by the
	// event's own time, a write of what differs). The runtime keeps no
	// ledger for it: the handler's own write is the record.
	Idempotent
)

// String names g as the processors' package docs and metrics do.
func (g Guarantee) String() string {
	if g == Idempotent {
		return "idempotent"
	}
	return "once"
}

// Env is what every processor is built from: the same for all of them, so
// each package's constructor is New(Config, Env).
type Env struct {
	// JS is where a processor keeps what it owns (buckets, object stores).
	JS jetstream.JetStream
	// Waiter waits for JetStream while a processor's buckets are created.
	Waiter   provision.Waiter
	Subjects messages.Subjects
	// Replicas of every bucket a processor creates.
	Replicas int
	// Ledger is the runtime's record of work done, for a processor that
	// also does work outside a delivery (the relay's release of a parked
	// conversation): that work and a redelivery of the same event must not
	// both happen. Nil where no runtime runs (a check).
	Ledger *Ledger
	// RecordTimeout is how long work done outside the runtime retries
	// recording its completion (CCRELAY_PROCESS_RECORD_TIMEOUT).
	RecordTimeout time.Duration
	// C4C is the SAP Service Cloud client the processors share.
	C4C *c4c.Client
	// Egress bounds where outbound requests go; processors take their HTTP
	// clients from it.
	Egress egress.Settings
	// SealKeys open what ingest sealed (Contact Pro's credential headers).
	SealKeys seal.KeyRing
	Registry prometheus.Registerer
	Logger   *slog.Logger
	// Now is the processors' clock for what depends on the date (day
	// folders, windows, leases); nil is time.Now. Tests set it to run at
	// the instants that matter (midnight, month and year end) at any hour.
	Now func() time.Time
}

// Clock returns e.Now, or time.Now when it is not set.
func (e Env) Clock() func() time.Time {
	if e.Now == nil {
		return time.Now
	}
	return e.Now
}

// Unit is a built processor, as the catalogue in package service holds it.
// New creates nothing outside the process (no bucket, no connection), so a
// Unit can be built just to Check it.
type Unit interface {
	// Processor is what the runtime runs.
	Processor() Processor
	// Provision creates or binds what the processor owns in JetStream. It
	// runs before any consumer starts.
	Provision(ctx context.Context) error
	// Check verifies, without changing anything, that the systems the
	// processor talks to answer as configured. It returns an error wrapping
	// ErrNotConfigured when there is nothing to check.
	Check(ctx context.Context) error
}

// ErrNotConfigured is returned by a Check of something not configured.
var ErrNotConfigured = errors.New("not configured")
