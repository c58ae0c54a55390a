package trace

import (
	"bytes"
	"encoding/json"

	"github.com/nats-io/nats.go"

	"github.com/ccrelay/ccrelay/messages"
)

// Verdict is what a message's headers say about a Match.
type Verdict int

// Verdicts of Match.Header.
const (
	// NoMatch: the headers say the event is not one of the id's.
	NoMatch Verdict = iota
	// Matched: it is.
	Matched
	// BodyOnly: the headers cannot say (stored before ingest wrote
	// HeaderIDs); only the body can.
	BodyOnly
)

// minBodyMatch is the shortest id looked for in bodies: shorter ones
// (a stream sequence, a status) would match by chance.
const minBodyMatch = 6

// Match decides whether a stored event is one of an id's. The id matches
// an event when it is the event's stream sequence, its dedup id (ce-id),
// an id the dedup id names (messages.DedupIDParts: message ids, Contact
// Pro and Connect contact ids, event ids), or an id of HeaderIDs (Sinch
// contact and conversation ids, the Connect contact id of a Contact Lens
// event); each either as given or as its messages.PersonalDigest, since
// ids that may be personal data are stored only as their digest. Events
// found add their dedup ids, so their copies, dead letters and parked
// messages match too.
type Match struct {
	raw    string
	quoted []byte
	seq    uint64
	values map[string]bool
	dedup  map[string]bool
}

// NewMatch is the Match of id.
func NewMatch(id string) *Match {
	// As given, as its digest, and as a dedup id holds it (messages.IDPart).
	m := &Match{raw: id, values: map[string]bool{id: true, messages.PersonalDigest(id): true, messages.IDPart(id): true}, dedup: map[string]bool{}}
	// The id as a JSON string, as a body spells it (encoding/json escapes
	// what it must, and so do senders).
	m.quoted, _ = json.Marshal(id)
	if n, ok := Seq(id); ok {
		m.seq = n
	}
	return m
}

// AddDedupID makes events with ce-id id match.
func (m *Match) AddDedupID(id string) {
	if id != "" {
		m.dedup[id] = true
	}
}

// DedupID reports whether ce-id id is one of the events found.
func (m *Match) DedupID(id string) bool { return m.dedup[id] || m.values[id] }

// Header judges a stored event at seq by its headers.
func (m *Match) Header(seq uint64, h nats.Header) Verdict {
	if seq == m.seq {
		return Matched
	}
	id := h.Get(messages.HeaderID)
	if m.DedupID(id) {
		return Matched
	}
	for _, p := range messages.DedupIDParts(id) {
		if m.values[p] {
			return Matched
		}
	}
	ids, ok := h[messages.HeaderIDs]
	if !ok {
		return BodyOnly
	}
	for _, v := range ids {
		for _, p := range messages.ParseIDs(v) {
			if m.values[p] {
				return Matched
			}
		}
	}
	return NoMatch
}

// Body judges an event stored without HeaderIDs by its body: the id must
// be one of its JSON strings, whole, as given (a digest never is). A word
// inside a message text, a channel's name or an app id that starts an id
// does not make a match.
func (m *Match) Body(body []byte) bool {
	return len(m.quoted) >= minBodyMatch+2 && bytes.Contains(body, m.quoted)
}
