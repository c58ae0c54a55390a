package trace

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
)

// head is one stored message as a headers-only read gives it: no body.
type head struct {
	Seq     uint64
	Subject string
	Time    time.Time
	Header  nats.Header
}

// headScan reads the headers of a stream's messages stored since a time,
// in stream order, through one ephemeral consumer created with
// HeadersOnly: the server sends no body, so a day of traffic costs its
// headers (a few hundred bytes per event), read in batches of pulls, not
// one request per message as processors.Scan makes them.
//
// The consumer is made to be gone whatever happens to this process: it is
// deleted when the scan ends, and the server removes it by itself after
// inactive (InactiveThreshold) if the delete is lost. It acknowledges
// nothing (AckNone) and keeps its state in memory, with one replica.
//
// A pull that finds no responder or times out (a consumer just created on
// a cluster, a leader election) is retried within wait; the scan goes on
// from the last sequence it read, by a consumer created again from there,
// so no message is read twice or skipped.
type headScan struct {
	js       jetstream.JetStream
	stream   string
	since    time.Time
	batch    int
	wait     provision.Waiter
	inactive time.Duration
}

// maxRestarts bounds how often a scan starts again after a lost pull.
const maxRestarts = 5

// each calls f with the headers of every message stored since hs.since up
// to the stream's last sequence when it started, in order. It returns how many it
// read. f returning an error ends the scan with it.
func (hs headScan) each(ctx context.Context, f func(head) error) (uint64, error) {
	var st jetstream.Stream
	err := hs.wait.Do(ctx, "stream "+hs.stream, func(ctx context.Context) error {
		var err error
		st, err = hs.js.Stream(ctx, hs.stream)
		return err
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil // a relay never configured has no held stream
	}
	if err != nil {
		return 0, err
	}
	// The window's first message, found by a get from the stream leader
	// (processors.Scan): a consumer's pending count right after its
	// creation on a cluster may not be known yet, and cannot say "none".
	win, err := processors.Scan{Stream: hs.stream, Since: hs.since, Wait: hs.wait}.Open(ctx, hs.js)
	if err != nil {
		return 0, err
	}
	if win.First == 0 {
		return 0, nil
	}
	last := win.Last
	var read uint64
	next := win.First // the sequence to start a consumer at
	for restarts := 0; ; restarts++ {
		cfg := jetstream.ConsumerConfig{
			HeadersOnly:       true,
			AckPolicy:         jetstream.AckNonePolicy,
			InactiveThreshold: hs.inactive,
			MemoryStorage:     true,
			Replicas:          1,
			Description:       "ccrelay trace (ephemeral, headers only)",
			DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:       next,
		}
		var cons jetstream.Consumer
		err := hs.wait.Do(ctx, "create a reading consumer on "+hs.stream, func(ctx context.Context) error {
			var err error
			cons, err = st.CreateConsumer(ctx, cfg)
			return err
		})
		if err != nil {
			return read, fmt.Errorf("read %s: %w", hs.stream, err)
		}
		done, n, err := hs.drain(ctx, cons, last, &next, f)
		hs.remove(st, cons)
		read += n
		if done || err == nil {
			return read, err
		}
		if !provision.Transient(err) || ctx.Err() != nil || restarts == maxRestarts {
			return read, fmt.Errorf("read %s after seq %d: %w", hs.stream, next, err)
		}
		// A pull lost to the cluster: again from where it stopped.
	}
}

// drain reads cons until it passed last, or until a read fails: then
// done is false and err says why. next is kept at the sequence after the
// last message handed to f. The reads go through nats.go's message
// iterator, which keeps pulls of batch messages in flight ahead of the
// reader, so the server streams while f runs (a fetch per batch would
// wait a round trip between batches).
func (hs headScan) drain(ctx context.Context, cons jetstream.Consumer, last uint64, next *uint64, f func(head) error) (done bool, n uint64, err error) {
	it, err := cons.Messages(jetstream.PullMaxMessages(hs.batch))
	if err != nil {
		return false, 0, err
	}
	defer it.Stop()
	idle := 0
	for {
		if err := ctx.Err(); err != nil {
			return true, n, err
		}
		// nats.go takes a context or a wait for Next, not both: the
		// context is checked between messages.
		m, err := it.Next(jetstream.NextMaxWait(2 * time.Second))
		if errors.Is(err, nats.ErrTimeout) {
			// Nothing for a while although the window goes on: the
			// consumer is not answering (created on a node that lost its
			// leadership), or the rest was removed (max age) meanwhile.
			// Never taken as the end: a consumer created again from next
			// says which (each returns messages, or fails).
			if idle++; idle >= 3 {
				return false, n, err
			}
			continue
		}
		if err != nil {
			return false, n, err
		}
		idle = 0
		meta, err := m.Metadata()
		if err != nil {
			return true, n, fmt.Errorf("message metadata: %w", err)
		}
		seq := meta.Sequence.Stream
		if seq > last {
			return true, n, nil
		}
		n++
		*next = seq + 1
		if err := f(head{Seq: seq, Subject: m.Subject(), Time: meta.Timestamp, Header: m.Headers()}); err != nil {
			return true, n, err
		}
		if seq == last || meta.NumPending == 0 {
			return true, n, nil
		}
	}
}

// remove deletes the consumer, bounded: on failure the server removes it
// after its inactive threshold.
func (hs headScan) remove(st jetstream.Stream, cons jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = st.DeleteConsumer(ctx, cons.CachedInfo().Name)
}
