package forward

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/forward/parking"
	"github.com/ccrelay/ccrelay/sinks/retry"
)

// conversation names ev's conversation: its destination and the
// conversation key ingest derived its partition token from. A body that
// does not give that key back (published by hand under a subject of its
// own choosing) stands for the whole partition token of its destination:
// its subject is all that says where it stands in order.
func (p *Processor) conversation(r route, ev *processors.Event) *parking.Conversation {
	key, ok := p.env.Subjects.Conversation(r.addr, ev.Body)
	if !ok {
		key = "partition:" + r.addr.Partition
	}
	return &parking.Conversation{ID: messages.ConversationID(r.key, key), Destination: r.key, Partition: r.addr.Partition}
}

// parkBehind parks ev, without an attempt, when its conversation is
// parked. It returns nil when it is not (ev is delivered), an error
// wrapping ErrIgnored when ev was parked, and any other error when it
// could not tell or could not park it (ev is retried).
func (p *Processor) parkBehind(ctx context.Context, conv *parking.Conversation, ev *processors.Event) error {
	c, err := p.store.Get(ctx, conv.ID)
	if err != nil {
		return fmt.Errorf("read whether conversation %s is parked: %w", conv.ID, err)
	}
	if c == nil {
		return nil
	}
	err = p.store.Behind(ctx, c, ev)
	if errors.Is(err, parking.ErrNotParked) {
		return nil // released meanwhile: everything parked is settled
	}
	if err != nil {
		return fmt.Errorf("park behind conversation %s: %w", conv.ID, err)
	}
	p.logger.Info("parked behind its conversation", "destination", c.Destination, "conversation", c.ID, "dedup_id", ev.ID, "seq", ev.Seq, "reason", c.Reason, "state", c.State)
	// Ignored: the runtime acknowledges it, and records no work done.
	return processors.Ignored("its conversation " + c.ID + " is parked: " + c.Reason)
}

// maybePark parks conv with ev, its head, which failed with cause, when
// ev has reached its destination's bound and the destination answers:
// the runtime then acknowledges ev as ignored, and the group goes on. A
// destination that does not answer (Contact Pro down, the external user
// refused) fails every conversation alike: parking them all would only
// set them aside, so they wait, and the alert says why.
//
// "Answers" must hold on both sides of the failed attempt: a probe after
// the attempt alone cannot tell a message Contact Pro refuses from one
// it refused while down, seconds before it came back. So the destination
// is also probed after the failure before the bound (the attempt that
// reaches it then started with the destination answering), and a head
// whose destination has just come back gets one more attempt.
func (p *Processor) maybePark(ctx context.Context, r route, dest *url.URL, conv *parking.Conversation, ev *processors.Event, cause error) error {
	b := p.cfg.ParkBound(r.key)
	if b.Never() {
		return cause
	}
	now := time.Now()
	first, failures := p.heads.failed(r, ev, now)
	limit, over := b.exceeded(failures, first, now)
	_, next := b.exceeded(failures+1, first, now.Add(backoffOf(p.cfg.Backoff, int(min(failures, 1<<20)))))
	if !over && !next {
		return cause
	}
	why := p.answers(ctx, r.key, dest)
	steady := p.heads.probed(r, ev, why == "")
	switch {
	case !over:
		return cause
	case why != "":
		p.logger.Warn("not parking: the destination does not answer, so every conversation waits", "destination", r.key, "conversation", conv.ID,
			"dedup_id", ev.ID, "seq", ev.Seq, "deliveries", ev.Deliveries, "probe", why)
		return cause
	case !steady:
		p.logger.Info("not parking yet: the destination answers again, so the head gets one more attempt", "destination", r.key, "conversation", conv.ID,
			"dedup_id", ev.ID, "seq", ev.Seq, "deliveries", ev.Deliveries)
		return cause
	}
	conv.Cause = limit
	conv.Reason = fmt.Sprintf("%d attempts over %s failed (bound %s); the last: %v", failures, now.Sub(first).Round(time.Millisecond), b, cause)
	err := p.store.Park(ctx, conv, ev)
	if errors.Is(err, parking.ErrConflict) {
		// Parked meanwhile (by a redelivery elsewhere): behind it.
		if err := p.parkBehind(ctx, conv, ev); err != nil {
			return err
		}
		return cause
	}
	if err != nil {
		p.logger.Error("could not park; retrying the message", "destination", r.key, "conversation", conv.ID, "dedup_id", ev.ID, "error", err)
		return fmt.Errorf("%w (and parking its conversation failed: %w)", cause, err)
	}
	p.heads.settled(r, ev)
	p.metrics.parks.WithLabelValues(r.key, limit).Inc()
	p.logger.Warn("conversation parked", "destination", r.key, "conversation", conv.ID, "dedup_id", ev.ID, "seq", ev.Seq, "reason", conv.Reason, "cause", limit)
	return processors.Ignored("its conversation " + conv.ID + " is parked: " + conv.Reason)
}

// answers asks destination key whether it answers (a HEAD, as 'ccrelay
// check' sends): "" when it does, else why not.
func (p *Processor) answers(ctx context.Context, key string, dest *url.URL) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, dest.String(), nil)
	if err != nil {
		return err.Error()
	}
	if user, pass, ok := p.cfg.BasicUsers.UserPassword(key); ok {
		req.SetBasicAuth(user, pass.Reveal())
	}
	res, err := p.client.Do(req)
	if err != nil {
		return err.Error()
	}
	_ = res.Body.Close()
	if retry.TransientStatus(res.StatusCode) || configuration(res.StatusCode) {
		return "HEAD answered " + strconv.Itoa(res.StatusCode)
	}
	return ""
}

// heads remembers when the message at the head of each destination's
// partition token first failed on this replica, for the age bound:
// JetStream keeps how often a message was delivered, not since when. One
// entry per token at most. A head another replica tried first is dated
// from its first failure here.
type heads struct {
	mu sync.Mutex
	m  map[string]head
}

type head struct {
	seq      uint64
	first    time.Time
	failures uint64
	// answered: the destination answered the probe after the head's
	// last failure.
	answered bool
}

// failed counts a failure of ev and returns when it first failed and how
// often it failed, on this replica. JetStream's delivery count is not the
// attempts: a redelivery refused because another worker's claim had not
// yet gone stale counts there too, and a replica that died mid-send made
// dozens of them.
func (h *heads) failed(r route, ev *processors.Event, now time.Time) (time.Time, uint64) {
	return h.first(r.key, r.addr.Partition, ev.Seq, now)
}

func (h *heads) first(key, partition string, seq uint64, now time.Time) (time.Time, uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := key + "/" + partition
	cur, ok := h.m[k]
	if !ok || cur.seq != seq {
		cur = head{seq: seq, first: now}
	}
	cur.failures++
	h.m[k] = cur
	return cur.first, cur.failures
}

// probed records whether the destination answered the probe after ev's
// latest failure, and reports whether it also answered the one after the
// failure before: the attempt in between started with the destination
// answering, and failed anyway.
func (h *heads) probed(r route, ev *processors.Event, answered bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := r.key + "/" + r.addr.Partition
	cur, ok := h.m[k]
	if !ok || cur.seq != ev.Seq {
		return false
	}
	before := cur.answered
	cur.answered = answered
	h.m[k] = cur
	return before && answered
}

// settled forgets ev's group's head.
func (h *heads) settled(r route, ev *processors.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := r.key + "/" + r.addr.Partition
	if cur, ok := h.m[k]; ok && cur.seq == ev.Seq {
		delete(h.m, k)
	}
}

// watched is the relay's view of its parked conversations, kept by
// watching its bucket.
type watched struct {
	mu sync.Mutex
	m  map[string]*parking.Conversation
	// releasing are the conversations this replica is releasing now.
	releasing map[string]bool
}

func (w *watched) set(id string, c *parking.Conversation) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c == nil {
		delete(w.m, id)
		return
	}
	w.m[id] = c
}

func (w *watched) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.m)
}

// snapshot returns the parked conversations.
func (w *watched) snapshot() []*parking.Conversation {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*parking.Conversation, 0, len(w.m))
	for _, c := range w.m {
		out = append(out, c)
	}
	return out
}

// start reports whether this replica should start releasing id: no
// release of it runs here.
func (w *watched) start(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.releasing == nil {
		w.releasing = map[string]bool{}
	}
	if w.releasing[id] {
		return false
	}
	w.releasing[id] = true
	return true
}

func (w *watched) stopped(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.releasing, id)
}

// releases runs until ctx ends: it watches the parked conversations and
// releases those an operator released and nobody else is releasing. Every
// replica runs it; the lease in the conversation's entry makes one of
// them deliver, and another take over if that one stops.
func (p *Processor) releases(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(parking.LeaseTTL / 4)
	defer tick.Stop()
	for ctx.Err() == nil {
		w, err := p.store.Watch(ctx)
		if err != nil {
			p.logger.Warn("cannot watch the parked conversations; retrying", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
			continue
		}
		// A new watch starts with every conversation parked now: what
		// was taken back while the last one was down must not linger.
		p.parked.reset()
		p.watch(ctx, w.Updates(), tick.C, &wg)
		_ = w.Stop()
	}
	return nil
}

// watch follows updates until ctx ends or the watch does.
func (p *Processor) watch(ctx context.Context, updates <-chan jetstream.KeyValueEntry, tick <-chan time.Time, wg *sync.WaitGroup) {
	release := func(c *parking.Conversation) {
		if c.State != parking.Releasing || c.Owner != "" && c.Owner != p.owner && time.Now().Before(c.Lease) {
			return
		}
		if _, ok := p.cfg.URLs[c.Destination]; !ok || !p.parked.start(c.ID) {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer p.parked.stopped(c.ID)
			p.release(ctx, c.ID)
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-updates:
			if !ok {
				return
			}
			if e == nil {
				continue // the current ones are in
			}
			c, err := parking.Decode(e)
			if err != nil {
				p.logger.Warn("unreadable parked conversation", "error", err)
				continue
			}
			p.parked.set(parking.IDOf(e.Key()), c)
			if c != nil {
				release(c)
			}
		case <-tick:
			// A replica that was releasing may have stopped: its lease
			// lapses, and another takes over.
			for _, c := range p.parked.snapshot() {
				release(c)
			}
		}
	}
}

// release delivers the messages of parked conversation id in order, if
// this replica gets to, then takes it back.
func (p *Processor) release(ctx context.Context, id string) {
	c, err := p.store.Get(ctx, id)
	if err != nil || c == nil {
		return
	}
	if err := p.store.Acquire(ctx, c, parking.Releasing, p.owner); err != nil {
		return // another replica releases it, or it changed
	}
	log := p.logger.With("destination", c.Destination, "conversation", c.ID)
	log.Info("releasing a parked conversation", "messages", c.Waiting())
	var (
		tries int
		seq   uint64
		first time.Time
		sent  int
	)
	err = p.store.Settle(ctx, c, p.owner, func(ctx context.Context, h *parking.Held) error {
		if h.Event.Seq != seq {
			seq, tries, first = h.Event.Seq, 0, time.Time{}
		}
		tries++
		err := p.deliverHeld(ctx, h.Event)
		if err == nil {
			sent++
			return nil
		}
		if first.IsZero() {
			first = time.Now()
		}
		var rp *parking.Repark
		if errors.As(err, &rp) {
			return err
		}
		ev := h.Event
		b := p.cfg.ParkBound(c.Destination)
		if limit, over := b.exceeded(uint64(tries), first, time.Now()); over && !b.Never() { // #nosec G115 -- tries counts up from 1
			if why := p.answers(ctx, c.Destination, p.cfg.URLs[c.Destination]); why == "" {
				p.metrics.parks.WithLabelValues(c.Destination, limit).Inc()
				return &parking.Repark{Cause: limit, Reason: fmt.Sprintf("released, then %d attempts over %s failed (bound %s); the last: %v", tries, time.Since(first).Round(time.Millisecond), b, err)}
			}
		}
		wait := min(backoffOf(p.cfg.Backoff, tries), parking.LeaseTTL/3)
		log.Warn("releasing: delivery failed; will retry", "dedup_id", ev.ID, "seq", ev.Seq, "attempts", tries, "retry_in", wait.String(), "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		return fmt.Errorf("%w: %w", parking.ErrRetry, err)
	})
	var rp *parking.Repark
	switch {
	case err == nil:
		log.Info("conversation released", "delivered", sent)
	case errors.As(err, &rp):
		log.Warn("conversation parked", "reason", rp.Reason, "cause", rp.Cause, "dedup_id", c.Head)
	case errors.Is(err, parking.ErrLost), ctx.Err() != nil:
		log.Info("release stopped", "why", err)
	default:
		log.Warn("release stopped; it is taken up again", "error", err)
	}
}

// deliverHeld makes one delivery of a parked message, as the runtime
// would: the ledger skips one delivered before and keeps a redelivery of
// the original out while it runs; an answer that cannot succeed
// dead-letters it. It returns nil once it is settled, the failure when it
// is to be retried, and a *parking.Repark when it cannot go anywhere.
func (p *Processor) deliverHeld(ctx context.Context, ev *processors.Event) error {
	if ev.ID == "" {
		id, err := p.env.Subjects.EventID(ev.Subject, ev.Header, ev.Body)
		if err != nil {
			return p.deadLetter(ctx, ev, processors.Permanent(err))
		}
		ev.ID = id
	}
	r, err := p.destination(ev)
	if err == nil {
		err = r.check(ev)
	}
	if err != nil {
		return p.deadLetter(ctx, ev, processors.Permanent(err))
	}
	dest, ok := p.cfg.URLs[r.key]
	if !ok {
		return &parking.Repark{Cause: "unconfigured", Reason: "no forward destination for " + r.key}
	}
	// The same record of work as the runtime's deliveries, with the same
	// rules: confirmed right before the send, a takeover after a confirm
	// marked, completion recorded through an election, and a send whose
	// outcome is unknown left marked for the retry.
	var claim *processors.Claim
	if l := p.env.Ledger; l != nil {
		claim, err = l.Claim(ctx, Name, ev.ID)
		switch {
		case errors.Is(err, processors.ErrDone):
			return nil
		case err != nil:
			return err
		}
		ev.MaybeDone = ev.MaybeDone || claim.MaybeDone
		if err := claim.Confirm(ctx); err != nil {
			return err
		}
	}
	err = p.send(ctx, r, dest, ev)
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cmp.Or(p.env.RecordTimeout, 30*time.Second))
	defer cancel()
	switch {
	case err == nil:
		if claim != nil {
			if derr := claim.Done(lctx); derr != nil {
				p.logger.Error("could not record completed work; its retry is marked as a possible repeat", "dedup_id", ev.ID, "error", derr)
				_ = claim.Abandon(lctx)
				return fmt.Errorf("completed, but %w", derr)
			}
		}
		return nil
	case claim != nil && errors.Is(err, processors.ErrMaybeDone):
		_ = claim.Abandon(lctx)
	case claim != nil:
		_ = claim.Release(lctx)
	}
	if errors.Is(err, processors.ErrPermanent) {
		return p.deadLetter(ctx, ev, err)
	}
	return err
}

// deadLetter stores ev as a dead letter of the relay; nil once stored.
func (p *Processor) deadLetter(ctx context.Context, ev *processors.Event, cause error) error {
	if _, err := processors.NewDeadLetters(p.env.JS, p.env.Subjects).Send(ctx, Name, ev, cause); err != nil {
		return fmt.Errorf("%w (and %w)", cause, err)
	}
	p.logger.Error("dead-lettered", "dedup_id", ev.ID, "seq", ev.Seq, "subject", ev.Subject, "error", cause)
	return nil
}

// backoffOf is the wait after attempt n (from 1); the last step repeats.
func backoffOf(steps []time.Duration, n int) time.Duration {
	return steps[min(max(n, 1), len(steps))-1]
}
