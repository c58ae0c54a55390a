package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ccrelay/ccrelay/processors/service"
	"github.com/ccrelay/ccrelay/processors/trace"
)

const traceUsage = `Usage: ccrelay trace [--since TIME] [--json] [--body] [--limit N] [--timeout D] ID

Prints, in time order, everything ccrelay keeps about the events of ID: when
each was stored (subject, stream sequence, dedup id), what each processor did
with it (done, ignored, retrying, dead-lettered with its reason, parked by the
relay, with attempts and times), what the sinks hold (the latest delivery
status, the summary outcome, the relay's delivery to Contact Pro), and the
command to run where something is stuck. It only reads.

ID is any of: a dedup id (ce-id); a Sinch message, contact or conversation id;
a Contact Pro contact id; an Amazon Connect contact id or EventBridge event id;
a Twilio MessageSid, Messenger mid or Sinch SMS id; a stream sequence; a parked
conversation of the relay (as 'ccrelay relay held' shows it). Ids that may be
personal data are stored as their digest: give the value, trace computes it.
It reads the headers of the events stored since --since (bodies only of events
stored before ingest wrote the Ccrelay-Ids header), with no lasting consumer.

` + operatorConnects

func traceCommand(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	fs.SetOutput(flagOutput(args, stdout, stderr))
	fs.Usage = func() { fmt.Fprint(fs.Output(), traceUsage); printFlags(fs.Output(), fs) }
	sinceV := fs.String("since", "24h", "read events stored since `TIME`: RFC 3339 or a duration ago")
	asJSON := fs.Bool("json", false, "print one JSON object per step instead of a timeline")
	body := fs.Bool("body", false, "also print each event's stored body: message texts, phone numbers and addresses; mind where the output goes")
	limit := fs.Int("limit", 50, "show at most `N` events (the count of all matches is still printed)")
	timeout := fs.Duration("timeout", time.Minute, "give up after `D`")
	// The id may come before or after the flags.
	var id string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return exitCode(err)
		}
		if fs.NArg() == 0 {
			break
		}
		if id != "" {
			fmt.Fprintf(stderr, "ccrelay trace: one ID, not %q and %q\n", id, fs.Arg(0))
			return 2
		}
		id, rest = fs.Arg(0), fs.Args()[1:]
	}
	if id = strings.TrimSpace(id); id == "" {
		fmt.Fprint(stderr, "ccrelay trace: give the ID to trace\n\n"+traceUsage)
		return 2
	}
	since, err := parseWhen(*sinceV, time.Now())
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "ccrelay trace: --since: %v\n", err)
		return 2
	case *limit < 1 || *timeout <= 0:
		fmt.Fprint(stderr, "ccrelay trace: --limit must be at least 1 and --timeout positive\n")
		return 2
	}
	cfg, ok := loadConfig(environ, stderr)
	if !ok {
		return 2
	}
	// Which processors keep a ledger entry per event is what each declares.
	guarantees, err := service.Guarantees(cfg.Processors)
	if err != nil {
		fmt.Fprintf(stderr, "ccrelay trace: %v\n", err)
		return 2
	}
	// An interrupted trace still deletes its reading consumer.
	sctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(sctx, *timeout)
	defer cancel()
	b, err := dialOperator(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "ccrelay trace: %v\n", err)
		return 1
	}
	defer b.Close(context.Background())
	rep, err := trace.Run(ctx, b.JS, cfg.Ingest.Streams.Subjects, trace.Options{ID: id, Since: since, Limit: *limit, Body: *body, Processors: guarantees})
	if err != nil {
		if b.Conn.IsClosed() {
			// The embedded server restarted or stopped under the trace:
			// retries on a closed connection only run out the clock.
			err = fmt.Errorf("the connection to NATS was lost (%w); run it again", err)
		}
		fmt.Fprintf(stderr, "ccrelay trace: %s\n", printable(err.Error()))
		return 1
	}
	if *asJSON {
		// Standard output holds steps only; what the read covered, and
		// what it capped or could not read, goes to standard error.
		trace.Summary(stderr, rep)
		err = trace.PrintJSON(stdout, rep)
	} else {
		err = trace.Print(stdout, rep)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ccrelay trace: %v\n", err)
		return 1
	}
	return 0
}
