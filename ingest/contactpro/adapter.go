// Package contactpro is the ingest adapter of Sinch Contact Pro event-driven
// integrations: POST /v1/contactpro/{integration}[/{event}], authenticated
// with HTTP basic, an API key header or an OAuth 2.0 bearer token.
package contactpro

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/ccrelay/ccrelay/ingest"
	"github.com/ccrelay/ccrelay/ingest/auth"
	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/seal"
	"github.com/ccrelay/ccrelay/messages/secret"
)

// Config sets the Contact Pro adapter. Its env tags are read with the
// CCRELAY_ prefix.
type Config struct {
	// Auth: CCRELAY_CONTACTPRO_API_KEYS, _API_KEY_HEADER, _BASIC_USERS.
	Auth auth.Settings `envPrefix:"CONTACTPRO_"`
	// DigestUsers are accepted with HTTP digest (RFC 7616, MD5 or SHA-256,
	// qop=auth), Contact Pro's "digest:<user>" authentication:
	// "user:password,...".
	DigestUsers secret.Credentials `env:"CONTACTPRO_DIGEST_USERS" help:"secret: 'user:password,...' accepted with HTTP digest (RFC 7616)"`
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

// New returns the adapter. bearer may be nil.
func New(cfg Config, bearer auth.TokenVerifier, keys seal.KeyRing, subjects messages.Subjects, m *ingest.Metrics, logger *slog.Logger) *Adapter {
	return &Adapter{
		authn:    cfg.authenticator(bearer),
		subjects: subjects,
		keys:     keys,
		metrics:  m,
		logger:   logger,
	}
}

// Configured reports whether any credential is configured besides tokens.
func (c Config) Configured() bool { return c.Auth.Configured() || len(c.DigestUsers) > 0 }

func (c Config) authenticator(bearer auth.TokenVerifier) *auth.Authenticator {
	a := c.Auth.Authenticator(bearer)
	a.Digest = auth.NewDigest(c.DigestUsers, "ccrelay")
	return a
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
