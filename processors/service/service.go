// Package service assembles the processors ccrelay ships and runs them on
// the processor runtime.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/broker"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/messages/seal"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/attachments"
	"github.com/ccrelay/ccrelay/processors/deliveries"
	"github.com/ccrelay/ccrelay/processors/forward"
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
	Forward     forward.Config
	// SealKeys open credentials sealed into Contact Pro calls.
	SealKeys seal.KeyRing
	// Egress bounds where outbound requests go.
	Egress egress.Settings
}

// entry is one processor ccrelay ships.
type entry struct {
	name string
	// check names the check of the systems the processor talks to, in
	// 'ccrelay check'; "" for none.
	check string
	// passed says what a passed check found.
	passed func(context.Context, Settings, processors.Unit) string
	// enabled, when set, says whether the processor has anything to do;
	// one that has not is not started (and its consumers not created).
	enabled func(Settings) bool
	build   func(Settings, processors.Env) (processors.Unit, error)
}

// catalogue lists the processors ccrelay ships, in the order they start. It
// is the only list: names, --processors, construction and checks read it.
func catalogue() []entry {
	return []entry{
		{
			name: attachments.Name, check: "cmi",
			passed: func(context.Context, Settings, processors.Unit) string {
				return "CMI answers and accepts the credentials"
			},
			build: func(st Settings, env processors.Env) (processors.Unit, error) {
				return attachments.New(st.Attachments, env)
			},
		},
		{
			name: summaries.Name, check: "connect bucket",
			passed: func(ctx context.Context, st Settings, u processors.Unit) string {
				src, err := u.(*summaries.Processor).CredentialSource(ctx)
				if err != nil {
					return st.Summaries.Bucket + " is readable (credentials: " + err.Error() + ")"
				}
				return st.Summaries.Bucket + " is readable with credentials from " + src
			},
			build: func(st Settings, env processors.Env) (processors.Unit, error) {
				return summaries.New(st.Summaries, env)
			},
		},
		{
			name: deliveries.Name,
			build: func(st Settings, env processors.Env) (processors.Unit, error) {
				return deliveries.New(st.Deliveries, env)
			},
		},
		{
			name: forward.Name, check: "contact pro",
			passed: func(_ context.Context, st Settings, _ processors.Unit) string {
				return fmt.Sprintf("%d destination(s) answer", len(st.Forward.URLs))
			},
			enabled: func(st Settings) bool { return st.Forward.Enabled() },
			build: func(st Settings, env processors.Env) (processors.Unit, error) {
				return forward.New(st.Forward, env)
			},
		},
	}
}

// Names lists the processors ccrelay ships, in the order they start.
func Names() []string {
	var out []string
	for _, e := range catalogue() {
		out = append(out, e.name)
	}
	return out
}

// Guarantees returns the guarantee each processor ccrelay ships declares
// (processors.Processor.Guarantee), by name: what its side effect needs
// from the runtime. Every processor is built from st as for a check, one
// not configured included (a guarantee is the code's, not the
// configuration's), and nothing is created or provisioned.
func Guarantees(st Settings) (map[string]processors.Guarantee, error) {
	reg := prometheus.NewRegistry()
	sap, err := c4c.New(st.C4C, st.Egress.Guard(st.C4C.URL), nil, reg)
	if err != nil {
		return nil, err
	}
	e := env(st, Deps{Registry: reg, Logger: slog.New(slog.DiscardHandler)}, sap, nil)
	out := map[string]processors.Guarantee{}
	for _, c := range catalogue() {
		u, err := c.build(st, e)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		out[c.name] = u.Processor().Guarantee
	}
	return out, nil
}

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
	// Now is the processors' clock; nil is time.Now (see processors.Env).
	Now func() time.Time
	// Outage is the process's NATS outage (the broker's), which the
	// processors' pull loops report to.
	Outage *broker.Outage
}

// env is the processors' shared environment.
func env(st Settings, d Deps, sap *c4c.Client, ledger *processors.Ledger) processors.Env {
	return processors.Env{
		JS: d.JS, Waiter: d.Waiter, Subjects: st.Streams.Subjects, Replicas: st.Streams.Replicas, Ledger: ledger, RecordTimeout: st.Runtime.RecordTimeout,
		C4C: sap, Egress: st.Egress, SealKeys: st.SealKeys, Registry: d.Registry, Logger: d.Logger, Now: d.Now,
	}
}

// New builds the runtime for the named processors, creating the streams,
// the ledger and the processors' buckets as needed, in that order, before
// any consumer.
func New(ctx context.Context, st Settings, names []string, d Deps) (*processors.Runtime, error) {
	for _, n := range names {
		if !slices.Contains(Names(), n) {
			return nil, fmt.Errorf("unknown processor %q", n)
		}
	}
	subjects := st.Streams.Subjects
	// Every bucket and object store the runtime and the processors bind
	// through the waiter bounds its requests.
	d.Waiter.CallTimeout = st.Runtime.Call()
	if err := messages.EnsureStreams(ctx, d.Waiter, d.JS, st.Streams); err != nil {
		return nil, err
	}
	ledger, err := processors.NewLedger(ctx, d.Waiter, d.JS, subjects.LedgerBucket(), st.Runtime.LedgerTTL, st.Runtime.AckWait, st.Streams.Replicas)
	if err != nil {
		return nil, err
	}
	ledger.HoldSending(st.Runtime.RecordTimeout)
	sap, err := c4c.New(st.C4C, st.Egress.Guard(st.C4C.URL), nil, d.Registry)
	if err != nil {
		return nil, err
	}
	e := env(st, d, sap, ledger)
	var procs []processors.Processor
	for _, c := range catalogue() {
		if !slices.Contains(names, c.name) {
			continue
		}
		if c.enabled != nil && !c.enabled(st) {
			d.Logger.Info("processor not started: nothing configured for it", "processor", c.name)
			continue
		}
		u, err := c.build(st, e)
		if err != nil {
			return nil, err
		}
		if err := u.Provision(ctx); err != nil {
			return nil, err
		}
		procs = append(procs, u.Processor())
	}
	return processors.New(st.Runtime, processors.Deps{
		JS: d.JS, Waiter: d.Waiter, Subjects: subjects, Connect: d.Connect,
		Ledger: ledger, DLQ: processors.NewDeadLetters(d.JS, subjects),
		Metrics: processors.NewMetrics(d.Registry), Registry: d.Registry, Logger: d.Logger, Outage: d.Outage,
	}, procs...)
}

// Summaries builds and provisions the summaries processor alone, for the
// operator's reconcile command.
func Summaries(ctx context.Context, st Settings, d Deps) (*summaries.Processor, error) {
	d.Waiter.CallTimeout = st.Runtime.Call()
	if err := messages.EnsureStreams(ctx, d.Waiter, d.JS, st.Streams); err != nil {
		return nil, err
	}
	p, err := summaries.New(st.Summaries, env(st, d, nil, nil))
	if err != nil {
		return nil, err
	}
	return p, p.Provision(ctx)
}
