package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors/service"
	"github.com/ccrelay/ccrelay/processors/summaries"
)

const reconcileUsage = `Usage: ccrelay reconcile summaries --since TIME [--until TIME] [--dry-run]

Commands:
  summaries   find the calls whose Contact Lens analysis file was written in a window and
              that have no summary in SAP, and trigger the summaries processor for each

Run 'ccrelay reconcile <command> --help' for its flags.
`

const reconcileSummariesUsage = `Usage: ccrelay reconcile summaries --since TIME [--until TIME] [--dry-run]

Lists the Contact Lens analysis files written between --since and --until in
CCRELAY_CONNECT_BUCKET (original and redacted, day by day), finds the calls
with no summary in SAP yet, and stores a trigger for each, so the summaries
processor does the work with all its retries. TIME is RFC 3339 or a duration
meaning that long ago (24h). One sweep runs at a time across replicas (the same
lease as the periodic sweep of CCRELAY_SUMMARIES_RECONCILE_EVERY).

` + operatorConnects

func reconcileCommand(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, reconcileUsage)
		return 2
	}
	switch args[0] {
	case "summaries":
	case "-h", "--help", "help":
		fmt.Fprint(stdout, reconcileUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "ccrelay reconcile: unknown command %q\n\n%s", args[0], reconcileUsage)
		return 2
	}
	fs := flag.NewFlagSet("reconcile summaries", flag.ContinueOnError)
	fs.SetOutput(flagOutput(args[1:], stdout, stderr))
	fs.Usage = func() { fmt.Fprint(fs.Output(), reconcileSummariesUsage); printFlags(fs.Output(), fs) }
	sinceV := fs.String("since", "", "start of the window: an RFC 3339 `TIME` or a duration ago (24h); required")
	untilV := fs.String("until", "", "end of the window, a `TIME` like --since; default now")
	dry := fs.Bool("dry-run", false, "count the calls without a summary; store nothing")
	if err := fs.Parse(args[1:]); err != nil {
		return exitCode(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ccrelay reconcile summaries: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	now := time.Now()
	if *sinceV == "" {
		fmt.Fprintln(stderr, "ccrelay reconcile summaries: --since is required")
		return 2
	}
	since, err := parseWhen(*sinceV, now)
	if err != nil {
		fmt.Fprintf(stderr, "ccrelay reconcile summaries: --since: %v\n", err)
		return 2
	}
	until := now
	if *untilV != "" {
		if until, err = parseWhen(*untilV, now); err != nil {
			fmt.Fprintf(stderr, "ccrelay reconcile summaries: --until: %v\n", err)
			return 2
		}
	}
	cfg, ok := loadConfig(environ, stderr)
	if !ok {
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := dialOperator(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "ccrelay reconcile summaries: %v\n", err)
		return 1
	}
	defer b.Close(context.Background())
	p, err := service.Summaries(ctx, cfg.Processors, service.Deps{JS: b.JS, Waiter: provision.Waiter{Budget: 5 * time.Second}, Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Fprintf(stderr, "ccrelay reconcile summaries: %v\n", err)
		return 1
	}
	opts := summaries.SweepOptions{Since: since, Until: until, DryRun: *dry}
	if isTerminal(stderr) {
		opts.Progress = func(done, total, files int) {
			drawProgress(stderr, uint64(done), uint64(total)) // #nosec G115 -- counts, never negative
			fmt.Fprintf(stderr, " day folders, %d analysis files", files)
		}
	}
	host, _ := os.Hostname()
	res, err := p.Reconcile(ctx, "ccrelay reconcile on "+host, opts)
	if opts.Progress != nil {
		fmt.Fprintln(stderr)
	}
	switch {
	case errors.Is(err, summaries.ErrLeaseHeld):
		fmt.Fprintf(stderr, "ccrelay reconcile summaries: %v; try again when it ends\n", err)
		return 1
	case err != nil:
		fmt.Fprintf(stderr, "ccrelay reconcile summaries: %v (after %d files, %d triggers stored)\n", err, res.Files, res.Triggered)
		return 1
	}
	verb := "triggered"
	if *dry {
		verb = "would trigger"
	}
	fmt.Fprintf(stdout, "%d analysis files of %d calls written %s .. %s\n", res.Files, res.Contacts, since.Format(time.RFC3339), until.Format(time.RFC3339))
	fmt.Fprintf(stdout, "  %6d  with their summary (or none to write)\n", res.Settled)
	fmt.Fprintf(stdout, "  %6d  without: %s\n", res.Triggered, verb)
	fmt.Fprintf(stdout, "  %6d  without: triggered by an earlier sweep, not done yet\n", res.Waiting)
	fmt.Fprintf(stdout, "%d S3 list requests, %s\n", res.ListRequests, res.Took.Round(time.Millisecond))
	return 0
}
