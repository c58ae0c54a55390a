package e2e_test

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/forward/parking"
	"github.com/ccrelay/ccrelay/test/fakes/cpfake"
	"github.com/ccrelay/ccrelay/test/metricstest"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// relayPartitions is CCRELAY_FORWARD_PARTITIONS of relayDeployment.
const relayPartitions = 4

// groupOf is the partition group of message m's conversation.
func groupOf(t testing.TB, m message) int {
	t.Helper()
	w, err := messages.DecodeWebhook(m.typ, m.service, m.body)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(messages.Partition(w.Conversation), 16, 8)
	if err != nil {
		t.Fatal(err)
	}
	return int(n) % relayPartitions
}

// sameGroup returns a conversation of provider p and one of provider q
// (another, if p is q) in the same partition group.
func sameGroup(t testing.TB, p, q string) (int, int) {
	t.Helper()
	for a := 0; a < 50; a++ {
		for b := 0; b < 50; b++ {
			if p == q && a == b {
				continue
			}
			if groupOf(t, conversationMessage(t, p, a, 0)) == groupOf(t, conversationMessage(t, q, b, 0)) {
				return a, b
			}
		}
	}
	t.Fatal("no two conversations in one group")
	return 0, 0
}

// send posts message m of conversation c of provider p and returns its id.
func send(t *testing.T, d *deployment, p string, c, m int) string {
	t.Helper()
	msg := conversationMessage(t, p, c, m)
	r := d.post(msg.path, msg.header, msg.body)
	if r.status != http.StatusAccepted {
		t.Fatalf("%s %d/%d: status %d %s", p, c, m, r.status, r.body)
	}
	return r.json(t)["id"].(string)
}

// deliveredAt returns when Contact Pro took event id, or the zero time.
func deliveredAt(cp *cpfake.Server, id string) time.Time {
	for _, r := range cp.Received() {
		if r.EventID == id {
			return r.At
		}
	}
	return time.Time{}
}

// idsOf are the event ids Contact Pro took, in order, of those in want.
func idsOf(cp *cpfake.Server, want []string) []string {
	var out []string
	for _, r := range cp.Received() {
		if slices.Contains(want, r.EventID) {
			out = append(out, r.EventID)
		}
	}
	return out
}

func parkedStore(t *testing.T, d *deployment) *parking.Store {
	t.Helper()
	var st *parking.Store
	eventually(t, "the relay's bucket and stream", func() bool {
		var err error
		st, err = parking.Open(context.Background(), d.js, d.subjects)
		return err == nil
	})
	return st
}

func parked(t *testing.T, st *parking.Store) []*parking.Conversation {
	t.Helper()
	list, err := st.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// forwardMetric sums a relay series over the deployment's processors.
func forwardMetric(t *testing.T, d *deployment, name string, labels map[string]string) float64 {
	t.Helper()
	var sum float64
	for _, reg := range d.procRegs {
		sum += metricstest.Value(t, reg, name, labels)
	}
	return sum
}

// TestRelayParksAFailingConversation: Contact Pro answers 500 to one
// message, every time. After CCRELAY_FORWARD_PARK_AFTER (the default,
// 20 attempts) its conversation is parked, that message and the one after
// it, and the other conversation of its partition group, which waited
// behind it, is delivered; a later message of the parked conversation is
// parked at once, never sent. 'relay held' (the store) names the
// destination and why; the metrics count the parked conversation and
// messages by destination; the log line names destination, conversation,
// dedup id and reason. Before, the group waited for as long as the
// stream kept the message.
func TestRelayParksAFailingConversation(t *testing.T) {
	ns := natstest.Embedded(t)
	cp := cpfake.New(t, cpExtUser, cpExtPassword, relayServices()...)
	d := relayDeployment(t, ns.ClientURL(), cp)
	d.startProcessors("forward")
	a, b := sameGroup(t, "twilio", "twilio")

	poison := conversationMessage(t, "twilio", a, 0)
	cp.Reject("messaging:twilio:us:"+formValue(t, poison.body, "MessageSid"), http.StatusInternalServerError)
	a0 := send(t, d, "twilio", a, 0)
	a1 := send(t, d, "twilio", a, 1)
	sentB := time.Now()
	b0 := send(t, d, "twilio", b, 0)
	b1 := send(t, d, "twilio", b, 1)

	eventually(t, "the other conversation of the group is delivered", func() bool { return len(idsOf(cp, []string{b0, b1})) == 2 })
	waited := deliveredAt(cp, b0).Sub(sentB)
	t.Logf("MEASURED: the other conversation of the parked one's group waited %v (CCRELAY_FORWARD_PARK_AFTER=attempts=20,age=15m, CCRELAY_FORWARD_BACKOFF=50ms,100ms,200ms; Contact Pro tried %d times)",
		waited.Round(time.Millisecond), cp.Attempts(a0))
	if got := idsOf(cp, []string{b0, b1}); got[0] != b0 {
		t.Errorf("delivered %v, want %s then %s", got, b0, b1)
	}

	st := parkedStore(t, d)
	var c *parking.Conversation
	eventually(t, "the conversation is parked", func() bool {
		list := parked(t, st)
		if len(list) == 1 && list[0].Waiting() == 2 {
			c = list[0]
		}
		return c != nil
	})
	if c.Destination != "twilio/us" || c.State != parking.Parked || c.Cause != "attempts" || c.Head != a0 ||
		!strings.Contains(c.Reason, "20 attempts") || !strings.Contains(c.Reason, "answered 500") {
		t.Errorf("parked as %+v", c)
	}
	if n := cp.Attempts(a0); n != 20 {
		t.Errorf("the failing message was sent %d times, want 20 (the bound)", n)
	}
	a2 := send(t, d, "twilio", a, 2)
	eventually(t, "a later message is parked behind it", func() bool {
		list := parked(t, st)
		return len(list) == 1 && list[0].Waiting() == 3
	})
	for _, id := range []string{a1, a2} {
		if n := cp.Attempts(id); n != 0 {
			t.Errorf("%s, behind the parked message, was sent %d times", id, n)
		}
	}
	eventually(t, "the metrics count it by destination", func() bool {
		tw := map[string]string{"destination": "twilio/us"}
		return forwardMetric(t, d, "ccrelay_forward_parked_conversations", tw) == 1 &&
			forwardMetric(t, d, "ccrelay_forward_parked_messages", tw) == 3 &&
			forwardMetric(t, d, "ccrelay_forward_parked_conversations", map[string]string{"destination": "facebook/page1"}) == 0 &&
			forwardMetric(t, d, "ccrelay_forward_parks_total", map[string]string{"destination": "twilio/us", "reason": "attempts"}) == 1 &&
			forwardMetric(t, d, "ccrelay_forward_held_partitions", tw) == 0
	})
	logs := d.logs.String()
	for _, want := range []string{`"msg":"conversation parked"`, `"destination":"twilio/us"`, `"conversation":"` + c.ID + `"`, `"dedup_id":"` + a0 + `"`, `"reason":"20 attempts`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs lack %s", want)
		}
	}
}

// formValue reads a form body's field.
func formValue(t testing.TB, body []byte, key string) string {
	t.Helper()
	for _, kv := range strings.Split(string(body), "&") {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			return v
		}
	}
	t.Fatalf("no %s in %s", key, body)
	return ""
}

// TestRelayReleaseDeliversInOrder: once Contact Pro takes the message, a
// release (as 'ccrelay relay release' does it) has one of three replicas
// deliver the parked messages in order, then the messages parked while
// it ran, then the conversation is back: the next one is delivered as any
// other. Each message once, in order.
func TestRelayReleaseDeliversInOrder(t *testing.T) {
	ns := natstest.Embedded(t)
	releaseInOrder(t, ns.ClientURL())
}

// TestRelayReleaseOnCluster is TestRelayReleaseDeliversInOrder on a
// three-node JetStream cluster, every stream and bucket on three nodes:
// the parked state is read from its stream's leader and changed by
// compare-and-set there.
func TestRelayReleaseOnCluster(t *testing.T) {
	cluster := natstest.NewCluster(t, 3)
	releaseInOrder(t, cluster.URLs(t), "CCRELAY_STREAM_REPLICAS=3", "CCRELAY_NATS_CONNECT_TIMEOUT=60s")
}

func releaseInOrder(t *testing.T, natsURL string, extra ...string) {
	cp := cpfake.New(t, cpExtUser, cpExtPassword, relayServices()...)
	d := relayDeployment(t, natsURL, cp, append(extra, "CCRELAY_FORWARD_PARK_AFTER=attempts=3")...)
	for i := 0; i < 3; i++ {
		d.startProcessors("forward")
	}
	a, b := sameGroup(t, "facebook", "facebook")
	ids := []string{send(t, d, "facebook", a, 0)}
	cp.Reject(ids[0], http.StatusBadGateway)
	ids = append(ids, send(t, d, "facebook", a, 1), send(t, d, "facebook", a, 2))
	sentB := time.Now()
	b0 := send(t, d, "facebook", b, 0)
	eventually(t, "the other conversation is delivered", func() bool { return !deliveredAt(cp, b0).IsZero() })
	t.Logf("MEASURED: the other conversation of the parked one's group waited %v (CCRELAY_FORWARD_PARK_AFTER=attempts=3, CCRELAY_FORWARD_BACKOFF=50ms,100ms,200ms)",
		deliveredAt(cp, b0).Sub(sentB).Round(time.Millisecond))
	st := parkedStore(t, d)
	eventually(t, "parked with its three messages", func() bool {
		list := parked(t, st)
		return len(list) == 1 && list[0].Waiting() == 3
	})
	id := parked(t, st)[0].ID

	cp.Reject(ids[0], 0) // the operator fixed it
	cp.SetDelay(150 * time.Millisecond)
	if _, err := st.RequestRelease(context.Background(), id[:10]); err != nil {
		t.Fatal(err)
	}
	// More of the conversation arrives while the release runs.
	ids = append(ids, send(t, d, "facebook", a, 3), send(t, d, "facebook", a, 4))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if c, err := st.Await(ctx, id, 50*time.Millisecond); err != nil || c != nil {
		t.Fatalf("release: %+v %v", c, err)
	}
	ids = append(ids, send(t, d, "facebook", a, 5))
	eventually(t, "every message of the conversation delivered", func() bool { return len(idsOf(cp, ids)) >= len(ids) })
	time.Sleep(300 * time.Millisecond) // time for a duplicate to show
	if got := idsOf(cp, ids); !slices.Equal(got, ids) {
		t.Errorf("delivered\n %v\nwant, once each and in order,\n %v", got, ids)
	}
	if n := len(parked(t, st)); n != 0 {
		t.Errorf("%d conversations still parked", n)
	}
	logs := d.logs.String()
	if n := strings.Count(logs, `"msg":"conversation released"`); n != 1 {
		t.Errorf("%d replicas released it, want one", n)
	}
	if n := strings.Count(logs, `"state":"releasing"`); n < 2 {
		t.Errorf("%d messages were parked behind it while it was released, want the 2 sent meanwhile", n)
	}
	eventually(t, "nothing parked in the metrics", func() bool {
		return forwardMetric(t, d, "ccrelay_forward_parked_conversations", map[string]string{"destination": "facebook/page1"}) == 0
	})
}

// TestRelayDropDeadLetters: a dropped conversation's messages are the
// relay's dead letters, in order; its next message is delivered at once;
// 'ccrelay dlq requeue' brings the dropped ones back.
func TestRelayDropDeadLetters(t *testing.T) {
	ns := natstest.Embedded(t)
	cp := cpfake.New(t, cpExtUser, cpExtPassword, relayServices()...)
	d := relayDeployment(t, ns.ClientURL(), cp, "CCRELAY_FORWARD_PARK_AFTER=attempts=2")
	d.startProcessors("forward")
	a0 := send(t, d, "wavy", 1, 0)
	cp.Reject(a0, http.StatusServiceUnavailable)
	a1 := send(t, d, "wavy", 1, 1)
	st := parkedStore(t, d)
	eventually(t, "parked", func() bool {
		list := parked(t, st)
		return len(list) == 1 && list[0].Waiting() == 2
	})
	c := parked(t, st)[0]
	if _, n, err := st.Drop(context.Background(), c.ID, "test operator", "forward", processors.NewDeadLetters(d.js, d.subjects)); err != nil || n != 2 {
		t.Fatalf("drop: %d, %v", n, err)
	}
	letters := listDLQ(t, d)
	if len(letters) != 2 || letters[0].Header.Get(messages.HeaderID) != a0 || letters[1].Header.Get(messages.HeaderID) != a1 || letters[0].Processor != "forward" {
		t.Fatalf("dead letters: %+v", letters)
	}
	a2 := send(t, d, "wavy", 1, 2)
	eventually(t, "the next message is delivered", func() bool { return !deliveredAt(cp, a2).IsZero() })
	cp.Reject(a0, 0)
	requeue(t, d, letters[0].Seq)
	requeue(t, d, letters[1].Seq)
	eventually(t, "the requeued ones are delivered", func() bool { return len(idsOf(cp, []string{a0, a1})) == 2 })
	if got := idsOf(cp, []string{a0, a1, a2}); !slices.Equal(got, []string{a2, a0, a1}) {
		t.Errorf("delivered %v, want %s, then %s and %s requeued", got, a2, a0, a1)
	}
}

// TestRelayDestinationsDoNotShareGroups: a Twilio message Contact Pro
// keeps answering 500 holds its own group of twilio/us only: a Messenger
// message of the same group number goes through at once, long before the
// Twilio conversation is parked. The held-partition metric names the
// destination that waits, and the other has nothing held. Before, the 16
// groups were shared by every destination, and one held message of one
// held the other's customers.
func TestRelayDestinationsDoNotShareGroups(t *testing.T) {
	ns := natstest.Embedded(t)
	cp := cpfake.New(t, cpExtUser, cpExtPassword, relayServices()...)
	d := relayDeployment(t, ns.ClientURL(), cp)
	d.startProcessors("forward")
	tw, fb := sameGroup(t, "twilio", "facebook")
	msg := conversationMessage(t, "twilio", tw, 0)
	t0 := "messaging:twilio:us:" + formValue(t, msg.body, "MessageSid")
	cp.Reject(t0, http.StatusInternalServerError)
	if id := send(t, d, "twilio", tw, 0); id != t0 {
		t.Fatalf("id %s, want %s", id, t0)
	}
	eventually(t, "the Twilio message fails", func() bool { return cp.Attempts(t0) >= 2 })
	f0 := send(t, d, "facebook", fb, 0)
	eventually(t, "the Messenger message is delivered", func() bool { return !deliveredAt(cp, f0).IsZero() })
	st := parkedStore(t, d)
	if n := len(parked(t, st)); n != 0 || cp.Attempts(t0) >= 20 {
		t.Fatalf("the Messenger message waited until the Twilio conversation was parked (%d parked, %d attempts)", n, cp.Attempts(t0))
	}
	eventually(t, "the held group is twilio/us's only", func() bool {
		return forwardMetric(t, d, "ccrelay_forward_held_partitions", map[string]string{"destination": "twilio/us"}) == 1 &&
			forwardMetric(t, d, "ccrelay_forward_held_partitions", map[string]string{"destination": "facebook/page1"}) == 0 &&
			forwardMetric(t, d, "ccrelay_forward_oldest_unsent_age_seconds", map[string]string{"destination": "facebook/page1"}) == 0
	})
}

// TestRelayHandPublishedMessages: a message published by hand whose ce-id
// holds a control character can never be sent: it is a dead letter at its
// first delivery, never sent, and its conversation goes on. One Contact
// Pro refuses with 500, every time, is parked after the bound, not retried
// for as long as the stream keeps it.
func TestRelayHandPublishedMessages(t *testing.T) {
	ns := natstest.Embedded(t)
	cp := cpfake.New(t, cpExtUser, cpExtPassword, relayServices()...)
	d := relayDeployment(t, ns.ClientURL(), cp, "CCRELAY_FORWARD_PARK_AFTER=attempts=4")
	d.startProcessors("forward")
	ctx := context.Background()
	publish := func(m message, header nats.Header) {
		t.Helper()
		w, err := messages.DecodeWebhook(m.typ, m.service, m.body)
		if err != nil {
			t.Fatal(err)
		}
		subject := d.subjects.Messaging(m.typ, m.service, messages.Partition(w.Conversation))
		if _, err := d.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Header: header, Data: m.body}); err != nil {
			t.Fatal(err)
		}
	}
	bad := conversationMessage(t, "twilio", 3, 0)
	badID := "messaging:twilio:us:" + formValue(t, bad.body, "MessageSid") + "\x01"
	publish(bad, nats.Header{messages.HeaderID: {badID}})
	next := send(t, d, "twilio", 3, 1)
	eventually(t, "the conversation goes on", func() bool { return !deliveredAt(cp, next).IsZero() })
	letters := listDLQ(t, d)
	if len(letters) != 1 || letters[0].Header.Get(messages.HeaderID) != badID || letters[0].Deliveries != 1 || !strings.Contains(letters[0].Error, "control character") {
		t.Fatalf("dead letters: %+v", letters)
	}
	if n := cp.Attempts(badID); n != 0 {
		t.Errorf("sent %d times", n)
	}

	refused := conversationMessage(t, "twilio", 4, 0)
	refusedID := "messaging:twilio:us:" + formValue(t, refused.body, "MessageSid")
	cp.Reject(refusedID, http.StatusInternalServerError)
	publish(refused, nil) // bare: the id derives from the body
	st := parkedStore(t, d)
	eventually(t, "the refused one is parked", func() bool {
		list := parked(t, st)
		return len(list) == 1 && list[0].Head == refusedID
	})
	time.Sleep(500 * time.Millisecond)
	if n := cp.Attempts(refusedID); n != 4 {
		t.Errorf("sent %d times, want 4 (the bound), then parked", n)
	}
}

// TestRelayDoesNotParkWhileContactProIsDown: while Contact Pro is down
// (its HEAD fails too), no conversation is parked however often their
// messages fail: all wait, and go in order once it is back, without an
// operator. Also when it comes back between a refused delivery and the
// relay's question whether it answers (the HEAD then says it does, about
// a message it refused while down): that once parked a conversation
// whose head had failed only because Contact Pro was down.
func TestRelayDoesNotParkWhileContactProIsDown(t *testing.T) {
	for _, tc := range []struct {
		name string
		up   func(*cpfake.Server)
	}{
		{"back up", (*cpfake.Server).Up},
		{"back up right after a refusal", (*cpfake.Server).UpAfterNextRefusal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := natstest.Embedded(t)
			cp := cpfake.New(t, cpExtUser, cpExtPassword, relayServices()...)
			cp.Down(http.StatusServiceUnavailable)
			d := relayDeployment(t, ns.ClientURL(), cp, "CCRELAY_FORWARD_PARK_AFTER=attempts=2")
			d.startProcessors("forward")
			want, total := sendBacklog(t, d, 2, 2)
			eventually(t, "the relay keeps trying", func() bool { return cp.Refused()["down"] >= 40 && cp.Heads() >= 10 })
			st := parkedStore(t, d)
			if n := len(parked(t, st)); n != 0 {
				t.Fatalf("%d conversations parked while Contact Pro was down", n)
			}
			if !strings.Contains(d.logs.String(), `"msg":"not parking: the destination does not answer, so every conversation waits"`) {
				t.Error("the logs do not say why nothing is parked")
			}
			tc.up(cp)
			eventually(t, "the backlog drains", func() bool { return len(cp.Received()) >= total })
			checkInOrderOnce(t, cp.Received(), want)
			if n := len(parked(t, st)); n != 0 {
				t.Errorf("%d conversations parked", n)
			}
		})
	}
}

// TestRelayConsumersMoveWithoutRedelivery: an upgrade from the consumers
// every destination shared (CCRELAY_FORWARD_P<n> on all destinations'
// subjects) to one per destination and group: the new consumers start
// where the old ones had got to, so what they delivered is not delivered
// again and what they held unanswered (a replica stopped mid-delivery) is
// not skipped; the old consumers are gone or serve one destination.
func TestRelayConsumersMoveWithoutRedelivery(t *testing.T) {
	ns := natstest.Embedded(t)
	cp := cpfake.New(t, cpExtUser, cpExtPassword, relayServices()...)
	d := relayDeployment(t, ns.ClientURL(), cp)
	ctx := context.Background()
	// The old relay's consumers, as it made them: group i of every
	// destination in one.
	var keys []string
	for _, s := range relayServices() {
		keys = append(keys, s.Type+"/"+s.Name)
	}
	slices.Sort(keys)
	var old []jetstream.Consumer
	for i := 0; i < relayPartitions; i++ {
		var filters []string
		for _, key := range keys {
			typ, svc, _ := strings.Cut(key, "/")
			for _, tok := range messages.PartitionTokens(i, relayPartitions) {
				if typ == "sinch" {
					filters = append(filters, d.subjects.SinchPartitionFilter(svc, tok))
				} else {
					filters = append(filters, d.subjects.Messaging(typ, svc, tok))
				}
			}
		}
		for _, tok := range messages.PartitionTokens(i, relayPartitions) {
			filters = append(filters, d.subjects.SinchLegacyPartitionFilter(tok))
		}
		c, err := d.js.CreateConsumer(ctx, d.subjects.EventsStream(), jetstream.ConsumerConfig{
			Durable: processors.PartitionConsumerName(d.subjects, "forward", i), DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: -1, MaxAckPending: 1, FilterSubjects: filters, AckWait: time.Hour,
		})
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, c)
	}
	// What the old relay delivered: all of it.
	before, n := sendBacklog(t, d, 3, 2)
	for _, c := range old {
		for {
			m, err := c.Next(jetstream.FetchMaxWait(200 * time.Millisecond))
			if err != nil {
				break
			}
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	// One more, which the old relay took and never answered.
	inFlight := send(t, d, "twilio", 9, 0)
	var took bool
	for _, c := range old {
		if m, err := c.Next(jetstream.FetchMaxWait(200 * time.Millisecond)); err == nil {
			took = m.Headers().Get(messages.HeaderID) == inFlight
		}
	}
	if !took {
		t.Fatal("the old consumers did not hand out the last message")
	}
	after := send(t, d, "twilio", 9, 1)

	d.startProcessors("forward")
	eventually(t, "the unanswered message and the next are delivered", func() bool { return len(idsOf(cp, []string{inFlight, after})) == 2 })
	time.Sleep(500 * time.Millisecond)
	var all []string
	for _, ids := range before {
		all = append(all, ids...)
	}
	if got := idsOf(cp, all); len(got) != 0 {
		t.Errorf("%d of the %d messages the old consumers delivered were delivered again", len(got), n)
	}
	if got := idsOf(cp, []string{inFlight, after}); !slices.Equal(got, []string{inFlight, after}) {
		t.Errorf("delivered %v, want %s then %s", got, inFlight, after)
	}
	st, err := d.js.Stream(ctx, d.subjects.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	lister := st.ListConsumers(ctx)
	for info := range lister.Info() {
		names[info.Name] = true
		if info.Paused {
			t.Errorf("consumer %s is still paused", info.Name)
		}
		// The destination of a filter is what precedes its token; Sinch
		// callbacks stored before subjects named the service go with
		// sinch/svc1, the only Sinch destination.
		dests := map[string]bool{}
		for _, f := range info.Config.FilterSubjects {
			if !strings.Contains(f, ".sinch.*.*.") {
				dests[f[:strings.LastIndex(f, ".")]] = true
			}
		}
		if len(dests) > 1 {
			t.Errorf("consumer %s serves %d destinations: %v", info.Name, len(dests), slices.Sorted(maps.Keys(dests)))
		}
	}
	for i := 0; i < len(keys)*relayPartitions; i++ {
		if name := processors.PartitionConsumerName(d.subjects, "forward", i); !names[name] {
			t.Errorf("no consumer %s", name)
		}
	}
}
