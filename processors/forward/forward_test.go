package forward_test

import (
	"slices"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/forward"
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
	filters := p.Processor().Partitions[0]
	for _, want := range []string{s.SinchPartitionFilter("eu", "0c"), s.SinchLegacyPartitionFilter("0c"), s.Messaging("twilio", "us", "0c")} {
		if !slices.Contains(filters, want) {
			t.Errorf("filters miss %s", want)
		}
	}
	if slices.Contains(filters, s.SinchPartitionFilter("us", "0c")) {
		t.Error("a Sinch service without a destination is consumed")
	}
}
