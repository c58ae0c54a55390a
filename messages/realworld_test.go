package messages_test

import (
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/messages"
)

// sinchFixture is one callback body Sinch published (testdata/sinch).
type sinchFixture struct {
	name string
	body []byte
}

func sinchFixtures(t testing.TB) []sinchFixture {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "sinch", "*", "*.json"))
	if err != nil || len(files) < 40 {
		t.Fatalf("sinch fixtures: %d files, %v", len(files), err)
	}
	var out []sinchFixture
	for _, f := range files {
		if filepath.Base(f) == "vectors.json" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sinchFixture{name: strings.TrimPrefix(f, filepath.Join("testdata", "sinch")+"/"), body: b})
	}
	return out
}

// TestSinchCallbacksAsSinchSendsThem decodes every callback of Sinch's SDK
// test resources and documentation: each is accepted, gets the trigger its
// payload key names, a subject within bounds, and a dedup id no other
// callback shares.
func TestSinchCallbacksAsSinchSendsThem(t *testing.T) {
	s, _ := messages.NewSubjects("ccrelay")
	seen := map[string]sinchFixture{}
	projectLevel := 0
	// record_notification is a trigger ccrelay does not know by name; the
	// other three are contact_event payloads the .NET SDK keeps beside its
	// callbacks. All are stored under their own key.
	unknown := map[messages.SinchTrigger]bool{"RECORD_NOTIFICATION": true, "COMMENT_EVENT": true, "PAYMENT_STATUS_UPDATE_EVENT": true, "SHORTLINK_ACTIVATED_EVENT": true}
	for _, fx := range sinchFixtures(t) {
		cb, err := messages.DecodeSinchCallback(fx.body)
		if err != nil {
			t.Errorf("%s: refused: %v", fx.name, err)
			continue
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(fx.body, &top); err != nil {
			t.Fatal(err)
		}
		if cb.AppID == "" {
			projectLevel++
			if subj := s.Sinch(string(cb.Trigger), "eu", "", "00"); !strings.HasSuffix(subj, "."+messages.SinchProjectApp+".00") {
				t.Errorf("%s: project-level subject %q", fx.name, subj)
			}
		}
		if cb.Known == unknown[cb.Trigger] {
			t.Errorf("%s: trigger %q known=%v", fx.name, cb.Trigger, cb.Known)
		}
		// The SDKs share some bodies byte for byte: the same callback again
		// is a retry and must have the same id; any other must not.
		id := cb.DedupID("eu", fx.body)
		if prev, dup := seen[id]; dup && !bytes.Equal(prev.body, fx.body) {
			t.Errorf("%s and %s share dedup id %q", fx.name, prev.name, id)
		}
		seen[id] = fx
		if len(id) > 300 || !strings.HasPrefix(id, "sinch:") {
			t.Errorf("%s: dedup id %q", fx.name, id)
		}
	}
	if projectLevel < 2 {
		t.Errorf("%d project-level callbacks among the fixtures; the SDKs publish at least two", projectLevel)
	}
}

// TestSinchDeliveryReportsAsDocumented: the delivery reports of Sinch's
// channel documentation, "reason": "" included, decode with their ids,
// status and reason.
func TestSinchDeliveryReportsAsDocumented(t *testing.T) {
	for _, c := range []struct {
		file, status, channel, reason string
	}{
		{"docs/delivery_sms_reason_empty_string.json", "DELIVERED", "SMS", ""},
		{"docs/delivery_push_delivered.json", "DELIVERED", "SINCH_PUSH", ""},
		{"docs/delivery_rcs_failed.json", "FAILED", "RCS", "UNKNOWN"},
		{"java/MessageDeliveryReceiptEventDto.json", "DELIVERED", "MESSENGER", "RECIPIENT_NOT_OPTED_IN"},
		{"signed/delivery_queued_on_channel.json", "QUEUED_ON_CHANNEL", "", ""},
	} {
		body, err := os.ReadFile(filepath.Join("testdata", "sinch", c.file))
		if err != nil {
			t.Fatal(err)
		}
		cb, err := messages.DecodeSinchCallback(body)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		r := cb.DeliveryReport
		reason := ""
		if r.Reason != nil {
			reason = r.Reason.Code
		}
		if string(r.Status) != c.status || r.ChannelIdentity.Channel != c.channel || reason != c.reason {
			t.Errorf("%s: status %q channel %q reason %q", c.file, r.Status, r.ChannelIdentity.Channel, reason)
		}
	}
	// The same report on two channels (a fallback) is two events.
	a, _ := os.ReadFile(filepath.Join("testdata", "sinch", "docs", "delivery_push_delivered.json"))
	b, _ := os.ReadFile(filepath.Join("testdata", "sinch", "docs", "delivery_sms_reason_empty_string.json"))
	ca, _ := messages.DecodeSinchCallback(a)
	cbb, _ := messages.DecodeSinchCallback(b)
	if ca.DedupID("eu", a) == cbb.DedupID("eu", b) {
		t.Errorf("one message's DELIVERED on SINCH_PUSH and on SMS share dedup id %q", ca.DedupID("eu", a))
	}
}

// contactProCall is one entry of testdata/contactpro/calls.json.
type contactProCall struct {
	Name    string          `json:"name"`
	Method  string          `json:"method"`
	Path    string          `json:"path"`
	Query   string          `json:"query"`
	Body    json.RawMessage `json:"body"`
	Event   string          `json:"event"`
	Contact string          `json:"contact"`
}

// bodyBytes is the body as Contact Pro sends it: compact JSON, or nothing.
func (c contactProCall) bodyBytes() []byte {
	if len(c.Body) == 0 || bytes.Equal(c.Body, []byte("null")) {
		return nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, c.Body); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func loadContactProCalls(t testing.TB) []contactProCall {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "contactpro", "calls.json"))
	if err != nil {
		t.Fatal(err)
	}
	var calls []contactProCall
	if err := json.Unmarshal(b, &calls); err != nil {
		t.Fatal(err)
	}
	return calls
}

// TestContactProCallsAsContactProSendsThem reads the calls of Contact Pro's
// documented integration set-ups: each finds its event (path, query or
// body) and contact, a retry has the same dedup id, and no two distinct
// calls of one conversation share one.
func TestContactProCallsAsContactProSendsThem(t *testing.T) {
	seen := map[string]string{}
	for _, c := range loadContactProCalls(t) {
		u, err := url.Parse(c.Path)
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.SplitN(strings.TrimPrefix(u.Path, "/v1/contactpro/"), "/", 3)
		for len(parts) < 3 {
			parts = append(parts, "")
		}
		q, _ := url.ParseQuery(c.Query)
		call, err := messages.NewContactProCall(parts[0], parts[1], parts[2], c.Method, q, c.bodyBytes())
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
			continue
		}
		if call.Event != c.Event || call.ContactID != c.Contact {
			t.Errorf("%s: event %q contact %q, want %q %q", c.Name, call.Event, call.ContactID, c.Event, c.Contact)
		}
		id := call.DedupID()
		if prev, dup := seen[id]; dup {
			t.Errorf("%s and %s share dedup id %q", c.Name, prev, id)
		}
		seen[id] = c.Name
		again, _ := messages.NewContactProCall(parts[0], parts[1], parts[2], c.Method, q, c.bodyBytes())
		if again.DedupID() != id {
			t.Errorf("%s: a retry has another dedup id", c.Name)
		}
	}
}

// TestDedupIDsNeverCross: ids of one source cannot be produced by another,
// whatever the sender puts in its own ids.
func TestDedupIDsNeverCross(t *testing.T) {
	cp, _ := messages.NewContactProCall("chat-attachments", "ended", "", "POST", nil, []byte(`{"contact_id":"G"}`))
	cl, err := messages.DecodeContactLensEvent([]byte(`{"id":"` + cp.DedupID()[:60] + `","account":"1","detail-type":"Contact Lens Post Call Rules Matched","time":"2026-11-21T09:58:00Z","detail":{"contactArn":"arn:aws:connect:r:1:instance/I/contact/C"}}`))
	if err != nil {
		t.Fatal(err)
	}
	sb := []byte(`{"app_id":"A","message":{"id":"` + cp.DedupID()[:60] + `"}}`)
	sc, err := messages.DecodeSinchCallback(sb)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{cl.DedupID(), sc.DedupID("eu", sb)} {
		if strings.HasPrefix(id, "contactpro:") {
			t.Errorf("%q reads as a Contact Pro id", id)
		}
	}
	if !strings.HasPrefix(cl.DedupID(), "connect:1:") || !strings.HasPrefix(sc.DedupID("eu", sb), "sinch:eu:inbound:") {
		t.Errorf("ids %q %q", cl.DedupID(), sc.DedupID("eu", sb))
	}
	// A rule event whose account and id spell a contact's trigger id does
	// not take it.
	hostile, err := messages.DecodeContactLensEvent([]byte(`{"id":"C","account":"analysis","detail-type":"Contact Lens Post Call Rules Matched","time":"2026-11-21T09:58:00Z","detail":{"contactArn":"arn:aws:connect:r:1:instance/I/contact/X"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if hostile.DedupID() == messages.SummaryDedupID("b", "C") {
		t.Errorf("a rule event took the trigger id %q of contact C", hostile.DedupID())
	}
}
