package server

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/ingest"
	"github.com/ccrelay/ccrelay/ingest/auth"
	"github.com/ccrelay/ccrelay/ingest/connect"
	"github.com/ccrelay/ccrelay/ingest/contactpro"
	"github.com/ccrelay/ccrelay/ingest/messaging"
	"github.com/ccrelay/ccrelay/ingest/oauth"
	"github.com/ccrelay/ccrelay/ingest/sinch"
	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/messages/seal"
)

// Settings is everything the ingest side is configured with.
type Settings struct {
	HTTP       Config
	Streams    messages.StreamConfig
	Sinch      sinch.Config
	ContactPro contactpro.Config
	Connect    connect.Config
	Messaging  messaging.Config
	OAuth      oauth.Config
	// Throttle slows down repeated credential failures per client address.
	Throttle auth.ThrottleConfig
	SealKeys seal.KeyRing
}

// Assemble builds the ingest server on js: it makes sure the streams exist
// (waiting with w while JetStream is not ready), and creates the adapters, the token endpoint and
// the metrics (registered with reg). maxPayload is the NATS server's limit,
// which the body limit must fit.
func Assemble(ctx context.Context, w provision.Waiter, st Settings, broker ingest.Broker, maxPayload int64, reg prometheus.Registerer, logger *slog.Logger) (*Server, error) {
	js := broker.JetStream()
	if err := st.HTTP.Validate(maxPayload); err != nil {
		return nil, err
	}
	subjects := st.Streams.Subjects
	if err := messages.EnsureStreams(ctx, w, js, st.Streams); err != nil {
		return nil, err
	}
	throttle, err := auth.NewThrottle(st.Throttle, reg)
	if err != nil {
		return nil, err
	}
	issuer, err := oauth.New(ctx, st.OAuth, throttle, reg, logger)
	if err != nil {
		return nil, err
	}
	digest, err := st.ContactPro.ProvisionDigest(ctx, w, js, st.Streams)
	if err != nil {
		return nil, err
	}
	warnUnconfigured(st, issuer, logger)
	m := ingest.NewMetrics(reg)
	pub := ingest.NewPublisher(broker, subjects, st.HTTP.PublishTimeout, m)
	pipeline := ingest.NewPipeline(ingest.PipelineConfig{
		MaxBodyBytes:          st.HTTP.MaxBodyBytes,
		RetryAfter:            st.HTTP.RetryAfter,
		MaxInFlight:           st.HTTP.MaxInFlight,
		MaxBufferedBytes:      st.HTTP.MaxBufferedBytes,
		MaxInFlightPerAddress: st.HTTP.MaxInFlightPerAddress,
		TrustedProxies:        st.Throttle.TrustedProxies,
		BodyReadTimeout:       st.HTTP.bodyReadTimeout(),
	}, pub, m, logger)
	contactPro, err := contactpro.New(st.ContactPro, contactpro.Deps{
		Bearer: issuer.For(oauth.EndpointContactPro), Throttle: throttle, Digest: digest,
		Keys: st.SealKeys, Subjects: subjects, Metrics: m, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	return New(st.HTTP, Routes{
		Pipeline:   pipeline,
		Sinch:      sinch.New(st.Sinch, subjects),
		ContactPro: contactPro,
		Connect:    connect.New(st.Connect, issuer.For(oauth.EndpointConnect), throttle, subjects),
		Messaging:  messaging.New(st.Messaging, subjects, m, throttle),
		Token:      issuer,
		Ready:      pub,
	}, logger), nil
}

// warnUnconfigured says at start-up, one line per source, which endpoints
// will refuse every request for want of credentials, and which variables
// make them accept some. ccrelay never runs an endpoint open, so without
// this a first run answers 401 everywhere and nothing says why.
func warnUnconfigured(st Settings, tokens *oauth.Issuer, logger *slog.Logger) {
	if len(st.Sinch.WebhookSecrets) == 0 {
		logger.Warn("sinch: no webhook secret configured; POST /v1/sinch/{service} refuses every callback with 401",
			"set", "CCRELAY_SINCH_WEBHOOK_SECRETS=<service>:<secret>", "or", "ccrelay serve --demo")
	}
	if !st.ContactPro.Configured() && !tokens.Grants(oauth.EndpointContactPro) {
		logger.Warn("contactpro: no credentials configured; /v1/contactpro/... refuses every call with 401",
			"set", "CCRELAY_CONTACTPRO_API_KEYS, CCRELAY_CONTACTPRO_BASIC_USERS, CCRELAY_CONTACTPRO_DIGEST_USERS or CCRELAY_OAUTH_CLIENTS", "or", "ccrelay serve --demo")
	}
	if !st.Connect.Auth.Configured() && !tokens.Grants(oauth.EndpointConnect) {
		logger.Warn("connect: no credentials configured; POST /v1/connect/events refuses every event with 401",
			"set", "CCRELAY_CONNECT_API_KEYS, CCRELAY_CONNECT_BASIC_USERS or CCRELAY_OAUTH_CLIENTS", "or", "ccrelay serve --demo")
	}
}
