package messages_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/messages"
)

// TestMessagingIDsPerService: the same webhook body sent to two services
// of one type is two events (it was one: messaging:<type>:<id>), and the
// id a body derives on its subject is ingest's.
func TestMessagingIDsPerService(t *testing.T) {
	s := messages.DefaultSubjects()
	entries, err := os.ReadDir(filepath.Join("testdata", "messaging"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		typ, _, _ := strings.Cut(e.Name(), "_")
		if typ == "messenger" {
			typ = "facebook"
		}
		if !messages.IsMessagingType(typ) {
			continue
		}
		body := fixture(t, e.Name())
		a, err := messages.DecodeWebhook(typ, "a", body)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		b, err := messages.DecodeWebhook(typ, "b", body)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		if a.ID == b.ID {
			t.Errorf("%s: services a and b share id %q", e.Name(), a.ID)
		}
		ident, err := s.Identify(s.Messaging(typ, "a", messages.Partition(a.Conversation)), body)
		if err != nil || ident.ID != a.ID {
			t.Errorf("%s: a bare body derives %q (%v), ingest gave %q", e.Name(), ident.ID, err, a.ID)
		}
	}
}

// TestSinchIDsPerService: a Sinch callback to two services is two events,
// project-level callbacks included; its subject names the service, so a
// bare body derives its id; and a subject stored before services were
// named derives the id of that time.
func TestSinchIDsPerService(t *testing.T) {
	s := messages.DefaultSubjects()
	for _, fx := range sinchFixtures(t) {
		cb, err := messages.DecodeSinchCallback(fx.body)
		if err != nil {
			t.Fatalf("%s: %v", fx.name, err)
		}
		for _, service := range []string{"eu", "svc.1 x"} {
			r, err := messages.RouteSinchCallback(service, fx.body)
			if err != nil {
				t.Fatalf("%s: %v", fx.name, err)
			}
			if other, _ := messages.RouteSinchCallback("other", fx.body); other.ID == r.ID {
				t.Errorf("%s: two services share id %q", fx.name, r.ID)
			}
			if want := "sinch:" + messages.EscapeToken(service) + ":"; !strings.HasPrefix(r.ID, want) {
				t.Errorf("%s: id %q does not start %q", fx.name, r.ID, want)
			}
			subject := s.Sinch(string(r.Trigger), service, r.AppID, messages.Partition(r.Conversation))
			ident, err := s.Identify(subject, fx.body)
			if err != nil || ident.ID != r.ID {
				t.Errorf("%s: on %s a bare body derives %q (%v), ingest gave %q", fx.name, subject, ident.ID, err, r.ID)
			}
		}
		legacy := strings.Replace(s.Sinch(string(cb.Trigger), "x", cb.AppID, "00"), ".x.", ".", 1)
		ident, err := s.Identify(legacy, fx.body)
		if want := cb.DedupID("", fx.body); err != nil || ident.ID != want || strings.HasPrefix(want, "sinch:x") {
			t.Errorf("%s: a subject of before derives %q (%v), want %q", fx.name, ident.ID, err, want)
		}
	}
}

// TestContactProIDsDeterministic: aliases of the event and of the contact
// are read in a fixed precedence, never Go's map order (20 retries of one
// call were stored 3 times under 2 subjects), and a key spelt twice, in
// any case, is refused naming it.
func TestContactProIDsDeterministic(t *testing.T) {
	body := []byte(`{"Event name":"Queued","event":"Ended","eventName":"Rejected","ID":"id-e","contact":{"id":"id-d","guid":"id-c"},` +
		`"Contact ID":"id-b2","contact_guid":"id-b","contactId":"id-a2","contact_id":"id-a","Event date":"2026-11-21T10:00:00Z"}`)
	first, err := messages.NewContactProCall("lifecycle", "", "", "POST", nil, body)
	if err != nil {
		t.Fatal(err)
	}
	if first.Event != "ended" || first.ContactID != "id-a" {
		t.Fatalf("event %q contact %q, want ended and id-a (the documented precedence)", first.Event, first.ContactID)
	}
	for i := range 50 {
		c, err := messages.NewContactProCall("lifecycle", "", "", "POST", nil, body)
		if err != nil || c.DedupID() != first.DedupID() || c.Event != first.Event {
			t.Fatalf("call %d: %s %s %v; the first was %s %s", i, c.Event, c.DedupID(), err, first.Event, first.DedupID())
		}
	}
	// Each alias in turn, when those before it are absent.
	for _, c := range []struct{ body, event, contact string }{
		{`{"Event name":"Queued","eventName":"Rejected","contact_guid":"id-b","ID":"id-e"}`, "rejected", "id-b"},
		{`{"Event name":"Queued","contact":{"id":"id-d","guid":"id-c"},"ID":"id-e"}`, "queued", "id-c"},
		{`{"EVENT":{"name":"Allocated"},"contact":{"id":"id-d"},"ID":"id-e"}`, "allocated", "id-d"},
		{`{"event":"","Event name":" ","event_name":"Forwarded","contact_id":" ","ID":"id-e"}`, "forwarded", "id-e"},
	} {
		call, err := messages.NewContactProCall("lifecycle", "", "", "POST", nil, []byte(c.body))
		if err != nil || call.Event != c.event || call.ContactID != c.contact {
			t.Errorf("%s: event %q contact %q (%v), want %q %q", c.body, call.Event, call.ContactID, err, c.event, c.contact)
		}
	}
	for _, c := range []struct{ body, field string }{
		{`{"contact_id":"id-a","Contact_ID":"id-b"}`, "contact_id"},
		{`{"contact_id":"id-a","contact_id":"id-b"}`, "contact_id"},
		{`{"event":"Ended","EVENT":"Queued"}`, "event"},
		{`{"contact":{"guid":"id-a","GUID":"id-b"}}`, "contact.guid"},
		{`{"x":[{"k":1},{"k":1,"K":2}]}`, "x.k"},
		{`{"contact_\u0069d":"id-a","contact_id":"id-b"}`, "contact_id"},
	} {
		_, err := messages.NewContactProCall("lifecycle", "", "", "POST", nil, []byte(c.body))
		var fe *messages.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: %v, want a FieldError naming %s", c.body, err, c.field)
		}
	}
	q := map[string][]string{"event": {"ended", "queued"}}
	if _, err := messages.NewContactProCall("crm", "", "", "PUT", q, nil); !errors.Is(err, messages.ErrInvalidPayload) {
		t.Errorf("?event twice: %v, want ErrInvalidPayload", err)
	}
}

// TestChatAttachmentsReadsTheIDsContact: the attachments processor reads
// the contact the call's id was built from: the same key, whatever its
// case, and a body where encoding/json would read another value than
// ingest (contact_id in two cases: last wins) is refused, never read.
func TestChatAttachmentsReadsTheIDsContact(t *testing.T) {
	for _, c := range []struct {
		body    string
		contact string // "" refused
	}{
		{`{"contact_id":"id-a"}`, "id-a"},
		{`{"Contact_ID":"id-a"}`, "id-a"},
		{`{"contact_guid":"id-b","contact_id":"id-a"}`, "id-a"},
		{`{"contact_id":"id-a","Contact_ID":"id-b"}`, ""},
		{`{"Contact_ID":"id-b","contact_id":"id-a"}`, ""},
		{`{"contact_id":" ","contact_guid":"id-b"}`, ""},
		{`{"contact_guid":"id-b"}`, ""},
		{`{"ID":"id-b"}`, ""},
	} {
		call, cerr := messages.NewContactProCall(messages.IntegrationChatAttachments, "ended", "", "POST", nil, []byte(c.body))
		att, aerr := messages.DecodeChatAttachmentsCall([]byte(c.body))
		if c.contact == "" {
			if aerr == nil {
				t.Errorf("%s: the processor reads contact %q, want the body refused", c.body, att.ContactID)
			}
			continue
		}
		if cerr != nil || aerr != nil || call.ContactID != c.contact || att.ContactID != c.contact {
			t.Errorf("%s: id's contact %v %v, processor's %v %v; want %s", c.body, call, cerr, att, aerr, c.contact)
		}
	}
}

// TestIDsCarryNoPersonalData: phone numbers and e-mail addresses stand in
// ids as their digest (a Sinch SMS recipient report's id held the number).
func TestIDsCarryNoPersonalData(t *testing.T) {
	const phone = "+4917612345678"
	dr := strings.Replace(string(fixture(t, "sinchsms_recipient_delivery_report.json")), "+44231235674", phone, 1)
	w, err := messages.DecodeWebhook("sinchsms", "eu", []byte(dr))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(w.ID, "4917612345678") || !strings.Contains(w.ID, messages.PersonalDigest(phone)) {
		t.Errorf("recipient report id %q, want the number's digest %s", w.ID, messages.PersonalDigest(phone))
	}
	for _, c := range []struct {
		contact string
		clear   bool
	}{
		{"0a1b2c3d-0000-4000-8000-000000000001", true},
		{"01EB37HMH1M6SV18ABNS3G135H", true},
		{"contact-guid_1", true},
		{"5d3b0a4e-7b7c-11ee-9c2a-0242ac120002", true}, // a UUID, whatever digits it holds
		{"contact.guid_1", false},
		// Found by attacking the binary: a number or an address with
		// letters around it.
		{"tel4917612345678", false},
		{"4917612345678x", false},
		{"max.mustermann_at_example.com", false},
		{"john.doe", false},
		{"12345", true},
		{phone, false},
		{"004917612345678", false},
		{"0176-1234-5678", false},
		{"030.1234567", false},
		{"whatsapp:+4917612345678", false},
		{"jane.doe@example.com", false},
		{"Jane Doe", false},
	} {
		call, err := messages.NewContactProCall("crm", "ended", c.contact, "GET", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		id := call.DedupID()
		if strings.Contains(id, ":"+c.contact+":") != c.clear || !c.clear && !strings.Contains(id, ":"+messages.PersonalDigest(c.contact)+":") {
			t.Errorf("contact %q: id %q (in clear: want %v)", c.contact, id, c.clear)
		}
	}
}

// TestRepeatedKeysRefused: a key spelt twice where it feeds an id, a
// subject or a partition is refused naming it, in every source; a
// repeat elsewhere in a Sinch callback is not the route's business.
func TestRepeatedKeysRefused(t *testing.T) {
	field := func(err error) string {
		var fe *messages.FieldError
		if errors.As(err, &fe) {
			return fe.Field
		}
		return fmt.Sprint(err)
	}
	sinch := func(b string) error { _, err := messages.DecodeSinchCallback([]byte(b)); return err }
	hook := func(typ string) func(string) error {
		return func(b string) error { _, err := messages.DecodeWebhook(typ, "s", []byte(b)); return err }
	}
	connect := func(b string) error { _, err := messages.DecodeConnectEvent([]byte(b)); return err }
	lens := `{"version":"0","id":"6f1c2b3a-0000-4000-8000-000000000001","detail-type":"Contact Lens Post Call Rules Matched","source":"aws.connect",` +
		`"account":"123456789012","time":"2026-11-21T09:58:00Z","region":"eu-central-1","resources":[],"detail":{"version":"1.0",` +
		`"instanceArn":"arn:aws:connect:eu-central-1:123456789012:instance/b1e4f6a2-0000-4000-8000-000000000001",` +
		`"contactArn":"arn:aws:connect:eu-central-1:123456789012:instance/b1e4f6a2-0000-4000-8000-000000000001/contact/c0ffee00-0000-4000-8000-000000000001"}}`
	for _, c := range []struct {
		name   string
		decode func(string) error
		body   string
		field  string
	}{
		{"sinch app_id", sinch, `{"app_id":"A","app_id":"B","message":{"id":"M"}}`, "app_id"},
		{"sinch App_Id", sinch, `{"app_id":"A","App_Id":"B","message":{"id":"M"}}`, "app_id"},
		{"sinch message.id", sinch, `{"app_id":"A","message":{"id":"M1","ID":"M2"}}`, "message.id"},
		{"sinch report status", sinch, `{"app_id":"A","message_delivery_report":{"message_id":"M","status":"READ","status":"FAILED"}}`, "message_delivery_report.status"},
		{"sinch channel", sinch, `{"app_id":"A","message":{"id":"M","channel_identity":{"identity":"1","Identity":"2"}}}`, "message.channel_identity.identity"},
		{"sinch media", sinch, `{"app_id":"A","message":{"id":"M","contact_message":{"media_message":{},"Media_Message":null}}}`, "message.contact_message.media_message"},
		{"twilio MessageSid", hook("twilio"), "MessageSid=SM1&MessageSid=SM2", "MessageSid"},
		{"twilio From", hook("twilio"), "MessageSid=SM1&From=%2B1&From=%2B2", "From"},
		{"messenger mid", hook("facebook"), `{"object":"page","entry":[{"id":"P","messaging":[{"sender":{"id":"U"},"message":{"mid":"m1","mid":"m2"}}]}]}`, "entry.messaging.message.mid"},
		{"sinch sms recipient", hook("sinchsms"), `{"type":"recipient_delivery_report_sms","batch_id":"B","recipient":"+1","Recipient":"+2","status":"Delivered"}`, "recipient"},
		{"connect id", connect, strings.Replace(lens, `"id":`, `"ID":"other","id":`, 1), "ID"},
	} {
		if err := c.decode(c.body); !errors.Is(err, messages.ErrInvalidPayload) || field(err) != c.field {
			t.Errorf("%s: %v, want ErrInvalidPayload naming %s", c.name, err, c.field)
		}
	}
	// A repeat inside a message's text is no route's business: stored.
	if err := sinch(`{"app_id":"A","message":{"id":"M","contact_message":{"text_message":{"text":"a","text":"b"}}}}`); err != nil {
		t.Errorf("a repeat inside the text: %v", err)
	}
}

// repeatedReference finds the first repeated key the slow way, with
// encoding/json's tokenizer, for FuzzRepeatedKeys.
func repeatedReference(body []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		object bool
		keys   map[string]bool
		key    bool // the next string is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF || err != nil {
			return "", false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, &frame{object: true, keys: map[string]bool{}, key: true})
				continue
			case '[':
				stack = append(stack, &frame{})
				continue
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			if top != nil && top.object && top.key {
				f := strings.ToUpper(v) // enough for the ASCII keys the fuzzer compares on
				if top.keys[f] {
					return v, true
				}
				top.keys[f] = true
				top.key = false
				continue
			}
		}
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].key = true
		}
	}
}

// FuzzRepeatedKeys holds the one-pass search for repeated keys to
// encoding/json's tokenizer on valid JSON of ASCII keys, and every decoder
// that reads ids to refusing what it finds.
func FuzzRepeatedKeys(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"A":2}`, `{"a":{"b":1,"b":2}}`, `[{"a":1},{"a":1}]`, `{"a":[{"b":1}],"c":{"b":2}}`,
		`{"a\u0041":1,"aa":2}`, `{"x":"{\"a\":1,\"a\":2}"}`, `{}`, `[]`, `"s"`, `{"a":1,"b":{"a":2}}`,
		`{"contact_id":"A","Contact_ID":"B"}`, `{"event":"x","Event name":"y","event NAME":"z"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return
		}
		ascii := true
		for _, c := range body {
			ascii = ascii && c < 0x80
		}
		_, cerr := messages.NewContactProCall("i", "", "", "POST", nil, body)
		want, found := repeatedReference(body)
		var fe *messages.FieldError
		repeated := errors.As(cerr, &fe) && strings.Contains(fe.Problem, "appears twice")
		if ascii && !strings.Contains(string(body), `\u`) && repeated != found {
			t.Fatalf("%q: repeat %v (%v), encoding/json's tokenizer finds %v %q", body, repeated, cerr, found, want)
		}
		if !repeated {
			return
		}
		// What Contact Pro's reader refuses, every decoder that reads ids
		// from JSON refuses.
		for typ, decode := range map[string]func() error{
			"messenger": func() error { _, err := messages.DecodeWebhook("facebook", "s", body); return err },
			"sinch sms": func() error { _, err := messages.DecodeWebhook("sinchsms", "s", body); return err },
			"connect":   func() error { _, err := messages.DecodeConnectEvent(body); return err },
		} {
			if err := decode(); err == nil {
				t.Fatalf("%s accepted %q", typ, body)
			}
		}
	})
}

// TestContactProIDsAttacked: what an attack on the binary found. An
// integration or event holding ':' made two distinct calls share an id; an
// event name holding a phone number went into the subject and the id in
// clear; query parameters named pwd, pass or credential were stored.
func TestContactProIDsAttacked(t *testing.T) {
	body := []byte(`{"contact_id":"0a1b2c3d-4e5f-4071-8899-aabbccddeeff","Event date":"2026-11-21T10:00:00Z"}`)
	a, err := messages.NewContactProCall("lifecycle:allocated", "x", "", "POST", nil, body)
	if err != nil {
		t.Fatal(err)
	}
	b, err := messages.NewContactProCall("lifecycle", "allocated:x", "", "POST", nil, body)
	if err != nil {
		t.Fatal(err)
	}
	if a.DedupID() == b.DedupID() {
		t.Errorf("lifecycle:allocated/x and lifecycle/allocated:x share id %q", a.DedupID())
	}
	for _, ev := range []string{"+4917612345678", "tel4917612345678", "jane@example.com",
		"0049 176 1234 5678", "4917-6123-4567", "４９１７６１２３４５６７８"} { // the re-attack's
		_, err := messages.NewContactProCall("lifecycle", ev, "", "POST", nil, body)
		var fe *messages.FieldError
		if !errors.As(err, &fe) || fe.Field != "event" {
			t.Errorf("event %q: %v, want a FieldError naming the event", ev, err)
		}
	}
	// The re-attack: any name a customer may give a secret.
	q := url.Values{"pwd": {"p1"}, "pass": {"p2"}, "credential": {"p3"}, "pw": {"p4"}, "pin": {"p5"}, "otp": {"p6"},
		"jwt": {"p7"}, "kennwort": {"p8"}, "contact_id": {"+4917612345678"}}
	c, err := messages.NewContactProCall("crm", "ended", "", "GET", q, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "4917612345678"} {
		if strings.Contains(c.RedactedQuery(), secret) {
			t.Errorf("stored query %q holds %q", c.RedactedQuery(), secret)
		}
	}
}

// TestIDPartsCannotRunTogether: the parts of a dedup id a sender chooses
// cannot spell another event's id across the ':' between them. Before,
// each pair below shared one id, and the second event of it was answered
// as a duplicate and never stored. Sinch's own values stand unchanged.
func TestIDPartsCannotRunTogether(t *testing.T) {
	report := func(id, status, channel string) []byte {
		return fmt.Appendf(nil, `{"app_id":"APP","message_delivery_report":{"message_id":%q,"status":%q,"channel_identity":{"channel":%q,"identity":"1"}}}`, id, status, channel)
	}
	sinchID := func(body []byte) string {
		t.Helper()
		r, err := messages.RouteSinchCallback("eu", body)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		cb, err := messages.DecodeSinchCallback(body)
		if err != nil || cb.DedupID("eu", body) != r.ID {
			t.Fatalf("%s: the one pass and encoding/json disagree: %q, %v", body, r.ID, err)
		}
		return r.ID
	}
	a := sinchID(report("01COLL:QUEUED_ON_CHANNEL:WHATSAPP", "DELIVERED", "WHATSAPP"))
	b := sinchID(report("01COLL", "QUEUED_ON_CHANNEL", "WHATSAPP:DELIVERED:WHATSAPP"))
	if a == b {
		t.Errorf("two delivery reports share id %q", a)
	}
	if got := sinchID(report("01EQ8235TD19N21XQTH12B145D", "QUEUED_ON_CHANNEL", "WHATSAPP")); got != "sinch:eu:delivery:01EQ8235TD19N21XQTH12B145D:QUEUED_ON_CHANNEL:WHATSAPP" {
		t.Errorf("a report as Sinch sends it: id %q", got)
	}
	if got := sinchID([]byte(`{"app_id":"APP","message":{"id":"X:01VICTIM%3A"}}`)); got != "sinch:eu:inbound:X%3A01VICTIM%253A" {
		t.Errorf("an inbound id with ':' and '%%': %q", got)
	}

	sms := func(batch, status string) string {
		t.Helper()
		w, err := messages.DecodeWebhook("sinchsms", "eu", fmt.Appendf(nil, `{"type":"recipient_delivery_report_sms","batch_id":%q,"recipient":"46732000000","status":%q,"code":401}`, batch, status))
		if err != nil {
			t.Fatal(err)
		}
		return w.ID
	}
	if x, y := sms("B1:Delivered", "Failed"), sms("B1", "Delivered:Failed"); x == y {
		t.Errorf("two Sinch SMS reports share id %q", x)
	}
}
