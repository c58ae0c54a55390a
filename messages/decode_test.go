package messages_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/test/expect"

	"github.com/ccrelay/ccrelay/messages"
)

func TestDecodeSinchInboundKinds(t *testing.T) {
	for _, c := range []struct {
		msg  string
		kind string
	}{
		{`{"text_message":{"text":"hi"}}`, messages.KindText},
		{`{"media_message":{"url":"https://m.test/a.jpg","thumbnail_url":"https://m.test/t.jpg","filename_override":"a.jpg"}}`, messages.KindMedia},
		{`{"choice_response_message":{"message_id":"m1","postback_data":"yes"}}`, messages.KindChoiceResponse},
		{`{"location_message":{"coordinates":{"latitude":59.3,"longitude":18.1},"title":"Office","label":"HQ"}}`, messages.KindLocation},
		{`{"media_card_message":{"url":"https://m.test/c.png","caption":"look"}}`, messages.KindMediaCard},
		{`{"fallback_message":{"raw_message":"{}","reason":{"code":"UNSUPPORTED","description":"d"}}}`, messages.KindFallback},
		{`{"product_response_message":{"products":[{"id":"p1","marketplace":"FACEBOOK","quantity":2,"item_price":9.5,"currency":"EUR"}],"title":"Order","catalog_id":"c1"}}`, messages.KindProductResponse},
		{`{"channel_specific_message":{"message_type":"nfm_reply"}}`, messages.KindChannelSpecific},
		{`{"brand_new_kind":{}}`, messages.KindOther},
		{`{"text_message":{"text":"re"},"reply_to":{"message_id":"m0"}}`, messages.KindText},
	} {
		body := `{"app_id":"APP","project_id":"P","accepted_time":"2026-11-21T10:00:00Z","event_time":"2026-11-21T10:00:01.5Z",
"message":{"id":"M1","direction":"TO_APP","contact_message":` + c.msg + `,"channel_identity":{"channel":"WHATSAPP","identity":"4670","app_id":"APP"},
"conversation_id":"CV","contact_id":"CT","accept_time":"2026-11-21T10:00:00Z","processing_mode":"DISPATCH","unknown_future_field":1}}`
		cb, err := messages.DecodeSinchCallback([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", c.kind, err)
		}
		if cb.Trigger != messages.TriggerMessageInbound || !cb.Known || cb.Message == nil {
			t.Fatalf("%s: trigger %q known %v", c.kind, cb.Trigger, cb.Known)
		}
		if got := cb.Message.ContactMessage.Kind(); got != c.kind {
			t.Errorf("kind %q, want %q", got, c.kind)
		}
		expect.All(t,
			expect.Check{Name: c.kind + ": dedup id", Got: cb.DedupID("eu", []byte(body)), Want: "sinch:eu:inbound:M1"},
			expect.Check{Name: c.kind + ": app id", Got: cb.AppID, Want: "APP"},
			expect.Check{Name: c.kind + ": channel", Got: cb.Message.ChannelIdentity.Channel, Want: "WHATSAPP"},
		)
		if !cb.Time().Equal(time.Date(2026, 11, 21, 10, 0, 1, 5e8, time.UTC)) {
			t.Errorf("time %v", cb.Time())
		}
	}
	cb, _ := messages.DecodeSinchCallback([]byte(`{"app_id":"A","message":{"id":"M","contact_message":{"location_message":{"coordinates":{"latitude":1.5,"longitude":-2}}}}}`))
	if l := cb.Message.ContactMessage.LocationMessage; l.Coordinates.Latitude != 1.5 || l.Coordinates.Longitude != -2 {
		t.Errorf("location %+v", l)
	}
}

func TestDecodeSinchDelivery(t *testing.T) {
	body := []byte(`{"app_id":"APP","accepted_time":"2026-11-21T10:00:00Z","message_delivery_report":{"message_id":"M9","status":"FAILED",
"channel_identity":{"channel":"SMS","identity":"46","app_id":"APP"},"reason":{"code":"RECIPIENT_NOT_OPTED_IN","description":"d","sub_code":"UNSPECIFIED_SUB_CODE"}}}`)
	cb, err := messages.DecodeSinchCallback(body)
	if err != nil {
		t.Fatal(err)
	}
	r := cb.DeliveryReport
	if r == nil {
		t.Fatalf("no delivery report decoded from %s", body)
	}
	expect.All(t,
		expect.Check{Name: "trigger", Got: cb.Trigger, Want: messages.TriggerMessageDelivery},
		expect.Check{Name: "status", Got: r.Status, Want: messages.StatusFailed},
		expect.Check{Name: "reason code", Got: r.Reason.Code, Want: "RECIPIENT_NOT_OPTED_IN"},
		expect.Check{Name: "reason sub code", Got: r.Reason.SubCode, Want: "UNSPECIFIED_SUB_CODE"},
	)
	if cb.DedupID("eu", body) != "sinch:eu:delivery:M9:FAILED:SMS" {
		t.Errorf("dedup %q", cb.DedupID("eu", body))
	}
	if !cb.Time().Equal(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("time falls back to accepted_time: %v", cb.Time())
	}
}

func TestDecodeSinchOtherTriggers(t *testing.T) {
	for key, want := range map[string]messages.SinchTrigger{
		"event":                           messages.TriggerEventInbound,
		"conversation_start_notification": messages.TriggerConversationStart,
		"contact_merge_notification":      messages.TriggerContactMerge,
		"opt_out_notification":            messages.TriggerOptOut,
		"unsupported_callback":            messages.TriggerUnsupported,
		"record_notification":             "RECORD_NOTIFICATION",
	} {
		body := []byte(`{"app_id":"A","project_id":"P","` + key + `":{"x":1}}`)
		cb, err := messages.DecodeSinchCallback(body)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if cb.Trigger != want {
			t.Errorf("%s: trigger %q, want %q", key, cb.Trigger, want)
		}
		if want := "sinch:eu:" + strings.ToLower(string(want)) + ":" + messages.BodyDigest(body); cb.DedupID("eu", body) != want {
			t.Errorf("%s: dedup id %q, want %q", key, cb.DedupID("eu", body), want)
		}
	}
	cb, err := messages.DecodeSinchCallback([]byte(`{"app_id":"A","new_a":{},"new_b":{}}`))
	if err != nil || cb.Trigger != messages.SinchOtherTrigger {
		t.Errorf("two unknown keys: %v %v", cb, err)
	}
	cb, err = messages.DecodeSinchCallback([]byte(`{"app_id":"A","message":{"id":"M","contact_message":{"text_message":{"text":"x"}}},"new_key":{}}`))
	if err != nil || cb.Trigger != messages.TriggerMessageInbound {
		t.Errorf("known trigger beside an unknown key: %v %v", cb, err)
	}
}

func TestDecodeSinchRejects(t *testing.T) {
	for name, c := range map[string]struct{ body, field string }{
		"not json":         {`{`, ""},
		"array":            {`[1]`, "callback"},
		"null":             {`null`, "callback"},
		"app_id number":    {`{"app_id":5,"message":{}}`, "message.id"},
		"no trigger":       {`{"app_id":"A","project_id":"P"}`, "callback"},
		"two triggers":     {`{"app_id":"A","message":{"id":"M","contact_message":{}},"event":{}}`, ""},
		"no message id":    {`{"app_id":"A","message":{"contact_message":{"text_message":{}}}}`, "message.id"},
		"report no status": {`{"app_id":"A","message_delivery_report":{"message_id":"M"}}`, "message_delivery_report.status"},
		"report no id":     {`{"app_id":"A","message_delivery_report":{"status":"READ"}}`, "message_delivery_report.message_id"},
		"payload not obj":  {`{"app_id":"A","event":"x"}`, "event"},
		"message id CRLF":  {`{"app_id":"A","message":{"id":"M\r\nNats-Msg-Id: x"}}`, "message.id"},
		"message id huge":  {`{"app_id":"A","message":{"id":"` + strings.Repeat("m", 129) + `"}}`, "message.id"},
		"app id huge":      {`{"app_id":"` + strings.Repeat("a.", 40) + `","message":{"id":"M"}}`, "app_id"},
		"trigger key huge": {`{"app_id":"A","` + strings.Repeat("k", 200) + `":{}}`, ""},
		"trigger key CRLF": {"{\"app_id\":\"A\",\"a\\r\\nNats-Msg-Id: x\":{}}", ""},
	} {
		_, err := messages.DecodeSinchCallback([]byte(c.body))
		if !errors.Is(err, messages.ErrInvalidPayload) {
			t.Errorf("%s: err %v does not wrap ErrInvalidPayload", name, err)
			continue
		}
		var fe *messages.FieldError
		if c.field != "" && (!errors.As(err, &fe) || fe.Field != c.field) {
			t.Errorf("%s: err %v, want field %q", name, err, c.field)
		}
	}
}

func TestDecodeContactLens(t *testing.T) {
	body := []byte(`{"version":"0","id":"E1","detail-type":"Contact Lens Post Call Rules Matched","source":"aws.connect","account":"1",
"time":"2026-11-21T09:58:00Z","region":"eu-central-1","resources":[],"detail":{"version":"1.0","ruleName":"R","actionName":"A",
"contactArn":"arn:aws:connect:eu-central-1:1:instance/INST/contact/CONTACT","agentArn":"x","queueArn":"y","eventMetadata":{"k":"v"}}}`)
	e, err := messages.DecodeContactLensEvent(body)
	if err != nil {
		t.Fatal(err)
	}
	expect.All(t,
		expect.Check{Name: "contact id", Got: e.ContactID(), Want: "CONTACT"},
		expect.Check{Name: "instance id", Got: e.InstanceID(), Want: "INST"},
		expect.Check{Name: "rule name", Got: e.Detail.RuleName, Want: "R"},
		expect.Check{Name: "event id", Got: e.ID, Want: "E1"},
	)
	other := strings.Replace(string(body), "Post Call", "Realtime", 1)
	if _, err := messages.DecodeContactLensEvent([]byte(other)); !errors.Is(err, messages.ErrUnsupportedDetailType) {
		t.Errorf("other detail-type: %v", err)
	}
	for name, b := range map[string]string{
		"not json":                 `{`,
		"no type":                  `{"id":"E"}`,
		"no id":                    `{"detail-type":"Contact Lens Post Call Rules Matched","time":"2026-11-21T09:58:00Z","detail":{"contactArn":"arn:aws:connect:r:1:instance/I/contact/C"}}`,
		"no time":                  `{"id":"E","detail-type":"Contact Lens Post Call Rules Matched","detail":{"contactArn":"arn:aws:connect:r:1:instance/I/contact/C"}}`,
		"no arn":                   `{"id":"E","detail-type":"Contact Lens Post Call Rules Matched","time":"2026-11-21T09:58:00Z","detail":{}}`,
		"bad arn":                  `{"id":"E","detail-type":"Contact Lens Post Call Rules Matched","time":"2026-11-21T09:58:00Z","detail":{"contactArn":"nonsense"}}`,
		"empty contact":            `{"id":"E","detail-type":"Contact Lens Post Call Rules Matched","time":"2026-11-21T09:58:00Z","detail":{"contactArn":"arn:aws:connect:r:1:instance/I/contact/"}}`,
		"CRLF in the instance ARN": `{"id":"E","detail-type":"Contact Lens Post Call Rules Matched","time":"2026-11-21T09:58:00Z","detail":{"instanceArn":"arn\r\nx: y:aws:connect:r:1:instance/I","contactArn":"arn:aws:connect:r:1:instance/I/contact/C"}}`,
	} {
		if _, err := messages.DecodeContactLensEvent([]byte(b)); !errors.Is(err, messages.ErrInvalidPayload) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestContactPro(t *testing.T) {
	c, err := messages.DecodeChatAttachmentsCall([]byte(`{"cmi_url":"https://cmi.test/acme/cmi","cmi_user":"u","sap_v1":{"url":"https://my1.crm.cloud.sap","user":"v1"},"contact_id":"G","extra":true}`))
	if err != nil {
		t.Fatal(err)
	}
	expect.All(t,
		expect.Check{Name: "contact_id", Got: c.ContactID, Want: "G"},
		expect.Check{Name: "sap_v1.user", Got: c.SAP.User, Want: "v1"},
		expect.Check{Name: "cmi_url", Got: c.CMIURL, Want: "https://cmi.test/acme/cmi"},
	)
	if _, err := messages.DecodeChatAttachmentsCall([]byte(`{"contact_id":"G"}`)); err != nil {
		t.Errorf("a body with only contact_id must do (replay with configured credentials): %v", err)
	}
	for _, b := range []string{`{}`, `{"contact_id":" "}`, `{"contact_id":"G","cmi_url":"cmi.test"}`, `{"contact_id":"G","sap_v1":{"url":"javascript:x"}}`, `[`, `{"contact_id":5}`} {
		if _, err := messages.DecodeChatAttachmentsCall([]byte(b)); !errors.Is(err, messages.ErrInvalidPayload) {
			t.Errorf("%s: %v", b, err)
		}
	}
	for _, c := range []struct{ integration, event, body, prefix string }{
		{"chat-attachments", "Ended", `{"contact_id":"G1"}`, "contactpro:chat-attachments:ended:G1:"},
		{"x", "", `{"contact_guid":"G2"}`, "contactpro:x:any:G2:"},
		{"x", "queued", `{"contact":{"id":"I3"}}`, "contactpro:x:queued:I3:"},
		{"x", "queued", `{"contact":{"guid":"G3"}}`, "contactpro:x:queued:G3:"},
		{"x", "", `{"event":"Queued","ID":"I4"}`, "contactpro:x:queued:I4:"},
		{"x", "", `{"event":{"name":"Accepted"},"contact":{"id":"I5"}}`, "contactpro:x:accepted:I5:"},
		{"x", "queued", `{"a":1}`, "contactpro:x:queued:-:"},
		{"x", "queued", ``, "contactpro:x:queued:-:"},
		{"x", "queued", `[1]`, "contactpro:x:queued:-:"},
		{"x", "queued", `{"contact_id":1}`, "contactpro:x:queued:-:"},
	} {
		call, err := messages.NewContactProCall(c.integration, c.event, "", "POST", nil, []byte(c.body))
		if err != nil || !strings.HasPrefix(call.DedupID(), c.prefix) || len(call.DedupID()) != len(c.prefix)+32 {
			t.Errorf("%s: %v, want %q and 32 hex digits", c.body, err, c.prefix)
		}
	}
	for name, c := range map[string]struct {
		event, rest string
		query       url.Values
		body        string
	}{
		"not json":       {"x", "", nil, `{`},
		"long event":     {strings.Repeat("e", 65), "", nil, ``},
		"long path":      {"x", strings.Repeat("p/", 200), nil, ``},
		"CR in path":     {"x", "a\r\nb", nil, ``},
		"long query":     {"x", "", url.Values{"a": {strings.Repeat("q", 2000)}}, ``},
		"long contact":   {"x", "", nil, `{"contact_id":"` + strings.Repeat("c", 129) + `"}`},
		"contact CRLF":   {"x", "", nil, `{"contact_id":"c\r\nx: y"}`},
		"event in query": {"", "", url.Values{"event": {strings.Repeat("e", 200)}}, ``},
	} {
		if _, err := messages.NewContactProCall("x", c.event, c.rest, "POST", c.query, []byte(c.body)); !errors.Is(err, messages.ErrInvalidPayload) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The decoders must never panic, must either succeed or fail with
// ErrInvalidPayload (or, for Connect, ErrUnsupportedDetailType), and what they
// accept must satisfy the contract's promises.
func FuzzDecodeSinchCallback(f *testing.F) {
	for _, b := range sinchFixtures(f) {
		f.Add(b.body)
	}
	for _, s := range []string{
		"{\"app_id\":\"A\",\"a\\r\\nb\":{}}",
		`{"app_id":"A","message":{"id":"M","contact_message":{"text_message":{"text":"x"}}}}`,
		`{"app_id":"A","message_delivery_report":{"message_id":"M","status":"READ"}}`,
		`{"app_id":"A","new":{}}`, `{"app_id":"A","a":{},"b":{}}`, `{}`, `null`, `[]`, `{"app_id":"A","event":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		cb, err := messages.DecodeSinchCallback(body)
		if err != nil {
			if !errors.Is(err, messages.ErrInvalidPayload) {
				t.Fatalf("error does not wrap ErrInvalidPayload: %v", err)
			}
			return
		}
		if cb.Trigger == "" || !strings.HasPrefix(cb.DedupID("eu", body), "sinch:eu:") {
			t.Fatalf("accepted without trigger or dedup id: %+v", cb)
		}
		s, _ := messages.NewSubjects("ccrelay")
		subj := s.Sinch(string(cb.Trigger), "eu", cb.AppID, messages.Partition(cb.SinchConversation()))
		for _, tok := range strings.Split(subj, ".") {
			if len(tok) > messages.MaxTokenBytes || tok == "" {
				t.Fatalf("subject %q has a token out of bounds", subj)
			}
		}
		id := cb.DedupID("eu", body)
		for i := 0; i < len(id); i++ {
			if id[i] < 0x20 || id[i] == 0x7f {
				t.Fatalf("control character in dedup id %q", id)
			}
		}
		if cb.Trigger == messages.TriggerMessageInbound && (cb.Message == nil || cb.Message.ID == "") {
			t.Fatal("inbound without message id")
		}
		if !json.Valid(body) {
			t.Fatal("accepted invalid JSON")
		}
		// Keys match as encoding/json matches them: a body that differs
		// only in the case of its keys decodes alike.
		if up, err := messages.DecodeSinchCallback(bytes.ToUpper(body)); err == nil && up.Known != cb.Known {
			t.Fatalf("key case changed whether the trigger is known: %v vs %v", up.Trigger, cb.Trigger)
		}
	})
}

// benchInbound is a MESSAGE_INBOUND callback as Sinch sends it.
var benchInbound = []byte(`{"app_id":"01EB37HMH1M6SV18ABNS3G135H","accepted_time":"2026-11-21T10:00:00Z","event_time":"2026-11-21T10:00:00.5Z",
"project_id":"c36f3d3d-1513-4edd-ae42-11995557ff61","message":{"id":"01EQ8235TD19N21XQTH12B145D","direction":"TO_APP",
"contact_message":{"text_message":{"text":"Hello, my order 4711 has not arrived yet and the tracking page shows no update since Monday."}},
"channel_identity":{"channel":"WHATSAPP","identity":"46732000000","app_id":"01EB37HMH1M6SV18ABNS3G135H"},
"conversation_id":"01EQ8235TD19N21XQTH12B145D","contact_id":"01EQ4174TXFK2FVQTX1MJ4SMGH","metadata":"","accept_time":"2026-11-21T10:00:00Z",
"processing_mode":"DISPATCH"},"message_metadata":"","correlation_id":""}`)

func BenchmarkDecodeSinchCallback(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchInbound)))
	for b.Loop() {
		if _, err := messages.DecodeSinchCallback(benchInbound); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRouteSinchCallback is what ingest pays per callback, against
// BenchmarkDecodeSinchCallback.
func BenchmarkRouteSinchCallback(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchInbound)))
	for b.Loop() {
		if _, err := messages.RouteSinchCallback("eu", benchInbound); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzDecodeContactLensEvent(f *testing.F) {
	f.Add([]byte(`{"id":"E","detail-type":"Contact Lens Post Call Rules Matched","time":"2026-11-21T09:58:00Z","detail":{"contactArn":"arn:aws:connect:r:1:instance/I/contact/C"}}`))
	f.Add([]byte(`{"detail-type":"Other"}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := messages.DecodeContactLensEvent(body)
		if err != nil {
			if !errors.Is(err, messages.ErrInvalidPayload) && !errors.Is(err, messages.ErrUnsupportedDetailType) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if e.ID == "" || e.ContactID() == "" || e.InstanceID() == "" {
			t.Fatalf("accepted without ids: %+v", e)
		}
		for _, v := range []string{e.DedupID(), e.Detail.InstanceArn} {
			for i := 0; i < len(v); i++ {
				if v[i] < 0x20 || v[i] == 0x7f {
					t.Fatalf("control character in a value that becomes a header: %q", v)
				}
			}
		}
	})
}

func FuzzDecodeChatAttachmentsCall(f *testing.F) {
	f.Add([]byte(`{"cmi_url":"https://c.test","contact_id":"G","sap_v1":{"url":"https://s.test","user":"u"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := messages.DecodeChatAttachmentsCall(body)
		if err != nil {
			if !errors.Is(err, messages.ErrInvalidPayload) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if strings.TrimSpace(c.ContactID) == "" {
			t.Fatal("accepted without contact_id")
		}
		// The processor reads the contact the id was built from.
		call, err := messages.NewContactProCall(messages.IntegrationChatAttachments, "ended", "", "POST", nil, body)
		if err != nil || call.ContactID != c.ContactID {
			t.Fatalf("the id (%v) names contact %q, the processor reads %q", err, call.ContactID, c.ContactID)
		}
	})
}

func FuzzContactProCall(f *testing.F) {
	f.Add("x", "y", "", "a=b", []byte(`{"contact":{"guid":"g"}}`))
	f.Add("x", "", "c/1", "", []byte(`{"a":[1,2]}`))
	for _, c := range loadContactProCalls(f) {
		u, _ := url.Parse(c.Path + "?" + c.Query)
		parts := strings.SplitN(strings.TrimPrefix(u.Path, "/v1/contactpro/"), "/", 3)
		for len(parts) < 3 {
			parts = append(parts, "")
		}
		f.Add(parts[0], parts[1], parts[2], c.Query, c.bodyBytes())
	}
	f.Fuzz(func(t *testing.T, integration, event, rest, query string, body []byte) {
		q, _ := url.ParseQuery(query)
		call, err := messages.NewContactProCall(integration, event, rest, "POST", q, body)
		if err != nil {
			if !errors.Is(err, messages.ErrInvalidPayload) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		id := call.DedupID()
		if !strings.HasPrefix(id, "contactpro:") || len(id) > 400 {
			t.Fatalf("dedup id %q", id)
		}
		// Whatever order Go's maps give the body's keys.
		if again, err := messages.NewContactProCall(integration, event, rest, "POST", q, body); err != nil || again.DedupID() != id || again.Event != call.Event {
			t.Fatalf("not deterministic: %v %v", again, err)
		}
		for i := 0; i < len(id); i++ {
			if id[i] < 0x20 || id[i] == 0x7f {
				t.Fatalf("control character in dedup id %q", id)
			}
		}
		if err := messages.CheckToken("event", call.Event); err != nil {
			t.Fatalf("accepted event %q: %v", call.Event, err)
		}
		if len(call.RedactedQuery()) > 4*messages.MaxContactProQuery {
			t.Fatalf("query %d bytes", len(call.RedactedQuery()))
		}
	})
}
