package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the ingest metrics. Label values are bounded: source is one of
// the adapters, outcome is "stored", "duplicate" or an error code, type is a
// known trigger or event name or "other", reason is one of the bounds.
type Metrics struct {
	Requests        *prometheus.CounterVec
	Duration        *prometheus.HistogramVec
	Published       *prometheus.CounterVec
	Duplicates      *prometheus.CounterVec
	PublishDuration prometheus.Histogram
	// PublishAbandoned counts publishes the request stopped waiting for at
	// its deadline while nats.go still held them (a reconnect under way).
	PublishAbandoned prometheus.Counter
	InFlight         prometheus.Gauge
	BufferedBytes    prometheus.Gauge
	Connections      prometheus.Gauge
	Shed             *prometheus.CounterVec
	Credentials      *prometheus.CounterVec
}

// NewMetrics creates the ingest metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	latency := []float64{.0005, .001, .002, .003, .005, .0075, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_ingest_requests_total",
			Help: "Ingest requests by source and outcome (stored, duplicate, or the error code).",
		}, []string{"source", "outcome"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ccrelay_ingest_request_duration_seconds",
			Help:    "Time from request start to answer, by source.",
			Buckets: latency,
		}, []string{"source"}),
		Published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_ingest_published_total",
			Help: "Events newly stored in JetStream, by source and type.",
		}, []string{"source", "type"}),
		Duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_ingest_duplicates_total",
			Help: "Events JetStream already held (same dedup id inside the window), by source.",
		}, []string{"source"}),
		PublishAbandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ccrelay_ingest_publish_abandoned_total",
			Help: "Publishes answered 503 at the publish timeout while the NATS client still held them (it was reconnecting); each ends when the client lets go, and may still store its event.",
		}),
		PublishDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ccrelay_ingest_publish_duration_seconds",
			Help:    "Time to get a JetStream acknowledgement for one event.",
			Buckets: latency,
		}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ccrelay_ingest_in_flight_requests",
			Help: "Ingest requests being handled now (bounded by CCRELAY_MAX_IN_FLIGHT).",
		}),
		BufferedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ccrelay_ingest_buffered_bytes",
			Help: "Body bytes reserved by the requests being handled: each its Content-Length, the body limit when unknown (bounded by CCRELAY_MAX_BUFFERED_BYTES).",
		}),
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ccrelay_ingest_open_connections",
			Help: "Ingest connections open now (bounded by CCRELAY_MAX_CONNECTIONS).",
		}),
		Shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_ingest_shed_requests_total",
			Help: "Requests answered 503 before their body was read, or connections closed at once, because a bound was reached, by bound (in_flight, buffered_bytes, connections).",
		}, []string{"reason"}),
		Credentials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_ingest_credentials_total",
			Help: "Requests that carried credentials in headers, by what was done with them (sealed, dropped).",
		}, []string{"source", "action"}),
	}
	reg.MustRegister(m.Requests, m.Duration, m.Published, m.Duplicates, m.PublishDuration, m.PublishAbandoned, m.InFlight, m.BufferedBytes, m.Connections, m.Shed, m.Credentials)
	return m
}
