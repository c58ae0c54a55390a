package messages_test

import (
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/messages"
)

// TestConversation: the relay finds, from a stored event's subject and
// body alone, the conversation key ingest derived its partition token
// from; a body that does not give the subject's token back (published by
// hand under another subject) is not taken for it, and neither is one
// that does not decode. The id names a destination's conversation without
// its key.
func TestConversation(t *testing.T) {
	s := messages.DefaultSubjects()
	twilio := []byte("MessageSid=SM0123456789abcdef0123456789abcdef&SmsStatus=received&From=%2B15550001&To=%2B15559999&Body=hi")
	w, err := messages.DecodeWebhook("twilio", "us", twilio)
	if err != nil {
		t.Fatal(err)
	}
	tok := messages.Partition(w.Conversation)
	other := "00"
	if tok == other {
		other = "01"
	}
	sinch := []byte(`{"app_id":"APP","message":{"id":"M1","contact_id":"C1","direction":"TO_APP","contact_message":{"text_message":{"text":"hi"}},"channel_identity":{"channel":"SMS","identity":"+15550001","app_id":"APP"}}}`)
	r, err := messages.RouteSinchCallback("eu", sinch)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, subject string
		body          []byte
		want          string
		ok            bool
	}{
		{"twilio, as stored", s.Messaging("twilio", "us", tok), twilio, w.Conversation, true},
		{"twilio, under another token", s.Messaging("twilio", "us", other), twilio, w.Conversation, false},
		{"not a twilio body", s.Messaging("twilio", "us", tok), []byte("{}"), "", false},
		{"sinch, as stored", s.Sinch("MESSAGE_INBOUND", "eu", "APP", messages.Partition(r.Conversation)), sinch, r.Conversation, true},
	} {
		a, err := s.Parse(c.subject)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := s.Conversation(a, c.body)
		if ok != c.ok || ok && got != c.want {
			t.Errorf("%s: %q %v, want %q %v", c.name, got, ok, c.want, c.ok)
		}
	}
	id := messages.ConversationID("twilio/us", w.Conversation)
	if len(id) != 32 || strings.Contains(id, "5550001") || id == messages.ConversationID("twilio/eu", w.Conversation) {
		t.Errorf("conversation id %q", id)
	}
}
