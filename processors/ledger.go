package processors

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/ccrelay/ccrelay/messages/jspub"
	"github.com/ccrelay/ccrelay/messages/provision"
)

// ErrBusy is returned by Ledger.Claim while another worker holds a fresh
// claim on the same work: the message is retried later.
var ErrBusy = errors.New("another worker is handling this event")

// ErrDone is returned by Ledger.Claim for work that completed before.
var ErrDone = errors.New("already done")

// ErrClaimLost is returned by Claim.Refresh and Claim.Confirm once another
// worker holds the claim (it found this one stale and took it over), or
// once this one may be found stale: the work is no longer this worker's,
// and a side effect it starts now may repeat the other's.
var ErrClaimLost = errors.New("the claim on this work was lost to another worker")

// Claim states, in a ledger entry.
const (
	stateWorking = "working" // claimed; no side effect started
	stateSending = "sending" // the side effect may have started
	stateDone    = "done"
)

// Ledger remembers, per processor and dedup id, work that is running or
// done, in a JetStream KV bucket shared by every replica. Claims are
// refreshed while work runs; a claim not refreshed for staleAfter belongs to
// a worker that died or hangs, and is taken over.
type Ledger struct {
	kv         jetstream.KeyValue
	staleAfter time.Duration
	// call bounds each request (CCRELAY_PROCESS_CALL_TIMEOUT).
	call time.Duration
	// sendingGrace is how much longer than staleAfter a claim that
	// confirmed its side effect is left to its worker (see HoldSending).
	sendingGrace time.Duration
	now          func() time.Time
	// js and subjects write the two entries of every piece of work (the
	// claim and its completion) straight to the bucket's subjects, through
	// jspub: the KeyValue methods check each key against a regular
	// expression, a third of a claim's client CPU, and ledger keys are
	// made valid by construction (ledgerKey).
	js       jetstream.JetStream
	subjects string
}

type entry struct {
	State string `json:"state"` // stateWorking, stateSending or stateDone
	At    int64  `json:"at"`    // Unix nanoseconds of the claim, its refresh or the completion
	// Owner is the claim's own token: a worker whose refresh was stored
	// but whose answer was lost finds its claim by it.
	Owner string `json:"owner,omitempty"`
}

// Work names the work a claim is for.
type Work struct {
	Processor, ID string
	// Sending stores the claim as sending (the side effect may start at
	// once): Confirm costs no write while the claim is young.
	Sending bool
}

// NewLedger binds to the bucket, creating or updating it as needed. Entries
// live for ttl. Each request is bounded by w.CallTimeout (5 s when unset).
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
	call := w.CallTimeout
	if call <= 0 {
		call = 5 * time.Second
	}
	return &Ledger{kv: provision.BoundKV(kv, call), staleAfter: staleAfter, call: call, now: time.Now, js: js, subjects: "$KV." + bucket + "."}, nil
}

// HoldSending leaves a claim whose worker confirmed its side effect
// (Claim.Confirm) to that worker for d more than other claims before it is
// taken over: d is how long a worker retries recording a completion
// (CCRELAY_PROCESS_RECORD_TIMEOUT), so a worker that sent and is waiting
// out a leader election records its work rather than see it redone. Only
// a worker that died (or was cut off for longer) has its work redone, and
// then with Claim.MaybeDone set.
func (l *Ledger) HoldSending(d time.Duration) { l.sendingGrace = d }

// Claim is a hold on one piece of work.
type Claim struct {
	l     *Ledger
	key   string
	owner string
	rev   uint64
	// at is when the claim was last stored: it is this worker's, fresh,
	// until at + staleAfter.
	at time.Time
	// TakenOver says that the claim was taken over from a worker that
	// stopped refreshing it.
	TakenOver bool
	// MaybeDone says that the claim was taken over from a worker that had
	// started the side effect (Confirm) and stopped before recording its
	// completion: the work may be done already.
	MaybeDone bool
	// mu serialises the heartbeat's refreshes with the handler's Confirm:
	// both write conditionally on rev.
	mu sync.Mutex
	// sending is set once Confirm stored (or the claim was stored as
	// sending): refreshes keep the state.
	sending bool
}

func ledgerKey(processor, id string) string {
	// Dedup ids are arbitrary text; KV keys are not.
	sum := sha256.Sum256([]byte(id))
	return processor + "." + hex.EncodeToString(sum[:16])
}

func (l *Ledger) value(state, owner string, at time.Time) []byte {
	val, _ := json.Marshal(entry{State: state, At: at.UnixNano(), Owner: owner})
	return val
}

// value is the entry of c in state, dated at.
func (c *Claim) value(state string, at time.Time) []byte {
	return c.l.value(state, c.owner, at)
}

// Claim takes the work of processor on event id (see ClaimWork).
func (l *Ledger) Claim(ctx context.Context, processor, id string) (*Claim, error) {
	return l.ClaimWork(ctx, Work{Processor: processor, ID: id})
}

// ClaimWork takes work w. It fails with ErrDone when the work completed
// before and ErrBusy while another worker holds it.
func (l *Ledger) ClaimWork(ctx context.Context, w Work) (*Claim, error) {
	key := ledgerKey(w.Processor, w.ID)
	owner := nuid.Next()
	at := l.now()
	state := stateWorking
	if w.Sending {
		state = stateSending
	}
	val := l.value(state, owner, at)
	claim := func(rev uint64, at time.Time) *Claim {
		return &Claim{l: l, key: key, owner: owner, rev: rev, at: at, sending: w.Sending}
	}
	// Most work is new: create the key as KeyValue.Create would (the
	// subject's last sequence must be 0), and take Create's way, which
	// also reuses a deleted key, only when that fails.
	m := &nats.Msg{Subject: l.subjects + key, Data: val, Header: nats.Header{jetstream.ExpectedLastSubjSeqHeader: []string{"0"}}}
	pctx, cancel := provision.Bounded(ctx, l.call)
	ack, err := jspub.Publish(pctx, l.js.Conn(), m)
	cancel()
	if err == nil {
		return claim(ack.Sequence, at), nil
	}
	rev, err := l.kv.Create(ctx, key, val)
	if err == nil {
		return claim(rev, at), nil
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
	case e.State == stateDone:
		return nil, ErrDone
	case e.State == stateSending && l.now().Sub(time.Unix(0, e.At)) < l.staleAfter+l.sendingGrace:
		// Its worker may have done the side effect and still be trying
		// to record it: a redo now would repeat it.
		return nil, ErrBusy
	case l.now().Sub(time.Unix(0, e.At)) < l.staleAfter:
		return nil, ErrBusy
	}
	// The holder stopped refreshing: it died, or hangs. Take over,
	// atomically; a holder that comes back finds its claim gone
	// (ErrClaimLost) before it starts a side effect.
	at = l.now()
	rev, err = l.kv.Update(ctx, key, l.value(state, owner, at), cur.Revision())
	if err != nil {
		return nil, ErrBusy
	}
	c := claim(rev, at)
	c.TakenOver, c.MaybeDone = true, e.State == stateSending
	return c, nil
}

// Refresh keeps the claim fresh while work runs. It fails with
// ErrClaimLost once another worker took the claim over.
func (c *Claim) Refresh(ctx context.Context) error { return c.store(ctx, "") }

// fresh reports whether the claim will be fresh for at least margin more.
func (c *Claim) fresh(margin time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.l.now().Add(margin).Sub(c.at) < c.l.staleAfter
}

// Confirm checks, right before a side effect, that the claim is still
// this worker's and will stay fresh for a while, and marks it as sending:
// a worker taking it over later knows the side effect may have happened
// (Claim.MaybeDone). It fails with ErrClaimLost when the claim is gone or
// about to go stale: a worker that was paused past its claim's life must
// not act on it.
func (c *Claim) Confirm(ctx context.Context) error {
	// A claim stored as sending (Work.Sending) and young needs no write:
	// nobody takes it over before staleAfter and the sending grace have
	// passed since it was stored, and the send ends (or the heartbeat
	// refreshes it) well before.
	if c.sendingAndFresh() {
		return nil
	}
	// The write is conditional on the revision this worker last stored: a
	// worker that took the claim over changed it, so a stored Confirm
	// proves the claim is still this one's, and fresh for staleAfter.
	return c.store(ctx, stateSending)
}

func (c *Claim) sendingAndFresh() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sending && c.l.now().Add(c.l.staleAfter/3).Sub(c.at) < c.l.staleAfter
}

// store writes the claim's entry in state ("" keeps the current one), if
// the claim is still this worker's.
func (c *Claim) store(ctx context.Context, state string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if state == "" {
		state = stateWorking
		if c.sending {
			state = stateSending
		}
	}
	at := c.l.now()
	rev, err := c.l.kv.Update(ctx, c.key, c.value(state, at), c.rev)
	if errors.Is(err, jetstream.ErrKeyExists) {
		// Not the revision this worker last stored: either another worker
		// took the claim over, or this worker's last write was stored and
		// its answer lost. The owner token tells.
		cur, gerr := c.l.kv.Get(ctx, c.key)
		if gerr != nil {
			return fmt.Errorf("refresh claim: %w", gerr)
		}
		var e entry
		if json.Unmarshal(cur.Value(), &e) != nil || e.Owner != c.owner || e.State == stateDone {
			return ErrClaimLost
		}
		rev, err = c.l.kv.Update(ctx, c.key, c.value(state, at), cur.Revision())
		if errors.Is(err, jetstream.ErrKeyExists) {
			return ErrClaimLost
		}
	}
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ErrClaimLost
	}
	if err != nil {
		return fmt.Errorf("refresh claim: %w", err)
	}
	c.rev, c.at = rev, at
	if state == stateSending {
		c.sending = true
	}
	return nil
}

// Done records the work as completed. It retries, each attempt bounded by
// the call timeout, until the record is stored or ctx ends: work done and
// not recorded would be done again by whoever takes it over.
func (c *Claim) Done(ctx context.Context) error {
	val := c.value(stateDone, c.l.now())
	err := c.l.retry(ctx, func(ctx context.Context) error {
		_, err := jspub.Publish(ctx, c.l.js.Conn(), &nats.Msg{Subject: c.l.subjects + c.key, Data: val})
		return err
	})
	if err != nil {
		return fmt.Errorf("record done: %w", err)
	}
	return nil
}

// Release gives the work up, so a retry can claim it at once. It retries
// as Done does; a claim another worker took over is left to it.
func (c *Claim) Release(ctx context.Context) error {
	err := c.l.retry(ctx, func(ctx context.Context) error {
		err := c.l.kv.Delete(ctx, c.key, jetstream.LastRevision(c.rev))
		var api *jetstream.APIError
		if errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return nil // not this worker's any more: nothing to give up
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("release claim: %w", err)
	}
	return nil
}

// Abandon gives the work up without clearing its claim: the entry keeps
// its state and is dated so that any worker takes it over at once, told,
// if the claim confirmed a side effect (Confirm), that the work may be
// done (Claim.MaybeDone). For work that stopped mid-way: a claim this
// worker may have lost, or a side effect whose outcome it does not know.
// A claim another worker holds is left to it.
func (c *Claim) Abandon(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	state := stateWorking
	if c.sending || c.MaybeDone {
		// MaybeDone: the worker this one took the claim over from may
		// have done the work; the next must be told as well.
		state = stateSending
	}
	val := c.value(state, time.Unix(0, 0))
	err := c.l.retry(ctx, func(ctx context.Context) error {
		_, err := c.l.kv.Update(ctx, c.key, val, c.rev)
		if errors.Is(err, jetstream.ErrKeyExists) {
			// Not the revision this worker last stored: another worker
			// took the claim over, or this worker's last refresh was
			// stored and its answer lost (the heartbeat stopped mid-way).
			// The owner token tells.
			cur, gerr := c.l.kv.Get(ctx, c.key)
			if errors.Is(gerr, jetstream.ErrKeyNotFound) {
				return nil
			}
			if gerr != nil {
				return gerr
			}
			var e entry
			if json.Unmarshal(cur.Value(), &e) != nil || e.Owner != c.owner || e.State == stateDone {
				return nil // not this worker's any more
			}
			_, err = c.l.kv.Update(ctx, c.key, val, cur.Revision())
			if errors.Is(err, jetstream.ErrKeyExists) {
				return nil // taken over in between
			}
		}
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil // not this worker's any more
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("abandon claim: %w", err)
	}
	return nil
}

// retry runs f, bounded by the call timeout, until it succeeds or ctx
// ends, with a backoff from 100 ms to 2 s: a leader election takes a few
// seconds, and a request sent into it is lost.
func (l *Ledger) retry(ctx context.Context, f func(context.Context) error) error {
	return retryCall(ctx, l.call, f)
}

// retryCall runs f, each attempt bounded by call, until it succeeds or ctx
// ends, with a backoff from 100 ms to 2 s.
func retryCall(ctx context.Context, call time.Duration, f func(context.Context) error) error {
	wait := 100 * time.Millisecond
	for {
		cctx, cancel := provision.Bounded(ctx, call)
		err := f(cctx)
		cancel()
		if err == nil {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
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

// LedgerEntry is what the ledger holds of one piece of work, for
// 'ccrelay trace'.
type LedgerEntry struct {
	// State is "working" (claimed), "sending" (the side effect may have
	// started), "done", or "released": the claim was given up, because
	// the work was ignored or failed (then retried or dead-lettered).
	State string
	// At is when the claim was stored, refreshed, completed or released.
	At time.Time
	// Owner is the claim's token, for a claim held now.
	Owner string
}

// LedgerReader reads ledger entries without provisioning the bucket: an
// operator's read must change nothing.
type LedgerReader struct {
	js     jetstream.JetStream
	bucket string
	wait   provision.Waiter
}

// NewLedgerReader reads bucket through js; w retries each read.
func NewLedgerReader(js jetstream.JetStream, bucket string, w provision.Waiter) *LedgerReader {
	return &LedgerReader{js: js, bucket: bucket, wait: w}
}

// Lookup returns processor's entry of event id; ok is false when the
// ledger holds none (never claimed, expired, or the processor keeps no
// ledger). A released claim is seen by its delete marker, the bucket's
// last message of the key (History 1 keeps it).
func (r *LedgerReader) Lookup(ctx context.Context, processor, id string) (e LedgerEntry, ok bool, err error) {
	sc := Scan{Stream: "KV_" + r.bucket, Wait: r.wait}
	subject := "$KV." + r.bucket + "." + ledgerKey(processor, id)
	m, err := sc.scanner(r.js).get(ctx, msgGetRequest{LastFor: subject})
	if notFound(err) {
		return e, false, nil
	}
	if err != nil {
		return e, false, fmt.Errorf("ledger entry of %s: %w", processor, err)
	}
	if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		return LedgerEntry{State: "released", At: m.Time}, true, nil
	}
	var v entry
	if err := json.Unmarshal(m.Data, &v); err != nil {
		return e, false, fmt.Errorf("ledger entry of %s: %w", processor, err)
	}
	return LedgerEntry{State: v.State, At: time.Unix(0, v.At), Owner: v.Owner}, true, nil
}
