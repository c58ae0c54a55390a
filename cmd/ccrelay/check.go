package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/ccrelay/ccrelay/processors/service"
)

const checkUsage = `Usage: ccrelay check

Validates a deployment before traffic: NATS reachable and the streams as
configured; C4C reachable with the configured user, its $metadata holding the
configured collections and properties, the phone-service answering; CMI
reachable; the Connect bucket readable. One line per check; the exit code is 0
when none failed (skipped ones, for what is not configured, do not fail).
Uses the same settings as 'ccrelay serve' or 'ccrelay process'.

` + operatorConnects

func checkCommand(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(flagOutput(args, stdout, stderr))
	fs.Usage = func() { fmt.Fprint(fs.Output(), checkUsage); printFlags(fs.Output(), fs) }
	if err := fs.Parse(args); err != nil {
		return exitCode(err)
	}
	cfg, ok := loadConfig(environ, stderr)
	if !ok {
		return 2
	}
	ctx := context.Background()
	b, err := dialOperator(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stdout, "FAIL  nats               %v\n", err)
		return 1
	}
	defer b.Close(ctx)
	fmt.Fprintf(stdout, "ok    %-18s connected to %s\n", "nats", b.Conn.ConnectedUrlRedacted())
	failed := 0
	for _, r := range service.Check(ctx, cfg.Processors, service.Deps{JS: b.JS}) {
		status := "ok"
		switch {
		case r.Skipped:
			status = "skip"
		case !r.OK:
			status = "FAIL"
			failed++
		}
		fmt.Fprintf(stdout, "%-5s %-18s %s\n", status, r.Name, r.Detail)
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "%d check(s) failed\n", failed)
		return 1
	}
	return 0
}
