package messages_test

import (
	"errors"
	"testing"

	"github.com/ccrelay/ccrelay/messages"
)

func TestIdentify(t *testing.T) {
	s, _ := messages.NewSubjects("ccrelay")
	sinch := []byte(`{"app_id":"A.1","message_delivery_report":{"message_id":"M","status":"READ"}}`)
	cp := []byte(`{"contact_id":"G"}`)
	cl := []byte(`{"id":"E","detail-type":"Contact Lens Post Call Rules Matched","time":"2026-11-21T09:58:00Z","detail":{"contactArn":"arn:aws:connect:r:1:instance/I/contact/C"}}`)
	for _, c := range []struct {
		subject string
		body    []byte
		want    messages.Identity
	}{
		{s.Sinch("MESSAGE_DELIVERY", "eu", "A.1", "07"), sinch, messages.Identity{Source: "sinch", Kind: "message_delivery", ID: "sinch:eu:delivery:M:READ:"}},
		// Stored before subjects named the service: the id it was stored
		// under.
		{"ccrelay.in.sinch.message_delivery.A%2E1.07", sinch, messages.Identity{Source: "sinch", Kind: "message_delivery", ID: "sinch:delivery:M:READ:"}},
		{s.Messaging("social365", "hub", "1f"), cp, messages.Identity{Source: "messaging", Kind: "social365", ID: "messaging:social365:hub:" + messages.BodyDigest(cp)}},
		{s.ContactPro("chat-attachments", "Ended"), cp, messages.Identity{Source: "contactpro", Kind: "chat-attachments.ended", ID: cpCall(t, "chat-attachments", "ended", cp).DedupID()}},
		{s.ContactLens("I"), cl, messages.Identity{Source: "connect", Kind: "contactlens", ID: "connect::E"}},
	} {
		got, err := s.Identify(c.subject, c.body)
		if err != nil || got != c.want {
			t.Errorf("%s: %+v %v, want %+v", c.subject, got, err, c.want)
		}
	}
	for _, subj := range []string{"other.in.sinch.x.y", "ccrelay.in.sinch.x", "ccrelay.in.nope.x.y", "ccrelay.in.sinch.x.%zz"} {
		if _, err := s.Identify(subj, sinch); !errors.Is(err, messages.ErrUnknownSubject) {
			t.Errorf("%s: %v", subj, err)
		}
	}
	if _, err := s.Identify(s.ContactLens("I"), []byte(`{`)); !errors.Is(err, messages.ErrInvalidPayload) {
		t.Errorf("bad body: %v", err)
	}
}

func cpCall(t *testing.T, integration, event string, body []byte) *messages.ContactProCall {
	t.Helper()
	c, err := messages.NewContactProCall(integration, event, "", "POST", nil, body)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParse(t *testing.T) {
	s, err := messages.NewSubjects("acme.cc")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		subject string
		want    messages.Address
	}{
		{s.Sinch("MESSAGE_INBOUND", "svc.1", "app.1 *", "a0"), messages.Address{Source: "sinch", Kind: "message_inbound", Name: "app.1 *", Service: "svc.1", Partition: "a0"}},
		{s.Sinch("CONTACT_CREATE_NOTIFICATION", "eu", "", "00"), messages.Address{Source: "sinch", Kind: "contact_create_notification", Name: messages.SinchProjectApp, Service: "eu", Partition: "00"}},
		{"acme.cc.in.sinch.message_inbound.A.a0", messages.Address{Source: "sinch", Kind: "message_inbound", Name: "A", Partition: "a0"}}, // stored before services
		{s.ContactPro("Chat-Attachments", ""), messages.Address{Source: "contactpro", Kind: "chat-attachments", Name: messages.ContactProNoEvent}},
		{s.ContactLens("b1e4"), messages.Address{Source: "connect", Kind: "contactlens", Name: "b1e4"}},
		{"acme.cc.in.sinch.message_inbound.A", messages.Address{Source: "sinch", Kind: "message_inbound", Name: "A"}}, // stored before partitions
		{s.Messaging("twilio", "us-east", "0c"), messages.Address{Source: "messaging", Kind: "twilio", Name: "us-east", Service: "us-east", Partition: "0c"}},
	} {
		got, err := s.Parse(c.subject)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.subject, err)
			continue
		}
		if got != c.want {
			t.Errorf("Parse(%q) = %+v, want %+v", c.subject, got, c.want)
		}
	}
	for _, subj := range []string{
		"ccrelay.in.sinch.x.y",        // another prefix
		"acme.cc.dlq.attachments",     // not inbound
		"acme.cc.in.sinch.x",          // a token short
		"acme.cc.in.sinch.x.y.z",      // not a partition token
		"acme.cc.in.sinch.x.y.0A",     // upper-case partition
		"acme.cc.in.sinch.x.s.y.00.0", // a token too many
		"acme.cc.in.sinch.x.s.y.0",    // not a partition token
		"acme.cc.in.sinch.x.s.y.z",    // not a partition token
		"acme.cc.in.messaging.x.y",    // messaging without its partition
		"acme.cc.in.connect.x.y.00",   // partitions are for relayed sources only
		"acme.cc.in.nope.x.y",         // unknown source
		"acme.cc.in.sinch.x.%zz",      // bad escape
		"acme.cc.in.sinch.x%41.y",     // needless escape
		"acme.cc.in.connect..y",       // empty token
	} {
		if _, err := s.Parse(subj); !errors.Is(err, messages.ErrUnknownSubject) {
			t.Errorf("Parse(%q): error %v, want ErrUnknownSubject", subj, err)
		}
	}
	if !s.IsInbound("acme.cc.in.>") || s.IsInbound("acme.cc.dlq.>") || s.IsInbound("ccrelay.in.>") {
		t.Errorf("IsInbound: in %v, dlq %v, other prefix %v", s.IsInbound("acme.cc.in.>"), s.IsInbound("acme.cc.dlq.>"), s.IsInbound("ccrelay.in.>"))
	}
	if p, ok := s.Processor(s.DeadLetter("a-b")); !ok || p != "a-b" {
		t.Errorf("Processor(DeadLetter(a-b)) = %q, %v", p, ok)
	}
	if p, ok := s.Processor(s.ContactLens("x")); ok {
		t.Errorf("Processor of an inbound subject = %q, want none", p)
	}
}

func TestEventID(t *testing.T) {
	s := messages.DefaultSubjects()
	cl := []byte(`{"id":"E","detail-type":"Contact Lens Post Call Rules Matched","time":"2026-11-21T09:58:00Z","detail":{"contactArn":"arn:aws:connect:r:1:instance/I/contact/C"}}`)
	t.Run("header wins", func(t *testing.T) {
		id, err := s.EventID(s.ContactLens("I"), map[string][]string{messages.HeaderID: {"given"}}, cl)
		if err != nil || id != "given" {
			t.Errorf("got %q, %v; want the ce-id header", id, err)
		}
	})
	t.Run("derived from the body", func(t *testing.T) {
		id, err := s.EventID(s.ContactLens("I"), nil, cl)
		if err != nil || id != "connect::E" {
			t.Errorf("got %q, %v; want connect::E", id, err)
		}
	})
	t.Run("two headers are refused", func(t *testing.T) {
		id, err := s.EventID(s.ContactLens("I"), map[string][]string{messages.HeaderID: {"given", "other"}}, cl)
		if !errors.Is(err, messages.ErrNoEventID) || id != "" {
			t.Errorf("got %q, %v; want ErrNoEventID", id, err)
		}
	})
	t.Run("empty header is absent", func(t *testing.T) {
		id, err := s.EventID(s.ContactLens("I"), map[string][]string{messages.HeaderID: {""}}, cl)
		if err != nil || id != "connect::E" {
			t.Errorf("got %q, %v; want connect::E", id, err)
		}
	})
	for name, c := range map[string]struct {
		subject string
		body    []byte
		cause   error
	}{
		"unknown subject": {"ccrelay.in.nope.x.y", cl, messages.ErrUnknownSubject},
		"bad body":        {s.ContactLens("I"), []byte(`{`), messages.ErrInvalidPayload},
	} {
		t.Run(name, func(t *testing.T) {
			id, err := s.EventID(c.subject, nil, c.body)
			if !errors.Is(err, messages.ErrNoEventID) {
				t.Errorf("got %q, %v; want ErrNoEventID", id, err)
			}
			if !errors.Is(err, c.cause) {
				t.Errorf("error %v does not wrap its cause %v", err, c.cause)
			}
		})
	}
}

func TestSubjectsFromText(t *testing.T) {
	var s messages.Subjects
	if s.EventsStream() != "CCRELAY_EVENTS" || s.Inbound() != "ccrelay.in.>" {
		t.Errorf("zero value: %s %s, want the default prefix", s.EventsStream(), s.Inbound())
	}
	if err := s.UnmarshalText([]byte("acme.cc")); err != nil {
		t.Fatal(err)
	}
	if s.EventsStream() != "ACME_CC_EVENTS" {
		t.Errorf("events stream %q, want ACME_CC_EVENTS", s.EventsStream())
	}
	if b, _ := s.MarshalText(); string(b) != "acme.cc" {
		t.Errorf("MarshalText = %q", b)
	}
	for _, bad := range []string{"", "a b", "a..b", "a.*", "a.>"} {
		before := s
		if err := s.UnmarshalText([]byte(bad)); !errors.Is(err, messages.ErrInvalidPrefix) {
			t.Errorf("UnmarshalText(%q): %v, want ErrInvalidPrefix", bad, err)
		}
		if s != before {
			t.Errorf("UnmarshalText(%q) changed the value to %v", bad, s)
		}
	}
}
