// Package messaging is the ingest adapter of the inbound webhooks of
// Contact Pro's messaging services (Twilio, Messenger, Sinch SMS and the
// other service types of Contact Pro's SMS Server, messages.MessagingTypes):
// POST /v1/messaging/{type}/{service}, each checked the way its provider
// signs, and Messenger's GET verification handshake.
package messaging

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ccrelay/ccrelay/ingest"
	"github.com/ccrelay/ccrelay/ingest/auth"
	"github.com/ccrelay/ccrelay/ingest/sinch"
	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/secret"
	"github.com/ccrelay/ccrelay/messages/signature"
)

// Config sets the messaging adapter. Its env tags are read with the
// CCRELAY_ prefix. Every map is keyed "type/service": the {type} and
// {service} of the URL.
type Config struct {
	// Secrets are the signing secrets: Twilio's auth token, Messenger's
	// app secret, Sinch SMS's callback signing secret.
	Secrets secret.Credentials `env:"MESSAGING_SECRETS" help:"secret: 'type/service:secret,...': Twilio's auth token, Messenger's app secret, Sinch SMS's signing secret"`
	// VerifyTokens answer Messenger's GET verification handshake.
	VerifyTokens secret.Credentials `env:"MESSAGING_VERIFY_TOKENS" help:"secret: 'facebook/service:token,...' for Messenger's handshake"`
	// BasicUsers are the "user:password" of services called with HTTP
	// basic: "wavy/br=user:password".
	BasicUsers secret.Assignments `env:"MESSAGING_BASIC_USERS" help:"secret: 'type/service=user:password,...' of services that call with HTTP basic"`
	// APIKeys are the keys of services that send one in APIKeyHeader.
	APIKeys      secret.Assignments `env:"MESSAGING_API_KEYS" help:"secret: 'type/service=key,...' of services that send an API key"`
	APIKeyHeader string             `env:"MESSAGING_API_KEY_HEADER" envDefault:"x-api-key" help:"header carrying the API key of 'CCRELAY_MESSAGING_API_KEYS'"`
	// SharedKeys are the secrets of Twilio SharedKeys, for services whose
	// webhooks a Twilio Webhook Setting signs with one instead of the auth
	// token (X-Twilio-Webhooks-Signature-Settings): "twilio/us=secret".
	SharedKeys secret.Assignments `env:"MESSAGING_TWILIO_SHARED_KEYS" help:"secret: 'twilio/service=secret,...': the SharedKey secret of Twilio services whose Webhook Setting signs with a SharedKey (HMAC_SHA256) instead of the auth token, which the service still needs"`
	// PublicURL is ccrelay's URL as the providers call it
	// (https://relay.example.com): Twilio signs the URL it called, which a
	// proxy in front of ccrelay changes, so it is configured, never taken
	// from the request.
	PublicURL string `env:"PUBLIC_URL" help:"ccrelay's URL as the providers call it ('https://relay.example.com', plus any path prefix your proxy strips before '/v1/...'): Twilio signs the URL it called, which a proxy changes; required with a Twilio service"`
	// MaxClockSkew bounds the age of a signed Sinch SMS callback.
	MaxClockSkew time.Duration `env:"MESSAGING_MAX_CLOCK_SKEW" envDefault:"5m" help:"accepted timestamp distance of signed Sinch SMS callbacks ('CCRELAY_DEDUP_WINDOW' ≥ twice it)"`
}

// Validate checks the fields. Errors name the variable.
func (c Config) Validate() error {
	sets := []struct {
		name  string
		names []string
	}{
		{"CCRELAY_MESSAGING_SECRETS", c.Secrets.Names()},
		{"CCRELAY_MESSAGING_VERIFY_TOKENS", c.VerifyTokens.Names()},
		{"CCRELAY_MESSAGING_BASIC_USERS", c.BasicUsers.Names()},
		{"CCRELAY_MESSAGING_API_KEYS", c.APIKeys.Names()},
		{"CCRELAY_MESSAGING_TWILIO_SHARED_KEYS", c.SharedKeys.Names()},
	}
	for _, set := range sets {
		for _, key := range set.names {
			typ, _, err := SplitKey(key)
			if err != nil {
				return fmt.Errorf("%s: %w", set.name, err)
			}
			switch {
			case set.name == "CCRELAY_MESSAGING_VERIFY_TOKENS" && typ != messages.MessagingFacebook:
				return fmt.Errorf("%s: %q: only facebook services have a verification handshake", set.name, key)
			case set.name == "CCRELAY_MESSAGING_TWILIO_SHARED_KEYS" && typ != messages.MessagingTwilio:
				return fmt.Errorf("%s: %q: only twilio services are signed with SharedKeys", set.name, key)
			case (typ == messages.MessagingTwilio || typ == messages.MessagingFacebook) && c.Secrets[key] == "":
				return fmt.Errorf("CCRELAY_MESSAGING_SECRETS: %q has no signing secret; %s webhooks are checked by their signature", key, typ)
			case !c.guarded(typ, key):
				// ccrelay never runs open: a secret is no guard where
				// the provider signs nothing.
				return fmt.Errorf("%s: %q: %s webhooks carry no signature, so the service needs CCRELAY_MESSAGING_BASIC_USERS or CCRELAY_MESSAGING_API_KEYS, or anyone could post to it", set.name, key, typ)
			}
		}
	}
	for _, key := range c.BasicUsers.Names() {
		if _, _, ok := c.BasicUsers.UserPassword(key); !ok {
			return fmt.Errorf("CCRELAY_MESSAGING_BASIC_USERS: %q: want type/service=user:password", key)
		}
	}
	twilio := false
	for _, key := range c.Secrets.Names() {
		twilio = twilio || strings.HasPrefix(key, messages.MessagingTwilio+"/")
	}
	if twilio || c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(u.Path, "/") {
			return errors.New("CCRELAY_PUBLIC_URL: want ccrelay's URL as Twilio calls it, e.g. https://relay.example.com (no query, no trailing '/'); Twilio signs the URL it called")
		}
	}
	if c.MaxClockSkew < 0 {
		return errors.New("CCRELAY_MESSAGING_MAX_CLOCK_SKEW: must not be negative")
	}
	if c.APIKeyHeader == "" {
		return errors.New("CCRELAY_MESSAGING_API_KEY_HEADER: must not be empty")
	}
	return nil
}

// signed reports whether webhooks of typ carry a signature ccrelay checks
// with the service's secret.
func signed(typ string) bool {
	switch typ {
	case messages.MessagingTwilio, messages.MessagingFacebook, messages.MessagingSinchSMS:
		return true
	}
	return false
}

// guarded reports whether something checks the requests of service key of
// type typ: basic or an API key, or the signature of a signed type made
// with its secret.
func (c Config) guarded(typ, key string) bool {
	_, b := c.BasicUsers[key]
	_, k := c.APIKeys[key]
	_, s := c.Secrets[key]
	return b || k || (s && signed(typ))
}

// Configured reports whether any service is configured.
func (c Config) Configured() bool {
	return len(c.Secrets) > 0 || len(c.BasicUsers) > 0 || len(c.APIKeys) > 0
}

// SplitKey splits "type/service", checking that the type is a messaging
// service type and the service a plain name of at most 64 bytes.
func SplitKey(key string) (typ, service string, err error) {
	typ, service, ok := strings.Cut(key, "/")
	switch {
	case !ok:
		return "", "", fmt.Errorf("%q: want type/service", key)
	case !messages.IsMessagingType(typ):
		return "", "", fmt.Errorf("%q: type must be one of %s (Sinch Conversation API callbacks go to /v1/sinch/{service})", key, strings.Join(messages.MessagingTypes(), ", "))
	case service == "" || len(service) > 64 || messages.EscapeToken(service) != service:
		return "", "", fmt.Errorf("%q: the service must be 1 to 64 letters, digits, '-' or '_'", key)
	}
	return typ, service, nil
}

// Adapter is the messaging ingest adapter.
type Adapter struct {
	cfg      Config
	subjects messages.Subjects
	metrics  *ingest.Metrics
	throttle *auth.Throttle
}

// New returns the adapter. throttle (nil: none) slows down repeated wrong
// passwords and API keys from one client address.
func New(cfg Config, subjects messages.Subjects, m *ingest.Metrics, throttle *auth.Throttle) *Adapter {
	return &Adapter{cfg: cfg, subjects: subjects, metrics: m, throttle: throttle}
}

// Source implements ingest.Adapter.
func (a *Adapter) Source() string { return messages.SourceMessaging }

// Rules implements ingest.RuleSetter: Twilio posts forms, the others JSON.
func (a *Adapter) Rules() ingest.Rules {
	return ingest.Rules{Methods: []string{http.MethodPost}, ContentTypes: []string{messages.ContentTypeJSON, messages.ContentTypeForm}}
}

// basicChallenge and sinchChallenge are the WWW-Authenticate values of
// refusals: sinchChallenge is what sinch.VerifyRequest refuses signed
// Sinch SMS callbacks with.
var (
	basicChallenge = `Basic realm="ccrelay", charset="UTF-8"`
	sinchChallenge = `Sinch-Signature realm="ccrelay"`
)

// challenges are the WWW-Authenticate values of every 401 to a service of
// type typ. They depend on the type alone, never on whether the service
// exists or which credentials it is configured with, so that they tell a
// caller nothing about it (the log says which check refused). Every type
// may be configured with basic credentials, and Twilio sends its basic
// credentials only when challenged; a Sinch SMS service may instead sign
// its callbacks.
func challenges(typ string) []string {
	if typ == messages.MessagingSinchSMS {
		return []string{sinchChallenge, basicChallenge}
	}
	return []string{basicChallenge}
}

// challenged gives a 401 among err the challenges of typ.
func challenged(err error, typ string) error {
	var e *ingest.Error
	if errors.As(err, &e) && e.Status == http.StatusUnauthorized {
		e.Challenges = challenges(typ)
	}
	return err
}

// unguardedReason is the logged reason of refusing a service nothing
// guards.
const unguardedReason = "no credentials are configured for this messaging service"

// route returns the type, the service and the "type/service" of r, and
// whether something guards the service: basic or an API key, or the
// secret of a signed type. A service not configured, or whose only
// credential is a secret its type does not sign with (Validate refuses
// that configuration; this refuses it again, whatever built the adapter),
// is refused as one of its type that is configured would refuse wrong
// credentials: the same answer, the same challenge, the same slowing down,
// and, for a signature, after reading the body as that one does. The
// error is for a type ccrelay does not take.
func (a *Adapter) route(r *http.Request) (typ, service, key string, guarded bool, err error) {
	typ, service = r.PathValue("type"), r.PathValue("service")
	if !messages.IsMessagingType(typ) {
		return "", "", "", false, ingest.Errorf(http.StatusNotFound, ingest.CodeNotFound, "no such messaging service type; use one of %s (Sinch Conversation API: /v1/sinch/{service})", strings.Join(messages.MessagingTypes(), ", "))
	}
	key = typ + "/" + service
	return typ, service, key, a.cfg.guarded(typ, key), nil
}

// signedLike reports whether a request to a service nothing guards is to
// be taken as one a service of its type checks by signature: Twilio and
// Messenger always, Sinch SMS when it carries a Sinch signature. Such a
// request is refused only after its body, as a configured service refuses
// a well-formed signature that does not match; other requests are refused
// from their headers, as a configured service refuses missing or wrong
// basic credentials and API keys.
func signedLike(r *http.Request, typ string) bool {
	switch typ {
	case messages.MessagingTwilio, messages.MessagingFacebook:
		return true
	case messages.MessagingSinchSMS:
		return r.Header.Get(signature.SinchHeaderSignature) != ""
	}
	return false
}

// refuseUnguarded is the refusal, from the headers, of a request to a
// service nothing guards, made like a configured service's refusal of
// wrong or missing basic credentials or API key, slowing down included.
func (a *Adapter) refuseUnguarded(r *http.Request) error {
	ticket, err := a.throttle.Take(r, messages.SourceMessaging)
	if err != nil {
		return throttled(err)
	}
	if !a.carriesPassword(r) {
		ticket.Refund()
	}
	return ingest.Unauthorized(ingest.CodeUnauthorized, unguardedReason, nil, nil)
}

// checkPasswords checks the basic credentials and the API key the service
// is configured with, all that are, slowing down an address that keeps
// failing. A request carrying neither costs the address nothing: it is
// the first of a basic handshake.
func (a *Adapter) checkPasswords(r *http.Request, key string) error {
	user, pass, basic := a.cfg.BasicUsers.UserPassword(key)
	want, apiKey := a.cfg.APIKeys[key]
	if !basic && !apiKey {
		return nil
	}
	ticket, err := a.throttle.Take(r, messages.SourceMessaging)
	if err != nil {
		return throttled(err)
	}
	if basic {
		u, p, given := r.BasicAuth()
		// Both compared, in constant time, whatever the first says.
		okUser := secret.Secret(user).Matches(u)
		okPass := pass.Matches(p)
		if !given || !okUser || !okPass {
			if !a.carriesPassword(r) {
				ticket.Refund()
			}
			return ingest.Unauthorized(ingest.CodeUnauthorized, "basic credentials are missing or wrong", nil, nil)
		}
	}
	if apiKey && !want.Matches(r.Header.Get(a.cfg.APIKeyHeader)) {
		if !a.carriesPassword(r) {
			ticket.Refund()
		}
		return ingest.Unauthorized(ingest.CodeUnauthorized, "the API key is missing or wrong", nil, nil)
	}
	ticket.Refund()
	return nil
}

func (a *Adapter) carriesPassword(r *http.Request) bool {
	return r.Header.Get("Authorization") != "" || r.Header.Get(a.cfg.APIKeyHeader) != ""
}

func throttled(err error) error {
	var te *auth.ThrottledError
	if errors.As(err, &te) {
		return ingest.Throttled(te)
	}
	return err
}

// Authorize checks basic and API key credentials, and that a signed
// service's signature headers can verify at all, before the body is read;
// the signatures themselves are checked in Event. A service nothing guards
// is refused here, or, for a signature of the right shape, in Event.
func (a *Adapter) Authorize(r *http.Request) error {
	typ, _, key, guarded, err := a.route(r)
	switch {
	case err != nil:
		return err
	case !guarded && !signedLike(r, typ):
		return challenged(a.refuseUnguarded(r), typ)
	case !guarded:
		// Checked as a configured service's would be; refused in Event.
		return challenged(a.checkSignatureHeaders(r, typ, true, time.Now()), typ)
	}
	if err := a.checkPasswords(r, key); err != nil {
		return challenged(err, typ)
	}
	_, sinchSigned := a.cfg.Secrets[key]
	return challenged(a.checkSignatureHeaders(r, typ, sinchSigned, time.Now()), typ)
}

// maxKeptHeader bounds a kept signature header: the longest is Messenger's
// "sha256=" and 64 hex digits.
const maxKeptHeader = 128

// Event verifies the provider's signature and stores the webhook under its
// conversation.
func (a *Adapter) Event(_ context.Context, r *http.Request, body []byte, received time.Time) (*ingest.Accepted, error) {
	typ, service, key, guarded, err := a.route(r)
	if err != nil {
		return nil, err
	}
	acc, err := a.event(r, typ, service, key, guarded, body, received)
	return acc, challenged(err, typ)
}

// standInKey stands for the secret of a service nothing guards, so that
// its signature costs what a configured service's does and the time does
// not tell them apart; what it verifies is refused all the same.
const standInKey = "\x00none is configured for this service"

func (a *Adapter) event(r *http.Request, typ, service, key string, guarded bool, body []byte, received time.Time) (*ingest.Accepted, error) {
	if !guarded && !signedLike(r, typ) {
		// Authorize refused it already; so is anything that skips it.
		return nil, ingest.Unauthorized(ingest.CodeUnauthorized, unguardedReason, nil, nil)
	}
	// refuse is the refusal of a signature that does not match: the
	// same answer for a service nothing guards, whose reason the log
	// says.
	refuse := func(code, reason string) error {
		if !guarded {
			reason = unguardedReason
		}
		return ingest.Unauthorized(code, reason, nil, nil)
	}
	secretOf := func(m secret.Credentials) string {
		if !guarded {
			return standInKey
		}
		return m[key].Reveal()
	}
	ct := r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	kept := map[string]string{}
	switch typ {
	case messages.MessagingTwilio:
		if mt != messages.ContentTypeForm {
			return nil, ingest.CheckContentType(ct, messages.ContentTypeForm)
		}
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("%w: the body is not form-encoded: %w", messages.ErrInvalidPayload, err)
		}
		sig := r.Header.Get(signature.HeaderTwilioSignature)
		if !signature.TwilioVerifyRequest(r.Header, secretOf(a.cfg.Secrets), a.cfg.SharedKeys[key].Reveal(), a.requestURL(r), form) || !guarded {
			return nil, refuse(ingest.CodeInvalidSignature, "the X-Twilio-Signature does not match (it is computed over CCRELAY_PUBLIC_URL and the path Twilio called)")
		}
		kept[signature.HeaderTwilioSignature] = sig
	case messages.MessagingFacebook:
		if mt != messages.ContentTypeJSON {
			return nil, ingest.CheckContentType(ct)
		}
		sig := r.Header.Get(signature.HeaderHubSignature256)
		if !signature.HubVerify(secretOf(a.cfg.Secrets), body, sig) || !guarded {
			return nil, refuse(ingest.CodeInvalidSignature, "the X-Hub-Signature-256 does not match")
		}
		// Messenger signs the body only: Contact Pro can check these
		// however late the relay delivers it.
		kept[signature.HeaderHubSignature256] = sig
		if old := r.Header.Get(signature.HeaderHubSignature); old != "" && len(old) <= maxKeptHeader && isToken(old) {
			kept[signature.HeaderHubSignature] = old
		}
	case messages.MessagingSinchSMS:
		if mt != messages.ContentTypeJSON {
			return nil, ingest.CheckContentType(ct)
		}
		if _, ok := a.cfg.Secrets[key]; ok || !guarded {
			// Signed the way Sinch signs its webhooks (the Conversation
			// API's scheme).
			if err := sinch.VerifyRequest(r.Header, secretOf(a.cfg.Secrets), body, received, a.cfg.MaxClockSkew); err != nil {
				return nil, err
			}
			if !guarded {
				return nil, refuse(ingest.CodeInvalidSignature, unguardedReason)
			}
		}
	}
	w, err := messages.DecodeWebhook(typ, service, body)
	if err != nil {
		return nil, err
	}
	acc := &ingest.Accepted{
		Event: messages.Event{
			Subject:     a.subjects.Messaging(typ, service, messages.Partition(w.Conversation)),
			ID:          w.ID,
			Source:      "/messaging/" + typ + "/" + service,
			Type:        messages.TypeMessagingPrefix + typ + "." + w.Kind,
			ContentType: mt,
			Kept:        kept,
			Body:        body,
		},
		Type: typ + "." + w.Kind,
	}
	return acc, nil
}

// requestURL is the URL Twilio called: the configured public URL, the path
// and the query as received.
func (a *Adapter) requestURL(r *http.Request) string {
	u := a.cfg.PublicURL + r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		u += "?" + r.URL.RawQuery
	}
	return u
}

// isToken reports whether v is printable ASCII without spaces: safe to
// keep as a header.
func isToken(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] >= 0x7f {
			return false
		}
	}
	return true
}

// maxChallenge bounds the hub.challenge echoed back (Meta sends a number).
const maxChallenge = 128

// Handshake answers Messenger's webhook verification: GET with
// hub.mode=subscribe, the configured hub.verify_token, and hub.challenge,
// which is echoed back. Anything else is refused and changes nothing: a
// wrong token, or a service without one, with one answer, so that a caller
// cannot tell which services exist; wrong tokens count as failed
// credentials, so guessing them is slowed down like guessing passwords.
func (a *Adapter) Handshake(w http.ResponseWriter, r *http.Request) {
	outcome := "handshake_refused"
	defer func() { a.metrics.Requests.WithLabelValues(messages.SourceMessaging, outcome).Inc() }()
	typ, service := r.PathValue("type"), r.PathValue("service")
	if typ != messages.MessagingFacebook {
		w.Header().Set("Allow", http.MethodPost)
		ingest.WriteError(w, ingest.Errorf(http.StatusMethodNotAllowed, ingest.CodeMethodNotAllowed, "use POST; only facebook services answer GET (the verification handshake)"))
		return
	}
	q := r.URL.Query()
	given := q.Get("hub.verify_token")
	ticket, err := a.throttle.Take(r, messages.SourceMessaging)
	if err != nil {
		outcome = ingest.CodeTooManyFailures
		ingest.WriteError(w, ingest.AsError(throttled(err)))
		return
	}
	token, ok := a.cfg.VerifyTokens[typ+"/"+service]
	if !ok {
		// Compared all the same, so the time does not tell either.
		token = standInKey
	}
	matches := token.Matches(given) && ok
	if given == "" || matches {
		// Nothing was guessed.
		ticket.Refund()
	}
	ch := q.Get("hub.challenge")
	switch {
	case q.Get("hub.mode") != "subscribe" || !matches:
		ingest.WriteError(w, ingest.Errorf(http.StatusForbidden, ingest.CodeUnauthorized, "hub.mode must be subscribe and hub.verify_token the one configured for this service (CCRELAY_MESSAGING_VERIFY_TOKENS)"))
		return
	case ch == "" || len(ch) > maxChallenge || !isToken(ch):
		ingest.WriteError(w, ingest.Errorf(http.StatusBadRequest, ingest.CodeInvalidPayload, "hub.challenge must be 1 to %d printable characters", maxChallenge))
		return
	}
	outcome = "handshake"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	// #nosec G705 -- Meta's handshake needs the challenge echoed; it is
	// checked to be at most 128 printable ASCII characters without spaces,
	// and served as text/plain with nosniff, so no browser renders it.
	_, _ = w.Write([]byte(ch))
}
