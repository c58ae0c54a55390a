// Package forward is the relay to Contact Pro: it delivers the inbound
// messages and delivery reports ccrelay stored (Sinch Conversation API
// callbacks and the messaging services' webhooks) to Contact Pro's SMS
// Server, each conversation in order, retrying for as long as the stream
// keeps them while Contact Pro is down.
//
// Order: ingest puts each event's conversation partition token in its
// subject. The processor consumes the partitions through one consumer each
// that hands out one message at a time across all replicas, so the events
// of a conversation reach Contact Pro one after the other, in the order
// they were stored; a conversation held by a retry holds up only its
// partition.
package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nuid"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/signature"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/sinks/egress"
	"github.com/ccrelay/ccrelay/sinks/retry"
)

// Name is the processor's name.
const Name = "forward"

// HeaderEventID names the delivered event to Contact Pro, so a delivery
// can be found in ccrelay's logs from the other side.
const HeaderEventID = "X-Ccrelay-Event-Id"

// Processor delivers stored events to Contact Pro.
type Processor struct {
	cfg     Config
	env     processors.Env
	client  *http.Client
	metrics *metrics
}

// New returns the processor. It creates nothing.
func New(cfg Config, env processors.Env) (*Processor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var hosts []string
	for _, u := range cfg.URLs {
		hosts = append(hosts, u.String())
	}
	p := &Processor{
		cfg: cfg, env: env,
		// Destinations are configured, so their hosts are dialled as
		// configured (Contact Pro often sits on a private network); no
		// caller names a URL here.
		client: env.Egress.Guard(hosts...).Client(cfg.Timeout),
	}
	p.metrics = newMetrics(p)
	env.Registry.MustRegister(p.metrics.collectors()...)
	return p, nil
}

// Enabled reports whether any destination is configured.
func (c Config) Enabled() bool { return len(c.URLs) > 0 }

// Provision has nothing to create: the runtime creates the consumers.
func (p *Processor) Provision(context.Context) error { return nil }

// Processor returns the runtime definition: one serial consumer per
// partition, patient (no delivery limit), with the forward backoff.
func (p *Processor) Processor() processors.Processor {
	parts := make([][]string, p.cfg.Partitions)
	for i := range parts {
		parts[i] = p.filters(messages.PartitionTokens(i, p.cfg.Partitions))
	}
	return processors.Processor{Name: Name, Partitions: parts, Handler: p, Patient: true, Backoff: p.cfg.Backoff}
}

// filters are the subjects of the destinations in the partition tokens:
// only what has somewhere to go is consumed.
func (p *Processor) filters(tokens []string) []string {
	s := p.env.Subjects
	sinch := false
	var out []string
	for _, key := range p.cfg.URLs.Keys() {
		typ, service, _ := strings.Cut(key, "/")
		for _, t := range tokens {
			if typ == SinchType {
				sinch = true
				out = append(out, s.SinchPartitionFilter(service, t))
				continue
			}
			out = append(out, s.Messaging(typ, service, t))
		}
	}
	if sinch {
		// Callbacks stored before Sinch subjects named the service: only
		// their source names it.
		for _, t := range tokens {
			out = append(out, s.SinchLegacyPartitionFilter(t))
		}
	}
	return out
}

// destination returns the key of ev's destination, "<type>/<service>",
// from its subject; "sinch/<service>" of a callback stored before Sinch
// subjects named the service, from its source.
func (p *Processor) destination(ev *processors.Event) (string, error) {
	a, err := p.env.Subjects.Parse(ev.Subject)
	if err != nil {
		return "", err
	}
	switch a.Source {
	case messages.SourceSinch:
		if a.Service != "" {
			return SinchType + "/" + a.Service, nil
		}
		src := ev.Header.Get(messages.HeaderSource)
		service, ok := strings.CutPrefix(src, "/sinch/")
		if !ok || service == "" {
			return "", fmt.Errorf("the event's %s %q names no Sinch service (/sinch/<service>)", messages.HeaderSource, src)
		}
		return SinchType + "/" + service, nil
	case messages.SourceMessaging:
		return a.Kind + "/" + a.Name, nil
	}
	return "", fmt.Errorf("%s events are not relayed", a.Source)
}

// Wants implements processors.Selector: events with a destination.
func (p *Processor) Wants(ev *processors.Event) (bool, string) {
	key, err := p.destination(ev)
	if err != nil {
		return true, "" // Handle dead-letters it, saying why
	}
	if _, ok := p.cfg.URLs[key]; !ok {
		return false, "no forward destination for " + key
	}
	return true, ""
}

// Handle delivers ev to its destination. Contact Pro's 2xx completes it;
// no answer, 408, 425, 429 and 5xx are retried, and so are 401, 403 and 404
// (see configuration); any other answer cannot succeed and dead-letters it
// with the answer.
func (p *Processor) Handle(ctx context.Context, ev *processors.Event) error {
	key, err := p.destination(ev)
	if err != nil {
		return processors.Permanent(err)
	}
	dest, ok := p.cfg.URLs[key]
	if !ok {
		return processors.Ignored("no forward destination for " + key)
	}
	req, err := p.request(ctx, key, dest, ev)
	if err != nil {
		return processors.Permanent(err)
	}
	res, err := p.client.Do(req)
	if err != nil {
		if errors.Is(err, egress.ErrRefused) {
			p.metrics.outcome(key, "rejected")
			return processors.Permanent(fmt.Errorf("deliver to %s: %w", key, err))
		}
		p.metrics.outcome(key, "failed")
		return fmt.Errorf("deliver to %s: %w", key, err)
	}
	defer res.Body.Close()
	snippet := answer(res.Body)
	switch {
	case res.StatusCode >= 200 && res.StatusCode < 300:
		p.metrics.delivered(key, ev)
		return nil
	case retry.TransientStatus(res.StatusCode), configuration(res.StatusCode):
		p.metrics.outcome(key, "failed")
		return fmt.Errorf("%s answered %d: %s", key, res.StatusCode, snippet)
	}
	p.metrics.outcome(key, "rejected")
	return processors.Permanentf("%s answered %d: %s", key, res.StatusCode, snippet)
}

// configuration reports whether an answer says that ccrelay's side is
// configured wrong (the external user, a signing secret, the URL): every
// delivery to the destination would get it, and dead-lettering them all
// would lose their order. They wait, and the alert fires, until an
// operator fixes the configuration.
func configuration(status int) bool {
	return status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusNotFound
}

// request builds the delivery: the stored body byte for byte, its content
// type, the external user, and the provider's signature, made again where
// it binds a time or a URL.
func (p *Processor) request(ctx context.Context, key string, dest *url.URL, ev *processors.Event) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dest.String(), bytes.NewReader(ev.Body))
	if err != nil {
		return nil, err
	}
	ct := ev.Header.Get(messages.HeaderContentType)
	if ct == "" {
		ct = messages.ContentTypeJSON
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set(HeaderEventID, ev.ID)
	if user, pass, ok := p.cfg.BasicUsers.UserPassword(key); ok {
		req.SetBasicAuth(user, pass.Reveal())
	}
	typ, service, _ := strings.Cut(key, "/")
	switch typ {
	case SinchType:
		p.signSinch(req, p.cfg.SinchSecrets[service].Reveal(), ev.Body)
	case messages.MessagingSinchSMS:
		if s, ok := p.cfg.MessagingSecrets[key]; ok {
			p.signSinch(req, s.Reveal(), ev.Body)
		}
	case messages.MessagingTwilio:
		form, err := url.ParseQuery(string(ev.Body))
		if err != nil {
			return nil, fmt.Errorf("stored Twilio body is not form-encoded: %w", err)
		}
		// Twilio signs the URL it calls: this delivery's is Contact Pro's.
		req.Header.Set(signature.HeaderTwilioSignature, signature.TwilioSign(p.cfg.MessagingSecrets[key].Reveal(), dest.String(), form))
	case messages.MessagingFacebook:
		// Meta signs the body only: the original signature still holds.
		for _, h := range []string{signature.HeaderHubSignature256, signature.HeaderHubSignature} {
			if v := ev.Header.Get(h); v != "" {
				req.Header.Set(h, v)
			}
		}
	}
	return req, nil
}

// signSinch signs body for this delivery: a fresh nonce and timestamp, as
// Sinch would sign it now, so Contact Pro's clock check passes however
// long the delivery waited.
func (p *Processor) signSinch(req *http.Request, key string, body []byte) {
	nonce := nuid.Next()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set(signature.SinchHeaderNonce, nonce)
	req.Header.Set(signature.SinchHeaderTimestamp, ts)
	req.Header.Set(signature.SinchHeaderAlgorithm, signature.SinchAlgorithm)
	req.Header.Set(signature.SinchHeaderSignature, signature.SinchSign(key, body, nonce, ts))
}

// answer reads the start of an answer for the error: bounded, printable.
func answer(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<10)) // let the connection be reused
	s := strings.Map(func(c rune) rune {
		if unicode.IsPrint(c) {
			return c
		}
		return ' '
	}, string(b))
	if s == "" {
		return "(empty answer)"
	}
	return s
}

// Check asks each destination for an answer without delivering anything
// (HEAD): it fails when one does not answer, answers 5xx, or refuses the
// external user.
func (p *Processor) Check(ctx context.Context) error {
	if !p.cfg.Enabled() {
		return fmt.Errorf("no CCRELAY_FORWARD_URLS: %w", processors.ErrNotConfigured)
	}
	var errs []error
	for _, key := range p.cfg.URLs.Keys() {
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, p.cfg.URLs[key].String(), nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			continue
		}
		if user, pass, ok := p.cfg.BasicUsers.UserPassword(key); ok {
			req.SetBasicAuth(user, pass.Reveal())
		}
		res, err := p.client.Do(req)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			continue
		}
		_ = res.Body.Close()
		switch {
		case res.StatusCode == http.StatusUnauthorized || res.StatusCode == http.StatusForbidden:
			errs = append(errs, fmt.Errorf("%s: Contact Pro refused the external user (%d); check CCRELAY_FORWARD_BASIC_USERS", key, res.StatusCode))
		case res.StatusCode >= 500:
			errs = append(errs, fmt.Errorf("%s: Contact Pro answered %d", key, res.StatusCode))
		}
	}
	return errors.Join(errs...)
}
