package summaries

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
)

// TestSweepTakesOnlyKeysUnderItsPrefixes: the sweep lists day folders, and
// turns into triggers only the analysis files of those folders written in
// its window, even when the store answers a listing with keys under other
// prefixes (other days, far outside the window; other objects); nor does
// it resume from such a key.
func TestSweepTakesOnlyKeysUnderItsPrefixes(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	const (
		inside = "6c0f4a8e-2b1d-4e4b-9d57-0f6a2a1c9e11"
		old    = "0b0b0b0b-2b1d-4e4b-9d57-0f6a2a1c9e11"
		older  = "0c0c0c0c-2b1d-4e4b-9d57-0f6a2a1c9e11"
	)
	for _, ignore := range []bool{false, true} {
		name := map[bool]string{false: "a store that filters by prefix", true: "a store that answers every key"}[ignore]
		t.Run(name, func(t *testing.T) {
			p, s3 := provisioned(t, clock)
			for _, key := range []string{
				"Analysis/Voice/2026/11/23/" + inside + "_analysis_2026-11-23T11:00:00Z.json",
				"Analysis/Voice/Redacted/2026/11/23/" + inside + "_analysis_redacted_2026-11-23T11:00:00Z.json",
				"Analysis/Voice/2026/10/01/" + old + "_analysis_2026-10-01T11:00:00Z.json",
				"Analysis/Voice/Redacted/2025/01/01/" + older + "_analysis_redacted_2025-01-01T11:00:00Z.json",
				"Analysis/Voice/2026/11/23/sub/" + old + "_analysis_2026-11-23T11:00:00Z.json",
				"CallRecordings/2026/11/23/" + old + ".wav",
			} {
				s3.Put(t, testBucket, key, []byte(`{}`)) // written now, inside the window
			}
			s3.IgnorePrefix(ignore)
			res, err := p.Sweep(context.Background(), SweepOptions{Since: now.Add(-time.Hour), Until: now.Add(time.Hour), Resume: true, PageSize: 2})
			if err != nil {
				t.Fatal(err)
			}
			if res.Files != 2 || res.Contacts != 1 || res.Triggered != 1 {
				t.Errorf("%d files of %d calls, %d triggered; want the 2 files of the one call in the window's folders", res.Files, res.Contacts, res.Triggered)
			}
			if got := triggeredContacts(t, p); !slices.Equal(got, []string{inside}) {
				t.Errorf("triggers for %v, want only %s", got, inside)
			}
		})
	}
}

// triggeredContacts reads the contacts of the triggers stored on the events
// stream.
func triggeredContacts(t *testing.T, p *Processor) []string {
	t.Helper()
	ctx := context.Background()
	st, err := p.env.JS.Stream(ctx, p.env.Subjects.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{p.env.Subjects.SummaryTrigger(testBucket)}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for range info.NumPending {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		tr, err := messages.DecodeSummaryTrigger(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tr.ContactID)
	}
	return out
}

// TestFindAnalysisReadsTheContactsNewestFile: of the keys listed, the
// processor reads the newest analysis file of exactly the call's contact:
// not one of a longer contact id that starts with the same prefix, and not
// one of another contact that a store answering every key lists last.
func TestFindAnalysisReadsTheContactsNewestFile(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	p, s3 := provisioned(t, func() time.Time { return now })
	const contact = "6c0f4a8e-2b1d-4e4b-9d57-0f6a2a1c9e11"
	day := "Analysis/Voice/2026/11/23/"
	newest := day + contact + "_analysis_2026-11-23T11:30:00Z.json"
	for _, key := range []string{
		day + contact + "_analysis_2026-11-23T10:00:00Z.json",
		newest,
		day + contact + "_analysis_x_analysis_2026-11-23T11:45:00Z.json", // contact "<contact>_analysis_x"
		day + "ffffffff-2b1d-4e4b-9d57-0f6a2a1c9e11_analysis_2026-11-23T11:50:00Z.json",
		"Analysis/Voice/Redacted/2026/11/23/" + contact + "_analysis_redacted_2026-11-23T11:55:00Z.json",
		"Analysis/Voice/2026/11/24/" + contact + "_analysis_2026-11-24T00:10:00Z.json",
	} {
		s3.Put(t, testBucket, key, []byte(`{}`))
	}
	for _, ignore := range []bool{false, true} {
		s3.IgnorePrefix(ignore)
		got, err := p.findAnalysis(context.Background(), contact, now)
		if err != nil || got != newest {
			t.Errorf("store answering every key %v: read %q (%v), want %q", ignore, got, err, newest)
		}
	}
	// Neither the event's day nor the day before holds a file of the
	// contact: nothing is read, whatever else the store lists.
	got, err := p.findAnalysis(context.Background(), contact, now.AddDate(0, 0, 3))
	if !errors.Is(err, errNotYet) {
		t.Errorf("three days on: read %q (%v), want none yet", got, err)
	}
}
