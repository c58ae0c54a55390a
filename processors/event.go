package processors

import (
	"strconv"
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
}

// Metadata keys that carry the JetStream delivery into the watermill
// message, beside the message's own headers.
const (
	mdSubject    = "_ccrelay_subject"
	mdSeq        = "_ccrelay_seq"
	mdDeliveries = "_ccrelay_deliveries"
	mdReply      = "_ccrelay_reply"
	mdStored     = "_ccrelay_stored"
	mdIDError    = "_ccrelay_id_error"
)

// unmarshaler turns a JetStream message into a watermill message: the body
// as payload, the dedup id as UUID, the headers and the delivery (subject,
// sequence, delivery count, ack subject) as metadata. A message without
// ce-id (published by hand) gets the id ingest would have given it, so it is
// handled like the original. It never fails: a message it cannot identify
// is passed on, marked, and dead-lettered by the runtime.
type unmarshaler struct {
	subjects messages.Subjects
}

func (u unmarshaler) Unmarshal(m jetstream.Msg) (*message.Message, error) {
	h := m.Headers()
	md := make(message.Metadata, len(h)+6)
	for k, v := range h {
		if len(v) > 0 {
			md[k] = v[0]
		}
	}
	md[mdSubject] = m.Subject()
	md[mdReply] = m.Reply()
	if meta, err := m.Metadata(); err == nil {
		md[mdSeq] = strconv.FormatUint(meta.Sequence.Stream, 10)
		md[mdDeliveries] = strconv.FormatUint(meta.NumDelivered, 10)
		md[mdStored] = meta.Timestamp.UTC().Format(time.RFC3339Nano)
	}
	id, err := u.subjects.EventID(m.Subject(), h, m.Data())
	if err != nil {
		// Watermill wants a UUID; the runtime dead-letters this one.
		md[mdIDError] = err.Error()
		id = "unidentified:" + md[mdSeq]
	}
	wm := message.NewMessage(id, m.Data())
	wm.Metadata = md
	return wm, nil
}

// eventOf rebuilds the Event from a watermill message made by unmarshaler.
func eventOf(msg *message.Message) *Event {
	md := msg.Metadata
	h := make(nats.Header, len(md))
	for k, v := range md {
		if len(k) > 9 && k[:9] == "_ccrelay_" {
			continue
		}
		h[k] = []string{v}
	}
	seq, _ := strconv.ParseUint(md[mdSeq], 10, 64)
	n, _ := strconv.ParseUint(md[mdDeliveries], 10, 64)
	ev := &Event{Subject: md[mdSubject], ID: msg.UUID, Header: h, Body: msg.Payload, Seq: seq, Deliveries: n}
	stored, _ := time.Parse(time.RFC3339Nano, md[mdStored])
	ev.Time = eventTime(md[messages.HeaderTime], stored)
	return ev
}

// eventTime is when an event happened: its ce-time, else when it was
// stored.
func eventTime(ceTime string, stored time.Time) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, ceTime); err == nil {
		return t
	}
	return stored
}

// selectedEvent is the Event of a delivery for a Selector, built from the
// JetStream message itself, as eventOf would build it; ok is false for a
// message without an event id, which the runtime dead-letters.
func (u unmarshaler) selectedEvent(m jetstream.Msg) (ev *Event, ok bool) {
	h := m.Headers()
	id, err := u.subjects.EventID(m.Subject(), h, m.Data())
	if err != nil {
		return nil, false
	}
	ev = &Event{Subject: m.Subject(), ID: id, Header: h, Body: m.Data()}
	var stored time.Time
	if meta, err := m.Metadata(); err == nil {
		ev.Seq, ev.Deliveries, stored = meta.Sequence.Stream, meta.NumDelivered, meta.Timestamp
	}
	ev.Time = eventTime(h.Get(messages.HeaderTime), stored)
	return ev, true
}
