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

// sinchTriggerOf maps the top-level key that carries a callback's payload to
// its trigger. A switch rather than a map keeps the table immutable.
func sinchTriggerOf(key string) (SinchTrigger, bool) {
	switch key {
	case "message":
		return TriggerMessageInbound, true
	case "message_redaction":
		return TriggerMessageRedaction, true
	case "message_submit_notification":
		return TriggerMessageSubmit, true
	case "message_delivery_report":
		return TriggerMessageDelivery, true
	case "event":
		return TriggerEventInbound, true
	case "event_delivery_report":
		return TriggerEventDelivery, true
	case "conversation_start_notification":
		return TriggerConversationStart, true
	case "conversation_stop_notification":
		return TriggerConversationStop, true
	case "conversation_delete_notification":
		return TriggerConversationDelete, true
	case "contact_create_notification":
		return TriggerContactCreate, true
	case "contact_delete_notification":
		return TriggerContactDelete, true
	case "contact_merge_notification":
		return TriggerContactMerge, true
	case "contact_update_notification":
		return TriggerContactUpdate, true
	case "duplicated_contact_identities_notification":
		return TriggerContactDuplication, true
	case "capability_notification":
		return TriggerCapability, true
	case "opt_in_notification":
		return TriggerOptIn, true
	case "opt_out_notification":
		return TriggerOptOut, true
	case "channel_event_notification":
		return TriggerChannelEvent, true
	case "smart_conversation_notification":
		return TriggerSmartConversations, true
	case "unsupported_callback":
		return TriggerUnsupported, true
	}
	return "", false
}

// isSinchEnvelopeKey reports whether key is one of the fields every callback
// carries beside its trigger payload.
func isSinchEnvelopeKey(key string) bool {
	switch key {
	case "app_id", "project_id", "accepted_time", "event_time", "message_metadata", "correlation_id":
		return true
	}
	return false
}

// SinchOtherTrigger is the trigger of a callback that carries several keys
// ccrelay does not know, so that none of them can be told to be the trigger.
const SinchOtherTrigger SinchTrigger = "OTHER"

// SinchCallback is a Sinch Conversation API callback.
type SinchCallback struct {
	AppID           string    `json:"app_id"`
	ProjectID       string    `json:"project_id"`
	AcceptedTime    time.Time `json:"accepted_time"`
	EventTime       time.Time `json:"event_time"`
	MessageMetadata string    `json:"message_metadata"`
	CorrelationID   string    `json:"correlation_id"`

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
	// Payload is the raw trigger payload, for every trigger.
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
// trigger.
func DecodeSinchCallback(body []byte) (*SinchCallback, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, malformed("callback", err)
	}
	if top == nil {
		return nil, &FieldError{Field: "callback", Problem: "must be a JSON object"}
	}
	var cb SinchCallback
	if err := decodeField(top, "app_id", &cb.AppID); err != nil {
		return nil, err
	}
	if cb.AppID == "" {
		return nil, missing("app_id")
	}
	for _, f := range []struct {
		key string
		dst any
	}{
		{"project_id", &cb.ProjectID},
		{"accepted_time", &cb.AcceptedTime},
		{"event_time", &cb.EventTime},
		{"message_metadata", &cb.MessageMetadata},
		{"correlation_id", &cb.CorrelationID},
	} {
		if err := decodeField(top, f.key, f.dst); err != nil {
			return nil, err
		}
	}

	var unknown []string
	for key, raw := range top {
		// An empty key cannot name a trigger (nor a subject token).
		if key == "" || isSinchEnvelopeKey(key) || isNull(raw) {
			continue
		}
		if t, ok := sinchTriggerOf(key); ok {
			if cb.Known {
				return nil, &FieldError{Field: key, Problem: "is a second trigger payload (found " + string(cb.Trigger) + " already)"}
			}
			cb.Trigger, cb.Known, cb.Payload = t, true, raw
			continue
		}
		unknown = append(unknown, key)
	}
	if !cb.Known {
		switch len(unknown) {
		case 0:
			return nil, &FieldError{Field: "callback", Problem: "has no trigger payload"}
		case 1:
			cb.Trigger, cb.Payload = SinchTrigger(strings.ToUpper(unknown[0])), top[unknown[0]]
		default:
			cb.Trigger = SinchOtherTrigger
		}
		return &cb, nil
	}

	switch cb.Trigger {
	case TriggerMessageInbound:
		m, err := decodeInbound(cb.Payload)
		if err != nil {
			return nil, err
		}
		cb.Message = m
	case TriggerMessageDelivery:
		r, err := decodeDeliveryReport(cb.Payload)
		if err != nil {
			return nil, err
		}
		cb.DeliveryReport = r
	default:
		if !isObject(cb.Payload) {
			return nil, &FieldError{Field: payloadKey(cb.Trigger), Problem: "must be a JSON object"}
		}
	}
	return &cb, nil
}

func payloadKey(t SinchTrigger) string {
	switch t {
	case TriggerMessageInbound:
		return "message"
	case TriggerMessageDelivery:
		return "message_delivery_report"
	}
	return strings.ToLower(string(t))
}

func decodeInbound(raw json.RawMessage) (*SinchInboundMessage, error) {
	var m SinchInboundMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, malformed("message", err)
	}
	if m.ID == "" {
		return nil, missing("message.id")
	}
	if m.ContactMessage == nil {
		return nil, missing("message.contact_message")
	}
	cm := m.ContactMessage
	switch {
	case cm.MediaMessage != nil && cm.MediaMessage.URL == "":
		return nil, missing("message.contact_message.media_message.url")
	case cm.MediaCardMessage != nil && cm.MediaCardMessage.URL == "":
		return nil, missing("message.contact_message.media_card_message.url")
	case cm.ChoiceResponseMessage != nil && cm.ChoiceResponseMessage.MessageID == "":
		return nil, missing("message.contact_message.choice_response_message.message_id")
	}
	return &m, nil
}

func decodeDeliveryReport(raw json.RawMessage) (*SinchDeliveryReport, error) {
	var r SinchDeliveryReport
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, malformed("message_delivery_report", err)
	}
	if r.MessageID == "" {
		return nil, missing("message_delivery_report.message_id")
	}
	if r.Status == "" {
		return nil, missing("message_delivery_report.status")
	}
	return &r, nil
}

func decodeField(top map[string]json.RawMessage, key string, dst any) error {
	raw, ok := top[key]
	if !ok || isNull(raw) {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return &FieldError{Field: key, Problem: "has the wrong type or format"}
	}
	return nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}
