package processors

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages/jspub"
	"github.com/ccrelay/ccrelay/messages/provision"
)

// ErrBusy is returned by Ledger.Claim while another worker holds a fresh
// claim on the same work: the message is retried later.
var ErrBusy = errors.New("another worker is handling this event")

// ErrDone is returned by Ledger.Claim for work that completed before.
var ErrDone = errors.New("already done")

// Ledger remembers, per processor and dedup id, work that is running or
// done, in a JetStream KV bucket shared by every replica. Claims are
// refreshed while work runs; a claim not refreshed for staleAfter belongs to
// a worker that died and is taken over.
type Ledger struct {
	kv         jetstream.KeyValue
	staleAfter time.Duration
	now        func() time.Time
	// js and subjects write the two entries of every piece of work (the
	// claim and its completion) straight to the bucket's subjects, through
	// jspub: the KeyValue methods check each key against a regular
	// expression, a third of a claim's client CPU, and ledger keys are
	// made valid by construction (ledgerKey).
	js       jetstream.JetStream
	subjects string
}

type entry struct {
	State string `json:"state"` // "working" or "done"
	At    int64  `json:"at"`    // Unix nanoseconds of the claim or completion
}

// NewLedger binds to the bucket, creating or updating it as needed. Entries
// live for ttl.
func NewLedger(ctx context.Context, w provision.Waiter, js jetstream.JetStream, bucket string, ttl, staleAfter time.Duration, replicas int) (*Ledger, error) {
	kv, err := w.KeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "ccrelay: processor work in progress and done, by processor and dedup id",
		TTL:         ttl,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ledger %w", err)
	}
	return &Ledger{kv: kv, staleAfter: staleAfter, now: time.Now, js: js, subjects: "$KV." + bucket + "."}, nil
}

// Claim is a hold on one piece of work.
type Claim struct {
	l   *Ledger
	key string
	rev uint64
}

func ledgerKey(processor, id string) string {
	// Dedup ids are arbitrary text; KV keys are not.
	sum := sha256.Sum256([]byte(id))
	return processor + "." + hex.EncodeToString(sum[:16])
}

// Claim takes the work of processor on event id. It fails with ErrDone when
// the work completed before and ErrBusy while another worker holds it.
func (l *Ledger) Claim(ctx context.Context, processor, id string) (*Claim, error) {
	key := ledgerKey(processor, id)
	val, _ := json.Marshal(entry{State: "working", At: l.now().UnixNano()})
	// Most work is new: create the key as KeyValue.Create would (the
	// subject's last sequence must be 0), and take Create's way, which
	// also reuses a deleted key, only when that fails.
	m := &nats.Msg{Subject: l.subjects + key, Data: val, Header: nats.Header{jetstream.ExpectedLastSubjSeqHeader: []string{"0"}}}
	if ack, err := jspub.Publish(ctx, l.js.Conn(), m); err == nil {
		return &Claim{l: l, key: key, rev: ack.Sequence}, nil
	}
	rev, err := l.kv.Create(ctx, key, val)
	if err == nil {
		return &Claim{l: l, key: key, rev: rev}, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("claim %s: %w", key, err)
	}
	cur, err := l.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrBusy // released in between; the retry will get it
	}
	if err != nil {
		return nil, fmt.Errorf("claim %s: %w", key, err)
	}
	var e entry
	if json.Unmarshal(cur.Value(), &e) != nil {
		e = entry{}
	}
	switch {
	case e.State == "done":
		return nil, ErrDone
	case l.now().Sub(time.Unix(0, e.At)) < l.staleAfter:
		return nil, ErrBusy
	}
	// The holder stopped refreshing: it died. Take over, atomically.
	rev, err = l.kv.Update(ctx, key, val, cur.Revision())
	if err != nil {
		return nil, ErrBusy
	}
	return &Claim{l: l, key: key, rev: rev}, nil
}

// Refresh keeps the claim fresh while work runs.
func (c *Claim) Refresh(ctx context.Context) error {
	val, _ := json.Marshal(entry{State: "working", At: c.l.now().UnixNano()})
	rev, err := c.l.kv.Update(ctx, c.key, val, c.rev)
	if err != nil {
		return fmt.Errorf("refresh claim: %w", err)
	}
	c.rev = rev
	return nil
}

// Done records the work as completed.
func (c *Claim) Done(ctx context.Context) error {
	val, _ := json.Marshal(entry{State: "done", At: c.l.now().UnixNano()})
	if _, err := jspub.Publish(ctx, c.l.js.Conn(), &nats.Msg{Subject: c.l.subjects + c.key, Data: val}); err != nil {
		return fmt.Errorf("record done: %w", err)
	}
	return nil
}

// Release gives the work up, so a retry can claim it at once.
func (c *Claim) Release(ctx context.Context) error {
	if err := c.l.kv.Delete(ctx, c.key, jetstream.LastRevision(c.rev)); err != nil {
		return fmt.Errorf("release claim: %w", err)
	}
	return nil
}

// Forget removes what the ledger knows of processor's work on id, so that
// a forced replay runs it again.
func (l *Ledger) Forget(ctx context.Context, processor, id string) error {
	err := l.kv.Purge(ctx, ledgerKey(processor, id))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	return nil
}
