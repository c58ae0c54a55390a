package messages

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnknownSubject is returned by Identify for a subject outside the
// contract.
var ErrUnknownSubject = errors.New("subject is not part of the ccrelay contract")

// Identity is what a stored event is, derived from its subject and body
// alone: what processors need when a message was published by hand (the
// NATS CLI) without ingest's headers.
type Identity struct {
	// Source is SourceSinch, SourceContactPro or SourceConnect.
	Source string
	// Kind is the lower-case trigger (Sinch), "<integration>.<event>"
	// (Contact Pro) or ConnectContactLens.
	Kind string
	// ID is the dedup id ingest would have given the event.
	ID string
}

// Identify derives the identity of an event from its subject and body, the
// same way ingest does, so a replayed body is recognised as the original.
func (s Subjects) Identify(subject string, body []byte) (Identity, error) {
	rest, ok := strings.CutPrefix(subject, s.prefix+".in.")
	if !ok {
		return Identity{}, fmt.Errorf("%w: %q", ErrUnknownSubject, subject)
	}
	tokens := strings.Split(rest, ".")
	if len(tokens) != 3 {
		return Identity{}, fmt.Errorf("%w: %q", ErrUnknownSubject, subject)
	}
	var err error
	for i := 1; i < 3; i++ {
		if tokens[i], err = UnescapeToken(tokens[i]); err != nil {
			return Identity{}, fmt.Errorf("%w: %w", ErrUnknownSubject, err)
		}
	}
	switch tokens[0] {
	case SourceSinch:
		cb, err := DecodeSinchCallback(body)
		if err != nil {
			return Identity{}, err
		}
		return Identity{Source: SourceSinch, Kind: tokens[1], ID: cb.DedupID(body)}, nil
	case SourceContactPro:
		// A bare body has lost the request's method, path and query: it is
		// identified as the POST it most often was.
		call, err := NewContactProCall(tokens[1], tokens[2], "", "POST", nil, body)
		if err != nil {
			return Identity{}, err
		}
		return Identity{Source: SourceContactPro, Kind: tokens[1] + "." + tokens[2], ID: call.DedupID()}, nil
	case SourceConnect:
		ev, err := DecodeContactLensEvent(body)
		if err != nil {
			return Identity{}, err
		}
		return Identity{Source: SourceConnect, Kind: tokens[1], ID: ev.DedupID()}, nil
	}
	return Identity{}, fmt.Errorf("%w: %q", ErrUnknownSubject, subject)
}
