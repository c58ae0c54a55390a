package attachments

import (
	"context"
	"errors"
	"io"
	"mime"
	"path"
	"strconv"
	"strings"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/sinks/c4c"
)

// transfer moves a chat's attachments into its C4C activity.
func (p *Processor) transfer(ctx context.Context, ev *processors.Event) error {
	call, err := messages.DecodeChatAttachmentsCall(ev.Body)
	if err != nil {
		return processors.Permanent(err)
	}
	fields, err := p.openSealed(ev)
	if err != nil {
		return err
	}
	cr, err := p.credentials(call, fields)
	if err != nil {
		p.files.WithLabelValues("transfer", "refused").Inc()
		return err
	}
	ch, err := cr.cmi.chat(ctx, call.ContactID)
	if err != nil {
		return cmiErr(err)
	}
	if ch.Direct {
		return processors.Ignored("direct chats carry no attachments")
	}
	msgs, err := cr.cmi.messages(ctx, call.ContactID)
	if err != nil {
		return cmiErr(err)
	}
	type file struct {
		msg chatMessage
		att attachment
		as  string // the name in C4C, unique within the chat
	}
	var files []file
	seen := map[string]int{}
	for _, m := range msgs {
		for _, a := range m.Attachments {
			name := a.Name
			if name == "" {
				name = "attachment-" + a.ID
			}
			if n := seen[name]; n > 0 {
				ext := path.Ext(name)
				name = strings.TrimSuffix(name, ext) + " (" + strconv.Itoa(n+1) + ")" + ext
			}
			seen[a.Name]++
			files = append(files, file{msg: m, att: a, as: name})
		}
	}
	if len(files) == 0 {
		return nil
	}
	parent, err := p.c4c.FindChatActivity(ctx, cr.tenant, call.ContactID)
	if errors.Is(err, c4c.ErrNotFound) {
		return err // the activity may not be created yet: retry
	}
	if err != nil {
		return c4cErr(err)
	}
	existing, err := p.c4c.AttachmentNames(ctx, cr.tenant, parent)
	if err != nil {
		return c4cErr(err)
	}
	// Which staged media belongs to this chat is what CMI says: a CMI the
	// caller named could claim another chat's media, so its answers
	// never reach into the object store.
	appID := ""
	if cr.trustedCMI {
		appID = ch.AppID()
	}
	for _, f := range files {
		if existing[f.as] {
			p.files.WithLabelValues("upload", "already_there").Inc()
			continue
		}
		a, step := p.source(ctx, cr, appID, f.msg, f.att)
		a.Name = f.as
		sent := new(countingReader)
		open := a.Open
		a.Open = func() (io.ReadCloser, error) {
			r, err := open()
			sent.reset(r)
			return sent, err
		}
		if _, err := p.c4c.CreateAttachment(ctx, cr.tenant, parent, a); err != nil {
			return c4cErr(err)
		}
		p.bytes.WithLabelValues(step).Add(float64(sent.n))
		p.files.WithLabelValues("upload", step).Inc()
	}
	return nil
}

// source picks where an attachment's bytes come from: the object store
// when Sinch media was staged for the message, else CMI.
func (p *Processor) source(ctx context.Context, cr credentials, appID string, m chatMessage, a attachment) (c4c.Attachment, string) {
	mimeType := a.MimeType
	if mimeType == "" {
		mimeType = mime.TypeByExtension(path.Ext(a.Name))
	}
	if mimeType == "" {
		mimeType = "application/octet-stream"
	}
	if appID != "" && m.ExternalID != "" {
		name := objectName(appID, m.ExternalID)
		if info, err := p.store.GetInfo(ctx, name); err == nil {
			if ct := info.Headers.Get("Content-Type"); ct != "" && a.MimeType == "" {
				mimeType = ct
			}
			return c4c.Attachment{MimeType: mimeType, Size: int64(info.Size), Open: func() (io.ReadCloser, error) { // #nosec G115 -- staged objects are at most CCRELAY_MEDIA_MAX_BYTES
				return p.store.Get(ctx, name)
			}}, "uploaded_from_store"
		}
	}
	// CMI's size is metadata, not a promise: send chunked rather than
	// risk a Content-Length the bytes do not match.
	return c4c.Attachment{MimeType: mimeType, Size: -1, Open: func() (io.ReadCloser, error) {
		return cr.cmi.open(ctx, m.ID, a.ID)
	}}, "uploaded_from_cmi"
}

func cmiErr(err error) error {
	var ce *cmiError
	if errors.As(err, &ce) && !ce.transient() {
		return processors.Permanent(err)
	}
	return err
}

func c4cErr(err error) error {
	// An upload's bytes come from CMI: its failure decides.
	var ce *cmiError
	if errors.As(err, &ce) {
		return cmiErr(err)
	}
	if c4c.IsTransient(err) {
		return err
	}
	return processors.Permanent(err)
}

// countingReader counts the bytes of the last attempt's content.
type countingReader struct {
	r io.ReadCloser
	n int64
}

func (c *countingReader) reset(r io.ReadCloser) { c.r, c.n = r, 0 }

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }
