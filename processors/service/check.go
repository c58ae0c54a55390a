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
	"github.com/ccrelay/ccrelay/processors/attachments"
	"github.com/ccrelay/ccrelay/processors/summaries"
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
		case errors.Is(err, attachments.ErrNotConfigured), errors.Is(err, summaries.ErrNotConfigured), errors.Is(err, c4c.ErrNoTenant):
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

	subjects := st.Streams.Subjects
	if att, err := attachments.New(cctx, st.Attachments, d.Waiter, d.JS, subjects, st.Streams.Replicas, sap, st.SealKeys, st.Egress, reg, logger); err != nil {
		add("cmi", err, "")
	} else {
		add("cmi", att.CheckCMI(cctx), "CMI answers and accepts the credentials")
	}
	if sum, err := summaries.New(cctx, st.Summaries, sap, reg, logger); err != nil {
		add("connect bucket", err, "")
	} else {
		add("connect bucket", sum.CheckBucket(cctx), st.Summaries.Bucket+" is readable")
	}
	return out
}
