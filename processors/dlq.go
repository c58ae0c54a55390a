package processors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
)

// maxErrorHeader bounds the error text kept with a dead letter.
const maxErrorHeader = 1024

// DeadLetters writes, lists and requeues dead letters.
type DeadLetters struct {
	js       jetstream.JetStream
	subjects messages.Subjects
}

// NewDeadLetters returns the dead-letter store of subjects' deployment.
func NewDeadLetters(js jetstream.JetStream, subjects messages.Subjects) *DeadLetters {
	return &DeadLetters{js: js, subjects: subjects}
}

// Send stores ev as a dead letter of processor: the original body and
// headers, plus the processor, the error, the delivery count and where the
// event came from. Sending the same delivery twice stores it once.
func (d *DeadLetters) Send(ctx context.Context, processor string, ev *Event, cause error) (stored bool, err error) {
	h := make(nats.Header, len(ev.Header)+7)
	for k, v := range ev.Header {
		if k == nats.MsgIdHdr || strings.HasPrefix(k, "Nats-Expected") {
			continue
		}
		h[k] = v
	}
	text := cause.Error()
	if len(text) > maxErrorHeader {
		text = text[:maxErrorHeader] + "..."
	}
	h[messages.HeaderDLQProcessor] = []string{processor}
	h[messages.HeaderDLQError] = []string{strings.ReplaceAll(text, "\n", " ")}
	h[messages.HeaderDLQDeliveries] = []string{strconv.FormatUint(ev.Deliveries, 10)}
	h[messages.HeaderDLQSubject] = []string{ev.Subject}
	h[messages.HeaderDLQSeq] = []string{strconv.FormatUint(ev.Seq, 10)}
	h[messages.HeaderDLQFailedAt] = []string{time.Now().UTC().Format(time.RFC3339Nano)}
	h[nats.MsgIdHdr] = []string{"dlq:" + processor + ":" + strconv.FormatUint(ev.Seq, 10)}
	msg := &nats.Msg{Subject: d.subjects.DeadLetter(processor), Header: h, Data: ev.Body}
	ack, err := d.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(d.subjects.DeadLetterStream()))
	if errors.Is(err, nats.ErrMaxPayload) {
		// The dead letter's headers pushed a body stored near the limit
		// over it: no retry could store it, and a message that can be
		// neither handled nor dead-lettered would be retried for ever,
		// holding its partition. Store it without the body, which stays
		// in the events stream (Requeue takes it from there).
		h[messages.HeaderDLQBodyOmitted] = []string{strconv.Itoa(len(ev.Body))}
		msg.Data = nil
		ack, err = d.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(d.subjects.DeadLetterStream()))
	}
	if err != nil {
		return false, fmt.Errorf("dead-letter %s seq %d: %w", processor, ev.Seq, err)
	}
	return !ack.Duplicate, nil
}

// DeadLetter is one stored dead letter.
type DeadLetter struct {
	Seq        uint64
	Processor  string
	Subject    string
	OrigSeq    uint64
	Error      string
	Deliveries uint64
	FailedAt   time.Time
	Header     nats.Header
	Body       []byte
}

// List returns the dead letters of processor ("" for all), oldest first:
// those stored when it started. It reads them one by one from the stream
// leader (see Scan), so it needs no consumer and waits out a cluster's
// leader election.
func (d *DeadLetters) List(ctx context.Context, processor string) ([]DeadLetter, error) {
	filter := d.subjects.DeadLetters()
	if processor != "" {
		filter = d.subjects.DeadLetter(processor)
	}
	sc, err := Scan{Stream: d.subjects.DeadLetterStream(), Filter: filter}.Open(ctx, d.js)
	if err != nil {
		return nil, fmt.Errorf("dead-letter stream: %w", err)
	}
	var out []DeadLetter
	for {
		m, err := sc.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read dead letters: %w", err)
		}
		out = append(out, deadLetterOf(m))
	}
}

func deadLetterOf(m *jetstream.RawStreamMsg) DeadLetter {
	h := m.Header
	dl := DeadLetter{Seq: m.Sequence, Processor: h.Get(messages.HeaderDLQProcessor), Subject: h.Get(messages.HeaderDLQSubject), Error: h.Get(messages.HeaderDLQError), Header: h, Body: m.Data}
	dl.OrigSeq, _ = strconv.ParseUint(h.Get(messages.HeaderDLQSeq), 10, 64)
	dl.Deliveries, _ = strconv.ParseUint(h.Get(messages.HeaderDLQDeliveries), 10, 64)
	dl.FailedAt, _ = time.Parse(time.RFC3339Nano, h.Get(messages.HeaderDLQFailedAt))
	return dl
}

// ErrNotDeadLetter is returned by Requeue for a sequence that holds no dead
// letter (or one of another processor).
var ErrNotDeadLetter = errors.New("no such dead letter")

// Requeue stores dead letter seq again under its original subject, with its
// original headers and a new Nats-Msg-Id (so JetStream's dedup window does
// not swallow it), then removes it from the dead-letter stream. The event
// keeps its ce-id, so the ledger still protects work that completed.
func (d *DeadLetters) Requeue(ctx context.Context, seq uint64) (DeadLetter, error) {
	var w provision.Waiter
	sc := Scan{Stream: d.subjects.DeadLetterStream(), Wait: w}
	s := sc.scanner(d.js)
	raw, err := s.get(ctx, msgGetRequest{Seq: seq})
	if notFound(err) {
		return DeadLetter{}, fmt.Errorf("%w: seq %d", ErrNotDeadLetter, seq)
	}
	if err != nil {
		return DeadLetter{}, err
	}
	dl := deadLetterOf(raw)
	h := raw.Header
	if dl.Subject == "" {
		return dl, fmt.Errorf("%w: seq %d has no original subject", ErrNotDeadLetter, seq)
	}
	out := make(nats.Header, len(h))
	for k, v := range h {
		switch k {
		case messages.HeaderDLQProcessor, messages.HeaderDLQError, messages.HeaderDLQDeliveries,
			messages.HeaderDLQSubject, messages.HeaderDLQSeq, messages.HeaderDLQFailedAt, nats.MsgIdHdr:
			continue
		}
		out[k] = v
	}
	// One Nats-Msg-Id for every attempt: a retry after a lost ack is a
	// duplicate JetStream drops, not a second copy.
	out[nats.MsgIdHdr] = []string{"requeue:" + strconv.FormatUint(seq, 10) + ":" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	body := raw.Data
	if h.Get(messages.HeaderDLQBodyOmitted) != "" {
		// Stored without its body: take it from the event itself.
		delete(out, messages.HeaderDLQBodyOmitted)
		ev := Scan{Stream: d.subjects.EventsStream(), Wait: w}
		orig, err := ev.scanner(d.js).get(ctx, msgGetRequest{Seq: dl.OrigSeq})
		if notFound(err) {
			return dl, fmt.Errorf("seq %d was dead-lettered without its body (too large), and event seq %d has left %s: it cannot be requeued", seq, dl.OrigSeq, d.subjects.EventsStream())
		}
		if err != nil {
			return dl, fmt.Errorf("requeue seq %d: the body of event seq %d: %w", seq, dl.OrigSeq, err)
		}
		body = orig.Data
	}
	msg := &nats.Msg{Subject: dl.Subject, Header: out, Data: body}
	err = w.Do(ctx, "requeue seq "+strconv.FormatUint(seq, 10), func(ctx context.Context) error {
		_, err := d.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(d.subjects.EventsStream()))
		return err
	})
	if err != nil {
		return dl, fmt.Errorf("requeue seq %d: %w", seq, err)
	}
	err = w.Do(ctx, "remove dead letter seq "+strconv.FormatUint(seq, 10), func(ctx context.Context) error {
		st, err := d.js.Stream(ctx, sc.Stream)
		if err != nil {
			return err
		}
		err = st.DeleteMsg(ctx, seq)
		if err != nil {
			// An attempt whose answer was lost removed it already; the
			// server answers a second removal with a 500.
			if _, gerr := s.get(ctx, msgGetRequest{Seq: seq}); notFound(gerr) {
				return nil
			}
		}
		return err
	})
	if err != nil {
		return dl, fmt.Errorf("requeued seq %d but could not remove it from the dead letters: %w", seq, err)
	}
	return dl, nil
}
