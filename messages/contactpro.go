package messages

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
	// The same contact id the call's dedup id names (NewContactProCall
	// trims it too): " G" is contact G, not a CMI path with a space.
	c.ContactID = strings.TrimSpace(c.ContactID)
	if c.ContactID == "" {
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

// ContactProEvents are Contact Pro's conversation events (seed 004), in the
// lower case of their subject token, plus "closed", which the
// chat-attachments call also uses.
var ContactProEvents = []string{"received", "queued", "allocated", "accepted", "rejected",
	"transferred", "forwarded", "ended", "abandoned", "closed"}

// Bounds of the parts of a Contact Pro call that are stored in headers.
const (
	MaxContactProPath  = 256
	MaxContactProQuery = 1024
)

// ContactProCall is one call of a Contact Pro event-driven integration, as
// far as ccrelay reads it. Contact Pro's integrations are configured by the
// customer: any HTTP method, runtime placeholders ({event}, {contact.id})
// in the URL path or query, a body of the customer's own shape, or none.
type ContactProCall struct {
	// Integration is the integration name of the URL, lower-cased.
	Integration string
	// Event is the event, lower-cased: from the URL path, else the query
	// parameter "event", else the body; ContactProNoEvent when none names
	// one.
	Event string
	// Method is the HTTP method, upper-cased.
	Method string
	// Path is what follows the event in the URL path (placeholders such as
	// {contact.id}), without the leading slash.
	Path string
	// Query is the URL query.
	Query url.Values
	// ContactID is the contact the call is about, when the body, the path
	// or the query names it; empty otherwise.
	ContactID string
	// Body is the request body, byte for byte; it may be empty.
	Body []byte
}

// NewContactProCall reads a call: the event and contact from path, query or
// body, and checks the bounds of everything that becomes a subject token or
// a header. A non-empty body must be JSON. Errors wrap ErrInvalidPayload.
func NewContactProCall(integration, pathEvent, rest, method string, query url.Values, body []byte) (*ContactProCall, error) {
	c := &ContactProCall{
		Integration: strings.ToLower(integration),
		Method:      strings.ToUpper(method),
		Path:        strings.Trim(rest, "/"),
		Query:       query,
		Body:        body,
	}
	var top map[string]json.RawMessage
	if len(bytes.TrimSpace(body)) > 0 {
		if !json.Valid(body) {
			return nil, malformed("call body", errors.New("not valid JSON"))
		}
		// A body that is JSON but not an object (an array, a string) is
		// stored as it is; it just names no event or contact.
		_ = json.Unmarshal(body, &top)
	}
	c.Event = strings.ToLower(firstNonEmpty(pathEvent, query.Get("event"), bodyEvent(top)))
	if c.Event == "" {
		c.Event = ContactProNoEvent
	}
	c.ContactID = firstNonEmpty(bodyContact(top), pathContact(c.Path), query.Get("contact_id"), query.Get("contact.id"), query.Get("contactId"))
	switch {
	case c.Integration == "":
		return nil, missing("integration")
	case len(c.Path) > MaxContactProPath:
		return nil, &FieldError{Field: "path", Problem: fmt.Sprintf("is longer than %d bytes", MaxContactProPath)}
	case len(query.Encode()) > MaxContactProQuery:
		return nil, &FieldError{Field: "query", Problem: fmt.Sprintf("is longer than %d bytes", MaxContactProQuery)}
	}
	if err := checkText("path", c.Path); err != nil {
		return nil, err
	}
	for _, f := range [...]struct{ name, v string }{{"integration", c.Integration}, {"event", c.Event}} {
		if err := CheckToken(f.name, f.v); err != nil {
			return nil, err
		}
		// Both also go into the dedup id, a header value.
		if err := checkText(f.name, f.v); err != nil {
			return nil, err
		}
		if len(f.v) > 64 {
			return nil, &FieldError{Field: f.name, Problem: "is longer than 64 bytes"}
		}
	}
	if err := checkID("contact id", c.ContactID); err != nil {
		return nil, err
	}
	return c, nil
}

// DedupID is the call's dedup id:
//
//	contactpro:<integration>:<event>:<contact id or ->:<digest>
//
// where digest is the first 128 bits of the SHA-256 of the method, the
// path, the query and the body. A retried call repeats all of them; two
// distinct events of one conversation (Allocated after Queued, a second
// Allocated after a rejection) differ in the event or in the event data the
// integration sends ({event.datetime}, an id), so they never share an id,
// even when their contact and event are the same. An integration whose
// calls carry nothing that tells two of its events apart (no date, no id)
// makes them indistinguishable from a retry: the README says to include
// {event.datetime}.
func (c *ContactProCall) DedupID() string {
	h := sha256.New()
	for _, part := range [...]string{c.Method, c.Path, c.Query.Encode()} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(c.Body)
	contact := c.ContactID
	if contact == "" {
		contact = "-"
	}
	return SourceContactPro + ":" + c.Integration + ":" + c.Event + ":" + contact + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}

// RedactedQuery is the query to store: parameters whose names suggest a
// secret (key, token, secret, password, signature, auth) have their values
// replaced, as a customer may put {authentications.x} in a query parameter.
func (c *ContactProCall) RedactedQuery() string {
	if len(c.Query) == 0 {
		return ""
	}
	q := make(url.Values, len(c.Query))
	for k, vs := range c.Query {
		if secretName(k) {
			vs = []string{"[redacted]"}
		}
		q[k] = vs
	}
	return q.Encode()
}

func secretName(k string) bool {
	k = strings.ToLower(k)
	for _, s := range [...]string{"key", "token", "secret", "password", "passwd", "sig", "auth"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}

// bodyEvent finds the event in the shapes of Contact Pro's documented
// lifecycle integration: {"event": "{event}"} (the name, or the event
// object with its name), or a property the customer named, "Event name"
// in Contact Pro's example.
func bodyEvent(top map[string]json.RawMessage) string {
	for k, raw := range top {
		switch strings.ToLower(k) {
		case "event", "event_name", "eventname", "event name":
			if s := jsonString(raw); s != "" {
				return s
			}
			var obj struct {
				Name string `json:"name"`
			}
			if json.Unmarshal(raw, &obj) == nil && obj.Name != "" {
				return obj.Name
			}
		}
	}
	return ""
}

// bodyContact finds the contact: contact_id (the chat-attachments call),
// contact_guid, the contact object's guid or id ({"contact": "{contact}"}),
// or "ID", the property of {contact.id} in Contact Pro's example.
func bodyContact(top map[string]json.RawMessage) string {
	var found string
	for k, raw := range top {
		switch strings.ToLower(k) {
		case "contact_id", "contactid", "contact_guid", "contact id":
			if s := jsonString(raw); s != "" {
				return s
			}
		case "contact":
			var obj struct {
				ID   string `json:"id"`
				GUID string `json:"guid"`
			}
			if json.Unmarshal(raw, &obj) == nil {
				found = firstNonEmpty(found, obj.GUID, obj.ID)
			}
		}
		if k == "ID" && found == "" {
			found = jsonString(raw)
		}
	}
	return found
}

// pathContact is the last segment of the path after the event: where
// {contact.id} stands in Contact Pro's example endpoint URL.
func pathContact(rest string) string {
	if rest == "" {
		return ""
	}
	seg := rest[strings.LastIndexByte(rest, '/')+1:]
	if v, err := url.PathUnescape(seg); err == nil {
		return v
	}
	return seg
}

func jsonString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// CredentialContext is what credentials sealed into a Contact Pro call are
// bound to: the call's dedup id (which covers its whole body and request
// line) and, spelled out, the URLs and users of a chat-attachments body.
// Sealed credentials copied onto another event, or an edited body naming
// another host, do not open.
func CredentialContext(dedupID string, body []byte) []byte {
	var c ChatAttachmentsCall
	_ = json.Unmarshal(body, &c)
	return []byte(strings.Join([]string{"ccrelay-credentials-v1", dedupID, c.CMIURL, c.CMIUser, c.SAP.URL, c.SAP.User}, "\x00"))
}
