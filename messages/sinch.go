package messages

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
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
// trigger payload.
type SinchEnvelope struct {
	AppID           string    `json:"app_id"`
	ProjectID       string    `json:"project_id"`
	AcceptedTime    time.Time `json:"accepted_time"`
	EventTime       time.Time `json:"event_time"`
	MessageMetadata string    `json:"message_metadata"`
	CorrelationID   string    `json:"correlation_id"`
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
		return c.EventTime
	}
	return c.AcceptedTime
}

// DedupID is the callback's dedup id: the message id for MESSAGE_INBOUND,
// message id and status for MESSAGE_DELIVERY (so each status of a message is
// kept once), and the body's digest for every other trigger.
func (c *SinchCallback) DedupID(body []byte) string {
	switch {
	case c.Message != nil:
		return c.Message.ID
	case c.DeliveryReport != nil:
		return c.DeliveryReport.MessageID + ":" + string(c.DeliveryReport.Status)
	}
	return BodyDigest(body)
}

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
// ignored, and a trigger key it does not know is kept as the trigger rather
// than rejected, so a new Sinch trigger is stored, not lost. It fails, with an
// error wrapping ErrInvalidPayload, on a body that is not a JSON object, has
// no app_id or no trigger payload, or misses a required field of a known
// trigger. Keys match as encoding/json matches them (case-insensitively).
//
// A callback of a known trigger is decoded in one pass over the body; only
// callbacks without one are scanned again for unknown trigger keys.
func DecodeSinchCallback(body []byte) (*SinchCallback, error) {
	var w sinchWire
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, explainSinch(body, err)
	}
	if w.AppID == "" {
		if !isObject(body) {
			return nil, &FieldError{Field: "callback", Problem: "must be a JSON object"}
		}
		return nil, missing("app_id")
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

func checkInbound(m *SinchInboundMessage) error {
	if m.ID == "" {
		return missing("message.id")
	}
	if m.ContactMessage == nil {
		return missing("message.contact_message")
	}
	cm := m.ContactMessage
	switch {
	case cm.MediaMessage != nil && cm.MediaMessage.URL == "":
		return missing("message.contact_message.media_message.url")
	case cm.MediaCardMessage != nil && cm.MediaCardMessage.URL == "":
		return missing("message.contact_message.media_card_message.url")
	case cm.ChoiceResponseMessage != nil && cm.ChoiceResponseMessage.MessageID == "":
		return missing("message.contact_message.choice_response_message.message_id")
	}
	return nil
}

func checkDeliveryReport(r *SinchDeliveryReport) error {
	if r.MessageID == "" {
		return missing("message_delivery_report.message_id")
	}
	if r.Status == "" {
		return missing("message_delivery_report.status")
	}
	return nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}
