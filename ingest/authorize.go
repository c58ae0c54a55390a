package ingest

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ccrelay/ccrelay/ingest/auth"
)

// CodeTooManyFailures answers 429 to a client address that failed too many
// credential checks lately; Retry-After says when it is checked again.
const CodeTooManyFailures = "too_many_failures"

// Authorize runs authn on r and turns its errors into answers: the one 401
// of every refusal (see Unauthorized), 429 for a client address that
// failed too often lately, 503 when digest nonce counts cannot be
// recorded (the request may be genuine).
func Authorize(authn *auth.Authenticator, r *http.Request) error {
	_, err := authn.Authenticate(r)
	return credentialError(err, authn.Challenges)
}

// AuthorizeBody finishes, with the body, an authentication Authorize left
// to it (a digest qop=auth-int response): adapters whose Authorize runs
// Authorize call it first thing in Event.
func AuthorizeBody(authn *auth.Authenticator, r *http.Request, body []byte) error {
	return credentialError(auth.VerifyBody(r, body), authn.Challenges)
}

func credentialError(err error, challenges func(stale bool) []string) error {
	var throttled *auth.ThrottledError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &throttled):
		return Throttled(throttled)
	case errors.Is(err, auth.ErrNonceStore):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "the request could not be checked for a replay; retry later", Err: err}
	}
	// An expired nonce is told by the challenge (stale=true, RFC 7616), as
	// the client must know to answer it anew; the message is the same.
	return Unauthorized(CodeUnauthorized, "credentials refused", challenges(errors.Is(err, auth.ErrStaleNonce)), err)
}

// Throttled answers 429 to a client address the throttle refused. A 429
// answered at once, rather than a slow 401, holds no connection or
// goroutine per guess, checks nothing, and tells a genuine sender behind
// the same address when to come back.
func Throttled(e *auth.ThrottledError) *Error {
	return &Error{
		Status:     http.StatusTooManyRequests,
		Code:       CodeTooManyFailures,
		Message:    fmt.Sprintf("too many refused credentials from this address; retry after %d s", int((e.RetryAfter+time.Second-1)/time.Second)),
		RetryAfter: e.RetryAfter,
		Err:        e,
	}
}
