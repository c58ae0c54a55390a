package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/messages/signature"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/forward"
	"github.com/ccrelay/ccrelay/processors/replay"
	"github.com/ccrelay/ccrelay/test/fakes/cpfake"
	"github.com/ccrelay/ccrelay/test/metricstest"
	"github.com/ccrelay/ccrelay/test/natstest"
	"github.com/ccrelay/ccrelay/test/sinchtest"
)

// The external user ccrelay delivers to Contact Pro with.
const (
	cpExtUser     = "ccrelay-ext"
	cpExtPassword = "contactpro-external-user-password-1"
)

// relayServices are the fake Contact Pro's messaging services, one of each
// signing scheme.
func relayServices() []cpfake.Service {
	return []cpfake.Service{
		{Type: "sinch", Name: "svc1", Secret: sinchSecret},
		{Type: "twilio", Name: "us", Secret: twilioToken},
		{Type: "facebook", Name: "page1", Secret: fbAppSecret},
		{Type: "wavy", Name: "br"},
	}
}

// relayDeployment is ingest and the relay's configuration pointing at cp.
func relayDeployment(t *testing.T, natsURL string, cp *cpfake.Server, extra ...string) *deployment {
	var urls, users []string
	for _, s := range relayServices() {
		key := s.Type + "/" + s.Name
		urls = append(urls, key+"="+cp.URLOf(s))
		users = append(users, key+"="+cpExtUser+":"+cpExtPassword)
	}
	env := append(messagingEnv(),
		"CCRELAY_FORWARD_URLS="+strings.Join(urls, ","),
		"CCRELAY_FORWARD_BASIC_USERS="+strings.Join(users, ","),
		"CCRELAY_FORWARD_BACKOFF=50ms,100ms,200ms",
		"CCRELAY_FORWARD_PARTITIONS=4",
	)
	return deploy(t, natsURL, 1, append(env, extra...)...)
}

// message is one webhook as its provider sends it.
type message struct {
	path   string
	header http.Header
	body   []byte
	// typ and service name the Contact Pro service it is delivered to.
	typ, service string
}

// conversationMessage is message m of conversation c of a provider.
func conversationMessage(t testing.TB, provider string, c, m int) message {
	switch provider {
	case "twilio":
		body := []byte(url.Values{
			"MessageSid": {fmt.Sprintf("SM%030d%02d", c, m)}, "SmsStatus": {"received"},
			"From": {fmt.Sprintf("+1555000%04d", c)}, "To": {"+15550009999"}, "Body": {fmt.Sprintf("message %d", m)},
			"AccountSid": {"ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"}, "NumMedia": {"0"},
		}.Encode())
		return message{"/v1/messaging/twilio/us", twilioHeaders(t, "/v1/messaging/twilio/us", body), body, "twilio", "us"}
	case "facebook":
		body := fmt.Appendf(nil, `{"object":"page","entry":[{"id":"PAGE","time":1458692752478,"messaging":[{"sender":{"id":"PSID%d"},"recipient":{"id":"PAGE"},"timestamp":1458692752478,"message":{"mid":"m_%d_%d","text":"message %d"}}]}]}`, c, c, m, m)
		return message{"/v1/messaging/facebook/page1", hubHeaders(body), body, "facebook", "page1"}
	case "sinch":
		body := sinchtest.InboundFrom(fmt.Sprintf("01RELAY%05d%05d", c, m), fmt.Sprintf("CONTACT%d", c), fmt.Sprintf("message %d", m), time.Now())
		return message{"/v1/sinch/svc1", signed(sinchSecret, body, time.Now()), body, "sinch", "svc1"}
	default: // wavy: no conversation in a payload ccrelay cannot read; the service is one
		body := fmt.Appendf(nil, `{"conversation":%d,"seq":%d}`, c, m)
		return message{"/v1/messaging/wavy/br", basicJSON("wavyuser", wavyPassword), body, "wavy", "br"}
	}
}

// sendBacklog posts messages of several conversations of every provider,
// interleaved, and returns each conversation's event ids in sending order.
func sendBacklog(t *testing.T, d *deployment, conversations, perConversation int) (map[string][]string, int) {
	t.Helper()
	want := map[string][]string{}
	n := 0
	for m := 0; m < perConversation; m++ {
		for c := 0; c < conversations; c++ {
			for _, p := range []string{"twilio", "facebook", "sinch", "wavy"} {
				msg := conversationMessage(t, p, c, m)
				r := d.post(msg.path, msg.header, msg.body)
				if r.status != http.StatusAccepted {
					t.Fatalf("%s %d/%d: status %d %s", p, c, m, r.status, r.body)
				}
				conv := msg.typ + "/" + msg.service + "|" + cpfake.Conversation(msg.typ, msg.service, msg.body)
				want[conv] = append(want[conv], r.json(t)["id"].(string))
				n++
			}
		}
	}
	return want, n
}

// checkInOrderOnce checks that Contact Pro took every event exactly once,
// each conversation in the order it was sent.
func checkInOrderOnce(t *testing.T, got []cpfake.Received, want map[string][]string) {
	t.Helper()
	seen := map[string]int{}
	byConv := map[string][]string{}
	for _, r := range got {
		seen[r.EventID]++
		conv := r.Service + "|" + r.Conversation
		byConv[conv] = append(byConv[conv], r.EventID)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("event %s delivered %d times", id, n)
		}
	}
	for conv, ids := range want {
		if strings.Join(byConv[conv], " ") != strings.Join(ids, " ") {
			t.Errorf("conversation %s:\n got %v\nwant %v", conv, byConv[conv], ids)
		}
	}
}

// TestRelayDrainsBacklogInOrder: Contact Pro is down while customers
// write; three replicas of the relay keep the backlog, then deliver it in
// order per conversation, each message once, every signature checked by
// Contact Pro, when it comes back.
func TestRelayDrainsBacklogInOrder(t *testing.T) {
	ns := natstest.Embedded(t)
	cp := cpfake.New(t, cpExtUser, cpExtPassword, relayServices()...)
	cp.Down(http.StatusServiceUnavailable)
	d := relayDeployment(t, ns.ClientURL(), cp)
	for i := 0; i < 3; i++ {
		d.startProcessors("forward")
	}
	want, total := sendBacklog(t, d, 5, 6)

	eventually(t, "the relay keeps trying while Contact Pro is down", func() bool { return cp.Refused()["down"] >= 8 })
	if got := cp.Received(); len(got) != 0 {
		t.Fatalf("Contact Pro took %d messages while down", len(got))
	}
	held := func(metric string) float64 {
		var max float64
		for _, s := range relayServices() {
			v := metricstest.Value(t, d.procRegs[0], metric, map[string]string{"destination": s.Type + "/" + s.Name})
			if v > max {
				max = v
			}
		}
		return max
	}
	eventually(t, "held partitions and the oldest unsent age show the outage", func() bool {
		return held("ccrelay_forward_held_partitions") > 0 && held("ccrelay_forward_oldest_unsent_age_seconds") > 0
	})

	cp.Up()
	eventually(t, "the backlog drains", func() bool { return len(cp.Received()) >= total })
	time.Sleep(300 * time.Millisecond) // time for a duplicate to show
	got := cp.Received()
	if len(got) != total {
		t.Errorf("Contact Pro took %d deliveries, want %d", len(got), total)
	}
	checkInOrderOnce(t, got, want)
	if refused := cp.Refused(); refused["external user refused"]+refused["sinch signature"]+refused["sinch timestamp"]+refused["twilio signature"]+refused["hub signature"] != 0 {
		t.Errorf("Contact Pro refused deliveries: %v", refused)
	}
	if done := d.processed("forward", "done"); done != float64(total) {
		t.Errorf("processed done %v, want %d", done, total)
	}
	var forwarded float64
	for _, s := range relayServices() {
		for _, reg := range d.procRegs {
			forwarded += metricstest.Value(t, reg, "ccrelay_forward_messages_total", map[string]string{"destination": s.Type + "/" + s.Name, "outcome": "forwarded"})
		}
	}
	if forwarded != float64(total) {
		t.Errorf("ccrelay_forward_messages_total{outcome=forwarded} %v, want %d", forwarded, total)
	}
	eventually(t, "nothing held once drained", func() bool { return held("ccrelay_forward_oldest_unsent_age_seconds") == 0 })
}

// TestRelayDeadLettersWhatCannotSucceed: an answer that cannot succeed
// dead-letters that message with Contact Pro's answer; the conversation
// goes on; requeued once Contact Pro takes it, it is delivered.
func TestRelayDeadLettersWhatCannotSucceed(t *testing.T) {
	ns := natstest.Embedded(t)
	cp := cpfake.New(t, cpExtUser, cpExtPassword, relayServices()...)
	d := relayDeployment(t, ns.ClientURL(), cp)
	d.startProcessors("forward")

	var ids []string
	for m := 0; m < 3; m++ {
		msg := conversationMessage(t, "twilio", 1, m)
		if m == 1 {
			form, _ := url.ParseQuery(string(msg.body))
			cp.Reject("messaging:twilio:us:"+form.Get("MessageSid"), http.StatusUnprocessableEntity)
		}
		r := d.post(msg.path, msg.header, msg.body)
		if r.status != http.StatusAccepted {
			t.Fatalf("status %d %s", r.status, r.body)
		}
		ids = append(ids, r.json(t)["id"].(string))
	}
	eventually(t, "the rest of the conversation is delivered", func() bool { return len(cp.Received()) == 2 })
	if got := cp.Received(); got[0].EventID != ids[0] || got[1].EventID != ids[2] {
		t.Errorf("delivered %s, %s; want %s, %s", got[0].EventID, got[1].EventID, ids[0], ids[2])
	}
	var dl *struct {
		seq uint64
		err string
	}
	eventually(t, "the refused message is a dead letter", func() bool {
		for _, l := range listDLQ(t, d) {
			if l.Processor == "forward" && l.Header.Get(messages.HeaderID) == ids[1] {
				dl = &struct {
					seq uint64
					err string
				}{l.Seq, l.Error}
				return true
			}
		}
		return false
	})
	if !strings.Contains(dl.err, "422") || !strings.Contains(dl.err, "rejected by the test") {
		t.Errorf("dead letter error %q does not carry Contact Pro's answer", dl.err)
	}
	cp.Reject(ids[1], 0)
	requeue(t, d, dl.seq)
	eventually(t, "the requeued message is delivered", func() bool { return len(cp.Received()) == 3 })
	if got := cp.Received(); got[2].EventID != ids[1] {
		t.Errorf("requeued delivery %s, want %s", got[2].EventID, ids[1])
	}
}

// TestRelayWaitsForAFixedConfiguration: Contact Pro refusing the external
// user is a configuration error, not the message's: the relay holds the
// conversation (nothing dead-lettered, nothing out of order) until the two
// sides agree again, then delivers it.
func TestRelayWaitsForAFixedConfiguration(t *testing.T) {
	ns := natstest.Embedded(t)
	cp := cpfake.New(t, cpExtUser, "the-password-contact-pro-has-now", relayServices()...)
	d := relayDeployment(t, ns.ClientURL(), cp)
	d.startProcessors("forward")
	msg := conversationMessage(t, "facebook", 7, 0)
	if r := d.post(msg.path, msg.header, msg.body); r.status != http.StatusAccepted {
		t.Fatalf("status %d", r.status)
	}
	eventually(t, "Contact Pro refuses the external user, repeatedly", func() bool { return cp.Refused()["external user refused"] >= 3 })
	if n := len(listDLQ(t, d)); n != 0 {
		t.Errorf("%d dead letters for a configuration error", n)
	}
	cp.SetPassword(cpExtPassword) // the operator aligns Contact Pro's external user
	eventually(t, "the held message is delivered", func() bool { return len(cp.Received()) == 1 })
	// The delivery carries Meta's own signature, which Contact Pro checked.
	if got := cp.Received()[0]; !strings.HasPrefix(got.Header.Get(signature.HeaderHubSignature256), "sha256=") {
		t.Errorf("delivered without Meta's signature: %v", got.Header)
	}
}

// TestRelayReplay: a replay is no second delivery (the ledger knows them);
// a forced replay for the relay delivers the window again, in order.
func TestRelayReplay(t *testing.T) {
	ns := natstest.Embedded(t)
	cp := cpfake.New(t, cpExtUser, cpExtPassword, relayServices()...)
	d := relayDeployment(t, ns.ClientURL(), cp)
	d.startProcessors("forward")
	since := time.Now().Add(-time.Second)
	want, total := sendBacklog(t, d, 2, 3)
	eventually(t, "delivered", func() bool { return len(cp.Received()) == total })

	ledger, err := processors.NewLedger(context.Background(), provision.Waiter{}, d.js, d.subjects.LedgerBucket(), time.Hour, time.Minute, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The window of the original deliveries only: a second replay of the
	// first replay's copies would deliver them a third time.
	opts := replay.Options{Subject: d.subjects.Inbound(), Since: since, Until: time.Now()}
	sum, err := replay.Run(context.Background(), d.js, d.subjects, ledger, opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Replayed != uint64(total) {
		t.Fatalf("replayed %d, want %d", sum.Replayed, total)
	}
	eventually(t, "the replay is skipped", func() bool { return d.processed("forward", processors.OutcomeSkipped) == float64(total) })
	if n := len(cp.Received()); n != total {
		t.Errorf("a plain replay delivered again: %d deliveries, want %d", n, total)
	}

	opts.Force, opts.Processors = true, []string{"forward"}
	if _, err := replay.Run(context.Background(), d.js, d.subjects, ledger, opts); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the forced replay is delivered", func() bool { return len(cp.Received()) == 2*total })
	checkInOrderOnce(t, cp.Received()[total:], want)
}

// TestRelayRetryAfterNoAnswerSaysMaybeDelivered: Contact Pro takes a
// message and answers after the relay's timeout; the retry that follows
// may repeat a delivery Contact Pro made, and says so
// (X-Ccrelay-Maybe-Delivered), while a retry after an answer (a 503) does
// not.
func TestRelayRetryAfterNoAnswerSaysMaybeDelivered(t *testing.T) {
	ns := natstest.Embedded(t)
	cp := cpfake.New(t, cpExtUser, cpExtPassword, relayServices()...)
	d := relayDeployment(t, ns.ClientURL(), cp, "CCRELAY_FORWARD_TIMEOUT=300ms")
	d.startProcessors("forward")

	cp.SetDelay(time.Second)
	slow := conversationMessage(t, "twilio", 1, 0)
	r := d.post(slow.path, slow.header, slow.body)
	slowID := r.json(t)["id"].(string)
	eventually(t, "the first attempt", func() bool { return cp.Attempts(slowID) >= 1 })
	cp.SetDelay(0)
	eventually(t, "the retry", func() bool { return len(cp.Received()) >= 2 })

	cp.Down(http.StatusServiceUnavailable)
	refused := conversationMessage(t, "twilio", 2, 0)
	r = d.post(refused.path, refused.header, refused.body)
	refusedID := r.json(t)["id"].(string)
	eventually(t, "a refused attempt", func() bool { return cp.Refused()["down"] >= 1 })
	cp.Up()
	eventually(t, "the refused one delivered", func() bool {
		for _, got := range cp.Received() {
			if got.EventID == refusedID {
				return true
			}
		}
		return false
	})
	var marks []string
	for _, got := range cp.Received() {
		marks = append(marks, got.EventID[len(got.EventID)-6:]+"="+got.Header.Get(forward.HeaderMaybeDelivered))
		switch {
		case got.EventID == refusedID && got.Header.Get(forward.HeaderMaybeDelivered) != "":
			t.Errorf("the retry after a 503 says it may be a repeat")
		}
	}
	// Contact Pro records the slow attempt when it answers, after the retry.
	slowMarks := map[string]int{}
	for _, got := range cp.Received() {
		if got.EventID == slowID {
			slowMarks[got.Header.Get(forward.HeaderMaybeDelivered)]++
		}
	}
	if slowMarks[""] != 1 || slowMarks["true"] != 1 || len(slowMarks) != 2 {
		t.Errorf("deliveries (id=mark): %v; want the slow one once unmarked and once marked true", marks)
	}
}

// TestRelayMaybeDeliveredSurvivesALaterRefusal: a delivery that got no
// answer may have reached Contact Pro; a retry that Contact Pro then
// refuses (503) says nothing of that first one, so the attempt after it
// is still marked as a possible repeat (it once went out unmarked, and
// Contact Pro had the message twice without knowing).
func TestRelayMaybeDeliveredSurvivesALaterRefusal(t *testing.T) {
	ns := natstest.Embedded(t)
	cp := cpfake.New(t, cpExtUser, cpExtPassword, relayServices()...)
	d := relayDeployment(t, ns.ClientURL(), cp, "CCRELAY_FORWARD_TIMEOUT=300ms")
	d.startProcessors("forward")

	cp.SetDelay(time.Second)
	m := conversationMessage(t, "twilio", 1, 0)
	r := d.post(m.path, m.header, m.body)
	id := r.json(t)["id"].(string)
	eventually(t, "the first attempt", func() bool { return cp.Attempts(id) >= 1 })
	// The first attempt is under way (Contact Pro takes it after 1 s, the
	// relay gives up after 300 ms); the next ones are refused.
	cp.Down(http.StatusServiceUnavailable)
	cp.SetDelay(0)
	eventually(t, "a refused retry", func() bool { return cp.Refused()["down"] >= 1 })
	cp.Up()
	eventually(t, "the late first attempt and a delivered retry", func() bool { return len(cp.Received()) >= 2 })
	time.Sleep(500 * time.Millisecond) // a third delivery, if any, would come meanwhile
	var marks []string
	for _, got := range cp.Received() {
		if got.EventID == id {
			marks = append(marks, got.Header.Get(forward.HeaderMaybeDelivered))
		}
	}
	slices.Sort(marks)
	if !slices.Equal(marks, []string{"", "true"}) {
		t.Errorf("deliveries' marks %q, want the first unmarked and the retry after the refusal marked true", marks)
	}
}

// TestRelayPartitionsChangeWithoutRepeats: a relay restarted with other
// partition groups (CCRELAY_FORWARD_PARTITIONS) places its new consumers
// at the slowest of the old ones they take over: what the faster ones had
// delivered comes round again, and is skipped as done, not delivered a
// second time.
func TestRelayPartitionsChangeWithoutRepeats(t *testing.T) {
	ns := natstest.Embedded(t)
	cp := cpfake.New(t, cpExtUser, cpExtPassword, relayServices()...)
	d := relayDeployment(t, ns.ClientURL(), cp)
	stop := d.startProcessors("forward")
	want, total := sendBacklog(t, d, 8, 3)
	eventually(t, "the backlog delivered", func() bool { return len(cp.Received()) >= total })
	stop()
	// The same deployment restarted with 2 groups (the last setting of a
	// variable wins).
	d2 := relayDeployment(t, ns.ClientURL(), cp, "CCRELAY_FORWARD_PARTITIONS=2", "CCRELAY_SUBJECT_PREFIX="+d.subjects.Prefix())
	d2.startProcessors("forward")
	// Message 3 of each conversation (0 to 2 were the backlog).
	more, n := map[string][]string{}, 0
	for c := 0; c < 8; c++ {
		for _, p := range []string{"twilio", "facebook", "sinch", "wavy"} {
			msg := conversationMessage(t, p, c, 3)
			r := d2.post(msg.path, msg.header, msg.body)
			if r.status != http.StatusAccepted {
				t.Fatalf("%s %d/3: status %d %s", p, c, r.status, r.body)
			}
			conv := msg.typ + "/" + msg.service + "|" + cpfake.Conversation(msg.typ, msg.service, msg.body)
			more[conv] = append(more[conv], r.json(t)["id"].(string))
			n++
		}
	}
	eventually(t, "the new messages delivered", func() bool { return len(cp.Received()) >= total+n })
	if !strings.Contains(d2.logs.String(), `"replaces":true`) {
		t.Fatal("no relay consumer was placed anew: the partitions did not change")
	}
	time.Sleep(time.Second) // repeats, if any, would come meanwhile
	for conv, ids := range more {
		want[conv] = append(want[conv], ids...)
	}
	checkInOrderOnce(t, cp.Received(), want)
}
