package summaries

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/test/clocktest"
	"github.com/ccrelay/ccrelay/test/fakes/s3fake"
	"github.com/ccrelay/ccrelay/test/natstest"
)

const testBucket = "amazon-connect-bench"

// provisioned is the processor on a real JetStream server and a real S3
// protocol server, with no C4C: the reconciler does not talk to SAP. Both
// read clock.
func provisioned(tb testing.TB, clock func() time.Time) (*Processor, *s3fake.Server) {
	tb.Helper()
	s3 := s3fake.NewAt(tb, clock, testBucket)
	tb.Setenv("AWS_ACCESS_KEY_ID", s3fake.AccessKey)
	tb.Setenv("AWS_SECRET_ACCESS_KEY", s3fake.SecretKey)
	ns := natstest.Embedded(tb)
	_, js := natstest.Connect(tb, ns.ClientURL())
	ctx := context.Background()
	subjects := messages.DefaultSubjects()
	if err := messages.EnsureStreams(ctx, provision.Waiter{}, js, messages.StreamConfig{Subjects: subjects, Replicas: 1, MaxAge: time.Hour, DedupWindow: time.Minute, MaxBytes: -1, DLQMaxAge: time.Hour}); err != nil {
		tb.Fatal(err)
	}
	p, err := New(Config{Bucket: testBucket, S3Endpoint: s3.URL, MaxFileBytes: 1 << 20,
		Reconcile: ReconcileConfig{Window: 24 * time.Hour, Lease: 10 * time.Second, StatusTTL: 72 * time.Hour}},
		processors.Env{JS: js, Subjects: subjects, Replicas: 1, Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clock})
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.Provision(ctx); err != nil {
		tb.Fatal(err)
	}
	return p, s3
}

// putFiles stores n analysis files of the day of at, 4 at a time.
func putFiles(tb testing.TB, s3 *s3fake.Server, at time.Time, n int) []string {
	tb.Helper()
	day := at.UTC().Format("2006/01/02")
	contacts := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range contacts {
		contacts[i] = fmt.Sprintf("%08x-2b1d-4e4b-9d57-0f6a2a1c9e11", i)
		wg.Add(1)
		sem <- struct{}{}
		go func(c string) {
			defer func() { <-sem; wg.Done() }()
			s3.Put(tb, testBucket, "Analysis/Voice/"+day+"/"+c+"_analysis_2026-11-23T10:00:00Z.json", []byte(`{}`))
		}(contacts[i])
	}
	wg.Wait()
	return contacts
}

func TestStatusKey(t *testing.T) {
	for _, c := range []string{"6c0f4a8e-2b1d-4e4b-9d57-0f6a2a1c9e11", "has space", "dots.and/slash", "=", ""} {
		k := statusKey(c)
		back, ok := contactOf(k)
		if !ok || back != c {
			t.Errorf("%q -> key %q -> %q, %v", c, k, back, ok)
		}
		for i := 0; i < len(k); i++ {
			if b := k[i]; !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == '=') {
				t.Errorf("key %q of %q holds %q, which a KV key cannot", k, c, b)
			}
		}
	}
}

func TestListPrefixesAreInKeyOrder(t *testing.T) {
	p := &Processor{}
	since := time.Date(2026, 11, 22, 0, 30, 0, 0, time.UTC)
	got := p.listPrefixes(since, since.Add(24*time.Hour))
	want := []string{
		"Analysis/Voice/2026/11/21/", "Analysis/Voice/2026/11/22/", "Analysis/Voice/2026/11/23/",
		"Analysis/Voice/Redacted/2026/11/21/", "Analysis/Voice/Redacted/2026/11/22/", "Analysis/Voice/Redacted/2026/11/23/",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("prefixes %v, want %v (the day before since, for calls across midnight)", got, want)
	}
}

func TestLeaseTakesTurns(t *testing.T) {
	p, _ := provisioned(t, time.Now)
	ctx := context.Background()
	rev, err := p.acquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.acquire(ctx, "b"); err == nil {
		t.Fatal("b took a live lease of a")
	}
	if rev, err = p.renew(ctx, "a", rev); err != nil {
		t.Fatalf("a could not renew its lease: %v", err)
	}
	if _, err := p.renew(ctx, "a", rev-1); err == nil {
		t.Error("a renewed with a stale revision (someone else wrote the lease meanwhile)")
	}
	p.release(ctx, "a", rev)
	if _, err := p.acquire(ctx, "b"); err != nil {
		t.Fatalf("b could not take a released lease: %v", err)
	}
}

// BenchmarkSweep is a sweep of 10,000 analysis files of which 1% have no
// summary: each iteration lists them all, reads every status and stores
// 100 triggers.
func BenchmarkSweep(b *testing.B) {
	p, s3 := provisioned(b, time.Now)
	contacts := putFiles(b, s3, time.Now(), 10_000)
	ctx := context.Background()
	missing := map[string]bool{}
	for i, c := range contacts {
		if i%100 == 0 {
			missing[c] = true
			continue
		}
		if err := p.status.done(ctx, c, outcomeWritten); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now()
	opts := SweepOptions{Since: now.Add(-time.Hour), Until: now.Add(time.Hour)}
	b.ResetTimer()
	for b.Loop() {
		res, err := p.Sweep(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		if res.Files != 10_000 || res.Triggered != len(missing) {
			b.Fatalf("%d files, %d triggered; want 10000 and %d", res.Files, res.Triggered, len(missing))
		}
		b.ReportMetric(float64(res.ListRequests), "lists/op")
		b.StopTimer()
		for c := range missing {
			if err := p.status.kv.Delete(ctx, statusKey(c)); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
}

// TestEventsOfAnotherBucketAreRefused: an S3 event or a trigger naming
// another bucket than the configured one is dead-lettered at once; the
// processor's AWS credentials go to its own bucket only.
func TestEventsOfAnotherBucketAreRefused(t *testing.T) {
	p, _ := provisioned(t, time.Now)
	s := p.env.Subjects
	key := "Analysis/Voice/2026/11/23/6c0f4a8e-2b1d-4e4b-9d57-0f6a2a1c9e11_analysis_2026-11-23T10:00:00Z.json"
	s3ev := []byte(`{"version":"0","id":"e","detail-type":"Object Created","source":"aws.s3","account":"1","time":"2026-11-23T10:00:05Z",
"detail":{"bucket":{"name":"someone-elses"},"object":{"key":"` + key + `"}}}`)
	trigger := []byte(`{"bucket":"someone-elses","key":"` + key + `","contact_id":"6c0f4a8e-2b1d-4e4b-9d57-0f6a2a1c9e11"}`)
	for name, ev := range map[string]*processors.Event{
		"s3 event": {Subject: s.AnalysisFile("someone-elses"), Body: s3ev},
		"trigger":  {Subject: s.SummaryTrigger("someone-elses"), Body: trigger},
	} {
		err := p.Handle(context.Background(), ev)
		if !errors.Is(err, processors.ErrPermanent) {
			t.Errorf("%s: %v, want a permanent error", name, err)
		}
	}
}

// TestLeaseRenewedDuringLongSweep: a sweep longer than the lease keeps it
// (renewed every third of it), and releases it when it ends.
func TestLeaseRenewedDuringLongSweep(t *testing.T) {
	// Half a second before midnight: the sweep runs across it.
	clock := clocktest.At(clocktest.Edges()[0].At)
	p, s3 := provisioned(t, clock)
	p.cfg.Reconcile.Lease = time.Second
	putFiles(t, s3, clock(), 6)
	ctx := context.Background()
	var heldByOther []error
	now := clock()
	opts := SweepOptions{Since: now.Add(-time.Hour), Until: now.Add(time.Hour), PageSize: 2, DryRun: false,
		Progress: func(int, int, int) {
			if len(heldByOther) == 3 {
				return
			}
			time.Sleep(700 * time.Millisecond) // three times: 2.1 s, twice the lease
			_, err := p.acquire(ctx, "other")
			heldByOther = append(heldByOther, err)
		}}
	res, err := p.Reconcile(ctx, "sweeper", opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 6 {
		t.Errorf("%d files, want 6", res.Files)
	}
	for i, err := range heldByOther {
		if !errors.Is(err, ErrLeaseHeld) {
			t.Errorf("page %d: another replica could take the lease (%v) while the sweep ran", i+1, err)
		}
	}
	if _, err := p.acquire(ctx, "other"); err != nil {
		t.Errorf("the lease was not released after the sweep: %v", err)
	}
}

// TestSweepReportsProgress: day folders finished out of all, and files,
// after every page, ending at all of them.
func TestSweepReportsProgress(t *testing.T) {
	for _, e := range clocktest.Edges() {
		t.Run(e.Name, func(t *testing.T) { testSweepReportsProgress(t, clocktest.At(e.At)) })
	}
}

func testSweepReportsProgress(t *testing.T, clock func() time.Time) {
	p, s3 := provisioned(t, clock)
	putFiles(t, s3, clock(), 5)
	type call struct{ done, total, files int }
	var calls []call
	now := clock()
	_, err := p.Sweep(context.Background(), SweepOptions{Since: now.Add(-time.Hour), Until: now.Add(time.Hour), PageSize: 2, DryRun: true,
		Progress: func(done, total, files int) { calls = append(calls, call{done, total, files}) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) == 0 {
		t.Fatal("no progress reported")
	}
	for i, c := range calls {
		if c.total != calls[0].total || c.done > c.total || (i > 0 && (c.done < calls[i-1].done || c.files < calls[i-1].files)) {
			t.Fatalf("progress went %+v", calls)
		}
	}
	if last := calls[len(calls)-1]; last.done != last.total || last.files != 5 {
		t.Errorf("last progress %+v, want every folder done and 5 files", last)
	}
}
