package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/sinks/c4c"
)

// Result is one check's outcome.
type Result struct {
	Name    string
	OK      bool
	Skipped bool
	// Detail says what was found, or what to fix.
	Detail string
}

// Check validates a deployment before traffic: NATS and the streams, the
// C4C tenant (the user, and $metadata holding the configured collections
// and properties; the phone-service), CMI and the Connect bucket. Each
// check runs even if an earlier one failed.
func Check(ctx context.Context, st Settings, d Deps) []Result {
	var out []Result
	add := func(name string, err error, okDetail string) {
		switch {
		case err == nil:
			out = append(out, Result{Name: name, OK: true, Detail: okDetail})
		case errors.Is(err, processors.ErrNotConfigured), errors.Is(err, c4c.ErrNoTenant):
			out = append(out, Result{Name: name, Skipped: true, Detail: err.Error()})
		default:
			out = append(out, Result{Name: name, Detail: err.Error()})
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	add("streams", messages.CheckStreams(cctx, d.JS, st.Streams), fmt.Sprintf("events and dead-letter streams present, %d replica(s)", st.Streams.Replicas))

	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	sap, err := c4c.New(st.C4C, st.Egress.Guard(st.C4C.URL), nil, reg)
	if err != nil {
		add("c4c", err, "")
		return out
	}
	tenant := st.C4C.DefaultTenant()
	add("c4c odata", sap.CheckOData(cctx, tenant), fmt.Sprintf("%s has %s and %s with the properties ccrelay uses", tenant.URL, st.C4C.ChatCollection, st.C4C.AttachmentCollection))
	add("c4c phone-service", sap.CheckPhoneService(cctx, tenant), "phone-service answers")

	// Each processor is built only to be checked: New creates nothing, and
	// Provision is not called, so a check leaves JetStream as it found it.
	e := env(st, Deps{JS: d.JS, Waiter: d.Waiter, Registry: reg, Logger: logger}, sap, nil)
	for _, c := range catalogue() {
		if c.check == "" {
			continue
		}
		u, err := c.build(st, e)
		if err != nil {
			add(c.check, err, "")
			continue
		}
		err = u.Check(cctx)
		detail := ""
		if err == nil {
			detail = c.passed(cctx, st, u)
		}
		add(c.check, err, detail)
	}
	return out
}
