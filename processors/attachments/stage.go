package attachments

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/sinks/egress"
	"github.com/ccrelay/ccrelay/sinks/retry"
)

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
