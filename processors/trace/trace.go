// Package trace answers "what happened to this contact?": it finds the
// stored events of one id (a dedup id, a message, contact or conversation
// id of any source, a stream sequence, a parked conversation of the relay)
// and puts together, in time order, everything ccrelay keeps about them:
// the stored event, each processor's ledger entry and consumer position,
// dead letters with their reason, parked messages of the relay, the
// delivery status and the summary outcome, with the command to run where
// something is stuck. It only reads.
package trace

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/forward/parking"
)

// Kinds of steps.
const (
	KindStored       = "stored"
	KindProcessed    = "processed"
	KindDeadLettered = "dead_lettered"
	KindParked       = "parked"
	KindRelayed      = "relayed"
	KindStatus       = "status"
)

// Options say what to trace and within which bounds.
type Options struct {
	// ID is what the operator has: see Match.
	ID string
	// Since is the oldest stored time read (default: 24 hours ago).
	Since time.Time
	// Limit caps the events shown, the newest (default 50):
	// Report.Matched still counts every match, and Report.Capped says the
	// cap was reached.
	Limit int
	// Body adds each shown event's body to its stored step.
	Body bool
	// Processors are the processors whose work is shown, by name, with the
	// guarantee each declares (service.Guarantees): a Once processor's
	// outcome is read from its ledger entry, an Idempotent one's from its
	// consumer and its sink's status. Required.
	Processors map[string]processors.Guarantee
	// Wait retries each request while JetStream has no leader or no
	// responders; its zero value waits up to 15 s for each.
	Wait provision.Waiter
	// Batch is the number of headers pulled at once (default 2000).
	Batch int
	// MaxBodyReads bounds the events read in full because they were
	// stored before ingest wrote HeaderIDs (default 20000).
	MaxBodyReads int
}

// Step is one thing that happened to an event. Its JSON field names are
// part of the command's contract (README, "ccrelay trace").
type Step struct {
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	Processor string    `json:"processor,omitempty"`
	Outcome   string    `json:"outcome,omitempty"`
	DedupID   string    `json:"dedup_id"`
	Seq       uint64    `json:"seq"`
	Subject   string    `json:"subject"`
	Detail    string    `json:"detail,omitempty"`
	Attempts  uint64    `json:"attempts,omitempty"`
	// Next is the command that moves a stuck event on.
	Next string `json:"next,omitempty"`
	// Body is the stored body, with Options.Body only.
	Body string `json:"body,omitempty"`
	// rank orders steps of one time: stored first.
	rank int
}

// Report is what Run found.
type Report struct {
	ID    string
	Since time.Time
	// Steps in time order.
	Steps []Step
	// Matched counts the events found; Shown those with steps (Limit).
	Matched, Shown int
	Capped         bool
	// Scanned counts the event headers read; BodiesRead the events read
	// in full because they were stored without HeaderIDs, and
	// BodyReadsCapped says some were left unread (MaxBodyReads).
	Scanned         uint64
	BodiesRead      int
	BodyReadsCapped bool
	// Conversation is the relay's parked conversation the id named.
	Conversation string
	// Warnings say what could not be read (a status bucket, the relay's
	// state) and is missing from Steps.
	Warnings []string
	Elapsed  time.Duration
}

// Run traces opts.ID. It reads the events stream's headers since
// opts.Since, the dead letters and the relay's held messages the same
// way, then the ledger, the status buckets and the processors' consumers
// for each event found.
func Run(ctx context.Context, js jetstream.JetStream, s messages.Subjects, opts Options) (*Report, error) {
	start := time.Now()
	if opts.Since.IsZero() {
		opts.Since = start.Add(-24 * time.Hour)
	}
	opts.Limit = cmp.Or(opts.Limit, 50)
	opts.Batch = cmp.Or(opts.Batch, 2000)
	opts.MaxBodyReads = cmp.Or(opts.MaxBodyReads, 20000)
	if len(opts.Processors) == 0 {
		return nil, errors.New("no processors to show")
	}
	id := strings.TrimSpace(opts.ID)
	if id == "" || len(id) > 1024 {
		return nil, errors.New("give one id of at most 1024 bytes")
	}
	t := &tracer{js: js, s: s, opts: opts, m: NewMatch(id), rep: &Report{ID: id, Since: opts.Since}, buckets: map[string]jetstream.KeyValue{},
		names: slices.Sorted(maps.Keys(opts.Processors))}
	if err := t.relayConversation(ctx); err != nil {
		return nil, err
	}
	if err := t.findEvents(ctx); err != nil {
		return nil, err
	}
	if err := t.explain(ctx); err != nil {
		return nil, err
	}
	slices.SortStableFunc(t.rep.Steps, func(a, b Step) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.rank, b.rank), cmp.Compare(a.Seq, b.Seq))
	})
	t.rep.Elapsed = time.Since(start)
	return t.rep, nil
}

// event is one stored event that matched.
type event struct {
	head
	id string
}

type tracer struct {
	js   jetstream.JetStream
	s    messages.Subjects
	opts Options
	m    *Match
	rep  *Report
	// names are opts.Processors' names, sorted.
	names  []string
	events []event
	// legacy are events stored without HeaderIDs whose ids are in their
	// bodies only: read in full after the scan.
	legacy []head
	// buckets and parked are bound once per run.
	buckets   map[string]jetstream.KeyValue
	parked    *parking.Store
	parkedErr bool
}

func (t *tracer) scan(stream string, since time.Time) headScan {
	return headScan{js: t.js, stream: stream, since: since, batch: t.opts.Batch, wait: t.opts.Wait, inactive: 30 * time.Second}
}

// findEvents scans the events stream's headers.
func (t *tracer) findEvents(ctx context.Context) error {
	n, err := t.scan(t.s.EventsStream(), t.opts.Since).each(ctx, func(h head) error {
		switch t.m.Header(h.Seq, h.Header) {
		case Matched:
			t.add(h)
		case BodyOnly:
			if a, err := t.s.Parse(h.Subject); err != nil || !idsInBody(a) {
				break
			}
			// Bounded: beyond it, say so rather than hold them all.
			if len(t.legacy) == t.opts.MaxBodyReads {
				t.rep.BodyReadsCapped = true
				break
			}
			t.legacy = append(t.legacy, h)
		}
		return nil
	})
	t.rep.Scanned = n
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	// Events stored before ingest wrote HeaderIDs: their bodies, one get
	// each, as many as the bound allows.
	sc := processors.Scan{Stream: t.s.EventsStream(), Wait: t.opts.Wait}
	for _, h := range t.legacy {
		m, ok, err := sc.Get(ctx, t.js, h.Seq)
		if err != nil {
			return fmt.Errorf("events: read seq %d: %w", h.Seq, err)
		}
		t.rep.BodiesRead++
		if ok && t.m.Body(m.Data) {
			t.add(h)
		}
	}
	slices.SortFunc(t.events, func(a, b event) int { return cmp.Compare(a.Seq, b.Seq) })
	return nil
}

// idsInBody reports whether an event of a has ids that only its body and
// HeaderIDs hold: Sinch callbacks and Contact Lens events.
func idsInBody(a messages.Address) bool {
	return a.Source == messages.SourceSinch || a.Source == messages.SourceConnect && a.Kind == messages.ConnectContactLens
}

func (t *tracer) add(h head) {
	t.rep.Matched++
	if len(t.events) == t.opts.Limit {
		// The newest are kept (an operator asks about what happened
		// last); events read in full come after the scan, in any order.
		t.rep.Capped = true
		oldest := 0
		for i := range t.events {
			if t.events[i].Seq < t.events[oldest].Seq {
				oldest = i
			}
		}
		if h.Seq < t.events[oldest].Seq {
			return
		}
		t.events = slices.Delete(t.events, oldest, oldest+1)
	}
	id := h.Header.Get(messages.HeaderID)
	t.events = append(t.events, event{head: h, id: id})
	// Copies (a replay, a requeue) keep the ce-id: found by it too, and
	// so are dead letters and parked messages of the event.
	t.m.AddDedupID(id)
}

// Seq parses a stream sequence given as the id.
func Seq(id string) (uint64, bool) {
	n, err := strconv.ParseUint(id, 10, 64)
	// Written as a sequence is: "027" is an id, not sequence 27.
	return n, err == nil && n > 0 && strconv.FormatUint(n, 10) == id
}

// headerTime reads a time header.
func headerTime(h nats.Header, name string) time.Time {
	tm, _ := time.Parse(time.RFC3339Nano, h.Get(name))
	return tm
}
