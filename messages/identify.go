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

// Address is a stored event's subject taken apart: its source and its two
// tokens, unescaped.
type Address struct {
	// Source is SourceSinch, SourceContactPro or SourceConnect.
	Source string
	// Kind is the first token after the source: the lower-case Sinch
	// trigger, the Contact Pro integration or ConnectContactLens.
	Kind string
	// Name is the second token: the Sinch app id (SinchProjectApp for
	// project-level callbacks), the messaging service, the Contact Pro
	// event or the Connect instance id.
	Name string
	// Partition is the conversation partition token of events relayed to
	// Contact Pro (Sinch callbacks, messaging webhooks); empty for Sinch
	// callbacks stored before it existed.
	Partition string
}

// Parse takes apart a subject of the events stream. It fails with
// ErrUnknownSubject on a subject outside the contract: another prefix, the
// dead-letter subjects, a wrong number of tokens or a token EscapeToken
// cannot have produced.
func (s Subjects) Parse(subject string) (Address, error) {
	rest, ok := strings.CutPrefix(subject, s.Prefix()+".in.")
	if !ok {
		return Address{}, fmt.Errorf("%w: %q", ErrUnknownSubject, subject)
	}
	source, rest, _ := strings.Cut(rest, ".")
	kind, name, ok := strings.Cut(rest, ".")
	if !ok || kind == "" || name == "" {
		return Address{}, fmt.Errorf("%w: %q", ErrUnknownSubject, subject)
	}
	name, part, parted := strings.Cut(name, ".")
	switch {
	case source == SourceMessaging && parted, source == SourceSinch:
		if parted && !validPartition(part) {
			return Address{}, fmt.Errorf("%w: %q", ErrUnknownSubject, subject)
		}
	case (source == SourceContactPro || source == SourceConnect) && !parted:
	default:
		return Address{}, fmt.Errorf("%w: %q", ErrUnknownSubject, subject)
	}
	var err error
	if kind, err = UnescapeToken(kind); err != nil {
		return Address{}, fmt.Errorf("%w: %w", ErrUnknownSubject, err)
	}
	if name, err = UnescapeToken(name); err != nil {
		return Address{}, fmt.Errorf("%w: %w", ErrUnknownSubject, err)
	}
	return Address{Source: source, Kind: kind, Name: name, Partition: part}, nil
}

// validPartition reports whether tok is a token Partition returns.
func validPartition(tok string) bool {
	if len(tok) != 2 {
		return false
	}
	for i := 0; i < 2; i++ {
		if c := tok[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Identify derives the identity of an event from its subject and body, the
// same way ingest does, so a replayed body is recognised as the original.
func (s Subjects) Identify(subject string, body []byte) (Identity, error) {
	a, err := s.Parse(subject)
	if err != nil {
		return Identity{}, err
	}
	switch a.Source {
	case SourceSinch:
		r, err := RouteSinchCallback(body)
		if err != nil {
			return Identity{}, err
		}
		return Identity{Source: SourceSinch, Kind: a.Kind, ID: r.ID}, nil
	case SourceMessaging:
		w, err := DecodeWebhook(a.Kind, a.Name, body)
		if err != nil {
			return Identity{}, err
		}
		return Identity{Source: SourceMessaging, Kind: a.Kind, ID: w.ID}, nil
	case SourceContactPro:
		// A bare body has lost the request's method, path and query: it is
		// identified as the POST it most often was.
		call, err := NewContactProCall(a.Kind, a.Name, "", "POST", nil, body)
		if err != nil {
			return Identity{}, err
		}
		return Identity{Source: SourceContactPro, Kind: a.Kind + "." + a.Name, ID: call.DedupID()}, nil
	default: // SourceConnect; Parse admits no other
		switch a.Kind {
		case ConnectAnalysis:
			ev, err := DecodeS3ObjectCreated(body)
			if err != nil {
				return Identity{}, err
			}
			return Identity{Source: SourceConnect, Kind: a.Kind, ID: ev.File.DedupID()}, nil
		case ConnectReconcile:
			t, err := DecodeSummaryTrigger(body)
			if err != nil {
				return Identity{}, err
			}
			return Identity{Source: SourceConnect, Kind: a.Kind, ID: SummaryDedupID(t.ContactID)}, nil
		}
		ev, err := DecodeContactLensEvent(body)
		if err != nil {
			return Identity{}, err
		}
		return Identity{Source: SourceConnect, Kind: a.Kind, ID: ev.DedupID()}, nil
	}
}

// ErrNoEventID is returned by EventID for a message it cannot identify.
var ErrNoEventID = errors.New("event has no id")

// EventID is the one way to name a stored event: its ce-id header, or, for
// a body published by hand without one, the id ingest would have given it.
// The error says why a message has neither; it wraps ErrNoEventID.
func (s Subjects) EventID(subject string, header map[string][]string, body []byte) (string, error) {
	if v := header[HeaderID]; len(v) > 0 && v[0] != "" {
		return v[0], nil
	}
	ident, err := s.Identify(subject, body)
	if err != nil {
		return "", fmt.Errorf("%w: no %s header, and %w", ErrNoEventID, HeaderID, err)
	}
	if ident.ID == "" {
		return "", fmt.Errorf("%w: no %s header, and none derives from the body", ErrNoEventID, HeaderID)
	}
	return ident.ID, nil
}
