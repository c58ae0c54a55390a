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
		// A delivery the killed replica had started is redone (marked)
		// once its claim is older than AckWait + the record timeout.
		"CCRELAY_PROCESS_ACK_WAIT=2s", "CCRELAY_PROCESS_RECORD_TIMEOUT=3s",
	}
	var reps []*proc
	for i := 0; i < 3; i++ {
		reps = append(reps, start(t, t.TempDir(), env, "process", "--processors", "forward"))
	}

	const conversations, perConversation = 12, 25
	want := twilioBacklog(t, ns.ClientURL(), conversations, perConversation)
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
			if r.Header.Get("X-Ccrelay-Maybe-Delivered") != "true" {
				t.Errorf("event %s repeated without saying it may be a repeat", r.EventID)
			}
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

// twilioBacklog stores, as ingest stores them, perConversation Twilio
// messages of each of conversations to twilio/us, interleaved, and returns
// each conversation's event ids in order.
func twilioBacklog(t *testing.T, natsURL string, conversations, perConversation int) map[string][]string {
	t.Helper()
	_, js := natstest.Connect(t, natsURL)
	ctx := context.Background()
	if err := messages.EnsureStreams(ctx, provision.Waiter{}, js, binaryStreams(t)); err != nil {
		t.Fatal(err)
	}
	s := messages.DefaultSubjects()
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
	return want
}

// TestRelayReplicaPausedPastAckWait: one of three relay replicas is
// paused (SIGSTOP) for four times AckWait in the middle of a backlog,
// while it holds deliveries, and then resumes (SIGCONT). The others take
// over what it had only claimed; what it had started to send stays its own
// until it records Contact Pro's answer. When it resumes it sends nothing
// another replica sent meanwhile: every message reaches Contact Pro once,
// each conversation in order. (It used to deliver again, on resuming,
// messages the others had delivered while it was stopped.)
func TestRelayReplicaPausedPastAckWait(t *testing.T) {
	ns := natstest.Embedded(t)
	svc := cpfake.Service{Type: "twilio", Name: "us", Secret: "twilio-token"}
	cp := cpfake.New(t, "ext", "ext-password", svc)
	cp.SetDelay(20 * time.Millisecond)
	env := []string{
		"CCRELAY_NATS_URL=" + ns.ClientURL(), "CCRELAY_METRICS_ADDR=127.0.0.1:0",
		"CCRELAY_PUBLIC_URL=https://relay.example.com",
		"CCRELAY_MESSAGING_SECRETS=twilio/us:twilio-token",
		"CCRELAY_FORWARD_URLS=twilio/us=" + cp.URLOf(svc),
		"CCRELAY_FORWARD_BASIC_USERS=twilio/us=ext:ext-password",
		"CCRELAY_FORWARD_BACKOFF=100ms", "CCRELAY_FORWARD_PARTITIONS=4",
		"CCRELAY_PROCESS_ACK_WAIT=2s", "CCRELAY_PROCESS_CALL_TIMEOUT=500ms",
		// Forward's claims are stored as sending from the start, so a
		// stopped replica's claims wait this long before another takes
		// them over (the default 30 s is the test's own bound for no
		// progress, and CI once stalled that long). Above the 8 s pause,
		// so nothing is taken over while the replica is only paused.
		"CCRELAY_PROCESS_RECORD_TIMEOUT=12s",
	}
	var reps []*proc
	for i := 0; i < 3; i++ {
		reps = append(reps, start(t, t.TempDir(), env, "process", "--processors", "forward"))
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, p := range reps {
				t.Logf("replica %d's warnings and errors:\n%s", i, warningLines(p.log()))
			}
		}
	})
	const conversations, perConversation = 12, 25
	want := twilioBacklog(t, ns.ClientURL(), conversations, perConversation)
	total := conversations * perConversation

	waitFor(t, "a third delivered", func() bool { return len(cp.Received()) >= total/3 })
	paused := reps[1]
	if err := paused.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	atPause := len(cp.Received())
	time.Sleep(8 * time.Second)
	duringPause := len(cp.Received()) - atPause
	if err := paused.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitForCount(t, "every message delivered", func() int { return distinct(cp.Received()) }, total)
	time.Sleep(3 * time.Second) // what the resumed replica still had would come now

	got := map[string][]string{}
	count := map[string]int{}
	for _, r := range cp.Received() {
		if count[r.EventID]++; count[r.EventID] > 1 {
			t.Errorf("event %s delivered %d times (marked as a possible repeat: %q)", r.EventID, count[r.EventID], r.Header.Get("X-Ccrelay-Maybe-Delivered"))
			continue
		}
		got[r.Conversation] = append(got[r.Conversation], r.EventID)
	}
	for conv, ids := range want {
		if strings.Join(got[conv], " ") != strings.Join(ids, " ") {
			t.Errorf("conversation %s out of order or incomplete:\n got %v\nwant %v", conv, got[conv], ids)
		}
	}
	if duringPause == 0 {
		t.Errorf("nothing was delivered while a replica was paused: the others did not take over")
	}
	for _, p := range reps {
		if err := p.stop(t, syscall.SIGTERM); err != nil {
			t.Errorf("replica exit: %v", err)
		}
	}
	t.Logf("%d messages; %d delivered by the others during the 8 s pause; no repeat", total, duringPause)
}

func distinct(rs []cpfake.Received) int {
	seen := map[string]bool{}
	for _, r := range rs {
		seen[r.EventID] = true
	}
	return len(seen)
}

// warningLines are a replica's WARN and ERROR log lines, the last 40.
func warningLines(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
			out = append(out, l)
		}
	}
	return strings.Join(out[max(0, len(out)-40):], "\n")
}
