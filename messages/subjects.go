package messages

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultPrefix is the subject prefix used when none is configured.
const DefaultPrefix = "ccrelay"

// Subject tokens used by the contract. They are lower-case so that operators
// can type filters without guessing the case.
const (
	SourceSinch      = "sinch"
	SourceContactPro = "contactpro"
	SourceConnect    = "connect"

	// ContactProNoEvent is the event token of a Contact Pro call whose URL
	// names no event.
	ContactProNoEvent = "any"
	// ConnectContactLens is the kind token of Contact Lens events.
	ConnectContactLens = "contactlens"
)

// ErrInvalidPrefix is returned by NewSubjects for a prefix that cannot start
// a NATS subject.
var ErrInvalidPrefix = errors.New("invalid subject prefix")

// Subjects builds the subjects and stream names of one deployment. Several
// deployments can share a NATS account by using different prefixes; stream
// and bucket names are derived from the prefix so they do not collide either.
// It is parsed once, from configuration (UnmarshalText) or with NewSubjects,
// and passed as a value. The zero value is the default prefix.
type Subjects struct {
	prefix string
	// upper is the prefix as used in stream and bucket names: upper-case,
	// dots replaced with underscores.
	upper string
}

// NewSubjects checks prefix (dot-separated tokens of letters, digits, '-' and
// '_') and returns the subject builder for it.
func NewSubjects(prefix string) (Subjects, error) {
	if prefix == "" {
		return Subjects{}, fmt.Errorf("%w: empty", ErrInvalidPrefix)
	}
	for _, tok := range strings.Split(prefix, ".") {
		if tok == "" {
			return Subjects{}, fmt.Errorf("%w: %q has an empty token", ErrInvalidPrefix, prefix)
		}
		for i := 0; i < len(tok); i++ {
			if !isPlain(tok[i]) {
				return Subjects{}, fmt.Errorf("%w: %q may hold only letters, digits, '-', '_' and '.'", ErrInvalidPrefix, prefix)
			}
		}
	}
	up := strings.ToUpper(strings.ReplaceAll(prefix, ".", "_"))
	return Subjects{prefix: prefix, upper: up}, nil
}

// DefaultSubjects is the subject builder of DefaultPrefix.
func DefaultSubjects() Subjects {
	return Subjects{prefix: DefaultPrefix, upper: strings.ToUpper(DefaultPrefix)}
}

// UnmarshalText implements encoding.TextUnmarshaler, so configuration
// (CCRELAY_SUBJECT_PREFIX) is checked once, where it is read.
func (s *Subjects) UnmarshalText(b []byte) error {
	v, err := NewSubjects(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (s Subjects) MarshalText() ([]byte, error) { return []byte(s.Prefix()), nil }

// String returns the prefix.
func (s Subjects) String() string { return s.Prefix() }

// Prefix returns the configured prefix.
func (s Subjects) Prefix() string {
	if s.prefix == "" {
		return DefaultPrefix
	}
	return s.prefix
}

// orDefault makes the zero value usable.
func (s Subjects) orDefault() Subjects {
	if s.prefix == "" {
		return DefaultSubjects()
	}
	return s
}

// Inbound is the filter that matches every stored inbound event.
func (s Subjects) Inbound() string { return s.Prefix() + ".in.>" }

// IsInbound reports whether subject, or a filter, lies inside Inbound: in
// the events stream.
func (s Subjects) IsInbound(subject string) bool {
	return strings.HasPrefix(subject, s.Prefix()+".in.")
}

// Processor returns the processor name of a dead-letter subject, and false
// for any other subject.
func (s Subjects) Processor(deadLetter string) (string, bool) {
	name, ok := strings.CutPrefix(deadLetter, s.Prefix()+".dlq.")
	if !ok {
		return "", false
	}
	name, err := UnescapeToken(name)
	return name, err == nil
}

// DeadLetters is the filter that matches every dead letter.
func (s Subjects) DeadLetters() string { return s.Prefix() + ".dlq.>" }

// SinchProjectApp is the app token of project-level Sinch callbacks, which
// carry "app_id": "" (contact and capability notifications belong to the
// project, not to an app). Sinch app ids are upper-case ULIDs, so no app id
// Sinch issues reads the same.
const SinchProjectApp = "_project"

// MaxTokenBytes bounds a subject token after escaping. NATS closes the
// connection of a client that publishes a subject of several KiB, so a
// value from a request that would make a longer token is refused (400)
// before it gets near a subject.
const MaxTokenBytes = 128

// Sinch is the subject of a Sinch Conversation API callback to service,
// the {service} of /v1/sinch/{service}:
//
//	<prefix>.in.sinch.<trigger>.<service>.<app>.<partition>
//
// trigger is the callback's trigger name (e.g. MESSAGE_INBOUND); it is
// lower-cased. An empty appID is SinchProjectApp. partition is the
// Partition token of the callback's conversation, which the relay to
// Contact Pro keeps in order. The service is in the subject because it is
// in the dedup id: a body republished on its subject alone derives its id.
func (s Subjects) Sinch(trigger, service, appID, partition string) string {
	app := SinchProjectApp
	if appID != "" {
		app = EscapeToken(appID)
	}
	return s.join(SourceSinch, EscapeToken(strings.ToLower(trigger)), EscapeToken(service), app, partition)
}

// CheckToken checks that v, escaped, fits in a subject token. field names v
// in the error, which wraps ErrInvalidPayload.
func CheckToken(field, v string) error {
	n := 0
	for i := 0; i < len(v); i++ {
		if isPlain(v[i]) {
			n++
		} else {
			n += 3
		}
	}
	if n > MaxTokenBytes {
		return &FieldError{Field: field, Problem: fmt.Sprintf("is too long for a subject token (at most %d bytes once escaped)", MaxTokenBytes)}
	}
	return nil
}

// ContactPro is the subject of a Contact Pro event-driven integration call.
// An empty event becomes ContactProNoEvent. Both tokens are lower-cased.
func (s Subjects) ContactPro(integration, event string) string {
	if event == "" {
		event = ContactProNoEvent
	}
	return s.join(SourceContactPro, EscapeToken(strings.ToLower(integration)), EscapeToken(strings.ToLower(event)))
}

// ContactLens is the subject of a Contact Lens post-call event of one Amazon
// Connect instance.
func (s Subjects) ContactLens(instanceID string) string {
	return s.join(SourceConnect, ConnectContactLens, EscapeToken(instanceID))
}

// AnalysisFile is the subject of an S3 Object Created event of an analysis
// file in bucket.
func (s Subjects) AnalysisFile(bucket string) string {
	return s.join(SourceConnect, ConnectAnalysis, EscapeToken(bucket))
}

// SummaryTrigger is the subject of the reconciler's triggers for bucket.
func (s Subjects) SummaryTrigger(bucket string) string {
	return s.join(SourceConnect, ConnectReconcile, EscapeToken(bucket))
}

// DeadLetter is the subject of a dead letter from processor.
func (s Subjects) DeadLetter(processor string) string {
	return s.Prefix() + ".dlq." + EscapeToken(processor)
}

// EventsStream is the name of the stream that holds inbound events.
func (s Subjects) EventsStream() string { return s.orDefault().upper + "_EVENTS" }

// DeadLetterStream is the name of the stream that holds dead letters.
func (s Subjects) DeadLetterStream() string { return s.orDefault().upper + "_DLQ" }

// Bucket returns the name of a KV or object store bucket owned by this
// deployment, e.g. Bucket("LEDGER") is "CCRELAY_LEDGER". The
// contract's own buckets have named methods below; use those.
func (s Subjects) Bucket(name string) string { return s.orDefault().upper + "_" + name }

// LedgerBucket holds the processors' work in progress and done.
func (s Subjects) LedgerBucket() string { return s.Bucket("LEDGER") }

// MediaBucket is the object store of staged Sinch media.
func (s Subjects) MediaBucket() string { return s.Bucket("MEDIA") }

// DeliveryStatusBucket holds the latest Sinch delivery status per message.
func (s Subjects) DeliveryStatusBucket() string { return s.Bucket("DELIVERY_STATUS") }

// SummaryStatusBucket holds each Amazon Connect contact's summary outcome.
func (s Subjects) SummaryStatusBucket() string { return s.Bucket("SUMMARY_STATUS") }

// ReconcileBucket holds the reconciler's leases and progress.
func (s Subjects) ReconcileBucket() string { return s.Bucket("RECONCILE") }

func (s Subjects) join(source string, tokens ...string) string {
	s = s.orDefault()
	var b strings.Builder
	b.Grow(len(s.prefix) + 16 + 32*len(tokens))
	b.WriteString(s.prefix)
	b.WriteString(".in.")
	b.WriteString(source)
	for _, t := range tokens {
		b.WriteByte('.')
		b.WriteString(t)
	}
	return b.String()
}

// isPlain reports whether c may stand in a subject token as it is. The set is
// deliberately narrower than what NATS allows: it is what every NATS client,
// the CLI and shell globbing handle without quoting.
func isPlain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// EscapeToken makes tok safe to use as one subject token. Bytes outside
// [A-Za-z0-9_-] become %XX (upper-case hex), so '.', '*', '>', white space and
// non-ASCII never split or widen a subject, and distinct inputs stay
// distinct. The empty token, which NATS forbids, becomes "%".
func EscapeToken(tok string) string {
	if tok == "" {
		return "%"
	}
	clean := true
	for i := 0; i < len(tok); i++ {
		if !isPlain(tok[i]) {
			clean = false
			break
		}
	}
	if clean {
		return tok
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(tok) + 8)
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if isPlain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0x0f])
	}
	return b.String()
}

// UnescapeToken reverses EscapeToken. It fails on input that EscapeToken
// cannot produce.
func UnescapeToken(tok string) (string, error) {
	if tok == "%" {
		return "", nil
	}
	var b strings.Builder
	b.Grow(len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if isPlain(c) {
			b.WriteByte(c)
			continue
		}
		if c != '%' || i+2 >= len(tok) {
			return "", fmt.Errorf("unescape %q: unexpected byte at %d", tok, i)
		}
		hi, lo := unhex(tok[i+1]), unhex(tok[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("unescape %q: bad escape at %d", tok, i)
		}
		v := byte(hi<<4 | lo) // #nosec G115 -- hi and lo are hex digits, 0 to 15
		if isPlain(v) {
			return "", fmt.Errorf("unescape %q: %q is escaped needlessly", tok, v)
		}
		b.WriteByte(v)
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// SinchFilter matches the callbacks of one trigger from every service and
// app, and those stored before subjects named the service or the
// partition.
func (s Subjects) SinchFilter(trigger SinchTrigger) string {
	return s.join(SourceSinch, EscapeToken(strings.ToLower(string(trigger))), ">")
}

// ContactProFilter matches every event of one Contact Pro integration.
func (s Subjects) ContactProFilter(integration string) string {
	return s.join(SourceContactPro, EscapeToken(strings.ToLower(integration)), "*")
}

// ContactLensFilter matches Contact Lens events of every instance.
func (s Subjects) ContactLensFilter() string {
	return s.join(SourceConnect, ConnectContactLens, "*")
}

// SummaryFilters match every trigger of a call summary: Contact Lens rule
// events, S3 events of analysis files and the reconciler's triggers.
func (s Subjects) SummaryFilters() []string {
	return []string{
		s.ContactLensFilter(),
		s.join(SourceConnect, ConnectAnalysis, "*"),
		s.join(SourceConnect, ConnectReconcile, "*"),
	}
}
