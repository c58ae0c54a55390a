package parking_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/forward/parking"
	"github.com/ccrelay/ccrelay/test/natstest"
)

func store(t *testing.T) (*parking.Store, *processors.DeadLetters) {
	t.Helper()
	ns := natstest.Embedded(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	s := messages.DefaultSubjects()
	ctx := context.Background()
	if err := messages.EnsureStreams(ctx, provision.Waiter{}, js, messages.StreamConfig{Subjects: s, Replicas: 1, MaxAge: time.Hour, DedupWindow: time.Minute, MaxBytes: -1, DLQMaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	st, err := parking.Provision(ctx, provision.Waiter{}, js, parking.Config{Subjects: s, Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	return st, processors.NewDeadLetters(js, s)
}

func event(conv string, seq uint64) *processors.Event {
	id := fmt.Sprintf("messaging:wavy:br:%s-%d", conv, seq)
	return &processors.Event{Subject: "ccrelay.in.messaging.wavy.br.00", ID: id, Header: nats.Header{messages.HeaderID: {id}}, Body: []byte(id), Seq: seq, Deliveries: 1}
}

// TestReleaseWhileMessagesArrive: while the messages of a parked
// conversation keep arriving (a serial consumer parks each behind it, or
// delivers it once the conversation is back), an operator releases it and
// two replicas race to deliver: every message is delivered exactly once,
// in order, whatever the interleaving, and nothing is left parked. Run for
// many conversations at once, with random pauses, to shake the
// interleavings out.
func TestReleaseWhileMessagesArrive(t *testing.T) {
	st, _ := store(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const conversations, perConversation = 12, 40
	var wg sync.WaitGroup
	for n := range conversations {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := raceOne(ctx, st, fmt.Sprintf("%032x", n+1), perConversation); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	left, err := st.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("%d conversations still parked", len(left))
	}
}

func raceOne(ctx context.Context, st *parking.Store, id string, n int) error {
	var (
		mu        sync.Mutex
		delivered []uint64
		how       []string
	)
	deliver := func(seq uint64, by string) {
		mu.Lock()
		defer mu.Unlock()
		delivered, how = append(delivered, seq), append(how, by)
	}
	// Messages arrive slower than the release delivers them, so it
	// catches up, takes the conversation back, and the rest are
	// delivered as any other: the interleavings at that moment are the
	// ones that could strand or reorder a message.
	pause := func(upTo time.Duration) { time.Sleep(rand.N(upTo)) }
	// Each conversation at its own pace, some close to the release's.
	arrivals := time.Duration(1+rand.IntN(20)) * time.Millisecond

	// The first message fails and parks the conversation.
	c := &parking.Conversation{ID: id, Destination: "wavy/br", Partition: "00", Reason: "test", Cause: "attempts"}
	if err := st.Park(ctx, c, event(id, 1)); err != nil {
		return err
	}
	released := make(chan struct{})
	var wg sync.WaitGroup
	// The consumer: the rest, one after the other.
	wg.Add(1)
	var consumerErr error
	go func() {
		defer wg.Done()
		for seq := uint64(2); seq <= uint64(n); seq++ {
			pause(arrivals)
			if seq == uint64(n/3) {
				close(released)
			}
			cur, err := st.Get(ctx, id)
			if err != nil {
				consumerErr = err
				return
			}
			if cur == nil {
				deliver(seq, "normal")
				continue
			}
			switch err := st.Behind(ctx, cur, event(id, seq)); {
			case errors.Is(err, parking.ErrNotParked):
				deliver(seq, "normal")
			case err != nil:
				consumerErr = err
				return
			}
		}
	}()
	// The operator releases; two replicas race to deliver.
	<-released
	if _, err := st.RequestRelease(ctx, id); err != nil {
		return err
	}
	var acquired int
	var amu sync.Mutex
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprintf("replica-%d", r)
			c, err := st.Get(ctx, id)
			if err != nil || c == nil {
				return
			}
			if err := st.Acquire(ctx, c, parking.Releasing, owner); err != nil {
				return
			}
			amu.Lock()
			acquired++
			amu.Unlock()
			err = st.Settle(ctx, c, owner, func(_ context.Context, h *parking.Held) error {
				pause(time.Millisecond)
				deliver(h.Event.Seq, owner)
				return nil
			})
			if err != nil {
				mu.Lock()
				how = append(how, "settle: "+err.Error())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if consumerErr != nil {
		return consumerErr
	}
	// The consumer may have finished while the release ran; whatever it
	// parked last is released by then.
	if cur, err := st.Get(ctx, id); err != nil || cur != nil {
		return fmt.Errorf("%s: still parked (%v) after the release", id, err)
	}
	want := make([]uint64, n)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if !slices.Equal(delivered, want) || acquired != 1 {
		return fmt.Errorf("%s: delivered %v by %v (%d replicas delivered), want 1..%d in order, once, by one replica", id, delivered, how, acquired, n)
	}
	return nil
}

// TestDropDeadLettersInOrder: a dropped conversation's messages become
// dead letters of the relay, in order, and the conversation is taken
// back; a message parked later starts a new parking, without the old
// one's messages.
func TestDropDeadLettersInOrder(t *testing.T) {
	st, dlq := store(t)
	ctx := context.Background()
	id := fmt.Sprintf("%032x", 7)
	c := &parking.Conversation{ID: id, Destination: "wavy/br", Partition: "00", Reason: "Contact Pro answered 500", Cause: "attempts"}
	if err := st.Park(ctx, c, event(id, 1)); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(2); seq <= 4; seq++ {
		cur, err := st.Get(ctx, id)
		if err != nil || cur == nil {
			t.Fatalf("not parked: %v", err)
		}
		if err := st.Behind(ctx, cur, event(id, seq)); err != nil {
			t.Fatal(err)
		}
	}
	got, n, err := st.Drop(ctx, id[:8], "operator", "forward", dlq)
	if err != nil || n != 4 || got.ID != id {
		t.Fatalf("drop: %d dropped, %v", n, err)
	}
	letters, err := dlq.List(ctx, "forward")
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, l := range letters {
		seqs = append(seqs, l.OrigSeq)
		if l.Subject != event(id, 1).Subject {
			t.Errorf("dead letter of %s, want its original subject", l.Subject)
		}
	}
	if !slices.Equal(seqs, []uint64{1, 2, 3, 4}) {
		t.Errorf("dead letters of seqs %v, want 1 to 4 in order", seqs)
	}
	if cur, err := st.Get(ctx, id); err != nil || cur != nil {
		t.Fatalf("still parked after the drop: %+v %v", cur, err)
	}
	// Parked again: only the new message is there.
	c = &parking.Conversation{ID: id, Destination: "wavy/br", Partition: "00", Reason: "again", Cause: "age"}
	if err := st.Park(ctx, c, event(id, 9)); err != nil {
		t.Fatal(err)
	}
	h, err := st.Next(ctx, c)
	if err != nil || h == nil || h.Event.Seq != 9 {
		t.Fatalf("next parked message: %+v %v, want seq 9", h, err)
	}
}

// TestParkedKeepsMaybeDone: a message parked after an attempt that got no
// answer (it may be delivered) is released still saying so, so that its
// delivery on release is marked as a possible repeat; the others are not.
func TestParkedKeepsMaybeDone(t *testing.T) {
	st, _ := store(t)
	ctx := context.Background()
	conv := &parking.Conversation{ID: fmt.Sprintf("%032x", 99), Destination: "wavy/br", Partition: "00", Reason: "test"}
	head := event("maybe", 1)
	head.MaybeDone = true
	if err := st.Park(ctx, conv, head); err != nil {
		t.Fatal(err)
	}
	parked, err := st.Get(ctx, conv.ID)
	if err != nil || parked == nil {
		t.Fatalf("not parked: %v", err)
	}
	if err := st.Behind(ctx, parked, event("maybe", 2)); err != nil {
		t.Fatal(err)
	}
	var got []bool
	for range 2 {
		h, err := st.Next(ctx, parked)
		if err != nil || h == nil {
			t.Fatalf("next held: %v %v", h, err)
		}
		got = append(got, h.Event.MaybeDone)
		if h.Event.Header.Get(messages.HeaderHeldMaybeDone) != "" {
			t.Errorf("the held header reached the event's headers")
		}
		if err := st.Remove(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(got, []bool{true, false}) {
		t.Errorf("held messages' MaybeDone %v, want [true false]", got)
	}
}
