package messages

import (
	"strings"
)

// HeaderIDs names the ids of an event that its dedup id does not hold and
// its body does: the Sinch contact and conversation of a message or a
// delivery report, the Amazon Connect contact of a Contact Lens event.
// Ingest writes it from what it decoded anyway, so 'ccrelay trace' finds an
// event by any of its ids reading headers only, never bodies. Its value is
// space-separated name=value pairs (FormatIDs); absent when there are none.
const HeaderIDs = "Ccrelay-Ids"

// Names of the ids in HeaderIDs.
const (
	IDContact      = "contact"
	IDConversation = "conversation"
)

// maxIDValue bounds one value in HeaderIDs; a longer one stands as its
// digest.
const maxIDValue = 128

// IDValue is how v stands in HeaderIDs: as in a dedup id, itself when it
// has the shape of an opaque id (a ULID, a UUID; see opaqueOrDigest), else
// its PersonalDigest, so the header never shows what may be an address or
// a phone number, and never holds a byte that breaks its syntax. A value
// over 128 bytes is a digest too. 'ccrelay trace' matches both the value
// it is given and that value's digest, so either form is found.
func IDValue(v string) string {
	if len(v) > maxIDValue {
		return PersonalDigest(v)
	}
	return opaqueOrDigest(v)
}

// FormatIDs is the value of HeaderIDs for name, value pairs (empty values
// left out); NoIDs when none is left, so a reader tells an event without
// ids from one stored before the header existed.
func FormatIDs(pairs ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(pairs[i])
		b.WriteByte('=')
		b.WriteString(IDValue(pairs[i+1]))
	}
	if b.Len() == 0 {
		return NoIDs
	}
	return b.String()
}

// NoIDs is the value of HeaderIDs of an event whose body holds no id
// besides those of its dedup id.
const NoIDs = "-"

// ParseIDs returns the values of a HeaderIDs value, whatever their names;
// a pair without '=' or with an empty value is skipped. A header written by
// hand is read the same way: it can only make an event found, never hide one.
func ParseIDs(v string) []string {
	var out []string
	for pair := range strings.FieldsSeq(v) {
		_, val, ok := strings.Cut(pair, "=")
		if ok && val != "" {
			out = append(out, val)
		}
	}
	return out
}

// DedupIDParts returns the ids a dedup id names (see the table in the
// README's "Subjects, streams and headers"): the Sinch message id, the
// Contact Pro contact id (or its digest), the EventBridge event id, the
// Connect contact id of an analysis file or a reconcile trigger, the
// Twilio MessageSid, the Messenger mid, the Sinch SMS message or batch id.
// Fixed tokens (sources, services, triggers, statuses) are not ids and are
// left out, so tracing "inbound" or a service name finds nothing.
func DedupIDParts(id string) []string {
	p := strings.Split(id, ":")
	at := func(i int) []string {
		if i < len(p) && p[i] != "" && p[i] != "-" {
			return []string{p[i]}
		}
		return nil
	}
	switch p[0] {
	case SourceSinch:
		// sinch:[<service>:]inbound:<id>, sinch:[<service>:]delivery:<id>:...
		for i := 1; i < len(p) && i <= 2; i++ {
			if p[i] == "inbound" || p[i] == "delivery" {
				return at(i + 1)
			}
		}
	case SourceContactPro:
		return at(3) // contactpro:<integration>:<event>:<contact>:<digest>
	case SourceConnect:
		return at(2) // connect:<account>:<event id>
	case SourceConnect + "." + ConnectAnalysis:
		return at(2) // connect.analysis:<bucket>:<contact>
	case SourceMessaging:
		// messaging:<type>:<service>:<MessageSid>[:<status>],
		// ...:mid:<mid>, ...:mo:<id>, ...:dr:<batch>:...
		switch {
		case len(p) > 4 && (p[3] == "mid" || p[3] == "mo"):
			// The last part: a Messenger mid may hold ':' itself.
			if rest := strings.Join(p[4:], ":"); rest != "" && rest != "-" {
				return []string{rest}
			}
		case len(p) > 4 && p[3] == "dr":
			return at(4)
		case len(p) > 3 && len(p[3]) == 34:
			return at(3)
		}
	}
	return nil
}
