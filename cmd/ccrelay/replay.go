package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/replay"
	"github.com/ccrelay/ccrelay/processors/service"
)

const replayUsage = `Usage: ccrelay replay --subject FILTER --since TIME [--until TIME] [--dry-run]
                      [--force [--processors a,b]]

Stores the events of FILTER (e.g. ccrelay.in.connect.>) stored between --since
and --until again, so the processors see them again. TIME is RFC 3339
(2026-11-21T09:00:00Z) or a duration meaning that long ago (2h). Each copy gets
a new Nats-Msg-Id, so JetStream's dedup window does not swallow it, and keeps its
ce-id, so the idempotency ledger still skips work that completed (deliveries
and summaries keep no ledger: they apply it again, to the same end); --force
removes the ledger entries first (of --processors, default all), so it is done
again.

` + operatorConnects

// parseWhen reads an RFC 3339 time or a duration ago.
func parseWhen(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(v, "-")); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration", v)
}

func replayCommand(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(flagOutput(args, stdout, stderr))
	fs.Usage = func() { fmt.Fprint(fs.Output(), replayUsage); printFlags(fs.Output(), fs) }
	subject := fs.String("subject", "", "the events to replay: a subject `FILTER` inside the events stream (ccrelay.in.connect.>); required")
	sinceV := fs.String("since", "", "start of the window: an RFC 3339 `TIME` or a duration ago (2h); required")
	untilV := fs.String("until", "", "end of the window, a `TIME` like --since; default now")
	dry := fs.Bool("dry-run", false, "count what would be replayed; change nothing")
	force := fs.Bool("force", false, "remove ledger entries first, so completed work is done again")
	names := fs.String("processors", "", "with --force: comma-separated `NAMES` of the processors whose ledger entries to remove; default all, forward included (which sends Contact Pro its messages again)")
	if err := fs.Parse(args); err != nil {
		return exitCode(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ccrelay replay: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	now := time.Now()
	since, err := parseWhen(*sinceV, now)
	if *subject == "" || *sinceV == "" || err != nil {
		if err != nil && *sinceV != "" {
			fmt.Fprintf(stderr, "ccrelay replay: --since: %v\n", err)
		} else {
			fmt.Fprintln(stderr, "ccrelay replay: --subject and --since are required, e.g. ccrelay replay --subject 'ccrelay.in.>' --since 1h --dry-run (every source's events of the last hour; 'ccrelay replay --help' for more)")
		}
		return 2
	}
	until := now
	if *untilV != "" {
		if until, err = parseWhen(*untilV, now); err != nil {
			fmt.Fprintf(stderr, "ccrelay replay: --until: %v\n", err)
			return 2
		}
	}
	procs, err := service.ParseNames(*names)
	if err != nil {
		fmt.Fprintf(stderr, "ccrelay replay: --processors: %v\n", err)
		return 2
	}
	cfg, ok := loadConfig(environ, stderr)
	if !ok {
		return 2
	}
	subjects := cfg.Ingest.Streams.Subjects
	if !subjects.IsInbound(*subject) {
		fmt.Fprintf(stderr, "ccrelay replay: --subject must be inside %s\n", subjects.Inbound())
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := dialOperator(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "ccrelay replay: %v\n", err)
		return 1
	}
	defer b.Close(context.Background())
	ledger, err := processors.NewLedger(ctx, provision.Waiter{Budget: 5 * time.Second}, b.JS, subjects.LedgerBucket(), cfg.Processors.Runtime.LedgerTTL, cfg.Processors.Runtime.AckWait, cfg.Ingest.Streams.Replicas)
	if err != nil {
		fmt.Fprintf(stderr, "ccrelay replay: %v\n", err)
		return 1
	}
	opts := replay.Options{Subject: *subject, Since: since, Until: until, DryRun: *dry, Force: *force, Processors: procs}
	if isTerminal(stderr) {
		opts.Progress = func(done, total uint64) { drawProgress(stderr, done, total) }
	}
	sum, err := replay.Run(ctx, b.JS, subjects, ledger, opts)
	if opts.Progress != nil {
		fmt.Fprintln(stderr)
	}
	switch {
	case errors.Is(err, replay.ErrNothingToDo):
		fmt.Fprintf(stdout, "nothing stored under %s between %s and %s\n", *subject, since.Format(time.RFC3339), until.Format(time.RFC3339))
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "ccrelay replay: %v (after %d of the events)\n", err, sum.Replayed)
		return 1
	}
	printSummary(stdout, sum)
	return 0
}

func printSummary(w io.Writer, s replay.Summary) {
	verb := "replayed"
	if s.DryRun {
		verb = "would replay"
	}
	n := s.Replayed
	if s.DryRun {
		n = s.Matched
	}
	fmt.Fprintf(w, "%s %d events of %s stored %s .. %s (stream seq %d..%d)\n", verb, n, s.Subject, s.Since.Format(time.RFC3339), s.Until.Format(time.RFC3339), s.FirstSeq, s.LastSeq)
	subs := make([]string, 0, len(s.BySubject))
	for k := range s.BySubject {
		subs = append(subs, k)
	}
	sort.Strings(subs)
	for _, k := range subs {
		fmt.Fprintf(w, "  %6d  %s\n", s.BySubject[k], k)
	}
	if s.Forgotten > 0 {
		fmt.Fprintf(w, "ledger entries removed for %d events (--force)\n", s.Forgotten)
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func drawProgress(w io.Writer, done, total uint64) {
	const width = 40
	filled := int(float64(width) * float64(done) / float64(total))
	fmt.Fprintf(w, "\r[%s%s] %d/%d", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), done, total)
}
