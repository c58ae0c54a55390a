package forward_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/signature"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/forward"
	"github.com/ccrelay/ccrelay/sinks/egress"
)

// TestSinchDestinationFromSubject: a Sinch callback's destination is the
// service its subject names, so a body republished bare (no ce-source)
// still goes where the original went, and only to that service; a
// callback stored before subjects named the service still goes by its
// ce-source, and its subjects are still consumed.
func TestSinchDestinationFromSubject(t *testing.T) {
	s := messages.DefaultSubjects()
	c := config(t, "sinch/eu=https://cp.example/sms/sinch,twilio/us=https://cp.example/sms/twilio", "")
	c.Partitions = 1
	p, err := forward.New(c, processors.Env{Subjects: s, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"app_id":"A","message":{"id":"M"}}`)
	for _, ev := range []struct {
		name    string
		subject string
		header  nats.Header
		want    bool
	}{
		{"a bare body to eu", s.Sinch("MESSAGE_INBOUND", "eu", "A", "0c"), nil, true},
		{"a bare body to another service", s.Sinch("MESSAGE_INBOUND", "us", "A", "0c"), nil, false},
		{"stored before subjects named the service", "ccrelay.in.sinch.message_inbound.A.0c", nats.Header{messages.HeaderSource: {"/sinch/eu"}}, true},
		{"stored before, for another service", "ccrelay.in.sinch.message_inbound.A.0c", nats.Header{messages.HeaderSource: {"/sinch/us"}}, false},
	} {
		got, why := p.Wants(&processors.Event{Subject: ev.subject, Header: ev.header, Body: body})
		if got != ev.want {
			t.Errorf("%s: wants %v (%s), want %v", ev.name, got, why, ev.want)
		}
	}
	// One consumer per destination: sinch/eu's, with the callbacks
	// stored before subjects named the service, then twilio/us's.
	parts := p.Processor().Partitions
	if len(parts) != 2 {
		t.Fatalf("%d consumers, want one per destination", len(parts))
	}
	for i, want := range [][]string{{s.SinchPartitionFilter("eu", "0c"), s.SinchLegacyPartitionFilter("0c")}, {s.Messaging("twilio", "us", "0c")}} {
		for _, w := range want {
			if !slices.Contains(parts[i], w) {
				t.Errorf("consumer %d misses %s", i, w)
			}
		}
	}
	if slices.Contains(parts[1], s.SinchLegacyPartitionFilter("0c")) || slices.Contains(parts[0], s.Messaging("twilio", "us", "0c")) {
		t.Error("a consumer serves two destinations")
	}
	for _, f := range parts {
		if slices.Contains(f, s.SinchPartitionFilter("us", "0c")) {
			t.Error("a Sinch service without a destination is consumed")
		}
	}
}

// TestHeadersThatDisagreeWithTheSubject: an event whose headers contradict
// the subject ingest verified, or hold what no outgoing header may carry,
// is refused as permanent before anything is sent; a bare body is sent
// with the content type of its subject's service type.
func TestHeadersThatDisagreeWithTheSubject(t *testing.T) {
	var got []http.Header
	cp := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = append(got, r.Header.Clone()) }))
	t.Cleanup(cp.Close)
	s := messages.DefaultSubjects()
	c := config(t, "sinch/eu="+cp.URL+"/s,twilio/us="+cp.URL+"/t,wavy/br="+cp.URL+"/w", "")
	p, err := forward.New(c, processors.Env{Subjects: s, Registry: prometheus.NewRegistry(), Egress: egress.Settings{}})
	if err != nil {
		t.Fatal(err)
	}
	twilio := s.Messaging("twilio", "us", "0c")
	form := []byte("MessageSid=SM0123456789abcdef0123456789abcdef&From=%2B1&To=%2B2&Body=hi")
	const tid = "messaging:twilio:us:SM0123456789abcdef0123456789abcdef"
	sinch := s.Sinch("MESSAGE_INBOUND", "eu", "A", "0c")
	for _, ev := range []struct {
		name    string
		subject string
		id      string
		header  nats.Header
	}{
		{"another service's ce-source", twilio, tid, nats.Header{messages.HeaderSource: {"/messaging/twilio/other"}}},
		{"another type's ce-source", twilio, tid, nats.Header{messages.HeaderSource: {"/messaging/wavy/us"}}},
		{"two ce-sources", twilio, tid, nats.Header{messages.HeaderSource: {"/messaging/twilio/us", "/messaging/twilio/other"}}},
		{"a Sinch ce-source of another service", sinch, "sinch:eu:inbound:M", nats.Header{messages.HeaderSource: {"/sinch/us"}}},
		{"a Sinch ce-type of another trigger", sinch, "sinch:eu:inbound:M", nats.Header{messages.HeaderType: {"com.sinch.conversation.message_delivery"}}},
		{"another type's ce-type", twilio, tid, nats.Header{messages.HeaderType: {"com.sinch.contactpro.messaging.wavy.other"}}},
		{"JSON on a Twilio subject", twilio, tid, nats.Header{messages.HeaderContentType: {messages.ContentTypeJSON}}},
		{"a form on a JSON service", s.Messaging("wavy", "br", "00"), "messaging:wavy:br:x", nats.Header{messages.HeaderContentType: {messages.ContentTypeForm}}},
		{"a malformed Content-Type", twilio, tid, nats.Header{messages.HeaderContentType: {"application/x-www-form-urlencoded; ="}}},
		{"a ce-id with CR LF", twilio, tid + "\r\nX-Injected: 1", nil},
		{"a ce-id with DEL", twilio, tid + "\x7f", nil},
		{"a ce-id that is not UTF-8", twilio, tid + "\xff", nil},
		{"an over-long ce-id", twilio, tid + strings.Repeat("0", 1024), nil},
		{"another source's ce-id", twilio, "sinch:eu:inbound:M", nil},
	} {
		err := p.Handle(context.Background(), &processors.Event{Subject: ev.subject, ID: ev.id, Header: ev.header, Body: form})
		if !errors.Is(err, forward.ErrDisagrees) || !errors.Is(err, processors.ErrPermanent) {
			t.Errorf("%s: Handle = %v, want a permanent ErrDisagrees", ev.name, err)
		}
	}
	if len(got) != 0 {
		t.Fatalf("%d refused events were sent", len(got))
	}
	for _, ev := range []struct {
		name   string
		header nats.Header
	}{
		{"bare", nil},
		{"as ingest stored it", nats.Header{messages.HeaderSource: {"/messaging/twilio/us"}, messages.HeaderType: {"com.sinch.contactpro.messaging.twilio.inbound"}, messages.HeaderContentType: {messages.ContentTypeForm}}},
		{"with a charset", nats.Header{messages.HeaderContentType: {messages.ContentTypeForm + "; charset=utf-8"}}},
	} {
		got = nil
		if err := p.Handle(context.Background(), &processors.Event{Subject: twilio, ID: tid, Header: ev.header, Body: form}); err != nil {
			t.Fatalf("%s: %v", ev.name, err)
		}
		if len(got) != 1 || got[0].Get("Content-Type") != messages.ContentTypeForm || got[0].Get(forward.HeaderEventID) != tid {
			t.Errorf("%s: sent %v, want one form with the event id", ev.name, got)
		}
	}
}

// TestMessengerSignedAgain: a Messenger body is sent with Meta's signature
// made again from the app secret (a bare body too); a stored signature
// that does not match the body is refused; a malformed SHA-1 signature,
// which ingest does not verify, is left out.
func TestMessengerSignedAgain(t *testing.T) {
	var got []http.Header
	cp := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = append(got, r.Header.Clone()) }))
	t.Cleanup(cp.Close)
	s := messages.DefaultSubjects()
	c := config(t, "facebook/page1="+cp.URL+"/f", "")
	c.MessagingSecrets["facebook/page1"] = "app-secret"
	p, err := forward.New(c, processors.Env{Subjects: s, Registry: prometheus.NewRegistry(), Egress: egress.Settings{}})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"object":"page","entry":[]}`)
	ev := func(h nats.Header) *processors.Event {
		return &processors.Event{Subject: s.Messaging("facebook", "page1", "00"), ID: "messaging:facebook:page1:x", Header: h, Body: body}
	}
	sig := signature.HubSign("app-secret", body)
	for _, h := range []nats.Header{nil, {signature.HeaderHubSignature256: {sig}, signature.HeaderHubSignature: {"not-sha1"}}} {
		got = nil
		if err := p.Handle(context.Background(), ev(h)); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Get(signature.HeaderHubSignature256) != sig || got[0].Get(signature.HeaderHubSignature) != "" {
			t.Errorf("headers %v: sent %v, want Meta's signature alone", h, got)
		}
	}
	other := signature.HubSign("another-secret", body)
	for _, bad := range []string{other, "sha256=" + strings.ToUpper(sig[7:]), sig + "\r\nX: 1"} {
		err := p.Handle(context.Background(), ev(nats.Header{signature.HeaderHubSignature256: {bad}}))
		if !errors.Is(err, forward.ErrDisagrees) || !errors.Is(err, processors.ErrPermanent) {
			t.Errorf("stored signature %q: Handle = %v, want a permanent ErrDisagrees", bad, err)
		}
	}
}
