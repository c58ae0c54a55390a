// Package connect is the ingest adapter of Amazon Connect Contact Lens
// post-call events and of S3 Object Created events of Contact Lens analysis
// files, delivered by an EventBridge API destination:
// POST /v1/connect/events, authenticated with an API key header, HTTP basic
// or an OAuth 2.0 bearer token (the three API destination connection kinds).
package connect

import (
	"context"
	"errors"
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
}

// Adapter is the Connect ingest adapter.
type Adapter struct {
	authn    *auth.Authenticator
	subjects messages.Subjects
}

// New returns the adapter. bearer and throttle may be nil.
func New(cfg Config, bearer auth.TokenVerifier, throttle *auth.Throttle, subjects messages.Subjects) *Adapter {
	authn := cfg.Auth.Authenticator(bearer)
	authn.Throttle, authn.Endpoint = throttle, messages.SourceConnect
	return &Adapter{
		authn:    authn,
		subjects: subjects,
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
// and storing them would hide a misconfigured EventBridge rule.
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
		return &ingest.Accepted{
			Event: messages.Event{
				Subject: a.subjects.AnalysisFile(bucket),
				ID:      s3.File.DedupID(),
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
			Body:    body,
		},
		Type: messages.ConnectContactLens,
	}, nil
}
