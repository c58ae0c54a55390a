package connect_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/ingest"
	"github.com/ccrelay/ccrelay/ingest/connect"
	"github.com/ccrelay/ccrelay/messages"
)

// TestS3EventOfAnotherBucket: an S3 event naming another bucket than the
// configured one is refused (422, naming the field) before it takes an
// id, and so is every S3 event when none is configured; the configured
// bucket's event takes an id that names the bucket.
func TestS3EventOfAnotherBucket(t *testing.T) {
	real, err := os.ReadFile(filepath.Join("..", "..", "messages", "testdata", "aws", "s3_object_created_analysis.json"))
	if err != nil {
		t.Fatal(err)
	}
	bogus := []byte(strings.ReplaceAll(string(real), "amazon-connect-acme", "attacker-bucket"))
	s := messages.DefaultSubjects()
	event := func(bucket string, body []byte) (*ingest.Accepted, error) {
		a := connect.New(connect.Config{Bucket: bucket}, nil, nil, s)
		return a.Event(context.Background(), httptest.NewRequest("POST", "/v1/connect/events", nil), body, time.Now())
	}
	for _, c := range []struct {
		name, bucket string
		body         []byte
	}{
		{"another bucket", "amazon-connect-acme", bogus},
		{"no bucket configured", "", real},
	} {
		_, err := event(c.bucket, c.body)
		var ie *ingest.Error
		if !errors.As(err, &ie) || ie.Status != http.StatusUnprocessableEntity || !strings.Contains(ie.Message, "detail.bucket.name") {
			t.Errorf("%s: %v, want 422 naming detail.bucket.name", c.name, err)
		}
	}
	acc, err := event("amazon-connect-acme", real)
	if err != nil {
		t.Fatal(err)
	}
	if want := "connect.analysis:amazon-connect-acme:6c0f4a8e-2b1d-4e4b-9d57-0f6a2a1c9e11"; acc.Event.ID != want {
		t.Errorf("id %q, want %q", acc.Event.ID, want)
	}
}
