// Package parking keeps the conversations the relay to Contact Pro set
// aside: a conversation whose head message could not be delivered within
// its bound is parked, that message and every later one of the
// conversation are stored here, in order, and the rest of its partition
// group goes on. An operator releases a parked conversation (the relay
// delivers its messages in order, then takes the conversation back) or
// drops it (its messages become dead letters).
//
// State: one KV entry per conversation in bucket RelayBucket (key
// "parked.<conversation id>"), changed only by compare-and-set, read from
// the stream leader. Messages: stream RelayHeldStream, subject
// RelayHeld(<conversation id>), each with the original's headers and body
// and where it was stored (HeaderHeldSubject, HeaderHeldSeq).
//
// The protocol that keeps order without a lock: whoever parks a message
// first raises Last (the events-stream sequence of the last message
// parked) by compare-and-set, then stores the message; whoever releases
// delivers the stored messages in order, raising Released, and takes the
// conversation back (deletes the entry, by compare-and-set) only when
// Released has reached Last. A message parked while the release runs
// raises Last first, so the release cannot end before it; a message that
// comes after the entry is gone finds no entry and is delivered normally,
// after everything that was parked.
package parking

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
)

// States of a parked conversation.
const (
	// Parked: its messages wait for an operator.
	Parked = "parked"
	// Releasing: an operator released it; a relay replica delivers its
	// messages in order (Owner, until Lease).
	Releasing = "releasing"
	// Dropping: an operator dropped it; its messages become dead letters.
	Dropping = "dropping"
)

// keyPrefix starts the KV keys of parked conversations.
const keyPrefix = "parked."

// Conversation is one parked conversation.
type Conversation struct {
	// ID is its messages.ConversationID.
	ID string `json:"id"`
	// Destination is its relay destination, "type/service".
	Destination string `json:"destination"`
	// Partition is its subjects' partition token.
	Partition string `json:"partition"`
	// Park tells this parking from an earlier one of the same
	// conversation.
	Park  string `json:"park"`
	State string `json:"state"`
	// Reason says why it was parked, in words; Cause is the limit that
	// was reached (the reason label of the parks metric).
	Reason string    `json:"reason"`
	Cause  string    `json:"cause"`
	Since  time.Time `json:"since"`
	// Head is the dedup id of the message that could not be delivered.
	Head string `json:"head"`
	// First and Last are the events-stream sequences of the first and of
	// the last message parked; Parked counts them.
	First  uint64 `json:"first"`
	Last   uint64 `json:"last"`
	Parked int    `json:"parked"`
	// Released is the events-stream sequence of the last message
	// delivered or dead-lettered since an operator released or dropped
	// it; Settled counts them.
	Released uint64 `json:"released"`
	Settled  int    `json:"settled"`
	// Owner is who releases or drops it, until Lease.
	Owner string    `json:"owner,omitempty"`
	Lease time.Time `json:"lease"`

	rev uint64
}

// Waiting is how many of its messages are still parked.
func (c *Conversation) Waiting() int { return max(c.Parked-c.Settled, 0) }

// Errors a caller decides on.
var (
	// ErrConflict: the conversation changed since it was read.
	ErrConflict = errors.New("the parked conversation changed meanwhile")
	// ErrNotParked: no such parked conversation.
	ErrNotParked = errors.New("no such parked conversation")
	// ErrAmbiguous: a prefix names several parked conversations.
	ErrAmbiguous = errors.New("the prefix names several parked conversations")
	// ErrNotProvisioned: the relay never ran, so nothing can be parked.
	ErrNotProvisioned = errors.New("the relay's bucket and stream do not exist (the relay has not run)")
)

// Store holds the parked conversations of one deployment.
type Store struct {
	js       jetstream.JetStream
	subjects messages.Subjects
	kv       jetstream.KeyValue
	// kvStream and kvSubjects are the bucket's stream and subject prefix,
	// for reads from the stream leader.
	kvStream, kvSubjects string
	// call bounds each request the store makes outside the bucket (whose
	// requests the waiter bounds): the leader reads, every message's
	// park check among them, run on a handler's long context.
	call time.Duration
}

// bound is ctx with a deadline at most s.call away.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return provision.Bounded(ctx, s.call)
}

// Config sets what Provision creates.
type Config struct {
	Subjects messages.Subjects
	// Replicas of the bucket and the stream, as every other's.
	Replicas int
}

// Provision creates the bucket and the stream, or updates them where
// their configuration differs, and returns the store.
func Provision(ctx context.Context, w provision.Waiter, js jetstream.JetStream, c Config) (*Store, error) {
	s := c.Subjects
	kv, err := w.KeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      s.RelayBucket(),
		Description: "ccrelay relay to Contact Pro: parked conversations and the order of its destinations' consumers",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("relay %w", err)
	}
	// No age or size limit: a parked message stays until an operator
	// releases or drops it. DiscardNew: were limits set by hand, parking
	// would fail (and the message be retried) rather than a parked
	// message vanish.
	if _, err := w.Stream(ctx, js, jetstream.StreamConfig{
		Name:        s.RelayHeldStream(),
		Description: "ccrelay relay to Contact Pro: the messages of parked conversations",
		Subjects:    []string{s.RelayHeldAll()},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		Duplicates:  2 * time.Minute,
		Replicas:    c.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("relay %w", err)
	}
	return newStore(js, s, provision.BoundKV(kv, callOr(w.CallTimeout)), callOr(w.CallTimeout)), nil
}

// callOr is d, or 5 s when it is not set.
func callOr(d time.Duration) time.Duration {
	if d <= 0 {
		return 5 * time.Second
	}
	return d
}

// Open binds to the bucket and stream a relay created, for the operator
// commands. It fails with ErrNotProvisioned when there are none.
func Open(ctx context.Context, js jetstream.JetStream, s messages.Subjects) (*Store, error) {
	kv, err := js.KeyValue(ctx, s.RelayBucket())
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, ErrNotProvisioned
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", s.RelayBucket(), err)
	}
	if _, err := js.Stream(ctx, s.RelayHeldStream()); errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, ErrNotProvisioned
	} else if err != nil {
		return nil, fmt.Errorf("stream %s: %w", s.RelayHeldStream(), err)
	}
	return newStore(js, s, provision.BoundKV(kv, callOr(0)), callOr(0)), nil
}

func newStore(js jetstream.JetStream, s messages.Subjects, kv jetstream.KeyValue, call time.Duration) *Store {
	b := s.RelayBucket()
	return &Store{js: js, subjects: s, kv: kv, kvStream: "KV_" + b, kvSubjects: "$KV." + b + ".", call: call}
}

// KV is the bucket, for the relay's other state (its consumers' order).
func (s *Store) KV() jetstream.KeyValue { return s.kv }

// Value reads key of the bucket from the stream leader: its value and
// revision, or nil and the revision to compare-and-set against when it is
// not set.
func (s *Store) Value(ctx context.Context, key string) ([]byte, uint64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	m, err := processors.LastMsg(ctx, s.js, s.kvStream, s.kvSubjects+key)
	if err != nil || m == nil {
		return nil, 0, err
	}
	switch m.Header.Get("KV-Operation") {
	case "DEL", "PURGE":
		return nil, m.Sequence, nil
	}
	return m.Data, m.Sequence, nil
}

// Get returns conversation id as the stream leader has it, or nil when it
// is not parked.
func (s *Store) Get(ctx context.Context, id string) (*Conversation, error) {
	c, _, err := s.read(ctx, id)
	return c, err
}

// read returns conversation id and the revision of its key (that of a
// deletion marker when it is not parked; 0 when it never was).
func (s *Store) read(ctx context.Context, id string) (*Conversation, uint64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	m, err := processors.LastMsg(ctx, s.js, s.kvStream, s.kvSubjects+keyPrefix+id)
	if err != nil || m == nil {
		return nil, 0, err
	}
	switch m.Header.Get("KV-Operation") {
	case "DEL", "PURGE":
		return nil, m.Sequence, nil
	}
	var c Conversation
	if err := json.Unmarshal(m.Data, &c); err != nil {
		return nil, 0, fmt.Errorf("parked conversation %s: %w", id, err)
	}
	c.rev = m.Sequence
	return &c, m.Sequence, nil
}

// Update stores c if it has not changed since it was read, and fails with
// ErrConflict if it has.
func (s *Store) Update(ctx context.Context, c *Conversation) error {
	return s.put(ctx, c, c.rev)
}

func (s *Store) put(ctx context.Context, c *Conversation, rev uint64) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	n, err := s.kv.Update(ctx, keyPrefix+c.ID, b, rev)
	if isConflict(err) {
		return ErrConflict
	}
	if err != nil {
		return fmt.Errorf("parked conversation %s: %w", c.ID, err)
	}
	c.rev = n
	return nil
}

// isConflict reports whether err is JetStream refusing a compare-and-set.
func isConflict(err error) bool {
	var api *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// Unpark takes c back (deletes its entry) if it has not changed since it
// was read. Its messages are gone already: Settle removes each once it is
// settled. Nothing is purged here: a message parked behind c between the
// read and the delete is c's until the delete fails on it.
func (s *Store) Unpark(ctx context.Context, c *Conversation) error {
	err := s.kv.Delete(ctx, keyPrefix+c.ID, jetstream.LastRevision(c.rev))
	if isConflict(err) {
		return ErrConflict
	}
	if err != nil {
		return fmt.Errorf("parked conversation %s: %w", c.ID, err)
	}
	return nil
}

// Park parks the conversation c describes with ev, its head: it stores
// the entry, then the message. c needs ID, Destination, Partition, Reason,
// Cause; the rest is set here. It fails with ErrConflict if another
// replica parked the conversation meanwhile.
func (s *Store) Park(ctx context.Context, c *Conversation, ev *processors.Event) error {
	cur, rev, err := s.read(ctx, c.ID)
	if err != nil {
		return err
	}
	if cur != nil {
		return ErrConflict
	}
	// A new Park: what an earlier parking may have left in the stream (a
	// release that stopped between settling a message and removing it)
	// is not this one's, and Next removes it.
	c.Park = strconv.FormatInt(time.Now().UnixNano(), 36)
	c.State, c.Since, c.Head = Parked, time.Now().UTC(), ev.ID
	c.First, c.Last, c.Parked = ev.Seq, ev.Seq, 1
	c.Released, c.Settled, c.Owner, c.Lease = 0, 0, "", time.Time{}
	if err := s.put(ctx, c, rev); err != nil {
		return err
	}
	return s.hold(ctx, c, ev)
}

// Behind parks ev behind the messages of c, a parked conversation: it
// raises c's Last, then stores the message. It returns ErrNotParked when
// the conversation was taken back meanwhile: ev is then delivered as any
// other, after everything that was parked.
func (s *Store) Behind(ctx context.Context, c *Conversation, ev *processors.Event) error {
	for ev.Seq > c.Last {
		c.Last = ev.Seq
		c.Parked++
		err := s.Update(ctx, c)
		if !errors.Is(err, ErrConflict) {
			if err != nil {
				return err
			}
			break
		}
		cur, err := s.Get(ctx, c.ID)
		if err != nil {
			return err
		}
		if cur == nil {
			return ErrNotParked
		}
		*c = *cur
	}
	// A message at or below Last was counted by an earlier delivery of
	// it, whose store or acknowledgement was lost: stored again, a
	// duplicate within the stream's window is dropped, and a release
	// skips what it settled.
	return s.hold(ctx, c, ev)
}

// hold stores ev as a message of c.
func (s *Store) hold(ctx context.Context, c *Conversation, ev *processors.Event) error {
	h := make(nats.Header, len(ev.Header)+5)
	for k, v := range ev.Header {
		if k == nats.MsgIdHdr || strings.HasPrefix(k, "Nats-") {
			continue
		}
		h[k] = v
	}
	seq := strconv.FormatUint(ev.Seq, 10)
	h[messages.HeaderHeldSubject] = []string{ev.Subject}
	h[messages.HeaderHeldSeq] = []string{seq}
	h[messages.HeaderHeldPark] = []string{c.Park}
	h[messages.HeaderHeldDeliveries] = []string{strconv.FormatUint(ev.Deliveries, 10)}
	if ev.MaybeDone {
		h[messages.HeaderHeldMaybeDone] = []string{"true"}
	}
	if _, ok := ev.Header[messages.HeaderID]; !ok && ev.ID != "" {
		// A body published bare: keep the id it was given, so its
		// release and the ledger agree.
		h[messages.HeaderID] = []string{ev.ID}
	}
	h[nats.MsgIdHdr] = []string{"held:" + c.Park + ":" + seq}
	m := &nats.Msg{Subject: s.subjects.RelayHeld(c.ID), Header: h, Data: ev.Body}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, err := s.js.PublishMsg(ctx, m, jetstream.WithExpectStream(s.subjects.RelayHeldStream())); err != nil {
		return fmt.Errorf("park seq %d: %w", ev.Seq, err)
	}
	return nil
}

// Held is one stored message of a parked conversation.
type Held struct {
	// Seq is its sequence in RelayHeldStream.
	Seq uint64
	// Park is the parking it belongs to.
	Park string
	// Event is the original event: its subject, headers, body, stream
	// sequence and id, with the attempts made before it was parked as
	// Deliveries.
	Event *processors.Event
}

// Next returns the first stored message of c after Released, and removes
// the ones before it that a release settled or that an earlier parking
// left. It returns nil when there is none.
func (s *Store) Next(ctx context.Context, c *Conversation) (*Held, error) {
	sc, err := processors.Scan{Stream: s.subjects.RelayHeldStream(), Filter: s.subjects.RelayHeld(c.ID)}.Open(ctx, s.js)
	if err != nil {
		return nil, fmt.Errorf("parked messages of %s: %w", c.ID, err)
	}
	for {
		m, err := sc.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parked messages of %s: %w", c.ID, err)
		}
		h := s.heldOf(m)
		if h.Park == c.Park && h.Event.Seq > c.Released {
			return h, nil
		}
		if err := s.Remove(ctx, h); err != nil {
			return nil, err
		}
	}
}

// heldOf reads a stored message back.
func (s *Store) heldOf(m *jetstream.RawStreamMsg) *Held {
	hd := m.Header
	ev := &processors.Event{Subject: hd.Get(messages.HeaderHeldSubject), Body: m.Data, Header: make(nats.Header, len(hd))}
	ev.Seq, _ = strconv.ParseUint(hd.Get(messages.HeaderHeldSeq), 10, 64)
	ev.Deliveries, _ = strconv.ParseUint(hd.Get(messages.HeaderHeldDeliveries), 10, 64)
	for k, v := range hd {
		switch k {
		case messages.HeaderHeldSubject, messages.HeaderHeldSeq, messages.HeaderHeldPark, messages.HeaderHeldDeliveries, messages.HeaderHeldMaybeDone, nats.MsgIdHdr:
			continue
		}
		ev.Header[k] = v
	}
	ev.MaybeDone = hd.Get(messages.HeaderHeldMaybeDone) == "true"
	ev.ID = ev.Header.Get(messages.HeaderID)
	ev.Time = m.Time
	if t, err := time.Parse(time.RFC3339Nano, ev.Header.Get(messages.HeaderTime)); err == nil {
		ev.Time = t
	}
	return &Held{Seq: m.Sequence, Park: hd.Get(messages.HeaderHeldPark), Event: ev}
}

// Remove deletes a stored message that was settled.
func (s *Store) Remove(ctx context.Context, h *Held) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	st, err := s.js.Stream(ctx, s.subjects.RelayHeldStream())
	if err != nil {
		return fmt.Errorf("stream %s: %w", s.subjects.RelayHeldStream(), err)
	}
	err = st.DeleteMsg(ctx, h.Seq)
	var api *jetstream.APIError
	if err != nil && !(errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeMessageNotFound) {
		return fmt.Errorf("remove parked message %d: %w", h.Seq, err)
	}
	return nil
}

// List returns the parked conversations, oldest first.
func (s *Store) List(ctx context.Context) ([]*Conversation, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, keyPrefix+">")
	if err != nil {
		return nil, fmt.Errorf("list parked conversations: %w", err)
	}
	var out []*Conversation
	for key := range lister.Keys() {
		c, err := s.Get(ctx, strings.TrimPrefix(key, keyPrefix))
		if err != nil {
			_ = lister.Stop()
			return nil, err
		}
		if c != nil {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out, nil
}

// Find returns the parked conversation whose id is or starts with id (at
// least 6 characters).
func (s *Store) Find(ctx context.Context, id string) (*Conversation, error) {
	id = strings.ToLower(id)
	if len(id) == 32 {
		c, err := s.Get(ctx, id)
		if err == nil && c == nil {
			err = fmt.Errorf("%w: %s", ErrNotParked, id)
		}
		return c, err
	}
	if len(id) < 6 {
		return nil, fmt.Errorf("%w: %q (give the id, or at least its first 6 characters)", ErrNotParked, id)
	}
	all, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	var found *Conversation
	for _, c := range all {
		if strings.HasPrefix(c.ID, id) {
			if found != nil {
				return nil, fmt.Errorf("%w: %s", ErrAmbiguous, id)
			}
			found = c
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotParked, id)
	}
	return found, nil
}

// Watch follows every change of the parked conversations: nil after the
// current ones, then each change; a deletion is an entry with no value.
func (s *Store) Watch(ctx context.Context) (jetstream.KeyWatcher, error) {
	return s.kv.Watch(ctx, keyPrefix+">")
}

// Decode reads a watched entry: nil for a deletion.
func Decode(e jetstream.KeyValueEntry) (*Conversation, error) {
	if e.Operation() != jetstream.KeyValuePut {
		return nil, nil
	}
	var c Conversation
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return nil, fmt.Errorf("parked conversation %s: %w", e.Key(), err)
	}
	c.rev = e.Revision()
	return &c, nil
}

// IDOf is the conversation id of a watched key.
func IDOf(key string) string { return strings.TrimPrefix(key, keyPrefix) }
