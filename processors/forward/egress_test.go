package forward_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/forward"
	"github.com/ccrelay/ccrelay/sinks/egress"
)

// TestEgressRefusalIsPermanent: a delivery egress refuses (a destination
// that redirects within its origin for ever) is refused the same way on
// every attempt, so it is dead-lettered at once rather than holding its
// conversation.
func TestEgressRefusalIsPermanent(t *testing.T) {
	var hits atomic.Int32
	cp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, r.URL.Path+"x", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(cp.Close)
	s := messages.DefaultSubjects()
	c := config(t, "sinch/eu="+cp.URL+"/sms/sinch", "")
	p, err := forward.New(c, processors.Env{Subjects: s, Registry: prometheus.NewRegistry(), Egress: egress.Settings{}})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Handle(context.Background(), &processors.Event{Subject: s.Sinch("MESSAGE_INBOUND", "eu", "A", "0c"), ID: "sinch:eu:A:M",
		Body: []byte(`{"app_id":"A","message":{"id":"M"}}`)})
	if !errors.Is(err, egress.ErrRefused) || !errors.Is(err, processors.ErrPermanent) {
		t.Errorf("Handle = %v, want a permanent egress refusal", err)
	}
	if n := hits.Load(); n != 5 {
		t.Errorf("the destination was asked %d times, want 5 (the request and 4 redirects)", n)
	}
}
