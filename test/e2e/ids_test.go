package e2e_test

import (
	"context"
	"net/http"
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
