package trace

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/ccrelay/ccrelay/messages/printable"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// PrintJSON writes one JSON object per step, then nothing else: a reader
// takes the lines as they are. Fields hold callers' ids and upstream
// answers, escaped as printable.JSON escapes them.
func PrintJSON(w io.Writer, r *Report) error {
	for _, s := range r.Steps {
		b, err := json.Marshal(s)
		if err != nil {
			return fmt.Errorf("step of seq %d: %w", s.Seq, err)
		}
		if _, err := w.Write(append(printable.JSON(b), '\n')); err != nil {
			return err
		}
	}
	return nil
}

// Print writes r as a short timeline: a line per step, what to do next
// where something is stuck, and what the read covered.
func Print(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tKIND\tPROCESSOR\tOUTCOME\tATTEMPTS\tSEQ\tDEDUP ID\tDETAIL")
	var next []string
	for _, s := range r.Steps {
		attempts := ""
		if s.Attempts > 0 {
			attempts = strconv.FormatUint(s.Attempts, 10)
		}
		p := s.Processor
		if p == "" {
			p = "-"
		}
		detail := s.Detail
		if s.Kind == KindStored {
			detail = s.Subject + "; " + detail
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", s.Time.UTC().Format("2006-01-02T15:04:05.000Z"), s.Kind, p, printable.String(s.Outcome), attempts,
			s.Seq, printable.String(s.DedupID), printable.String(detail))
		if s.Body != "" {
			fmt.Fprintf(tw, "\t\t\t\t\t\t\tbody: %s\n", printable.String(s.Body))
		}
		if s.Next != "" {
			next = append(next, printable.String(s.Next)+"   # "+s.Kind+" seq "+strconv.FormatUint(s.Seq, 10))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range next {
		fmt.Fprintf(w, "next: %s\n", n)
	}
	Summary(w, r)
	return nil
}

// Summary writes what the read covered and what it could not: after the
// timeline, or on standard error beside --json, so that a capped or
// incomplete answer never passes for a whole one.
func Summary(w io.Writer, r *Report) {
	fmt.Fprintf(w, "%d events of %s", r.Matched, printable.String(r.ID))
	if r.Conversation != "" {
		fmt.Fprintf(w, " (parked conversation %s)", r.Conversation)
	}
	fmt.Fprintf(w, " in %d event headers stored since %s, read in %s\n", r.Scanned, r.Since.UTC().Format(time.RFC3339), r.Elapsed.Round(time.Millisecond))
	if r.Capped {
		fmt.Fprintf(w, "capped: only the newest %d of %d events are shown; narrow the id or --since, or raise --limit\n", r.Shown, r.Matched)
	}
	if r.BodiesRead > 0 {
		fmt.Fprintf(w, "%d events stored before ingest wrote Ccrelay-Ids were read in full to look for the id in their bodies\n", r.BodiesRead)
	}
	if r.BodyReadsCapped {
		fmt.Fprintln(w, "not every event stored before Ccrelay-Ids was read: narrow --since")
	}
	for _, warning := range r.Warnings {
		fmt.Fprintf(w, "incomplete: %s\n", printable.String(warning))
	}
	if r.Matched == 0 {
		fmt.Fprintln(w, "nothing found: check the id, and widen --since if the event is older")
	}
}
