package messages_test

import (
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/messages"
)

func TestSubjects(t *testing.T) {
	s, err := messages.NewSubjects("ccrelay")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ got, want string }{
		{s.Sinch("MESSAGE_INBOUND", "eu", "01EB37HMH1M6SV18ABNS3G135H", "3f"), "ccrelay.in.sinch.message_inbound.eu.01EB37HMH1M6SV18ABNS3G135H.3f"},
		{s.Sinch("MESSAGE_DELIVERY", "svc.1", "app.with.dots", "00"), "ccrelay.in.sinch.message_delivery.svc%2E1.app%2Ewith%2Edots.00"},
		{s.SinchPartitionFilter("svc.1", "0c"), "ccrelay.in.sinch.*.svc%2E1.*.0c"},
		{s.SinchLegacyPartitionFilter("0c"), "ccrelay.in.sinch.*.*.0c"},
		{s.ContactPro("chat-attachments", "Ended"), "ccrelay.in.contactpro.chat-attachments.ended"},
		{s.ContactPro("Chat-Attachments", ""), "ccrelay.in.contactpro.chat-attachments.any"},
		{s.ContactLens("b1e4f6a2-3c5d"), "ccrelay.in.connect.contactlens.b1e4f6a2-3c5d"},
		{s.DeadLetter("attachments"), "ccrelay.dlq.attachments"},
		{s.Inbound(), "ccrelay.in.>"},
		{s.DeadLetters(), "ccrelay.dlq.>"},
		{s.EventsStream(), "CCRELAY_EVENTS"},
		{s.DeadLetterStream(), "CCRELAY_DLQ"},
		{s.Bucket("LEDGER"), "CCRELAY_LEDGER"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	acme, err := messages.NewSubjects("acme.cc-relay")
	if err != nil {
		t.Fatal(err)
	}
	if acme.EventsStream() != "ACME_CC-RELAY_EVENTS" || acme.Sinch("X", "s", "a", "ff") != "acme.cc-relay.in.sinch.x.s.a.ff" {
		t.Errorf("prefixed: %s %s", acme.EventsStream(), acme.Sinch("X", "s", "a", "ff"))
	}
}

func TestNewSubjectsRejects(t *testing.T) {
	for _, p := range []string{"", ".", "a..b", "a.*", "a.>", "a b", "a.", "ä"} {
		if _, err := messages.NewSubjects(p); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
}

func TestEscapeToken(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain-Token_09", "plain-Token_09"},
		{"", "%"},
		{"a.b", "a%2Eb"},
		{"*", "%2A"},
		{">", "%3E"},
		{"a b\tc", "a%20b%09c"},
		{"%", "%25"},
		{"ü", "%C3%BC"},
	} {
		got := messages.EscapeToken(c.in)
		if got != c.want {
			t.Errorf("EscapeToken(%q) = %q, want %q", c.in, got, c.want)
		}
		back, err := messages.UnescapeToken(got)
		if err != nil || back != c.in {
			t.Errorf("UnescapeToken(%q) = %q, %v", got, back, err)
		}
	}
	for _, bad := range []string{"%2", "%zz", "%41", "a.b", "%2e"} {
		if _, err := messages.UnescapeToken(bad); err == nil {
			t.Errorf("UnescapeToken(%q) accepted", bad)
		}
	}
}

// FuzzEscapeToken: an escaped token is always one valid subject token, and
// escaping is reversible, so distinct inputs never share a subject.
func FuzzEscapeToken(f *testing.F) {
	for _, s := range []string{"", "a", "a.b", "*", ">", " ", "%", "%25", "\x00", "ü", "MESSAGE_INBOUND"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		tok := messages.EscapeToken(in)
		if tok == "" || strings.ContainsAny(tok, ".*> \t\r\n") {
			t.Fatalf("EscapeToken(%q) = %q is not a subject token", in, tok)
		}
		for i := 0; i < len(tok); i++ {
			if tok[i] < 0x21 || tok[i] > 0x7e {
				t.Fatalf("EscapeToken(%q) = %q holds a non-printable byte", in, tok)
			}
		}
		back, err := messages.UnescapeToken(tok)
		if err != nil || back != in {
			t.Fatalf("round trip of %q: %q, %v", in, back, err)
		}
	})
}

func TestFilters(t *testing.T) {
	s, _ := messages.NewSubjects("ccrelay")
	for got, want := range map[string]string{
		s.SinchFilter(messages.TriggerMessageDelivery): "ccrelay.in.sinch.message_delivery.>",
		s.ContactProFilter("Chat-Attachments"):         "ccrelay.in.contactpro.chat-attachments.*",
		s.ContactLensFilter():                          "ccrelay.in.connect.contactlens.*",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}
