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
	escape "github.com/ccrelay/ccrelay/messages/printable"
	"github.com/ccrelay/ccrelay/processors"
)

// operatorConnects says where the operator commands connect.
const operatorConnects = `Connects to CCRELAY_NATS_URL or, when it is unset, to the embedded server of a
running 'ccrelay serve' at its CCRELAY_NATS_LISTEN address, with the password in
CCRELAY_DATA_DIR: run it with the settings serve runs with.
`

const dlqUsage = `Usage:
  ccrelay dlq list [--processor NAME] [--json]
  ccrelay dlq requeue --seq N [--seq M ...]
  ccrelay dlq requeue --all --processor NAME

Commands:
  list      list the dead letters, with processor, original subject, delivery count and error
  requeue   store dead letters again under their original subject, so the processors see them
            again (the idempotency ledger still skips completed work)

` + operatorConnects + `
Run 'ccrelay dlq <command> --help' for its flags.
`

const dlqListUsage = `Usage: ccrelay dlq list [--processor NAME] [--json]

Lists the dead letters, oldest first: sequence, processor, when it failed, how
often it was delivered, its original subject, its ce-id and the error.

` + operatorConnects

const dlqRequeueUsage = `Usage:
  ccrelay dlq requeue --seq N [--seq M ...]
  ccrelay dlq requeue --all --processor NAME

Stores dead letters again under their original subject (new Nats-Msg-Id, same
ce-id), so the processors see them again; the idempotency ledger still skips
work that completed. Fix the cause first.

` + operatorConnects

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
	if len(args) == 0 {
		fmt.Fprint(stderr, dlqUsage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("dlq "+sub, flag.ContinueOnError)
	fs.SetOutput(flagOutput(args[1:], stdout, stderr))
	var (
		processor *string
		asJSON    = new(bool)
		all       = new(bool)
		seqs      seqList
	)
	switch sub {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, dlqUsage)
		return 0
	case "list":
		fs.Usage = func() { fmt.Fprint(fs.Output(), dlqListUsage); printFlags(fs.Output(), fs) }
		processor = fs.String("processor", "", "only the dead letters of processor `NAME`")
		asJSON = fs.Bool("json", false, "print one JSON object per dead letter instead of a table")
	case "requeue":
		fs.Usage = func() { fmt.Fprint(fs.Output(), dlqRequeueUsage); printFlags(fs.Output(), fs) }
		fs.Var(&seqs, "seq", "requeue the dead letter with sequence `N` (the SEQ of 'dlq list'); repeatable")
		all = fs.Bool("all", false, "requeue every dead letter of --processor")
		processor = fs.String("processor", "", "with --all: the processor `NAME` whose dead letters to requeue")
	default:
		fmt.Fprintf(stderr, "ccrelay dlq: unknown command %q\n\n%s", sub, dlqUsage)
		return 2
	}
	if err := fs.Parse(args[1:]); err != nil {
		return exitCode(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ccrelay dlq %s: unexpected argument %q\n", sub, fs.Arg(0))
		return 2
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
			fmt.Fprintf(stderr, "ccrelay dlq: %s\n", printable(err.Error()))
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
			fmt.Fprintf(stderr, "seq %d: %s\n", seq, printable(err.Error()))
			failed++
			continue
		}
		fmt.Fprintf(stdout, "requeued seq %d (%s) to %s\n", seq, printable(dl.Processor), printable(dl.Subject))
	}
	fmt.Fprintf(stdout, "%d requeued, %d failed\n", len(seqs)-failed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

// printDeadLetters prints the dead letters as a table or as JSON lines.
// Their fields hold what upstream systems answered and callers sent, which
// reach an operator's terminal here: escape sequences in them would be
// acted on (retitle the window, rewrite lines already printed), and tabs
// or newlines would shift the table. So neither form prints a control
// character, or any other character that is not graphic, as it is.
func printDeadLetters(w io.Writer, list []processors.DeadLetter, asJSON bool) {
	if asJSON {
		for _, dl := range list {
			b, err := json.Marshal(map[string]any{
				"seq": dl.Seq, "processor": dl.Processor, "subject": dl.Subject, "original_seq": dl.OrigSeq,
				"id": dl.Header.Get(messages.HeaderID), "deliveries": dl.Deliveries, "failed_at": dl.FailedAt, "error": dl.Error,
			})
			if err != nil {
				continue // strings, numbers and a time: cannot fail
			}
			_, _ = w.Write(append(jsonPrintable(b), '\n'))
		}
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tPROCESSOR\tFAILED AT\tDELIVERIES\tSUBJECT\tID\tERROR")
	for _, dl := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\n", dl.Seq, printable(dl.Processor), dl.FailedAt.Format(time.RFC3339), dl.Deliveries,
			printable(dl.Subject), printable(dl.Header.Get(messages.HeaderID)), printable(dl.Error))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "%d dead letters\n", len(list))
}

// printable and jsonPrintable escape what reaches an operator's
// terminal (package printable says why).
func printable(s string) string { return escape.String(s) }

func jsonPrintable(b []byte) []byte { return escape.JSON(b) }
