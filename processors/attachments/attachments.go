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
//
// Guarantee: once (the ledger). An upload to C4C creates a document each
// time it is made; the name check before it narrows a repeat to a replica
// that uploaded and died before recording it, and the ledger keeps every
// other copy of the event (a redelivery, a replay) from uploading again.
package attachments

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/seal"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/sinks/c4c"
	"github.com/ccrelay/ccrelay/sinks/egress"
)

// Name is the processor's name.
const Name = "attachments"

// Config sets the processor. Its env tags are read with the CCRELAY_ prefix.
type Config struct {
	// MediaTTL is how long staged media is kept.
	MediaTTL time.Duration `env:"MEDIA_TTL" envDefault:"168h" help:"how long staged Sinch media is kept"`
	// MediaMaxBytes is the largest media file staged.
	MediaMaxBytes int64 `env:"MEDIA_MAX_BYTES" envDefault:"104857600" help:"largest Sinch media file staged"`
	// MediaTimeout bounds one media download.
	MediaTimeout time.Duration `env:"MEDIA_TIMEOUT" envDefault:"120s" help:"bound of one Sinch media download"`
	CMI          CMIConfig
}

// Processor moves attachments.
type Processor struct {
	cfg      Config
	env      processors.Env
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

// New returns the processor. It checks where credentials may go, and
// creates nothing: Provision creates the media bucket.
func New(cfg Config, env processors.Env) (*Processor, error) {
	eg := env.Egress
	cmiOrigin, err := egress.NewOrigin("CCRELAY_CMI_URL", cfg.CMI.URL, eg.CMIAllowedHosts, "CCRELAY_CMI_ALLOWED_HOSTS", eg.AllowPrivate)
	if err != nil {
		return nil, err
	}
	c4cOrigin, err := egress.NewOrigin("CCRELAY_C4C_URL", env.C4C.Config().URL, eg.C4CAllowedHosts, "CCRELAY_C4C_ALLOWED_HOSTS", eg.AllowPrivate)
	if err != nil {
		return nil, err
	}
	p := &Processor{
		cfg: cfg, env: env, c4c: env.C4C, keys: env.SealKeys, logger: env.Logger, subjects: env.Subjects,
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
	env.Registry.MustRegister(p.bytes, p.files)
	return p, nil
}

// Provision creates or binds the media bucket.
func (p *Processor) Provision(ctx context.Context) error {
	store, err := p.env.Waiter.ObjectStore(ctx, p.env.JS, jetstream.ObjectStoreConfig{
		Bucket:      p.subjects.MediaBucket(),
		Description: "ccrelay: Sinch media staged until its chat ends",
		TTL:         p.cfg.MediaTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    p.env.Replicas,
	})
	if err != nil {
		return fmt.Errorf("media %w", err)
	}
	p.store = store
	return nil
}

// Processor returns the runtime definition of the processor.
func (p *Processor) Processor() processors.Processor {
	return processors.Processor{Name: Name, Handler: p, Guarantee: processors.Once, Filter: []string{
		p.subjects.SinchFilter(messages.TriggerMessageInbound),
		p.subjects.ContactProFilter(messages.IntegrationChatAttachments),
	}}
}

// Wants implements processors.Selector: media messages, and chats that
// ended or closed. Most inbound messages are text: they are told apart
// with one pass over the body (not a full decode) and skip the ledger.
func (p *Processor) Wants(ev *processors.Event) (bool, string) {
	a, err := p.subjects.Parse(ev.Subject)
	if err != nil {
		return true, "" // Handle dead-letters what it cannot place
	}
	switch a.Source {
	case messages.SourceSinch:
		r, err := messages.RouteSinchCallback(a.Service, ev.Body)
		if err != nil {
			return true, "" // Handle dead-letters what it cannot decode
		}
		if !r.Media {
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
