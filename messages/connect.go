package messages

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DetailTypeContactLensPostCall is the EventBridge detail-type ccrelay accepts
// from Amazon Connect.
const DetailTypeContactLensPostCall = "Contact Lens Post Call Rules Matched"

// ErrUnsupportedDetailType is returned by DecodeContactLensEvent for a well-formed
// EventBridge event of another detail-type.
var ErrUnsupportedDetailType = errors.New("unsupported detail-type")

// ContactLensEvent is the EventBridge event Amazon Connect sends when a
// Contact Lens post-call rule matched.
type ContactLensEvent struct {
	EventBridgeEnvelope
	Detail ContactLensDetail `json:"detail"`
}

// EventBridgeEnvelope is what every EventBridge event carries around its
// detail.
type EventBridgeEnvelope struct {
	Version    string    `json:"version"`
	ID         string    `json:"id"`
	DetailType string    `json:"detail-type"`
	Source     string    `json:"source"`
	Account    string    `json:"account"`
	Time       time.Time `json:"time"`
	Region     string    `json:"region"`
	Resources  []string  `json:"resources"`
}

// ContactLensDetail is the detail of a Contact Lens post-call event.
type ContactLensDetail struct {
	Version       string          `json:"version"`
	RuleName      string          `json:"ruleName"`
	ActionName    string          `json:"actionName"`
	InstanceArn   string          `json:"instanceArn"`
	ContactArn    string          `json:"contactArn"`
	AgentArn      string          `json:"agentArn"`
	QueueArn      string          `json:"queueArn"`
	EventMetadata json.RawMessage `json:"eventMetadata,omitempty"`
}

// DedupID is the event's dedup id, "connect:<account>:<id>": EventBridge
// gives every event a unique id and keeps it when it retries a delivery.
func (e *ContactLensEvent) DedupID() string {
	return SourceConnect + ":" + e.Account + ":" + e.ID
}

// ContactID is the last segment of detail.contactArn.
func (e *ContactLensEvent) ContactID() string {
	return e.Detail.ContactArn[strings.LastIndexByte(e.Detail.ContactArn, '/')+1:]
}

// InstanceID is the Amazon Connect instance id, from detail.instanceArn or,
// when that is absent, from detail.contactArn
// (arn:aws:connect:<region>:<account>:instance/<instance>/contact/<contact>).
func (e *ContactLensEvent) InstanceID() string {
	if e.Detail.InstanceArn != "" {
		return instanceOf(e.Detail.InstanceArn)
	}
	return instanceOf(e.Detail.ContactArn)
}

func instanceOf(arn string) string {
	i := strings.Index(arn, ":instance/")
	if i < 0 {
		return ""
	}
	rest := arn[i+len(":instance/"):]
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// DecodeContactLensEvent decodes an EventBridge event. An event of another
// detail-type fails with ErrUnsupportedDetailType; a malformed one, or one that
// misses id, time or a contact ARN naming its instance and contact, fails
// with an error wrapping ErrInvalidPayload.
func DecodeContactLensEvent(body []byte) (*ContactLensEvent, error) {
	var e ContactLensEvent
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, malformed("event", err)
	}
	if err := repeatedKey(body, everyKey); err != nil {
		return nil, err
	}
	if e.DetailType == "" {
		return nil, missing("detail-type")
	}
	if e.DetailType != DetailTypeContactLensPostCall {
		return nil, fmt.Errorf("%w: %q (accepted: %q)", ErrUnsupportedDetailType, e.DetailType, DetailTypeContactLensPostCall)
	}
	if e.ID == "" {
		return nil, missing("id")
	}
	if e.Time.IsZero() {
		return nil, missing("time")
	}
	arn := e.Detail.ContactArn
	if arn == "" {
		return nil, missing("detail.contactArn")
	}
	if !strings.HasPrefix(arn, "arn:") || !strings.Contains(arn, "/contact/") || e.ContactID() == "" {
		return nil, &FieldError{Field: "detail.contactArn", Problem: "is not an Amazon Connect contact ARN"}
	}
	if e.InstanceID() == "" {
		return nil, &FieldError{Field: "detail.instanceArn", Problem: "does not name an Amazon Connect instance"}
	}
	if len(e.Detail.InstanceArn) > 2*MaxIDBytes {
		return nil, &FieldError{Field: "detail.instanceArn", Problem: fmt.Sprintf("is longer than %d bytes", 2*MaxIDBytes)}
	}
	// The instance ARN becomes ce-source, a header.
	if err := checkText("detail.instanceArn", e.Detail.InstanceArn); err != nil {
		return nil, err
	}
	for _, f := range [...]struct{ name, v string }{{"id", e.ID}, {"account", e.Account}, {"detail.contactArn", e.ContactID()}} {
		if err := checkID(f.name, f.v); err != nil {
			return nil, err
		}
	}
	return &e, nil
}

// CheckInstance checks that the instance id, which ingest makes a subject
// token, has the shape of an Amazon Connect instance id (a UUID).
func (e *ContactLensEvent) CheckInstance() error {
	if !isUUID(e.InstanceID()) {
		return &FieldError{Field: "detail.instanceArn", Problem: "does not name an Amazon Connect instance (a UUID)"}
	}
	return nil
}

// isUUID reports whether s is a UUID in its canonical textual form, as
// Amazon Connect instance ids are: the instance id becomes a subject token.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}
