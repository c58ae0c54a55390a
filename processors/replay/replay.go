// Package replay stores events of the events stream again, so processors
// see them again: for a bug fixed in a processor, a tenant restored, or a
// window of events an operator wants redone.
package replay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
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
	// Progress, when set, is called after each event with the count done
	// and the total.
	Progress func(done, total uint64)
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
func Run(ctx context.Context, js jetstream.JetStream, subjects messages.Subjects, ledger *processors.Ledger, opts Options) (Summary, error) {
	if opts.Until.IsZero() {
		opts.Until = time.Now()
	}
	sum := Summary{BySubject: map[string]uint64{}, DryRun: opts.DryRun, Subject: opts.Subject, Since: opts.Since, Until: opts.Until, StartedAt: time.Now()}
	if !opts.Until.After(opts.Since) {
		return sum, fmt.Errorf("--until %s is not after --since %s", opts.Until.Format(time.RFC3339), opts.Since.Format(time.RFC3339))
	}
	st, err := js.Stream(ctx, subjects.EventsStream())
	if err != nil {
		return sum, fmt.Errorf("events stream: %w", err)
	}
	cons, total, err := window(ctx, st, opts)
	if err != nil {
		return sum, err
	}
	r := replayer{js: js, subjects: subjects, ledger: ledger, opts: opts, runID: strconv.FormatInt(time.Now().UnixNano(), 36)}
	for i := uint64(0); i < total; i++ {
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			return sum, fmt.Errorf("read event %d of %d: %w", i+1, total, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return sum, err
		}
		if meta.Timestamp.After(opts.Until) {
			break // stored after the window (between the two counts)
		}
		sum.Matched++
		if sum.FirstSeq == 0 {
			sum.FirstSeq = meta.Sequence.Stream
		}
		sum.LastSeq = meta.Sequence.Stream
		sum.BySubject[m.Subject()]++
		if !opts.DryRun {
			forgotten, err := r.replay(ctx, m, meta.Sequence.Stream)
			if err != nil {
				return sum, err
			}
			if forgotten {
				sum.Forgotten++
			}
			sum.Replayed++
		}
		if opts.Progress != nil {
			opts.Progress(i+1, total)
		}
	}
	sum.FinishedAt = time.Now()
	if sum.Matched == 0 {
		return sum, ErrNothingToDo
	}
	return sum, nil
}

// window opens an ordered consumer at opts.Since and counts what was stored
// up to opts.Until. The count is taken before anything is published, so
// neither later events nor the replayed copies count.
func window(ctx context.Context, st jetstream.Stream, opts Options) (jetstream.Consumer, uint64, error) {
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{opts.Subject},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &opts.Since,
	})
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", opts.Subject, err)
	}
	total, err := pending(ctx, cons)
	if err != nil {
		return nil, 0, err
	}
	after, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{opts.Subject},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &opts.Until,
	})
	if err != nil {
		return nil, 0, err
	}
	later, err := pending(ctx, after)
	if err != nil {
		return nil, 0, err
	}
	if later <= total {
		total -= later
	}
	if total == 0 {
		return nil, 0, ErrNothingToDo
	}
	return cons, total, nil
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
// is forced. It reports whether entries were forgotten.
func (r replayer) replay(ctx context.Context, m jetstream.Msg, seq uint64) (forgotten bool, err error) {
	if r.opts.Force {
		if forgotten, err = r.forget(ctx, m); err != nil {
			return false, err
		}
	}
	h := make(nats.Header, len(m.Headers())+1)
	for k, v := range m.Headers() {
		h[k] = v
	}
	h[nats.MsgIdHdr] = []string{"replay:" + r.runID + ":" + strconv.FormatUint(seq, 10)}
	if _, err := r.js.PublishMsg(ctx, &nats.Msg{Subject: m.Subject(), Header: h, Data: m.Data()}, jetstream.WithExpectStream(r.subjects.EventsStream())); err != nil {
		return forgotten, fmt.Errorf("republish seq %d: %w", seq, err)
	}
	return forgotten, nil
}

// forget removes m's ledger entries of the processors of the run. An event
// with no id has none.
func (r replayer) forget(ctx context.Context, m jetstream.Msg) (bool, error) {
	id, err := r.subjects.EventID(m.Subject(), m.Headers(), m.Data())
	if err != nil {
		return false, nil
	}
	for _, p := range r.opts.Processors {
		if err := r.ledger.Forget(ctx, p, id); err != nil {
			return false, fmt.Errorf("forget %s of %s: %w", id, p, err)
		}
	}
	return true, nil
}

// pending is how many messages c has yet to deliver.
func pending(ctx context.Context, c jetstream.Consumer) (uint64, error) {
	info, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending, nil
}
