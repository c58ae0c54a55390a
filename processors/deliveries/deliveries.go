// Package deliveries is the processor of Sinch MESSAGE_DELIVERY callbacks:
// it keeps the latest status of every message in a KV bucket, ordered by
// the report's event time so a late report never overwrites a newer one,
// and counts reports by channel, status and reason.
//
// Guarantee: idempotent (no ledger). A status is written with
// compare-and-set and only over an older one (event time, then rank), so
// a report applied twice, or reports applied in any order, by any number
// of replicas, end in the same status. The common path is one write: the
// revision this replica last wrote or read for the message is
// remembered, and a report is written conditionally on it (or created,
// for a message not seen yet); only a conflict (another replica wrote
// meanwhile) or a report no newer than what the replica knows (a late
// one, a replay) reads the status back.
package deliveries

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/jspub"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
)

// Name is the processor's name.
const Name = "deliveries"

// Config sets the processor. Its env tags are read with the CCRELAY_ prefix.
type Config struct {
	// StatusTTL is how long a message's latest status is kept.
	StatusTTL time.Duration `env:"DELIVERY_STATUS_TTL" envDefault:"720h" help:"how long a message's latest status is kept"`
}

// Status is the value kept per message id.
type Status struct {
	MessageID      string                       `json:"message_id"`
	Status         messages.SinchDeliveryStatus `json:"status"`
	EventTime      time.Time                    `json:"event_time"`
	AppID          string                       `json:"app_id"`
	Channel        string                       `json:"channel"`
	ConversationID string                       `json:"conversation_id,omitempty"`
	ContactID      string                       `json:"contact_id,omitempty"`
	Reason         *messages.SinchReason        `json:"reason,omitempty"`
}

// rank orders statuses that carry the same event time: a message is read
// after it is delivered, delivered after it is queued.
func rank(s messages.SinchDeliveryStatus) int {
	switch s {
	case messages.StatusQueuedOnChannel:
		return 1
	case messages.StatusSwitchingChannel:
		return 2
	case messages.StatusDelivered:
		return 3
	case messages.StatusRead:
		return 4
	case messages.StatusFailed:
		return 5
	}
	return 0
}

// newer reports whether a should replace b.
func newer(a, b Status) bool {
	if !a.EventTime.Equal(b.EventTime) {
		return a.EventTime.After(b.EventTime)
	}
	return rank(a.Status) > rank(b.Status)
}

// Processor keeps delivery statuses.
type Processor struct {
	cfg Config
	env processors.Env
	kv  jetstream.KeyValue
	// subjects is the status bucket's subject prefix, for the
	// conditional writes of the common path.
	subjects string
	seen     *seen
	reports  *prometheus.CounterVec
	stale    prometheus.Counter
	// requests to the status bucket, by path.
	requests                 *prometheus.CounterVec
	writes, conflicts, reads prometheus.Counter
}

// New returns the processor. It creates nothing: Provision creates the
// status bucket.
func New(cfg Config, env processors.Env) (*Processor, error) {
	p := &Processor{
		cfg: cfg, env: env,
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_delivery_reports_total",
			Help: "Sinch delivery reports processed, by channel, status and reason code.",
		}, []string{"channel", "status", "reason"}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ccrelay_delivery_reports_stale_total",
			Help: "Delivery reports older than the status already kept (not applied).",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_delivery_status_requests_total",
			Help: "Requests to the status bucket, by path: 'write' (the one conditional write of the common path), 'conflict' (a write refused because another replica wrote first), 'read' (a status read back after one).",
		}, []string{"path"}),
		seen: newSeen(seenPerGeneration),
	}
	p.writes, p.conflicts, p.reads = p.requests.WithLabelValues("write"), p.requests.WithLabelValues("conflict"), p.requests.WithLabelValues("read")
	env.Registry.MustRegister(p.reports, p.stale, p.requests)
	return p, nil
}

// Provision creates or binds the status bucket.
func (p *Processor) Provision(ctx context.Context) error {
	kv, err := p.env.Waiter.KeyValue(ctx, p.env.JS, jetstream.KeyValueConfig{
		Bucket:      p.env.Subjects.DeliveryStatusBucket(),
		Description: "ccrelay: latest Sinch delivery status per message id",
		TTL:         p.cfg.StatusTTL,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    p.env.Replicas,
	})
	if err != nil {
		return fmt.Errorf("delivery status %w", err)
	}
	p.kv = kv
	p.subjects = "$KV." + p.env.Subjects.DeliveryStatusBucket() + "."
	return nil
}

// Check has nothing outside JetStream to check.
func (p *Processor) Check(context.Context) error {
	return fmt.Errorf("delivery statuses stay in JetStream: %w", processors.ErrNotConfigured)
}

// Processor returns the runtime definition of the processor.
func (p *Processor) Processor() processors.Processor {
	return processors.Processor{Name: Name, Filter: []string{p.env.Subjects.SinchFilter(messages.TriggerMessageDelivery)}, Handler: p, Guarantee: processors.Idempotent}
}

// Key is the KV key of a message id. Sinch message ids are ULIDs and are
// their own key; any other id (spaces, dots, non-ASCII, which a KV key
// cannot hold or would split on) is "=" and its hex, which no plain id
// starts with, so every id has a valid key of its own.
func Key(messageID string) string {
	plain := messageID != ""
	for i := 0; i < len(messageID) && plain; i++ {
		c := messageID[i]
		plain = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
	}
	if plain {
		return messageID
	}
	return "=" + hex.EncodeToString([]byte(messageID))
}

// Lookup returns the kept status of messageID.
func (p *Processor) Lookup(ctx context.Context, messageID string) (Status, error) {
	e, err := p.kv.Get(ctx, Key(messageID))
	if err != nil {
		return Status{}, err
	}
	var s Status
	return s, json.Unmarshal(e.Value(), &s)
}

// Handle implements processors.Handler.
func (p *Processor) Handle(ctx context.Context, ev *processors.Event) error {
	r, ok, err := messages.DecodeSinchDelivery(ev.Body)
	if err != nil {
		return processors.Permanent(err)
	}
	if !ok {
		return processors.Ignored("not a delivery report")
	}
	st := Status{
		MessageID: r.MessageID, Status: r.Status, EventTime: r.Time, AppID: r.AppID,
		Channel: r.Channel, ConversationID: r.ConversationID, ContactID: r.ContactID, Reason: r.Reason,
	}
	if st.EventTime.IsZero() {
		// No time in the report: the one ingest stored it with (ce-time,
		// which a replay keeps). Not the time this copy was stored: a
		// bare copy republished by hand would be the newest every time,
		// and put an old status back. A report with no time at all
		// orders below every timed one.
		if t, err := time.Parse(time.RFC3339Nano, ev.Header.Get(messages.HeaderTime)); err == nil {
			st.EventTime = t
		}
	}
	applied, err := p.store(ctx, st)
	if err != nil {
		return err
	}
	if !applied {
		p.stale.Inc()
	}
	reason := "none"
	if r.Reason != nil && r.Reason.Code != "" {
		reason = messages.SinchReasonCodes.Label(r.Reason.Code)
	}
	p.reports.WithLabelValues(messages.SinchChannels.Label(st.Channel), messages.SinchDeliveryStatuses.Label(string(st.Status)), reason).Inc()
	return nil
}

// store writes st unless a newer status is kept, with compare-and-set so
// that replicas racing on one message cannot lose the newest. It first
// writes conditionally on what this replica last knew of the message
// (nothing: a create), which is one request when no other replica wrote
// it since; a refusal reads the status and compares.
func (p *Processor) store(ctx context.Context, st Status) (bool, error) {
	key := Key(st.MessageID)
	val, err := json.Marshal(st)
	if err != nil {
		return false, processors.Permanent(err)
	}
	// Reports of one message handled at once on this replica (a backlog
	// holds them side by side) take turns: each then writes on the
	// revision the one before wrote, instead of losing a conditional
	// write to it and reading it back.
	unlock := p.seen.lock(key)
	defer unlock()
	k, ok := p.seen.get(key)
	if !ok || k.older(st) {
		applied, err := p.write(ctx, key, val, k.rev, st)
		if applied || !errors.Is(err, jetstream.ErrKeyExists) {
			return applied, err
		}
		p.conflicts.Inc()
	}
	// What this replica knew is at least as new (a late report, a
	// replay), or another replica wrote meanwhile: read what is kept. A
	// status deleted by hand or expired since is written again.
	for attempt := 0; attempt < 10; attempt++ {
		p.reads.Inc()
		cur, err := p.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			// Expired, or deleted by hand (whose marker Create writes
			// over).
			rev, err := p.kv.Create(ctx, key, val)
			if err == nil {
				p.seen.put(key, rev, st)
				return true, nil
			}
			if !errors.Is(err, jetstream.ErrKeyExists) {
				return false, fmt.Errorf("store status: %w", err)
			}
			continue
		case err != nil:
			return false, fmt.Errorf("read status: %w", err)
		}
		var kept Status
		if json.Unmarshal(cur.Value(), &kept) == nil && !newer(st, kept) {
			p.seen.put(key, cur.Revision(), kept)
			return false, nil
		}
		applied, err := p.write(ctx, key, val, cur.Revision(), st)
		if applied || !errors.Is(err, jetstream.ErrKeyExists) {
			return applied, err
		}
		// Someone else wrote in between: look again.
	}
	return false, errors.New("store status: too much contention")
}

// write stores val under key if the key's last revision is rev (0: it
// was never written), and remembers it.
func (p *Processor) write(ctx context.Context, key string, val []byte, rev uint64, st Status) (bool, error) {
	p.writes.Inc()
	wctx, cancel := provision.Bounded(ctx, p.env.Waiter.CallTimeout)
	defer cancel()
	ack, err := jspub.Publish(wctx, p.env.JS.Conn(), &nats.Msg{Subject: p.subjects + key, Data: val,
		Header: nats.Header{jetstream.ExpectedLastSubjSeqHeader: []string{strconv.FormatUint(rev, 10)}}})
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, err
	}
	if err != nil {
		return false, fmt.Errorf("store status: %w", err)
	}
	p.seen.put(key, ack.Sequence, st)
	return true, nil
}

// seenPerGeneration bounds what a replica remembers of the statuses it
// wrote: two generations of this many messages (a few MiB), enough for
// the reports of a message, which come within minutes, to find it.
const seenPerGeneration = 1 << 15

// seen remembers, per status key, the revision and status this replica
// last wrote or read. When the current generation is full it becomes the
// old one and the one before is dropped: bounded, and without a list to
// keep in order on every report.
type seen struct {
	mu       sync.Mutex
	max      int
	cur, old map[string]known
	// keys serialise the reports of one message on this replica, by a
	// stripe of its key's hash.
	keys [256]sync.Mutex
}

// lock takes key's stripe and returns its unlock.
func (s *seen) lock(key string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	m := &s.keys[h.Sum32()%uint32(len(s.keys))]
	m.Lock()
	return m.Unlock
}

// known is what a replica knew of a key: its revision and the order of
// its status.
type known struct {
	rev  uint64
	time int64
	rank int
}

// older reports whether st would replace what k holds.
func (k known) older(st Status) bool {
	t := st.EventTime.UnixNano()
	if t != k.time {
		return t > k.time
	}
	return rank(st.Status) > k.rank
}

func newSeen(max int) *seen {
	return &seen{max: max, cur: make(map[string]known), old: map[string]known{}}
}

func (s *seen) get(key string) (known, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.cur[key]; ok {
		return k, true
	}
	k, ok := s.old[key]
	return k, ok
}

func (s *seen) put(key string, rev uint64, st Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cur) >= s.max {
		s.old, s.cur = s.cur, make(map[string]known, s.max)
	}
	s.cur[key] = known{rev: rev, time: st.EventTime.UnixNano(), rank: rank(st.Status)}
}
