// Package service assembles the processors ccrelay ships and runs them on
// the processor runtime.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/messages/seal"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/attachments"
	"github.com/ccrelay/ccrelay/processors/deliveries"
	"github.com/ccrelay/ccrelay/processors/summaries"
	"github.com/ccrelay/ccrelay/sinks/c4c"
	"github.com/ccrelay/ccrelay/sinks/egress"
)

// Settings is everything the processors are configured with.
type Settings struct {
	Runtime     processors.Config
	Streams     messages.StreamConfig
	C4C         c4c.Config
	Attachments attachments.Config
	Summaries   summaries.Config
	Deliveries  deliveries.Config
	// SealKeys open credentials sealed into Contact Pro calls.
	SealKeys seal.KeyRing
	// Egress bounds where outbound requests go.
	Egress egress.Settings
}

// Names lists the processors ccrelay ships, in the order they start.
func Names() []string { return []string{attachments.Name, summaries.Name, deliveries.Name} }

// ParseNames checks a comma-separated --processors value; "" means all.
func ParseNames(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return Names(), nil
	}
	var out []string
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if !slices.Contains(Names(), n) {
			return nil, fmt.Errorf("unknown processor %q (known: %s)", n, strings.Join(Names(), ", "))
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// Deps are what the processors run on.
type Deps struct {
	JS jetstream.JetStream
	// Waiter waits for JetStream while streams, buckets and consumers are
	// created or bound.
	Waiter   provision.Waiter
	Connect  func() (*nats.Conn, error)
	Registry prometheus.Registerer
	Logger   *slog.Logger
}

// New builds the runtime for the named processors, creating the streams,
// the ledger and the processors' buckets as needed.
func New(ctx context.Context, st Settings, names []string, d Deps) (*processors.Runtime, error) {
	subjects := st.Streams.Subjects
	if err := messages.EnsureStreams(ctx, d.Waiter, d.JS, st.Streams); err != nil {
		return nil, err
	}
	ledger, err := processors.NewLedger(ctx, d.Waiter, d.JS, subjects.LedgerBucket(), st.Runtime.LedgerTTL, st.Runtime.AckWait, st.Streams.Replicas)
	if err != nil {
		return nil, err
	}
	sap, err := c4c.New(st.C4C, st.Egress.Guard(st.C4C.URL), nil, d.Registry)
	if err != nil {
		return nil, err
	}
	var procs []processors.Processor
	for _, name := range names {
		switch name {
		case attachments.Name:
			p, err := attachments.New(ctx, st.Attachments, d.Waiter, d.JS, subjects, st.Streams.Replicas, sap, st.SealKeys, st.Egress, d.Registry, d.Logger)
			if err != nil {
				return nil, err
			}
			procs = append(procs, p.Processor())
		case summaries.Name:
			p, err := summaries.New(ctx, st.Summaries, sap, d.Registry, d.Logger)
			if err != nil {
				return nil, err
			}
			procs = append(procs, p.Processor(subjects))
		case deliveries.Name:
			p, err := deliveries.New(ctx, st.Deliveries, d.Waiter, d.JS, subjects, st.Streams.Replicas, d.Registry)
			if err != nil {
				return nil, err
			}
			procs = append(procs, p.Processor(subjects))
		default:
			return nil, fmt.Errorf("unknown processor %q", name)
		}
	}
	return processors.New(st.Runtime, processors.Deps{
		JS: d.JS, Waiter: d.Waiter, Subjects: subjects, Connect: d.Connect,
		Ledger: ledger, DLQ: processors.NewDeadLetters(d.JS, subjects),
		Metrics: processors.NewMetrics(d.Registry), Registry: d.Registry, Logger: d.Logger,
	}, procs...)
}
