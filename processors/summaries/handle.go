package summaries

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/sinks/c4c"
)

// errNotYet marks what is expected to appear later (the analysis file, a
// non-empty summary, the call record): transient.
var errNotYet = errors.New("not there yet")

// trigger is what any of the three events says: which contact, and where
// to look for its analysis file.
type trigger struct {
	// kind is the event's kind: messages.ConnectContactLens,
	// messages.ConnectAnalysis or messages.ConnectReconcile.
	kind      string
	contactID string
	// day is the first day to look under: the event's date for a rule
	// event, the key's date for the others.
	day time.Time
}

// triggerOf decodes ev. An S3 event or a reconciler trigger naming another
// bucket than CCRELAY_CONNECT_BUCKET is refused: the processor's AWS
// credentials are for that bucket only.
func (p *Processor) triggerOf(ev *processors.Event) (trigger, error) {
	a, err := p.env.Subjects.Parse(ev.Subject)
	if err != nil {
		return trigger{}, processors.Permanent(err)
	}
	switch a.Kind {
	case messages.ConnectAnalysis:
		e, err := messages.DecodeS3ObjectCreated(ev.Body)
		if err != nil {
			return trigger{}, processors.Permanent(err)
		}
		if err := p.sameBucket(e.Detail.Bucket.Name); err != nil {
			return trigger{}, err
		}
		return trigger{kind: a.Kind, contactID: e.File.ContactID, day: e.File.Day}, nil
	case messages.ConnectReconcile:
		t, err := messages.DecodeSummaryTrigger(ev.Body)
		if err != nil {
			return trigger{}, processors.Permanent(err)
		}
		if err := p.sameBucket(t.Bucket); err != nil {
			return trigger{}, err
		}
		return trigger{kind: a.Kind, contactID: t.ContactID, day: t.File().Day}, nil
	}
	e, err := messages.DecodeContactLensEvent(ev.Body)
	if err != nil {
		return trigger{}, processors.Permanent(err)
	}
	return trigger{kind: messages.ConnectContactLens, contactID: e.ContactID(), day: e.Time}, nil
}

func (p *Processor) sameBucket(bucket string) error {
	if bucket != p.cfg.Bucket {
		return processors.Permanentf("the event names bucket %q, not CCRELAY_CONNECT_BUCKET", bucket)
	}
	return nil
}

// Handle implements processors.Handler. Every trigger of a contact ends in
// the same place: the summary in the call record, written once (the record
// is compared before it is written), and the contact's status recorded for
// the reconciler.
func (p *Processor) Handle(ctx context.Context, ev *processors.Event) error {
	if p.cfg.Bucket == "" {
		return processors.Permanentf("CCRELAY_CONNECT_BUCKET is not set")
	}
	tr, err := p.triggerOf(ev)
	if err != nil {
		return err
	}
	contactID := tr.contactID
	key, err := p.findAnalysis(ctx, contactID, tr.day)
	if err != nil {
		return err
	}
	summary, err := p.readSummary(ctx, key)
	var failed *summaryFailed
	if errors.As(err, &failed) {
		// Contact Lens will not write this summary later: retrying for
		// hours would change nothing. Counted and logged, not dead-lettered,
		// as there is nothing for an operator to fix in ccrelay.
		p.failed.WithLabelValues(failureCodes.Label(failed.code)).Inc()
		p.logger.Info("no summary to write: Contact Lens reports it FAILED", "contact_id", contactID, "failure_code", failed.code, "analysis_key", key)
		if err := p.status.done(ctx, contactID, outcomeFailed); err != nil {
			return err
		}
		return processors.Ignored("the analysis file reports the summary as FAILED (" + failed.code + ")")
	}
	if err != nil {
		return err
	}
	outcome, err := p.write(ctx, contactID, key, summary)
	if err != nil {
		return err
	}
	p.written.WithLabelValues(tr.kind, outcome).Inc()
	return p.status.done(ctx, contactID, outcome)
}

// write puts summary into the contact's call record unless it is there
// already, and says which.
func (p *Processor) write(ctx context.Context, contactID, key, summary string) (string, error) {
	tenant := p.c4c.Config().DefaultTenant()
	// A 412 means the record changed between read and write: read again.
	for attempt := 1; ; attempt++ {
		call, err := p.c4c.FindPhoneCall(ctx, tenant, contactID)
		if errors.Is(err, c4c.ErrNotFound) {
			return "", fmt.Errorf("call record of contact %s: %w", contactID, errNotYet)
		}
		if err != nil {
			return "", classify(err)
		}
		if call.Transcript == summary {
			// Written before (by another trigger of the call, or a replica
			// that died before it could record it): writing again would
			// only bump the record's version.
			p.logger.Debug("summary already in SAP", "contact_id", contactID, "phone_call", call.ID)
			return outcomeUnchanged, nil
		}
		err = p.c4c.SetTranscript(ctx, tenant, call, summary)
		var ce *c4c.Error
		if errors.As(err, &ce) && ce.Status == 412 && attempt < 3 {
			continue
		}
		if err != nil {
			return "", classify(err)
		}
		p.chars.Add(float64(len([]rune(summary))))
		p.logger.Debug("summary written", "contact_id", contactID, "phone_call", call.ID, "analysis_key", key)
		return outcomeWritten, nil
	}
}

// classify makes a sink error permanent unless retrying can help.
func classify(err error) error {
	if c4c.IsTransient(err) {
		return err
	}
	return processors.Permanent(err)
}
