// Package oauth lets senders authenticate with OAuth 2.0 bearer tokens.
//
// Contact Pro's "oauth" authentication and EventBridge API destinations fetch
// a token with the client-credentials grant (RFC 6749 §4.4) from a token URL
// and send it as a bearer token. ccrelay offers that token URL itself
// (Issuer.ServeHTTP, mounted at POST /oauth/token) and issues short-lived
// HS256 JWTs that every replica can verify, because every replica derives the
// same signing key from its configuration. It can instead, or as well, accept
// tokens of an external issuer, verified against that issuer's JWKS.
package oauth

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/ingest"
	"github.com/ccrelay/ccrelay/ingest/auth"
	"github.com/ccrelay/ccrelay/messages/secret"
)

// Config sets the token endpoint and token checks. Its env tags are read with
// the CCRELAY_ prefix.
type Config struct {
	// Clients may fetch tokens from POST /oauth/token, each for the
	// endpoints it names: "client_id@contactpro:secret,eb@connect:secret2"
	// ("@contactpro+connect" for both). A token is accepted only on the
	// endpoints of its client.
	Clients secret.Credentials `env:"OAUTH_CLIENTS" help:"secret: 'client_id@endpoint[+endpoint]:secret,...' allowed at '/oauth/token'; endpoints 'contactpro', 'connect'"`
	// SigningKey signs ccrelay's own tokens. Empty derives one from Clients
	// with HKDF, which every replica with the same clients agrees on; set it
	// to make tokens survive a client secret rotation.
	SigningKey secret.Secret `env:"OAUTH_SIGNING_KEY" help:"secret: ≥ 32 characters signing ccrelay's tokens; empty derives one from the clients (HKDF), so set it to keep tokens valid across a client secret rotation"`
	// TokenTTL is the lifetime of issued tokens.
	TokenTTL time.Duration `env:"OAUTH_TOKEN_TTL" envDefault:"15m" help:"lifetime of issued tokens ('expires_in')"`

	// JWKSURL accepts tokens of an external issuer, checked against its keys.
	JWKSURL string `env:"OAUTH_JWKS_URL" help:"accept tokens of an external issuer, verified with its JWKS"`
	// Issuer, when set, is required as the iss claim of external tokens.
	Issuer string `env:"OAUTH_ISSUER" help:"required 'iss' of external tokens (required with a JWKS URL)"`
	// Audience, when set, is required in the aud claim of external tokens.
	Audience string `env:"OAUTH_AUDIENCE" help:"required 'aud' of external tokens (required with a JWKS URL)"`
	// JWKSRefresh is how often the external key set is re-read.
	JWKSRefresh time.Duration `env:"OAUTH_JWKS_REFRESH" envDefault:"1h" help:"how often the JWKS is re-read"`
}

// Validate checks the fields. Errors name the environment variable.
func (c Config) Validate() error {
	if c.TokenTTL < time.Minute || c.TokenTTL > 24*time.Hour {
		return fmt.Errorf("CCRELAY_OAUTH_TOKEN_TTL: %s is not between 1m and 24h", c.TokenTTL)
	}
	if c.SigningKey != "" && len(c.SigningKey.Reveal()) < 32 {
		return errors.New("CCRELAY_OAUTH_SIGNING_KEY: must be at least 32 characters")
	}
	if c.JWKSURL != "" {
		u, err := url.Parse(c.JWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errors.New("CCRELAY_OAUTH_JWKS_URL: must be an absolute http(s) URL")
		}
		// Without both, every token the identity provider ever signed,
		// for any application, would be accepted here.
		if c.Issuer == "" || c.Audience == "" {
			return errors.New("CCRELAY_OAUTH_JWKS_URL: needs CCRELAY_OAUTH_ISSUER and CCRELAY_OAUTH_AUDIENCE, or tokens the identity provider issued for any other application would be accepted")
		}
	}
	if _, err := parseClients(c.Clients); err != nil {
		return fmt.Errorf("CCRELAY_OAUTH_CLIENTS: %w", err)
	}
	if c.JWKSRefresh < time.Minute {
		return errors.New("CCRELAY_OAUTH_JWKS_REFRESH: must be at least 1m")
	}
	return nil
}

// Own tokens carry this issuer, and the audience "ccrelay:<endpoint>" of
// each endpoint their client may use.
const ownIssuer = "ccrelay"

// Endpoints that accept tokens.
const (
	EndpointContactPro = "contactpro"
	EndpointConnect    = "connect"
)

func audience(endpoint string) string { return "ccrelay:" + endpoint }

// ExternalScope is the scope an external token must carry (in "scope" or
// "scp") to be accepted on endpoint.
func ExternalScope(endpoint string) string { return "ccrelay." + endpoint }

// client is one configured OAuth client.
type client struct {
	secret    secret.Secret
	endpoints []string
}

// parseClients reads the "id@endpoint[+endpoint]" names of the client list.
func parseClients(c secret.Credentials) (map[string]client, error) {
	out := make(map[string]client, len(c))
	for name, secret := range c {
		id, eps, ok := strings.Cut(name, "@")
		if !ok || id == "" || eps == "" {
			return nil, fmt.Errorf("client %q names no endpoint: write %s@contactpro, %s@connect or %s@contactpro+connect", name, name, name, name)
		}
		cl := out[id]
		cl.secret = secret
		for _, ep := range strings.Split(eps, "+") {
			if ep != EndpointContactPro && ep != EndpointConnect {
				return nil, fmt.Errorf("client %q: unknown endpoint %q (contactpro or connect)", id, ep)
			}
			cl.endpoints = append(cl.endpoints, ep)
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("client %q appears twice", id)
		}
		out[id] = cl
	}
	return out, nil
}

// asymmetric are the algorithms accepted from an external issuer. HMAC is
// excluded: a JWKS holds public keys, and accepting HS256 there would let a
// public key be used as a shared secret.
var asymmetric = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Issuer issues and verifies tokens.
type Issuer struct {
	cfg      Config
	throttle *auth.Throttle
	clients  map[string]client
	key      []byte
	jwks     keyfunc.Keyfunc
	now      func() time.Time
	logger   *slog.Logger
	issued   *prometheus.CounterVec
	parser   *jwt.Parser
	eparser  *jwt.Parser
}

// New returns an Issuer. With a JWKS URL it starts refreshing the key set in
// the background until ctx ends; the first fetch failing is not fatal
// (tokens are refused until a fetch succeeds). throttle (nil: none) slows
// down repeated wrong client secrets from one address.
func New(ctx context.Context, cfg Config, throttle *auth.Throttle, reg prometheus.Registerer, logger *slog.Logger) (*Issuer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	is := &Issuer{
		cfg:      cfg,
		throttle: throttle,
		now:      time.Now,
		logger:   logger,
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_oauth_token_requests_total",
			Help: "Token endpoint requests by outcome (issued or the RFC 6749 error code).",
		}, []string{"outcome"}),
	}
	reg.MustRegister(is.issued)
	is.clients, _ = parseClients(cfg.Clients) // checked by Validate
	switch {
	case cfg.SigningKey != "":
		is.key = []byte(cfg.SigningKey.Reveal())
	case len(cfg.Clients) > 0:
		k, err := deriveKey(cfg.Clients)
		if err != nil {
			return nil, err
		}
		is.key = k
	}
	// Strict decoding: one token, one spelling. Without it a signature
	// whose last base64 character differs in its unused bits decodes to
	// the same bytes and verifies too.
	is.parser = jwt.NewParser(
		jwt.WithStrictDecoding(),
		jwt.WithValidMethods([]string{"HS256"}),
		jwt.WithIssuer(ownIssuer),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(30*time.Second),
		jwt.WithTimeFunc(func() time.Time { return is.now() }),
	)
	is.eparser = jwt.NewParser(
		jwt.WithStrictDecoding(),
		jwt.WithValidMethods(asymmetric),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(30*time.Second),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
	)
	if cfg.JWKSURL != "" {
		k, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
			HTTPTimeout:     10 * time.Second,
			RefreshInterval: cfg.JWKSRefresh,
			RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
				return func(_ context.Context, err error) {
					logger.Error("jwks refresh failed", "url", u, "error", err)
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("CCRELAY_OAUTH_JWKS_URL: %w", err)
		}
		is.jwks = k
	}
	return is, nil
}

// deriveKey derives the HS256 key from the client list, so that replicas
// configured alike agree on it without sharing one more secret.
func deriveKey(clients secret.Credentials) ([]byte, error) {
	var ikm []byte
	for _, name := range clients.Names() {
		ikm = append(ikm, name...)
		ikm = append(ikm, 0)
		ikm = append(ikm, clients[name].Reveal()...)
		ikm = append(ikm, 0)
	}
	return hkdf.Key(sha256.New, ikm, []byte("ccrelay-oauth"), "hs256 token signing key v1", 32)
}

// Grants reports whether any token can be accepted on endpoint: a client
// granted it, or an external issuer.
func (is *Issuer) Grants(endpoint string) bool {
	if is.jwks != nil {
		return true
	}
	for _, c := range is.clients {
		if is.key != nil && slices.Contains(c.endpoints, endpoint) {
			return true
		}
	}
	return false
}

// Enabled reports whether any token can be verified.
func (is *Issuer) Enabled() bool { return is.key != nil || is.jwks != nil }

// Issue returns a signed token for clientID, valid on the endpoints the
// client was granted, and its lifetime.
func (is *Issuer) Issue(clientID string) (string, time.Duration, error) {
	if is.key == nil {
		return "", 0, errors.New("no signing key")
	}
	var aud jwt.ClaimStrings
	for _, ep := range is.clients[clientID].endpoints {
		aud = append(aud, audience(ep))
	}
	if len(aud) == 0 {
		return "", 0, fmt.Errorf("client %q has no endpoint", clientID)
	}
	now := is.now()
	claims := jwt.RegisteredClaims{
		Issuer:    ownIssuer,
		Subject:   clientID,
		Audience:  aud,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Second)),
		ExpiresAt: jwt.NewNumericDate(now.Add(is.cfg.TokenTTL)),
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	s, err := tok.SignedString(is.key)
	return s, is.cfg.TokenTTL, err
}

// For returns the verifier of one endpoint: it accepts only tokens issued
// for that endpoint.
func (is *Issuer) For(endpoint string) auth.TokenVerifier {
	return endpointVerifier{is: is, endpoint: endpoint}
}

type endpointVerifier struct {
	is       *Issuer
	endpoint string
}

func (v endpointVerifier) Enabled() bool { return v.is.Enabled() }

func (v endpointVerifier) Verify(ctx context.Context, token string) (string, error) {
	return v.is.verify(ctx, token, v.endpoint)
}

// claims are the registered claims and the scopes of external tokens.
type claims struct {
	jwt.RegisteredClaims
	Scope string   `json:"scope"`
	Scp   []string `json:"scp"`
}

// verify checks a bearer token for endpoint: one of ccrelay's own (HS256),
// whose audience must name the endpoint, or, with a JWKS configured, one
// of the external issuer with the configured audience and the endpoint's
// scope. It returns the token's subject.
func (is *Issuer) verify(ctx context.Context, token, endpoint string) (string, error) {
	var c claims
	alg, err := algOf(token)
	if err != nil {
		return "", err
	}
	if alg == "HS256" {
		if is.key == nil {
			return "", errors.New("own tokens are not enabled")
		}
		if _, err := is.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return is.key, nil }); err != nil {
			return "", err
		}
		if !slices.Contains(c.Audience, audience(endpoint)) {
			return "", fmt.Errorf("token is not for the %s endpoint", endpoint)
		}
		// A token whose client was removed, or no longer has this
		// endpoint, is refused at once (a derived key changes with the
		// list anyway; a configured one does not).
		if !slices.Contains(is.clients[c.Subject].endpoints, endpoint) {
			return "", errors.New("client no longer configured for this endpoint")
		}
		return c.Subject, nil
	}
	if is.jwks == nil {
		return "", fmt.Errorf("algorithm %s is not accepted", alg)
	}
	if _, err := is.eparser.ParseWithClaims(token, &c, is.jwks.KeyfuncCtx(ctx)); err != nil {
		return "", err
	}
	want := ExternalScope(endpoint)
	if !slices.Contains(strings.Fields(c.Scope), want) && !slices.Contains(c.Scp, want) {
		return "", fmt.Errorf("token lacks the scope %s", want)
	}
	return c.Subject, nil
}

func algOf(token string) (string, error) {
	t, _, err := jwt.NewParser().ParseUnverified(token, &jwt.RegisteredClaims{})
	if err != nil {
		return "", err
	}
	alg, _ := t.Header["alg"].(string)
	if alg == "" {
		return "", errors.New("token has no alg")
	}
	return alg, nil
}

// tokenError is an RFC 6749 §5.2 error body.
type tokenError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
}

// ServeHTTP is the token endpoint: the client-credentials grant of RFC 6749
// §4.4, client authentication by HTTP basic or by client_id and
// client_secret form fields (§2.3.1), never both.
//
// What the headers say is checked before the body is read: the method, the
// content type, and client credentials in an Authorization header (as
// EventBridge sends them). A request refused there is answered at once,
// without its body, on a connection then closed, so that senders without
// credentials cannot hold the endpoint's slots by stalling their bodies.
// Only a client authenticating with form fields has its body read before
// it is authenticated, within the bounds ingest.Pipeline.Bound sets: a
// body of at most 16 KiB that must arrive within the body timeout.
func (is *Issuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Token answers must never be cached (§5.1).
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	read := false
	answer := func(status int, code, desc string) {
		if !read {
			ingest.CloseUnread(w, r)
		}
		is.issued.WithLabelValues(code).Inc()
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="ccrelay"`)
		}
		if status != http.StatusMethodNotAllowed {
			is.logger.Info("token request refused", "error_code", code, "reason", desc, "remote", r.RemoteAddr)
		}
		writeJSON(w, status, tokenError{Error: code, Description: desc})
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		answer(http.StatusMethodNotAllowed, "invalid_request", "use POST")
		return
	}
	if !isForm(r) {
		answer(http.StatusBadRequest, "invalid_request", "send an application/x-www-form-urlencoded body")
		return
	}
	var id, secret string
	basic := r.Header.Get("Authorization") != ""
	if basic {
		// An Authorization header is client authentication (basic is
		// the one scheme of §2.3.1): it is checked before the body.
		var ok bool
		id, secret, ok = r.BasicAuth()
		var err1, err2 error
		if ok {
			// §2.3.1: id and secret are form-urlencoded before basic encoding.
			id, err1 = url.QueryUnescape(id)
			secret, err2 = url.QueryUnescape(secret)
		}
		if !ok || err1 != nil || err2 != nil {
			answer(http.StatusUnauthorized, "invalid_client", "malformed client credentials")
			return
		}
		if !is.authenticate(w, r, id, secret, answer) {
			return
		}
	}

	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	err := r.ParseForm()
	read = err == nil
	switch {
	case ingest.IsTimeout(err):
		answer(http.StatusRequestTimeout, "invalid_request", "the body did not arrive in time")
		return
	case err != nil:
		answer(http.StatusBadRequest, "invalid_request", "send an application/x-www-form-urlencoded body")
		return
	}
	form := r.PostForm
	for _, p := range []string{"grant_type", "client_id", "client_secret", "scope"} {
		if len(form[p]) > 1 {
			answer(http.StatusBadRequest, "invalid_request", p+" is repeated")
			return
		}
	}
	gt := form.Get("grant_type")
	switch {
	case gt == "":
		answer(http.StatusBadRequest, "invalid_request", "grant_type is required")
		return
	case gt != "client_credentials":
		answer(http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is supported")
		return
	}
	if basic {
		if form.Has("client_secret") {
			answer(http.StatusBadRequest, "invalid_request", "use one client authentication method, not two")
			return
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
		if !is.authenticate(w, r, id, secret, answer) {
			return
		}
	}
	tok, ttl, err := is.Issue(id)
	if err != nil {
		is.issued.WithLabelValues("server_error").Inc()
		is.logger.Error("issue token", "error", err)
		writeJSON(w, http.StatusInternalServerError, tokenError{Error: "server_error"})
		return
	}
	is.issued.WithLabelValues("issued").Inc()
	is.logger.Debug("token issued", "client_id", id)
	writeJSON(w, http.StatusOK, tokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int(ttl / time.Second)})
}

// authenticate checks a client's id and secret, slowing down an address
// that keeps failing, and answers (with answer, or 429 slow_down) when it
// refuses them.
func (is *Issuer) authenticate(w http.ResponseWriter, r *http.Request, id, secret string, answer func(status int, code, desc string)) bool {
	if id == "" || secret == "" {
		answer(http.StatusUnauthorized, "invalid_client", "client authentication is required")
		return false
	}
	ticket, err := is.throttle.Take(r, "oauth")
	var throttled *auth.ThrottledError
	if errors.As(err, &throttled) {
		// RFC 8628's slow_down, registered for the token endpoint: the
		// client is to wait before it asks again.
		w.Header().Set("Retry-After", strconv.Itoa(int((throttled.RetryAfter+time.Second-1)/time.Second)))
		answer(http.StatusTooManyRequests, "slow_down", "too many failed client authentications from this address; retry later")
		return false
	}
	cl, known := is.clients[id]
	if !known {
		// An unknown client costs what a wrong secret does, so the time
		// does not tell which clients exist.
		cl.secret = "\x00unknown client"
	}
	if ok := cl.secret.Matches(secret); !ok || !known {
		answer(http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return false
	}
	ticket.Refund()
	return true
}

func isForm(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/x-www-form-urlencoded"
}
