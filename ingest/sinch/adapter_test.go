package sinch_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/ingest/sinch"
	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/secret"
	"github.com/ccrelay/ccrelay/test/sinchtest"
)

// TestEventIDPerService: one callback to two services is two events: its
// id and its subject name the service of the URL, and the id a bare body
// derives on that subject is the one stored.
func TestEventIDPerService(t *testing.T) {
	s := messages.DefaultSubjects()
	a := sinch.New(sinch.Config{WebhookSecrets: secret.Credentials{"eu": "k1", "us": "k2"}}, s)
	body := []byte(`{"app_id":"","project_id":"p","contact_create_notification":{"contact":{"id":"C"}}}`)
	ids := map[string]string{}
	for service, key := range map[string]string{"eu": "k1", "us": "k2"} {
		r := httptest.NewRequest("POST", "/v1/sinch/"+service, nil)
		r.SetPathValue("service", service)
		r.Header = (&sinchtest.Signer{Secret: key}).Headers(body, time.Now())
		acc, err := a.Event(context.Background(), r, body, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(acc.Event.ID, "sinch:"+service+":") || !strings.Contains(acc.Event.Subject, "."+service+".") {
			t.Errorf("%s: id %q subject %q do not name the service", service, acc.Event.ID, acc.Event.Subject)
		}
		if id, err := s.EventID(acc.Event.Subject, nil, body); err != nil || id != acc.Event.ID {
			t.Errorf("%s: a bare body derives %q (%v), stored %q", service, id, err, acc.Event.ID)
		}
		ids[service] = acc.Event.ID
	}
	if ids["eu"] == ids["us"] {
		t.Errorf("both services' callbacks have id %q", ids["eu"])
	}
}
