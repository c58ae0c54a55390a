package process_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/test/fakes/cpfake"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// TestRelaySurvivesSIGKILL runs three 'ccrelay process --processors
// forward' replicas on a backlog for a Contact Pro that takes 20 ms per
// message, SIGKILLs one in the middle, and checks that every message
// reached Contact Pro, each conversation in order. A replica killed
// between Contact Pro's answer and its own record of it leaves that one
// message to be delivered again, right after itself: at most one repeat
// per partition it held, never a message out of order.
func TestRelaySurvivesSIGKILL(t *testing.T) {
	ns := natstest.Embedded(t)
	svc := cpfake.Service{Type: "twilio", Name: "us", Secret: "twilio-token"}
	cp := cpfake.New(t, "ext", "ext-password", svc)
	cp.SetDelay(20 * time.Millisecond)
	const partitions = 4
	env := []string{
		"CCRELAY_NATS_URL=" + ns.ClientURL(), "CCRELAY_METRICS_ADDR=127.0.0.1:0",
		"CCRELAY_PUBLIC_URL=https://relay.example.com",
		"CCRELAY_MESSAGING_SECRETS=twilio/us:twilio-token",
		"CCRELAY_FORWARD_URLS=twilio/us=" + cp.URLOf(svc),
		"CCRELAY_FORWARD_BASIC_USERS=twilio/us=ext:ext-password",
		"CCRELAY_FORWARD_BACKOFF=100ms", fmt.Sprintf("CCRELAY_FORWARD_PARTITIONS=%d", partitions),
		"CCRELAY_PROCESS_ACK_WAIT=2s",
	}
	var reps []*proc
	for i := 0; i < 3; i++ {
		reps = append(reps, start(t, t.TempDir(), env, "process", "--processors", "forward"))
	}

	// The backlog, stored as ingest stores it.
	_, js := natstest.Connect(t, ns.ClientURL())
	ctx := context.Background()
	if err := messages.EnsureStreams(ctx, provision.Waiter{}, js, binaryStreams(t)); err != nil {
		t.Fatal(err)
	}
	s := messages.DefaultSubjects()
	const conversations, perConversation = 12, 25
	want := map[string][]string{}
	for m := 0; m < perConversation; m++ {
		for c := 0; c < conversations; c++ {
			body := []byte(url.Values{"MessageSid": {fmt.Sprintf("SM%028d%04d", c, m)}, "From": {fmt.Sprintf("+4915100%04d", c)}, "Body": {fmt.Sprint(m)}}.Encode())
			w, err := messages.DecodeWebhook("twilio", "us", body)
			if err != nil {
				t.Fatal(err)
			}
			ev := messages.Event{Subject: s.Messaging("twilio", "us", messages.Partition(w.Conversation)), ID: w.ID, Source: "/messaging/twilio/us",
				Type: messages.TypeMessagingPrefix + "twilio.inbound", ContentType: messages.ContentTypeForm, Time: time.Now(), ReceivedAt: time.Now(), Body: body}
			if _, err := js.PublishMsg(ctx, ev.Msg()); err != nil {
				t.Fatal(err)
			}
			want[w.Conversation] = append(want[w.Conversation], w.ID)
		}
	}
	total := conversations * perConversation

	waitFor(t, "a third delivered", func() bool { return len(cp.Received()) >= total/3 })
	if err := reps[1].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitForCount(t, "every message delivered after the kill", func() int { return distinct(cp.Received()) }, total)
	time.Sleep(500 * time.Millisecond)

	got := map[string][]string{}
	repeats := 0
	for _, r := range cp.Received() {
		ids := got[r.Conversation]
		if len(ids) > 0 && ids[len(ids)-1] == r.EventID {
			repeats++ // the killed replica's delivery in flight, again
			continue
		}
		got[r.Conversation] = append(ids, r.EventID)
	}
	if repeats > partitions {
		t.Errorf("%d repeated deliveries; a kill can repeat at most one per partition (%d)", repeats, partitions)
	}
	for conv, ids := range want {
		if strings.Join(got[conv], " ") != strings.Join(ids, " ") {
			t.Errorf("conversation %s out of order or incomplete:\n got %v\nwant %v", conv, got[conv], ids)
		}
	}
	if refused := cp.Refused(); len(refused) != 0 {
		t.Errorf("Contact Pro refused deliveries: %v", refused)
	}
	for _, i := range []int{0, 2} {
		if err := reps[i].stop(t, syscall.SIGTERM); err != nil {
			t.Errorf("replica %d exit: %v", i, err)
		}
	}
	t.Logf("%d messages, %d repeated after the kill", total, repeats)
}

func distinct(rs []cpfake.Received) int {
	seen := map[string]bool{}
	for _, r := range rs {
		seen[r.EventID] = true
	}
	return len(seen)
}
