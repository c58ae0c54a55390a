package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"time"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
	"github.com/ccrelay/ccrelay/messages/broker"
)

// loadConfig loads the configuration, printing the one-line error.
func loadConfig(environ []string, stderr io.Writer) (*config.Config, bool) {
	cfg, err := config.Load(environ, nil)
	if err != nil {
		fmt.Fprintf(stderr, "ccrelay: configuration: %v\n", err)
		return nil, false
	}
	return cfg, true
}

// dialOperator connects an operator command (dlq, replay, check) to
// CCRELAY_NATS_URL or, when it is unset, to the embedded server of a
// running 'ccrelay serve' on its default client address.
func dialOperator(ctx context.Context, cfg *config.Config) (*broker.Broker, error) {
	bc := cfg.Broker
	if bc.Embedded() {
		pw, err := bc.ReadEmbeddedPassword()
		if err != nil {
			return nil, err
		}
		bc.URL = "nats://" + broker.EmbeddedUser + ":" + url.PathEscape(pw) + "@127.0.0.1:4222"
	}
	bc.ConnectTimeout = 5 * time.Second
	return broker.Open(ctx, bc, slog.New(slog.NewTextHandler(io.Discard, nil)))
}
