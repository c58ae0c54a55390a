package messages

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
)

// SinchDelivery is what a MESSAGE_DELIVERY callback says of its message:
// what the deliveries processor keeps.
type SinchDelivery struct {
	AppID string
	// Time is SinchCallback.Time: the event time, else the accepted time,
	// else zero.
	Time           time.Time
	MessageID      string
	Status         SinchDeliveryStatus
	Channel        string
	ConversationID string
	ContactID      string
	Reason         *SinchReason
}

// DecodeSinchDelivery reads a delivery report as DecodeSinchCallback does,
// with the same error for a body it refuses, and ok false for a valid
// callback of another trigger. The reports Sinch sends are read in the one
// pass ingest's route scanner makes, a fraction of encoding/json's cost
// (which was three quarters of the deliveries processor's CPU); anything
// the pass is not certain of goes to DecodeSinchCallback.
// FuzzDecodeSinchDelivery holds the two to the same answers.
func DecodeSinchDelivery(body []byte) (d SinchDelivery, ok bool, err error) {
	if c, sure := scanSinchCallback(body); sure && c.trigger == TriggerMessageDelivery {
		d = SinchDelivery{
			AppID: c.appID, Time: c.time(), MessageID: c.ids.id, Status: SinchDeliveryStatus(c.ids.status),
			Channel: c.ids.channel, ConversationID: c.ids.conversation, ContactID: c.ids.contact,
		}
		switch reason := c.ids.reason; {
		case len(reason) == 0 || bytes.Equal(reason, []byte("null")):
			return d, true, nil
		default:
			if r, sure := scanReason(reason); sure {
				d.Reason = r
				return d, true, nil
			}
			var r SinchReason
			if json.Unmarshal(reason, &r) == nil {
				d.Reason = &r
				return d, true, nil
			}
		}
	}
	cb, err := DecodeSinchCallback(body)
	if err != nil {
		return SinchDelivery{}, false, err
	}
	d, ok = cb.Delivery()
	return d, ok, nil
}

// Delivery is the callback's SinchDelivery, ok false when it is not a
// delivery report.
func (c *SinchCallback) Delivery() (SinchDelivery, bool) {
	r := c.DeliveryReport
	if r == nil {
		return SinchDelivery{}, false
	}
	return SinchDelivery{
		AppID: c.AppID, Time: c.Time(), MessageID: r.MessageID, Status: r.Status, Channel: r.ChannelIdentity.Channel,
		ConversationID: r.ConversationID, ContactID: r.ContactID, Reason: r.Reason,
	}, true
}

// scanReason reads a reason as SinchReason.UnmarshalJSON does, for the
// shapes Sinch sends: an object of unescaped strings (or nulls) under the
// documented names, or a bare unescaped string. Anything else is left to
// encoding/json (false).
func scanReason(raw []byte) (*SinchReason, bool) {
	s := routeScan{b: raw}
	var r SinchReason
	switch s.peek() {
	case '"':
		code, ok := s.text()
		r.Code = code
		return &r, ok && s.end()
	case '{':
		s.i++
	default:
		return nil, false
	}
	var seen uint8
	ok := s.members(func(key []byte) bool {
		var (
			dst *string
			bit uint8
		)
		switch string(key) {
		case "code":
			dst, bit = &r.Code, 1
		case "description":
			dst, bit = &r.Description, 2
		case "sub_code":
			dst, bit = &r.SubCode, 4
		default:
			// encoding/json would match a name in another case.
			for _, n := range [...]string{"code", "description", "sub_code"} {
				if strings.EqualFold(n, string(key)) {
					return false
				}
			}
			return s.skip(0)
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		if s.null() {
			return true
		}
		v, ok := s.text()
		*dst = v
		return ok
	})
	return &r, ok && s.end()
}
