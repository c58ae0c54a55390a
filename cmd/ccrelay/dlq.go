package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors"
)

const dlqUsage = `Usage:
  ccrelay dlq list [--processor NAME] [--json]
  ccrelay dlq requeue --seq N [--seq M ...]
  ccrelay dlq requeue --all --processor NAME

Lists dead letters, or stores them again under their original subject so the
processors see them again (the idempotency ledger still skips completed work).
Connects to CCRELAY_NATS_URL or, when it is unset, to the embedded server of a
running 'ccrelay serve' at its CCRELAY_NATS_LISTEN address, with the password in
CCRELAY_DATA_DIR.
`

type seqList []uint64

func (s *seqList) String() string { return fmt.Sprint(*s) }
func (s *seqList) Set(v string) error {
	var n uint64
	if _, err := fmt.Sscan(v, &n); err != nil || n == 0 {
		return fmt.Errorf("%q is not a sequence number", v)
	}
	*s = append(*s, n)
	return nil
}

func dlqCommand(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "requeue") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, dlqUsage)
			return 0
		}
		fmt.Fprint(stderr, dlqUsage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("dlq "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), dlqUsage) }
	processor := fs.String("processor", "", "only this processor's dead letters")
	asJSON := fs.Bool("json", false, "print JSON lines (list)")
	all := fs.Bool("all", false, "requeue every dead letter of --processor")
	var seqs seqList
	fs.Var(&seqs, "seq", "dead-letter sequence to requeue (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return exitCode(err)
	}
	if sub == "requeue" && (len(seqs) == 0) == !*all || (*all && *processor == "") {
		fmt.Fprintln(stderr, "ccrelay dlq requeue: give --seq, or --all with --processor")
		return 2
	}
	cfg, ok := loadConfig(environ, stderr)
	if !ok {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := dialOperator(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "ccrelay dlq: %v\n", err)
		return 1
	}
	defer b.Close(context.Background())
	subjects := cfg.Ingest.Streams.Subjects
	dlq := processors.NewDeadLetters(b.JS, subjects)

	if sub == "list" || *all {
		list, err := dlq.List(ctx, *processor)
		if err != nil {
			fmt.Fprintf(stderr, "ccrelay dlq: %v\n", err)
			return 1
		}
		if sub == "list" {
			printDeadLetters(stdout, list, *asJSON)
			return 0
		}
		for _, dl := range list {
			seqs = append(seqs, dl.Seq)
		}
	}
	failed := 0
	for _, seq := range seqs {
		dl, err := dlq.Requeue(ctx, seq)
		if err != nil {
			fmt.Fprintf(stderr, "seq %d: %v\n", seq, err)
			failed++
			continue
		}
		fmt.Fprintf(stdout, "requeued seq %d (%s) to %s\n", seq, dl.Processor, dl.Subject)
	}
	fmt.Fprintf(stdout, "%d requeued, %d failed\n", len(seqs)-failed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

func printDeadLetters(w io.Writer, list []processors.DeadLetter, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, dl := range list {
			_ = enc.Encode(map[string]any{
				"seq": dl.Seq, "processor": dl.Processor, "subject": dl.Subject, "original_seq": dl.OrigSeq,
				"id": dl.Header.Get(messages.HeaderID), "deliveries": dl.Deliveries, "failed_at": dl.FailedAt, "error": dl.Error,
			})
		}
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tPROCESSOR\tFAILED AT\tDELIVERIES\tSUBJECT\tID\tERROR")
	for _, dl := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\n", dl.Seq, dl.Processor, dl.FailedAt.Format(time.RFC3339), dl.Deliveries, dl.Subject, dl.Header.Get(messages.HeaderID), dl.Error)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "%d dead letters\n", len(list))
}
