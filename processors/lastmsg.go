package processors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LastMsg returns the last message stored under subject in stream, read
// from the stream leader (JetStream's STREAM.MSG.GET, never a direct get,
// which a replica still catching up may answer with an older message):
// what a compare-and-set must start from. It returns nil and no error when
// the subject holds no message.
func LastMsg(ctx context.Context, js jetstream.JetStream, stream, subject string) (*jetstream.RawStreamMsg, error) {
	body, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{subject})
	if err != nil {
		return nil, err
	}
	res, err := js.Conn().RequestWithContext(ctx, apiPrefix(js.Options())+"STREAM.MSG.GET."+stream, body)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", subject, err)
	}
	var r msgGetResponse
	if err := json.Unmarshal(res.Data, &r); err != nil {
		return nil, fmt.Errorf("read %s: undecodable answer: %w", subject, err)
	}
	if r.Error != nil {
		if notFound(r.Error) {
			return nil, nil
		}
		return nil, fmt.Errorf("read %s: %w", subject, r.Error)
	}
	if r.Message == nil {
		return nil, fmt.Errorf("read %s: %w", subject, errors.New("an answer without a message"))
	}
	m := &jetstream.RawStreamMsg{Subject: r.Message.Subject, Sequence: r.Message.Sequence, Data: r.Message.Data, Time: r.Message.Time}
	if len(r.Message.Header) > 0 {
		if m.Header, err = nats.DecodeHeadersMsg(r.Message.Header); err != nil {
			return nil, fmt.Errorf("read %s: headers: %w", subject, err)
		}
	}
	return m, nil
}
