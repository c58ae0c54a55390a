package replay_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/test/expect"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/replay"
	"github.com/ccrelay/ccrelay/test/natstest"
)

func TestReplay(t *testing.T) {
	ns := natstest.Embedded(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	s, _ := messages.NewSubjects("ccrelay")
	ctx := context.Background()
	if err := messages.EnsureStreams(ctx, provision.Waiter{}, js, messages.StreamConfig{Replicas: 1, MaxAge: time.Hour, DedupWindow: time.Minute, MaxBytes: -1, DLQMaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	ledger, err := processors.NewLedger(ctx, provision.Waiter{}, js, s.LedgerBucket(), time.Hour, time.Minute, 1)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(subject, id string) {
		ev := messages.Event{Subject: subject, ID: id, Source: "/t", Type: "t", Time: time.Now(), Body: []byte(`{"contact_id":"` + id + `"}`)}
		if _, err := js.PublishMsg(ctx, ev.Msg()); err != nil {
			t.Fatal(err)
		}
	}
	publish(s.ContactPro("chat-attachments", "ended"), "old")
	time.Sleep(20 * time.Millisecond)
	since := time.Now()
	publish(s.ContactPro("chat-attachments", "ended"), "a")
	publish(s.ContactPro("chat-attachments", "ended"), "b")
	publish(s.ContactLens("i1"), "lens")
	until := time.Now()
	time.Sleep(20 * time.Millisecond)
	publish(s.ContactPro("chat-attachments", "ended"), "late")

	count := func() uint64 {
		st, _ := js.Stream(ctx, s.EventsStream())
		info, _ := st.Info(ctx)
		return info.State.Msgs
	}
	before := count()
	filter := s.Prefix() + ".in.contactpro.>"
	sum, err := replay.Run(ctx, js, s, ledger, replay.Options{Subject: filter, Since: since, Until: until, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !expect.All(t,
		expect.Check{Name: "dry run: matched", Got: sum.Matched, Want: uint64(2)},
		expect.Check{Name: "dry run: replayed", Got: sum.Replayed, Want: uint64(0)},
		expect.Check{Name: "dry run: stream size", Got: count(), Want: before},
	) {
		t.FailNow()
	}

	// Completed work stays protected by the ledger; --force removes it.
	c, err := ledger.Claim(ctx, "attachments", "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Done(ctx); err != nil {
		t.Fatal(err)
	}
	var progress []string
	sum, err = replay.Run(ctx, js, s, ledger, replay.Options{Subject: filter, Since: since, Until: until, Force: true, Processors: []string{"attachments"},
		Progress: func(done, total uint64) { progress = append(progress, fmt.Sprintf("%d/%d", done, total)) }})
	if err != nil {
		t.Fatal(err)
	}
	if !expect.All(t,
		expect.Check{Name: "forced: replayed", Got: sum.Replayed, Want: uint64(2)},
		expect.Check{Name: "forced: forgotten", Got: sum.Forgotten, Want: uint64(2)},
		expect.Check{Name: "forced: stream size", Got: count(), Want: before + 2},
	) {
		t.FailNow()
	}
	// By stream sequence through the window a, b, lens: lens is not
	// replayed, and the bar still ends full.
	if strings.Join(progress, ",") != "1/3,2/3,3/3" {
		t.Errorf("progress %v", progress)
	}
	if _, err := ledger.Claim(ctx, "attachments", "a"); err != nil {
		t.Errorf("forced replay left the ledger entry: %v", err)
	}

	// The copies keep ce-id and body, with a new Nats-Msg-Id.
	st, _ := js.Stream(ctx, s.EventsStream())
	for _, seq := range []uint64{before + 1, before + 2} {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		id := m.Header.Get("ce-id")
		if id != "a" && id != "b" || !strings.HasPrefix(m.Header.Get("Nats-Msg-Id"), "replay:") || string(m.Data) != `{"contact_id":"`+id+`"}` {
			t.Errorf("copy %d: %v %s", seq, m.Header, m.Data)
		}
	}
	if _, err := replay.Run(ctx, js, s, ledger, replay.Options{Subject: s.Prefix() + ".in.sinch.>", Since: since}); !errors.Is(err, replay.ErrNothingToDo) {
		t.Errorf("nothing to do: %v", err)
	}
	if _, err := replay.Run(ctx, js, s, ledger, replay.Options{Subject: filter, Since: until, Until: since}); err == nil {
		t.Error("until before since accepted")
	}
}
