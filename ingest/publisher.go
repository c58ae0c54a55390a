package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/jspub"
)

// Broker is what ingest stores through: the JetStream context of the
// current connection (the broker reopens a connection the server closed,
// so it can change) and whether there is a connection at all.
type Broker interface {
	JetStream() jetstream.JetStream
	// Live fails while there is no usable connection.
	Live() error
}

// Fixed is a Broker on one connection someone else owns (tests, tools).
type Fixed struct {
	JS   jetstream.JetStream
	Conn *nats.Conn
}

// JetStream implements Broker.
func (f Fixed) JetStream() jetstream.JetStream { return f.JS }

// Live implements Broker.
func (f Fixed) Live() error {
	if f.Conn != nil && f.Conn.IsClosed() {
		return errors.New("the NATS connection is closed")
	}
	return nil
}

// Publisher stores events in the events stream and waits for JetStream's
// acknowledgement. It is safe for concurrent use.
type Publisher struct {
	broker  Broker
	stream  string
	timeout time.Duration
	metrics *Metrics
}

// NewPublisher returns a Publisher for the events stream of subjects. Each
// publish waits at most timeout for its acknowledgement.
func NewPublisher(b Broker, subjects messages.Subjects, timeout time.Duration, m *Metrics) *Publisher {
	return &Publisher{broker: b, stream: subjects.EventsStream(), timeout: timeout, metrics: m}
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
	m := ev.Msg()
	m.Header[jetstream.ExpectedStreamHeader] = []string{p.stream}
	ack, err := jspub.Publish(ctx, p.broker.JetStream().Conn(), m)
	p.metrics.PublishDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", ev.Subject, err)
	}
	return ack, nil
}

// Timeout is the bound of one publish (CCRELAY_PUBLISH_TIMEOUT).
func (p *Publisher) Timeout() time.Duration { return p.timeout }

// Ready checks that the events stream answers.
func (p *Publisher) Ready(ctx context.Context) error {
	if _, err := p.broker.JetStream().Stream(ctx, p.stream); err != nil {
		return fmt.Errorf("stream %s: %w", p.stream, err)
	}
	return nil
}

// Live implements server's liveness check.
func (p *Publisher) Live() error { return p.broker.Live() }
