package messages

import (
	"crypto/sha256"
	"encoding/hex"
)

// RelayHeldStream is the stream that keeps the messages of the
// conversations the relay to Contact Pro parked, until an operator releases
// or drops them.
func (s Subjects) RelayHeldStream() string { return s.orDefault().upper + "_RELAY_HELD" }

// RelayHeldAll is the filter of every parked message: RelayHeldStream's
// subjects.
func (s Subjects) RelayHeldAll() string { return s.Prefix() + ".held.>" }

// RelayHeld is the subject of the parked messages of one conversation, by
// its ConversationID.
func (s Subjects) RelayHeld(conversation string) string { return s.Prefix() + ".held." + conversation }

// RelayBucket holds the relay's state: its parked conversations (keys
// "parked.<ConversationID>") and the order of its destinations' consumers.
func (s Subjects) RelayBucket() string { return s.Bucket("RELAY") }

// Headers a parked message carries besides the original's.
const (
	// HeaderHeldSubject and HeaderHeldSeq are where the message was stored
	// in the events stream.
	HeaderHeldSubject = "Ccrelay-Held-Subject"
	HeaderHeldSeq     = "Ccrelay-Held-Seq"
	// HeaderHeldPark names the parking the message belongs to: a
	// conversation parked, released and parked again has a new one.
	HeaderHeldPark = "Ccrelay-Held-Park"
	// HeaderHeldDeliveries counts the attempts made before it was parked.
	HeaderHeldDeliveries = "Ccrelay-Held-Deliveries"
	// HeaderHeldMaybeDone is "true" when an attempt before it was parked
	// may have delivered it (no answer came): its release says so too.
	HeaderHeldMaybeDone = "Ccrelay-Held-Maybe-Done"
)

// Conversation is the conversation key of an event relayed to Contact Pro,
// derived from its subject and body the way ingest derived the subject's
// partition token (Partition of it). It fails for a body ingest could not
// have stored under the subject, and for a subject that is not relayed;
// ok is false when the key it derives does not hash to the subject's
// partition token (a body published by hand under another conversation's
// subject): the subject, not the body, says where such an event stands in
// order.
func (s Subjects) Conversation(a Address, body []byte) (key string, ok bool) {
	switch a.Source {
	case SourceSinch:
		r, err := RouteSinchCallback(a.Service, body)
		if err != nil {
			return "", false
		}
		key = r.Conversation
	case SourceMessaging:
		w, err := DecodeWebhook(a.Kind, a.Name, body)
		if err != nil {
			return "", false
		}
		key = w.Conversation
	default:
		return "", false
	}
	return key, a.Partition != "" && Partition(key) == a.Partition
}

// ConversationID names a conversation of a relay destination ("type/service")
// without the personal data its key may hold (a phone number): the first
// 128 bits of the SHA-256 of both, in hex. It is a NATS subject token and a
// KV key.
func ConversationID(destination, key string) string {
	sum := sha256.Sum256([]byte(destination + "\x00" + key))
	return hex.EncodeToString(sum[:16])
}
