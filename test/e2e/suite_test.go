package e2e_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/messages/seal"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// The same suite runs against an embedded server and a server in a
// container, as watermill runs one conformance suite against each backend.
func TestIngestEmbedded(t *testing.T) {
	ns := natstest.Embedded(t)
	ingestSuite(t, ns.ClientURL())
}

func TestIngestContainer(t *testing.T) {
	url, _ := natstest.Container(t)
	ingestSuite(t, url)
}

func ingestSuite(t *testing.T, natsURL string) {
	t.Run("sinch", func(t *testing.T) { sinchSuite(t, natsURL) })
	t.Run("sinch callbacks as Sinch sends them", func(t *testing.T) { realSinchCallbacks(t, natsURL) })
	t.Run("contactpro calls as Contact Pro sends them", func(t *testing.T) { realContactProCalls(t, natsURL) })
	t.Run("s3 events as AWS sends them", func(t *testing.T) { realS3Events(t, natsURL) })
	t.Run("sinch replays are duplicates on every replica", func(t *testing.T) { sinchReplicas(t, natsURL) })
	t.Run("sinch without clock checks", func(t *testing.T) { sinchNoSkew(t, natsURL) })
	t.Run("jetstream unavailable", func(t *testing.T) { unavailable(t, natsURL) })
	t.Run("contactpro", func(t *testing.T) { contactProSuite(t, natsURL) })
	t.Run("contactpro without seal keys", func(t *testing.T) { contactProNoSeal(t, natsURL) })
	t.Run("oauth token endpoint", func(t *testing.T) { oauthSuite(t, natsURL) })
	t.Run("oauth external jwks", func(t *testing.T) { jwksSuite(t, natsURL) })
	t.Run("connect", func(t *testing.T) { connectSuite(t, natsURL) })
	t.Run("messaging webhooks as the providers send them", func(t *testing.T) { messagingSuite(t, natsURL) })
	t.Run("unconfigured endpoints refuse", func(t *testing.T) { unconfigured(t, natsURL) })
	t.Run("health", func(t *testing.T) { health(t, natsURL) })
}

// conversationPartition is the partition token of a Sinch callback's
// conversation, derived the way ingest does.
func conversationPartition(t testing.TB, body []byte) string {
	t.Helper()
	cb, err := messages.DecodeSinchCallback(body)
	if err != nil {
		t.Fatal(err)
	}
	return messages.Partition(cb.SinchConversation())
}

func sinchSuite(t *testing.T, natsURL string) {
	d := deploy(t, natsURL, 1)
	now := time.Now().UTC()
	body := inboundText("01MSGINBOUND000000000000001", now)
	h := signed(sinchSecret, body, now)
	h.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")

	r := d.post("/v1/sinch/svc1", h, body)
	if r.status != http.StatusAccepted {
		t.Fatalf("inbound: status %d %s", r.status, r.body)
	}
	if r.header.Get("Ccrelay-Duplicate") != "false" {
		t.Errorf("Ccrelay-Duplicate = %q", r.header.Get("Ccrelay-Duplicate"))
	}
	msg := d.stored(r)
	wantSubject := d.subjects.Prefix() + ".in.sinch.message_inbound.svc1." + appID + "." + conversationPartition(t, body)
	if msg.Subject != wantSubject {
		t.Errorf("subject %q, want %q", msg.Subject, wantSubject)
	}
	if !bytes.Equal(msg.Data, body) {
		t.Errorf("stored body differs from the request body")
	}
	for k, want := range map[string]string{
		"Nats-Msg-Id":    "sinch:svc1:inbound:01MSGINBOUND000000000000001",
		"ce-id":          "sinch:svc1:inbound:01MSGINBOUND000000000000001",
		"ce-specversion": "1.0",
		"ce-source":      "/sinch/svc1",
		"ce-type":        "com.sinch.conversation.message_inbound",
		"ce-time":        now.Format(time.RFC3339Nano),
		"Content-Type":   "application/json",
		"traceparent":    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	} {
		if got := msg.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, msg.Header.Get("Ccrelay-Received-At")); err != nil {
		t.Errorf("Ccrelay-Received-At: %v", err)
	}

	// Sinch retries with a new nonce: stored once, answered 200 duplicate.
	r2 := d.post("/v1/sinch/svc1", signed(sinchSecret, body, now), body)
	if r2.status != http.StatusOK || r2.header.Get("Ccrelay-Duplicate") != "true" || r2.json(t)["duplicate"] != true {
		t.Fatalf("duplicate: status %d dup %q %s", r2.status, r2.header.Get("Ccrelay-Duplicate"), r2.body)
	}
	if n := d.count(); n != 1 {
		t.Fatalf("stored %d events after a duplicate, want 1", n)
	}

	// A replay of the very same request (same nonce) is the duplicate it
	// is: answered 200, nothing stored.
	before := d.count()
	if r := d.post("/v1/sinch/svc1", h, body); r.status != http.StatusOK || r.header.Get("Ccrelay-Duplicate") != "true" {
		t.Fatalf("replay: %d (duplicate %q) %s, want 200 duplicate", r.status, r.header.Get("Ccrelay-Duplicate"), r.body)
	}
	if n := d.count(); n != before {
		t.Fatalf("a replay changed the stream: %d -> %d events", before, n)
	}

	// Delivery reports: one event per status of a message.
	for _, st := range []string{"DELIVERED", "READ"} {
		b := deliveryReport("01OUTBOUND", st)
		r := d.post("/v1/sinch/svc1", signed(sinchSecret, b, time.Now()), b)
		if r.status != http.StatusAccepted {
			t.Fatalf("delivery %s: %d %s", st, r.status, r.body)
		}
		m := d.stored(r)
		if got := m.Header.Get("Nats-Msg-Id"); got != "sinch:svc1:delivery:01OUTBOUND:"+st+":SINCH_CHAT" {
			t.Errorf("delivery dedup id %q", got)
		}
		if !strings.HasSuffix(m.Subject, ".in.sinch.message_delivery.svc1."+appID+"."+conversationPartition(t, b)) {
			t.Errorf("delivery subject %q", m.Subject)
		}
	}

	// Media messages are stored like any inbound message.
	mb := inboundMedia("01MEDIA")
	if r := d.post("/v1/sinch/svc1", signed(sinchSecret, mb, time.Now()), mb); r.status != http.StatusAccepted {
		t.Fatalf("media: %d %s", r.status, r.body)
	}

	// An unknown trigger is stored under its own subject, dedup by digest.
	ub := []byte(`{"app_id":"APP.1 *>","project_id":"p","brand_new_notification":{"x":1}}`)
	r = d.post("/v1/sinch/svc1", signed(sinchSecret, ub, time.Now()), ub)
	if r.status != http.StatusAccepted {
		t.Fatalf("unknown trigger: %d %s", r.status, r.body)
	}
	um := d.stored(r)
	if want := d.subjects.Prefix() + ".in.sinch.brand_new_notification.svc1.APP%2E1%20%2A%3E." + messages.Partition("sinch/APP.1 *>"); um.Subject != want {
		t.Errorf("unknown trigger subject %q, want %q", um.Subject, want)
	}
	sum := sha256.Sum256(ub)
	if got := um.Header.Get("Nats-Msg-Id"); got != "sinch:svc1:brand_new_notification:"+hex.EncodeToString(sum[:]) {
		t.Errorf("unknown trigger dedup id %q", got)
	}
	if d.metric("ccrelay_ingest_published_total", map[string]string{"source": "sinch", "type": "other"}) != 1 {
		t.Errorf("unknown trigger not counted as type other")
	}
	before = d.count()

	// Every bad input is answered with its code and stores nothing.
	good := inboundText("01BADINPUT", time.Now())
	tamper := func(f func(h http.Header)) http.Header {
		h := signed(sinchSecret, good, time.Now())
		f(h)
		return h
	}
	big := bytes.Repeat([]byte("x"), 20000)
	malformed := []byte(`{"app_id":`)
	noID := []byte(`{"app_id":"A","message":{"contact_message":{"text_message":{"text":"x"}}}}`)
	noTrigger := []byte(`{"app_id":"A","project_id":"p"}`)
	cases := []struct {
		name   string
		path   string
		method string
		h      http.Header
		body   []byte
		status int
		code   string
	}{
		// Every refusal of credentials is the same answer (the log says
		// which check refused it): a caller cannot tell a configured
		// service from another, nor which part of a signature was wrong.
		{"bad signature", "/v1/sinch/svc1", "POST", tamper(func(h http.Header) {
			h.Set("X-Sinch-Webhook-Signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
		}), good, 401, "unauthorized"},
		{"signature of another body", "/v1/sinch/svc1", "POST", signed(sinchSecret, []byte("{}"), time.Now()), good, 401, "unauthorized"},
		{"wrong secret", "/v1/sinch/svc1", "POST", signed("other-secret", good, time.Now()), good, 401, "unauthorized"},
		{"no signature headers", "/v1/sinch/svc1", "POST", jsonHeader(), good, 401, "unauthorized"},
		{"other algorithm", "/v1/sinch/svc1", "POST", tamper(func(h http.Header) { h.Set("X-Sinch-Webhook-Signature-Algorithm", "HmacSHA1") }), good, 401, "unauthorized"},
		{"stale timestamp", "/v1/sinch/svc1", "POST", signed(sinchSecret, good, time.Now().Add(-10*time.Minute)), good, 401, "unauthorized"},
		{"future timestamp", "/v1/sinch/svc1", "POST", signed(sinchSecret, good, time.Now().Add(10*time.Minute)), good, 401, "unauthorized"},
		{"unknown service", "/v1/sinch/nope", "POST", signed(sinchSecret, good, time.Now()), good, 401, "unauthorized"},
		{"wrong content type", "/v1/sinch/svc1", "POST", tamper(func(h http.Header) { h.Set("Content-Type", "text/plain") }), good, 415, "unsupported_media_type"},
		{"no content type", "/v1/sinch/svc1", "POST", tamper(func(h http.Header) { h.Del("Content-Type") }), good, 415, "unsupported_media_type"},
		{"too large", "/v1/sinch/svc1", "POST", signed(sinchSecret, big, time.Now()), big, 413, "payload_too_large"},
		{"malformed json", "/v1/sinch/svc1", "POST", signed(sinchSecret, malformed, time.Now()), malformed, 400, "invalid_payload"},
		{"missing message id", "/v1/sinch/svc1", "POST", signed(sinchSecret, noID, time.Now()), noID, 400, "invalid_payload"},
		{"no trigger", "/v1/sinch/svc1", "POST", signed(sinchSecret, noTrigger, time.Now()), noTrigger, 400, "invalid_payload"},
		{"wrong method", "/v1/sinch/svc1", "GET", nil, nil, 405, "method_not_allowed"},
		{"no such endpoint", "/v1/nothing", "POST", jsonHeader(), good, 404, "not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := d.do(0, c.method, c.path, c.h, c.body)
			if r.status != c.status || r.code(t) != c.code {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, c.status, c.code)
			}
			if msg, _ := r.json(t)["message"].(string); msg == "" {
				t.Errorf("error answer has no message: %s", r.body)
			}
			if n := d.count(); n != before {
				t.Fatalf("a refused request changed the stream: %d events, want %d", n, before)
			}
		})
	}
	if r := d.post("/v1/sinch/svc1", signed(sinchSecret, good, time.Now()), good); r.status != 202 {
		t.Fatalf("the request the bad ones were made from is refused itself: %d %s", r.status, r.body)
	}

	// Two duplicates: Sinch's retry with a new nonce, and the replay.
	if got := d.metric("ccrelay_ingest_requests_total", map[string]string{"source": "sinch", "outcome": "duplicate"}); got != 2 {
		t.Errorf("duplicate requests counted %v, want 2", got)
	}
	if got := d.metric("ccrelay_ingest_requests_total", map[string]string{"source": "sinch", "outcome": "unauthorized"}); got != 8 {
		t.Errorf("unauthorized counted %v, want 8", got)
	}
	if got := d.metric("ccrelay_ingest_duplicates_total", map[string]string{"source": "sinch"}); got != 2 {
		t.Errorf("duplicates_total %v, want 2", got)
	}
	if got := d.metric("ccrelay_ingest_published_total", map[string]string{"source": "sinch", "type": "message_inbound"}); got != 3 {
		t.Errorf("published message_inbound %v, want 3", got)
	}
	if got := d.metric("ccrelay_ingest_request_duration_seconds", map[string]string{"source": "sinch"}); got < 20 {
		t.Errorf("latency histogram has %v samples", got)
	}
}

func sinchReplicas(t *testing.T, natsURL string) {
	d := deploy(t, natsURL, 2)
	body := inboundText("01REPLICAS", time.Now())
	h := signed(sinchSecret, body, time.Now())
	if r := d.do(0, "POST", "/v1/sinch/svc1", h, body); r.status != http.StatusAccepted {
		t.Fatalf("replica 0: %d %s", r.status, r.body)
	}
	r := d.do(1, "POST", "/v1/sinch/svc1", h, body)
	if r.status != http.StatusOK || r.header.Get("Ccrelay-Duplicate") != "true" {
		t.Fatalf("replica 1 stored a replay of what replica 0 had stored: %d %s, want 200 duplicate", r.status, r.body)
	}
	// A fresh nonce on the other replica is fine and deduplicated.
	r = d.do(1, "POST", "/v1/sinch/svc1", signed(sinchSecret, body, time.Now()), body)
	if r.status != http.StatusOK || r.header.Get("Ccrelay-Duplicate") != "true" {
		t.Fatalf("replica 1, new nonce: %d %s", r.status, r.body)
	}
	if n := d.count(); n != 1 {
		t.Fatalf("%d events stored, want 1", n)
	}
}

func sinchNoSkew(t *testing.T, natsURL string) {
	d := deploy(t, natsURL, 1, "CCRELAY_SINCH_MAX_CLOCK_SKEW=0")
	body := inboundText("01NOSKEW", time.Now())
	h := signed(sinchSecret, body, time.Now().Add(-72*time.Hour))
	if r := d.post("/v1/sinch/svc1", h, body); r.status != http.StatusAccepted {
		t.Fatalf("old timestamp with checks off: %d %s", r.status, r.body)
	}
	// The same request again: dedup keeps one copy.
	if r := d.post("/v1/sinch/svc1", h, body); r.status != http.StatusOK {
		t.Fatalf("same nonce with checks off: %d %s", r.status, r.body)
	}
	if r := d.post("/v1/sinch/svc1", signed("wrong", body, time.Now()), body); r.status != http.StatusUnauthorized {
		t.Fatalf("signature must still be checked: %d", r.status)
	}
}

// unavailable makes publishing fail (the stream is gone), checks the 503
// and that nothing of the refused request is remembered, so the sender's
// identical retry goes through once JetStream is back.
func unavailable(t *testing.T, natsURL string) {
	d := deploy(t, natsURL, 1, "CCRELAY_PUBLISH_TIMEOUT=1s", "CCRELAY_RETRY_AFTER=7s")
	ctx := context.Background()
	if err := d.js.DeleteStream(ctx, d.subjects.EventsStream()); err != nil {
		t.Fatal(err)
	}
	body := inboundText("01UNAVAILABLE", time.Now())
	h := signed(sinchSecret, body, time.Now())
	r := d.post("/v1/sinch/svc1", h, body)
	if r.status != http.StatusServiceUnavailable || r.code(t) != "unavailable" || r.header.Get("Retry-After") != "7" {
		t.Fatalf("got %d Retry-After %q %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	if err := messages.EnsureStreams(ctx, provision.Waiter{}, d.js, d.settings.Streams); err != nil {
		t.Fatal(err)
	}
	if r := d.post("/v1/sinch/svc1", h, body); r.status != http.StatusAccepted {
		t.Fatalf("retry after recovery: %d %s\nlogs: %s", r.status, r.body, d.logs.String())
	}
	if d.metric("ccrelay_ingest_requests_total", map[string]string{"source": "sinch", "outcome": "unavailable"}) != 1 {
		t.Errorf("unavailable not counted")
	}
}

func contactProSuite(t *testing.T, natsURL string) {
	d := deploy(t, natsURL, 1)
	keys, err := seal.ParseKeyRing(sealKey)
	if err != nil {
		t.Fatal(err)
	}
	body := chatAttachments("0a1b2c3d-contact-guid")
	h := jsonHeader()
	h.Set("x-api-key", cpAPIKey)
	h.Set("x-cmi-api-key", cmiAPIKey)
	h.Set("x-cmi-password", cmiPassword)
	h.Set("x-sap-v1-password", sapPassword)
	r := d.post("/v1/contactpro/chat-attachments/Ended", h, body)
	if r.status != http.StatusAccepted {
		t.Fatalf("api key: %d %s", r.status, r.body)
	}
	msg := d.stored(r)
	if want := d.subjects.Prefix() + ".in.contactpro.chat-attachments.ended"; msg.Subject != want {
		t.Errorf("subject %q, want %q", msg.Subject, want)
	}
	if got := msg.Header.Get("Nats-Msg-Id"); got != cpDedupID(t, "chat-attachments", "Ended", "", body) || !strings.HasPrefix(got, "contactpro:chat-attachments:ended:0a1b2c3d-contact-guid:") {
		t.Errorf("dedup id %q", got)
	}
	if got := msg.Header.Get("ce-type"); got != "com.sinch.contactpro.chat-attachments.ended" {
		t.Errorf("ce-type %q", got)
	}
	if !bytes.Equal(msg.Data, body) {
		t.Error("body differs")
	}
	creds, err := keys.Open(msg.Header.Get("Ccrelay-Sealed"), messages.CredentialContext(msg.Header.Get("ce-id"), msg.Data))
	if err != nil {
		t.Fatalf("open sealed header: %v", err)
	}
	if creds["x-cmi-api-key"] != cmiAPIKey || creds["x-cmi-password"] != cmiPassword || creds["x-sap-v1-password"] != sapPassword {
		t.Errorf("sealed credentials do not round-trip")
	}
	for _, k := range []string{"x-cmi-api-key", "x-cmi-password", "x-sap-v1-password", "x-api-key"} {
		if msg.Header.Get(k) != "" {
			t.Errorf("header %s stored", k)
		}
	}
	if d.metric("ccrelay_ingest_credentials_total", map[string]string{"source": "contactpro", "action": "sealed"}) != 1 {
		t.Error("sealing not counted")
	}

	// Contact Pro calls again (e.g. Closed after Ended is another event,
	// the same event is a duplicate).
	if r := d.post("/v1/contactpro/chat-attachments/Ended", h, body); r.status != http.StatusOK {
		t.Fatalf("same call again: %d", r.status)
	}

	// Basic auth, an integration without event, a body naming no contact.
	bh := jsonHeader()
	bh.Set("Authorization", basic(cpUser, cpPassword))
	other := []byte(`{"queue":"support","note":"no contact here"}`)
	r = d.post("/v1/contactpro/crm-sync", bh, other)
	if r.status != http.StatusAccepted {
		t.Fatalf("basic: %d %s", r.status, r.body)
	}
	om := d.stored(r)
	if want := d.subjects.Prefix() + ".in.contactpro.crm-sync.any"; om.Subject != want {
		t.Errorf("subject %q, want %q", om.Subject, want)
	}
	if got := om.Header.Get("Nats-Msg-Id"); got != cpDedupID(t, "crm-sync", "", "", other) || !strings.HasPrefix(got, "contactpro:crm-sync:any:-:") {
		t.Errorf("dedup id of a body naming no contact: %q", got)
	}
	nested := []byte(`{"contact":{"id":"c-1","guid":"g-1"}}`)
	if r := d.post("/v1/contactpro/crm-sync/Accepted", bh, nested); r.status != 202 || !strings.HasPrefix(d.stored(r).Header.Get("Nats-Msg-Id"), "contactpro:crm-sync:accepted:g-1:") {
		t.Fatalf("nested contact guid: %d %s", r.status, r.body)
	}

	before := d.count()
	wrongKey := jsonHeader()
	wrongKey.Set("x-api-key", "nope")
	wrongBasic := jsonHeader()
	wrongBasic.Set("Authorization", basic(cpUser, "nope"))
	for _, c := range []struct {
		name   string
		path   string
		h      http.Header
		body   []byte
		status int
		code   string
	}{
		{"no credentials", "/v1/contactpro/chat-attachments/ended", jsonHeader(), body, 401, "unauthorized"},
		{"wrong api key", "/v1/contactpro/chat-attachments/ended", wrongKey, body, 401, "unauthorized"},
		{"wrong password", "/v1/contactpro/chat-attachments/ended", wrongBasic, body, 401, "unauthorized"},
		{"missing contact_id", "/v1/contactpro/chat-attachments/ended", bh, []byte(`{"cmi_url":"https://x.test"}`), 400, "invalid_payload"},
		{"bad cmi_url", "/v1/contactpro/chat-attachments/ended", bh, []byte(`{"contact_id":"c","cmi_url":"ftp://x"}`), 400, "invalid_payload"},
		{"not JSON", "/v1/contactpro/crm-sync", bh, []byte(`{"a":`), 400, "invalid_payload"},
		{"contact id with CRLF", "/v1/contactpro/crm-sync", bh, []byte(`{"contact_id":"a\r\nNats-Msg-Id: x"}`), 400, "invalid_payload"},
		{"long event", "/v1/contactpro/crm-sync/" + strings.Repeat("e", 80), bh, other, 400, "invalid_path"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := d.post(c.path, c.h, c.body)
			if r.status != c.status || r.code(t) != c.code {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, c.status, c.code)
			}
			if c.status == 401 && !strings.Contains(r.header.Get("WWW-Authenticate"), "Basic") {
				t.Errorf("401 without a Basic challenge: %q", r.header.Get("WWW-Authenticate"))
			}
			if d.count() != before {
				t.Fatal("a refused request changed the stream")
			}
		})
	}
}

func contactProNoSeal(t *testing.T, natsURL string) {
	d := deploy(t, natsURL, 1, "CCRELAY_SEAL_KEYS=")
	h := jsonHeader()
	h.Set("x-api-key", cpAPIKey)
	h.Set("x-cmi-password", cmiPassword)
	r := d.post("/v1/contactpro/chat-attachments/closed", h, chatAttachments("guid-2"))
	if r.status != http.StatusAccepted {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if m := d.stored(r); m.Header.Get("Ccrelay-Sealed") != "" {
		t.Error("credentials kept without a sealing key")
	}
	if d.metric("ccrelay_ingest_credentials_total", map[string]string{"source": "contactpro", "action": "dropped"}) != 1 {
		t.Error("dropping not counted")
	}
}

func connectSuite(t *testing.T, natsURL string) {
	d := deploy(t, natsURL, 1)
	body := contactLens("5f1e2d3c-event", "c0ffee00-contact", "Contact Lens Post Call Rules Matched")
	h := jsonHeader()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("x-api-key", connectAPIKey)
	r := d.post("/v1/connect/events", h, body)
	if r.status != http.StatusAccepted {
		t.Fatalf("api key: %d %s", r.status, r.body)
	}
	m := d.stored(r)
	if want := d.subjects.Prefix() + ".in.connect.contactlens." + instanceID; m.Subject != want {
		t.Errorf("subject %q, want %q", m.Subject, want)
	}
	for k, want := range map[string]string{
		"Nats-Msg-Id": "connect:123456789012:5f1e2d3c-event",
		"ce-source":   "arn:aws:connect:eu-central-1:123456789012:instance/" + instanceID,
		"ce-type":     "aws.connect.ContactLensPostCallRulesMatched",
		"ce-time":     "2026-11-21T09:58:00Z",
	} {
		if got := m.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	bh := jsonHeader()
	bh.Set("Authorization", basic(ebUser, ebPassword))
	b2 := contactLens("event-2", "contact-2", "Contact Lens Post Call Rules Matched")
	if r := d.post("/v1/connect/events", bh, b2); r.status != http.StatusAccepted {
		t.Fatalf("basic: %d %s", r.status, r.body)
	}
	before := d.count()
	other := contactLens("event-3", "contact-3", "Contact Lens Realtime Rules Matched")
	r = d.post("/v1/connect/events", h, other)
	if r.status != http.StatusUnprocessableEntity || r.code(t) != "unsupported_event" {
		t.Fatalf("other detail-type: %d %s", r.status, r.body)
	}
	wrong := jsonHeader()
	wrong.Set("x-api-key", cpAPIKey) // a Contact Pro key is not a Connect key
	if r := d.post("/v1/connect/events", wrong, body); r.status != 401 {
		t.Fatalf("foreign key: %d", r.status)
	}
	noArn := []byte(`{"id":"e","detail-type":"Contact Lens Post Call Rules Matched","time":"2026-11-21T09:58:00Z","detail":{}}`)
	if r := d.post("/v1/connect/events", h, noArn); r.status != 400 || r.code(t) != "invalid_payload" {
		t.Fatalf("no contact arn: %d %s", r.status, r.body)
	}
	if d.count() != before {
		t.Fatal("a refused event was stored")
	}
	if d.metric("ccrelay_ingest_requests_total", map[string]string{"source": "connect", "outcome": "unsupported_event"}) != 1 {
		t.Error("422 not counted")
	}
}

func unconfigured(t *testing.T, natsURL string) {
	d := deploy(t, natsURL, 1,
		"CCRELAY_CONTACTPRO_API_KEYS=", "CCRELAY_CONTACTPRO_BASIC_USERS=", "CCRELAY_OAUTH_CLIENTS=",
		"CCRELAY_CONNECT_API_KEYS=", "CCRELAY_CONNECT_BASIC_USERS=")
	h := jsonHeader()
	h.Set("x-api-key", "anything")
	for _, p := range []string{"/v1/contactpro/chat-attachments/ended", "/v1/connect/events"} {
		r := d.post(p, h, chatAttachments("x"))
		if r.status != 401 || r.code(t) != "unauthorized" {
			t.Errorf("%s: %d %s", p, r.status, r.body)
		}
	}
	// The answer is every refusal's; the log says why.
	if !strings.Contains(d.logs.String(), "no credentials are configured for this endpoint") {
		t.Error("the log does not say that no credentials are configured")
	}
}

func health(t *testing.T, natsURL string) {
	d := deploy(t, natsURL, 1)
	if r := d.do(0, "GET", "/healthz", nil, nil); r.status != 200 {
		t.Errorf("healthz %d", r.status)
	}
	if r := d.do(0, "GET", "/readyz", nil, nil); r.status != 200 {
		t.Errorf("readyz %d %s", r.status, r.body)
	}
	if err := d.js.DeleteStream(context.Background(), d.subjects.EventsStream()); err != nil {
		t.Fatal(err)
	}
	if r := d.do(0, "GET", "/readyz", nil, nil); r.status != 503 {
		t.Errorf("readyz without the stream: %d", r.status)
	}
}

// cpDedupID is the dedup id of a Contact Pro POST, computed by the contract.
func cpDedupID(t *testing.T, integration, event, rest string, body []byte) string {
	t.Helper()
	c, err := messages.NewContactProCall(integration, event, rest, "POST", nil, body)
	if err != nil {
		t.Fatal(err)
	}
	return c.DedupID()
}
