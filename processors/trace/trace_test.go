package trace_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/deliveries"
	"github.com/ccrelay/ccrelay/processors/trace"
	"github.com/ccrelay/ccrelay/test/natstest"
)

func setup(t *testing.T) (jetstream.JetStream, messages.Subjects) {
	t.Helper()
	ns := natstest.Embedded(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	err := messages.EnsureStreams(context.Background(), provision.Waiter{}, js, messages.StreamConfig{Replicas: 1, MaxAge: time.Hour, DedupWindow: time.Minute, MaxBytes: -1, DLQMaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return js, messages.DefaultSubjects()
}

// shown are the processors these tests show, as service.Guarantees
// would give them.
var shown = map[string]processors.Guarantee{"attachments": processors.Once, "deliveries": processors.Idempotent, "forward": processors.Once, "summaries": processors.Idempotent}

func publish(t *testing.T, js jetstream.JetStream, m *nats.Msg) uint64 {
	t.Helper()
	ack, err := js.PublishMsg(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func stored(r *trace.Report) []uint64 {
	var seqs []uint64
	for _, s := range r.Steps {
		if s.Kind == trace.KindStored {
			seqs = append(seqs, s.Seq)
		}
	}
	return seqs
}

// TestTraceIDKinds stores events as ingest does and as earlier releases
// did (no Ccrelay-Ids), and traces each kind of id.
func TestTraceIDKinds(t *testing.T) {
	js, s := setup(t)
	ctx := context.Background()
	now := time.Now()
	// A Contact Pro call whose contact id is a phone number: only its
	// digest is stored.
	phone := "+4917612345678"
	cpID := "contactpro:lifecycle:allocated:" + messages.PersonalDigest(phone) + ":00"
	cp := publish(t, js, (&messages.Event{Subject: s.ContactPro("lifecycle", "allocated"), ID: cpID, Source: "/contactpro/lifecycle", Type: "t", Time: now, Body: []byte(`{"contact_id":"` + phone + `"}`)}).Msg())
	// A Sinch inbound message with Ccrelay-Ids.
	sinch := publish(t, js, (&messages.Event{Subject: s.Sinch("message_inbound", "eu", "APP", "00"), ID: "sinch:eu:inbound:01MSG", Source: "/sinch/eu", Type: "t", Time: now,
		IDs: messages.FormatIDs(messages.IDContact, "01CONTACT", messages.IDConversation, "01CONV"), Body: []byte(`{}`)}).Msg())
	// A Sinch inbound message stored before Ccrelay-Ids: found by its body.
	legacy := publish(t, js, (&messages.Event{Subject: s.Sinch("message_inbound", "eu", "APP", "00"), ID: "sinch:eu:inbound:01OLD", Source: "/sinch/eu", Type: "t", Time: now,
		Body: []byte(`{"message":{"id":"01OLD","contact_id":"01CONTACT"}}`)}).Msg())
	// A message id with a ':', escaped in the dedup id (messages.IDPart).
	colon := publish(t, js, (&messages.Event{Subject: s.Sinch("message_inbound", "eu", "APP", "00"), ID: "sinch:eu:inbound:" + messages.IDPart("X:01COLON"), Source: "/sinch/eu", Type: "t", Time: now,
		IDs: messages.NoIDs, Body: []byte(`{}`)}).Msg())
	// Noise: many events of other ids.
	for i := range 300 {
		publish(t, js, (&messages.Event{Subject: s.Sinch("message_inbound", "eu", "APP", "01"), ID: fmt.Sprintf("sinch:eu:inbound:01N%d", i), Source: "/sinch/eu", Type: "t", Time: now,
			IDs: messages.FormatIDs(messages.IDContact, fmt.Sprintf("01OTHER%d", i)), Body: []byte(`{}`)}).Msg())
	}
	for _, c := range []struct {
		id     string
		want   []uint64
		bodies bool
	}{
		{phone, []uint64{cp}, false},                          // a personal id, matched by its digest
		{messages.PersonalDigest(phone), []uint64{cp}, false}, // the digest itself
		{cpID, []uint64{cp}, false},                           // the dedup id
		{"01MSG", []uint64{sinch}, true},                      // a message id, in the dedup id
		{"01CONV", []uint64{sinch}, true},                     // a conversation id, in Ccrelay-Ids
		{"01CONTACT", []uint64{sinch, legacy}, true},          // in Ccrelay-Ids, and in an old body
		{fmt.Sprint(legacy), []uint64{legacy}, false},         // a stream sequence
		{"inbound", nil, true},                                // a fixed token of dedup ids is no id
		{"X:01COLON", []uint64{colon}, true},                  // as the sender spelt it
		{"X", nil, true},                                      // not a part of it
		{"01CONT", nil, true},                                 // the start of an id in a body is no match
		{"0" + fmt.Sprint(legacy), nil, true},                 // "03" is an id, not a sequence
	} {
		r, err := trace.Run(ctx, js, s, trace.Options{ID: c.id, Processors: shown})
		if err != nil {
			t.Fatalf("%s: %v", c.id, err)
		}
		if got := stored(r); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: stored %v, want %v", c.id, got, c.want)
		}
		if c.bodies && r.BodiesRead != 1 {
			t.Errorf("%s: %d bodies read, want 1 (the event without Ccrelay-Ids)", c.id, r.BodiesRead)
		}
		if r.Scanned != 304 {
			t.Errorf("%s: %d headers scanned, want 304", c.id, r.Scanned)
		}
		for _, st := range r.Steps {
			if st.Body != "" {
				t.Errorf("%s: a body without Body", c.id)
			}
		}
	}
	// Since excludes older events; Limit caps, keeping the newest, and
	// says so.
	if r, err := trace.Run(ctx, js, s, trace.Options{ID: "01CONTACT", Since: time.Now().Add(time.Minute), Processors: shown}); err != nil || r.Matched != 0 || r.Scanned != 0 {
		t.Errorf("since the future: %+v %v", r, err)
	}
	r, err := trace.Run(ctx, js, s, trace.Options{ID: "01CONTACT", Limit: 1, Body: true, Processors: shown})
	if err != nil || r.Matched != 2 || r.Shown != 1 || !r.Capped || fmt.Sprint(stored(r)) != fmt.Sprint([]uint64{legacy}) || !strings.Contains(r.Steps[0].Body, "01OLD") {
		t.Errorf("limit 1: %+v %v", r, err)
	}
	// No consumer is left.
	st, _ := js.Stream(ctx, s.EventsStream())
	if info, _ := st.Info(ctx); info.State.Consumers != 0 {
		t.Errorf("%d consumers left", info.State.Consumers)
	}
	var out strings.Builder
	if err := trace.Print(&out, r); err != nil || !strings.Contains(out.String(), "capped: only the newest 1 of 2 events") {
		t.Errorf("Print: %v\n%s", err, out.String())
	}
	// Beside --json, the summary says the same (on standard error).
	var summary strings.Builder
	trace.Summary(&summary, r)
	if !strings.Contains(summary.String(), "2 events of 01CONTACT") || !strings.Contains(summary.String(), "capped: only the newest 1 of 2 events") {
		t.Errorf("Summary:\n%s", summary.String())
	}
}

func TestSubjectMatches(t *testing.T) {
	for _, c := range []struct {
		f, s string
		want bool
	}{
		{"a.>", "a.b.c", true}, {"a.>", "a", false}, {"a.*.c", "a.b.c", true}, {"a.*", "a.b.c", false}, {"a.b", "a.b", true}, {"a.b.c", "a.b", false},
	} {
		if got := trace.SubjectMatches(c.f, c.s); got != c.want {
			t.Errorf("SubjectMatches(%q, %q) = %v", c.f, c.s, got)
		}
	}
}

// FuzzMatch: an id matches the events that name it in their dedup id or
// Ccrelay-Ids, and never panics on what a caller or a header holds.
func FuzzMatch(f *testing.F) {
	f.Add("01CONTACT", "sinch:eu:inbound:01MSG", "contact=01CONTACT")
	f.Add("42", "", "")
	f.Add("+49 176", "contactpro:a:b:h-0011223344556677:x", "-")
	f.Fuzz(func(t *testing.T, id, ceID, ids string) {
		m := trace.NewMatch(id)
		h := nats.Header{messages.HeaderID: {ceID}, messages.HeaderIDs: {ids}}
		v := m.Header(7, h)
		if ceID == id && v != trace.Matched {
			t.Fatalf("%q does not match its own dedup id", id)
		}
		if seq, ok := trace.Seq(id); ok && seq == 7 && v != trace.Matched {
			t.Fatalf("%q does not match seq 7", id)
		}
		if v == trace.BodyOnly {
			t.Fatalf("a header with Ccrelay-Ids judged BodyOnly")
		}
		for _, p := range messages.ParseIDs(ids) {
			if p == id && v != trace.Matched {
				t.Fatalf("%q in %q not matched", id, ids)
			}
		}
	})
}

// TestTraceDeliveryReasonAsLabelled: a delivery status's reason code is
// what the sender wrote; trace shows Sinch's documented codes and "other"
// for anything else, never the text (it may be a phone number).
func TestTraceDeliveryReasonAsLabelled(t *testing.T) {
	js, s := setup(t)
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: s.DeliveryStatusBucket()})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ msg, code, want string }{
		{"01REASONKNOWN0000000000000", "RECIPIENT_NOT_REACHABLE", "reason RECIPIENT_NOT_REACHABLE"},
		{"01REASONTEXT00000000000000", "+46732000000 max@example.com", "reason other"},
	} {
		publish(t, js, (&messages.Event{Subject: s.Sinch("message_delivery", "eu", "APP", "00"), ID: "sinch:eu:delivery:" + c.msg + ":FAILED:WHATSAPP", Source: "/sinch/eu", Type: "t", Time: time.Now(),
			IDs: messages.NoIDs, Body: []byte(`{}`)}).Msg())
		st, _ := json.Marshal(deliveries.Status{MessageID: c.msg, Status: "FAILED", Channel: "WHATSAPP", EventTime: time.Now(), Reason: &messages.SinchReason{Code: c.code}})
		if _, err := kv.Put(ctx, deliveries.Key(c.msg), st); err != nil {
			t.Fatal(err)
		}
		r, err := trace.Run(ctx, js, s, trace.Options{ID: c.msg, Processors: shown})
		if err != nil {
			t.Fatal(err)
		}
		var detail string
		for _, step := range r.Steps {
			if step.Kind == trace.KindStatus {
				detail = step.Detail
			}
		}
		if !strings.Contains(detail, c.want) || strings.Contains(detail, "46732000000") {
			t.Errorf("%s: status step %q, want %q", c.code, detail, c.want)
		}
	}
}
