// Package forward is the relay to Contact Pro: it delivers the inbound
// messages and delivery reports ccrelay stored (Sinch Conversation API
// callbacks and the messaging services' webhooks) to Contact Pro's SMS
// Server, each conversation in order, retrying for as long as the stream
// keeps them while Contact Pro is down.
//
// Order: ingest puts each event's conversation partition token in its
// subject. The processor consumes each destination's partitions through
// consumers of their own (one per destination and partition group) that
// hand out one message at a time across all replicas, so the events of a
// conversation reach Contact Pro one after the other, in the order they
// were stored; a conversation held by a retry holds up only its group of
// its destination, and only within a bound (CCRELAY_FORWARD_PARK_AFTER):
// beyond it the conversation is parked (package parking) and the group
// goes on.
//
// Guarantee: once (the ledger), with the claim confirmed right before each
// delivery: Contact Pro takes every POST as a new message, so a repeat
// reaches the agent twice. A delivery that may have happened (no answer,
// a worker that died after confirming) is marked when made again
// (X-Ccrelay-Maybe-Delivered).
package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/signature"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/forward/parking"
	"github.com/ccrelay/ccrelay/sinks/egress"
	"github.com/ccrelay/ccrelay/sinks/retry"
)

// Name is the processor's name.
const Name = "forward"

// HeaderEventID names the delivered event to Contact Pro, so a delivery
// can be found in ccrelay's logs from the other side.
const HeaderEventID = "X-Ccrelay-Event-Id"

// HeaderMaybeDelivered is set ("true") on a delivery that may repeat an
// earlier one: the replica that sent it first stopped before it could
// record Contact Pro's answer. Contact Pro cannot be asked whether it has
// a message, so the relay delivers it again rather than risk losing it,
// and says so; a receiver that keeps the event ids it has seen
// (HeaderEventID) can drop the repeat.
const HeaderMaybeDelivered = "X-Ccrelay-Maybe-Delivered"

// Processor delivers stored events to Contact Pro.
type Processor struct {
	cfg     Config
	env     processors.Env
	client  *http.Client
	metrics *metrics
	logger  *slog.Logger
	// store and layout are set by Provision; before it, nothing is
	// parked and the layout is the default one.
	store  *parking.Store
	layout layout
	heads  *heads
	// parked is every parked conversation, as the relay's bucket is
	// watched (Background): what the metrics count and the release
	// starts from.
	parked *watched
	// owner names this replica as the one releasing a conversation.
	owner string
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
	logger := env.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	p := &Processor{
		cfg: cfg, env: env,
		// Destinations are configured, so their hosts are dialled as
		// configured (Contact Pro often sits on a private network); no
		// caller names a URL here.
		client: env.Egress.Guard(hosts...).Client(cfg.Timeout),
		logger: logger.With("processor", Name),
		heads:  &heads{m: map[string]head{}},
		parked: &watched{m: map[string]*parking.Conversation{}},
		owner:  fmt.Sprintf("%s/%d/%s", host, os.Getpid(), nuid.Next()[:8]),
	}
	p.layout = p.defaultLayout()
	p.metrics = newMetrics(p)
	env.Registry.MustRegister(p.metrics.collectors()...)
	return p, nil
}

// Enabled reports whether any destination is configured.
func (c Config) Enabled() bool { return len(c.URLs) > 0 }

// Provision creates the relay's bucket and the stream of parked messages,
// then places its consumers (one per destination and partition group):
// those that do not exist yet start where the consumers that served their
// subjects had got to. It runs before the runtime binds them.
func (p *Processor) Provision(ctx context.Context) error {
	store, err := parking.Provision(ctx, p.env.Waiter, p.env.JS, parking.Config{Subjects: p.env.Subjects, Replicas: p.env.Replicas})
	if err != nil {
		return err
	}
	var l layout
	err = p.env.Waiter.Do(ctx, "the relay's consumers' order", func(ctx context.Context) (err error) {
		l, err = p.loadLayout(ctx, store)
		return err
	})
	if err != nil {
		return err
	}
	plan := map[string]uint64{}
	if err := p.env.Waiter.Do(ctx, "the relay's consumers", func(ctx context.Context) error { return p.placeConsumers(ctx, l, plan) }); err != nil {
		return err
	}
	p.store, p.layout = store, l
	return nil
}

// Processor returns the runtime definition: one serial consumer per
// destination and partition group, patient (no delivery limit), with the
// forward backoff; and, in the background, the release of the
// conversations an operator released.
func (p *Processor) Processor() processors.Processor {
	var parts [][]string
	for _, c := range p.layout.consumers(p) {
		parts = append(parts, c.filters)
	}
	proc := processors.Processor{Name: Name, Partitions: parts, Handler: p, Guarantee: processors.Once, Patient: true, Backoff: p.cfg.Backoff, Confirms: true}
	if p.store != nil {
		proc.Background = p.releases
	}
	return proc
}

// ErrDisagrees is wrapped by the refusal of an event whose headers
// disagree with its subject, or hold a value no outgoing header may carry.
// Ingest verified the subject (the route and the provider's signature):
// a header that says otherwise was written by someone else, typically a
// republish by hand, and would pick another destination, secret or
// content type than the one verified. No retry can change it, so it is
// permanent.
var ErrDisagrees = errors.New("the event's headers disagree with its subject")

// maxEventID bounds the ce-id the relay passes on. Every id ingest derives
// for the relay is far shorter (the longest, a Sinch delivery report, is
// three ids of at most messages.MaxIDBytes and the service); a longer one
// was not written by ingest, and Contact Pro's header limits would refuse
// it on every attempt.
const maxEventID = 1024

// route is where an event goes and how, derived from its subject: the
// only values the delivery is built from, and what its headers must agree
// with.
type route struct {
	addr        messages.Address
	key         string // "<type>/<service>"
	contentType string
	source      string // ce-source
	typ         string // ce-type, or its prefix for messaging webhooks
	typPrefix   bool
	idPrefix    string // ce-id's
}

// destination derives ev's route from its subject: destination
// "<type>/<service>" and the content type ingest accepted for that type
// (Twilio's form, JSON for the others); a Sinch callback stored before
// Sinch subjects named the service goes by its ce-source.
func (p *Processor) destination(ev *processors.Event) (route, error) {
	a, err := p.env.Subjects.Parse(ev.Subject)
	if err != nil {
		return route{}, err
	}
	switch a.Source {
	case messages.SourceSinch:
		service := a.Service
		if service == "" {
			src := ev.Header.Get(messages.HeaderSource)
			s, ok := strings.CutPrefix(src, "/sinch/")
			if !ok || s == "" {
				return route{}, fmt.Errorf("the event's %s %q names no Sinch service (/sinch/<service>)", messages.HeaderSource, src)
			}
			service = s
		}
		return route{addr: a, key: SinchType + "/" + service, contentType: messages.ContentTypeJSON,
			source: "/sinch/" + service, typ: messages.TypeSinchPrefix + a.Kind, idPrefix: "sinch:"}, nil
	case messages.SourceMessaging:
		r := route{addr: a, key: a.Kind + "/" + a.Name, contentType: messages.ContentTypeJSON,
			source: "/messaging/" + a.Kind + "/" + a.Name, typ: messages.TypeMessagingPrefix + a.Kind + ".", typPrefix: true,
			idPrefix: messages.SourceMessaging + ":" + a.Kind + ":"}
		if a.Kind == messages.MessagingTwilio {
			r.contentType = messages.ContentTypeForm
		}
		return r, nil
	}
	return route{}, fmt.Errorf("%s events are not relayed", a.Source)
}

// check refuses (wrapping ErrDisagrees) an event whose ce-source, ce-type,
// ce-id or Content-Type say otherwise than its route, so a body republished
// bare is delivered exactly as the original and no header can redirect or
// re-sign it.
func (r route) check(ev *processors.Event) error {
	h := ev.Header
	if v, ok := header(h, messages.HeaderSource); ok && v != r.source {
		return fmt.Errorf("%w: %s %q, the subject's service is %s", ErrDisagrees, messages.HeaderSource, v, r.source)
	}
	if v, ok := header(h, messages.HeaderType); ok && v != r.typ && !(r.typPrefix && strings.HasPrefix(v, r.typ)) {
		return fmt.Errorf("%w: %s %q, the subject's is %s", ErrDisagrees, messages.HeaderType, v, r.typ)
	}
	if v, ok := header(h, messages.HeaderContentType); ok {
		if mt, _, err := mime.ParseMediaType(v); err != nil || mt != r.contentType {
			typ, _, _ := strings.Cut(r.key, "/")
			return fmt.Errorf("%w: Content-Type %q, %s events are %s", ErrDisagrees, v, typ, r.contentType)
		}
	}
	return checkEventID(ev.ID, r.idPrefix)
}

// header returns h's only value of key. A key given twice is returned as
// its values joined, which no check accepts: two values would leave it to
// chance which one a reader takes.
func header(h nats.Header, key string) (string, bool) {
	vs := h.Values(key)
	switch len(vs) {
	case 0:
		return "", false
	case 1:
		return vs[0], true
	}
	return strings.Join(vs, ", "), true
}

// checkEventID refuses an id ingest cannot have written for the subject:
// another source's prefix, control characters or invalid UTF-8 (net/http
// refuses such a header value on every attempt), or over maxEventID bytes.
func checkEventID(id, prefix string) error {
	switch {
	case len(id) > maxEventID:
		return fmt.Errorf("%w: %s is %d bytes long, more than %d", ErrDisagrees, messages.HeaderID, len(id), maxEventID)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrDisagrees, messages.HeaderID)
	case strings.ContainsFunc(id, func(c rune) bool { return c < 0x20 || c == 0x7f }):
		return fmt.Errorf("%w: %s %q holds a control character", ErrDisagrees, messages.HeaderID, id)
	case !strings.HasPrefix(id, prefix):
		return fmt.Errorf("%w: %s %q, the subject's ids start %q", ErrDisagrees, messages.HeaderID, id, prefix)
	}
	return nil
}

// Wants implements processors.Selector: events with a destination.
func (p *Processor) Wants(ev *processors.Event) (bool, string) {
	r, err := p.destination(ev)
	if err != nil {
		return true, "" // Handle dead-letters it, saying why
	}
	if _, ok := p.cfg.URLs[r.key]; !ok {
		return false, "no forward destination for " + r.key
	}
	return true, ""
}

// Handle delivers ev to its destination. Contact Pro's 2xx completes it;
// no answer, 408, 425, 429 and 5xx are retried, and so are 401, 403 and 404
// (see configuration); any other answer cannot succeed and dead-letters it
// with the answer. A message of a parked conversation is parked behind it
// without an attempt; a message that fails beyond its destination's bound
// parks its conversation (see maybePark).
func (p *Processor) Handle(ctx context.Context, ev *processors.Event) error {
	r, err := p.destination(ev)
	if err == nil {
		err = r.check(ev)
	}
	if err != nil {
		return processors.Permanent(err)
	}
	key := r.key
	dest, ok := p.cfg.URLs[key]
	if !ok {
		return processors.Ignored("no forward destination for " + key)
	}
	var conv *parking.Conversation
	if p.store != nil {
		conv = p.conversation(r, ev)
		if err := p.parkBehind(ctx, conv, ev); err != nil {
			return err
		}
	}
	err = p.send(ctx, r, dest, ev)
	if err == nil || errors.Is(err, processors.ErrPermanent) || conv == nil {
		p.heads.settled(r, ev)
		return err
	}
	return p.maybePark(ctx, r, dest, conv, ev, err)
}

// send makes one delivery of ev to dest: nil when Contact Pro took it, a
// permanent error when no retry can succeed, else the transient failure.
func (p *Processor) send(ctx context.Context, r route, dest *url.URL, ev *processors.Event) error {
	key := r.key
	req, err := p.request(ctx, r, dest, ev)
	if err != nil {
		return processors.Permanent(err)
	}
	if ev.MaybeDone {
		req.Header.Set(HeaderMaybeDelivered, "true")
	}
	// The last moment to find that another replica has this message: this
	// one was paused, or cut off from NATS, past its claim's life.
	if err := processors.Confirm(ctx); err != nil {
		return fmt.Errorf("deliver to %s: %w", key, err)
	}
	res, err := p.client.Do(req)
	if err != nil {
		if errors.Is(err, egress.ErrRefused) {
			p.metrics.outcome(key, "rejected")
			return processors.Permanent(fmt.Errorf("deliver to %s: %w", key, err))
		}
		p.metrics.outcome(key, "failed")
		if dialFailed(err) {
			return fmt.Errorf("deliver to %s: %w", key, err)
		}
		// Sent, perhaps, and no answer read: Contact Pro may have it.
		return fmt.Errorf("deliver to %s: %w: %w", key, processors.ErrMaybeDone, err)
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

// dialFailed reports whether a request failed before it reached Contact
// Pro: no connection was made, so nothing was delivered.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// configuration reports whether an answer says that ccrelay's side is
// configured wrong (the external user, a signing secret, the URL): every
// delivery to the destination would get it, and dead-lettering them all
// would lose their order. They wait, and the alert fires, until an
// operator fixes the configuration.
func configuration(status int) bool {
	return status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusNotFound
}

// request builds the delivery: the stored body byte for byte, the content
// type of its route, the external user, and the provider's signature, made
// again where it binds a time or a URL. Every header is built from the
// route or checked here: none is copied from the stored message unchecked.
func (p *Processor) request(ctx context.Context, r route, dest *url.URL, ev *processors.Event) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dest.String(), bytes.NewReader(ev.Body))
	if err != nil {
		return nil, err
	}
	key := r.key
	req.Header.Set("Content-Type", r.contentType)
	req.Header.Set(HeaderEventID, ev.ID) // checked
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
		if err := p.signHub(req, key, ev); err != nil {
			return nil, err
		}
	}
	if err := sendable(req.Header); err != nil {
		return nil, err
	}
	return req, nil
}

// sendable refuses (wrapping ErrDisagrees) a request net/http would refuse
// to send, on every attempt, for a header value: each value above is built
// or checked to be valid, and this keeps one that is not (a check
// forgotten in a later change) from being retried as if Contact Pro had
// failed.
func sendable(h http.Header) error {
	for k, vs := range h {
		for _, v := range vs {
			// net/http's rule (httpguts.ValidHeaderFieldValue): no
			// control character but a tab.
			if strings.ContainsFunc(v, func(c rune) bool { return c < 0x20 && c != '\t' || c == 0x7f }) {
				return fmt.Errorf("%w: header %s holds a control character, which no HTTP request can carry", ErrDisagrees, k)
			}
		}
	}
	return nil
}

// signHub sets Meta's signatures. Meta signs the body only, with the app
// secret ingest verified it with: with that secret the relay signs the body
// again, which gives Meta's own X-Hub-Signature-256, so a body republished
// bare is signed as the original was. The stored signatures are passed on
// only in their one well-formed spelling, and a stored X-Hub-Signature-256
// that is malformed, or does not match the body with the secret, is
// refused: ingest verified it, so the body or the header is not Meta's.
func (p *Processor) signHub(req *http.Request, key string, ev *processors.Event) error {
	stored, hasStored := header(ev.Header, signature.HeaderHubSignature256)
	if hasStored && !signature.HubWellFormed(stored) {
		return fmt.Errorf("%w: %s is not sha256= and 64 hex digits", ErrDisagrees, signature.HeaderHubSignature256)
	}
	// Ingest keeps Meta's older SHA-1 signature unverified (it has no
	// part in ingest's check): one in another shape is left out, not
	// refused.
	if old, ok := header(ev.Header, signature.HeaderHubSignature); ok && hubSHA1WellFormed(old) {
		req.Header.Set(signature.HeaderHubSignature, old)
	}
	if s, ok := p.cfg.MessagingSecrets[key]; ok {
		if hasStored && !signature.HubVerify(s.Reveal(), ev.Body, stored) {
			return fmt.Errorf("%w: the stored %s does not match the body", ErrDisagrees, signature.HeaderHubSignature256)
		}
		req.Header.Set(signature.HeaderHubSignature256, signature.HubSign(s.Reveal(), ev.Body))
		return nil
	}
	if hasStored {
		req.Header.Set(signature.HeaderHubSignature256, stored)
	}
	return nil
}

// hubSHA1WellFormed reports whether v is "sha1=" and 40 lower-case hex
// digits, Meta's older signature.
func hubSHA1WellFormed(v string) bool {
	h, ok := strings.CutPrefix(v, "sha1=")
	if !ok || len(h) != 40 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
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
