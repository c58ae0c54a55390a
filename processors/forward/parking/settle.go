package parking

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ccrelay/ccrelay/processors"
)

// LeaseTTL is how long the one releasing or dropping a conversation holds
// it without a word: every step renews it, and once it lapses (the holder
// died) another may take over where the holder stopped.
const LeaseTTL = time.Minute

// ErrRetry is returned by a settle function to be called again with the
// same message: the lease is renewed in between.
var ErrRetry = errors.New("try the message again")

// ErrLost is returned by Settle when the conversation is no longer the
// caller's: taken back, parked again, or taken over by another.
var ErrLost = errors.New("the parked conversation is no longer ours")

// Repark is returned by a settle function when the message cannot be
// delivered within the bound: the conversation is parked again, with the
// reason.
type Repark struct {
	Reason, Cause string
}

func (r *Repark) Error() string { return "parked again: " + r.Reason }

// RequestRelease marks the parked conversation id (or a prefix of it) for
// release: a relay replica delivers its messages in order, then takes it
// back. A conversation already being released is left as it is.
func (s *Store) RequestRelease(ctx context.Context, id string) (*Conversation, error) {
	c, err := s.Find(ctx, id)
	if err != nil {
		return nil, err
	}
	for {
		switch c.State {
		case Releasing:
			return c, nil
		case Dropping:
			return c, fmt.Errorf("conversation %s is being dropped (by %s); run drop again to finish it", c.ID, c.Owner)
		}
		c.State, c.Owner, c.Lease = Releasing, "", time.Time{}
		err := s.Update(ctx, c)
		if !errors.Is(err, ErrConflict) {
			return c, err
		}
		if c, err = s.Get(ctx, c.ID); err != nil {
			return nil, err
		}
		if c == nil {
			return nil, fmt.Errorf("%w: %s (taken back meanwhile)", ErrNotParked, id)
		}
	}
}

// Acquire makes owner the one who releases (state Releasing) or drops
// (state Dropping) c, if nobody else holds it. It fails with ErrLost when
// c is in another state or held by another whose lease runs.
func (s *Store) Acquire(ctx context.Context, c *Conversation, state, owner string) error {
	for {
		switch {
		case state == Releasing && c.State != Releasing,
			state == Dropping && c.State == Releasing && c.Owner != "" && time.Now().Before(c.Lease):
			return fmt.Errorf("%w: it is %s (by %q)", ErrLost, c.State, c.Owner)
		case c.Owner != "" && c.Owner != owner && time.Now().Before(c.Lease):
			return fmt.Errorf("%w: %s holds it until %s", ErrLost, c.Owner, c.Lease.Format(time.RFC3339))
		}
		c.State, c.Owner, c.Lease = state, owner, time.Now().Add(LeaseTTL).UTC()
		err := s.Update(ctx, c)
		if !errors.Is(err, ErrConflict) {
			return err
		}
		cur, err := s.Get(ctx, c.ID)
		if err != nil {
			return err
		}
		if cur == nil {
			return fmt.Errorf("%w: taken back meanwhile", ErrLost)
		}
		*c = *cur
	}
}

// Settle runs the release or drop of c that owner acquired: it hands
// every stored message, in order, to settle, records each settled, and
// takes the conversation back once all that was parked is settled,
// including what was parked meanwhile. settle returns nil once the
// message is delivered or dead-lettered, ErrRetry (wrapped) to be called
// again, or a *Repark; any other error stops Settle, the conversation
// staying as it is for another attempt.
func (s *Store) Settle(ctx context.Context, c *Conversation, owner string, settle func(context.Context, *Held) error) error {
	state := c.State
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := s.Next(ctx, c)
		if err != nil {
			return err
		}
		if h == nil {
			if c.Released >= c.Last {
				err := s.Unpark(ctx, c)
				if !errors.Is(err, ErrConflict) {
					return err
				}
			} else {
				// Whoever raised Last is storing the message: wait
				// for it (a replica that died before storing it has
				// it redelivered, and stores it then).
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(25 * time.Millisecond):
				}
			}
			if err := s.change(ctx, c, state, owner, func(*Conversation) {}); err != nil {
				return err
			}
			continue
		}
		err = settle(ctx, h)
		var rp *Repark
		switch {
		case err == nil:
			if err := s.change(ctx, c, state, owner, func(c *Conversation) {
				c.Released, c.Settled = h.Event.Seq, c.Settled+1
			}); err != nil {
				return err
			}
			if err := s.Remove(ctx, h); err != nil {
				return err
			}
		case errors.Is(err, ErrRetry):
			if err := s.change(ctx, c, state, owner, func(*Conversation) {}); err != nil {
				return err
			}
		case errors.As(err, &rp):
			if err := s.change(ctx, c, state, owner, func(c *Conversation) {
				c.State, c.Reason, c.Cause, c.Head = Parked, rp.Reason, rp.Cause, h.Event.ID
				c.Since, c.Owner, c.Lease = time.Now().UTC(), "", time.Time{}
			}); err != nil {
				return err
			}
			return rp
		default:
			return err
		}
	}
}

// change applies f to c and stores it, renewing owner's lease, re-reading
// c as often as another (a replica parking a message behind it) changed
// it first. It fails with ErrLost when c is no longer in state and
// owner's.
func (s *Store) change(ctx context.Context, c *Conversation, state, owner string, f func(*Conversation)) error {
	for {
		if c.State != state || c.Owner != owner {
			return fmt.Errorf("%w: it is %s by %q", ErrLost, c.State, c.Owner)
		}
		next := *c
		f(&next)
		if next.Owner != "" {
			next.Lease = time.Now().Add(LeaseTTL).UTC()
		}
		err := s.Update(ctx, &next)
		if err == nil {
			*c = next
			return nil
		}
		if !errors.Is(err, ErrConflict) {
			return err
		}
		cur, err := s.Get(ctx, c.ID)
		if err != nil {
			return err
		}
		if cur == nil {
			return fmt.Errorf("%w: taken back meanwhile", ErrLost)
		}
		*c = *cur
	}
}

// Drop dead-letters the messages of the parked conversation id (or a
// prefix of it), in order, as processor's, including what is parked
// meanwhile, then takes the conversation back: 'ccrelay dlq requeue'
// brings them back. It returns the conversation and how many it
// dead-lettered.
func (s *Store) Drop(ctx context.Context, id, owner, processor string, dlq *processors.DeadLetters) (*Conversation, int, error) {
	c, err := s.Find(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	if err := s.Acquire(ctx, c, Dropping, owner); err != nil {
		return c, 0, err
	}
	why := fmt.Errorf("dropped by an operator; parked because %s", c.Reason)
	n := 0
	err = s.Settle(ctx, c, owner, func(ctx context.Context, h *Held) error {
		if _, err := dlq.Send(ctx, processor, h.Event, why); err != nil {
			return err
		}
		n++
		return nil
	})
	return c, n, err
}

// Await waits until the release of conversation id ends: it returns nil
// once the conversation is taken back, the conversation when it is parked
// again (its Reason says why), and ctx's error, with the conversation as
// it last was, when ctx ends first.
func (s *Store) Await(ctx context.Context, id string, every time.Duration) (*Conversation, error) {
	var last *Conversation
	for {
		c, err := s.Get(ctx, id)
		switch {
		case err != nil && ctx.Err() != nil:
			return last, ctx.Err()
		case err != nil:
			return last, err
		case c == nil:
			return nil, nil
		case c.State == Parked:
			return c, nil
		}
		last = c
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(every):
		}
	}
}
