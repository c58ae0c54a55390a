package e2e_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/replay"
	"github.com/ccrelay/ccrelay/test/logtest"
	"github.com/ccrelay/ccrelay/test/natstest"
	"github.com/ccrelay/ccrelay/test/toolstest"
)

// TestOperatorToolsOnCluster: on a fresh three-node cluster with R3
// streams, replay --dry-run and dlq list read thousands of events and dead
// letters three times each, and dlq requeue moves a thousand back, without
// stopping on the "no responders" of a consumer just created on another
// node (each stopped at event 7 to 32 when they read through an ordered
// consumer's Next), and without leaving consumers behind.
func TestOperatorToolsOnCluster(t *testing.T) {
	cluster := natstest.NewCluster(t, 3)
	_, js := natstest.Connect(t, cluster.URLs(t))
	toolstest.ReadThousands(t, js, 3, 3000, 2000)
}

// TestReplayThroughLeaderLoss: the events stream's leader is killed a
// quarter into a replay; the replay waits out the election and stores every event
// of the window again exactly once (a publish retried after a lost ack is
// a duplicate JetStream drops).
func TestReplayThroughLeaderLoss(t *testing.T) {
	cluster := natstest.NewCluster(t, 3)
	_, js := natstest.Connect(t, cluster.URLs(t))
	ctx := context.Background()
	s, _ := messages.NewSubjects("ccrelay")
	w := provision.Waiter{Budget: time.Minute}
	if err := messages.EnsureStreams(ctx, w, js, messages.StreamConfig{Replicas: 3, MaxAge: time.Hour, DedupWindow: time.Hour, MaxBytes: -1, DLQMaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	ledger, err := processors.NewLedger(ctx, w, js, s.LedgerBucket(), time.Hour, time.Minute, 3)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	since := time.Now()
	for i := range n {
		ev := messages.Event{Subject: s.ContactPro("chat-attachments", "ended"), ID: fmt.Sprintf("ev-%d", i), Source: "/t", Type: "t", Time: time.Now(), Body: fmt.Appendf(nil, `{"n":%d}`, i)}
		if _, err := js.PublishMsgAsync(ev.Msg()); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		t.Fatal("events not acknowledged within a minute")
	}
	until := time.Now()
	st, err := js.Stream(ctx, s.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Fatalf("stream info: %v", err)
	}
	var victim *natstest.ClusterNode
	for _, node := range cluster.Nodes {
		if node.Name == info.Cluster.Leader {
			victim = node
		}
	}
	if victim == nil {
		t.Fatalf("leader %q is not a node", info.Cluster.Leader)
	}
	killed := false
	var waits logtest.Buffer
	sum, err := replay.Run(ctx, js, s, ledger, replay.Options{Subject: s.Inbound(), Since: since, Until: until,
		Wait: provision.Waiter{Budget: 30 * time.Second, Logger: slog.New(slog.NewTextHandler(&waits, nil))},
		Progress: func(done, _ uint64) {
			if done == n/4 {
				// Within the replay, so its next reads and publishes meet
				// the election.
				victim.Kill(t)
				killed = true
			}
		}})
	if !killed {
		t.Fatalf("leader %s not killed", victim.Name)
	}
	if err != nil {
		t.Fatalf("replay through the loss of %s: %v (after %d)", victim.Name, err, sum.Replayed)
	}
	t.Logf("the replay waited %d times for the cluster:\n%s", strings.Count(waits.String(), "waiting for nats"), waits.String())
	if sum.Matched != n || sum.Replayed != n {
		t.Errorf("matched %d, replayed %d; want %d", sum.Matched, sum.Replayed, n)
	}
	err = w.Do(ctx, "stream info", func(ctx context.Context) error {
		info, err = st.Info(ctx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2*n {
		t.Errorf("the stream holds %d events after the replay, want %d", info.State.Msgs, 2*n)
	}
}
