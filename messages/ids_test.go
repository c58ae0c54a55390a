package messages_test

import (
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
