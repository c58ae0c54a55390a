package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors/service"
	"github.com/ccrelay/ccrelay/processors/summaries"
	"github.com/ccrelay/ccrelay/test/clocktest"
	"github.com/ccrelay/ccrelay/test/expect"
	"github.com/ccrelay/ccrelay/test/fakes/c4cfake"
	"github.com/ccrelay/ccrelay/test/fakes/s3fake"
	"github.com/ccrelay/ccrelay/test/metricstest"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// call is one analysed call of the reconcile tests.
type call struct {
	contact string
	record  string // the phone call's id in the C4C fake
	key     string
	summary string
}

// analysedCalls puts n analysis files written now: all filed under today's
// date, but the last under yesterday's (an agent connected before UTC
// midnight), each with its call record in SAP.
func analysedCalls(t *testing.T, sap *c4cfake.Server, s3 *s3fake.Server, clock func() time.Time, prefix string, n int) []call {
	t.Helper()
	now := clock().UTC()
	out := make([]call, n)
	for i := range out {
		day := now
		if i == n-1 {
			day = now.AddDate(0, 0, -1)
		}
		c := call{contact: fmt.Sprintf("%s-%04d-4e4b-9d57-0f6a2a1c9e11", prefix, i)}
		c.key = fmt.Sprintf("Analysis/Voice/%s/%s_analysis_%sT23:59:00Z.json", day.Format("2006/01/02"), c.contact, day.Format("2006-01-02"))
		c.summary = fmt.Sprintf("Summary of call %d.", i)
		c.record = sap.AddPhoneCall(c.contact)
		s3.Put(t, bucket, c.key, analysisFile(c.summary))
		out[i] = c
	}
	return out
}

// awaitSummaries waits until every call's record holds its summary.
func awaitSummaries(t *testing.T, sap *c4cfake.Server, calls []call) {
	t.Helper()
	for i, c := range calls {
		eventually(t, fmt.Sprintf("call %d has its summary", i), func() bool { return sap.PhoneCall(c.record).Transcript == c.summary })
	}
}

// writtenOnce checks that every call's record was PATCHed exactly once.
func writtenOnce(t *testing.T, sap *c4cfake.Server, calls []call) {
	t.Helper()
	for i, c := range calls {
		if n := sap.PhoneCall(c.record).Patches; n != 1 {
			t.Errorf("call %d written %d times, want once", i, n)
		}
	}
}

// s3Event is the S3 Object Created event of key, from AWS's published
// example.
func s3Event(t *testing.T, key string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "messages", "testdata", "aws", "s3_object_created_analysis.json"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), "amazon-connect-acme", bucket)
	s = strings.Replace(s, "Analysis/Voice/2020/02/04/6c0f4a8e-2b1d-4e4b-9d57-0f6a2a1c9e11_analysis_2020-02-04T21:14:16Z.json", key, 1)
	return []byte(s)
}

// ruleEvent is the Contact Lens rule event of contact, sent at.
func ruleEvent(eventID, contact string, at time.Time) []byte {
	return []byte(strings.Replace(string(contactLens(eventID, contact, "Contact Lens Post Call Rules Matched")), "2026-11-21T09:58:00Z", at.UTC().Format(time.RFC3339), 1))
}

// atEdges runs test at each of the calendar's edges (clocktest.Edges): the
// reconciler's window, day folders and leases all follow the date, so each
// of these tests once failed for an hour a night when it read the machine's
// clock.
func atEdges(t *testing.T, test func(t *testing.T, clock func() time.Time)) {
	for _, e := range clocktest.Edges() {
		t.Run(e.Name, func(t *testing.T) { test(t, clocktest.At(e.At)) })
	}
}

// listRequests is what a sweep of [since, until] costs on a bucket whose
// day folders hold at most one page each: one list per day folder that can
// hold a file written in the window (from the day before since, for calls
// across midnight, to until's day), for each variant.
func listRequests(since, until time.Time) int {
	first := since.UTC().AddDate(0, 0, -1)
	first = time.Date(first.Year(), first.Month(), first.Day(), 0, 0, 0, 0, time.UTC)
	days := 0
	for d := first; !d.After(until.UTC()); d = d.AddDate(0, 0, 1) {
		days++
	}
	return 2 * days
}

// reconciler is a replica's reconciler on its own NATS connection, so a
// test can cut that replica off the way a killed process is.
func reconciler(t *testing.T, d *deployment, clock func() time.Time) (*summaries.Processor, *nats.Conn) {
	t.Helper()
	nc, err := nats.Connect(d.natsURL, nats.IgnoreDiscoveredServers())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := service.Summaries(context.Background(), d.cfg.Processors, service.Deps{JS: js, Waiter: provision.Waiter{Budget: 5 * time.Second}, Registry: prometheus.NewRegistry(), Logger: d.logger, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	return p, nc
}

func TestReconcileSummaries(t *testing.T) { atEdges(t, testReconcileSummaries) }

func testReconcileSummaries(t *testing.T, clock func() time.Time) {
	ns := natstest.Embedded(t)
	d, sap, s3 := summariesDeploymentAt(t, ns.ClientURL(), clock, "CCRELAY_SUMMARIES_RECONCILE_EVERY=0")
	calls := analysedCalls(t, sap, s3, clock, "aaaaaaaa", 10)
	h := jsonHeader()
	h.Set("x-api-key", connectAPIKey)

	// Four calls get their rule event, two their S3 event; the S3 event of
	// call 3 comes after its rule event (whichever comes first does the
	// work). The last four calls, one of them across midnight, get nothing.
	for i := 0; i < 4; i++ {
		if r := d.post("/v1/connect/events", h, ruleEvent(fmt.Sprintf("ev-%d", i), calls[i].contact, clock())); r.status != 202 {
			t.Fatalf("rule event %d: %d %s", i, r.status, r.body)
		}
	}
	for _, i := range []int{3, 4} {
		if r := d.post("/v1/connect/events", h, s3Event(t, calls[i].key)); r.status != 202 {
			t.Fatalf("S3 event %d: %d %s", i, r.status, r.body)
		}
	}
	// The redacted file's event of call 4 is the same trigger: a duplicate.
	redacted := strings.Replace(strings.Replace(calls[4].key, "Analysis/Voice/", "Analysis/Voice/Redacted/", 1), "_analysis_", "_analysis_redacted_", 1)
	if r := d.post("/v1/connect/events", h, s3Event(t, redacted)); r.status != 200 || r.header.Get("Ccrelay-Duplicate") != "true" {
		t.Fatalf("S3 event of the redacted file: %d (duplicate %q), want 200 duplicate: %s", r.status, r.header.Get("Ccrelay-Duplicate"), r.body)
	}
	// A key that is not an analysis file is refused like another detail-type.
	if r := d.post("/v1/connect/events", h, s3Event(t, "CallRecordings/2026/11/23/x.wav")); r.status != 422 || r.code(t) != "unsupported_event" {
		t.Fatalf("S3 event of a recording: %d %s, want 422 unsupported_event", r.status, r.body)
	}
	for i := 0; i < 5; i++ {
		eventually(t, fmt.Sprintf("call %d written from its event", i), func() bool { return sap.PhoneCall(calls[i].record).Transcript == calls[i].summary })
	}
	// Their outcomes are recorded before the work is acknowledged; wait for
	// the last acknowledgement, so the sweep sees them.
	eventually(t, "events processed", func() bool { return d.processed("summaries", "done") >= 6 })

	r1, _ := reconciler(t, d, clock)
	now := clock()
	dry, err := r1.Reconcile(context.Background(), "replica-1", summaries.SweepOptions{Since: now.Add(-24 * time.Hour), Until: now.Add(time.Minute), DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Triggered != 5 || d.count() != 6 {
		t.Fatalf("dry run: %d would be triggered (want 5), stream holds %d events (want the 6 stored)", dry.Triggered, d.count())
	}

	res, err := r1.Reconcile(context.Background(), "replica-1", summaries.SweepOptions{Since: now.Add(-24 * time.Hour), Until: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	expect.All(t,
		expect.Check{Name: "files", Got: res.Files, Want: 10},
		expect.Check{Name: "calls", Got: res.Contacts, Want: 10},
		expect.Check{Name: "settled", Got: res.Settled, Want: 5},
		expect.Check{Name: "triggered", Got: res.Triggered, Want: 5},
		expect.Check{Name: "pending (just triggered)", Got: res.Pending["under_15m"], Want: 5},
	)
	awaitSummaries(t, sap, calls)
	eventually(t, "triggers processed", func() bool { return d.processed("summaries", "done") >= 11 })
	writtenOnce(t, sap, calls)

	// A second sweep finds nothing to do and SAP hears nothing.
	before := len(sap.Requests())
	again, err := r1.Reconcile(context.Background(), "replica-1", summaries.SweepOptions{Since: now.Add(-24 * time.Hour), Until: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	expect.All(t,
		expect.Check{Name: "second sweep: settled", Got: again.Settled, Want: 10},
		expect.Check{Name: "second sweep: triggered", Got: again.Triggered, Want: 0},
		expect.Check{Name: "second sweep: pending", Got: again.Pending, Want: map[string]int{}},
	)
	time.Sleep(300 * time.Millisecond)
	if n := len(sap.Requests()) - before; n != 0 {
		t.Errorf("SAP got %d requests after the second sweep, want none", n)
	}
	// Every replica reports the last sweep's figures.
	if v := metricstest.Value(t, d.procRegs[0], "ccrelay_summaries_pending", map[string]string{"age": "under_15m"}); v != 0 {
		t.Errorf("ccrelay_summaries_pending{age=under_15m} = %v after the second sweep, want 0", v)
	}
	// Its cost: one list request per day folder of each variant: 3 days
	// for a 24h window, 4 when until passes midnight.
	if want := listRequests(now.Add(-24*time.Hour), now.Add(time.Minute)); again.ListRequests != want {
		t.Errorf("%d list requests for a 24h window, want %d (days x 2 variants)", again.ListRequests, want)
	}
}

// TestReconcileReplicaKilledMidSweep cuts a replica off NATS in the middle
// of its sweep, as a kill does: its lease is left to expire, and the next
// replica resumes where it stopped. Nothing is lost, nothing written twice.
func TestReconcileReplicaKilledMidSweep(t *testing.T) { atEdges(t, testReconcileReplicaKilledMidSweep) }

func testReconcileReplicaKilledMidSweep(t *testing.T, clock func() time.Time) {
	ns := natstest.Embedded(t)
	d, sap, s3 := summariesDeploymentAt(t, ns.ClientURL(), clock, "CCRELAY_SUMMARIES_RECONCILE_EVERY=0", "CCRELAY_SUMMARIES_RECONCILE_LEASE=2s")
	calls := analysedCalls(t, sap, s3, clock, "bbbbbbbb", 12)
	now := clock()
	window := summaries.SweepOptions{Since: now.Add(-time.Hour), Until: now.Add(time.Minute), Resume: true, PageSize: 3}

	a, anc := reconciler(t, d, clock)
	// The replica dies on the second page that finds files: the first one
	// recorded its progress. Counting pages instead would depend on the
	// hour: near midnight the window's first day folder is empty, and an
	// empty page records nothing.
	firstFiles := 0
	killed := window
	killed.Progress = func(_, _, files int) {
		switch {
		case firstFiles == 0:
			firstFiles = files
		case files > firstFiles:
			anc.Close() // the replica is gone: no more writes, no release
		}
	}
	if _, err := a.Reconcile(context.Background(), "replica-a", killed); err == nil {
		t.Fatal("the killed replica's sweep succeeded")
	}

	b, _ := reconciler(t, d, clock)
	if _, err := b.Reconcile(context.Background(), "replica-b", window); !errors.Is(err, summaries.ErrLeaseHeld) {
		t.Fatalf("while the dead replica's lease runs: %v, want ErrLeaseHeld", err)
	}
	var res summaries.SweepResult
	deadline := time.Now().Add(10 * time.Second) // the machine's clock: a bound of this test's own
	for {
		var err error
		res, err = b.Reconcile(context.Background(), "replica-b", window)
		if err == nil {
			break
		}
		if !errors.Is(err, summaries.ErrLeaseHeld) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if res.ResumedAfter == "" {
		t.Error("the next sweep started over instead of resuming")
	}
	if res.Files >= len(calls) {
		t.Errorf("the resumed sweep listed %d files again, want only those after the dead replica's progress", res.Files)
	}
	awaitSummaries(t, sap, calls)
	eventually(t, "triggers processed", func() bool { return d.processed("summaries", "done") >= float64(len(calls)) })
	writtenOnce(t, sap, calls)
	// The pass ended: the next sweep is a whole one again, and finds
	// every call settled.
	full, err := b.Reconcile(context.Background(), "replica-b", window)
	if err != nil {
		t.Fatal(err)
	}
	if full.ResumedAfter != "" || full.Settled != len(calls) {
		t.Errorf("after a finished pass: resumed after %q (want none), %d settled (want %d)", full.ResumedAfter, full.Settled, len(calls))
	}
}

// TestReconcileRunsInTheProcessors leaves the sweep to the processors'
// own schedule: calls whose events never came get their summary.
func TestReconcileRunsInTheProcessors(t *testing.T) { atEdges(t, testReconcileRunsInTheProcessors) }

func testReconcileRunsInTheProcessors(t *testing.T, clock func() time.Time) {
	ns := natstest.Embedded(t)
	d, sap, s3 := summariesDeploymentAt(t, ns.ClientURL(), clock, "CCRELAY_SUMMARIES_RECONCILE_EVERY=300ms", "CCRELAY_SUMMARIES_RECONCILE_GRACE=0s")
	calls := analysedCalls(t, sap, s3, clock, "cccccccc", 3)
	awaitSummaries(t, sap, calls)
	eventually(t, "a sweep completed", func() bool {
		return metricstest.Value(t, d.procRegs[0], "ccrelay_summaries_reconcile_sweeps_total", map[string]string{"outcome": "completed"}) >= 2
	})
	if v := metricstest.Value(t, d.procRegs[0], "ccrelay_summaries_reconciled_total", nil); v != 3 {
		t.Errorf("ccrelay_summaries_reconciled_total = %v, want 3", v)
	}
	writtenOnce(t, sap, calls)
}
