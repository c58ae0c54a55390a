package processors_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// TestDeadLetterStoredOnce: every replica receives the max-deliveries
// advisory of a message and dead-letters it; the dead letter is stored
// once, and Send says which replica stored it, so only that one counts it.
func TestDeadLetterStoredOnce(t *testing.T) {
	ns := natstest.Embedded(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	s, _ := messages.NewSubjects("ccrelay")
	if err := messages.EnsureStreams(context.Background(), provision.Waiter{}, js, messages.StreamConfig{Replicas: 1, MaxAge: time.Hour, DedupWindow: time.Minute, MaxBytes: -1, DLQMaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	dlq := processors.NewDeadLetters(js, s)
	ev := &processors.Event{Subject: s.ContactLens("b1e4f6a2-0000-4000-8000-000000000001"), ID: "connect:1:e", Seq: 42, Deliveries: 5, Body: []byte(`{}`)}
	stored := 0
	for range 3 { // three replicas
		ok, err := dlq.Send(context.Background(), "summaries", ev, errors.New("delivered 5 times without an answer"))
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			stored++
		}
	}
	dls, err := dlq.List(context.Background(), "summaries")
	if err != nil {
		t.Fatal(err)
	}
	if stored != 1 || len(dls) != 1 {
		t.Fatalf("stored %d times by Send's account, %d dead letters; want 1 and 1", stored, len(dls))
	}
}
