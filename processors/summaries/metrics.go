package summaries

import (
	"context"
	"encoding/json"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// sweepMetrics are the reconciler's. The counters are per replica; the
// pending gauge and the last sweep's time are read at scrape from the
// reconciler's bucket, so every replica reports the figures of the last
// sweep whichever replica ran it.
type sweepMetrics struct {
	runs       *prometheus.CounterVec
	files      *prometheus.CounterVec
	reconciled prometheus.Counter
	lists      prometheus.Counter
	last       prometheus.Gauge
}

func newSweepMetrics() sweepMetrics {
	return sweepMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_summaries_reconcile_sweeps_total",
			Help: "Reconcile sweeps run by this replica, by outcome (completed, failed, skipped: another replica held the lease).",
		}, []string{"outcome"}),
		files: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_summaries_reconcile_files_total",
			Help: "Contact Lens analysis files seen by sweeps, by variant (original, redacted).",
		}, []string{"variant"}),
		reconciled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ccrelay_summaries_reconciled_total",
			Help: "Analysed calls a sweep found without a summary and stored a trigger for.",
		}),
		lists: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ccrelay_summaries_reconcile_list_requests_total",
			Help: "S3 ListObjectsV2 requests made by sweeps (what a sweep costs).",
		}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ccrelay_summaries_reconcile_last_completed_timestamp_seconds",
			Help: "When this replica last completed a sweep (Unix time).",
		}),
	}
}

func (m sweepMetrics) register(reg prometheus.Registerer) {
	reg.MustRegister(m.runs, m.files, m.reconciled, m.lists, m.last)
}

// pendingCollector exports the last sweep's report.
type pendingCollector struct {
	p       *Processor
	pending *prometheus.Desc
	at      *prometheus.Desc
}

func newPendingCollector(p *Processor) *pendingCollector {
	return &pendingCollector{p: p,
		pending: prometheus.NewDesc("ccrelay_summaries_pending",
			"Analysed calls without a summary in SAP at the last sweep, by the age of their analysis file.", []string{"age"}, nil),
		at: prometheus.NewDesc("ccrelay_summaries_pending_report_timestamp_seconds",
			"When the sweep that counted ccrelay_summaries_pending ended (Unix time).", nil, nil),
	}
}

func (c *pendingCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.at
}

func (c *pendingCollector) Collect(ch chan<- prometheus.Metric) {
	if c.p.lease == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	e, err := c.p.lease.Get(ctx, reportKey)
	if err != nil {
		return // no sweep yet, or JetStream away: no figure rather than a wrong one
	}
	var r sweepReport
	if json.Unmarshal(e.Value(), &r) != nil {
		return
	}
	for _, b := range ageBuckets {
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(r.Pending[b.label]), b.label)
	}
	ch <- prometheus.MustNewConstMetric(c.at, prometheus.GaugeValue, float64(r.At.Unix()))
}
