package messages

import (
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Header names every stored event carries: the CloudEvents NATS binding in
// binary mode, plus JetStream's dedup header and ccrelay's own.
const (
	HeaderMsgID       = "Nats-Msg-Id"
	HeaderSpecVersion = "ce-specversion"
	HeaderID          = "ce-id"
	HeaderSource      = "ce-source"
	HeaderType        = "ce-type"
	HeaderTime        = "ce-time"
	HeaderContentType = "Content-Type"
	HeaderTraceparent = "traceparent"
	// HeaderSealed holds credentials that arrived with a request, sealed
	// with package seal. It is absent when there were none or no sealing key
	// is configured.
	HeaderSealed = "Ccrelay-Sealed"
	// HeaderReceivedAt is when ingest received the request (RFC 3339, UTC).
	HeaderReceivedAt = "Ccrelay-Received-At"
	// Headers of the request line, for sources whose calls carry data
	// outside the body (Contact Pro: method, placeholders in the path and
	// query). Absent when empty.
	HeaderRequestMethod = "Ccrelay-Request-Method"
	HeaderRequestPath   = "Ccrelay-Request-Path"
	HeaderRequestQuery  = "Ccrelay-Request-Query"
)

// Request is what a stored event keeps of its request line besides the
// body, bounded and with secrets redacted by the adapter.
type Request struct {
	Method string
	Path   string
	Query  string
}

// CloudEventsVersion is the value of ce-specversion.
const CloudEventsVersion = "1.0"

// ContentTypeJSON is the content type of the bodies ccrelay stores, but
// for messaging webhooks, which keep the sender's (Twilio's form).
const ContentTypeJSON = "application/json"

// ContentTypeForm is the content type of Twilio's webhooks.
const ContentTypeForm = "application/x-www-form-urlencoded"

// CloudEvents types of the events ccrelay stores.
const (
	// TypeSinchPrefix is followed by the lower-case trigger,
	// e.g. com.sinch.conversation.message_inbound.
	TypeSinchPrefix = "com.sinch.conversation."
	// TypeContactProPrefix is followed by integration "." event,
	// e.g. com.sinch.contactpro.chat-attachments.ended.
	TypeContactProPrefix = "com.sinch.contactpro."
	// TypeContactLensPostCall is AWS's own name of the event in its schema
	// registry (aws.connect@ContactLensPostCallRulesMatched).
	TypeContactLensPostCall = "aws.connect.ContactLensPostCallRulesMatched"
)

// Event is one stored event: the raw body and the headers of the contract.
type Event struct {
	// Subject the event is stored under.
	Subject string
	// ID is the dedup id: JetStream's Nats-Msg-Id and CloudEvents' ce-id.
	ID string
	// Source is ce-source, a URI reference naming where the event came from.
	Source string
	// Type is ce-type.
	Type string
	// Time is when the event happened according to its sender, or when it
	// was received if the sender did not say.
	Time time.Time
	// ReceivedAt is when ingest received it.
	ReceivedAt time.Time
	// Traceparent is the W3C trace context of the request, if it had a valid one.
	Traceparent string
	// Sealed holds the sealed credentials of the request, if any.
	Sealed string
	// Request is the request line, for sources that need it.
	Request Request
	// IDs is the value of HeaderIDs (FormatIDs): the ids the body holds
	// and the dedup id does not, for 'ccrelay trace'. Empty for none.
	IDs string
	// ContentType is the body's media type; ContentTypeJSON when empty.
	ContentType string
	// Kept are request headers stored as they arrived, under their own
	// names: a provider's signature, which Contact Pro checks again when
	// the relay delivers the body. The adapter bounds and checks them.
	Kept map[string]string
	// Body is the request body, byte for byte.
	Body []byte
}

// Msg returns the NATS message that stores e.
func (e *Event) Msg() *nats.Msg {
	// Every header holds one value: the values share one backing array
	// (each slice capped at its own element), so a message costs the map
	// and one array, not a slice allocation per header. Room for the
	// publisher's expected-stream header too.
	n := 14 + len(e.Kept)
	vals := make([]string, 0, n)
	h := make(nats.Header, n)
	// Direct map writes keep the canonical spelling of the contract
	// (ce-id rather than Ce-Id); nats.Header.Set would canonicalise.
	set := func(k, v string) {
		vals = append(vals, v)
		i := len(vals)
		h[k] = vals[i-1 : i : i]
	}
	set(HeaderMsgID, e.ID)
	set(HeaderSpecVersion, CloudEventsVersion)
	set(HeaderID, e.ID)
	set(HeaderSource, e.Source)
	set(HeaderType, e.Type)
	set(HeaderTime, e.Time.UTC().Format(time.RFC3339Nano))
	if e.ContentType != "" {
		set(HeaderContentType, e.ContentType)
	} else {
		set(HeaderContentType, ContentTypeJSON)
	}
	for k, v := range e.Kept {
		set(k, v)
	}
	if !e.ReceivedAt.IsZero() {
		set(HeaderReceivedAt, e.ReceivedAt.UTC().Format(time.RFC3339Nano))
	}
	if e.Traceparent != "" {
		set(HeaderTraceparent, e.Traceparent)
	}
	if e.Sealed != "" {
		set(HeaderSealed, e.Sealed)
	}
	if e.IDs != "" {
		set(HeaderIDs, e.IDs)
	}
	for _, kv := range [...][2]string{{HeaderRequestMethod, e.Request.Method}, {HeaderRequestPath, e.Request.Path}, {HeaderRequestQuery, e.Request.Query}} {
		if kv[1] != "" {
			set(kv[0], kv[1])
		}
	}
	return &nats.Msg{Subject: e.Subject, Header: h, Data: e.Body}
}

// ValidTraceparent reports whether v is a W3C traceparent of version 00
// (https://www.w3.org/TR/trace-context/#traceparent-header): only such values
// are passed on, so a client cannot smuggle arbitrary text into headers.
func ValidTraceparent(v string) bool {
	// 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>
	if len(v) != 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return false
	}
	if v[:2] != "00" {
		return false
	}
	for i, c := range []byte(v) {
		if i == 2 || i == 35 || i == 52 {
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	// All-zero trace and parent ids are invalid by the spec.
	return strings.Trim(v[3:35], "0") != "" && strings.Trim(v[36:52], "0") != ""
}

// Headers a dead letter adds to the original message's headers.
const (
	HeaderDLQProcessor  = "Ccrelay-Processor"
	HeaderDLQError      = "Ccrelay-Error"
	HeaderDLQDeliveries = "Ccrelay-Deliveries"
	HeaderDLQSubject    = "Ccrelay-Original-Subject"
	HeaderDLQSeq        = "Ccrelay-Original-Seq"
	HeaderDLQFailedAt   = "Ccrelay-Failed-At"
	// HeaderDLQBodyOmitted is set, to the body's length, on a dead letter
	// stored without its body: body and headers together were over the
	// server's max_payload (an event published by hand near the limit).
	// The body stays in the events stream, at Ccrelay-Original-Seq.
	HeaderDLQBodyOmitted = "Ccrelay-Body-Omitted"
)
