package processors

import (
	"errors"
	"fmt"
	"time"
)

// Config sets the runtime. Its env tags are read with the CCRELAY_ prefix.
type Config struct {
	// Concurrency is how many messages one replica handles at once per
	// processor. SAP calls take 100 ms to seconds, so keep it high.
	Concurrency int `env:"PROCESS_CONCURRENCY" envDefault:"32" help:"messages in flight per processor and replica"`
	// AckWait is how long JetStream waits for an answer before it
	// redelivers. Handlers report progress every AckWait/3, so long work
	// is not redelivered; a replica that died is redelivered after it.
	AckWait time.Duration `env:"PROCESS_ACK_WAIT" envDefault:"30s" help:"redelivery after silence (a dead replica); progress is reported every third of it"`
	// MaxDeliver is how often a message is delivered before it goes to the
	// dead-letter stream.
	MaxDeliver int `env:"PROCESS_MAX_DELIVER" envDefault:"10" help:"deliveries before a message is dead-lettered"`
	// Backoff is the wait before each redelivery after a transient error,
	// by delivery count; the last value repeats.
	Backoff []time.Duration `env:"PROCESS_BACKOFF" envDefault:"1s,5s,30s,2m,5m" help:"wait before each retry after a transient error; the last repeats"`
	// MaxAckPending bounds the messages handed out and not yet answered,
	// across all replicas of a processor.
	MaxAckPending int `env:"PROCESS_MAX_ACK_PENDING" envDefault:"1000" help:"unanswered messages per processor, across replicas"`
	// HandlerTimeout bounds one handling.
	HandlerTimeout time.Duration `env:"PROCESS_HANDLER_TIMEOUT" envDefault:"10m" help:"bound of one handling"`
	// CallTimeout bounds each request a processor makes to JetStream (the
	// ledger, its buckets, the dead letters): a node that is paused or cut
	// off costs one call, after which the work is released to another
	// replica, rather than the whole HandlerTimeout. Call() lowers it to
	// AckWait/3, so that a claim refresh ends before the next is due.
	CallTimeout time.Duration `env:"PROCESS_CALL_TIMEOUT" envDefault:"5s" help:"bound of each JetStream request a processor makes; lowered to a third of 'CCRELAY_PROCESS_ACK_WAIT' when above it"`
	// RecordTimeout bounds how long a completed piece of work retries
	// recording its completion (through a leader election, a node lost)
	// before it gives the message back unrecorded; the message is kept in
	// progress meanwhile, so no other replica repeats the work.
	RecordTimeout time.Duration `env:"PROCESS_RECORD_TIMEOUT" envDefault:"30s" help:"how long completed work retries recording its completion, and its acknowledgement, before giving the message back; a replica that died after starting a delivery has it redone (marked as a possible repeat) this long after its claim went stale"`
	// LedgerTTL is how long completed work is remembered; keep it above
	// the replay window (CCRELAY_STREAM_MAX_AGE).
	LedgerTTL time.Duration `env:"PROCESS_LEDGER_TTL" envDefault:"192h" help:"how long completed work is remembered; at least 'CCRELAY_STREAM_MAX_AGE'"`
	// ShutdownGrace is how long shutdown waits for deliveries in flight;
	// the rest is redelivered to other replicas.
	ShutdownGrace time.Duration `env:"PROCESS_SHUTDOWN_GRACE" envDefault:"20s" help:"at shutdown, how long deliveries in flight may take to finish; the rest is redelivered to other replicas"`
}

// Validate checks the fields. Errors name the environment variable.
func (c Config) Validate() error {
	switch {
	case c.Concurrency < 1 || c.Concurrency > 1024:
		return fmt.Errorf("CCRELAY_PROCESS_CONCURRENCY: %d is not between 1 and 1024", c.Concurrency)
	case c.AckWait < time.Second:
		return errors.New("CCRELAY_PROCESS_ACK_WAIT: must be at least 1s")
	case c.MaxDeliver < 1:
		return errors.New("CCRELAY_PROCESS_MAX_DELIVER: must be at least 1")
	case len(c.Backoff) == 0:
		return errors.New("CCRELAY_PROCESS_BACKOFF: needs at least one duration")
	case c.MaxAckPending < c.Concurrency:
		return fmt.Errorf("CCRELAY_PROCESS_MAX_ACK_PENDING: %d is below CCRELAY_PROCESS_CONCURRENCY", c.MaxAckPending)
	case c.HandlerTimeout <= 0:
		return errors.New("CCRELAY_PROCESS_HANDLER_TIMEOUT: must be positive")
	case c.CallTimeout < 100*time.Millisecond:
		return fmt.Errorf("CCRELAY_PROCESS_CALL_TIMEOUT: %s is below 100ms: a JetStream request across a cluster would not fit", c.CallTimeout)
	case c.RecordTimeout < c.Call() || c.RecordTimeout > time.Hour:
		// It is also how long a dead replica's started work waits before
		// another redoes it (Ledger.HoldSending).
		return fmt.Errorf("CCRELAY_PROCESS_RECORD_TIMEOUT: %s is not between the call timeout (%s) and 1h", c.RecordTimeout, c.Call())
	case c.LedgerTTL < time.Hour:
		return errors.New("CCRELAY_PROCESS_LEDGER_TTL: must be at least 1h")
	case c.ShutdownGrace <= 0:
		return errors.New("CCRELAY_PROCESS_SHUTDOWN_GRACE: must be positive")
	}
	for _, d := range c.Backoff {
		if d <= 0 {
			return errors.New("CCRELAY_PROCESS_BACKOFF: durations must be positive")
		}
	}
	return nil
}

// Call is the bound of one JetStream request: CallTimeout, at most a third
// of AckWait.
func (c Config) Call() time.Duration { return min(c.CallTimeout, c.AckWait/3) }

// backoff is the wait before redelivery number n+1 (n deliveries so far).
func (c Config) backoff(n uint64) time.Duration { return backoffOf(c.Backoff, n) }

func backoffOf(steps []time.Duration, n uint64) time.Duration {
	if n == 0 {
		n = 1
	}
	if n > uint64(len(steps)) {
		return steps[len(steps)-1]
	}
	return steps[n-1]
}
