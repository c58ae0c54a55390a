package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/trace"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// TestTraceOnCluster: on a fresh three-node cluster with R3 streams,
// 'ccrelay trace' finds, twenty times over, each traced id's one event
// among 3,000 and its dead letter, through a consumer created for each
// read (where an ordered consumer's Next stopped with "no responders"),
// and leaves no consumer behind.
func TestTraceOnCluster(t *testing.T) {
	cluster := natstest.NewCluster(t, 3)
	_, js := natstest.Connect(t, cluster.URLs(t))
	ctx := context.Background()
	s := messages.DefaultSubjects()
	w := provision.Waiter{Budget: time.Minute}
	if err := messages.EnsureStreams(ctx, w, js, messages.StreamConfig{Replicas: 3, MaxAge: time.Hour, DedupWindow: time.Minute, MaxBytes: -1, DLQMaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	for i := range n {
		ev := messages.Event{Subject: s.ContactLens("b1e4f6a2-0000-4000-8000-000000000001"), ID: fmt.Sprintf("connect:1:ev-%d", i), Source: "/t", Type: messages.TypeContactLensPostCall,
			Time: time.Now(), IDs: messages.FormatIDs(messages.IDContact, fmt.Sprintf("5b7e1c2d-0000-4000-8000-%012d", i)), Body: []byte(`{}`)}
		if _, err := js.PublishMsgAsync(ev.Msg()); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		t.Fatal("events not acknowledged within a minute")
	}
	dlq := processors.NewDeadLetters(js, s)
	for i := 0; i < n; i += 150 {
		ev := &processors.Event{Subject: s.ContactLens("b1e4f6a2-0000-4000-8000-000000000001"), ID: fmt.Sprintf("connect:1:ev-%d", i), Seq: uint64(i + 1), Deliveries: 3, Body: []byte(`{}`)}
		if _, err := dlq.Send(ctx, "summaries", ev, errors.New("permanent: SAP answered 400")); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i += 150 {
		r, err := trace.Run(ctx, js, s, trace.Options{ID: fmt.Sprintf("5b7e1c2d-0000-4000-8000-%012d", i), Since: time.Now().Add(-time.Hour), Wait: w, Processors: traceProcessors(t)})
		if err != nil {
			t.Fatalf("trace %d: %v", i, err)
		}
		if r.Scanned != n || r.Matched != 1 {
			t.Fatalf("trace %d: %d matched of %d scanned, want 1 of %d", i, r.Matched, r.Scanned, n)
		}
		var dead *trace.Step
		for k := range r.Steps {
			if r.Steps[k].Kind == trace.KindDeadLettered {
				dead = &r.Steps[k]
			}
		}
		if dead == nil || dead.Seq != uint64(i+1) || dead.Processor != "summaries" || dead.Attempts != 3 || dead.Detail != "permanent: SAP answered 400" || !strings.HasPrefix(dead.Next, "ccrelay dlq requeue --seq ") {
			t.Errorf("trace %d: dead letter %+v", i, dead)
		}
	}
	for _, name := range []string{s.EventsStream(), s.DeadLetterStream()} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Consumers != 0 {
			t.Errorf("%d consumers left on %s", info.State.Consumers, name)
		}
	}
}
