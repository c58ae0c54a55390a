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

// Address is a stored event's subject taken apart: its source and its
// tokens, unescaped.
type Address struct {
	// Source is SourceSinch, SourceContactPro or SourceConnect.
	Source string
	// Kind is the first token after the source: the lower-case Sinch
	// trigger, the messaging service type, the Contact Pro integration or
	// the Connect kind (ConnectContactLens, ...).
	Kind string
	// Name is the Sinch app id (SinchProjectApp for project-level
	// callbacks), the messaging service, the Contact Pro event, the
	// Connect instance id or bucket.
	Name string
	// Service is the service of a source that has services: the Sinch
	// service (the {service} of /v1/sinch/{service}) or the messaging
	// service (Name). It is empty for Sinch callbacks stored before
	// subjects named it.
	Service string
	// Partition is the conversation partition token of events relayed to
	// Contact Pro (Sinch callbacks, messaging webhooks); empty for Sinch
	// callbacks stored before it existed.
	Partition string
}

// Parse takes apart a subject of the events stream. It fails with
// ErrUnknownSubject on a subject outside the contract: another prefix, the
// dead-letter subjects, a wrong number of tokens or a token EscapeToken
// cannot have produced. Sinch subjects come in three shapes:
// <trigger>.<service>.<app>.<partition>, and, stored by earlier releases,
// <trigger>.<app>.<partition> and <trigger>.<app>.
func (s Subjects) Parse(subject string) (Address, error) {
	unknown := func() error { return fmt.Errorf("%w: %q", ErrUnknownSubject, subject) }
	rest, ok := strings.CutPrefix(subject, s.Prefix()+".in.")
	if !ok {
		return Address{}, unknown()
	}
	var arr [5]string
	toks := arr[:0]
	for tok := range strings.SplitSeq(rest, ".") {
		if tok == "" || len(toks) == len(arr) {
			return Address{}, unknown()
		}
		toks = append(toks, tok)
	}
	a := Address{Source: toks[0]}
	var names []*string // the escaped tokens, in order
	switch n := len(toks); {
	case a.Source == SourceSinch && n == 5:
		names, a.Partition = []*string{&a.Kind, &a.Service, &a.Name}, toks[4]
	case a.Source == SourceSinch && n == 4, a.Source == SourceMessaging && n == 4:
		names, a.Partition = []*string{&a.Kind, &a.Name}, toks[3]
	case a.Source == SourceSinch && n == 3, (a.Source == SourceContactPro || a.Source == SourceConnect) && n == 3:
		names = []*string{&a.Kind, &a.Name}
	default:
		return Address{}, unknown()
	}
	if a.Partition != "" && !validPartition(a.Partition) {
		return Address{}, unknown()
	}
	for i, dst := range names {
		v, err := UnescapeToken(toks[1+i])
		if err != nil {
			return Address{}, fmt.Errorf("%w: %w", ErrUnknownSubject, err)
		}
		*dst = v
	}
	if a.Source == SourceMessaging {
		a.Service = a.Name
	}
	return a, nil
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
		// The service is the subject's; a subject of an earlier release
		// names none, and derives the id its event was stored under.
		r, err := RouteSinchCallback(a.Service, body)
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
			return Identity{Source: SourceConnect, Kind: a.Kind, ID: ev.DedupID()}, nil
		case ConnectReconcile:
			t, err := DecodeSummaryTrigger(body)
			if err != nil {
				return Identity{}, err
			}
			return Identity{Source: SourceConnect, Kind: a.Kind, ID: SummaryDedupID(t.Bucket, t.ContactID)}, nil
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
	if v := header[HeaderID]; len(v) > 1 {
		// Which one a reader takes would be left to chance: the ledger,
		// the relay's X-Ccrelay-Event-Id and a dead letter could each
		// name another event.
		return "", fmt.Errorf("%w: %d %s headers", ErrNoEventID, len(v), HeaderID)
	} else if len(v) == 1 && v[0] != "" {
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
