// Package sinch is the ingest adapter of Sinch Conversation API callbacks:
// POST /v1/sinch/{service}, one webhook secret per messaging service.
package sinch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ccrelay/ccrelay/ingest"
	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/secret"
	"github.com/ccrelay/ccrelay/messages/signature"
)

// Config sets the Sinch adapter. Its env tags are read with the CCRELAY_
// prefix.
type Config struct {
	// WebhookSecrets maps each messaging service, the {service} of the URL,
	// to its webhook secret: "service:secret,service2:secret2".
	WebhookSecrets secret.Credentials `env:"SINCH_WEBHOOK_SECRETS" help:"secret: 'service:secret,service2:secret2', one per messaging service (the {service} of '/v1/sinch/{service}')"`
	// MaxClockSkew is how far a callback's timestamp may be from now. 0
	// turns off the timestamp check. A replay of a captured callback must
	// carry its timestamp, so it arrives within twice this of the
	// original, inside CCRELAY_DEDUP_WINDOW (checked at start): JetStream
	// answers it as the duplicate it is, and no nonce needs a write.
	MaxClockSkew time.Duration `env:"SINCH_MAX_CLOCK_SKEW" envDefault:"5m" help:"accepted timestamp distance; '0' turns the check off. 'CCRELAY_DEDUP_WINDOW' must be at least twice this (checked at start), so a replayed callback is a duplicate"`
}

// Validate checks the fields. Errors name the environment variable.
func (c Config) Validate() error {
	if c.MaxClockSkew < 0 {
		return errors.New("CCRELAY_SINCH_MAX_CLOCK_SKEW: must not be negative")
	}
	for name := range c.WebhookSecrets {
		if len(name) > 64 {
			return fmt.Errorf("CCRELAY_SINCH_WEBHOOK_SECRETS: service name %.16q... is longer than 64 bytes", name)
		}
	}
	return nil
}

// Adapter is the Sinch ingest adapter.
type Adapter struct {
	cfg      Config
	subjects messages.Subjects
}

// New returns the adapter.
func New(cfg Config, subjects messages.Subjects) *Adapter {
	return &Adapter{cfg: cfg, subjects: subjects}
}

// Source implements ingest.Adapter.
func (a *Adapter) Source() string { return messages.SourceSinch }

// challenge is the WWW-Authenticate value of refused callbacks.
var challenge = []string{`Sinch-Signature realm="ccrelay"`}

// Authorize refuses, before the body is read, requests whose signature
// headers could never verify (CheckHeaders). A service with no secret is
// refused in Event, after its body, as a configured service refuses a
// well-formed signature that does not match: refused here, it would answer
// before the body (no "100 Continue") where a configured one reads it, and
// tell a caller which services exist. Its body costs what a configured
// service's does, within the same bounds.
func (a *Adapter) Authorize(r *http.Request) error {
	return CheckHeaders(r.Header, time.Now(), a.cfg.MaxClockSkew)
}

// standInKey stands for the secret of a service that has none, so that
// its signature costs what a configured service's does and the time does
// not tell them apart; what it verifies is refused all the same.
const standInKey = "\x00none is configured for this service"

// VerifyRequest checks a request signed the way Sinch signs its webhooks
// (the algorithm, the HMAC over body, nonce and timestamp, and a timestamp
// within maxSkew of received; 0 skips that check). Errors are 401 answers.
func VerifyRequest(h http.Header, key string, body []byte, received time.Time, maxSkew time.Duration) error {
	if err := CheckHeaders(h, received, maxSkew); err != nil {
		return err
	}
	sig, nonce, ts := h.Get(signature.SinchHeaderSignature), h.Get(signature.SinchHeaderNonce), h.Get(signature.SinchHeaderTimestamp)
	if !signature.SinchVerify(key, body, nonce, ts, sig) {
		return ingest.Unauthorized(ingest.CodeInvalidSignature, msgNoMatch, challenge, nil)
	}
	return nil
}

// Event checks the signature and the timestamp, decodes the callback and
// returns it for storing. A replayed request is byte for byte the
// original, so it has the original's dedup id: stored once, it is answered
// 200 duplicate (see Config.MaxClockSkew).
func (a *Adapter) Event(_ context.Context, r *http.Request, body []byte, received time.Time) (*ingest.Accepted, error) {
	service := r.PathValue("service")
	secret, known := a.cfg.WebhookSecrets[service]
	key := secret.Reveal()
	if !known {
		key = standInKey
	}
	if err := VerifyRequest(r.Header, key, body, received, a.cfg.MaxClockSkew); err != nil {
		return nil, err
	}
	if !known {
		return nil, ingest.Unauthorized(ingest.CodeUnauthorized, "no webhook secret is configured for this service", challenge, nil)
	}

	// Ingest needs the route, not the decoded payload: the processors
	// decode that.
	// The service is in the id and the subject both: the same callback
	// sent to two services is two events, and a body republished on its
	// subject derives its id.
	rt, err := messages.RouteSinchCallback(service, body)
	if err != nil {
		return nil, err
	}

	acc := &ingest.Accepted{
		Event: messages.Event{
			Subject: a.subjects.Sinch(string(rt.Trigger), service, rt.AppID, messages.Partition(rt.Conversation)),
			ID:      rt.ID,
			Source:  "/sinch/" + service,
			Type:    messages.TypeSinchPrefix + strings.ToLower(string(rt.Trigger)),
			Time:    rt.Time,
			IDs:     messages.FormatIDs(messages.IDContact, rt.ContactID, messages.IDConversation, rt.ConversationID),
			Body:    body,
		},
		Type: "other",
	}
	if rt.Known {
		acc.Type = strings.ToLower(string(rt.Trigger))
	}

	return acc, nil
}
