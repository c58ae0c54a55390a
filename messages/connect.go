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
	Version    string            `json:"version"`
	ID         string            `json:"id"`
	DetailType string            `json:"detail-type"`
	Source     string            `json:"source"`
	Account    string            `json:"account"`
	Time       time.Time         `json:"time"`
	Region     string            `json:"region"`
	Resources  []string          `json:"resources"`
	Detail     ContactLensDetail `json:"detail"`
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
	return &e, nil
}
