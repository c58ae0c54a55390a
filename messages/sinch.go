package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// SinchTrigger is the name of a Sinch Conversation API callback trigger, as
// configured on the webhook (MESSAGE_INBOUND, MESSAGE_DELIVERY, ...).
type SinchTrigger string

// Triggers ccrelay knows by name. A callback whose trigger key is none of
// these is still stored, under the key itself (see DecodeSinchCallback).
const (
	TriggerMessageInbound     SinchTrigger = "MESSAGE_INBOUND"
	TriggerMessageRedaction   SinchTrigger = "MESSAGE_INBOUND_SMART_CONVERSATION_REDACTION"
	TriggerMessageSubmit      SinchTrigger = "MESSAGE_SUBMIT"
	TriggerMessageDelivery    SinchTrigger = "MESSAGE_DELIVERY"
	TriggerEventInbound       SinchTrigger = "EVENT_INBOUND"
	TriggerEventDelivery      SinchTrigger = "EVENT_DELIVERY"
	TriggerConversationStart  SinchTrigger = "CONVERSATION_START"
	TriggerConversationStop   SinchTrigger = "CONVERSATION_STOP"
	TriggerConversationDelete SinchTrigger = "CONVERSATION_DELETE"
	TriggerContactCreate      SinchTrigger = "CONTACT_CREATE"
	TriggerContactDelete      SinchTrigger = "CONTACT_DELETE"
	TriggerContactMerge       SinchTrigger = "CONTACT_MERGE"
	TriggerContactUpdate      SinchTrigger = "CONTACT_UPDATE"
	TriggerContactDuplication SinchTrigger = "CONTACT_IDENTITIES_DUPLICATION"
	TriggerCapability         SinchTrigger = "CAPABILITY"
	TriggerOptIn              SinchTrigger = "OPT_IN"
	TriggerOptOut             SinchTrigger = "OPT_OUT"
	TriggerChannelEvent       SinchTrigger = "CHANNEL_EVENT"
	TriggerSmartConversations SinchTrigger = "SMART_CONVERSATIONS"
	TriggerUnsupported        SinchTrigger = "UNSUPPORTED"
)

// SinchOtherTrigger is the trigger of a callback that carries several keys
// ccrelay does not know, so that none of them can be told to be the trigger.
const SinchOtherTrigger SinchTrigger = "OTHER"

// SinchEnvelope holds the fields every callback carries beside its
// trigger payload. AppID is empty in project-level callbacks (contacts,
// capability checks): Sinch sends "app_id": "".
type SinchEnvelope struct {
	AppID           string    `json:"app_id"`
	ProjectID       string    `json:"project_id"`
	AcceptedTime    Timestamp `json:"accepted_time"`
	EventTime       Timestamp `json:"event_time"`
	MessageMetadata string    `json:"message_metadata"`
	CorrelationID   string    `json:"correlation_id"`
}

// Timestamp is a time a sender may leave empty, format loosely, or send as
// something else entirely. ccrelay needs callbacks' times only to order
// them, so a time it cannot read is the zero time, never a reason to refuse
// the callback.
type Timestamp struct{ time.Time }

// UnmarshalJSON reads an RFC 3339 string and ignores anything else.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	t.Time = time.Time{}
	// A time is a plain quoted string (no escapes): read it as it is,
	// without a second decoder; anything else goes through encoding/json.
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' && bytes.IndexByte(b, '\\') < 0 {
		if v, err := time.Parse(time.RFC3339Nano, string(b[1:len(b)-1])); err == nil {
			t.Time = v
		}
		return nil
	}
	var s string
	if json.Unmarshal(b, &s) == nil {
		if v, err := time.Parse(time.RFC3339Nano, s); err == nil {
			t.Time = v
		}
	}
	return nil
}

// SinchCallback is a Sinch Conversation API callback.
type SinchCallback struct {
	SinchEnvelope

	// Trigger is derived from the one top-level key that carries the
	// payload. Known triggers use their documented name; an unknown key is
	// used upper-cased as it is.
	Trigger SinchTrigger `json:"-"`
	// Known reports whether Trigger is one ccrelay knows by name.
	Known bool `json:"-"`

	// Message is set for MESSAGE_INBOUND.
	Message *SinchInboundMessage `json:"-"`
	// DeliveryReport is set for MESSAGE_DELIVERY.
	DeliveryReport *SinchDeliveryReport `json:"-"`
	// Payload is the raw trigger payload of every trigger but the two that
	// are decoded into Message and DeliveryReport.
	Payload json.RawMessage `json:"-"`
}

// Time is when the callback's event happened: event_time, else accepted_time,
// else the zero time.
func (c *SinchCallback) Time() time.Time {
	if !c.EventTime.IsZero() {
		return c.EventTime.Time
	}
	return c.AcceptedTime.Time
}

// DedupID is the callback's dedup id for service, the {service} of
// /v1/sinch/{service} (the subject's service token). Every one starts with
// "sinch:<service>:" and names what it identifies, so no other source, no
// other service and no other kind of callback can produce it:
//
//   - MESSAGE_INBOUND: "inbound:" + the message id, which Sinch makes
//     unique (a ULID) and repeats only when it retries the same callback;
//   - MESSAGE_DELIVERY: "delivery:" + message id, status and channel, so
//     each status of a message on each channel is kept once (a message
//     that falls back from WhatsApp to SMS is QUEUED_ON_CHANNEL twice, on
//     two channels);
//   - every other trigger: the trigger + ":" + the body's SHA-256, as such
//     callbacks carry no id of their own: a retry is byte-identical, and
//     two distinct events differ somewhere in the body.
//
// The service is part of it because one body can reach two services (an
// app's webhooks point at both, or whoever holds one service's secret
// sends another's callback there first), and each must store it. Processors
// derive the same id from the subject, which names the service, and the
// body. An empty service gives the id of callbacks stored before subjects
// named their service ("sinch:inbound:<message id>", ...), so their bodies
// still derive the ids they were stored under.
func (c *SinchCallback) DedupID(service string, body []byte) string {
	switch {
	case c.Message != nil:
		return sinchInboundID(service, c.Message.ID)
	case c.DeliveryReport != nil:
		r := c.DeliveryReport
		return sinchDeliveryID(service, r.MessageID, string(r.Status), r.ChannelIdentity.Channel)
	}
	return sinchDigestID(service, c.Trigger, body)
}

// sinchIDPrefix starts the ids of service's callbacks. The service is
// escaped as in its subject token, so no ':' in it can make one service's
// ids another's.
func sinchIDPrefix(service string) string {
	if service == "" {
		return "sinch:"
	}
	return "sinch:" + EscapeToken(service) + ":"
}

func sinchInboundID(service, messageID string) string {
	return sinchIDPrefix(service) + "inbound:" + IDPart(messageID)
}

func sinchDeliveryID(service, messageID, status, channel string) string {
	return sinchIDPrefix(service) + "delivery:" + IDPart(messageID) + ":" + IDPart(status) + ":" + IDPart(channel)
}

// IDPart is v as one part of a dedup id. ':' separates the parts, so a ':'
// in a value the sender chose (and the '%' that escapes it) is escaped:
// else a message id "M:QUEUED_ON_CHANNEL:WHATSAPP" reported DELIVERED and
// a message "M" reported QUEUED_ON_CHANNEL on channel
// "WHATSAPP:DELIVERED:WHATSAPP" would share one id, and the second would
// be answered as a duplicate and not stored. No Sinch message id (a
// ULID), status or channel holds either byte, so theirs stand as they are
// and ids stored by earlier releases are derived again unchanged.
func IDPart(v string) string {
	if !strings.ContainsAny(v, ":%") {
		return v
	}
	return idPartEscaper.Replace(v)
}

var idPartEscaper = strings.NewReplacer("%", "%25", ":", "%3A")

func sinchDigestID(service string, t SinchTrigger, body []byte) string {
	return sinchIDPrefix(service) + strings.ToLower(string(t)) + ":" + BodyDigest(body)
}

// MaxIDBytes bounds every id ccrelay takes from a body into a dedup id, a
// subject token or a key: Sinch message ids are 26-character ULIDs, Contact
// Pro ids 36-character GUIDs, EventBridge ids UUIDs.
const MaxIDBytes = 128

// SinchChannelIdentity identifies a contact on one channel.
type SinchChannelIdentity struct {
	Channel  string `json:"channel"`
	Identity string `json:"identity"`
	AppID    string `json:"app_id"`
}

// SinchInboundMessage is the payload of MESSAGE_INBOUND.
type SinchInboundMessage struct {
	ID              string               `json:"id"`
	Direction       string               `json:"direction"`
	ContactMessage  *SinchContactMessage `json:"contact_message"`
	ChannelIdentity SinchChannelIdentity `json:"channel_identity"`
	ConversationID  string               `json:"conversation_id"`
	ContactID       string               `json:"contact_id"`
	Metadata        string               `json:"metadata"`
	AcceptTime      time.Time            `json:"accept_time"`
	SenderID        string               `json:"sender_id"`
	ProcessingMode  string               `json:"processing_mode"`
	Injected        bool                 `json:"injected"`
}

// Media is the media message's content, or nil for any other kind of
// message (or none).
func (m *SinchInboundMessage) Media() *SinchMedia {
	if m == nil || m.ContactMessage == nil {
		return nil
	}
	return m.ContactMessage.MediaMessage
}

// SinchContactMessage is what a contact sent: exactly one of the kinds is set
// in a well-formed message; Kind tells which.
type SinchContactMessage struct {
	TextMessage            *SinchText            `json:"text_message,omitempty"`
	MediaMessage           *SinchMedia           `json:"media_message,omitempty"`
	ChoiceResponseMessage  *SinchChoiceResponse  `json:"choice_response_message,omitempty"`
	LocationMessage        *SinchLocation        `json:"location_message,omitempty"`
	MediaCardMessage       *SinchMediaCard       `json:"media_card_message,omitempty"`
	FallbackMessage        *SinchFallback        `json:"fallback_message,omitempty"`
	ProductResponseMessage *SinchProductResponse `json:"product_response_message,omitempty"`
	ChannelSpecificMessage json.RawMessage       `json:"channel_specific_message,omitempty"`
	ReplyTo                *SinchReplyTo         `json:"reply_to,omitempty"`
}

// Contact message kinds as returned by SinchContactMessage.Kind.
const (
	KindText            = "text"
	KindMedia           = "media"
	KindChoiceResponse  = "choice_response"
	KindLocation        = "location"
	KindMediaCard       = "media_card"
	KindFallback        = "fallback"
	KindProductResponse = "product_response"
	KindChannelSpecific = "channel_specific"
	// KindOther is a kind ccrelay does not know yet; the message is stored
	// all the same.
	KindOther = "other"
)

// Kind names the kind of message that is set.
func (m *SinchContactMessage) Kind() string {
	switch {
	case m.TextMessage != nil:
		return KindText
	case m.MediaMessage != nil:
		return KindMedia
	case m.ChoiceResponseMessage != nil:
		return KindChoiceResponse
	case m.LocationMessage != nil:
		return KindLocation
	case m.MediaCardMessage != nil:
		return KindMediaCard
	case m.FallbackMessage != nil:
		return KindFallback
	case m.ProductResponseMessage != nil:
		return KindProductResponse
	case len(m.ChannelSpecificMessage) > 0 && !bytes.Equal(m.ChannelSpecificMessage, []byte("null")):
		return KindChannelSpecific
	}
	return KindOther
}

// SinchText is a text message.
type SinchText struct {
	Text string `json:"text"`
}

// SinchMedia is a media message: a file the contact sent, held by the
// channel at URL for a limited time.
type SinchMedia struct {
	URL              string `json:"url"`
	ThumbnailURL     string `json:"thumbnail_url,omitempty"`
	FilenameOverride string `json:"filename_override,omitempty"`
}

// SinchChoiceResponse is the contact's pick from a choice message.
type SinchChoiceResponse struct {
	MessageID    string `json:"message_id"`
	PostbackData string `json:"postback_data"`
}

// SinchCoordinates is a point on Earth.
type SinchCoordinates struct {
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
}

// SinchLocation is a location the contact shared.
type SinchLocation struct {
	Coordinates SinchCoordinates `json:"coordinates"`
	Title       string           `json:"title,omitempty"`
	Label       string           `json:"label,omitempty"`
}

// SinchMediaCard is a media message with a caption.
type SinchMediaCard struct {
	URL     string `json:"url"`
	Caption string `json:"caption,omitempty"`
}

// SinchReason explains a failure, in fallback messages and delivery reports.
type SinchReason struct {
	Code        string `json:"code"`
	Description string `json:"description,omitempty"`
	SubCode     string `json:"sub_code,omitempty"`
}

// UnmarshalJSON takes the documented object, and also a bare string, which
// Sinch's documented SMS, MMS and Viber Business delivery reports carry as
// "reason": "" (a non-empty string is taken as the code).
func (r *SinchReason) UnmarshalJSON(b []byte) error {
	*r = SinchReason{}
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &r.Code)
	}
	type plain SinchReason
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		// Not an object either: the reason is not worth refusing a
		// delivery report for.
		return nil
	}
	*r = SinchReason(p)
	return nil
}

// SinchFallback is a channel message the Conversation API could not map.
type SinchFallback struct {
	RawMessage string       `json:"raw_message,omitempty"`
	Reason     *SinchReason `json:"reason,omitempty"`
}

// SinchProductItem is one product of a product response.
type SinchProductItem struct {
	ID          string  `json:"id"`
	Marketplace string  `json:"marketplace,omitempty"`
	Quantity    int     `json:"quantity,omitempty"`
	ItemPrice   float64 `json:"item_price,omitempty"`
	Currency    string  `json:"currency,omitempty"`
}

// SinchProductResponse is an order or product enquiry sent from a catalogue.
type SinchProductResponse struct {
	Products  []SinchProductItem `json:"products"`
	Title     string             `json:"title,omitempty"`
	CatalogID string             `json:"catalog_id,omitempty"`
}

// SinchReplyTo names the message a contact replied to.
type SinchReplyTo struct {
	MessageID string `json:"message_id"`
}

// SinchDeliveryStatus is the status of a delivery report.
type SinchDeliveryStatus string

// Delivery statuses documented by Sinch.
const (
	StatusQueuedOnChannel  SinchDeliveryStatus = "QUEUED_ON_CHANNEL"
	StatusDelivered        SinchDeliveryStatus = "DELIVERED"
	StatusRead             SinchDeliveryStatus = "READ"
	StatusFailed           SinchDeliveryStatus = "FAILED"
	StatusSwitchingChannel SinchDeliveryStatus = "SWITCHING_CHANNEL"
)

// SinchDeliveryReport is the payload of MESSAGE_DELIVERY.
type SinchDeliveryReport struct {
	MessageID       string               `json:"message_id"`
	ConversationID  string               `json:"conversation_id"`
	Status          SinchDeliveryStatus  `json:"status"`
	ChannelIdentity SinchChannelIdentity `json:"channel_identity"`
	ContactID       string               `json:"contact_id"`
	Reason          *SinchReason         `json:"reason,omitempty"`
	Metadata        string               `json:"metadata"`
	ProcessingMode  string               `json:"processing_mode"`
}

// DecodeSinchCallback decodes a Sinch callback body. Unknown fields are
// ignored, a field of an unexpected type is left at its zero value, an empty
// app_id is a project-level callback, and a trigger key it does not know is
// kept as the trigger rather than rejected, so a new Sinch trigger is
// stored, not lost. It fails, with an error wrapping ErrInvalidPayload, only
// on what makes a callback impossible to store under the contract: a body
// that is not a JSON object, one with no trigger payload, or a message or
// delivery report without the ids its dedup id is made of (or with ids over
// MaxIDBytes), or one that spells a key a route is read from twice, in
// any case (see sinchRouteKeys). Keys match as encoding/json matches them
// (case-insensitively).
//
// A callback of a known trigger is decoded in one pass over the body; only
// callbacks without one are scanned again for unknown trigger keys.
func DecodeSinchCallback(body []byte) (*SinchCallback, error) {
	if !isObject(body) {
		if json.Valid(body) {
			return nil, &FieldError{Field: "callback", Problem: "must be a JSON object"}
		}
		return nil, explainSinch(body, errors.New("not JSON"))
	}
	var w sinchWire
	if err := json.Unmarshal(body, &w); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			return nil, explainSinch(body, err)
		}
		// A field of another type than documented: encoding/json decoded
		// everything else, and a field ccrelay needs is checked below.
	}
	if err := repeatedKey(body, sinchRouteKeys); err != nil {
		return nil, err
	}
	cb := &SinchCallback{SinchEnvelope: w.SinchEnvelope, Known: true}
	found := 0
	if w.Message != nil {
		found++
		cb.Trigger, cb.Message = TriggerMessageInbound, w.Message
	}
	if w.DeliveryReport != nil {
		found++
		cb.Trigger, cb.DeliveryReport = TriggerMessageDelivery, w.DeliveryReport
	}
	for _, r := range w.raw() {
		if len(r.raw) == 0 || isNull(r.raw) {
			continue
		}
		if !isObject(r.raw) {
			return nil, &FieldError{Field: r.key, Problem: "must be a JSON object"}
		}
		found++
		cb.Trigger, cb.Payload = r.t, r.raw
	}
	if err := CheckToken("app_id", cb.AppID); err != nil {
		return nil, err
	}
	switch {
	case found > 1:
		return nil, &FieldError{Field: "callback", Problem: "carries more than one trigger payload"}
	case found == 0:
		return unknownTrigger(body, cb)
	case cb.Message != nil:
		if err := checkInbound(cb.Message); err != nil {
			return nil, err
		}
	case cb.DeliveryReport != nil:
		if err := checkDeliveryReport(cb.DeliveryReport); err != nil {
			return nil, err
		}
	}
	return cb, nil
}

// sinchWire has a field for every known trigger key, so one Unmarshal finds
// the trigger and decodes the two typed payloads.
type sinchWire struct {
	SinchEnvelope

	Message        *SinchInboundMessage `json:"message"`
	DeliveryReport *SinchDeliveryReport `json:"message_delivery_report"`

	MessageRedaction  json.RawMessage `json:"message_redaction"`
	MessageSubmit     json.RawMessage `json:"message_submit_notification"`
	Event             json.RawMessage `json:"event"`
	EventDelivery     json.RawMessage `json:"event_delivery_report"`
	ConvStart         json.RawMessage `json:"conversation_start_notification"`
	ConvStop          json.RawMessage `json:"conversation_stop_notification"`
	ConvDelete        json.RawMessage `json:"conversation_delete_notification"`
	ContactCreate     json.RawMessage `json:"contact_create_notification"`
	ContactDelete     json.RawMessage `json:"contact_delete_notification"`
	ContactMerge      json.RawMessage `json:"contact_merge_notification"`
	ContactUpdate     json.RawMessage `json:"contact_update_notification"`
	ContactDuplicated json.RawMessage `json:"duplicated_contact_identities_notification"`
	Capability        json.RawMessage `json:"capability_notification"`
	OptIn             json.RawMessage `json:"opt_in_notification"`
	OptOut            json.RawMessage `json:"opt_out_notification"`
	ChannelEvent      json.RawMessage `json:"channel_event_notification"`
	SmartConversation json.RawMessage `json:"smart_conversation_notification"`
	Unsupported       json.RawMessage `json:"unsupported_callback"`
}

type rawTrigger struct {
	t   SinchTrigger
	key string
	raw json.RawMessage
}

func (w *sinchWire) raw() [18]rawTrigger {
	return [18]rawTrigger{
		{TriggerMessageRedaction, "message_redaction", w.MessageRedaction},
		{TriggerMessageSubmit, "message_submit_notification", w.MessageSubmit},
		{TriggerEventInbound, "event", w.Event},
		{TriggerEventDelivery, "event_delivery_report", w.EventDelivery},
		{TriggerConversationStart, "conversation_start_notification", w.ConvStart},
		{TriggerConversationStop, "conversation_stop_notification", w.ConvStop},
		{TriggerConversationDelete, "conversation_delete_notification", w.ConvDelete},
		{TriggerContactCreate, "contact_create_notification", w.ContactCreate},
		{TriggerContactDelete, "contact_delete_notification", w.ContactDelete},
		{TriggerContactMerge, "contact_merge_notification", w.ContactMerge},
		{TriggerContactUpdate, "contact_update_notification", w.ContactUpdate},
		{TriggerContactDuplication, "duplicated_contact_identities_notification", w.ContactDuplicated},
		{TriggerCapability, "capability_notification", w.Capability},
		{TriggerOptIn, "opt_in_notification", w.OptIn},
		{TriggerOptOut, "opt_out_notification", w.OptOut},
		{TriggerChannelEvent, "channel_event_notification", w.ChannelEvent},
		{TriggerSmartConversations, "smart_conversation_notification", w.SmartConversation},
		{TriggerUnsupported, "unsupported_callback", w.Unsupported},
	}
}

// isKnownKey reports whether encoding/json would match key to one of the
// envelope or trigger fields: it compares with bytes.EqualFold semantics,
// which is how encoding/json matches names.
func isKnownKey(key string) bool {
	for _, k := range [...]string{"app_id", "project_id", "accepted_time", "event_time", "message_metadata", "correlation_id",
		"message", "message_redaction", "message_submit_notification", "message_delivery_report", "event", "event_delivery_report",
		"conversation_start_notification", "conversation_stop_notification", "conversation_delete_notification",
		"contact_create_notification", "contact_delete_notification", "contact_merge_notification", "contact_update_notification",
		"duplicated_contact_identities_notification", "capability_notification", "opt_in_notification", "opt_out_notification",
		"channel_event_notification", "smart_conversation_notification", "unsupported_callback"} {
		if strings.EqualFold(key, k) {
			return true
		}
	}
	return false
}

// unknownTrigger finds the trigger of a callback that carries none ccrelay
// knows: the one other top-level key with a non-null value.
func unknownTrigger(body []byte, cb *SinchCallback) (*SinchCallback, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, malformed("callback", err)
	}
	var unknown []string
	for key, raw := range top {
		// An empty key cannot name a trigger (nor a subject token).
		if key == "" || isNull(raw) || isKnownKey(key) {
			continue
		}
		unknown = append(unknown, key)
	}
	cb.Known = false
	switch len(unknown) {
	case 0:
		return nil, &FieldError{Field: "callback", Problem: "has no trigger payload"}
	case 1:
		field := "trigger key " + fmt.Sprintf("%.32q", unknown[0])
		if err := CheckToken(field, strings.ToLower(unknown[0])); err != nil {
			return nil, err
		}
		// The trigger goes into the dedup id and ce-type, both headers.
		if err := checkText(field, unknown[0]); err != nil {
			return nil, err
		}
		cb.Trigger, cb.Payload = SinchTrigger(strings.ToUpper(unknown[0])), top[unknown[0]]
	default:
		cb.Trigger = SinchOtherTrigger
	}
	return cb, nil
}

// explainSinch turns a decoding failure into an error naming the field, by
// decoding the parts one by one. Only refused bodies take this path.
func explainSinch(body []byte, cause error) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return malformed("callback", err)
	}
	if top == nil {
		return &FieldError{Field: "callback", Problem: "must be a JSON object"}
	}
	// Envelope fields first, then payloads, so the answer does not depend
	// on map order.
	var probe SinchCallback
	for key, raw := range top {
		var dst any
		switch strings.ToLower(key) {
		case "app_id":
			dst = &probe.AppID
		case "project_id":
			dst = &probe.ProjectID
		case "accepted_time":
			dst = &probe.AcceptedTime
		case "event_time":
			dst = &probe.EventTime
		case "message_metadata":
			dst = &probe.MessageMetadata
		case "correlation_id":
			dst = &probe.CorrelationID
		default:
			continue
		}
		if json.Unmarshal(raw, dst) != nil {
			return &FieldError{Field: strings.ToLower(key), Problem: "has the wrong type or format"}
		}
	}
	for key, raw := range top {
		if isNull(raw) {
			continue
		}
		switch strings.ToLower(key) {
		case "message":
			if err := decodeChecked(raw, "message", checkInbound); err != nil {
				return err
			}
		case "message_delivery_report":
			if err := decodeChecked(raw, "message_delivery_report", checkDeliveryReport); err != nil {
				return err
			}
		}
	}
	return malformed("callback", cause)
}

// decodeChecked decodes one trigger payload and checks its required fields.
func decodeChecked[T any](raw json.RawMessage, what string, check func(*T) error) error {
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return malformed(what, err)
	}
	return check(&v)
}

// checkInbound checks what the dedup id of an inbound message is made of.
// The rest (what kind of message, its media URL) is the processors'
// business: a message ccrelay cannot act on is still stored.
func checkInbound(m *SinchInboundMessage) error {
	if m.ID == "" {
		return missing("message.id")
	}
	return checkID("message.id", m.ID)
}

func checkDeliveryReport(r *SinchDeliveryReport) error {
	if r.MessageID == "" {
		return missing("message_delivery_report.message_id")
	}
	if r.Status == "" {
		return missing("message_delivery_report.status")
	}
	if err := checkID("message_delivery_report.message_id", r.MessageID); err != nil {
		return err
	}
	if err := checkID("message_delivery_report.status", string(r.Status)); err != nil {
		return err
	}
	return checkID("message_delivery_report.channel_identity.channel", r.ChannelIdentity.Channel)
}

// checkID bounds an id that goes into a dedup id, a subject or a key, and
// refuses control characters and invalid UTF-8: a dedup id is also a NATS
// header value, where a CR or LF would end the header.
func checkID(field, v string) error {
	if len(v) > MaxIDBytes {
		return &FieldError{Field: field, Problem: fmt.Sprintf("is longer than %d bytes", MaxIDBytes)}
	}
	return checkText(field, v)
}

// checkText refuses control characters and invalid UTF-8 in a value that
// becomes a header.
func checkText(field, v string) error {
	if !utf8.ValidString(v) {
		return &FieldError{Field: field, Problem: "is not valid UTF-8"}
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] == 0x7f {
			return &FieldError{Field: field, Problem: "holds a control character"}
		}
	}
	return nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}

// Enumerations Sinch documents, for metric labels: a label takes a value
// from one of these or "other", never a value a caller chose, so no caller
// can create series without bound. From the Conversation API's
// ConversationChannel and ReasonCode enums (and the channel pages for
// VIBER, SINCH_CHAT and SINCH_PUSH).
var (
	SinchChannels = NewEnum("APPLEBC", "INSTAGRAM", "KAKAOTALK", "KAKAOTALKCHAT", "LINE", "MESSENGER", "MMS", "RCS", "SMS",
		"TELEGRAM", "VIBER", "VIBERBM", "WECHAT", "WHATSAPP", "SINCH_CHAT", "SINCH_PUSH")
	SinchDeliveryStatuses = NewEnum(string(StatusQueuedOnChannel), string(StatusDelivered), string(StatusRead),
		string(StatusFailed), string(StatusSwitchingChannel))
	SinchReasonCodes = NewEnum("BAD_REQUEST", "CHANNEL_BAD_CONFIGURATION", "CHANNEL_CONFIGURATION_MISSING", "CHANNEL_FAILURE",
		"CHANNEL_REJECT", "CONTACT_NOT_FOUND", "DELIVERY_REJECTED_DUE_TO_POLICY", "DELIVERY_TIMED_OUT", "INTERNAL_ERROR",
		"MEDIA_NOT_REACHABLE", "MEDIA_TOO_LARGE", "MEDIA_TYPE_UNSUPPORTED", "NO_CHANNELS_LEFT", "NO_CHANNEL_IDENTITY_FOR_CONTACT",
		"NO_PERMISSION", "NO_PROFILE_AVAILABLE", "OUTSIDE_ALLOWED_SENDING_WINDOW", "RATE_LIMITED",
		"RECIPIENT_INVALID_CHANNEL_IDENTITY", "RECIPIENT_NOT_OPTED_IN", "RECIPIENT_NOT_REACHABLE",
		"TEMPLATE_INSUFFICIENT_PARAMETERS", "TEMPLATE_NON_EXISTING_LANGUAGE_OR_VERSION", "TEMPLATE_NOT_FOUND", "UNKNOWN",
		"UNKNOWN_APP", "UNSUPPORTED_OPERATION")
)

// Enum is a closed set of label values.
type Enum map[string]struct{}

// NewEnum is the set of vs.
func NewEnum(vs ...string) Enum {
	e := make(Enum, len(vs))
	for _, v := range vs {
		e[v] = struct{}{}
	}
	return e
}

// Label is v when the set holds it, else "other".
func (e Enum) Label(v string) string {
	if _, ok := e[v]; ok {
		return v
	}
	return "other"
}
