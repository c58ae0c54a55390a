package summaries

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/ccrelay/ccrelay/messages"
)

// Keys of the reconciler's bucket.
const (
	leaseKey  = "summaries.lease"
	cursorKey = "summaries.cursor"
	reportKey = "summaries.report"
)

// ErrLeaseHeld is returned when another replica (or an operator's command)
// is sweeping.
var ErrLeaseHeld = errors.New("another sweep holds the lease")

// SweepOptions say what a sweep looks at.
type SweepOptions struct {
	// Since and Until bound the analysis files' write times.
	Since, Until time.Time
	// DryRun finds the calls without a summary and stores nothing.
	DryRun bool
	// Resume starts after the key where an interrupted sweep stopped, and
	// records progress as the sweep goes (the periodic sweep does).
	Resume bool
	// Progress, when set, is called after each listed page with the day
	// folders finished and to list (both variants), and the files seen so
	// far.
	Progress func(done, total, files int)
	// PageSize is the keys asked per list request; 0 is S3's 1,000.
	PageSize int32
}

// SweepResult says what a sweep found and did.
type SweepResult struct {
	// Files is the analysis files written in the window.
	Files int
	// Contacts is the calls those files belong to.
	Contacts int
	// Settled calls have their summary, or Contact Lens has none for them.
	Settled int
	// Triggered calls were found without a summary: a trigger was stored
	// (or, in a dry run, would have been).
	Triggered int
	// Waiting calls were triggered by an earlier sweep and are not done.
	Waiting int
	// Pending counts calls without a summary (Triggered and Waiting) by the
	// age of their file.
	Pending map[string]int
	// ListRequests is the S3 ListObjectsV2 calls made.
	ListRequests int
	// ResumedAfter is the key an interrupted sweep had reached, if resumed.
	ResumedAfter string
	Since, Until time.Time
	Took         time.Duration
}

// Age buckets of pending calls (ccrelay_summaries_pending{age}).
var ageBuckets = []struct {
	label string
	under time.Duration
}{
	{"under_15m", 15 * time.Minute},
	{"15m_to_1h", time.Hour},
	{"1h_to_6h", 6 * time.Hour},
	{"over_6h", 1<<63 - 1},
}

func ageLabel(age time.Duration) string {
	for _, b := range ageBuckets {
		if age < b.under {
			return b.label
		}
	}
	return ageBuckets[len(ageBuckets)-1].label
}

// Reconcile runs one sweep under the lease: it fails with ErrLeaseHeld if
// another holder's lease is live, and stops if the lease is lost. owner
// names the holder in the lease (and in the error another holder gets).
func (p *Processor) Reconcile(ctx context.Context, owner string, opts SweepOptions) (SweepResult, error) {
	if err := p.configured(); err != nil {
		return SweepResult{}, err
	}
	if opts.DryRun {
		return p.Sweep(ctx, opts) // changes nothing: needs no lease
	}
	rev, err := p.acquire(ctx, owner)
	if err != nil {
		return SweepResult{}, err
	}
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(p.cfg.Reconcile.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				next, err := p.renew(sctx, owner, rev)
				if err != nil {
					cancel(fmt.Errorf("lease lost: %w", err))
					return
				}
				rev = next // read again only after renewed is closed
			}
		}
	}()
	res, err := p.Sweep(sctx, opts)
	cancel(nil)
	<-renewed
	if cause := context.Cause(sctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	p.release(context.WithoutCancel(ctx), owner, rev)
	return res, err
}

func (p *Processor) configured() error {
	if p.cfg.Bucket == "" {
		return errors.New("CCRELAY_CONNECT_BUCKET is not set: there is nothing to reconcile")
	}
	if p.status == nil {
		return errors.New("the summaries processor is not provisioned")
	}
	return nil
}

// Sweep lists the analysis files written between opts.Since and
// opts.Until, both prefixes, day by day, and stores a trigger for each call
// that has no outcome yet. Files are listed in key order, which is the
// order of the days and, within a day, of the contacts: a resumed sweep
// starts after the last key an interrupted one finished.
func (p *Processor) Sweep(ctx context.Context, opts SweepOptions) (SweepResult, error) {
	start := p.now()
	res := SweepResult{Since: opts.Since, Until: opts.Until, Pending: map[string]int{}}
	if err := p.configured(); err != nil {
		return res, err
	}
	if !opts.Until.After(opts.Since) {
		return res, fmt.Errorf("until %s is not after since %s", opts.Until.Format(time.RFC3339), opts.Since.Format(time.RFC3339))
	}
	statuses, err := p.status.all(ctx)
	if err != nil {
		return res, err
	}
	cursor := ""
	if opts.Resume {
		if e, err := p.lease.Get(ctx, cursorKey); err == nil {
			cursor = string(e.Value())
			res.ResumedAfter = cursor
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return res, fmt.Errorf("read the sweep's progress: %w", err)
		}
	}
	seen := map[string]bool{}
	prefixes := p.listPrefixes(opts.Since, opts.Until)
	for i, prefix := range prefixes {
		after := ""
		switch {
		case cursor == "" || cursor < prefix:
		case strings.HasPrefix(cursor, prefix):
			after = cursor
		default:
			continue // every key under prefix sorts before the cursor
		}
		for page, token := 0, (*string)(nil); page == 0 || token != nil; page++ {
			in := &s3.ListObjectsV2Input{Bucket: aws.String(p.cfg.Bucket), Prefix: aws.String(prefix), ContinuationToken: token}
			if opts.PageSize > 0 {
				in.MaxKeys = aws.Int32(opts.PageSize)
			}
			if after != "" && token == nil {
				in.StartAfter = aws.String(after)
			}
			out, err := p.s3.ListObjectsV2(ctx, in)
			res.ListRequests++
			p.sweeps.lists.Inc()
			if err != nil {
				return res, s3Error("list "+prefix, err)
			}
			token = out.NextContinuationToken
			if !aws.ToBool(out.IsTruncated) {
				token = nil
			}
			last := ""
			for _, o := range out.Contents {
				key := aws.ToString(o.Key)
				if !strings.HasPrefix(key, prefix) {
					// Not what was asked for (a store that does not filter
					// by prefix): not a file of this day folder, and not a
					// place to resume from.
					continue
				}
				last = key
				f, err := messages.ParseAnalysisKey(key)
				if err != nil {
					continue // the redacted audio, or a key ccrelay cannot name
				}
				written := aws.ToTime(o.LastModified)
				if written.Before(opts.Since) || written.After(opts.Until) {
					continue
				}
				res.Files++
				p.sweeps.files.WithLabelValues(variant(f.Redacted)).Inc()
				if seen[f.ContactID] {
					continue // the call's other file: the processor finds the one it reads
				}
				seen[f.ContactID] = true
				if err := p.settle(ctx, f, written, statuses, opts.DryRun, &res); err != nil {
					return res, err
				}
			}
			if opts.Progress != nil {
				done := i
				if token == nil {
					done++
				}
				opts.Progress(done, len(prefixes), res.Files)
			}
			if opts.Resume && !opts.DryRun && last != "" {
				if _, err := p.lease.Put(ctx, cursorKey, []byte(last)); err != nil {
					return res, fmt.Errorf("record the sweep's progress: %w", err)
				}
			}
		}
	}
	res.Contacts = len(seen)
	if opts.Resume && !opts.DryRun {
		// A whole pass: the next sweep starts from the beginning.
		if err := p.lease.Delete(ctx, cursorKey); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return res, fmt.Errorf("clear the sweep's progress: %w", err)
		}
	}
	res.Took = p.now().Sub(start)
	if !opts.DryRun {
		p.report(ctx, res)
	}
	return res, nil
}

// settle decides what one call needs and, unless dry, stores its trigger.
func (p *Processor) settle(ctx context.Context, f messages.AnalysisFile, written time.Time, statuses map[string]statusRecord, dry bool, res *SweepResult) error {
	st, known := statuses[f.ContactID]
	switch {
	case known && st.settled():
		res.Settled++
		return nil
	case known:
		res.Waiting++
	default:
		res.Triggered++
		if !dry {
			if err := p.trigger(ctx, f, written); err != nil {
				return err
			}
		}
	}
	res.Pending[ageLabel(p.now().Sub(written))]++
	return nil
}

// trigger stores the call's trigger, then records it. In that order: a
// sweep that dies between the two stores the trigger again next time, which
// the dedup id or the call record's check makes harmless; the other order
// would leave a call recorded as triggered that never was.
func (p *Processor) trigger(ctx context.Context, f messages.AnalysisFile, written time.Time) error {
	now := p.now().UTC()
	body, err := json.Marshal(messages.SummaryTrigger{Bucket: p.cfg.Bucket, Key: f.Key, ContactID: f.ContactID, FileTime: written.UTC(), FoundAt: now})
	if err != nil {
		return err
	}
	ev := messages.Event{
		Subject: p.env.Subjects.SummaryTrigger(p.cfg.Bucket), ID: messages.SummaryDedupID(p.cfg.Bucket, f.ContactID),
		Source: "/ccrelay/reconcile/summaries", Type: messages.TypeSummaryTrigger,
		Time: now, ReceivedAt: now, Body: body,
	}
	if _, err := p.env.JS.PublishMsg(ctx, ev.Msg(), jetstream.WithExpectStream(p.env.Subjects.EventsStream())); err != nil {
		return fmt.Errorf("store the trigger of %s: %w", f.ContactID, err)
	}
	if _, err := p.status.triggered(ctx, f.ContactID); err != nil {
		return err
	}
	p.sweeps.reconciled.Inc()
	p.logger.Info("analysed call without summary: trigger stored", "contact_id", f.ContactID, "analysis_key", f.Key, "file_age", p.now().Sub(written).Round(time.Second).String())
	return nil
}

// listPrefixes are the day folders of both variants that can hold files
// written in [since, until], in key order: a file is filed under the day
// its agent connected, which can be the day before it was written.
func (p *Processor) listPrefixes(since, until time.Time) []string {
	first := since.UTC().AddDate(0, 0, -1).Truncate(24 * time.Hour)
	var out []string
	for _, redacted := range []bool{false, true} {
		for d := first; !d.After(until.UTC()); d = d.AddDate(0, 0, 1) {
			out = append(out, messages.AnalysisDayPrefix(d, redacted))
		}
	}
	sort.Strings(out) // "Analysis/Voice/2..." sorts before "Analysis/Voice/Redacted/..."
	return out
}

func variant(redacted bool) string {
	if redacted {
		return "redacted"
	}
	return "original"
}

// report keeps the sweep's pending counts where every replica's metrics
// read them, so the figure does not depend on which replica swept.
func (p *Processor) report(ctx context.Context, res SweepResult) {
	b, err := json.Marshal(sweepReport{Pending: res.Pending, At: p.now().UTC()})
	if err == nil {
		_, err = p.lease.Put(ctx, reportKey, b)
	}
	if err != nil {
		p.logger.Warn("reconcile: could not record the sweep's report", "error", err)
	}
}

type sweepReport struct {
	Pending map[string]int `json:"pending"`
	At      time.Time      `json:"at"`
}

// leaseRecord is the lease's value.
type leaseRecord struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

func (p *Processor) leaseValue(owner string) []byte {
	b, _ := json.Marshal(leaseRecord{Owner: owner, Until: p.now().Add(p.cfg.Reconcile.Lease).UTC()}) // plain fields
	return b
}

// acquire takes the lease if it is free, expired or already owner's.
func (p *Processor) acquire(ctx context.Context, owner string) (uint64, error) {
	e, err := p.lease.Get(ctx, leaseKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		rev, err := p.lease.Create(ctx, leaseKey, p.leaseValue(owner))
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, ErrLeaseHeld
		}
		return rev, err
	}
	if err != nil {
		return 0, fmt.Errorf("read the lease: %w", err)
	}
	var cur leaseRecord
	if json.Unmarshal(e.Value(), &cur) == nil && cur.Owner != owner && p.now().Before(cur.Until) {
		return 0, fmt.Errorf("%w: %s until %s", ErrLeaseHeld, cur.Owner, cur.Until.Format(time.RFC3339))
	}
	rev, err := p.lease.Update(ctx, leaseKey, p.leaseValue(owner), e.Revision())
	if err != nil {
		return 0, fmt.Errorf("%w (taken meanwhile: %v)", ErrLeaseHeld, err)
	}
	return rev, nil
}

// renew extends the lease; it fails if anyone else wrote it meanwhile.
func (p *Processor) renew(ctx context.Context, owner string, rev uint64) (uint64, error) {
	return p.lease.Update(ctx, leaseKey, p.leaseValue(owner), rev)
}

// release ends the lease at once, unless someone else holds it by now.
func (p *Processor) release(ctx context.Context, owner string, rev uint64) {
	b, _ := json.Marshal(leaseRecord{Owner: owner}) // Until zero: expired
	_, _ = p.lease.Update(ctx, leaseKey, b, rev)
}

// reconcileLoop sweeps every CCRELAY_SUMMARIES_RECONCILE_EVERY, the first
// time soon after start (a replica coming back from downtime catches up).
// Its window ends CCRELAY_SUMMARIES_RECONCILE_GRACE ago: younger files are
// left to their own events.
// Replicas take turns through the lease; a sweep that finds the lease held
// is skipped.
func (p *Processor) reconcileLoop(ctx context.Context) error {
	rc := p.cfg.Reconcile
	if rc.Every == 0 || p.cfg.Bucket == "" || p.status == nil {
		return nil
	}
	host, _ := os.Hostname()
	owner := host + "/" + nuid.Next()
	// Spread replicas started together.
	first := time.Duration(rand.Int64N(int64(min(rc.Every, time.Minute)))) // #nosec G404 -- jitter, not a secret
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		until := p.now().Add(-rc.Grace)
		res, err := p.Reconcile(ctx, owner, SweepOptions{Since: until.Add(-rc.Window), Until: until, Resume: true})
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrLeaseHeld):
			p.sweeps.runs.WithLabelValues("skipped").Inc()
			p.logger.Debug("reconcile sweep skipped: another replica is sweeping", "error", err)
		case err != nil:
			p.sweeps.runs.WithLabelValues("failed").Inc()
			p.logger.Warn("reconcile sweep failed; the next one resumes where it stopped", "error", err, "files", res.Files, "list_requests", res.ListRequests)
		default:
			p.sweeps.runs.WithLabelValues("completed").Inc()
			p.sweeps.last.SetToCurrentTime()
			level := p.logger.Debug
			if res.Triggered > 0 {
				level = p.logger.Info
			}
			level("reconcile sweep", "files", res.Files, "calls", res.Contacts, "settled", res.Settled, "triggered", res.Triggered,
				"waiting", res.Waiting, "list_requests", res.ListRequests, "resumed_after", res.ResumedAfter, "took", res.Took.String())
		}
		t.Reset(rc.Every)
	}
}
