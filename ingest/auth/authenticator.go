// Package auth checks the credentials ingest accepts: API keys, basic and
// digest users, and bearer tokens.
package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/ccrelay/ccrelay/messages/secret"
)

// Errors of Authenticate. Callers answer all of them with 401 (but
// ErrThrottled, 429, and ErrNonceStore, 503).
var (
	// ErrNoCredentials: the request carries none of the accepted kinds.
	ErrNoCredentials = errors.New("no credentials")
	// ErrBadCredentials: the request carries credentials that do not match.
	ErrBadCredentials = errors.New("credentials do not match")
	// ErrNotConfigured: no credential of any kind is configured, so nothing
	// can be accepted. ccrelay refuses rather than running open.
	ErrNotConfigured = errors.New("no credentials are configured for this endpoint")
)

// TokenVerifier checks bearer tokens and returns their subject (client id).
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (subject string, err error)
	// Enabled reports whether any token can be accepted.
	Enabled() bool
}

// Settings are the static credentials of one endpoint. Adapters embed them
// with an env prefix (CONTACTPRO_, CONNECT_), so each endpoint has its own.
type Settings struct {
	// APIKeys are accepted in APIKeyHeader: "key1,key2".
	APIKeys secret.SecretList `env:"API_KEYS" help:"secret: 'key1,key2', accepted in the API key header"`
	// APIKeyHeader carries the API key.
	APIKeyHeader string `env:"API_KEY_HEADER" envDefault:"x-api-key" help:"header carrying the API key"`
	// BasicUsers are accepted with HTTP basic: "user:password,...".
	BasicUsers secret.Credentials `env:"BASIC_USERS" help:"secret: 'user:password,...' accepted with HTTP basic"`
}

// Authenticator returns an Authenticator for s, accepting bearer tokens
// checked by bearer (nil: none).
func (s Settings) Authenticator(bearer TokenVerifier) *Authenticator {
	return &Authenticator{APIKeyHeader: s.APIKeyHeader, APIKeys: s.APIKeys, Basic: s.BasicUsers, Bearer: bearer}
}

// Configured reports whether any static credential is set.
func (s Settings) Configured() bool { return len(s.APIKeys) > 0 || len(s.BasicUsers) > 0 }

// Principal is who a request authenticated as: safe to log.
type Principal struct {
	// Method is "basic", "digest", "api_key" or "bearer".
	Method string
	// Name is the user or client id, or "key#N" for the Nth API key.
	Name string
}

// Authenticator accepts a request carrying any one of the configured kinds
// of credentials: HTTP basic, HTTP digest, a bearer token, or an API key
// header.
type Authenticator struct {
	// APIKeyHeader is the header that carries an API key (x-api-key).
	APIKeyHeader string
	APIKeys      secret.SecretList
	Basic        secret.Credentials
	// Digest checks digest credentials; nil accepts none.
	Digest *Digest
	// Bearer verifies tokens; nil accepts none.
	Bearer TokenVerifier
	// Throttle slows down repeated failures from one client address; nil
	// does not.
	Throttle *Throttle
	// Endpoint names the endpoint in the throttle's metrics.
	Endpoint string
}

// Configured reports whether any credential is configured.
func (a *Authenticator) Configured() bool {
	return len(a.APIKeys) > 0 || len(a.Basic) > 0 || a.Digest != nil || (a.Bearer != nil && a.Bearer.Enabled())
}

// Challenges are the WWW-Authenticate values for the configured kinds.
// stale marks the answer to an expired digest nonce.
func (a *Authenticator) Challenges(stale bool) []string {
	var c []string
	if a.Digest != nil {
		c = append(c, a.Digest.Challenges(stale)...)
	}
	if len(a.Basic) > 0 {
		c = append(c, `Basic realm="ccrelay", charset="UTF-8"`)
	}
	if a.Bearer != nil && a.Bearer.Enabled() {
		c = append(c, `Bearer realm="ccrelay"`)
	}
	return c
}

// Authenticate checks r. Every kind of credential the request carries is
// tried, and any one that matches is enough: a sender may send an
// Authorization header of its own beside the API key it was configured with
// (Sinch's documented Contact Pro example does). It fails with
// ErrNoCredentials when the request carries none, ErrStaleNonce when the
// only failure is an expired digest nonce, a *ThrottledError when the
// client address failed too often lately (nothing is checked then), else
// ErrBadCredentials.
//
// A digest qop=auth-int response covers the body, which is not read yet:
// when it is what the request is accepted by, Authenticate succeeds and
// leaves the rest on r.Body, and VerifyBody must then be called with the
// body before the request counts as authenticated.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	ticket, err := a.Throttle.Take(r, a.Endpoint)
	if err != nil {
		return Principal{}, err
	}
	p, pending, err := a.authenticate(r)
	switch {
	case err == nil && pending != nil:
		// The token stays taken until the body is checked.
		r.Body = &pendingBody{ReadCloser: r.Body, check: pending, ticket: ticket}
	case err == nil, errors.Is(err, ErrNoCredentials), errors.Is(err, ErrStaleNonce), errors.Is(err, ErrNonceStore),
		errors.Is(err, ErrNotConfigured) && !a.carriesCredentials(r):
		// Nothing was guessed: a request without credentials (the
		// first of a digest or basic handshake), an expired nonce, or a
		// store that could not answer.
		ticket.Refund()
	}
	return p, err
}

func (a *Authenticator) carriesCredentials(r *http.Request) bool {
	return r.Header.Get("Authorization") != "" || (a.APIKeyHeader != "" && r.Header.Get(a.APIKeyHeader) != "")
}

// bodyCheck finishes a credential with the body it covers.
type bodyCheck func(ctx context.Context, body []byte) error

func (a *Authenticator) authenticate(r *http.Request) (Principal, bodyCheck, error) {
	if !a.Configured() {
		return Principal{}, nil, ErrNotConfigured
	}
	var errs []error
	var pending bodyCheck
	var pendingPrincipal Principal
	if h := r.Header.Get("Authorization"); h != "" {
		p, check, err := a.authorization(r, h)
		switch {
		case err != nil:
			errs = append(errs, err)
		case check == nil:
			return p, nil, nil
		default:
			// A complete credential beside it is preferred.
			pending, pendingPrincipal = check, p
		}
	}
	if k := r.Header.Get(a.APIKeyHeader); k != "" {
		if i, ok := a.APIKeys.Match(k); ok {
			return Principal{Method: "api_key", Name: fmt.Sprintf("key#%d", i+1)}, nil, nil
		}
		errs = append(errs, fmt.Errorf("%w: api key", ErrBadCredentials))
	}
	if pending != nil {
		return pendingPrincipal, pending, nil
	}
	switch {
	case len(errs) == 0:
		return Principal{}, nil, ErrNoCredentials
	case len(errs) == 1 && (errors.Is(errs[0], ErrStaleNonce) || errors.Is(errs[0], ErrNonceStore)):
		return Principal{}, nil, errs[0]
	}
	return Principal{}, nil, fmt.Errorf("%w: %w", ErrBadCredentials, errors.Join(errs...))
}

// authorization checks an Authorization header of a scheme ccrelay takes.
func (a *Authenticator) authorization(r *http.Request, h string) (Principal, bodyCheck, error) {
	scheme, rest, _ := strings.Cut(h, " ")
	switch {
	case strings.EqualFold(scheme, "basic"):
		user, pass, ok := r.BasicAuth()
		if !ok {
			return Principal{}, nil, fmt.Errorf("%w: malformed basic credentials", ErrBadCredentials)
		}
		// Checked even when no basic user is configured, so the time
		// does not tell.
		if !a.Basic.Check(user, pass) {
			return Principal{}, nil, fmt.Errorf("%w: basic", ErrBadCredentials)
		}
		return Principal{Method: "basic", Name: user}, nil, nil
	case strings.EqualFold(scheme, "digest"):
		if a.Digest == nil {
			return Principal{}, nil, fmt.Errorf("%w: digest credentials are not accepted here", ErrBadCredentials)
		}
		user, check, err := a.Digest.Verify(r, rest)
		if err != nil {
			return Principal{}, nil, err
		}
		return Principal{Method: "digest", Name: user}, check, nil
	case strings.EqualFold(scheme, "bearer"):
		if a.Bearer == nil || !a.Bearer.Enabled() {
			return Principal{}, nil, fmt.Errorf("%w: bearer tokens are not accepted here", ErrBadCredentials)
		}
		sub, err := a.Bearer.Verify(r.Context(), strings.TrimSpace(rest))
		if err != nil {
			return Principal{}, nil, fmt.Errorf("%w: bearer: %w", ErrBadCredentials, err)
		}
		return Principal{Method: "bearer", Name: sub}, nil, nil
	}
	return Principal{}, nil, fmt.Errorf("%w: unsupported Authorization scheme", ErrBadCredentials)
}

// pendingBody marks a request accepted by a credential that covers its
// body: it travels with the request, so the check cannot be mixed up with
// another request's, and nothing outlives a request that ends early.
type pendingBody struct {
	io.ReadCloser
	once   sync.Once
	check  bodyCheck
	ticket Ticket
	err    error
}

// VerifyBody finishes the authentication Authenticate left to the body of
// r (a digest qop=auth-int response), with the body as read: the response
// must cover exactly these bytes, and its nonce count is recorded then. It
// returns nil when nothing was left, and the same result when called
// again.
func VerifyBody(r *http.Request, body []byte) error {
	pb, ok := r.Body.(*pendingBody)
	if !ok {
		return nil
	}
	pb.once.Do(func() {
		pb.err = pb.check(r.Context(), body)
		if pb.err == nil || errors.Is(pb.err, ErrNonceStore) {
			pb.ticket.Refund()
		}
	})
	return pb.err
}
