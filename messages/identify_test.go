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
		{s.Sinch("MESSAGE_DELIVERY", "A.1"), sinch, messages.Identity{Source: "sinch", Kind: "message_delivery", ID: "sinch:delivery:M:READ:"}},
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
