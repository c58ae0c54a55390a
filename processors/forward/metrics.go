package forward

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors"
)

// metrics are the relay's own series, by destination ("type/service", a
// configured key: bounded).
type metrics struct {
	p        *Processor
	messages *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	oldest   *prometheus.Desc
	held     *prometheus.Desc
	// parks counts conversations parked, by destination and the limit
	// reached (attempts, age).
	parks *prometheus.CounterVec
	// parkedConversations and parkedMessages are read from the relay's
	// view of its bucket.
	parkedConversations *prometheus.Desc
	parkedMessages      *prometheus.Desc
}

func newMetrics(p *Processor) *metrics {
	m := &metrics{
		p: p,
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_forward_messages_total",
			Help: "Deliveries to Contact Pro by destination and outcome: forwarded (2xx), failed (no answer or a retryable one; retried) and rejected (an answer that cannot succeed; dead-lettered).",
		}, []string{"destination", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ccrelay_forward_latency_seconds",
			Help:    "Time from ccrelay receiving an event to Contact Pro accepting it.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}, []string{"destination"}),
		oldest: prometheus.NewDesc("ccrelay_forward_oldest_unsent_age_seconds",
			"Age (since receipt) of the oldest event handed out and not yet taken by Contact Pro, by destination; 0 when none waits.", []string{"destination"}, nil),
		held: prometheus.NewDesc("ccrelay_forward_held_partitions",
			"Partition groups of the destination held by a delivery being retried; the events of the group behind it wait too (until it is parked).", []string{"destination"}, nil),
		parks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_forward_parks_total",
			Help: "Conversations parked (set aside with every later message of theirs, until 'ccrelay relay release' or 'drop'), by destination and the limit reached (attempts, age).",
		}, []string{"destination", "reason"}),
		parkedConversations: prometheus.NewDesc("ccrelay_forward_parked_conversations",
			"Conversations parked now, by destination (whatever their state: parked, releasing, dropping).", []string{"destination"}, nil),
		parkedMessages: prometheus.NewDesc("ccrelay_forward_parked_messages",
			"Messages of parked conversations not yet released or dropped, by destination.", []string{"destination"}, nil),
	}
	for _, key := range p.cfg.URLs.Keys() {
		for _, o := range []string{"forwarded", "failed", "rejected"} {
			m.messages.WithLabelValues(key, o)
		}
		for _, r := range []string{ReasonAttempts, ReasonAge} {
			m.parks.WithLabelValues(key, r)
		}
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.messages, m.latency, m.parks, m}
}

func (m *metrics) outcome(key, outcome string) { m.messages.WithLabelValues(key, outcome).Inc() }

func (m *metrics) delivered(key string, ev *processors.Event) {
	m.outcome(key, "forwarded")
	if at, err := time.Parse(time.RFC3339Nano, ev.Header.Get(messages.HeaderReceivedAt)); err == nil {
		m.latency.WithLabelValues(key).Observe(time.Since(at).Seconds())
	}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.oldest
	ch <- m.held
	ch <- m.parkedConversations
	ch <- m.parkedMessages
}

// Collect reads, from JetStream, the message each destination's partition
// groups hold unanswered, and counts the parked conversations: every
// replica reports the same, cluster-wide figures.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	p := m.p
	oldest, held := map[string]float64{}, map[string]float64{}
	convs, msgs := map[string]float64{}, map[string]float64{}
	for _, key := range p.cfg.URLs.Keys() {
		oldest[key], held[key], convs[key], msgs[key] = 0, 0, 0, 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if st, err := p.env.JS.Stream(ctx, p.env.Subjects.EventsStream()); err == nil {
		now := time.Now()
		for _, c := range p.layout.consumers(p) {
			if _, ok := oldest[c.destination]; ok {
				m.group(ctx, st, c, now, oldest, held)
			}
		}
	}
	for _, c := range p.parked.snapshot() {
		if _, ok := convs[c.Destination]; ok {
			convs[c.Destination]++
			msgs[c.Destination] += float64(c.Waiting())
		}
	}
	for key := range oldest {
		ch <- prometheus.MustNewConstMetric(m.oldest, prometheus.GaugeValue, oldest[key], key)
		ch <- prometheus.MustNewConstMetric(m.held, prometheus.GaugeValue, held[key], key)
		ch <- prometheus.MustNewConstMetric(m.parkedConversations, prometheus.GaugeValue, convs[key], key)
		ch <- prometheus.MustNewConstMetric(m.parkedMessages, prometheus.GaugeValue, msgs[key], key)
	}
}

// group reads the message consumer c holds unanswered, if any.
func (m *metrics) group(ctx context.Context, st jetstream.Stream, c consumerSpec, now time.Time, oldest, held map[string]float64) {
	cons, err := st.Consumer(ctx, c.name)
	if err != nil {
		return
	}
	info := cons.CachedInfo()
	if info.NumAckPending == 0 {
		return
	}
	// One message at a time: the one unanswered is the last delivered.
	raw, err := st.GetMsg(ctx, info.Delivered.Stream)
	if err != nil {
		return
	}
	key := c.destination
	if at, err := time.Parse(time.RFC3339Nano, raw.Header.Get(messages.HeaderReceivedAt)); err == nil {
		oldest[key] = max(oldest[key], now.Sub(at).Seconds())
	}
	if info.NumRedelivered > 0 {
		held[key]++
	}
}
