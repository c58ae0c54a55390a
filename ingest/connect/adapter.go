// Package connect is the ingest adapter of Amazon Connect Contact Lens
// post-call events and of S3 Object Created events of Contact Lens analysis
// files, delivered by an EventBridge API destination:
// POST /v1/connect/events, authenticated with an API key header, HTTP basic
// or an OAuth 2.0 bearer token (the three API destination connection kinds).
package connect

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ccrelay/ccrelay/ingest"
	"github.com/ccrelay/ccrelay/ingest/auth"
	"github.com/ccrelay/ccrelay/messages"
)

// Config sets the Connect adapter. Its env tags are read with the CCRELAY_
// prefix.
type Config struct {
	// Auth: CCRELAY_CONNECT_API_KEYS, _API_KEY_HEADER (the API
	// destination's header name), _BASIC_USERS.
	Auth auth.Settings `envPrefix:"CONNECT_"`
	// Bucket is the Amazon Connect bucket, the summaries processor's
	// setting too: an S3 event of another bucket is refused before it
	// takes an id.
	Bucket string `env:"CONNECT_BUCKET" help:"the Amazon Connect bucket: S3 events naming another bucket (or any, when empty) are refused with 422; the summaries processor reads the same variable"`
}

// Adapter is the Connect ingest adapter.
type Adapter struct {
	authn    *auth.Authenticator
	subjects messages.Subjects
	bucket   string
}

// New returns the adapter. bearer and throttle may be nil.
func New(cfg Config, bearer auth.TokenVerifier, throttle *auth.Throttle, subjects messages.Subjects) *Adapter {
	authn := cfg.Auth.Authenticator(bearer)
	authn.Throttle, authn.Endpoint = throttle, messages.SourceConnect
	return &Adapter{
		authn:    authn,
		subjects: subjects,
		bucket:   cfg.Bucket,
	}
}

// Source implements ingest.Adapter.
func (a *Adapter) Source() string { return messages.SourceConnect }

// Authorize implements ingest.Adapter.
func (a *Adapter) Authorize(r *http.Request) error { return ingest.Authorize(a.authn, r) }

// Event implements ingest.Adapter. It takes Contact Lens rule events and
// S3 Object Created events of analysis files (the second trigger of a
// call's summary). Events of another detail-type, and S3 events of other
// keys, are refused with 422 and not stored: ccrelay does nothing with them,
// and storing them would hide a misconfigured EventBridge rule. So are S3
// events of another bucket than CCRELAY_CONNECT_BUCKET, before they take
// an id: the summaries processor reads that bucket only, and such an
// event, stored, would have the real one answered as its duplicate had
// the id not named the bucket.
func (a *Adapter) Event(_ context.Context, _ *http.Request, body []byte, _ time.Time) (*ingest.Accepted, error) {
	ev, err := messages.DecodeConnectEvent(body)
	if errors.Is(err, messages.ErrUnsupportedDetailType) {
		return nil, &ingest.Error{Status: http.StatusUnprocessableEntity, Code: ingest.CodeUnsupportedEvent, Message: err.Error(), Err: err}
	}
	if err != nil {
		return nil, err
	}
	if s3 := ev.Analysis; s3 != nil {
		bucket := s3.Detail.Bucket.Name
		if bucket != a.bucket {
			msg := fmt.Sprintf("detail.bucket.name %.64q is not the configured bucket (CCRELAY_CONNECT_BUCKET)", bucket)
			if a.bucket == "" {
				msg = "detail.bucket.name: no bucket is configured (CCRELAY_CONNECT_BUCKET), so S3 events are not taken"
			}
			return nil, &ingest.Error{Status: http.StatusUnprocessableEntity, Code: ingest.CodeUnsupportedEvent, Message: msg}
		}
		return &ingest.Accepted{
			Event: messages.Event{
				Subject: a.subjects.AnalysisFile(bucket),
				ID:      s3.DedupID(),
				Source:  "arn:aws:s3:::" + bucket,
				Type:    messages.TypeS3ObjectCreated,
				Time:    s3.Time,
				Body:    body,
			},
			Type: messages.ConnectAnalysis,
		}, nil
	}
	cl := ev.ContactLens
	if err := cl.CheckInstance(); err != nil {
		return nil, err
	}
	source := cl.Detail.InstanceArn
	if source == "" {
		source = "/connect/" + cl.InstanceID()
	}
	return &ingest.Accepted{
		Event: messages.Event{
			Subject: a.subjects.ContactLens(cl.InstanceID()),
			ID:      cl.DedupID(),
			Source:  source,
			Type:    messages.TypeContactLensPostCall,
			Time:    cl.Time,
			IDs:     messages.FormatIDs(messages.IDContact, cl.ContactID()),
			Body:    body,
		},
		Type: messages.ConnectContactLens,
	}, nil
}
