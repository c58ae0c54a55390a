package attachments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/sinks/egress"
	"github.com/ccrelay/ccrelay/sinks/retry"

	"github.com/ccrelay/ccrelay/messages/secret"
)

// CMIConfig sets the Contact Management Interface client. Its env tags are
// read with the CCRELAY_ prefix. URL, user, password and API key are the
// defaults; a chat-attachments call's cmi_url, cmi_user and sealed
// credentials win for that call. The resource paths are not public: the
// defaults are ccrelay's assumption, which a user confirms against their
// CMI; {contact_id}, {message_id} and {attachment_id} are replaced.
type CMIConfig struct {
	URL            string        `env:"CMI_URL" help:"default CMI, read for a Contact Pro chat's attachments; its credentials go to its origin only"`
	User           string        `env:"CMI_USER" help:"user of the default CMI (HTTP basic)"`
	Password       secret.Secret `env:"CMI_PASSWORD" help:"secret: password of 'CCRELAY_CMI_USER'"`
	APIKey         secret.Secret `env:"CMI_API_KEY" help:"secret: API key of the default CMI, sent in 'CCRELAY_CMI_API_KEY_HEADER'"`
	APIKeyHeader   string        `env:"CMI_API_KEY_HEADER" envDefault:"x-api-key" help:"header of the CMI API key"`
	ChatPath       string        `env:"CMI_CHAT_PATH" envDefault:"/chats/{contact_id}" help:"CMI resource: a chat; '{contact_id}' is replaced"`
	MessagesPath   string        `env:"CMI_MESSAGES_PATH" envDefault:"/chatMessages?chatId={contact_id}" help:"CMI resource: a chat's messages with their attachments"`
	AttachmentPath string        `env:"CMI_ATTACHMENT_PATH" envDefault:"/chatMessages/{message_id}/attachments/{attachment_id}" help:"CMI resource: the bytes of one attachment"`
	Timeout        time.Duration `env:"CMI_TIMEOUT" envDefault:"60s" help:"one HTTP exchange with CMI"`
}

// cmiSession is the CMI of one call: where and as whom.
type cmiSession struct {
	cfg      CMIConfig
	http     *http.Client
	base     string
	user     string
	password string
	apiKey   string
}

// chat is what CMI says of a chat (assumed shape, see CMIConfig).
type chat struct {
	ID string `json:"id"`
	// Direct chats carry no attachments.
	Direct bool `json:"direct"`
	// QueueAddress is <app id>@<subchannel>.sinchconversation.com for
	// chats through the Sinch Conversation API.
	QueueAddress string `json:"queueAddress"`
}

// AppID is the Sinch app id of the chat's queue address, if any.
func (c chat) AppID() string {
	if i := strings.IndexByte(c.QueueAddress, '@'); i > 0 && strings.HasSuffix(c.QueueAddress, ".sinchconversation.com") {
		return c.QueueAddress[:i]
	}
	return ""
}

type chatMessage struct {
	ID string `json:"id"`
	// ExternalID is the channel's message id (the Sinch message id).
	ExternalID  string       `json:"externalId"`
	Attachments []attachment `json:"attachments"`
}

type attachment struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	MimeType string `json:"mimeType"`
	Size     int64  `json:"size"`
}

// cmiError is a failed CMI call; Status 0 for network errors.
type cmiError struct {
	Op     string
	Status int
	Err    error
}

func (e *cmiError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("cmi %s: HTTP %d", e.Op, e.Status)
	}
	return fmt.Sprintf("cmi %s: %v", e.Op, e.Err)
}

func (e *cmiError) Unwrap() error { return e.Err }

// transient reports whether retrying can help: what retry says of the
// answer, except for a request egress refused (a private address, too many
// redirects), which has no answer and is refused the same way every time.
func (e *cmiError) transient() bool {
	return !errors.Is(e.Err, egress.ErrRefused) && retry.TransientStatus(e.Status)
}

func (s *cmiSession) resolve(path string, vars map[string]string) string {
	for k, v := range vars {
		path = strings.ReplaceAll(path, "{"+k+"}", escapeAll(v))
	}
	return strings.TrimRight(s.base, "/") + "/" + strings.TrimLeft(path, "/")
}

func (s *cmiSession) get(ctx context.Context, op, u, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, &cmiError{Op: op, Err: err}
	}
	req.Header.Set("Accept", accept)
	if s.user != "" {
		req.SetBasicAuth(s.user, s.password)
	}
	if s.apiKey != "" {
		req.Header.Set(s.cfg.APIKeyHeader, s.apiKey)
	}
	res, err := s.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, &cmiError{Op: op, Err: err}
	}
	if res.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
		_ = res.Body.Close()
		return nil, &cmiError{Op: op, Status: res.StatusCode}
	}
	return res, nil
}

func (s *cmiSession) getJSON(ctx context.Context, op, u string, v any) error {
	res, err := s.get(ctx, op, u, "application/json")
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if err := json.NewDecoder(io.LimitReader(res.Body, 16<<20)).Decode(v); err != nil {
		return &cmiError{Op: op, Status: res.StatusCode, Err: fmt.Errorf("decode answer: %w", err)}
	}
	return nil
}

// chat reads the chat of contactID.
func (s *cmiSession) chat(ctx context.Context, contactID string) (chat, error) {
	var c chat
	err := s.getJSON(ctx, "chat", s.resolve(s.cfg.ChatPath, map[string]string{"contact_id": contactID}), &c)
	return c, err
}

// messages reads the chat's messages, in order.
func (s *cmiSession) messages(ctx context.Context, contactID string) ([]chatMessage, error) {
	var out struct {
		Value []chatMessage `json:"value"`
	}
	err := s.getJSON(ctx, "chat_messages", s.resolve(s.cfg.MessagesPath, map[string]string{"contact_id": contactID}), &out)
	return out.Value, err
}

// open downloads an attachment's bytes; the caller closes them.
func (s *cmiSession) open(ctx context.Context, messageID, attachmentID string) (io.ReadCloser, error) {
	res, err := s.get(ctx, "attachment", s.resolve(s.cfg.AttachmentPath, map[string]string{"message_id": messageID, "attachment_id": attachmentID}), "*/*")
	if err != nil {
		return nil, err
	}
	return res.Body, nil
}

// escapeAll percent-encodes every byte outside RFC 3986's unreserved set, so
// a value is safe in a path segment and in a query alike.
func escapeAll(v string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// Check asks the configured CMI for a chat that does not exist: a 404
// (or 200) proves the address and credentials; 401/403 does not.
func (p *Processor) Check(ctx context.Context) error {
	cfg := p.cfg.CMI
	if cfg.URL == "" {
		return fmt.Errorf("CCRELAY_CMI_URL %w (each call's cmi_url is used)", processors.ErrNotConfigured)
	}
	s := cmiSession{cfg: cfg, http: p.cmi, base: cfg.URL, user: cfg.User, password: cfg.Password.Reveal(), apiKey: cfg.APIKey.Reveal()}
	_, err := s.chat(ctx, "ccrelay-check")
	var ce *cmiError
	switch {
	case err == nil, errors.As(err, &ce) && ce.Status == http.StatusNotFound:
		return nil
	case errors.As(err, &ce) && (ce.Status == http.StatusUnauthorized || ce.Status == http.StatusForbidden):
		return fmt.Errorf("%w: credentials refused (CCRELAY_CMI_USER/PASSWORD/API_KEY)", err)
	}
	return err
}
