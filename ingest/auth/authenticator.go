// Package auth checks the credentials ingest accepts: API keys, basic and
// digest users, and bearer tokens.
package auth

import (
	"context"
	"errors"
	"fmt"
	"github.com/ccrelay/ccrelay/messages/secret"
	"net/http"
	"strings"
)

// Errors of Authenticate. Callers answer all of them with 401.
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
	// Method is "basic", "api_key" or "bearer".
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
// only failure is an expired digest nonce, else ErrBadCredentials.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	if !a.Configured() {
		return Principal{}, ErrNotConfigured
	}
	var errs []error
	if h := r.Header.Get("Authorization"); h != "" {
		p, err := a.authorization(r, h)
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	if k := r.Header.Get(a.APIKeyHeader); k != "" {
		if i, ok := a.APIKeys.Match(k); ok {
			return Principal{Method: "api_key", Name: fmt.Sprintf("key#%d", i+1)}, nil
		}
		errs = append(errs, fmt.Errorf("%w: api key", ErrBadCredentials))
	}
	switch {
	case len(errs) == 0:
		return Principal{}, ErrNoCredentials
	case len(errs) == 1 && errors.Is(errs[0], ErrStaleNonce):
		return Principal{}, errs[0]
	}
	return Principal{}, fmt.Errorf("%w: %w", ErrBadCredentials, errors.Join(errs...))
}

// authorization checks an Authorization header of a scheme ccrelay takes.
func (a *Authenticator) authorization(r *http.Request, h string) (Principal, error) {
	scheme, rest, _ := strings.Cut(h, " ")
	switch {
	case strings.EqualFold(scheme, "basic"):
		user, pass, ok := r.BasicAuth()
		if !ok {
			return Principal{}, fmt.Errorf("%w: malformed basic credentials", ErrBadCredentials)
		}
		if len(a.Basic) == 0 || !a.Basic.Check(user, pass) {
			return Principal{}, fmt.Errorf("%w: basic", ErrBadCredentials)
		}
		return Principal{Method: "basic", Name: user}, nil
	case strings.EqualFold(scheme, "digest"):
		if a.Digest == nil {
			return Principal{}, fmt.Errorf("%w: digest credentials are not accepted here", ErrBadCredentials)
		}
		user, err := a.Digest.Verify(r, rest)
		if err != nil {
			return Principal{}, err
		}
		return Principal{Method: "digest", Name: user}, nil
	case strings.EqualFold(scheme, "bearer"):
		if a.Bearer == nil || !a.Bearer.Enabled() {
			return Principal{}, fmt.Errorf("%w: bearer tokens are not accepted here", ErrBadCredentials)
		}
		sub, err := a.Bearer.Verify(r.Context(), strings.TrimSpace(rest))
		if err != nil {
			return Principal{}, fmt.Errorf("%w: bearer: %w", ErrBadCredentials, err)
		}
		return Principal{Method: "bearer", Name: sub}, nil
	}
	return Principal{}, fmt.Errorf("%w: unsupported Authorization scheme", ErrBadCredentials)
}
