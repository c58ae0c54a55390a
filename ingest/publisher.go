package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
)

// Publisher stores events in the events stream and waits for JetStream's
// acknowledgement. It is safe for concurrent use.
type Publisher struct {
	js      jetstream.JetStream
	stream  string
	timeout time.Duration
	metrics *Metrics
}

// NewPublisher returns a Publisher for the events stream of subjects. Each
// publish waits at most timeout for its acknowledgement.
func NewPublisher(js jetstream.JetStream, subjects messages.Subjects, timeout time.Duration, m *Metrics) *Publisher {
	return &Publisher{js: js, stream: subjects.EventsStream(), timeout: timeout, metrics: m}
}

// Publish stores ev. A nil error means JetStream acknowledged the write
// (ack.Duplicate says whether it already held the event). An error means the
// event may or may not be stored; the sender must retry, and dedup makes the
// retry harmless.
func (p *Publisher) Publish(ctx context.Context, ev *messages.Event) (*jetstream.PubAck, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	start := time.Now()
	// Expecting the stream by name turns a subject that some other stream
	// captures into an error rather than a silent write elsewhere.
	ack, err := p.js.PublishMsg(ctx, ev.Msg(), jetstream.WithExpectStream(p.stream))
	p.metrics.PublishDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", ev.Subject, err)
	}
	return ack, nil
}

// Ready checks that the events stream answers.
func (p *Publisher) Ready(ctx context.Context) error {
	if _, err := p.js.Stream(ctx, p.stream); err != nil {
		return fmt.Errorf("stream %s: %w", p.stream, err)
	}
	return nil
}
