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
//
// The contact is the one the call's dedup id names, read by the same rule
// (NewContactProCall): a body that spells a key twice, in any case, is
// refused, so encoding/json's case-insensitive, last-wins matching of the
// other fields cannot read a value ingest did not.
func DecodeChatAttachmentsCall(body []byte) (*ChatAttachmentsCall, error) {
	var c ChatAttachmentsCall
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, malformed("chat-attachments call", err)
	}
	if err := repeatedKey(body, everyKey); err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	_ = json.Unmarshal(body, &top) // an object: c was decoded from it
	contact, key := bodyContact(top)
	if key != contactKeys[0] {
		return nil, missing("contact_id")
	}
	c.ContactID = contact
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
		if err := repeatedKey(body, everyKey); err != nil {
			return nil, err
		}
		// A body that is JSON but not an object (an array, a string) is
		// stored as it is; it just names no event or contact.
		_ = json.Unmarshal(body, &top)
	}
	// A parameter given twice would be read by its first value here and
	// perhaps its last elsewhere.
	for _, name := range [...]string{"event", "contact_id", "contact.id", "contactId"} {
		if len(query[name]) > 1 {
			return nil, &FieldError{Field: "query parameter " + name, Problem: "appears twice"}
		}
	}
	c.Event = strings.ToLower(firstNonEmpty(pathEvent, query.Get("event"), bodyEvent(top)))
	if c.Event == "" {
		c.Event = ContactProNoEvent
	}
	contact, _ := bodyContact(top)
	c.ContactID = firstNonEmpty(contact, pathContact(c.Path), query.Get("contact_id"), query.Get("contact.id"), query.Get("contactId"))
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
		// They name the subject and stand in the id in clear: a name,
		// never a phone number or an address.
		if mayBePersonal(f.v) {
			return nil, &FieldError{Field: f.name, Problem: "is not a name (it holds '@', '+' or a run of 6 or more digits, as a phone number or an address does)"}
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
// where a contact id that may be personal data (a phone number, an e-mail
// address: anything but an opaque id) stands as its PersonalDigest, and
// digest is the first 128 bits of the SHA-256 of the method, the path, the
// query and the body. A retried call repeats all of them; two
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
	contact := opaqueOrDigest(c.ContactID)
	if contact == "" {
		contact = "-"
	}
	// Escaped as in the subject: a ':' in the integration or the event
	// would otherwise let "a:b"/"c" and "a"/"b:c" share an id.
	return SourceContactPro + ":" + EscapeToken(c.Integration) + ":" + EscapeToken(c.Event) + ":" + contact + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}

// RedactedQuery is the query to store: every parameter with its value
// replaced, but the event, whose value was checked to be a name. A list of
// names that suggest a secret is never complete (pw, pin, otp, jwt, a
// customer's {authentications.x} under any name), and a contact parameter
// may be a phone number; what the processors act on is in the id and the
// body, so the stored query only tells which parameters came.
func (c *ContactProCall) RedactedQuery() string {
	if len(c.Query) == 0 {
		return ""
	}
	q := make(url.Values, len(c.Query))
	for k, vs := range c.Query {
		if k != "event" {
			vs = []string{"[redacted]"}
		}
		q[k] = vs
	}
	return q.Encode()
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}

// The keys the event and the contact are read from, each matched
// regardless of case, in the order they take precedence: the first that
// holds a value wins, whatever order the body gives its keys. Keys that
// fold to one another are refused before (repeatedKey), so each name
// matches one key at most.
var (
	// eventKeys: {"event": "{event}"} (the name, or the event object with
	// its name) in Contact Pro's documented lifecycle integration, then
	// the names a customer gives the property, "Event name" in Contact
	// Pro's example.
	eventKeys = []string{"event", "event_name", "eventname", "event name"}
	// contactKeys: contact_id (the chat-attachments call's), then the other
	// spellings; after them the contact object's guid, then its id
	// ({"contact": "{contact}"}), then "ID", exactly so spelt, the
	// property of {contact.id} in Contact Pro's example.
	contactKeys = []string{"contact_id", "contactid", "contact_guid", "contact id"}
)

// member is the value of the key of top that folds to name.
func member(top map[string]json.RawMessage, name string) (json.RawMessage, bool) {
	for k, raw := range top {
		if strings.EqualFold(k, name) {
			return raw, true
		}
	}
	return nil, false
}

// bodyEvent finds the event: the first of eventKeys that names one.
func bodyEvent(top map[string]json.RawMessage) string {
	for _, name := range eventKeys {
		raw, ok := member(top, name)
		if !ok {
			continue
		}
		if s := strings.TrimSpace(jsonString(raw)); s != "" {
			return s
		}
		var obj struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(raw, &obj) == nil && strings.TrimSpace(obj.Name) != "" {
			return obj.Name
		}
	}
	return ""
}

// bodyContact finds the contact, and the key it was read from (a name of
// contactKeys, "contact" or "ID"): the first of those that names one.
func bodyContact(top map[string]json.RawMessage) (contact, key string) {
	for _, name := range contactKeys {
		if raw, ok := member(top, name); ok {
			if s := strings.TrimSpace(jsonString(raw)); s != "" {
				return s, name
			}
		}
	}
	if raw, ok := member(top, "contact"); ok {
		var obj struct {
			ID   string `json:"id"`
			GUID string `json:"guid"`
		}
		if json.Unmarshal(raw, &obj) == nil {
			if s := firstNonEmpty(obj.GUID, obj.ID); s != "" {
				return s, "contact"
			}
		}
	}
	if s := strings.TrimSpace(jsonString(top["ID"])); s != "" {
		return s, "ID"
	}
	return "", ""
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
// bound to: the call's dedup id and the SHA-256 of the whole body as
// stored. The id alone does not bind the body: a processor reads it from
// ce-id, which whoever can publish copies onto an edited body (another
// chat, another host) as easily as the sealed header. Values sealed under
// the v1 context (the id, URLs and users only) do not open.
func CredentialContext(dedupID string, body []byte) []byte {
	sum := sha256.Sum256(body)
	return []byte("ccrelay-credentials-v2\x00" + dedupID + "\x00" + hex.EncodeToString(sum[:]))
}
