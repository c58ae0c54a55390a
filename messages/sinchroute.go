package messages

import (
	"bytes"
	"encoding/binary"
	"strings"
	"time"
	"unicode/utf8"
)

// SinchRoute is what ingest needs of a Sinch callback to store it: where it
// goes, under which dedup id, and when it happened.
type SinchRoute struct {
	Trigger SinchTrigger
	// Known reports whether Trigger is one ccrelay knows by name.
	Known bool
	AppID string
	// ID is the dedup id (SinchCallback.DedupID).
	ID string
	// Conversation is the conversation key (SinchCallback.SinchConversation).
	Conversation string
	// ContactID and ConversationID are the Sinch contact and conversation
	// of a message or a delivery report, for HeaderIDs; empty otherwise.
	ContactID, ConversationID string
	// Time is SinchCallback.Time.
	Time time.Time
	// Media reports whether the callback is an inbound media message
	// (SinchInboundMessage.Media is set): the one kind the attachments
	// processor cannot tell from the subject.
	Media bool
}

// Route is the callback's SinchRoute for service (the {service} of the
// URL, see DedupID); body is the body it was decoded from.
func (c *SinchCallback) Route(service string, body []byte) SinchRoute {
	var contact, conv string
	switch {
	case c.Message != nil:
		contact, conv = c.Message.ContactID, c.Message.ConversationID
	case c.DeliveryReport != nil:
		contact, conv = c.DeliveryReport.ContactID, c.DeliveryReport.ConversationID
	}
	return SinchRoute{
		Trigger:        c.Trigger,
		Known:          c.Known,
		AppID:          c.AppID,
		ID:             c.DedupID(service, body),
		Conversation:   c.SinchConversation(),
		Time:           c.Time(),
		ContactID:      contact,
		ConversationID: conv,
		Media:          c.Message.Media() != nil,
	}
}

// RouteSinchCallback returns what DecodeSinchCallback(body) would give
// ingest for service, the same route or the same error, at a fraction of
// its cost for the callbacks Sinch sends: one pass over the body that
// reads only the fields a route is made of, where encoding/json decodes
// every field (a fifth of ingest's CPU). A body the pass is not certain of
// (escaped or case-folded keys, duplicate keys, values of unexpected
// types, unknown trigger keys, anything to refuse) goes to
// DecodeSinchCallback, which decides. FuzzRouteSinchCallback holds the two
// to the same answers.
func RouteSinchCallback(service string, body []byte) (SinchRoute, error) {
	if r, ok := scanSinchRoute(service, body); ok {
		return r, nil
	}
	cb, err := DecodeSinchCallback(body)
	if err != nil {
		return SinchRoute{}, err
	}
	return cb.Route(service, body), nil
}

// sinchRouteKeys are the keys a route is read from, where
// DecodeSinchCallback refuses one spelt twice: every top-level key, and
// the known names of the message, the delivery report, their channel
// identity and the contact message. The one pass leaves any body with
// such a repeat to DecodeSinchCallback; other repeats (inside a text, an
// unknown payload) feed no id, subject or partition, and encoding/json
// reads them the same way in every process.
var sinchRouteKeys = keyScope{
	check: func(path [][]byte) ([]string, bool) {
		switch len(path) {
		case 0:
			return nil, true
		case 1:
			switch {
			case foldEqual(path[0], "message"):
				return inboundFields, false
			case foldEqual(path[0], "message_delivery_report"):
				return deliveryFields, false
			}
		case 2:
			switch {
			case foldEqual(path[1], "channel_identity"):
				return identityFields, false
			case foldEqual(path[1], "contact_message"):
				return contactMessageFields, false
			}
		}
		return nil, false
	},
	descend: func(path [][]byte, key []byte) bool {
		switch len(path) {
		case 0:
			return foldEqual(key, "message") || foldEqual(key, "message_delivery_report")
		case 1:
			return foldEqual(key, "channel_identity") ||
				foldEqual(path[0], "message") && foldEqual(key, "contact_message")
		}
		return false
	},
}

// sinchTopKeys are the top-level keys a route is read from: the envelope,
// the two typed payloads and the other known triggers, as spelt on the wire.
var sinchTopKeys = [...]struct {
	key     string
	trigger SinchTrigger
}{
	{"app_id", ""}, {"project_id", ""}, {"accepted_time", ""}, {"event_time", ""}, {"message_metadata", ""}, {"correlation_id", ""},
	{"message", TriggerMessageInbound},
	{"message_delivery_report", TriggerMessageDelivery},
	{"message_redaction", TriggerMessageRedaction},
	{"message_submit_notification", TriggerMessageSubmit},
	{"event", TriggerEventInbound},
	{"event_delivery_report", TriggerEventDelivery},
	{"conversation_start_notification", TriggerConversationStart},
	{"conversation_stop_notification", TriggerConversationStop},
	{"conversation_delete_notification", TriggerConversationDelete},
	{"contact_create_notification", TriggerContactCreate},
	{"contact_delete_notification", TriggerContactDelete},
	{"contact_merge_notification", TriggerContactMerge},
	{"contact_update_notification", TriggerContactUpdate},
	{"duplicated_contact_identities_notification", TriggerContactDuplication},
	{"capability_notification", TriggerCapability},
	{"opt_in_notification", TriggerOptIn},
	{"opt_out_notification", TriggerOptOut},
	{"channel_event_notification", TriggerChannelEvent},
	{"smart_conversation_notification", TriggerSmartConversations},
	{"unsupported_callback", TriggerUnsupported},
}

// The JSON names of the structs DecodeSinchCallback decodes the typed
// payloads into.
var (
	inboundFields  = []string{"id", "direction", "contact_message", "channel_identity", "conversation_id", "contact_id", "metadata", "accept_time", "sender_id", "processing_mode", "injected"}
	deliveryFields = []string{"message_id", "conversation_id", "status", "channel_identity", "contact_id", "reason", "metadata", "processing_mode"}
	identityFields = []string{"channel", "identity", "app_id"}
	// Of a contact message a route reads only whether it is a media
	// message; the other names are here so that case-folded spellings of
	// them are left to encoding/json too.
	contactMessageFields = []string{"media_message", "text_message", "choice_response_message", "location_message", "media_card_message",
		"fallback_message", "product_response_message", "channel_specific_message", "reply_to"}
)

// routeScan is one pass over a callback body. Its methods return false
// when the body is invalid JSON or holds something the pass leaves to
// DecodeSinchCallback.
type routeScan struct {
	b []byte
	i int
}

// payloadIDs are the ids a route reads of a message or a delivery report.
type payloadIDs struct {
	id, status, contact, conversation, channel, identity string
	media                                                bool
	// reason is a delivery report's reason as sent, null included.
	reason []byte
}

// scanSinchRoute reads the route for service of a callback that carries
// only keys Sinch sends, spelt as Sinch spells them, each once, with
// values of the documented types, and that DecodeSinchCallback would
// accept.
func scanSinchRoute(service string, body []byte) (SinchRoute, bool) {
	c, ok := scanSinchCallback(body)
	if !ok {
		return SinchRoute{}, false
	}
	r := SinchRoute{Trigger: c.trigger, Known: true, AppID: c.appID, Time: c.time(), Media: c.ids.media}
	switch r.Trigger {
	case TriggerMessageInbound:
		r.ID = sinchInboundID(service, c.ids.id)
	case TriggerMessageDelivery:
		r.ID = sinchDeliveryID(service, c.ids.id, c.ids.status, c.ids.channel)
	default:
		r.ID = sinchDigestID(service, r.Trigger, body)
	}
	r.Conversation = sinchConversation(c.appID, c.ids.contact, c.ids.conversation, c.ids.channel, c.ids.identity)
	r.ContactID, r.ConversationID = c.ids.contact, c.ids.conversation
	return r, true
}

// scannedCallback is what one pass reads of a callback.
type scannedCallback struct {
	trigger         SinchTrigger
	appID           string
	accepted, event []byte // RFC 3339 text, parsed once at the end
	ids             payloadIDs
}

// time is SinchCallback.Time.
func (c *scannedCallback) time() time.Time {
	if t := parseTimestamp(c.event); !t.IsZero() {
		return t
	}
	return parseTimestamp(c.accepted)
}

// scanSinchCallback is the one pass of scanSinchRoute and
// DecodeSinchDelivery. It answers false for anything it is not certain
// DecodeSinchCallback accepts and reads as it does.
func scanSinchCallback(body []byte) (scannedCallback, bool) {
	s := routeScan{b: body}
	var (
		c     scannedCallback
		seen  uint32
		found int
	)
	s.ws()
	if s.peek() != '{' {
		return c, false
	}
	s.i++
	ok := s.members(func(key []byte) bool {
		k := -1
		for i := range sinchTopKeys {
			if sinchTopKeys[i].key == string(key) {
				k = i
				break
			}
		}
		// An unknown key may be a new trigger, or a known one in another
		// case; a repeated key is decided by the last one. Both are
		// DecodeSinchCallback's to judge.
		if k < 0 || seen&(1<<k) != 0 {
			return false
		}
		seen |= 1 << k
		switch t := sinchTopKeys[k].trigger; {
		case string(key) == "app_id":
			var ok bool
			c.appID, ok = s.text()
			return ok
		case string(key) == "accepted_time":
			return s.timestamp(&c.accepted)
		case string(key) == "event_time":
			return s.timestamp(&c.event)
		case t == "":
			return s.skip(0)
		case s.null():
			return true
		case s.peek() != '{':
			return false
		default:
			found++
			c.trigger = t
			switch t {
			case TriggerMessageInbound:
				return s.object(inboundFields, &c.ids, (*routeScan).inboundField)
			case TriggerMessageDelivery:
				return s.object(deliveryFields, &c.ids, (*routeScan).deliveryField)
			}
			return s.skip(0)
		}
	})
	if !ok || !s.end() || found != 1 || CheckToken("app_id", c.appID) != nil {
		return scannedCallback{}, false
	}
	switch c.trigger {
	case TriggerMessageInbound:
		if c.ids.id == "" || checkID("", c.ids.id) != nil {
			return scannedCallback{}, false
		}
	case TriggerMessageDelivery:
		if c.ids.id == "" || c.ids.status == "" || checkID("", c.ids.id) != nil || checkID("", c.ids.status) != nil || checkID("", c.ids.channel) != nil {
			return scannedCallback{}, false
		}
	}
	return c, true
}

// object reads an object encoding/json decodes into a struct whose JSON
// names are names, handing each known key to field. A key encoding/json
// would match to a name only by folding case, or a name given twice, is
// left to DecodeSinchCallback.
func (s *routeScan) object(names []string, ids *payloadIDs, field func(*routeScan, string, *payloadIDs) bool) bool {
	if s.peek() != '{' {
		return false
	}
	s.i++
	var seen uint32
	return s.members(func(key []byte) bool {
		k := -1
		for i, n := range names {
			if n == string(key) {
				k = i
				break
			}
		}
		if k < 0 {
			for _, n := range names {
				if strings.EqualFold(n, string(key)) {
					return false
				}
			}
			return s.skip(0)
		}
		if seen&(1<<k) != 0 {
			return false
		}
		seen |= 1 << k
		return field(s, names[k], ids)
	})
}

func (s *routeScan) inboundField(name string, ids *payloadIDs) bool {
	var ok bool
	switch name {
	case "id":
		ids.id, ok = s.text()
	case "accept_time":
		ok = s.strictTime()
	case "contact_message":
		if s.null() {
			return true
		}
		ok = s.object(contactMessageFields, ids, (*routeScan).contactMessageField)
	default:
		ok = s.conversationField(name, ids)
	}
	return ok
}

func (s *routeScan) contactMessageField(name string, ids *payloadIDs) bool {
	if name != "media_message" {
		return s.skip(0)
	}
	if s.null() {
		return true
	}
	// Any other value than an object is encoding/json's to judge.
	ids.media = s.peek() == '{'
	return ids.media && s.skip(0)
}

func (s *routeScan) deliveryField(name string, ids *payloadIDs) bool {
	var ok bool
	switch name {
	case "message_id":
		ids.id, ok = s.text()
	case "status":
		ids.status, ok = s.text()
	case "reason":
		start := s.i
		ok = s.skip(0)
		ids.reason = s.b[start:s.i]
	default:
		ok = s.conversationField(name, ids)
	}
	return ok
}

// conversationField reads the fields a message and a delivery report share
// (those of the conversation key) and passes over any other.
func (s *routeScan) conversationField(name string, ids *payloadIDs) bool {
	var ok bool
	switch name {
	case "contact_id":
		ids.contact, ok = s.text()
	case "conversation_id":
		ids.conversation, ok = s.text()
	case "channel_identity":
		ok = s.object(identityFields, ids, (*routeScan).identityField)
	default:
		ok = s.skip(0)
	}
	return ok
}

func (s *routeScan) identityField(name string, ids *payloadIDs) bool {
	var ok bool
	switch name {
	case "channel":
		ids.channel, ok = s.text()
	case "identity":
		ids.identity, ok = s.text()
	default:
		ok = s.skip(0)
	}
	return ok
}

// members reads the members of an object whose '{' was consumed, calling
// member with each key, positioned at its value.
func (s *routeScan) members(member func(key []byte) bool) bool {
	s.ws()
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		s.ws()
		start, end, escaped, ok := s.str()
		// An escaped key may spell a known one: encoding/json decides.
		if !ok || escaped {
			return false
		}
		key := s.b[start:end]
		s.ws()
		if s.peek() != ':' {
			return false
		}
		s.i++
		s.ws()
		if !member(key) {
			return false
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

func (s *routeScan) end() bool {
	s.ws()
	return s.i == len(s.b)
}

func (s *routeScan) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *routeScan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *routeScan) null() bool {
	if bytes.HasPrefix(s.b[s.i:], []byte("null")) {
		s.i += 4
		return true
	}
	return false
}

// text reads a string without escapes, in valid UTF-8: the value
// encoding/json would decode, byte for byte. Anything else is not ours.
func (s *routeScan) text() (string, bool) {
	start, end, escaped, ok := s.str()
	if !ok || escaped || !utf8.Valid(s.b[start:end]) {
		return "", false
	}
	return string(s.b[start:end]), true
}

// str reads a string and returns where its contents are.
func (s *routeScan) str() (start, end int, escaped, ok bool) {
	if s.peek() != '"' {
		return 0, 0, false, false
	}
	s.i++
	start = s.i
	// Most strings hold no escape: find the closing quote at memchr speed.
	if q := bytes.IndexByte(s.b[start:], '"'); q >= 0 && bytes.IndexByte(s.b[start:start+q], '\\') < 0 {
		if hasControl(s.b[start : start+q]) {
			return 0, 0, false, false
		}
		s.i = start + q + 1
		return start, start + q, false, true
	}
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			end = s.i
			s.i++
			return start, end, escaped, true
		case c < 0x20:
			return 0, 0, false, false
		case c == '\\':
			escaped = true
			s.i++
			if s.i >= len(s.b) {
				return 0, 0, false, false
			}
			switch s.b[s.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				if s.i+4 >= len(s.b) {
					return 0, 0, false, false
				}
				for _, h := range s.b[s.i+1 : s.i+5] {
					if !isHex(h) {
						return 0, 0, false, false
					}
				}
				s.i += 5
			default:
				return 0, 0, false, false
			}
		default:
			s.i++
		}
	}
	return 0, 0, false, false
}

// hasControl reports whether b holds a byte below 0x20, eight bytes at a
// time: message texts are most of a callback's bytes.
func hasControl(b []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for len(b) >= 8 {
		x := binary.LittleEndian.Uint64(b)
		// A byte below 0x20 borrows into its high bit; bytes of 0x80 and
		// above are excluded by ^x.
		if (x-0x20*ones)&^x&highs != 0 {
			return true
		}
		b = b[8:]
	}
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return false
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// timestamp reads an envelope time as Timestamp does: the text of a
// string, else nothing (the zero time).
func (s *routeScan) timestamp(t *[]byte) bool {
	if s.peek() != '"' {
		*t = nil
		return s.skip(0)
	}
	start, end, escaped, ok := s.str()
	if !ok || escaped || !utf8.Valid(s.b[start:end]) {
		return false
	}
	*t = s.b[start:end]
	return true
}

// parseTimestamp is Timestamp's reading of an RFC 3339 text: the zero time
// when it is none.
func parseTimestamp(b []byte) time.Time {
	if len(b) == 0 {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return time.Time{}
	}
	return t
}

// strictTime checks a value encoding/json decodes into a time.Time, whose
// parse errors refuse the whole callback.
func (s *routeScan) strictTime() bool {
	start := s.i
	if !s.skip(0) {
		return false
	}
	var t time.Time
	return t.UnmarshalJSON(s.b[start:s.i]) == nil
}

// maxRouteDepth bounds the nesting the pass follows; deeper bodies are left
// to encoding/json.
const maxRouteDepth = 64

// skip passes over one value, checking its syntax as encoding/json does.
func (s *routeScan) skip(depth int) bool {
	if depth > maxRouteDepth {
		return false
	}
	switch c := s.peek(); {
	case c == '"':
		_, _, _, ok := s.str()
		return ok
	case c == '{':
		s.i++
		return s.members(func([]byte) bool { return s.skip(depth + 1) })
	case c == '[':
		s.i++
		s.ws()
		if s.peek() == ']' {
			s.i++
			return true
		}
		for {
			s.ws()
			if !s.skip(depth + 1) {
				return false
			}
			s.ws()
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				return true
			default:
				return false
			}
		}
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	return false
}

func (s *routeScan) literal(lit string) bool {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		return false
	}
	s.i += len(lit)
	return true
}

// number reads a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *routeScan) number() bool {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return false
	}
	if s.peek() == '.' {
		s.i++
		if !s.digits() {
			return false
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

func (s *routeScan) digits() bool {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}
