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
			"Conversation partitions held by a delivery being retried, by the destination it waits for; the events behind it wait too.", []string{"destination"}, nil),
	}
	for _, key := range p.cfg.URLs.Keys() {
		for _, o := range []string{"forwarded", "failed", "rejected"} {
			m.messages.WithLabelValues(key, o)
		}
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.messages, m.latency, m}
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
}

// Collect reads, from JetStream, the message each partition holds
// unanswered: every replica reports the same, cluster-wide figures.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	p := m.p
	oldest, held := map[string]float64{}, map[string]float64{}
	for _, key := range p.cfg.URLs.Keys() {
		oldest[key], held[key] = 0, 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if st, err := p.env.JS.Stream(ctx, p.env.Subjects.EventsStream()); err == nil {
		now := time.Now()
		for i := 0; i < p.cfg.Partitions; i++ {
			m.partition(ctx, st, i, now, oldest, held)
		}
	}
	for key, v := range oldest {
		ch <- prometheus.MustNewConstMetric(m.oldest, prometheus.GaugeValue, v, key)
	}
	for key, v := range held {
		ch <- prometheus.MustNewConstMetric(m.held, prometheus.GaugeValue, v, key)
	}
}

func (m *metrics) partition(ctx context.Context, st jetstream.Stream, i int, now time.Time, oldest, held map[string]float64) {
	p := m.p
	cons, err := st.Consumer(ctx, processors.PartitionConsumerName(p.env.Subjects, Name, i))
	if err != nil {
		return
	}
	info, err := cons.Info(ctx)
	if err != nil || info.NumAckPending == 0 {
		return
	}
	// One message at a time: the one unanswered is the last delivered.
	raw, err := st.GetMsg(ctx, info.Delivered.Stream)
	if err != nil {
		return
	}
	r, err := p.destination(&processors.Event{Subject: raw.Subject, Header: raw.Header})
	key := r.key
	if _, ok := oldest[key]; err != nil || !ok {
		return
	}
	if at, err := time.Parse(time.RFC3339Nano, raw.Header.Get(messages.HeaderReceivedAt)); err == nil {
		oldest[key] = max(oldest[key], now.Sub(at).Seconds())
	}
	if info.NumRedelivered > 0 {
		held[key]++
	}
}
