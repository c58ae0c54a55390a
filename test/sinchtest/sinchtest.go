// Package sinchtest makes Sinch Conversation API callbacks as Sinch sends
// them: realistic bodies and signed headers. The tests and the load
// generator share it.
package sinchtest

import (
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ccrelay/ccrelay/messages/signature"
)

// AppID is the app id of the bodies made here.
const AppID = "01EB37HMH1M6SV18ABNS3G135H"

// Signer signs callbacks with one secret, a fresh nonce each time.
type Signer struct {
	Secret string
	seq    atomic.Int64
}

// Headers returns the headers Sinch sends with body, signed at time at.
func (s *Signer) Headers(body []byte, at time.Time) http.Header {
	nonce := fmt.Sprintf("%d-%d", time.Now().UnixNano(), s.seq.Add(1))
	ts := strconv.FormatInt(at.Unix(), 10)
	h := make(http.Header, 6)
	h.Set("Content-Type", "application/json")
	h.Set(signature.SinchHeaderNonce, nonce)
	h.Set(signature.SinchHeaderTimestamp, ts)
	h.Set(signature.SinchHeaderAlgorithm, signature.SinchAlgorithm)
	h.Set(signature.SinchHeaderSignature, signature.SinchSign(s.Secret, body, nonce, ts))
	return h
}

// InboundText is a MESSAGE_INBOUND callback with a text message, about 1 KiB
// like a real WhatsApp inbound.
func InboundText(msgID string, at time.Time) []byte {
	ts := at.UTC().Format(time.RFC3339Nano)
	return fmt.Appendf(nil, `{
  "app_id": %q,
  "accepted_time": %q,
  "event_time": %q,
  "project_id": "c36f3d3d-1513-4edd-ae42-11995557ff61",
  "message": {
    "id": %q,
    "direction": "TO_APP",
    "contact_message": {"text_message": {"text": "Hello, my order 4711 has not arrived yet and the tracking page shows no update since Monday. Could somebody please check what happened and tell me when I can expect it? Thanks!"}},
    "channel_identity": {"channel": "WHATSAPP", "identity": "46732000000", "app_id": %q},
    "conversation_id": "01EQ8235TD19N21XQTH12B145D",
    "contact_id": "01EQ4174TXFK2FVQTX1MJ4SMGH",
    "metadata": "{\"source\":\"whatsapp-business\",\"campaign\":\"support\"}",
    "accept_time": %q,
    "sender_id": "46732000000",
    "processing_mode": "DISPATCH",
    "injected": false
  },
  "message_metadata": "{\"crm\":\"c4c\",\"queue\":\"support-en\"}",
  "correlation_id": "corr-2b7c5a1e-9d3f-4e8a-b6c2-7f1d0e9a8b3c"
}`, AppID, ts, ts, msgID, AppID, ts)
}

// InboundFrom is a short MESSAGE_INBOUND text message of one contact.
func InboundFrom(msgID, contactID, text string, at time.Time) []byte {
	ts := at.UTC().Format(time.RFC3339Nano)
	return fmt.Appendf(nil, `{"app_id":%q,"accepted_time":%q,"event_time":%q,"project_id":"c36f3d3d-1513-4edd-ae42-11995557ff61","message":{"id":%q,"direction":"TO_APP","contact_message":{"text_message":{"text":%q}},"channel_identity":{"channel":"WHATSAPP","identity":"46732000000","app_id":%q},"conversation_id":"01EQ8235TD19N21XQTH12B145D","contact_id":%q,"accept_time":%q,"processing_mode":"CONVERSATION"}}`,
		AppID, ts, ts, msgID, text, AppID, contactID, ts)
}
