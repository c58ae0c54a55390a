package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/forward"
	"github.com/ccrelay/ccrelay/processors/forward/parking"
)

const relayUsage = `Usage:
  ccrelay relay held [--destination KEY] [--json]
  ccrelay relay release CONVERSATION... | --all --destination KEY [--wait DURATION]
  ccrelay relay drop CONVERSATION... | --all --destination KEY

Commands:
  held      list the conversations the relay to Contact Pro parked, with why
  release   have the relay deliver a parked conversation's messages again, in order, then
            take it back
  drop      dead-letter a parked conversation's messages (ccrelay dlq requeue brings them
            back), then take it back

` + operatorConnects + `
Run 'ccrelay relay <command> --help' for its flags.
`

const relayHeldUsage = `Usage: ccrelay relay held [--destination KEY] [--json]

Lists the parked conversations, oldest first: the conversation's id (give it,
or its first characters, to release or drop), its destination, its state
(parked, releasing, dropping), since when, how many of its messages wait,
the limit reached (attempts, age), the dedup id of the message that could not
be delivered, and the last error.

` + operatorConnects

const relayReleaseUsage = `Usage:
  ccrelay relay release CONVERSATION... [--wait DURATION]
  ccrelay relay release --all --destination KEY [--wait DURATION]

Has the relay deliver a parked conversation's messages again, in order (and
those parked while it does, after them), then take the conversation back, so
its later messages are delivered as any other. Fix the cause first. It waits
up to --wait for the relay to finish; a release not finished by then goes on.
Should a message fail again beyond the bound, the conversation is parked
again, and this says why.

` + operatorConnects

const relayDropUsage = `Usage:
  ccrelay relay drop CONVERSATION...
  ccrelay relay drop --all --destination KEY

Moves a parked conversation's messages to the dead letters, in order (those
of processor forward: 'ccrelay dlq requeue' stores them again), then takes
the conversation back, so its later messages are delivered as any other.

` + operatorConnects

func relayCommand(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, relayUsage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("relay "+sub, flag.ContinueOnError)
	fs.SetOutput(flagOutput(args[1:], stdout, stderr))
	var (
		destination = fs.String("destination", "", "only the conversations of destination `KEY` (type/service)")
		asJSON      = new(bool)
		all         = new(bool)
		wait        = new(time.Duration)
	)
	switch sub {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, relayUsage)
		return 0
	case "held":
		fs.Usage = func() { fmt.Fprint(fs.Output(), relayHeldUsage); printFlags(fs.Output(), fs) }
		asJSON = fs.Bool("json", false, "print one JSON object per conversation instead of a table")
	case "release":
		fs.Usage = func() { fmt.Fprint(fs.Output(), relayReleaseUsage); printFlags(fs.Output(), fs) }
		all = fs.Bool("all", false, "every parked conversation of --destination")
		wait = fs.Duration("wait", time.Minute, "wait up to `DURATION` for the relay to deliver them")
	case "drop":
		fs.Usage = func() { fmt.Fprint(fs.Output(), relayDropUsage); printFlags(fs.Output(), fs) }
		all = fs.Bool("all", false, "every parked conversation of --destination")
	default:
		fmt.Fprintf(stderr, "ccrelay relay: unknown command %q\n\n%s", sub, relayUsage)
		return 2
	}
	// Conversations and flags in any order: flag stops at the first
	// argument that is not one.
	var ids []string
	for rest := args[1:]; ; {
		if err := fs.Parse(rest); err != nil {
			return exitCode(err)
		}
		if fs.NArg() == 0 {
			break
		}
		ids, rest = append(ids, fs.Arg(0)), fs.Args()[1:]
	}
	switch {
	case sub == "held" && len(ids) > 0:
		fmt.Fprintf(stderr, "ccrelay relay held: unexpected argument %q\n", ids[0])
		return 2
	case sub != "held" && (len(ids) == 0) == !*all, *all && *destination == "":
		fmt.Fprintf(stderr, "ccrelay relay %s: give conversations, or --all with --destination\n", sub)
		return 2
	}
	cfg, ok := loadConfig(environ, stderr)
	if !ok {
		return 2
	}
	timeout := 2 * time.Minute
	if sub == "release" {
		timeout += *wait
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	b, err := dialOperator(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "ccrelay relay: %v\n", err)
		return 1
	}
	defer b.Close(context.Background())
	store, err := parking.Open(ctx, b.JS, cfg.Ingest.Streams.Subjects)
	if errors.Is(err, parking.ErrNotProvisioned) && sub == "held" {
		printParked(stdout, nil, *asJSON)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "ccrelay relay: %s\n", printable(err.Error()))
		return 1
	}
	if sub == "held" || *all {
		list, err := store.List(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "ccrelay relay: %s\n", printable(err.Error()))
			return 1
		}
		var mine []*parking.Conversation
		for _, c := range list {
			if *destination == "" || c.Destination == *destination {
				mine = append(mine, c)
			}
		}
		if _, configured := cfg.Processors.Forward.URLs[*destination]; *destination != "" && !configured && len(mine) == 0 {
			// Most likely a typo: say so rather than report nothing to do.
			fmt.Fprintf(stderr, "ccrelay relay %s: %q is not a destination of CCRELAY_FORWARD_URLS (%s), and has nothing parked\n", sub, printable(*destination), strings.Join(cfg.Processors.Forward.URLs.Keys(), ", "))
			return 2
		}
		if sub == "held" {
			printParked(stdout, mine, *asJSON)
			return 0
		}
		for _, c := range mine {
			ids = append(ids, c.ID)
		}
	}
	failed := 0
	for _, id := range ids {
		var err error
		if sub == "release" {
			err = releaseOne(ctx, store, id, *wait, stdout)
		} else {
			err = dropOne(ctx, store, id, processors.NewDeadLetters(b.JS, cfg.Ingest.Streams.Subjects), stdout)
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: %s\n", printable(id), printable(err.Error()))
			failed++
		}
	}
	fmt.Fprintf(stdout, "%d done, %d failed\n", len(ids)-failed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

// releaseOne releases one conversation and waits up to wait for the relay.
func releaseOne(ctx context.Context, store *parking.Store, id string, wait time.Duration, stdout io.Writer) error {
	c, err := store.RequestRelease(ctx, id)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	cur, err := store.Await(wctx, c.ID, 200*time.Millisecond)
	switch {
	case err == nil && cur == nil:
		fmt.Fprintf(stdout, "released %s (%s): %d messages delivered or dead-lettered\n", c.ID, printable(c.Destination), c.Waiting())
		return nil
	case err == nil:
		return fmt.Errorf("parked again: %s", cur.Reason)
	case errors.Is(err, context.DeadlineExceeded) && cur != nil:
		fmt.Fprintf(stdout, "releasing %s (%s): %d messages still wait after %s; the relay goes on ('ccrelay relay held' shows it)\n", c.ID, printable(c.Destination), cur.Waiting(), wait)
		return nil
	}
	return err
}

// dropOne dead-letters one conversation's messages.
func dropOne(ctx context.Context, store *parking.Store, id string, dlq *processors.DeadLetters, stdout io.Writer) error {
	host, _ := os.Hostname()
	owner := "ccrelay relay drop@" + host + "/" + strconv.Itoa(os.Getpid())
	c, n, err := store.Drop(ctx, id, owner, forward.Name, dlq)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "dropped %s (%s): %d messages dead-lettered\n", c.ID, printable(c.Destination), n)
	return nil
}

// printParked prints the parked conversations as a table or as JSON
// lines, with every non-graphic character escaped (see printDeadLetters):
// the reasons hold what Contact Pro answered, the heads what callers sent.
func printParked(w io.Writer, list []*parking.Conversation, asJSON bool) {
	if asJSON {
		for _, c := range list {
			b, err := json.Marshal(map[string]any{
				"conversation": c.ID, "destination": c.Destination, "partition": c.Partition, "state": c.State, "since": c.Since,
				"waiting": c.Waiting(), "cause": c.Cause, "head": c.Head, "reason": c.Reason, "owner": c.Owner,
			})
			if err != nil {
				continue // strings, numbers and a time: cannot fail
			}
			_, _ = w.Write(append(jsonPrintable(b), '\n'))
		}
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONVERSATION\tDESTINATION\tSTATE\tSINCE\tWAITING\tCAUSE\tHEAD\tREASON")
	for _, c := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", printable(c.ID), printable(c.Destination), printable(c.State), c.Since.Format(time.RFC3339),
			c.Waiting(), printable(c.Cause), printable(c.Head), printable(c.Reason))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "%d parked conversations\n", len(list))
}
