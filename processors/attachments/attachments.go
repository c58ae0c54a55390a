// Package attachments is the processor that moves chat attachments into
// SAP Service Cloud:
//
//   - a Sinch MESSAGE_INBOUND with a media message is downloaded at once
//     (channel media URLs expire) into a JetStream object store bucket,
//     keyed by app id and message id, kept for CCRELAY_MEDIA_TTL;
//   - Contact Pro's chat-attachments call (event Ended or Closed) reads the
//     chat's messages and attachments from CMI, takes each attachment from
//     the object store when it was staged and from CMI otherwise, finds the
//     chat's activity in C4C and uploads each attachment there.
//
// Files are streamed end to end: memory does not grow with their size.
package attachments

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/messages/seal"
	"github.com/ccrelay/ccrelay/messages/secret"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/sinks/c4c"
	"github.com/ccrelay/ccrelay/sinks/egress"
	"github.com/ccrelay/ccrelay/sinks/retry"
)

// Name is the processor's name.
const Name = "attachments"

// Config sets the processor. Its env tags are read with the CCRELAY_ prefix.
type Config struct {
	// MediaTTL is how long staged media is kept.
	MediaTTL time.Duration `env:"MEDIA_TTL" envDefault:"168h"`
	// MediaMaxBytes is the largest media file staged.
	MediaMaxBytes int64 `env:"MEDIA_MAX_BYTES" envDefault:"104857600"`
	// MediaTimeout bounds one media download.
	MediaTimeout time.Duration `env:"MEDIA_TIMEOUT" envDefault:"120s"`
	CMI          CMIConfig
}

// Processor moves attachments.
type Processor struct {
	cfg      Config
	store    jetstream.ObjectStore
	c4c      *c4c.Client
	keys     seal.KeyRing
	media    *http.Client
	cmi      *http.Client
	logger   *slog.Logger
	bytes    *prometheus.CounterVec
	files    *prometheus.CounterVec
	subjects messages.Subjects
	egress   egress.Settings
	// cmiOrigin and c4cOrigin bind credentials to where they may go.
	cmiOrigin, c4cOrigin egress.Origin
}

// New creates or updates the media bucket and returns the processor. keys
// open the credentials sealed into Contact Pro calls.
func New(ctx context.Context, cfg Config, w provision.Waiter, js jetstream.JetStream, subjects messages.Subjects, replicas int, client *c4c.Client, keys seal.KeyRing, eg egress.Settings, reg prometheus.Registerer, logger *slog.Logger) (*Processor, error) {
	cmiOrigin, err := egress.NewOrigin("CCRELAY_CMI_URL", cfg.CMI.URL, eg.CMIAllowedHosts, "CCRELAY_CMI_ALLOWED_HOSTS", eg.AllowPrivate)
	if err != nil {
		return nil, err
	}
	c4cOrigin, err := egress.NewOrigin("CCRELAY_C4C_URL", client.Config().URL, eg.C4CAllowedHosts, "CCRELAY_C4C_ALLOWED_HOSTS", eg.AllowPrivate)
	if err != nil {
		return nil, err
	}
	store, err := w.ObjectStore(ctx, js, jetstream.ObjectStoreConfig{
		Bucket:      subjects.MediaBucket(),
		Description: "ccrelay: Sinch media staged until its chat ends",
		TTL:         cfg.MediaTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("media %w", err)
	}
	p := &Processor{
		cfg: cfg, store: store, c4c: client, keys: keys, logger: logger, subjects: subjects,
		egress: eg, cmiOrigin: cmiOrigin, c4cOrigin: c4cOrigin,
		// Media hosts get no credentials and are never trusted with a
		// private address; CMI's configured host is the operator's.
		media: eg.Guard().Client(cfg.MediaTimeout),
		cmi:   eg.Guard(cfg.CMI.URL).Client(cfg.CMI.Timeout),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_attachment_bytes_total",
			Help: "Attachment bytes moved, by step (staged from a media host; uploaded to C4C from the object store or from CMI).",
		}, []string{"step"}),
		files: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_attachment_files_total",
			Help: "Attachment files, by step and outcome.",
		}, []string{"step", "outcome"}),
	}
	reg.MustRegister(p.bytes, p.files)
	return p, nil
}

// Processor returns the runtime definition of the processor.
func (p *Processor) Processor() processors.Processor {
	return processors.Processor{Name: Name, Handler: p, Filter: []string{
		p.subjects.SinchFilter(messages.TriggerMessageInbound),
		p.subjects.ContactProFilter(messages.IntegrationChatAttachments),
	}}
}

// Wants implements processors.Selector: media messages, and chats that
// ended or closed. Most inbound messages are text: they are told apart
// with one decode and skip the ledger.
func (p *Processor) Wants(ev *processors.Event) (bool, string) {
	a, err := p.subjects.Parse(ev.Subject)
	if err != nil {
		return true, "" // Handle dead-letters what it cannot place
	}
	switch a.Source {
	case messages.SourceSinch:
		cb, err := messages.DecodeSinchCallback(ev.Body)
		if err != nil {
			return true, "" // Handle dead-letters what it cannot decode
		}
		if cb.Message.Media() == nil {
			return false, "not a media message"
		}
	case messages.SourceContactPro:
		if !chatOver(a.Name) {
			return false, "chat-attachments event " + a.Name
		}
	}
	return true, ""
}

// chatOver reports whether a chat-attachments event says the chat is over,
// so its attachments are final.
func chatOver(event string) bool { return event == "ended" || event == "closed" }

// Handle implements processors.Handler.
func (p *Processor) Handle(ctx context.Context, ev *processors.Event) error {
	a, err := p.subjects.Parse(ev.Subject)
	if err != nil {
		return processors.Permanent(err)
	}
	switch a.Source {
	case messages.SourceSinch:
		return p.stage(ctx, ev)
	case messages.SourceContactPro:
		if !chatOver(a.Name) {
			return processors.Ignored("chat-attachments event " + a.Name)
		}
		return p.transfer(ctx, ev)
	}
	return processors.Ignored("not an attachments event")
}

// objectName is where a Sinch message's media is staged.
func objectName(appID, messageID string) string { return appID + "/" + messageID }

// stage downloads a media message's file into the object store.
func (p *Processor) stage(ctx context.Context, ev *processors.Event) error {
	cb, err := messages.DecodeSinchCallback(ev.Body)
	if err != nil {
		return processors.Permanent(err)
	}
	if cb.Message.Media() == nil {
		return processors.Ignored("not a media message")
	}
	media := cb.Message.Media()
	name := objectName(cb.AppID, cb.Message.ID)
	if _, err := p.store.GetInfo(ctx, name); err == nil {
		return nil // staged by an earlier delivery
	}
	mediaURL, err := p.egress.CheckMedia(media.URL)
	if err != nil {
		p.files.WithLabelValues("stage", "refused").Inc()
		return processors.Permanent(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, mediaURL.String(), nil)
	if err != nil {
		return processors.Permanentf("media url: %v", err)
	}
	res, err := p.media.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, egress.ErrRefused) {
			p.files.WithLabelValues("stage", "refused").Inc()
			return processors.Permanent(fmt.Errorf("download media: %w", err))
		}
		return fmt.Errorf("download media: %w", err)
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode == http.StatusOK:
	case res.StatusCode >= 300 && res.StatusCode < 400:
		return processors.Permanentf("download media: HTTP %d redirect to another origin, not followed", res.StatusCode)
	case res.StatusCode == 404 || res.StatusCode == 410:
		p.files.WithLabelValues("stage", "expired").Inc()
		return processors.Permanentf("download media: HTTP %d (the channel no longer has it)", res.StatusCode)
	case retry.TransientStatus(res.StatusCode):
		return fmt.Errorf("download media: HTTP %d", res.StatusCode)
	default:
		return processors.Permanentf("download media: HTTP %d", res.StatusCode)
	}
	if res.ContentLength > p.cfg.MediaMaxBytes {
		return processors.Permanentf("media is %d bytes, over CCRELAY_MEDIA_MAX_BYTES", res.ContentLength)
	}
	filename := media.FilenameOverride
	if filename == "" {
		filename = path.Base(req.URL.Path)
	}
	ctype := res.Header.Get("Content-Type")
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	body := &limitedReader{r: res.Body, left: p.cfg.MediaMaxBytes}
	info, err := p.store.Put(ctx, jetstream.ObjectMeta{
		Name:    name,
		Headers: map[string][]string{"Content-Type": {ctype}, "Filename": {filename}},
	}, body)
	if errors.Is(err, errTooLarge) || body.over {
		_ = p.store.Delete(context.WithoutCancel(ctx), name)
		return processors.Permanentf("media is over CCRELAY_MEDIA_MAX_BYTES (%d)", p.cfg.MediaMaxBytes)
	}
	if err != nil {
		return fmt.Errorf("stage media: %w", err)
	}
	p.bytes.WithLabelValues("staged").Add(float64(info.Size))
	p.files.WithLabelValues("stage", "staged").Inc()
	p.logger.Debug("media staged", "object", name, "bytes", info.Size)
	return nil
}

var errTooLarge = errors.New("too large")

// limitedReader fails once more than left bytes were read.
type limitedReader struct {
	r    io.Reader
	left int64
	over bool
}

func (l *limitedReader) Read(b []byte) (int, error) {
	n, err := l.r.Read(b)
	l.left -= int64(n)
	if l.left < 0 {
		l.over = true
		return n, errTooLarge
	}
	return n, err
}

// credentials are where and as whom one Contact Pro call is served.
type credentials struct {
	cmi    cmiSession
	tenant c4c.Tenant
	// trustedCMI is true when CMI is the configured one: only then do its
	// answers decide which staged media belongs to the chat.
	trustedCMI bool
}

// credentials binds the call's URLs to credentials. Credentials travel as
// a unit with their origin: the call's own (sealed into the event) go with
// the call's URLs or the configured ones; the configured ones go only to
// the configured URLs. A call naming a URL elsewhere without its own
// credentials, or a host off the allow-list, is refused permanently.
func (p *Processor) credentials(call *messages.ChatAttachmentsCall, fields map[string]string) (credentials, error) {
	cfg := p.cfg.CMI
	own := fields["x-cmi-password"] != "" || fields["x-cmi-api-key"] != ""
	b, err := p.cmiOrigin.Bind(call.CMIURL, own)
	if err != nil {
		return credentials{}, processors.Permanent(fmt.Errorf("cmi: %w", err))
	}
	cmi := cmiSession{cfg: cfg, http: p.cmi, base: strings.TrimRight(b.URL.String(), "/"),
		user: cfg.User, password: cfg.Password.Reveal(), apiKey: cfg.APIKey.Reveal()}
	if own {
		cmi.user, cmi.password, cmi.apiKey = call.CMIUser, fields["x-cmi-password"], fields["x-cmi-api-key"]
	}
	tenant, err := p.c4c.Config().TenantFor(p.c4cOrigin, call.SAP.URL, call.SAP.User, secret.Secret(fields["x-sap-v1-password"]))
	if err != nil {
		return credentials{}, processors.Permanent(fmt.Errorf("c4c: %w", err))
	}
	return credentials{cmi: cmi, tenant: tenant, trustedCMI: b.Configured}, nil
}

// openSealed opens the credentials sealed into the event, bound to its
// dedup id and the URLs and users of its body: a sealed header copied onto
// another event, or a body edited to name another host, does not open, and
// the event is dead-lettered.
func (p *Processor) openSealed(ev *processors.Event, call *messages.ChatAttachmentsCall) (map[string]string, error) {
	sealed := ev.Header.Get(messages.HeaderSealed)
	if sealed == "" {
		return nil, nil
	}
	fields, err := p.keys.Open(sealed, messages.CredentialContext(ev.ID, ev.Body))
	if err != nil {
		p.files.WithLabelValues("transfer", "refused").Inc()
		return nil, processors.Permanentf("open sealed credentials (sealed for another event, or the body was changed): %v", err)
	}
	return fields, nil
}

// transfer moves a chat's attachments into its C4C activity.
func (p *Processor) transfer(ctx context.Context, ev *processors.Event) error {
	call, err := messages.DecodeChatAttachmentsCall(ev.Body)
	if err != nil {
		return processors.Permanent(err)
	}
	fields, err := p.openSealed(ev, call)
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

// ErrNotConfigured is returned by checks of something not configured.
var ErrNotConfigured = errors.New("not configured")

// CheckCMI asks the configured CMI for a chat that does not exist: a 404
// (or 200) proves the address and credentials; 401/403 does not.
func (p *Processor) CheckCMI(ctx context.Context) error {
	cfg := p.cfg.CMI
	if cfg.URL == "" {
		return fmt.Errorf("CCRELAY_CMI_URL %w (each call's cmi_url is used)", ErrNotConfigured)
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
