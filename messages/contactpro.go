package messages

import (
	"encoding/json"
	"net/url"
	"strings"
)

// IntegrationChatAttachments is the integration name of Contact Pro's
// chat-attachments call, made when a chat ends.
const IntegrationChatAttachments = "chat-attachments"

// ContactProSAP is the sap_v1 block of a chat-attachments call: the C4C
// tenant and technical user to upload to. Its password arrives sealed, in a
// header, never in the body.
type ContactProSAP struct {
	URL  string `json:"url"`
	User string `json:"user"`
}

// ChatAttachmentsCall is the body of Contact Pro's chat-attachments call.
type ChatAttachmentsCall struct {
	// CMIURL is the public address of the Contact Management Interface.
	CMIURL string `json:"cmi_url"`
	// CMIUser is the CMI logon name to read the chat with.
	CMIUser string `json:"cmi_user"`
	// SAP names the C4C tenant and user.
	SAP ContactProSAP `json:"sap_v1"`
	// ContactID is the Contact Pro contact guid of the chat.
	ContactID string `json:"contact_id"`
}

// DecodeChatAttachmentsCall decodes and checks a chat-attachments body:
// contact_id is required; cmi_url and sap_v1.url, when given, must be
// absolute http(s) URLs. They may be left out when the processor has its own
// configuration, which is what makes a hand-written replay body usable.
func DecodeChatAttachmentsCall(body []byte) (*ChatAttachmentsCall, error) {
	var c ChatAttachmentsCall
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, malformed("chat-attachments call", err)
	}
	if strings.TrimSpace(c.ContactID) == "" {
		return nil, missing("contact_id")
	}
	if err := checkURL("cmi_url", c.CMIURL); err != nil {
		return nil, err
	}
	if err := checkURL("sap_v1.url", c.SAP.URL); err != nil {
		return nil, err
	}
	return &c, nil
}

func checkURL(field, v string) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &FieldError{Field: field, Problem: "must be an absolute http or https URL"}
	}
	return nil
}

// contactRef holds the places where a Contact Pro integration body commonly
// names its contact: the JSON configuration is written by the customer, so
// the well-known placeholders {contact.id} and {contact.guid} may land in any
// of these.
type contactRef struct {
	ContactID   string `json:"contact_id"`
	ContactGUID string `json:"contact_guid"`
	Contact     *struct {
		ID   string `json:"id"`
		GUID string `json:"guid"`
	} `json:"contact"`
}

// ContactProDedupID is the dedup id of a Contact Pro call: integration, event
// and the contact id found in the body, or the body's digest when the body
// names no contact. The body must be a JSON object.
func ContactProDedupID(integration, event string, body []byte) (string, error) {
	var ref contactRef
	if err := json.Unmarshal(body, &ref); err != nil {
		return "", malformed("call body", err)
	}
	if !isObject(body) {
		return "", &FieldError{Field: "call body", Problem: "must be a JSON object"}
	}
	id := ref.ContactID
	switch {
	case id != "":
	case ref.ContactGUID != "":
		id = ref.ContactGUID
	case ref.Contact != nil && ref.Contact.GUID != "":
		id = ref.Contact.GUID
	case ref.Contact != nil && ref.Contact.ID != "":
		id = ref.Contact.ID
	default:
		return BodyDigest(body), nil
	}
	if event == "" {
		event = ContactProNoEvent
	}
	return strings.ToLower(integration) + ":" + strings.ToLower(event) + ":" + id, nil
}
