package messages

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/url"
	"slices"
	"strings"
)

// SourceMessaging is the source token of the inbound webhooks of Contact
// Pro's messaging services other than the Sinch Conversation API (which has
// its own source, SourceSinch).
const SourceMessaging = "messaging"

// Messaging service types of Contact Pro's SMS Server (its documentation
// of messaging service authentication lists them) that ccrelay takes
// webhooks for. sinchconversation is not one of them: its callbacks arrive on
// /v1/sinch/{service}.
const (
	MessagingTwilio    = "twilio"
	MessagingFacebook  = "facebook"
	MessagingSinchSMS  = "sinchsms"
	MessagingSocial365 = "social365"
	MessagingC4SEmail  = "c4semail"
	MessagingWavy      = "wavy"
	MessagingSAP365    = "sap365"
)

// MessagingTypes lists the types above.
func MessagingTypes() []string {
	return []string{MessagingTwilio, MessagingFacebook, MessagingSinchSMS, MessagingSocial365, MessagingC4SEmail, MessagingWavy, MessagingSAP365}
}

// IsMessagingType reports whether t is one of MessagingTypes.
func IsMessagingType(t string) bool { return slices.Contains(MessagingTypes(), t) }

// TypeMessagingPrefix starts the ce-type of messaging webhooks; the type and
// the kind follow, e.g. com.sinch.contactpro.messaging.twilio.inbound.
const TypeMessagingPrefix = "com.sinch.contactpro.messaging."

// Kinds of messaging webhooks, the last part of their ce-type (and
// KindOther, shared with Sinch message kinds, for the rest).
const (
	KindInbound = "inbound"
	KindStatus  = "status"
)

// Partitions is the number of conversation partition tokens: "00" to
// "ff". Every event that is relayed to Contact Pro carries the token of its
// conversation as the last subject token, so a consumer can take the
// events of some conversations, in order, by filtering on tokens.
const Partitions = 256

// Partition returns the partition token of a conversation key: two
// lower-case hex digits.
func Partition(conversation string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(conversation))
	const hex = "0123456789abcdef"
	sum := h.Sum(nil) // big-endian: the last byte is the low byte
	b := sum[len(sum)-1]
	return string([]byte{hex[b>>4], hex[b&0x0f]})
}

// PartitionTokens returns the tokens of partition n of count (a power of
// two dividing Partitions): every token t with t mod count == n.
func PartitionTokens(n, count int) []string {
	var toks []string
	for t := n; t < Partitions; t += count {
		toks = append(toks, fmt.Sprintf("%02x", t))
	}
	return toks
}

// Messaging is the subject of a messaging webhook: its service type, the
// service (the {service} of the URL, a configured name) and the partition
// token of its conversation.
func (s Subjects) Messaging(typ, service, partition string) string {
	return s.join(SourceMessaging, EscapeToken(typ), EscapeToken(service), partition)
}

// SinchPartitionFilter matches the Sinch callbacks to service of every
// trigger and app in one conversation partition token.
func (s Subjects) SinchPartitionFilter(service, token string) string {
	return s.join(SourceSinch, "*", EscapeToken(service), "*", token)
}

// SinchLegacyPartitionFilter matches the Sinch callbacks in one partition
// token stored before subjects named their service
// (<prefix>.in.sinch.<trigger>.<app>.<partition>); only their ce-source
// names the service.
func (s Subjects) SinchLegacyPartitionFilter(token string) string {
	return s.join(SourceSinch, "*", "*", token)
}

// Webhook is what ccrelay reads of a messaging webhook: enough to store it
// once, under its conversation.
type Webhook struct {
	// Kind is KindInbound, KindStatus or KindOther.
	Kind string
	// ID is the dedup id.
	ID string
	// Conversation is the key that orders the webhook among others: the
	// customer's address, or the service when the payload names none.
	Conversation string
}

// DecodeWebhook reads a messaging webhook body of service type typ. The
// body is the raw request body: form-encoded for Twilio, JSON for the
// others. service is the {service} of the URL, the service's subject
// token: it is part of the dedup id, so the same body sent to two services
// is two events, and it keys the conversation of payloads that name none.
// Errors wrap ErrInvalidPayload.
//
// The dedup id is "messaging:<type>:<service>:" and the provider's id (see
// the decoders); a body that spells a key it is read from twice is
// refused.
func DecodeWebhook(typ, service string, body []byte) (*Webhook, error) {
	var (
		w   *Webhook
		err error
	)
	switch typ {
	case MessagingTwilio:
		w, err = decodeTwilio(body)
	case MessagingFacebook:
		w, err = decodeMessenger(body)
	case MessagingSinchSMS:
		w, err = decodeSinchSMS(body)
	default:
		if !IsMessagingType(typ) {
			return nil, &FieldError{Field: "type", Problem: "is not a messaging service type"}
		}
		// No public payload to read: the body is the event, and without a
		// conversation to tell apart, the service's webhooks stay in one
		// order.
		w = &Webhook{Kind: KindOther, ID: BodyDigest(body)}
	}
	if err != nil {
		return nil, err
	}
	// The service as in its subject token: escaped, so no ':' in it can
	// make one service's ids another's.
	w.ID = SourceMessaging + ":" + typ + ":" + EscapeToken(service) + ":" + w.ID
	if w.Conversation == "" {
		w.Conversation = service
	}
	w.Conversation = typ + "/" + service + "/" + w.Conversation
	return w, nil
}

// decodeTwilio reads a Twilio messaging webhook: an incoming message
// (SmsStatus=received, no MessageStatus) or a status callback of a message
// sent (MessageStatus).
// https://www.twilio.com/docs/messaging/guides/webhook-request
func decodeTwilio(body []byte) (*Webhook, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("%w: the body is not form-encoded: %w", ErrInvalidPayload, err)
	}
	for _, f := range [...]string{"MessageSid", "SmsSid", "MessageStatus", "From", "To"} {
		// Read by its first value here, by whatever Contact Pro reads
		// there.
		if len(form[f]) > 1 {
			return nil, &FieldError{Field: f, Problem: "appears twice"}
		}
		if err := checkID(f, form.Get(f)); err != nil {
			return nil, err
		}
	}
	// The id is made of these: held to their formats, two parameters
	// merged into one (Twilio's signature concatenates names and values,
	// so "MessageSid=<sid>NumMedia0" signs as "MessageSid=<sid>&NumMedia=0"
	// does) cannot mint a new id from a captured webhook.
	for _, f := range [...]string{"MessageSid", "SmsSid"} {
		if v := form.Get(f); v != "" && !isTwilioMessageSID(v) {
			return nil, &FieldError{Field: f, Problem: "is not a Twilio message SID (SM or MM and 32 hexadecimal digits)"}
		}
	}
	if st := form.Get("MessageStatus"); st != "" && !isTwilioStatus(st) {
		return nil, &FieldError{Field: "MessageStatus", Problem: "is not a Twilio message status (lower-case letters and '_')"}
	}
	if err := twilioConsistent(form); err != nil {
		return nil, err
	}
	sid := form.Get("MessageSid")
	if sid == "" {
		sid = form.Get("SmsSid")
	}
	if sid == "" {
		return nil, &FieldError{Field: "MessageSid", Problem: "is required"}
	}
	if st := form.Get("MessageStatus"); st != "" {
		// A status callback: the customer is the recipient.
		return &Webhook{Kind: KindStatus, ID: sid + ":" + st, Conversation: form.Get("To")}, nil
	}
	return &Webhook{Kind: KindInbound, ID: sid, Conversation: form.Get("From")}, nil
}

// twilioIDParams are the parameters a webhook's id and kind are read from.
var twilioIDParams = [...]string{"MessageSid", "SmsSid", "SmsMessageSid", "MessageStatus", "SmsStatus"}

// twilioKnownParams are Twilio's own parameters whose names hold an id
// parameter's: the id parameters themselves, and the SID of the message a
// WhatsApp reply answers.
var twilioKnownParams = map[string]bool{"MessageSid": true, "SmsSid": true, "SmsMessageSid": true, "MessageStatus": true,
	"SmsStatus": true, "OriginalRepliedMessageSid": true}

// twilioConsistent refuses what a captured webhook re-split into other
// parameters looks like. Twilio signs names and values run together, so
// "MessageStatus=delivered&SmsSid=SM..." can be resent as one parameter
// "MessageStatusdeliveredSmsSid=SM..." under the same signature: the
// status is gone and the callback reads as an inbound message with a new
// id. Twilio itself never sends a parameter named like an id parameter
// but longer, SIDs that differ, or an SmsStatus other than received
// without MessageStatus, so none of that can be a real webhook.
func twilioConsistent(form url.Values) error {
	for name := range form {
		if twilioKnownParams[name] {
			continue
		}
		for _, p := range twilioIDParams {
			// "MessageStatusdeliveredSmsSid", "eredSmsSidSM...To",
			// "MessageStatu": a name holding an id parameter's, or cut
			// from one.
			if strings.Contains(name, p) || strings.HasPrefix(p, name) {
				return &FieldError{Field: p, Problem: "is run together with another parameter (a parameter name holds it or is cut from it)"}
			}
		}
	}
	sid := ""
	for _, f := range [...]string{"MessageSid", "SmsSid", "SmsMessageSid"} {
		switch v := form.Get(f); {
		case v == "":
		case sid == "":
			sid = v
		case v != sid:
			return &FieldError{Field: f, Problem: "differs from the message's other SID parameters"}
		}
	}
	// A re-split can also move a boundary into a value
	// ("MessageStatus=deliv&ered=SmsSidSM...", the last name taking the
	// rest): a status callback carries its status twice, in MessageStatus
	// and SmsStatus, and both must be there and agree.
	msg, sms := form.Get("MessageStatus"), form.Get("SmsStatus")
	switch {
	case msg == "" && sms != "" && sms != "received":
		return &FieldError{Field: "MessageStatus", Problem: "is missing from a status callback (SmsStatus is not received)"}
	case msg != "" && msg != sms:
		return &FieldError{Field: "SmsStatus", Problem: "differs from MessageStatus (Twilio sends a status callback's status in both)"}
	}
	return nil
}

// isTwilioMessageSID reports whether v is a Message resource's SID: "SM"
// (or "MM", a legacy MMS) and 32 hexadecimal digits
// (https://www.twilio.com/docs/messaging/api/message-resource).
func isTwilioMessageSID(v string) bool {
	if len(v) != 34 || (v[:2] != "SM" && v[:2] != "MM") {
		return false
	}
	for i := 2; i < len(v); i++ {
		if c := v[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// isTwilioStatus reports whether v can be a message status: Twilio's are
// lower-case words joined by '_' (delivered, partially_delivered), and a
// parameter name merged into one starts with a capital.
func isTwilioStatus(v string) bool {
	if len(v) > 32 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !(c >= 'a' && c <= 'z' || c == '_') {
			return false
		}
	}
	return true
}

// messengerWire is the part of a Messenger Platform webhook ccrelay reads.
// https://developers.facebook.com/docs/messenger-platform/webhooks
type messengerWire struct {
	Object string `json:"object"`
	Entry  []struct {
		ID        string            `json:"id"`
		Messaging []messengerEvent  `json:"messaging"`
		Standby   []messengerEvent  `json:"standby"`
		Changes   []json.RawMessage `json:"changes"`
	} `json:"entry"`
}

type messengerParty struct {
	ID string `json:"id"`
}

type messengerEvent struct {
	Sender    messengerParty `json:"sender"`
	Recipient messengerParty `json:"recipient"`
	Message   *struct {
		Mid    string `json:"mid"`
		IsEcho bool   `json:"is_echo"`
	} `json:"message"`
	Postback *struct {
		Mid string `json:"mid"`
	} `json:"postback"`
	Delivery *struct {
		Watermark json.Number `json:"watermark"`
	} `json:"delivery"`
	Read *struct {
		Watermark json.Number `json:"watermark"`
	} `json:"read"`
}

// decodeMessenger reads a Messenger webhook. Meta may batch several events
// in one request; such a body is one event for ccrelay, identified by its
// digest and ordered with the conversation of its first event.
func decodeMessenger(body []byte) (*Webhook, error) {
	var wire messengerWire
	if err := json.Unmarshal(body, &wire); err != nil {
		return nil, explainJSON(err)
	}
	if err := repeatedKey(body, everyKey); err != nil {
		return nil, err
	}
	if wire.Object == "" {
		return nil, &FieldError{Field: "object", Problem: "is required"}
	}
	if len(wire.Entry) == 0 {
		return nil, &FieldError{Field: "entry", Problem: "is required"}
	}
	var events []messengerEvent
	page := wire.Entry[0].ID
	for _, e := range wire.Entry {
		events = append(events, e.Messaging...)
		events = append(events, e.Standby...)
	}
	w := &Webhook{Kind: KindOther, ID: BodyDigest(body), Conversation: page}
	if len(events) == 0 {
		return w, nil
	}
	ev := events[0]
	for _, f := range [...][2]string{{"sender.id", ev.Sender.ID}, {"recipient.id", ev.Recipient.ID}} {
		if err := checkID("entry.messaging."+f[0], f[1]); err != nil {
			return nil, err
		}
	}
	// The conversation is the customer's page-scoped id: the sender of
	// what customers send, the recipient of the page's own echoes.
	w.Conversation = ev.Sender.ID
	if ev.Message != nil && ev.Message.IsEcho || ev.Sender.ID == page && page != "" {
		w.Conversation = ev.Recipient.ID
	}
	if len(events) > 1 {
		return w, nil
	}
	switch {
	case ev.Message != nil && ev.Message.Mid != "":
		if err := checkID("entry.messaging.message.mid", ev.Message.Mid); err != nil {
			return nil, err
		}
		w.Kind, w.ID = KindInbound, "mid:"+ev.Message.Mid
		if ev.Message.IsEcho {
			// The page's own message, echoed: not one a customer sent.
			w.Kind = KindOther
		}
	case ev.Postback != nil && ev.Postback.Mid != "":
		if err := checkID("entry.messaging.postback.mid", ev.Postback.Mid); err != nil {
			return nil, err
		}
		w.Kind, w.ID = KindInbound, "mid:"+ev.Postback.Mid
	case ev.Delivery != nil:
		w.Kind, w.ID = KindStatus, "delivery:"+BodyDigest(body)
	case ev.Read != nil:
		w.Kind, w.ID = KindStatus, "read:"+BodyDigest(body)
	}
	return w, nil
}

// sinchSMSWire is the part of a Sinch SMS callback ccrelay reads: an
// inbound message (mo_text, mo_binary, mo_media) or a delivery report.
// https://developers.sinch.com/docs/sms/api-reference/sms/tag/Webhooks/
type sinchSMSWire struct {
	Type      string          `json:"type"`
	ID        string          `json:"id"`
	From      string          `json:"from"`
	BatchID   string          `json:"batch_id"`
	Recipient string          `json:"recipient"`
	Status    string          `json:"status"`
	Code      json.RawMessage `json:"code"`
}

func decodeSinchSMS(body []byte) (*Webhook, error) {
	var wire sinchSMSWire
	if err := json.Unmarshal(body, &wire); err != nil {
		return nil, explainJSON(err)
	}
	if err := repeatedKey(body, everyKey); err != nil {
		return nil, err
	}
	if wire.Type == "" {
		return nil, &FieldError{Field: "type", Problem: "is required"}
	}
	for _, f := range [...][2]string{{"type", wire.Type}, {"id", wire.ID}, {"from", wire.From}, {"batch_id", wire.BatchID}, {"recipient", wire.Recipient}, {"status", wire.Status}} {
		if err := checkID(f[0], f[1]); err != nil {
			return nil, err
		}
	}
	switch {
	case strings.HasPrefix(wire.Type, "mo_"):
		if wire.ID == "" {
			return nil, &FieldError{Field: "id", Problem: "is required"}
		}
		return &Webhook{Kind: KindInbound, ID: "mo:" + wire.ID, Conversation: wire.From}, nil
	case strings.HasPrefix(wire.Type, "recipient_delivery_report_"):
		if wire.BatchID == "" || wire.Recipient == "" {
			return nil, &FieldError{Field: "batch_id", Problem: "and recipient are required"}
		}
		// One report per recipient and status; the code tells apart two
		// reports of one status (a retried dispatch). The recipient is a
		// phone number: its digest stands for it.
		return &Webhook{Kind: KindStatus, ID: "dr:" + IDPart(wire.BatchID) + ":" + PersonalDigest(wire.Recipient) + ":" + IDPart(wire.Status) + ":" + BodyDigest(wire.Code)[:16], Conversation: wire.Recipient}, nil
	case strings.HasPrefix(wire.Type, "delivery_report_"):
		// A batch report covers several recipients; the batch orders it.
		return &Webhook{Kind: KindStatus, ID: "dr:" + BodyDigest(body), Conversation: "batch:" + wire.BatchID}, nil
	}
	return &Webhook{Kind: KindOther, ID: BodyDigest(body)}, nil
}

// explainJSON turns a JSON syntax or type error into an invalid payload.
func explainJSON(err error) error {
	return fmt.Errorf("%w: the body is not the expected JSON: %w", ErrInvalidPayload, err)
}

// SinchConversation is the conversation key of a Sinch callback, for the
// order of its relay to Contact Pro: the contact, else the conversation,
// else the channel identity, else the app (project-level callbacks).
func (c *SinchCallback) SinchConversation() string {
	var contact, conv, channel, identity string
	switch {
	case c.Message != nil:
		m := c.Message
		contact, conv, channel, identity = m.ContactID, m.ConversationID, m.ChannelIdentity.Channel, m.ChannelIdentity.Identity
	case c.DeliveryReport != nil:
		r := c.DeliveryReport
		contact, conv, channel, identity = r.ContactID, r.ConversationID, r.ChannelIdentity.Channel, r.ChannelIdentity.Identity
	}
	return sinchConversation(c.AppID, contact, conv, channel, identity)
}

// sinchConversation is the conversation key made of a callback's ids.
func sinchConversation(appID, contact, conv, channel, identity string) string {
	switch {
	case contact != "":
		return "sinch/" + appID + "/contact:" + contact
	case conv != "":
		return "sinch/" + appID + "/conversation:" + conv
	case identity != "":
		return "sinch/" + appID + "/" + channel + ":" + identity
	}
	return "sinch/" + appID
}
