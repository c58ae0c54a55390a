// Package replay stores events of the events stream again, so processors
// see them again: for a bug fixed in a processor, a tenant restored, or a
// window of events an operator wants redone.
package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
)

// Options select what to replay.
type Options struct {
	// Subject is a subject filter inside the events stream
	// (e.g. ccrelay.in.connect.>).
	Subject string
	// Since and Until bound the stored time; a zero Until means now.
	Since, Until time.Time
	// DryRun counts what would be replayed and changes nothing.
	DryRun bool
	// Force makes processors do completed work again: the ledger entries of
	// the replayed events are removed first (for Processors).
	Force      bool
	Processors []string
	// Progress, when set, is called after each event with how far the read
	// is through the window, in stream sequences, and the window's length.
	Progress func(done, total uint64)
	// Wait retries each read and publish while JetStream has no leader or
	// no responders; its zero value waits up to 15 s for each.
	Wait provision.Waiter
}

// Summary says what a replay did.
type Summary struct {
	Matched    uint64
	Replayed   uint64
	Forgotten  uint64
	FirstSeq   uint64
	LastSeq    uint64
	BySubject  map[string]uint64
	DryRun     bool
	Subject    string
	Since      time.Time
	Until      time.Time
	StartedAt  time.Time
	FinishedAt time.Time
}

// ErrNothingToDo is returned when no stored event matches.
var ErrNothingToDo = errors.New("no stored event matches")

// Run replays the events of opts. Each is published again under its
// subject with its body and headers, but a new Nats-Msg-Id, so JetStream's
// dedup window does not swallow it; its ce-id stays, so the idempotency
// ledger keeps completed work from being repeated unless Force is set.
//
// The window is the events stored when Run starts (the copies it stores
// come after it), read one by one from the stream leader (see
// processors.Scan): no consumer, and a leader election on a cluster is
// waited out rather than ending the replay half-way.
func Run(ctx context.Context, js jetstream.JetStream, subjects messages.Subjects, ledger *processors.Ledger, opts Options) (Summary, error) {
	if opts.Until.IsZero() {
		opts.Until = time.Now()
	}
	sum := Summary{BySubject: map[string]uint64{}, DryRun: opts.DryRun, Subject: opts.Subject, Since: opts.Since, Until: opts.Until, StartedAt: time.Now()}
	if !opts.Until.After(opts.Since) {
		return sum, fmt.Errorf("--until %s is not after --since %s", opts.Until.Format(time.RFC3339), opts.Since.Format(time.RFC3339))
	}
	sc, err := processors.Scan{Stream: subjects.EventsStream(), Filter: opts.Subject, Since: opts.Since, Until: opts.Until, Wait: opts.Wait}.Open(ctx, js)
	if err != nil {
		return sum, fmt.Errorf("events stream: %w", err)
	}
	if sc.First == 0 {
		return sum, ErrNothingToDo
	}
	// Progress goes by stream sequence: how far through the window the
	// read is. A count of the matching events would take a consumer.
	total := sc.Last - sc.First + 1
	r := replayer{js: js, subjects: subjects, ledger: ledger, opts: opts, runID: strconv.FormatInt(time.Now().UnixNano(), 36)}
	for {
		m, err := sc.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return sum, fmt.Errorf("read the event after %d of %d: %w", sum.Matched, total, err)
		}
		sum.Matched++
		if sum.FirstSeq == 0 {
			sum.FirstSeq = m.Sequence
		}
		sum.LastSeq = m.Sequence
		sum.BySubject[m.Subject]++
		if !opts.DryRun {
			forgotten, err := r.replay(ctx, m)
			if err != nil {
				return sum, err
			}
			if forgotten {
				sum.Forgotten++
			}
			sum.Replayed++
		}
		if opts.Progress != nil {
			opts.Progress(m.Sequence-sc.First+1, total)
		}
	}
	if opts.Progress != nil && sum.LastSeq != sc.Last {
		opts.Progress(total, total)
	}
	sum.FinishedAt = time.Now()
	if sum.Matched == 0 {
		return sum, ErrNothingToDo
	}
	return sum, nil
}

// replayer stores events again.
type replayer struct {
	js       jetstream.JetStream
	subjects messages.Subjects
	ledger   *processors.Ledger
	opts     Options
	// runID keeps this run's Nats-Msg-Ids apart from every other run's.
	runID string
}

// replay stores m again, first forgetting its ledger entries when the run
// is forced. It reports whether entries were forgotten. The publish is
// retried within opts.Wait with one Nats-Msg-Id, so a retry after a lost
// ack is dropped as a duplicate, not stored twice.
func (r replayer) replay(ctx context.Context, m *jetstream.RawStreamMsg) (forgotten bool, err error) {
	if r.opts.Force {
		if forgotten, err = r.forget(ctx, m); err != nil {
			return false, err
		}
	}
	h := make(nats.Header, len(m.Header)+1)
	for k, v := range m.Header {
		h[k] = v
	}
	seq := strconv.FormatUint(m.Sequence, 10)
	h[nats.MsgIdHdr] = []string{"replay:" + r.runID + ":" + seq}
	msg := &nats.Msg{Subject: m.Subject, Header: h, Data: m.Data}
	err = r.opts.Wait.Do(ctx, "republish seq "+seq, func(ctx context.Context) error {
		_, err := r.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(r.subjects.EventsStream()))
		return err
	})
	if err != nil {
		return forgotten, fmt.Errorf("republish seq %s: %w", seq, err)
	}
	return forgotten, nil
}

// forget removes m's ledger entries of the processors of the run. An event
// with no id has none.
func (r replayer) forget(ctx context.Context, m *jetstream.RawStreamMsg) (bool, error) {
	id, err := r.subjects.EventID(m.Subject, m.Header, m.Data)
	if err != nil {
		return false, nil
	}
	for _, p := range r.opts.Processors {
		// A purge again is the same purge: safe to retry.
		err := r.opts.Wait.Do(ctx, "forget "+id+" of "+p, func(ctx context.Context) error { return r.ledger.Forget(ctx, p, id) })
		if err != nil {
			return false, fmt.Errorf("forget %s of %s: %w", id, p, err)
		}
	}
	return true, nil
}
