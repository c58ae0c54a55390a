// Package contactpro is the ingest adapter of Sinch Contact Pro event-driven
// integrations: POST /v1/contactpro/{integration}[/{event}], authenticated
// with HTTP basic, an API key header or an OAuth 2.0 bearer token.
package contactpro

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/ingest"
	"github.com/ccrelay/ccrelay/ingest/auth"
	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/messages/seal"
	"github.com/ccrelay/ccrelay/messages/secret"
)

// Config sets the Contact Pro adapter. Its env tags are read with the
// CCRELAY_ prefix.
type Config struct {
	// Auth: CCRELAY_CONTACTPRO_API_KEYS, _API_KEY_HEADER, _BASIC_USERS.
	Auth auth.Settings `envPrefix:"CONTACTPRO_"`
	// DigestUsers are accepted with HTTP digest (RFC 7616), Contact Pro's
	// "digest:<user>" authentication: "user:password,...".
	DigestUsers secret.Credentials `env:"CONTACTPRO_DIGEST_USERS" help:"secret: 'user:password,...' accepted with HTTP digest (RFC 7616, SHA-256; each response once, across replicas)"`
	// DigestNonceTTL is how long a digest nonce is accepted. Each of its
	// nonce counts is accepted once; a client answers an expired one's
	// stale=true challenge anew.
	DigestNonceTTL time.Duration `env:"CONTACTPRO_DIGEST_NONCE_TTL" envDefault:"60s" help:"how long a digest nonce is accepted (10s to 10m); each nonce count once, on any replica"`
	// DigestQOP are the qop values offered and accepted, in order.
	DigestQOP []string `env:"CONTACTPRO_DIGEST_QOP" envDefault:"auth-int,auth" help:"digest qop values offered and accepted: 'auth-int' covers the body, 'auth' only the method and URI; 'auth-int' alone refuses responses that do not cover the body"`
	// DigestMD5 also offers and accepts MD5 digests.
	DigestMD5 bool `env:"CONTACTPRO_DIGEST_MD5" envDefault:"false" help:"also offer and accept MD5 and MD5-sess digests, for a client that cannot do SHA-256"`
}

// Validate checks the digest settings. Errors name the variable.
func (c Config) Validate() error {
	if c.DigestNonceTTL < 10*time.Second || c.DigestNonceTTL > 10*time.Minute {
		return fmt.Errorf("CCRELAY_CONTACTPRO_DIGEST_NONCE_TTL: %s is not between 10s and 10m", c.DigestNonceTTL)
	}
	if len(c.DigestQOP) == 0 {
		return errors.New("CCRELAY_CONTACTPRO_DIGEST_QOP: must name auth-int, auth or both")
	}
	for i, q := range c.DigestQOP {
		if q != auth.QOPAuth && q != auth.QOPAuthInt || slices.Contains(c.DigestQOP[:i], q) {
			return fmt.Errorf("CCRELAY_CONTACTPRO_DIGEST_QOP: %q: want auth-int, auth or both, each once", q)
		}
	}
	return nil
}

// ProvisionDigest creates or binds to the deployment's digest buckets on
// js when digest users are configured (nil otherwise), waiting with w.
func (c Config) ProvisionDigest(ctx context.Context, w provision.Waiter, js jetstream.JetStream, streams messages.StreamConfig) (*auth.DigestStore, error) {
	if len(c.DigestUsers) == 0 {
		return nil, nil
	}
	return auth.ProvisionDigest(ctx, w, js, streams.Subjects, c.DigestNonceTTL, streams.Replicas)
}

// CredentialHeaders returns the headers in which Contact Pro passes the
// secrets a chat-attachments call needs. They are sealed into one header,
// never stored in clear.
func CredentialHeaders() []string {
	return []string{"x-cmi-api-key", "x-cmi-password", "x-sap-v1-password"}
}

// knownEvent reports whether e is one of Contact Pro's conversation events,
// for the bounded type label of metrics.
func knownEvent(e string) bool {
	return e == messages.ContactProNoEvent || slices.Contains(messages.ContactProEvents, e)
}

// Rules implements ingest.RuleSetter: Contact Pro's integrations may use any
// of these methods and send no body.
func (a *Adapter) Rules() ingest.Rules {
	return ingest.Rules{Methods: []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}, EmptyBody: true}
}

// Adapter is the Contact Pro ingest adapter.
type Adapter struct {
	authn    *auth.Authenticator
	subjects messages.Subjects
	keys     seal.KeyRing
	metrics  *ingest.Metrics
	logger   *slog.Logger
	// dropWarned makes the first dropped credential a WARN line: the
	// caller meant them to be used, and only a metric said otherwise.
	dropWarned sync.Once
}

// Deps are what the adapter works with besides its configuration.
type Deps struct {
	// Bearer verifies tokens; nil accepts none.
	Bearer auth.TokenVerifier
	// Throttle slows down repeated failures per client address; nil: none.
	Throttle *auth.Throttle
	// Digest is the deployment's digest store (Config.ProvisionDigest);
	// required with digest users.
	Digest   *auth.DigestStore
	Keys     seal.KeyRing
	Subjects messages.Subjects
	Metrics  *ingest.Metrics
	Logger   *slog.Logger
}

// New returns the adapter.
func New(cfg Config, d Deps) (*Adapter, error) {
	authn, err := cfg.authenticator(d)
	if err != nil {
		return nil, err
	}
	return &Adapter{
		authn:    authn,
		subjects: d.Subjects,
		keys:     d.Keys,
		metrics:  d.Metrics,
		logger:   d.Logger,
	}, nil
}

// Configured reports whether any credential is configured besides tokens.
func (c Config) Configured() bool { return c.Auth.Configured() || len(c.DigestUsers) > 0 }

func (c Config) authenticator(d Deps) (*auth.Authenticator, error) {
	a := c.Auth.Authenticator(d.Bearer)
	a.Throttle, a.Endpoint = d.Throttle, messages.SourceContactPro
	if len(c.DigestUsers) == 0 {
		return a, nil
	}
	if d.Digest == nil {
		return nil, errors.New("contactpro: digest users need the deployment's digest store")
	}
	digest, err := auth.NewDigest(c.DigestUsers, auth.DigestConfig{
		Realm:    "ccrelay",
		NonceTTL: c.DigestNonceTTL,
		MD5:      c.DigestMD5,
		QOP:      c.DigestQOP,
		Key:      d.Digest.Key(),
		Nonces:   d.Digest,
	})
	if err != nil {
		return nil, err
	}
	a.Digest = digest
	return a, nil
}

// Source implements ingest.Adapter.
func (a *Adapter) Source() string { return messages.SourceContactPro }

// Authorize implements ingest.Adapter.
func (a *Adapter) Authorize(r *http.Request) error {
	return ingest.Authorize(a.authn, r)
}

// MaxPathToken bounds the integration and event names of the URL.
const MaxPathToken = 64

// Event implements ingest.Adapter.
func (a *Adapter) Event(_ context.Context, r *http.Request, body []byte, _ time.Time) (*ingest.Accepted, error) {
	// A digest qop=auth-int response covers the body: only now can it
	// be checked (and its nonce count recorded).
	if err := ingest.AuthorizeBody(a.authn, r, body); err != nil {
		return nil, err
	}
	integration, pathEvent := r.PathValue("integration"), r.PathValue("event")
	if len(integration) > MaxPathToken || len(pathEvent) > MaxPathToken || integration == "" {
		return nil, ingest.Errorf(http.StatusBadRequest, ingest.CodeInvalidPath, "integration and event names must be 1 to %d bytes", MaxPathToken)
	}
	call, err := messages.NewContactProCall(integration, pathEvent, r.PathValue("rest"), r.Method, r.URL.Query(), body)
	if err != nil {
		return nil, err
	}
	if call.Integration == messages.IntegrationChatAttachments {
		if _, err := messages.DecodeChatAttachmentsCall(body); err != nil {
			return nil, err
		}
	}
	id := call.DedupID()
	sealed, err := a.sealCredentials(r.Header, messages.CredentialContext(id, body))
	if err != nil {
		return nil, err
	}
	typ := "other"
	if knownEvent(call.Event) {
		typ = call.Event
	}
	return &ingest.Accepted{
		Event: messages.Event{
			Subject: a.subjects.ContactPro(call.Integration, call.Event),
			ID:      id,
			Source:  "/contactpro/" + call.Integration,
			Type:    messages.TypeContactProPrefix + call.Integration + "." + call.Event,
			Body:    body,
			Sealed:  sealed,
			Request: messages.Request{Method: call.Method, Path: call.Path, Query: call.RedactedQuery()},
		},
		Type: typ,
	}, nil
}

// sealCredentials seals the credential headers that are present, or drops
// them when no sealing key is configured (the processor then uses its own).
func (a *Adapter) sealCredentials(h http.Header, context []byte) (string, error) {
	var fields map[string]string
	for _, name := range CredentialHeaders() {
		if v := h.Get(name); v != "" {
			if fields == nil {
				fields = make(map[string]string, 3)
			}
			fields[name] = v
		}
	}
	if fields == nil {
		return "", nil
	}
	if !a.keys.Enabled() {
		a.metrics.Credentials.WithLabelValues(a.Source(), "dropped").Inc()
		a.dropWarned.Do(func() {
			a.logger.Warn("contactpro: credentials sent with a call are dropped because CCRELAY_SEAL_KEYS is not set; processors use their own configured credentials (logged once; ccrelay_ingest_credentials_total{action=\"dropped\"} counts them)")
		})
		return "", nil
	}
	s, err := a.keys.Seal(fields, context)
	if err != nil {
		return "", err
	}
	a.metrics.Credentials.WithLabelValues(a.Source(), "sealed").Inc()
	return s, nil
}
