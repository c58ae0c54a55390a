package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// Credentials of the second service of each source in the id tests.
const (
	idsSinchSecret2  = "ids-sinch-webhook-secret-2"
	idsSocial365Key2 = "ids-social365-api-key-2"
)

// TestIDsNamespacedByService: a service of a source never takes another
// service's ids. The same body sent first to another service (which its
// owner, or whoever holds its credential, can do) is stored for the
// legitimate service too; within one service a replay stays a duplicate;
// and a stored body published bare on its subject, as the NATS CLI does,
// derives the id ingest gave it.
func TestIDsNamespacedByService(t *testing.T) {
	ns := natstest.Embedded(t)
	env := append(messagingEnv(),
		"CCRELAY_SINCH_WEBHOOK_SECRETS=svc1:"+sinchSecret+",svc2:"+idsSinchSecret2,
		"CCRELAY_MESSAGING_API_KEYS=social365/hub="+social365Key+",social365/other="+idsSocial365Key2)
	d := deploy(t, ns.ClientURL(), 1, env...)
	apiKey := func(key string) http.Header {
		h := jsonHeader()
		h.Set("x-api-key", key)
		return h
	}
	project := []byte(`{"app_id":"","project_id":"p1","event_time":"2026-11-21T10:00:00Z","contact_create_notification":{"contact":{"id":"01CONTACT","display_name":"x"}}}`)
	inbound := inboundText("01IDSERVICE0000000000000001", time.Now())
	social := []byte(`{"text":"hello","from":"someone"}`)
	var stored []*jetstream.RawStreamMsg
	for _, c := range []struct {
		name          string
		first, second func() response
	}{
		{"sinch project-level callback",
			func() response {
				return d.post("/v1/sinch/svc2", signed(idsSinchSecret2, project, time.Now()), project)
			},
			func() response { return d.post("/v1/sinch/svc1", signed(sinchSecret, project, time.Now()), project) }},
		{"sinch inbound message",
			func() response {
				return d.post("/v1/sinch/svc2", signed(idsSinchSecret2, inbound, time.Now()), inbound)
			},
			func() response { return d.post("/v1/sinch/svc1", signed(sinchSecret, inbound, time.Now()), inbound) }},
		{"messaging body without an id",
			func() response { return d.post("/v1/messaging/social365/other", apiKey(idsSocial365Key2), social) },
			func() response { return d.post("/v1/messaging/social365/hub", apiKey(social365Key), social) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			r1 := c.first()
			if r1.status != http.StatusAccepted {
				t.Fatalf("the other service: %d %s", r1.status, r1.body)
			}
			r2 := c.second()
			if r2.status != http.StatusAccepted || r2.header.Get("Ccrelay-Duplicate") != "false" {
				t.Fatalf("the legitimate service: %d (duplicate %q) %s; want 202, stored", r2.status, r2.header.Get("Ccrelay-Duplicate"), r2.body)
			}
			m1, m2 := d.stored(r1), d.stored(r2)
			if m1.Header.Get(messages.HeaderID) == m2.Header.Get(messages.HeaderID) || m1.Subject == m2.Subject {
				t.Errorf("two services, one id %q or one subject %q", m1.Header.Get(messages.HeaderID), m1.Subject)
			}
			if r := c.second(); r.status != http.StatusOK || r.header.Get("Ccrelay-Duplicate") != "true" {
				t.Errorf("the legitimate service's retry: %d (duplicate %q), want 200 duplicate", r.status, r.header.Get("Ccrelay-Duplicate"))
			}
			stored = append(stored, m1, m2)
		})
	}
	t.Run("a bare body on its subject derives ingest's id", func(t *testing.T) {
		_, js := natstest.Connect(t, ns.ClientURL())
		for _, m := range stored {
			// nats pub <subject> --force-stdin: the body alone.
			ack, err := js.Publish(context.Background(), m.Subject, m.Data)
			if err != nil {
				t.Fatal(err)
			}
			st, err := js.Stream(context.Background(), d.subjects.EventsStream())
			if err != nil {
				t.Fatal(err)
			}
			bare, err := st.GetMsg(context.Background(), ack.Sequence)
			if err != nil {
				t.Fatal(err)
			}
			if bare.Header.Get(messages.HeaderID) != "" || bare.Header.Get(messages.HeaderSource) != "" {
				t.Fatalf("the republished message has ingest's headers %v", bare.Header)
			}
			want := m.Header.Get(messages.HeaderID)
			if got, err := d.subjects.EventID(bare.Subject, bare.Header, bare.Data); err != nil || got != want {
				t.Errorf("%s: derived %q (%v), ingest gave %q", m.Subject, got, err, want)
			}
		}
	})
}

// TestS3EventOfAnotherBucket: an S3 event naming another bucket than
// CCRELAY_CONNECT_BUCKET is refused before it takes an id, so it cannot
// make the real call's event a duplicate; the id names the bucket anyway.
func TestS3EventOfAnotherBucket(t *testing.T) {
	ns := natstest.Embedded(t)
	d := deploy(t, ns.ClientURL(), 1, "CCRELAY_CONNECT_BUCKET=amazon-connect-acme")
	h := jsonHeader()
	h.Set("x-api-key", connectAPIKey)
	real, err := os.ReadFile(filepath.Join(fixtures, "aws", "s3_object_created_analysis.json"))
	if err != nil {
		t.Fatal(err)
	}
	bogus := []byte(strings.ReplaceAll(string(real), "amazon-connect-acme", "attacker-bucket"))
	before := d.count()
	r := d.post("/v1/connect/events", h, bogus)
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(r.json(t)["message"].(string), "detail.bucket.name") {
		t.Fatalf("another bucket: %d %s; want 422 naming detail.bucket.name", r.status, r.body)
	}
	if d.count() != before {
		t.Fatal("the refused event was stored")
	}
	r = d.post("/v1/connect/events", h, real)
	if r.status != http.StatusAccepted || r.header.Get("Ccrelay-Duplicate") != "false" {
		t.Fatalf("the real call's event: %d %s", r.status, r.body)
	}
	const contact = "6c0f4a8e-2b1d-4e4b-9d57-0f6a2a1c9e11"
	if got, want := d.stored(r).Header.Get(messages.HeaderID), "connect.analysis:amazon-connect-acme:"+contact; got != want {
		t.Errorf("id %q, want %q", got, want)
	}
}

// TestContactProIDsDeterministic: a Contact Pro body is identified the
// same way on every retry, whatever the order Go's maps give its keys; a
// body that spells one key twice, or in two cases, is refused naming it,
// as the processors' encoding/json would read another value than ingest.
func TestContactProIDsDeterministic(t *testing.T) {
	ns := natstest.Embedded(t)
	d := deploy(t, ns.ClientURL(), 1)
	h := jsonHeader()
	h.Set("x-api-key", cpAPIKey)
	body := []byte(`{"event":"Ended","Event name":"Queued","Event date":"2026-11-21T10:00:00Z","contact_id":"0a1b-aaaa","contact_guid":"0a1b-bbbb","contact":{"guid":"0a1b-cccc","id":"0a1b-dddd"},"ID":"0a1b-eeee"}`)
	before := d.count()
	var first response
	for i := range 20 {
		r := d.post("/v1/contactpro/lifecycle", h, body)
		if r.status != http.StatusAccepted && r.status != http.StatusOK {
			t.Fatalf("retry %d: %d %s", i, r.status, r.body)
		}
		if i == 0 {
			first = r
			continue
		}
		if r.status != http.StatusOK || r.json(t)["id"] != first.json(t)["id"] || r.json(t)["subject"] != first.json(t)["subject"] {
			t.Fatalf("retry %d: %d %s; the first was %s", i, r.status, r.body, first.body)
		}
	}
	if n := d.count() - before; n != 1 {
		t.Errorf("20 retries of one call stored %d times", n)
	}
	// The documented precedence: "event" before "Event name", contact_id
	// before contact_guid, the contact object and ID.
	if got, want := first.json(t)["subject"], d.subjects.ContactPro("lifecycle", "ended"); got != want {
		t.Errorf("subject %v, want %v", got, want)
	}
	if id, _ := first.json(t)["id"].(string); !strings.HasPrefix(id, "contactpro:lifecycle:ended:0a1b-aaaa:") {
		t.Errorf("id %q, want the contact of contact_id", id)
	}

	before = d.count()
	for _, c := range []struct{ name, path, body, field string }{
		{"contact_id in two cases", "/v1/contactpro/chat-attachments/ended", `{"contact_id":"0a1b-aaaa","Contact_ID":"0a1b-bbbb"}`, "contact_id"},
		{"contact_id twice", "/v1/contactpro/chat-attachments/ended", `{"contact_id":"0a1b-aaaa","contact_id":"0a1b-bbbb"}`, "contact_id"},
		{"event twice", "/v1/contactpro/lifecycle", `{"event":"Ended","event":"Queued","ID":"0a1b-aaaa"}`, "event"},
		{"Event name in two cases", "/v1/contactpro/lifecycle", `{"Event name":"Ended","event NAME":"Queued"}`, "Event name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := d.post(c.path, h, []byte(c.body))
			if r.status != http.StatusBadRequest || r.code(t) != "invalid_payload" || !strings.Contains(r.json(t)["message"].(string), c.field) {
				t.Errorf("%d %s; want 400 invalid_payload naming %s", r.status, r.body, c.field)
			}
		})
	}
	if d.count() != before {
		t.Errorf("refused calls were stored")
	}
}

// TestIDsCarryNoPersonalData: phone numbers and e-mail addresses never
// reach a dedup id, so they stay out of the logs, the answers, the
// headers, the dead letters and X-Ccrelay-Event-Id.
func TestIDsCarryNoPersonalData(t *testing.T) {
	ns := natstest.Embedded(t)
	d := deploy(t, ns.ClientURL(), 1, messagingEnv()...)
	const phone, email = "4917612345678", "jane.doe@example.com"
	dr := []byte(strings.Replace(string(messagingFixture(t, "sinchsms_recipient_delivery_report.json")), "+44231235674", "+"+phone, 1))
	cp := jsonHeader()
	cp.Set("x-api-key", cpAPIKey)
	for _, c := range []struct {
		name string
		send func() response
	}{
		{"a Sinch SMS recipient delivery report", func() response {
			return d.post("/v1/messaging/sinchsms/basic", basicJSON("smsuser", wavyPassword), dr)
		}},
		{"a Contact Pro contact in the path", func() response {
			return d.do(0, http.MethodGet, "/v1/contactpro/crm/ended/%2B"+phone, cp, nil)
		}},
		{"a Contact Pro contact in the query", func() response {
			return d.do(0, http.MethodPut, "/v1/contactpro/crm?event=ended&contact_id=0"+phone, cp, nil)
		}},
		{"a Contact Pro contact that is an e-mail address", func() response {
			return d.post("/v1/contactpro/crm/ended", cp, fmt.Appendf(nil, `{"ID":%q,"Event date":"2026-11-21T10:00:00Z"}`, email))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := c.send()
			if r.status != http.StatusAccepted {
				t.Fatalf("%d %s", r.status, r.body)
			}
			m := d.stored(r)
			for _, pii := range []string{phone, email} {
				if id := m.Header.Get(messages.HeaderID); strings.Contains(id, pii) {
					t.Errorf("the id %q holds %s", id, pii)
				}
				if strings.Contains(string(r.body), pii) {
					t.Errorf("the answer %s holds %s", r.body, pii)
				}
			}
		})
	}
	for _, pii := range []string{phone, email} {
		if strings.Contains(d.logs.String(), pii) {
			t.Errorf("the logs hold %s", pii)
		}
	}
}
