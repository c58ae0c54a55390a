package processors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages/provision"
)

// Scan selects stored messages for the operator tools (replay, dlq list
// and requeue), which read a stream from start to end once.
//
// They read with message gets by sequence, not a consumer: nats.go's
// ordered consumer creates its consumer again on every Next, and on a
// cluster the pull right after a creation sometimes reaches a server with
// no interest yet ("no responders"); a get needs no consumer, and leaves
// none behind in 'nats consumer report'. The gets go to the stream leader
// (JetStream's STREAM.MSG.GET), not to any replica (direct get): a replica
// serves direct gets once it is 90% caught up, so after a restart it may
// not have the last messages yet, and a scan would end early without
// saying so. Every get is retried within Wait while JetStream answers
// with no responders, a timeout or a 5xx (a leader election).
type Scan struct {
	// Stream is the stream's name.
	Stream string
	// Filter selects the subjects, wildcards allowed; empty for all.
	Filter string
	// Since and Until bound the stored time, both included; a zero Since
	// is the first message, a zero Until the last one stored when Open ran.
	Since, Until time.Time
	// Wait retries each request; its zero value waits 15 s.
	Wait provision.Waiter
}

// Scanner reads the messages of a Scan in stream order.
type Scanner struct {
	js      jetstream.JetStream
	sc      Scan
	subject string
	// First and Last are the window's stream sequences: the first message
	// that matches, and the last sequence the scan reads up to. Both are 0
	// when nothing matches. Messages stored after Open are past Last.
	First, Last uint64
	pending     *jetstream.RawStreamMsg
	next        uint64
}

// msgGetRequest is JetStream's JSApiMsgGetRequest, with the start time
// nats.go's GetMsg does not offer.
type msgGetRequest struct {
	Seq       uint64     `json:"seq,omitempty"`
	NextFor   string     `json:"next_by_subj,omitempty"`
	LastFor   string     `json:"last_by_subj,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
}

// msgGetResponse is JetStream's JSApiMsgGetResponse.
type msgGetResponse struct {
	Error   *jetstream.APIError `json:"error,omitempty"`
	Message *struct {
		Subject  string    `json:"subject"`
		Sequence uint64    `json:"seq"`
		Header   []byte    `json:"hdrs,omitempty"`
		Data     []byte    `json:"data,omitempty"`
		Time     time.Time `json:"time"`
	} `json:"message,omitempty"`
}

// Open finds the window of sc: the stream's last sequence now, and the
// first and last messages stored within sc's times. Later messages (the
// copies a replay stores, for one) are not read.
func (sc Scan) Open(ctx context.Context, js jetstream.JetStream) (*Scanner, error) {
	if sc.Filter == "" {
		sc.Filter = ">"
	}
	s := sc.scanner(js)
	var last uint64
	err := sc.Wait.Do(ctx, "stream "+sc.Stream, func(ctx context.Context) error {
		st, err := js.Stream(ctx, sc.Stream)
		if err != nil {
			return err
		}
		last = st.CachedInfo().State.LastSeq
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !sc.Until.IsZero() {
		// The first message stored after Until, of any subject, ends the
		// window before it.
		after := sc.Until.Add(time.Nanosecond)
		m, err := s.get(ctx, msgGetRequest{NextFor: ">", StartTime: &after})
		switch {
		case notFound(err):
		case err != nil:
			return nil, err
		case m.Sequence <= last && m.Time.After(sc.Until):
			last = m.Sequence - 1
		}
	}
	first := msgGetRequest{Seq: 1, NextFor: sc.Filter}
	if !sc.Since.IsZero() {
		since := sc.Since
		first = msgGetRequest{NextFor: sc.Filter, StartTime: &since}
	}
	m, err := s.get(ctx, first)
	// A server before 2.11 ignores start_time and answers from the
	// stream's start: step over what precedes the window rather than read
	// it as part of it.
	for err == nil && m.Time.Before(sc.Since) && m.Sequence < last {
		m, err = s.get(ctx, msgGetRequest{Seq: m.Sequence + 1, NextFor: sc.Filter})
	}
	switch {
	case notFound(err):
		return s, nil
	case err != nil:
		return nil, err
	case m.Sequence > last, m.Time.Before(sc.Since), s.after(m):
		return s, nil
	}
	s.First, s.Last, s.pending = m.Sequence, last, m
	return s, nil
}

// after reports whether m was stored after the window: what ends a scan
// on a server that ignored the start time Open found its end with.
func (s *Scanner) after(m *jetstream.RawStreamMsg) bool {
	return !s.sc.Until.IsZero() && m.Time.After(s.sc.Until)
}

// scanner is a Scanner of sc before Open: it gets messages, and has no
// window yet.
func (sc Scan) scanner(js jetstream.JetStream) *Scanner {
	return &Scanner{js: js, sc: sc, subject: apiPrefix(js.Options()) + "STREAM.MSG.GET." + sc.Stream}
}

// Next returns the next message of the window, or io.EOF after its last.
func (s *Scanner) Next(ctx context.Context) (*jetstream.RawStreamMsg, error) {
	if m := s.pending; m != nil {
		s.pending, s.next = nil, m.Sequence+1
		return m, nil
	}
	if s.next == 0 || s.next > s.Last {
		return nil, io.EOF
	}
	m, err := s.get(ctx, msgGetRequest{Seq: s.next, NextFor: s.sc.Filter})
	switch {
	case notFound(err):
		s.next = s.Last + 1
		return nil, io.EOF
	case err != nil:
		return nil, err
	case m.Sequence > s.Last, s.after(m):
		s.next = s.Last + 1
		return nil, io.EOF
	}
	s.next = m.Sequence + 1
	return m, nil
}

// get asks the stream leader for one message, retrying within the wait.
func (s *Scanner) get(ctx context.Context, req msgGetRequest) (*jetstream.RawStreamMsg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	what := "stream " + s.sc.Stream + " from seq " + strconv.FormatUint(req.Seq, 10)
	if req.StartTime != nil {
		what = "stream " + s.sc.Stream + " from " + req.StartTime.UTC().Format(time.RFC3339Nano)
	}
	var out *jetstream.RawStreamMsg
	err = s.sc.Wait.Do(ctx, what, func(ctx context.Context) error {
		res, err := s.js.Conn().RequestWithContext(ctx, s.subject, body)
		if err != nil {
			return err
		}
		var r msgGetResponse
		if err := json.Unmarshal(res.Data, &r); err != nil {
			return fmt.Errorf("undecodable answer: %w", err)
		}
		if r.Error != nil {
			return r.Error
		}
		if r.Message == nil {
			return errors.New("an answer without a message")
		}
		m := &jetstream.RawStreamMsg{Subject: r.Message.Subject, Sequence: r.Message.Sequence, Data: r.Message.Data, Time: r.Message.Time}
		if len(r.Message.Header) > 0 {
			if m.Header, err = nats.DecodeHeadersMsg(r.Message.Header); err != nil {
				return fmt.Errorf("seq %d: headers: %w", m.Sequence, err)
			}
		}
		out = m
		return nil
	})
	return out, err
}

// Get returns the message at seq of sc's stream from the stream leader,
// retried within sc.Wait; ok is false when there is none.
func (sc Scan) Get(ctx context.Context, js jetstream.JetStream, seq uint64) (m *jetstream.RawStreamMsg, ok bool, err error) {
	m, err = sc.scanner(js).get(ctx, msgGetRequest{Seq: seq})
	if notFound(err) {
		return nil, false, nil
	}
	return m, err == nil, err
}

// notFound reports whether err is JetStream's "no message found".
func notFound(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeMessageNotFound
}

// apiPrefix is the subject prefix of o's JetStream API requests.
func apiPrefix(o jetstream.JetStreamOptions) string {
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	}
	return jetstream.DefaultAPIPrefix
}
