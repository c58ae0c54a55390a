package ingest

import (
	"errors"
	"net/http"

	"github.com/ccrelay/ccrelay/ingest/auth"
)

// Authorize runs authn on r and turns its errors into 401 answers.
func Authorize(authn *auth.Authenticator, r *http.Request) error {
	_, err := authn.Authenticate(r)
	if err == nil {
		return nil
	}
	msg := "valid credentials are required"
	switch {
	case errors.Is(err, auth.ErrNotConfigured):
		msg = "no credentials are configured for this endpoint; see the README"
	case errors.Is(err, auth.ErrStaleNonce):
		msg = "the digest nonce expired; answer the new challenge"
	}
	return Unauthorized(CodeUnauthorized, msg, authn.Challenges(errors.Is(err, auth.ErrStaleNonce)), err)
}
