package processors

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
)

// Event is one stored event as a handler sees it.
type Event struct {
	// Subject the event was stored under.
	Subject string
	// ID is the event's dedup id: ce-id, or, for a body published by hand,
	// the id ingest would have given it.
	ID string
	// Header is the stored message's headers (empty for a hand-published
	// body).
	Header nats.Header
	// Body is the raw event body.
	Body []byte
	// Seq is the stream sequence of the message.
	Seq uint64
	// Deliveries counts this delivery (1 for the first).
	Deliveries uint64
	// Time is when the event happened (ce-time), else when it was stored.
	Time time.Time
	// MaybeDone is set when a previous worker may have completed the side
	// effect: it confirmed its claim (Confirm) and stopped before recording
	// the completion. A handler that can ask the other side whether the
	// work is done does; one that cannot says so with what it sends.
	MaybeDone bool
}

// delivery is one JetStream delivery on its way through watermill: the
// message to answer, the Event its handler gets, and, for a message that
// cannot be identified, why (the runtime dead-letters it). The batching
// consumer builds it once, for the Selector and the handler both, and hands
// it to watermill-nats' subscriber as the jetstream.Msg it answers.
type delivery struct {
	jetstream.Msg
	ev    *Event
	idErr string
	// confirm, when positive, makes Ack wait for the server's
	// confirmation, retrying within it; call bounds each attempt.
	confirm, call time.Duration
}

// Ack acknowledges the message: a plain ack, or for a Once processor's
// serial consumer one confirmed by the server, retried until confirmed
// within d.confirm.
func (d *delivery) Ack() error {
	if d.confirm <= 0 {
		return d.Msg.Ack()
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.confirm)
	defer cancel()
	return retryCall(ctx, d.call, func(ctx context.Context) error {
		if err := d.Msg.DoubleAck(ctx); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
			return err
		}
		return nil
	})
}

// unmarshaler turns a delivery into a watermill message: the body as
// payload, the dedup id as UUID. The Event itself travels beside it, in
// handoff, rather than flattened into the message's metadata and parsed
// back: that round trip cost two maps and four conversions per message. A
// message without ce-id (published by hand) gets the id ingest would have
// given it, so it is handled like the original. It never fails: a message
// it cannot identify is passed on, marked, and dead-lettered by the runtime.
type unmarshaler struct {
	subjects messages.Subjects
	handoff  *handoff
	// confirm and call are set for a Once processor's serial consumer
	// (delivery.Ack).
	confirm, call time.Duration
}

// deliver builds the delivery of m.
func (u unmarshaler) deliver(m jetstream.Msg) *delivery {
	h := m.Headers()
	ev := &Event{Subject: m.Subject(), Header: h, Body: m.Data()}
	var stored time.Time
	if meta, err := m.Metadata(); err == nil {
		ev.Seq, ev.Deliveries, stored = meta.Sequence.Stream, meta.NumDelivered, meta.Timestamp.UTC()
	}
	ev.Time = eventTime(h.Get(messages.HeaderTime), stored)
	d := &delivery{Msg: m, ev: ev, confirm: u.confirm, call: u.call}
	id, err := u.subjects.EventID(m.Subject(), h, m.Data())
	if err != nil {
		// Watermill wants a UUID; the runtime dead-letters this one.
		d.idErr = err.Error()
		id = "unidentified:" + strconv.FormatUint(ev.Seq, 10)
	}
	ev.ID = id
	return d
}

func (u unmarshaler) Unmarshal(m jetstream.Msg) (*message.Message, error) {
	d, ok := m.(*delivery)
	if !ok {
		d = u.deliver(m)
	}
	wm := message.NewMessage(d.ev.ID, d.ev.Body)
	u.handoff.put(wm, d)
	return wm, nil
}

// handoff holds the deliveries of the watermill messages made by an
// unmarshaler until the runtime's handler takes them. Each is taken once:
// a router middleware that ran the handler twice on one message (watermill's
// Retry) would find nothing the second time, and the message would be
// retried through JetStream instead, which is where the runtime retries.
type handoff struct{ m sync.Map }

func (h *handoff) put(wm *message.Message, d *delivery) { h.m.Store(wm, d) }

// take returns wm's delivery and forgets it; nil if there is none.
func (h *handoff) take(wm *message.Message) *delivery {
	d, ok := h.m.LoadAndDelete(wm)
	if !ok {
		return nil
	}
	return d.(*delivery)
}

// eventTime is when an event happened: its ce-time, else when it was
// stored.
func eventTime(ceTime string, stored time.Time) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, ceTime); err == nil {
		return t
	}
	return stored
}
