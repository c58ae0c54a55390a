package trace

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/deliveries"
	"github.com/ccrelay/ccrelay/processors/forward/parking"
	"github.com/ccrelay/ccrelay/processors/summaries"
)

// relayConversation: an id that names a conversation the relay parked
// (its id, or its first characters, as 'ccrelay relay held' shows them)
// traces the conversation's held messages.
func (t *tracer) relayConversation(ctx context.Context) error {
	id := strings.ToLower(t.m.raw)
	if len(id) < 6 || len(id) > 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return nil
	}
	store, err := t.parking(ctx)
	if store == nil {
		return err
	}
	c, err := store.Find(ctx, id)
	if errors.Is(err, parking.ErrNotParked) || errors.Is(err, parking.ErrAmbiguous) {
		return nil
	}
	if err != nil {
		t.warn("parked conversations not read: %v", err)
		return nil
	}
	t.rep.Conversation = c.ID
	t.m.AddDedupID(c.Head)
	_, err = t.scan(t.s.RelayHeldStream(), t.opts.Since.AddDate(-1, 0, 0)).each(ctx, func(h head) error {
		if h.Subject == t.s.RelayHeld(c.ID) {
			t.m.AddDedupID(h.Header.Get(messages.HeaderID))
		}
		return nil
	})
	return err
}

// parking opens the relay's store once per run: nil when the relay was
// never configured, or when it cannot be read now (a warning says so).
func (t *tracer) parking(ctx context.Context) (*parking.Store, error) {
	if t.parked != nil || t.parkedErr {
		return t.parked, nil
	}
	bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	store, err := parking.Open(bctx, t.js, t.s)
	switch {
	case errors.Is(err, parking.ErrNotProvisioned):
		t.parkedErr = true
	case err != nil:
		t.parkedErr = true
		t.warn("the relay's parked conversations not read: %v", err)
	}
	t.parked = store
	return store, nil
}

func (t *tracer) warn(format string, args ...any) {
	t.rep.Warnings = append(t.rep.Warnings, fmt.Sprintf(format, args...))
}

// consumer is one processor's durable consumer, as JetStream reports it.
type consumer struct {
	processor string
	info      *jetstream.ConsumerInfo
}

// consumers lists the processors' consumers of the events stream.
func (t *tracer) consumers(ctx context.Context) ([]consumer, error) {
	var out []consumer
	err := t.opts.Wait.Do(ctx, "consumers of "+t.s.EventsStream(), func(ctx context.Context) error {
		out = out[:0]
		st, err := t.js.Stream(ctx, t.s.EventsStream())
		if err != nil {
			return err
		}
		l := st.ListConsumers(ctx)
		for info := range l.Info() {
			for _, p := range t.names {
				name := processors.ConsumerName(t.s, p)
				if info.Name == name || strings.HasPrefix(info.Name, name+"_P") {
					out = append(out, consumer{processor: p, info: info})
				}
			}
		}
		return l.Err()
	})
	return out, err
}

// explain adds the steps of every event found.
func (t *tracer) explain(ctx context.Context) error {
	t.rep.Shown = len(t.events)
	if len(t.events) == 0 {
		return nil
	}
	cons, err := t.consumers(ctx)
	if err != nil {
		return err
	}
	dead, err := t.deadLetters(ctx)
	if err != nil {
		return err
	}
	held, err := t.held(ctx)
	if err != nil {
		return err
	}
	ledger := processors.NewLedgerReader(t.js, t.s.LedgerBucket(), t.opts.Wait)
	for _, ev := range t.events {
		if err := t.stored(ctx, ev); err != nil {
			return err
		}
		for _, p := range t.names {
			c, ok := serving(cons, p, ev.Subject)
			dl, hm := dead[dlKey{ev.Seq, p}], held[ev.Seq]
			if p != "forward" {
				hm = nil
			}
			// A dead letter or a parked message is shown even when no
			// consumer of its processor takes the subject any more.
			if !ok && dl == nil && hm == nil {
				continue
			}
			if err := t.processed(ctx, ev, p, c, ledger, dl, hm); err != nil {
				return err
			}
		}
	}
	// What the sinks hold, once per message or contact, beside its latest
	// event.
	statuses := map[string]bool{}
	for i := len(t.events) - 1; i >= 0; i-- {
		if err := t.sinkStatus(ctx, t.events[i], statuses); err != nil {
			return err
		}
	}
	return nil
}

// serving is the consumer of processor p whose filter takes subject.
func serving(cons []consumer, p, subject string) (consumer, bool) {
	for _, c := range cons {
		if c.processor != p {
			continue
		}
		filters := c.info.Config.FilterSubjects
		if c.info.Config.FilterSubject != "" {
			filters = append(filters, c.info.Config.FilterSubject)
		}
		for _, f := range filters {
			if SubjectMatches(f, subject) {
				return c, true
			}
		}
	}
	return consumer{}, false
}

// SubjectMatches reports whether NATS subject filter f (with * and >)
// takes subject.
func SubjectMatches(f, subject string) bool {
	ft, st := strings.Split(f, "."), strings.Split(subject, ".")
	for i, tok := range ft {
		switch {
		case tok == ">":
			return len(st) > i
		case i >= len(st):
			return false
		case tok != "*" && tok != st[i]:
			return false
		}
	}
	return len(ft) == len(st)
}

func (t *tracer) stored(ctx context.Context, ev event) error {
	detail := "source " + ev.Header.Get(messages.HeaderSource)
	if a, err := t.s.Parse(ev.Subject); err == nil && a.Service != "" {
		detail += ", service " + a.Service
	}
	msgID := ev.Header.Get(messages.HeaderMsgID)
	switch {
	case strings.HasPrefix(msgID, "replay:"):
		detail += ", stored again by 'ccrelay replay'"
	case strings.HasPrefix(msgID, "requeue:"):
		detail += ", stored again by 'ccrelay dlq requeue' (dead letter seq " + strings.Split(msgID, ":")[1] + ")"
	case msgID == "" && ev.id == "":
		detail += ", published by hand without ingest's headers"
	}
	// The sender's time, where it is not the time the event was stored:
	// a late callback, a retry, a copy.
	if sent := headerTime(ev.Header, messages.HeaderTime); !sent.IsZero() && (sent.Sub(ev.Time) > time.Second || ev.Time.Sub(sent) > time.Second) {
		detail += ", sent " + sent.UTC().Format(time.RFC3339Nano)
	}
	step := Step{Time: ev.Time, Kind: KindStored, Outcome: "stored", DedupID: ev.id, Seq: ev.Seq, Subject: ev.Subject, Detail: detail}
	if t.opts.Body {
		m, ok, err := processors.Scan{Stream: t.s.EventsStream(), Wait: t.opts.Wait}.Get(ctx, t.js, ev.Seq)
		if err != nil {
			return fmt.Errorf("body of seq %d: %w", ev.Seq, err)
		}
		if ok {
			step.Body = string(m.Data)
		}
	}
	t.rep.Steps = append(t.rep.Steps, step)
	return nil
}

type dlKey struct {
	seq       uint64
	processor string
}

// deadLetters reads the dead letters' headers since the oldest event
// found, keyed by the event's sequence and processor (the latest).
func (t *tracer) deadLetters(ctx context.Context) (map[dlKey]*processors.DeadLetter, error) {
	seqs := map[uint64]bool{}
	for _, ev := range t.events {
		seqs[ev.Seq] = true
	}
	out := map[dlKey]*processors.DeadLetter{}
	_, err := t.scan(t.s.DeadLetterStream(), t.events[0].Time).each(ctx, func(h head) error {
		orig, _ := strconv.ParseUint(h.Header.Get(messages.HeaderDLQSeq), 10, 64)
		if !seqs[orig] {
			return nil
		}
		dl := &processors.DeadLetter{Seq: h.Seq, Processor: h.Header.Get(messages.HeaderDLQProcessor), Subject: h.Header.Get(messages.HeaderDLQSubject),
			OrigSeq: orig, Error: h.Header.Get(messages.HeaderDLQError), FailedAt: headerTime(h.Header, messages.HeaderDLQFailedAt), Header: h.Header}
		dl.Deliveries, _ = strconv.ParseUint(h.Header.Get(messages.HeaderDLQDeliveries), 10, 64)
		out[dlKey{orig, dl.Processor}] = dl
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	return out, nil
}

// heldMsg is an event the relay parked.
type heldMsg struct {
	head
	conversation string
	attempts     uint64
}

// held reads the relay's held messages' headers, keyed by the event's
// sequence. Held messages stay until released or dropped, so all are read.
func (t *tracer) held(ctx context.Context) (map[uint64]*heldMsg, error) {
	seqs := map[uint64]bool{}
	for _, ev := range t.events {
		seqs[ev.Seq] = true
	}
	out := map[uint64]*heldMsg{}
	prefix := t.s.RelayHeld("")
	_, err := t.scan(t.s.RelayHeldStream(), t.events[0].Time).each(ctx, func(h head) error {
		orig, _ := strconv.ParseUint(h.Header.Get(messages.HeaderHeldSeq), 10, 64)
		if seqs[orig] {
			hm := &heldMsg{head: h, conversation: strings.TrimPrefix(h.Subject, prefix)}
			hm.attempts, _ = strconv.ParseUint(h.Header.Get(messages.HeaderHeldDeliveries), 10, 64)
			out[orig] = hm
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("held messages: %w", err)
	}
	return out, nil
}

// processed adds what processor p did with ev.
// c is the consumer of p that takes ev's subject; its zero value when
// none does any more (then only a dead letter or a parked message is
// shown).
func (t *tracer) processed(ctx context.Context, ev event, p string, c consumer, ledger *processors.LedgerReader, dl *processors.DeadLetter, hm *heldMsg) error {
	step := Step{Kind: KindProcessed, Processor: p, DedupID: ev.id, Seq: ev.Seq, Subject: ev.Subject, rank: 1}
	if dl != nil {
		step.Time, step.Kind, step.Outcome, step.Attempts = dl.FailedAt, KindDeadLettered, "dead_lettered", dl.Deliveries
		step.Detail = dl.Error
		step.Next = fmt.Sprintf("ccrelay dlq requeue --seq %d", dl.Seq)
		t.rep.Steps = append(t.rep.Steps, step)
		return nil
	}
	if hm != nil {
		step.Time, step.Kind, step.Outcome, step.Attempts = hm.Time, KindParked, "parked", hm.attempts
		step.Detail = "conversation " + hm.conversation + " parked"
		if store, _ := t.parking(ctx); store != nil {
			conv, err := store.Get(ctx, hm.conversation)
			switch {
			case err != nil:
				t.warn("parked conversation %s not read: %v", hm.conversation, err)
			case conv != nil:
				step.Detail += fmt.Sprintf(" (state %s, limit reached: %s): %s", conv.State, conv.Cause, conv.Reason)
			}
		}
		step.Next = "ccrelay relay release " + hm.conversation
		t.rep.Steps = append(t.rep.Steps, step)
		return nil
	}
	info := c.info
	if info == nil {
		return nil
	}
	acked := ev.Seq <= info.AckFloor.Stream
	delivered := ev.Seq <= info.Delivered.Stream
	if t.opts.Processors[p] == processors.Once && ev.id != "" {
		e, ok, err := ledger.Lookup(ctx, p, ev.id)
		if err != nil {
			return err
		}
		if ok {
			step.Time = e.At
			switch e.State {
			case "done":
				step.Outcome, step.Detail = "done", "recorded done in the ledger"
				if p == "forward" {
					step.Kind, step.Detail = KindRelayed, "delivered to Contact Pro (recorded done in the ledger)"
				}
			case "released":
				step.Outcome = "ignored"
				step.Detail = "claimed, then given up: nothing to do for it (ignored), or it failed and was retried"
				if !acked {
					step.Outcome, step.Detail = "retrying", "claimed, failed, given back for a retry (the error is in the processor's log lines with this dedup_id)"
				}
			default:
				step.Outcome, step.Detail = "in_progress", fmt.Sprintf("claimed (%s) by worker %s", e.State, e.Owner)
			}
			t.rep.Steps = append(t.rep.Steps, step)
			return nil
		}
	}
	// No record of its own: the consumer's position says the rest.
	step.Time = ev.Time
	step.rank = 2
	switch {
	case acked:
		step.Outcome, step.Detail = "acknowledged", "handled: done, skipped as done before, or ignored (this processor records no outcome per event; see its status below)"
		if t.opts.Processors[p] == processors.Once {
			step.Detail = "acknowledged without a ledger entry: ignored before it was claimed, or the entry expired"
		}
	case delivered:
		step.Outcome = "pending"
		step.Detail = fmt.Sprintf("delivered to %s, not acknowledged yet: in progress, or waiting for a retry (its errors are in the processor's log lines with this dedup_id)", info.Name)
	default:
		step.Outcome = "waiting"
		step.Detail = fmt.Sprintf("not yet delivered to %s (%d events waiting before it)", info.Name, info.NumPending)
	}
	t.rep.Steps = append(t.rep.Steps, step)
	return nil
}

// sinkStatus adds what the sinks' status buckets hold for ev: the latest
// delivery status of a Sinch message, the summary outcome of a Connect
// contact. Each once.
func (t *tracer) sinkStatus(ctx context.Context, ev event, seen map[string]bool) error {
	a, err := t.s.Parse(ev.Subject)
	if err != nil {
		return nil
	}
	switch {
	case a.Source == messages.SourceSinch && a.Kind == strings.ToLower(string(messages.TriggerMessageDelivery)):
		parts := messages.DedupIDParts(ev.id)
		if len(parts) == 0 || seen["d:"+parts[0]] {
			return nil
		}
		seen["d:"+parts[0]] = true
		return t.deliveryStatus(ctx, ev, parts[0])
	case a.Source == messages.SourceConnect:
		contact := ""
		if a.Kind == messages.ConnectContactLens {
			for _, v := range ev.Header.Values(messages.HeaderIDs) {
				if ids := messages.ParseIDs(v); len(ids) > 0 {
					contact = ids[0]
				}
			}
		} else if parts := messages.DedupIDParts(ev.id); len(parts) > 0 {
			contact = parts[0]
		}
		if contact == "" || seen["s:"+contact] {
			return nil
		}
		seen["s:"+contact] = true
		return t.summaryStatus(ctx, ev, contact)
	}
	return nil
}

// bucket binds to a status bucket once per run: nil when it does not
// exist or cannot be read now (a warning says so). What the sinks hold
// completes the answer; a bucket that does not answer must not take the
// rest of it away.
func (t *tracer) bucket(ctx context.Context, name string) jetstream.KeyValue {
	if kv, ok := t.buckets[name]; ok {
		return kv
	}
	bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	kv, err := t.js.KeyValue(bctx, name)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		kv = nil
	case err != nil:
		t.warn("bucket %s not read: %v", name, err)
		kv = nil
	}
	t.buckets[name] = kv
	return kv
}

func (t *tracer) deliveryStatus(ctx context.Context, ev event, messageID string) error {
	kv := t.bucket(ctx, t.s.DeliveryStatusBucket())
	if kv == nil {
		return nil
	}
	e, err := kv.Get(ctx, deliveries.Key(messageID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	var st deliveries.Status
	if err == nil {
		err = jsonUnmarshal(e.Value(), &st)
	}
	if err != nil {
		t.warn("delivery status of %s not read: %v", messageID, err)
		return nil
	}
	detail := fmt.Sprintf("latest delivery status of message %s: %s on %s at %s", messageID, st.Status, st.Channel, st.EventTime.UTC().Format("2006-01-02T15:04:05.000Z"))
	if st.Reason != nil && st.Reason.Code != "" {
		// As the metrics label it: Sinch's documented codes, "other" for
		// any text a sender put there (it may be anything, a phone number
		// included, and is shown nowhere else).
		detail += ", reason " + messages.SinchReasonCodes.Label(st.Reason.Code)
	}
	t.rep.Steps = append(t.rep.Steps, Step{Time: e.Created(), Kind: KindStatus, Processor: deliveries.Name, Outcome: string(st.Status), DedupID: ev.id, Seq: ev.Seq, Subject: ev.Subject, Detail: detail, rank: 3})
	return nil
}

func (t *tracer) summaryStatus(ctx context.Context, ev event, contact string) error {
	kv := t.bucket(ctx, t.s.SummaryStatusBucket())
	if kv == nil {
		return nil
	}
	outcome, at, ok, err := summaries.LookupStatus(ctx, kv, contact)
	if err != nil {
		t.warn("%v", err)
		return nil
	}
	if !ok {
		return nil
	}
	detail := "summary of contact " + contact + ": " + outcome
	switch outcome {
	case "written":
		detail += " into the call record in SAP"
	case "unchanged":
		detail += " (the call record already held it)"
	case "failed":
		detail += " (Contact Lens reports the summary FAILED: nothing to write)"
	case "triggered":
		detail += " (the reconciler stored a trigger; the processor has not written it yet)"
	}
	t.rep.Steps = append(t.rep.Steps, Step{Time: at, Kind: KindStatus, Processor: summaries.Name, Outcome: outcome, DedupID: ev.id, Seq: ev.Seq, Subject: ev.Subject, Detail: detail, rank: 3})
	return nil
}
