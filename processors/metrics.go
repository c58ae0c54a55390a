package processors

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages"
)

// Outcomes of one delivery, the outcome label of
// ccrelay_processor_messages_total.
const (
	OutcomeDone         = "done"
	OutcomeRetried      = "retried"
	OutcomeDeadLettered = "dead_lettered"
	OutcomeSkipped      = "skipped_duplicate"
	OutcomeIgnored      = "ignored"
)

// Metrics are the runtime's metrics.
type Metrics struct {
	Messages *prometheus.CounterVec
	Duration *prometheus.HistogramVec
	InFlight *prometheus.GaugeVec
	// Pulls and Pulled give the messages per pull request: how well the
	// runtime batches its pulls (1 under a trickle, up to the concurrency
	// under a backlog).
	Pulls  *prometheus.CounterVec
	Pulled *prometheus.CounterVec
	// Claims counts what happened to ledger claims beyond the ordinary
	// claim and completion (see the Claim* constants).
	Claims *prometheus.CounterVec
}

// Claim events, the event label of ccrelay_processor_claim_events_total.
const (
	// ClaimTakenOver: a stale claim of a worker that died or hung was
	// taken over.
	ClaimTakenOver = "taken_over"
	// ClaimMaybeDone: the claim taken over had started its side effect;
	// the work is done again and may repeat it.
	ClaimMaybeDone = "maybe_done"
	// ClaimLost: a worker found its claim taken over (it was paused, or
	// cut off from NATS, past the claim's life) and stopped its work.
	ClaimLost = "lost"
	// ClaimUnrecorded: completed work whose completion could not be
	// recorded within CCRELAY_PROCESS_RECORD_TIMEOUT; the message was given
	// back.
	ClaimUnrecorded = "unrecorded"
)

// NewMetrics creates the runtime metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_processor_messages_total",
			Help: "Deliveries handled, by processor and outcome (done, retried, dead_lettered, skipped_duplicate, ignored).",
		}, []string{"processor", "outcome"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ccrelay_processor_handler_duration_seconds",
			Help:    "Time a handler took for one delivery, by processor.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"processor"}),
		InFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ccrelay_processor_in_flight",
			Help: "Deliveries being handled now, by processor.",
		}, []string{"processor"}),
		Pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_processor_pulls_total",
			Help: "Pull requests sent to JetStream, by processor and result (ok, error).",
		}, []string{"processor", "result"}),
		Pulled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_processor_pulled_messages_total",
			Help: "Messages the pull requests delivered, by processor.",
		}, []string{"processor"}),
		Claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_processor_claim_events_total",
			Help: "Ledger claims taken over from a worker that stopped (taken_over), of which after its side effect may have started (maybe_done); claims a worker lost while working (lost); completed work not recorded in time (unrecorded). By processor and event.",
		}, []string{"processor", "event"}),
	}
	reg.MustRegister(m.Messages, m.Duration, m.InFlight, m.Pulls, m.Pulled, m.Claims)
	return m
}

// consumerCollector reports consumer lag and the dead-letter depth, read
// from JetStream at scrape time.
type consumerCollector struct {
	js         jetstream.JetStream
	subjects   messages.Subjects
	consumers  map[string][]string // processor -> consumer names
	pending    *prometheus.Desc
	ackPending *prometheus.Desc
	redeliv    *prometheus.Desc
	dlq        *prometheus.Desc
}

func newConsumerCollector(js jetstream.JetStream, subjects messages.Subjects, consumers map[string][]string) *consumerCollector {
	return &consumerCollector{
		js: js, subjects: subjects, consumers: consumers,
		pending:    prometheus.NewDesc("ccrelay_processor_consumer_pending", "Messages not yet delivered to the processor's consumer (lag).", []string{"processor"}, nil),
		ackPending: prometheus.NewDesc("ccrelay_processor_consumer_ack_pending", "Messages delivered and not yet answered.", []string{"processor"}, nil),
		redeliv:    prometheus.NewDesc("ccrelay_processor_consumer_redelivered", "Messages delivered more than once and not yet answered.", []string{"processor"}, nil),
		dlq:        prometheus.NewDesc("ccrelay_dlq_messages", "Dead letters stored, by processor.", []string{"processor"}, nil),
	}
}

func (c *consumerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPending
	ch <- c.redeliv
	ch <- c.dlq
}

func (c *consumerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.js.Stream(ctx, c.subjects.EventsStream())
	if err == nil {
		for proc, names := range c.consumers {
			var pending, ackPending, redeliv float64
			seen := false
			for _, name := range names {
				cons, err := st.Consumer(ctx, name)
				if err != nil {
					continue
				}
				info, err := cons.Info(ctx)
				if err != nil {
					continue
				}
				seen = true
				pending += float64(info.NumPending)
				ackPending += float64(info.NumAckPending)
				redeliv += float64(info.NumRedelivered)
			}
			if !seen {
				continue
			}
			ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, pending, proc)
			ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, ackPending, proc)
			ch <- prometheus.MustNewConstMetric(c.redeliv, prometheus.GaugeValue, redeliv, proc)
		}
	}
	dst, err := c.js.Stream(ctx, c.subjects.DeadLetterStream())
	if err != nil {
		return
	}
	info, err := dst.Info(ctx, jetstream.WithSubjectFilter(c.subjects.DeadLetters()))
	if err != nil {
		return
	}
	counts := map[string]uint64{}
	for proc := range c.consumers {
		counts[proc] = 0
	}
	for subj, n := range info.State.Subjects {
		if proc, ok := c.subjects.Processor(subj); ok {
			counts[proc] += n
		}
	}
	for proc, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.dlq, prometheus.GaugeValue, float64(n), proc)
	}
}
