// Package toolstest runs the operator tools' reads (replay, dlq list and
// requeue) against a JetStream server or cluster, for the tests of
// processors and the cluster tests of test/e2e.
package toolstest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/replay"
)

// ReadThousands stores events and dead letters through js, on streams of
// replicas, and runs the operator tools' reads against them three times
// (replay --dry-run, dlq list), then requeues half the dead letters. Every
// read must find each message once, in order, and leave no consumer.
func ReadThousands(t testing.TB, js jetstream.JetStream, replicas, events, deadLetters int) {
	t.Helper()
	ctx := context.Background()
	s, _ := messages.NewSubjects("ccrelay")
	if err := messages.EnsureStreams(ctx, provision.Waiter{Budget: time.Minute}, js, messages.StreamConfig{Replicas: replicas, MaxAge: time.Hour, DedupWindow: time.Minute, MaxBytes: -1, DLQMaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	ledger, err := processors.NewLedger(ctx, provision.Waiter{Budget: time.Minute}, js, s.LedgerBucket(), time.Hour, time.Minute, replicas)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(m jetstream.PubAckFuture, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	since := time.Now()
	var matching uint64 // of the replay's filter
	for i := range events {
		subject := s.ContactPro("chat-attachments", "ended")
		if i%2 == 1 {
			subject = s.ContactLens("b1e4f6a2-0000-4000-8000-000000000001")
		} else {
			matching++
		}
		ev := messages.Event{Subject: subject, ID: fmt.Sprintf("ev-%d", i), Source: "/t", Type: "t", Time: time.Now(), Body: fmt.Appendf(nil, `{"n":%d}`, i)}
		publish(js.PublishMsgAsync(ev.Msg()))
	}
	dlq := processors.NewDeadLetters(js, s)
	for i := range deadLetters {
		p := "attachments"
		if i%2 == 1 {
			p = "summaries"
		}
		ev := &processors.Event{Subject: s.ContactPro("chat-attachments", "ended"), ID: fmt.Sprintf("ev-%d", i), Seq: uint64(i + 1), Deliveries: 1, Body: []byte(`{}`)}
		if _, err := dlq.Send(ctx, p, ev, errors.New("refused")); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		t.Fatal("events not acknowledged within a minute")
	}
	until := time.Now()

	consumers := func() int {
		n := 0
		for _, name := range []string{s.EventsStream(), s.DeadLetterStream()} {
			st, err := js.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			info, err := st.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			n += info.State.Consumers
		}
		return n
	}
	for run := range 3 {
		sum, err := replay.Run(ctx, js, s, ledger, replay.Options{Subject: s.Prefix() + ".in.contactpro.>", Since: since, Until: until, DryRun: true})
		if err != nil {
			t.Fatalf("replay --dry-run %d: %v", run, err)
		}
		if sum.Matched != matching {
			t.Errorf("replay --dry-run %d matched %d, want %d", run, sum.Matched, matching)
		}
		all, err := dlq.List(ctx, "")
		if err != nil {
			t.Fatalf("dlq list %d: %v", run, err)
		}
		if len(all) != deadLetters {
			t.Errorf("dlq list %d: %d dead letters, want %d", run, len(all), deadLetters)
		}
		for i := 1; i < len(all); i++ {
			if all[i].Seq <= all[i-1].Seq {
				t.Fatalf("dlq list %d: seq %d after %d", run, all[i].Seq, all[i-1].Seq)
			}
		}
	}
	summaries, err := dlq.List(ctx, "summaries")
	if err != nil {
		t.Fatal(err)
	}
	if len(summaries) != deadLetters/2 {
		t.Errorf("dlq list --processor summaries: %d, want %d", len(summaries), deadLetters/2)
	}
	for _, dl := range summaries {
		if _, err := dlq.Requeue(ctx, dl.Seq); err != nil {
			t.Fatalf("requeue seq %d: %v", dl.Seq, err)
		}
	}
	left, err := dlq.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != deadLetters-deadLetters/2 {
		t.Errorf("%d dead letters after requeueing the summaries', want %d", len(left), deadLetters-deadLetters/2)
	}
	for _, dl := range left {
		if dl.Processor != "attachments" {
			t.Fatalf("dead letter %d of %s left after requeueing the summaries'", dl.Seq, dl.Processor)
		}
	}
	if n := consumers(); n != 0 {
		t.Errorf("%d consumers left on the streams", n)
	}
}
