package messaging

import (
	"net/http"
	"time"

	"github.com/ccrelay/ccrelay/ingest"
	"github.com/ccrelay/ccrelay/ingest/sinch"
	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/signature"
)

// checkSignatureHeaders refuses, before the body is read, a request of a
// signed service whose signature header could never verify. It checks with
// the functions Event's verification runs first (the signature package's
// WellFormed functions, sinch.CheckHeaders), so it never refuses what Event
// would accept. The messages are Event's for a signature that does not
// match: a malformed one tells a caller nothing more. sinchSigned says
// that a Sinch SMS service is checked by signature.
func (a *Adapter) checkSignatureHeaders(r *http.Request, typ string, sinchSigned bool, now time.Time) error {
	switch typ {
	case messages.MessagingTwilio:
		// The signature's length depends on the algorithm the settings
		// header names.
		if !signature.TwilioHeaderWellFormed(r.Header) {
			return ingest.Unauthorized(ingest.CodeInvalidSignature, "the X-Twilio-Signature does not match (it is computed over CCRELAY_PUBLIC_URL and the path Twilio called)", nil, nil)
		}
	case messages.MessagingFacebook:
		if !signature.HubWellFormed(r.Header.Get(signature.HeaderHubSignature256)) {
			return ingest.Unauthorized(ingest.CodeInvalidSignature, "the X-Hub-Signature-256 does not match", nil, nil)
		}
	case messages.MessagingSinchSMS:
		if sinchSigned {
			return sinch.CheckHeaders(r.Header, now, a.cfg.MaxClockSkew)
		}
	}
	return nil
}
