// Package jspub stores a message in JetStream and waits for its
// acknowledgement, as jetstream.JetStream.PublishMsg does, but reads the
// acknowledgement without reflection.
//
// encoding/json took 5.6% of 'ccrelay ingest's CPU and 5% of a processor's
// (two ledger writes per message) to read acknowledgements that nats-server
// writes from one fixed template: {"stream":"S","seq":N} with an optional
// "domain" before the sequence and "duplicate": true after it. ParseAck
// reads exactly that shape in one pass and leaves anything else (errors,
// batches, counters, whatever a later server sends) to encoding/json,
// decoding into nats.go's own types, so the answers are nats.go's.
package jspub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// As nats.go: a publish that finds no stream listening (a leader election
// under way) is tried twice more, 250 ms apart, and a context without a
// deadline gets one of 5 s.
const (
	retryWait      = jetstream.DefaultPubRetryWait
	retryAttempts  = jetstream.DefaultPubRetryAttempts
	defaultTimeout = 5 * time.Second
)

// Publish stores m and returns the server's acknowledgement. m's headers
// carry what jetstream's publish options would (Nats-Msg-Id,
// Nats-Expected-Stream, ...). Errors are nats.go's: a refusal by the
// stream wraps a *jetstream.APIError, so errors.Is(err, jetstream.ErrKeyExists)
// and the like work as with PublishMsg.
func Publish(ctx context.Context, nc *nats.Conn, m *nats.Msg) (*jetstream.PubAck, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	resp, err := nc.RequestMsgWithContext(ctx, m)
	for r := 0; errors.Is(err, nats.ErrNoResponders) && r < retryAttempts; r++ {
		t := time.NewTimer(retryWait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		resp, err = nc.RequestMsgWithContext(ctx, m)
	}
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, jetstream.ErrNoStreamResponse
	}
	if err != nil {
		return nil, err
	}
	return ParseAck(resp.Data)
}

// ParseAck reads a publish acknowledgement as nats.go does: the ack, or
// the stream's refusal (wrapping *jetstream.APIError), or
// jetstream.ErrInvalidJSAck.
func ParseAck(b []byte) (*jetstream.PubAck, error) {
	if a, ok := scanAck(b); ok {
		return a, nil
	}
	// nats.go's pubAckResponse: apiResponse and an embedded *PubAck.
	var r struct {
		Type  string              `json:"type"`
		Error *jetstream.APIError `json:"error,omitempty"`
		*jetstream.PubAck
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, jetstream.ErrInvalidJSAck
	}
	if r.Error != nil {
		return nil, fmt.Errorf("nats: %w", r.Error)
	}
	if r.PubAck == nil || r.Stream == "" {
		return nil, jetstream.ErrInvalidJSAck
	}
	return r.PubAck, nil
}

// scanAck reads the server's success template; ok is false for anything
// else, which encoding/json then decides.
func scanAck(b []byte) (a *jetstream.PubAck, ok bool) {
	b, ok = bytes.CutPrefix(b, []byte(`{"stream":`))
	if !ok {
		return nil, false
	}
	stream, b, ok := plainString(b)
	if !ok || stream == "" {
		return nil, false
	}
	var domain string
	if rest, found := bytes.CutPrefix(b, []byte(`,"domain":`)); found {
		if domain, b, ok = plainString(rest); !ok {
			return nil, false
		}
	}
	if b, ok = bytes.CutPrefix(b, []byte(`,"seq":`)); !ok {
		return nil, false
	}
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	// JSON numbers have no leading zeros; ParseUint refuses overflow.
	if n == 0 || n > 1 && b[0] == '0' {
		return nil, false
	}
	seq, err := strconv.ParseUint(string(b[:n]), 10, 64)
	if err != nil {
		return nil, false
	}
	a = &jetstream.PubAck{Stream: stream, Sequence: seq, Domain: domain}
	switch string(b[n:]) {
	case `}`:
	case `,"duplicate": true}`, `,"duplicate":true}`:
		a.Duplicate = true
	default:
		return nil, false
	}
	return a, true
}

// plainString reads a JSON string that needs no unescaping (stream names
// and domains cannot hold quotes or backslashes) and what follows it.
func plainString(b []byte) (s string, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return "", nil, false
	}
	end := bytes.IndexByte(b[1:], '"')
	if end < 0 {
		return "", nil, false
	}
	v := b[1 : 1+end]
	for _, c := range v {
		// Escapes, control bytes and non-ASCII (which encoding/json would
		// check as UTF-8) are left to it.
		if c == '\\' || c < 0x20 || c >= 0x80 {
			return "", nil, false
		}
	}
	return string(v), b[2+end:], true
}
