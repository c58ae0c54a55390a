package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/ccrelay/ccrelay/ingest/auth"
	"github.com/ccrelay/ccrelay/messages"
)

// Adapter turns the requests of one source into events.
type Adapter interface {
	// Source names the adapter in metrics and logs (messages.SourceSinch, ...).
	Source() string
	// Authorize checks what can be checked before the body is read, so an
	// unauthenticated client cannot make ingest read a body. An adapter
	// whose check needs the body (a signature) does it in Event.
	Authorize(r *http.Request) error
	// Event verifies and decodes body and returns what to store. Errors are
	// *Error values, or wrap messages.ErrInvalidPayload.
	Event(ctx context.Context, r *http.Request, body []byte, received time.Time) (*Accepted, error)
}

// Rules are what an adapter accepts besides a POST with a body. Senders that
// are configured rather than programmed (Contact Pro's integrations) may use
// any method and send no body.
type Rules struct {
	// Methods accepted; POST when empty.
	Methods []string
	// EmptyBody accepts a request without a body (and then without a
	// Content-Type).
	EmptyBody bool
	// ContentTypes are the media types accepted; application/json when
	// empty. The adapter may narrow them per request.
	ContentTypes []string
}

// RuleSetter is implemented by adapters with other Rules than POST with a
// JSON body.
type RuleSetter interface {
	Rules() Rules
}

// Accepted is an event an adapter accepted for storing.
type Accepted struct {
	Event messages.Event
	// Type is the bounded metrics label of the event (a known trigger or
	// event name, or "other").
	Type string
}

// Response is the body of a 2xx answer.
type Response struct {
	ID        string `json:"id"`
	Subject   string `json:"subject"`
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

// HeaderDuplicate is set to "true" on the answer to an event JetStream
// already held, "false" otherwise.
const HeaderDuplicate = "Ccrelay-Duplicate"

// PipelineConfig sets the request pipeline.
type PipelineConfig struct {
	// MaxBodyBytes is the largest body accepted; larger ones get 413.
	MaxBodyBytes int64
	// RetryAfter is sent with 503 answers.
	RetryAfter time.Duration
	// MaxInFlight bounds the requests handled at once, and
	// MaxBufferedBytes the body bytes they reserve at once (each its
	// Content-Length, MaxBodyBytes when unknown). A request beyond either
	// is answered 503 before its body is read. Values below one request
	// with one body are raised to that.
	MaxInFlight      int
	MaxBufferedBytes int64
	// MaxInFlightPerAddress bounds the requests of one client address
	// (TrustedProxies.Client) among MaxInFlight, so that one address
	// cannot take them all; beyond it, 503 before the body is read. 0, or
	// more than MaxInFlight, is MaxInFlight.
	MaxInFlightPerAddress int
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// address, as for the failure throttle.
	TrustedProxies auth.Proxies
	// BodyReadTimeout is how long a request's body may take to arrive
	// once its headers passed every check; a body that has not, is
	// answered 408 and its slot freed. 0 leaves it to net/http's
	// ReadTimeout, which counts from the request's first byte.
	BodyReadTimeout time.Duration
}

// Pipeline runs every adapter's requests through the same steps: bounds,
// method, authorization, content type, body limit, decode, publish,
// answer.
type Pipeline struct {
	cfg     PipelineConfig
	pub     *Publisher
	metrics *Metrics
	logger  *slog.Logger
	gate    *gate
	// bufs holds *[]byte of at most smallBody capacity.
	bufs sync.Pool
}

// NewPipeline returns a Pipeline publishing with pub.
func NewPipeline(cfg PipelineConfig, pub *Publisher, m *Metrics, logger *slog.Logger) *Pipeline {
	return &Pipeline{
		cfg:     cfg,
		pub:     pub,
		metrics: m,
		logger:  logger,
		gate:    newGate(cfg.MaxInFlight, cfg.MaxInFlightPerAddress, cfg.MaxBufferedBytes, cfg.MaxBodyBytes, m),
		bufs:    sync.Pool{New: func() any { return new([]byte) }},
	}
}

// Handler returns the HTTP handler of adapter a.
func (p *Pipeline) Handler(a Adapter) http.Handler {
	// The adapter's rules are fixed: read them once, not per request.
	rules := Rules{Methods: []string{http.MethodPost}}
	if rs, ok := a.(RuleSetter); ok {
		rules = rs.Rules()
	}
	if len(rules.ContentTypes) == 0 {
		rules.ContentTypes = []string{messages.ContentTypeJSON}
	}
	source := a.Source()
	duration := p.metrics.Duration.WithLabelValues(source)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		reqID := requestID(r)
		w.Header().Set("X-Request-Id", reqID)
		outcome, attrs := p.serve(w, r, a, rules, start)
		duration.Observe(time.Since(start).Seconds())
		p.metrics.Requests.WithLabelValues(source, outcome).Inc()

		level := slog.LevelDebug
		switch {
		case outcome == CodeUnavailable || outcome == CodeInternal:
			level = slog.LevelError
		case outcome != "stored" && outcome != "duplicate":
			level = slog.LevelInfo
		}
		if p.logger.Enabled(r.Context(), level) {
			attrs = append(attrs,
				slog.String("source", source),
				slog.String("outcome", outcome),
				slog.String("request_id", reqID),
				slog.String("remote", r.RemoteAddr),
				slog.Duration("duration", time.Since(start)),
			)
			if tp := r.Header.Get(messages.HeaderTraceparent); messages.ValidTraceparent(tp) {
				attrs = append(attrs, slog.String("trace_id", tp[3:35]))
			}
			p.logger.LogAttrs(r.Context(), level, "ingest request", attrs...)
		}
	})
}

// serve handles one request and returns its outcome label and log fields.
// Nothing before the body is read waits on the sender: a request that
// fails a check of its headers, or finds a bound reached, is answered at
// once, without its body.
func (p *Pipeline) serve(w http.ResponseWriter, r *http.Request, a Adapter, rules Rules, start time.Time) (string, []slog.Attr) {
	read := false
	fail := func(e *Error, attrs ...slog.Attr) (string, []slog.Attr) {
		if e.Status == http.StatusServiceUnavailable && e.RetryAfter == 0 {
			e.RetryAfter = p.cfg.RetryAfter
		}
		if !read {
			CloseUnread(w, r)
		}
		WriteError(w, e)
		if e.Err != nil {
			attrs = append(attrs, slog.String("error", e.Err.Error()))
		}
		return e.Code, append(attrs, slog.String("reason", e.Message))
	}
	client := p.cfg.TrustedProxies.Client(r)
	if reason := p.gate.enter(client); reason != "" {
		return fail(p.shed(reason))
	}
	// A publish abandoned at its deadline still holds its slot, its
	// reservation and its body until it returns (see publish): handedOff
	// passes their release to it.
	handedOff := false
	defer func() {
		if !handedOff {
			p.gate.leave(client)
		}
	}()
	if !slices.Contains(rules.Methods, r.Method) {
		w.Header().Set("Allow", strings.Join(rules.Methods, ", "))
		return fail(Errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "use %s", strings.Join(rules.Methods, " or ")))
	}
	// What a request waits for from NATS (a digest's nonce count, the
	// publish) shares one budget, the publish timeout, so that a sender
	// has its answer within it whatever the cluster does. The body's read
	// is bounded apart, and is not counted.
	left := p.pub.Timeout()
	spend := func(since time.Time) { left = max(left-time.Since(since), time.Millisecond) }
	actx, acancel := context.WithTimeout(r.Context(), left)
	authStart := time.Now()
	ar := r.WithContext(actx)
	err := a.Authorize(ar)
	acancel()
	spend(authStart)
	// Authorize may leave work to the body on the request it was given (a
	// Digest qop=auth-int response is checked against the body as read):
	// go on with that request, on the request's own context.
	r = ar.WithContext(r.Context())
	if err != nil {
		return fail(AsError(err))
	}
	ct := r.Header.Get("Content-Type")
	if ct != "" || !rules.EmptyBody {
		if err := CheckContentType(ct, rules.ContentTypes...); err != nil {
			return fail(err)
		}
	}
	if r.ContentLength > p.cfg.MaxBodyBytes {
		return fail(tooLarge(p.cfg.MaxBodyBytes))
	}
	reserved := reservation(r, p.cfg.MaxBodyBytes)
	if reason := p.gate.reserve(client, reserved); reason != "" {
		return fail(p.shed(reason))
	}
	defer func() {
		if !handedOff {
			p.gate.release(client, reserved)
		}
	}()

	bodyIn := p.startBody(w)
	body, pooled, err := p.readBody(r, p.cfg.MaxBodyBytes)
	// The publish below has copied the body by the time serve returns.
	defer func() {
		if !handedOff {
			p.putBody(pooled, body)
		}
	}()
	if err != nil {
		switch {
		case errors.Is(err, errTooLarge):
			return fail(tooLarge(p.cfg.MaxBodyBytes))
		case IsTimeout(err):
			return fail(p.bodyTimeout(err))
		}
		return fail(&Error{Status: http.StatusBadRequest, Code: CodeInvalidPayload, Message: "could not read the request body", Err: err})
	}
	bodyIn()
	read = true
	switch {
	case len(body) == 0 && !rules.EmptyBody:
		return fail(Errorf(http.StatusBadRequest, CodeInvalidPayload, "the request body is empty"))
	case len(body) > 0 && ct == "":
		return fail(CheckContentType(ct, rules.ContentTypes...))
	case !utf8.Valid(body):
		// JSON is UTF-8 (RFC 8259 §8.1); encoding/json would quietly
		// replace invalid bytes, so the values ccrelay reads would not be
		// the ones stored.
		return fail(Errorf(http.StatusBadRequest, CodeInvalidPayload, "the body is not valid UTF-8"))
	}

	ectx, ecancel := context.WithTimeout(r.Context(), left)
	eventStart := time.Now()
	acc, err := a.Event(ectx, r.WithContext(ectx), body, start)
	ecancel()
	spend(eventStart)
	if err != nil {
		if errors.Is(err, messages.ErrInvalidPayload) {
			return fail(BadPayload(err))
		}
		return fail(AsError(err))
	}
	ev := &acc.Event
	ev.ReceivedAt = start
	if ev.Time.IsZero() {
		ev.Time = start
	}
	if tp := r.Header.Get(messages.HeaderTraceparent); messages.ValidTraceparent(tp) {
		ev.Traceparent = tp
	}
	attrs := []slog.Attr{slog.String("dedup_id", ev.ID), slog.String("subject", ev.Subject)}

	ack, abandoned, err := p.publish(r.Context(), ev, left, func() {
		p.putBody(pooled, body)
		p.gate.release(client, reserved)
		p.gate.leave(client)
	})
	handedOff = abandoned
	if err != nil {
		return fail(&Error{
			Status:     http.StatusServiceUnavailable,
			Code:       CodeUnavailable,
			Message:    "the event could not be stored; retry later",
			RetryAfter: p.cfg.RetryAfter,
			Err:        err,
		}, attrs...)
	}

	attrs = append(attrs, slog.Uint64("seq", ack.Sequence), slog.Bool("duplicate", ack.Duplicate))
	status, outcome := http.StatusAccepted, "stored"
	if ack.Duplicate {
		status, outcome = http.StatusOK, "duplicate"
		p.metrics.Duplicates.WithLabelValues(a.Source()).Inc()
	} else {
		p.metrics.Published.WithLabelValues(a.Source(), acc.Type).Inc()
	}
	w.Header().Set(HeaderDuplicate, strconv.FormatBool(ack.Duplicate))
	writeResponse(w, status, Response{ID: ev.ID, Subject: ev.Subject, Stream: ack.Stream, Seq: ack.Sequence, Duplicate: ack.Duplicate})
	return outcome, attrs
}

// publish stores ev within budget. nats.go holds its connection's lock
// while it tries to reconnect, up to its connect timeout per server, and a
// publish waits for the lock whatever its context says: with the cluster
// hung, answers came seconds after the publish timeout. The publish runs
// apart and is abandoned at the deadline: the sender has its 503 in time,
// and the publish ends when the lock comes free (the event may still be
// stored; the sender's retry is then a duplicate). Until then it keeps
// what the request held, released by its release, so the ingest bounds
// (requests in flight, buffered bytes) count it.
func (p *Pipeline) publish(ctx context.Context, ev *messages.Event, budget time.Duration, release func()) (ack *jetstream.PubAck, abandoned bool, err error) {
	// The publish must not be cut short by a client that hangs up: the
	// event may be half-way into JetStream, and an outcome decided there
	// (stored, and the sender's retry a duplicate) beats an abandoned one.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), budget)
	type result struct {
		ack *jetstream.PubAck
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer cancel()
		a, err := p.pub.Publish(pctx, ev)
		done <- result{a, err}
	}()
	select {
	case r := <-done:
		return r.ack, false, r.err
	case <-pctx.Done():
	}
	// The result may have come with the deadline.
	select {
	case r := <-done:
		return r.ack, false, r.err
	default:
	}
	p.metrics.PublishAbandoned.Inc()
	go func() {
		<-done
		release()
	}()
	return nil, true, fmt.Errorf("publish %s: %w", ev.Subject, context.DeadlineExceeded)
}

func tooLarge(limit int64) *Error {
	return Errorf(http.StatusRequestEntityTooLarge, CodePayloadTooLarge, "the body is larger than %d bytes", limit)
}

// CheckContentType checks that ct is one of the media types accepted
// (application/json when none is given), in UTF-8.
func CheckContentType(ct string, accepted ...string) *Error {
	if len(accepted) == 0 {
		accepted = []string{messages.ContentTypeJSON}
	}
	want := strings.Join(accepted, " or ")
	if ct == "" {
		return Errorf(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Type is missing; send %s", want)
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || !slices.Contains(accepted, mt) {
		return Errorf(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Type must be %s", want)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return Errorf(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "only the utf-8 charset is accepted")
	}
	return nil
}

// requestID returns the client's X-Request-Id when it is a sane token, so
// logs can be joined with the sender's, or a new unique id.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 64 {
		ok := true
		for i := 0; i < len(id); i++ {
			c := id[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
				ok = false
				break
			}
		}
		if ok {
			return id
		}
	}
	return nuid.Next()
}
