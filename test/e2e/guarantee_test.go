package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/deliveries"
	"github.com/ccrelay/ccrelay/processors/service"
	"github.com/ccrelay/ccrelay/test/fakes/c4cfake"
	"github.com/ccrelay/ccrelay/test/fakes/cmifake"
	"github.com/ccrelay/ccrelay/test/fakes/cpfake"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// The guarantee contract: what each processor promises when an event is
// handled more than once (README, Processors: "A guarantee per processor,
// and no more"). Each row of guaranteeRows is one processor ccrelay ships,
// the guarantee it must keep, and how to deploy it with its fakes, feed it
// events through ingest and watch what it did; the contract of its
// guarantee runs against every row, two replicas of the processor sharing
// the work. A processor without a row, or one declaring another guarantee
// than its row expects, fails TestGuaranteeCoversEveryProcessor.
//
//   - processors.Idempotent: a set of events applied once in order, then
//     all of them again, each twice and shuffled (replayed as 'ccrelay
//     replay' does: same ce-id, new Nats-Msg-Id), ends in the state the
//     first pass left; every replay is handled by the processor (none is
//     skipped by a ledger) and the ledger holds nothing of it.
//   - processors.Once: the side effect of an event happens exactly once
//     when the event is replayed after it completed, replayed while the
//     original is still in progress (the fake answering slowly), and when
//     one replica does the work while the other has its copy; every copy
//     that found the work done is counted as skipped_duplicate.

// storedEvent is an event ingest stored: its dedup id (ce-id) and stream
// sequence.
type storedEvent struct {
	id  string
	seq uint64
}

// guaranteeRow is one processor and the guarantee it must keep.
type guaranteeRow struct {
	// name is the processor's, as service.Names has it.
	name      string
	guarantee processors.Guarantee
	// deploy starts ingest and two replicas of the processor, with its
	// fakes, until the test ends.
	deploy func(t *testing.T, natsURL string) *guaranteeRig
}

// guaranteeRig is one deployment of a row: how to produce its events and
// observe what the processor did with them.
type guaranteeRig struct {
	d *deployment
	// send produces event n through ingest, as its sender does. For a Once
	// row every n has a side effect of its own; for an Idempotent row, n
	// runs through script, in the order the events happened.
	send func(t *testing.T, n int) storedEvent

	// Once rows.
	//
	// effects counts the times the side effect of ev happened.
	effects func(t *testing.T, ev storedEvent) int
	// started reports that the side effect of ev reached the fake (and,
	// while slow, has not completed).
	started func(t *testing.T, ev storedEvent) bool
	// slow makes the fake of the side effect answer slowly, while on.
	slow func(on bool)
	// serial: the processor's consumers hold one message of a partition
	// unanswered across replicas (processors.Processor.Partitions), so an
	// event and its copy are handled one after the other, never at once.
	serial bool

	// Idempotent rows.
	//
	// script is the number of events, want the observable state they end
	// in, state the observable state now.
	script int
	want   map[string]string
	state  func(t *testing.T) map[string]string
}

// guaranteeSlow is how long a slow fake takes to answer: long enough for
// a copy of the event to arrive meanwhile, short against every retry
// bound (CCRELAY_PROCESS_MAX_DELIVER deliveries of a copy waiting for it,
// CCRELAY_FORWARD_TIMEOUT).
const guaranteeSlow = 700 * time.Millisecond

// guaranteeBackoff spaces the retries of a copy that waits for the
// original (20 deliveries of it take over 5 s: well past guaranteeSlow).
const guaranteeBackoff = "CCRELAY_PROCESS_BACKOFF=100ms,200ms,300ms"

// onceEnv configures a Once row that is not serial: a replica works on
// one delivery at a time, so that a copy stored while one replica does
// the work goes to the other.
var onceEnv = []string{guaranteeBackoff, "CCRELAY_PROCESS_CONCURRENCY=1"}

func guaranteeRows() []guaranteeRow {
	return []guaranteeRow{
		{name: "attachments", guarantee: processors.Once, deploy: attachmentsRig},
		{name: "summaries", guarantee: processors.Idempotent, deploy: summariesRig},
		{name: "deliveries", guarantee: processors.Idempotent, deploy: deliveriesRig},
		{name: "forward", guarantee: processors.Once, deploy: forwardRig},
	}
}

// storedOf is the event an answer of ingest says it stored.
func storedOf(t *testing.T, r response) storedEvent {
	t.Helper()
	if r.status != http.StatusAccepted {
		t.Fatalf("ingest: %d %s, want 202", r.status, r.body)
	}
	m := r.json(t)
	id, _ := m["id"].(string)
	seq, _ := m["seq"].(float64)
	if id == "" || seq == 0 {
		t.Fatalf("ingest answer without id or seq: %s", r.body)
	}
	return storedEvent{id: id, seq: uint64(seq)}
}

var replaySeq atomic.Int64 // distinct Nats-Msg-Id per replayed copy

// replayStored stores ev again as 'ccrelay replay' does: its subject, body
// and headers (ce-id among them), and a new Nats-Msg-Id, so that
// JetStream's dedup window keeps the copy.
func replayStored(t *testing.T, d *deployment, ev storedEvent) {
	t.Helper()
	ctx := context.Background()
	st, err := d.js.Stream(ctx, d.subjects.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(ctx, ev.seq)
	if err != nil {
		t.Fatalf("get seq %d: %v", ev.seq, err)
	}
	if got := m.Header.Get("ce-id"); got != ev.id {
		t.Fatalf("seq %d has ce-id %q, want %q", ev.seq, got, ev.id)
	}
	h := make(nats.Header, len(m.Header))
	for k, v := range m.Header {
		h[k] = slices.Clone(v)
	}
	h.Set(nats.MsgIdHdr, fmt.Sprintf("guarantee-replay:%d", replaySeq.Add(1)))
	ack, err := d.js.PublishMsg(ctx, &nats.Msg{Subject: m.Subject, Header: h, Data: m.Data}, jetstream.WithExpectStream(d.subjects.EventsStream()))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Duplicate {
		t.Fatalf("the copy of seq %d was taken for a duplicate", ev.seq)
	}
}

// tally is what the replicas of a processor did with its deliveries so
// far: per replica, the count of each outcome.
type tally []map[string]float64

// tallyOf reads the tally of processor, gathering each replica's metrics
// once (the relay's collectors ask JetStream at every gather).
func tallyOf(t *testing.T, d *deployment, processor string) tally {
	t.Helper()
	var out tally
	for _, reg := range d.procRegs {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		by := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() != "ccrelay_processor_messages_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["processor"] == processor {
					by[labels["outcome"]] += m.GetCounter().GetValue()
				}
			}
		}
		out = append(out, by)
	}
	return out
}

// count sums outcomes over the replicas.
func (ta tally) count(outcomes ...string) float64 {
	var n float64
	for _, by := range ta {
		for _, o := range outcomes {
			n += by[o]
		}
	}
	return n
}

// handled counts the deliveries that ended done, or skipped as done
// before.
func (ta tally) handled() float64 {
	return ta.count(processors.OutcomeDone, processors.OutcomeSkipped)
}

// since is, per replica, how many deliveries ended in any way but a dead
// letter since before.
func (ta tally) since(before tally) []float64 {
	var out []float64
	for r, by := range ta {
		var n float64
		for _, o := range []string{processors.OutcomeDone, processors.OutcomeSkipped, processors.OutcomeRetried, processors.OutcomeIgnored} {
			n += by[o] - before[r][o]
		}
		out = append(out, n)
	}
	return out
}

// ledgerKeys lists the ledger's entries of processor.
func ledgerKeys(t *testing.T, d *deployment, processor string) []string {
	t.Helper()
	ctx := context.Background()
	kv, err := d.js.KeyValue(ctx, d.subjects.LedgerBucket())
	if err != nil {
		t.Fatal(err)
	}
	l, err := kv.ListKeysFiltered(ctx, processor+".>")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Stop() }()
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	return keys
}

// TestGuarantee runs the contract of its guarantee against every row.
func TestGuarantee(t *testing.T) {
	ns := natstest.Embedded(t)
	for _, row := range guaranteeRows() {
		t.Run(row.name+" "+row.guarantee.String(), func(t *testing.T) {
			rig := row.deploy(t, ns.ClientURL())
			switch row.guarantee {
			case processors.Idempotent:
				idempotentContract(t, row.name, rig)
			case processors.Once:
				onceContract(t, row.name, rig)
			default:
				t.Fatalf("no contract for guarantee %v", row.guarantee)
			}
		})
	}
}

// idempotentContract: the events once, in order, then again, each twice
// and shuffled, end in the same state, with no ledger.
func idempotentContract(t *testing.T, name string, rig *guaranteeRig) {
	d := rig.d
	var evs []storedEvent
	for i := 0; i < rig.script; i++ {
		evs = append(evs, rig.send(t, i))
	}
	eventually(t, "every event handled", func() bool { return tallyOf(t, d, name).handled() >= float64(len(evs)) })
	first := rig.state(t)
	if !maps.Equal(first, rig.want) {
		t.Fatalf("the events applied once, in order, left\n%v\nwant\n%v", first, rig.want)
	}

	seed := uint64(time.Now().UnixNano())
	copies := append(slices.Clone(evs), evs...)
	rand.New(rand.NewPCG(seed, 0)).Shuffle(len(copies), func(i, j int) { copies[i], copies[j] = copies[j], copies[i] })
	var order []string
	for _, ev := range copies {
		order = append(order, fmt.Sprint(ev.seq))
		replayStored(t, d, ev)
	}
	t.Logf("replayed every event twice, shuffled (seed %d): sequences %s", seed, strings.Join(order, " "))
	var ta tally
	eventually(t, "every replay handled", func() bool {
		ta = tallyOf(t, d, name)
		return ta.handled() >= float64(len(evs)+len(copies))
	})
	if again := rig.state(t); !maps.Equal(again, first) {
		t.Errorf("after the replays, duplicated and shuffled:\n%v\nwas\n%v", again, first)
	}
	if n := ta.count(processors.OutcomeSkipped); n != 0 {
		t.Errorf("%v replays skipped as done: an idempotent processor keeps no ledger, its handler must apply them", n)
	}
	if keys := ledgerKeys(t, d, name); len(keys) != 0 {
		t.Errorf("the ledger holds %d entries of an idempotent processor: %v", len(keys), keys)
	}
}

// onceContract: the side effect of an event happens once, however its
// copies come.
func onceContract(t *testing.T, name string, rig *guaranteeRig) {
	d := rig.d
	n := 0
	next := func() int { n++; return n }
	// settled waits until want more deliveries than before ended (done, or
	// skipped as done), and checks that skipped of them were skipped.
	settled := func(t *testing.T, before tally, want, skipped int) tally {
		t.Helper()
		var now tally
		eventually(t, fmt.Sprintf("%d deliveries handled", want), func() bool {
			now = tallyOf(t, d, name)
			return now.handled()-before.handled() >= float64(want)
		})
		if got := now.count(processors.OutcomeSkipped) - before.count(processors.OutcomeSkipped); got != float64(skipped) {
			t.Errorf("%v copies skipped as done (skipped_duplicate), want %d", got, skipped)
		}
		return now
	}
	once := func(t *testing.T, ev storedEvent) {
		t.Helper()
		if got := rig.effects(t, ev); got != 1 {
			t.Errorf("the side effect of %s happened %d times, want once", ev.id, got)
		}
	}

	t.Run("replayed after it completed", func(t *testing.T) {
		before := tallyOf(t, d, name)
		ev := rig.send(t, next())
		eventually(t, "the side effect", func() bool { return rig.effects(t, ev) >= 1 })
		eventually(t, "the original recorded", func() bool { return tallyOf(t, d, name).handled() > before.handled() })
		replayStored(t, d, ev)
		replayStored(t, d, ev)
		settled(t, before, 3, 2)
		once(t, ev)
	})

	t.Run("replayed while the original is in progress", func(t *testing.T) {
		before := tallyOf(t, d, name)
		rig.slow(true)
		defer rig.slow(false)
		ev := rig.send(t, next())
		eventually(t, "the side effect under way", func() bool { return rig.started(t, ev) })
		replayStored(t, d, ev)
		replayStored(t, d, ev)
		if rig.effects(t, ev) != 0 {
			t.Fatal("the side effect completed before its copies were stored: the fake is not slow enough to test this")
		}
		settled(t, before, 3, 2)
		once(t, ev)
	})

	t.Run("handled by two replicas at once", func(t *testing.T) {
		if len(d.procRegs) != 2 {
			t.Fatalf("%d replicas of the processor, want 2", len(d.procRegs))
		}
		// A replica of a row that is not serial works on one delivery at
		// a time (onceEnv): while one does the event's work, slowly, its
		// copy can only go to the other. The copy is stored once the work
		// is under way, so the original holds the claim. (A copy that
		// claims first, the original waiting for a retry meanwhile, is
		// processors' TestCopyDoesTheWorkFirst: it once left the original
		// waiting for an ack floor its own delivery held down, until it
		// was dead-lettered.)
		for i := 0; i < 2; i++ {
			before := tallyOf(t, d, name)
			rig.slow(true)
			ev := rig.send(t, next())
			eventually(t, "the side effect under way", func() bool { return rig.started(t, ev) })
			replayStored(t, d, ev)
			after := settled(t, before, 2, 1)
			rig.slow(false)
			once(t, ev)
			replicas := after.since(before)
			t.Logf("deliveries of %s and its copy, by replica: %v", ev.id, replicas)
			if !rig.serial && slices.Contains(replicas, 0) {
				t.Errorf("deliveries of the event and its copy, by replica: %v; want both replicas at it", replicas)
			}
		}
	})
}

// attachmentsRig: a chat per event, its one file in CMI; the side effect
// is the file's upload to the chat's activity in C4C.
func attachmentsRig(t *testing.T, natsURL string) *guaranteeRig {
	e := attachmentsDeployment(t, natsURL, onceEnv...)
	e.d.startProcessors("attachments")
	const uploads = "/sap/c4c/odata/v1/c4codataapi/SocialMediaActivityAttachmentFolderCollection"
	activities := map[string]string{} // by event id
	return &guaranteeRig{
		d: e.d,
		send: func(t *testing.T, n int) storedEvent {
			contact := fmt.Sprintf("guarantee-chat-%d", n)
			e.cmi.AddChat(cmifake.Chat{ContactID: contact, QueueAddress: "other@sms.example", Messages: []cmifake.Message{
				{ID: fmt.Sprintf("gm-%d", n), Attachments: []cmifake.File{{ID: fmt.Sprintf("ga-%d", n), Name: fmt.Sprintf("file-%d.txt", n), MimeType: "text/plain", Content: fmt.Appendf(nil, "file %d", n)}}},
			}})
			activity := e.sap.AddChatActivity(contact)
			ev := storedOf(t, e.call(t, contact, "Ended"))
			activities[ev.id] = activity
			return ev
		},
		effects: func(_ *testing.T, ev storedEvent) int { return len(e.sap.Attachments(activities[ev.id])) },
		started: func(t *testing.T, ev storedEvent) bool {
			for _, r := range e.sap.Requests() {
				var body struct{ ParentObjectID string }
				if r.Method == http.MethodPost && r.Path == uploads && json.Unmarshal(r.Body, &body) == nil && body.ParentObjectID == activities[ev.id] {
					return true
				}
			}
			return false
		},
		slow: func(on bool) {
			e.sap.ClearFaults()
			if on {
				e.sap.Inject(c4cfake.Fault{Method: http.MethodPost, Path: uploads, Delay: guaranteeSlow})
			}
		},
	}
}

// forwardRig: a conversation per event; the side effect is Contact Pro
// taking the message.
func forwardRig(t *testing.T, natsURL string) *guaranteeRig {
	cp := cpfake.New(t, cpExtUser, cpExtPassword, relayServices()...)
	d := relayDeployment(t, natsURL, cp)
	d.startProcessors("forward")
	d.startProcessors("forward")
	return &guaranteeRig{
		d: d, serial: true,
		send: func(t *testing.T, n int) storedEvent {
			msg := conversationMessage(t, "twilio", 100+n, 0)
			return storedOf(t, d.post(msg.path, msg.header, msg.body))
		},
		effects: func(_ *testing.T, ev storedEvent) int {
			n := 0
			for _, r := range cp.Received() {
				if r.EventID == ev.id {
					n++
				}
			}
			return n
		},
		started: func(_ *testing.T, ev storedEvent) bool { return cp.Attempts(ev.id) >= 1 },
		slow: func(on bool) {
			if on {
				cp.SetDelay(guaranteeSlow)
			} else {
				cp.SetDelay(0)
			}
		},
	}
}

// summariesRig: Contact Lens events of three calls, two of them for one
// call (two rules matched); the state is each call record's transcript
// and how many PATCHes wrote it.
func summariesRig(t *testing.T, natsURL string) *guaranteeRig {
	d, sap, s3 := summariesDeployment(t, natsURL, guaranteeBackoff, "CCRELAY_SUMMARIES_RECONCILE_EVERY=0")
	d.startProcessors("summaries")
	contacts := []string{"9a7e0001", "9a7e0002", "9a7e0001", "9a7e0003"} // by event
	calls := map[string]string{}                                         // contact -> call record id
	want := map[string]string{}
	for _, c := range contacts {
		if calls[c] != "" {
			continue
		}
		calls[c] = sap.AddPhoneCall(c)
		summary := "Summary of call " + c + "."
		s3.Put(t, bucket, "Analysis/Voice/2026/11/21/"+c+"_analysis_2026-11-21T09:57:00Z.json", analysisFile(summary))
		want[c] = fmt.Sprintf("%q after 1 PATCH(es)", summary)
	}
	return &guaranteeRig{
		d: d, script: len(contacts), want: want,
		send: func(t *testing.T, n int) storedEvent {
			h := jsonHeader()
			h.Set("x-api-key", connectAPIKey)
			return storedOf(t, d.post("/v1/connect/events", h, contactLens(fmt.Sprintf("guarantee-ev-%d", n), contacts[n], "Contact Lens Post Call Rules Matched")))
		},
		state: func(*testing.T) map[string]string {
			out := map[string]string{}
			for c, id := range calls {
				pc := sap.PhoneCall(id)
				out[c] = fmt.Sprintf("%q after %d PATCH(es)", pc.Transcript, pc.Patches)
			}
			return out
		},
	}
}

// deliveryReportAt is deliveryReport with its event time at.
func deliveryReportAt(t *testing.T, msgID, status string, at time.Time) []byte {
	t.Helper()
	const fixed = `"event_time":"2026-11-21T10:00:09.892757478Z"`
	b := deliveryReport(msgID, status)
	if !bytes.Contains(b, []byte(fixed)) {
		t.Fatal("the delivery report fixture changed its event time")
	}
	return bytes.Replace(b, []byte(fixed), fmt.Appendf(nil, `"event_time":%q`, at.Format(time.RFC3339Nano)), 1)
}

// deliveriesRig: reports of three messages; the state is each message's
// kept status and its event time.
func deliveriesRig(t *testing.T, natsURL string) *guaranteeRig {
	d := deploy(t, natsURL, 1, guaranteeBackoff)
	d.startProcessors("deliveries")
	d.startProcessors("deliveries")
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	type report struct {
		msg, status string
		at          time.Time
	}
	script := []report{
		{"01GUARANTEEA", "QUEUED_ON_CHANNEL", t0},
		{"01GUARANTEEA", "DELIVERED", t0.Add(time.Second)},
		{"01GUARANTEEA", "READ", t0.Add(2 * time.Second)},
		// At the same time, the rank decides.
		{"01GUARANTEEB", "QUEUED_ON_CHANNEL", t0},
		{"01GUARANTEEB", "DELIVERED", t0},
		// A later report wins over a higher rank.
		{"01GUARANTEEC", "FAILED", t0},
		{"01GUARANTEEC", "DELIVERED", t0.Add(time.Second)},
	}
	want := map[string]string{
		"01GUARANTEEA": "READ at " + t0.Add(2*time.Second).Format(time.RFC3339),
		"01GUARANTEEB": "DELIVERED at " + t0.Format(time.RFC3339),
		"01GUARANTEEC": "DELIVERED at " + t0.Add(time.Second).Format(time.RFC3339),
	}
	return &guaranteeRig{
		d: d, script: len(script), want: want,
		send: func(t *testing.T, n int) storedEvent {
			b := deliveryReportAt(t, script[n].msg, script[n].status, script[n].at)
			return storedOf(t, d.post("/v1/sinch/svc1", signed(sinchSecret, b, timeNow()), b))
		},
		state: func(t *testing.T) map[string]string {
			ctx := context.Background()
			kv, err := d.js.KeyValue(ctx, d.subjects.DeliveryStatusBucket())
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]string{}
			for msg := range want {
				e, err := kv.Get(ctx, deliveries.Key(msg))
				if err != nil {
					out[msg] = err.Error()
					continue
				}
				var s deliveries.Status
				if err := json.Unmarshal(e.Value(), &s); err != nil {
					t.Fatal(err)
				}
				out[msg] = fmt.Sprintf("%s at %s", s.Status, s.EventTime.Format(time.RFC3339))
			}
			return out
		},
	}
}

// TestGuaranteeCoversEveryProcessor: every processor ccrelay ships has a
// row in the guarantee contract, and the row expects the guarantee the
// processor declares.
func TestGuaranteeCoversEveryProcessor(t *testing.T) {
	ns := natstest.Embedded(t)
	d := deploy(t, ns.ClientURL(), 1)
	declared, err := service.Guarantees(d.cfg.Processors)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]processors.Guarantee{}
	for _, r := range guaranteeRows() {
		if _, dup := rows[r.name]; dup {
			t.Errorf("processor %q has two rows", r.name)
		}
		rows[r.name] = r.guarantee
	}
	for _, name := range service.Names() {
		g, ok := declared[name]
		if !ok {
			t.Errorf("processor %q declares no guarantee", name)
			continue
		}
		want, ok := rows[name]
		switch {
		case !ok:
			t.Errorf("processor %q has no row in the guarantee contract", name)
		case want != g:
			t.Errorf("processor %q declares guarantee %s; its row in the contract expects %s", name, g, want)
		}
	}
	for name := range rows {
		if !slices.Contains(service.Names(), name) {
			t.Errorf("row %q names no processor ccrelay ships", name)
		}
	}
}
