package messages

import (
	"bytes"
	"encoding/json"
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
		if len(c.ids.reason) > 0 && !bytes.Equal(c.ids.reason, []byte("null")) {
			var r SinchReason
			if json.Unmarshal(c.ids.reason, &r) == nil {
				d.Reason = &r
				return d, true, nil
			}
		} else {
			return d, true, nil
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
