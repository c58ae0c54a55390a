package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/ingest"
	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// echo is an adapter whose answers the test chooses through the request:
// the pipeline's steps around it are what is under test.
type echo struct {
	subjects messages.Subjects
	rules    *ingest.Rules
}

func (e *echo) Source() string { return "echo" }

func (e *echo) Rules() ingest.Rules {
	if e.rules != nil {
		return *e.rules
	}
	return ingest.Rules{Methods: []string{http.MethodPost}}
}

func (e *echo) Authorize(r *http.Request) error {
	if r.Header.Get("Authorization") != "let me in" {
		return ingest.Unauthorized(ingest.CodeUnauthorized, "who are you?", []string{`Basic realm="t"`}, nil)
	}
	return nil
}

func (e *echo) Event(_ context.Context, r *http.Request, body []byte, _ time.Time) (*ingest.Accepted, error) {
	if r.Header.Get("X-Refuse") != "" {
		return nil, fmt.Errorf("%w: %s", messages.ErrInvalidPayload, r.Header.Get("X-Refuse"))
	}
	subject := e.subjects.ContactLens("echo")
	if r.Header.Get("X-Nowhere") != "" {
		subject = "nowhere.in.particular" // no stream holds it: the publish fails
	}
	return &ingest.Accepted{
		Event: messages.Event{Subject: subject, ID: "echo:" + r.Header.Get("X-Id"), Source: "/echo", Type: "echo", Body: body},
		Type:  "echo",
	}, nil
}

// newPipeline is a pipeline publishing to a real JetStream server, with
// the contract's streams.
func newPipeline(tb testing.TB, cfg ingest.PipelineConfig) (*ingest.Pipeline, jetstream.JetStream, messages.Subjects) {
	tb.Helper()
	ns := natstest.Embedded(tb)
	nc, js := natstest.Connect(tb, ns.ClientURL())
	subjects := messages.DefaultSubjects()
	if err := messages.EnsureStreams(context.Background(), provision.Waiter{}, js, messages.StreamConfig{Subjects: subjects, Replicas: 1, MaxAge: time.Hour, DedupWindow: time.Minute, MaxBytes: -1, DLQMaxAge: time.Hour}); err != nil {
		tb.Fatal(err)
	}
	m := ingest.NewMetrics(prometheus.NewRegistry())
	pub := ingest.NewPublisher(ingest.Fixed{JS: js, Conn: nc}, subjects, 2*time.Second, m)
	return ingest.NewPipeline(cfg, pub, m, slog.New(slog.NewTextHandler(io.Discard, nil))), js, subjects
}

func TestPipeline(t *testing.T) {
	p, js, subjects := newPipeline(t, ingest.PipelineConfig{MaxBodyBytes: 64, RetryAfter: 7 * time.Second})
	ctx := context.Background()
	stored := func() uint64 {
		t.Helper()
		st, err := js.Stream(ctx, subjects.EventsStream())
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	strict := &echo{subjects: subjects}
	lenient := &echo{subjects: subjects, rules: &ingest.Rules{Methods: []string{http.MethodGet, http.MethodPost}, EmptyBody: true}}

	const body = `{"ok":true}`
	for _, c := range []struct {
		name    string
		adapter *echo
		method  string
		header  map[string]string
		body    string
		// chunked hides the length, so only reading finds the body too large.
		chunked bool
		status  int
		code    string
		// stores is how many events the request adds to the stream.
		stores uint64
		answer map[string]string
	}{
		{name: "stored", status: 202, stores: 1, header: map[string]string{"X-Id": "1"}, answer: map[string]string{ingest.HeaderDuplicate: "false"}},
		{name: "same id again is a duplicate", status: 200, header: map[string]string{"X-Id": "1"}, answer: map[string]string{ingest.HeaderDuplicate: "true"}},
		{name: "wrong method", method: http.MethodPut, status: 405, code: ingest.CodeMethodNotAllowed, answer: map[string]string{"Allow": "POST"}},
		{name: "unauthorized before the body is read", header: map[string]string{"Authorization": "nope"}, body: strings.Repeat("x", 1000), status: 401, code: ingest.CodeUnauthorized, answer: map[string]string{"WWW-Authenticate": `Basic realm="t"`}},
		{name: "no content type", header: map[string]string{"Content-Type": ""}, status: 415, code: ingest.CodeUnsupportedMediaType},
		{name: "not json", header: map[string]string{"Content-Type": "text/plain"}, status: 415, code: ingest.CodeUnsupportedMediaType},
		{name: "latin-1 charset", header: map[string]string{"Content-Type": "application/json; charset=iso-8859-1"}, status: 415, code: ingest.CodeUnsupportedMediaType},
		{name: "utf-8 charset in any case", header: map[string]string{"Content-Type": "application/json; charset=UTF-8", "X-Id": "2"}, status: 202, stores: 1},
		{name: "declared too large", body: strings.Repeat("x", 65), status: 413, code: ingest.CodePayloadTooLarge},
		{name: "streamed too large", body: strings.Repeat("x", 65), chunked: true, status: 413, code: ingest.CodePayloadTooLarge},
		{name: "exactly the limit", body: `"` + strings.Repeat("x", 62) + `"`, header: map[string]string{"X-Id": "3"}, status: 202, stores: 1},
		{name: "empty body", body: "-", status: 400, code: ingest.CodeInvalidPayload},
		{name: "invalid utf-8", body: "{\"a\":\"\xff\"}", status: 400, code: ingest.CodeInvalidPayload},
		{name: "adapter refuses the payload", header: map[string]string{"X-Refuse": "no id"}, status: 400, code: ingest.CodeInvalidPayload},
		{name: "publish fails: 503", header: map[string]string{"X-Nowhere": "1", "X-Id": "4"}, status: 503, code: ingest.CodeUnavailable, answer: map[string]string{"Retry-After": "7"}},
		{name: "lenient: GET without a body", adapter: lenient, method: http.MethodGet, body: "-", header: map[string]string{"Content-Type": "", "X-Id": "5"}, status: 202, stores: 1},
		{name: "lenient: body still needs a content type", adapter: lenient, header: map[string]string{"Content-Type": ""}, status: 415, code: ingest.CodeUnsupportedMediaType},
		{name: "lenient: other methods still refused", adapter: lenient, method: http.MethodDelete, status: 405, code: ingest.CodeMethodNotAllowed, answer: map[string]string{"Allow": "GET, POST"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := c.adapter
			if a == nil {
				a = strict
			}
			method := c.method
			if method == "" {
				method = http.MethodPost
			}
			b := c.body
			switch b {
			case "":
				b = body
			case "-":
				b = ""
			}
			var rd io.Reader = strings.NewReader(b)
			if c.chunked {
				rd = io.MultiReader(rd) // hides the length from NewRequest
			}
			req := httptest.NewRequest(method, "/v1/echo", rd)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "let me in")
			for k, v := range c.header {
				if v == "" {
					req.Header.Del(k)
					continue
				}
				req.Header.Set(k, v)
			}
			before := stored()
			rec := httptest.NewRecorder()
			p.Handler(a).ServeHTTP(rec, req)

			if rec.Code != c.status {
				t.Errorf("status %d, want %d (body %s)", rec.Code, c.status, rec.Body)
			}
			var answer struct{ Code, Message string }
			if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
				t.Fatalf("answer is not JSON: %v: %s", err, rec.Body)
			}
			if answer.Code != c.code {
				t.Errorf("error code %q, want %q", answer.Code, c.code)
			}
			if c.code != "" && answer.Message == "" {
				t.Errorf("error %q without a message", c.code)
			}
			for k, v := range c.answer {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("header %s: %q, want %q", k, got, v)
				}
			}
			if rec.Header().Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id")
			}
			if got := stored() - before; got != c.stores {
				t.Errorf("stream grew by %d events, want %d", got, c.stores)
			}
		})
	}
}

// TestPipelineStoresBodyByteForByte checks what a stored event holds, from
// a request whose body JSON would re-encode differently.
func TestPipelineStoresBodyByteForByte(t *testing.T) {
	p, js, subjects := newPipeline(t, ingest.PipelineConfig{MaxBodyBytes: 1 << 10, RetryAfter: time.Second})
	ctx := context.Background()
	body := []byte("{ \"b\" : 1,\n\"a\":\"\\u00e9\" }")
	req := httptest.NewRequest(http.MethodPost, "/v1/echo", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "let me in")
	req.Header.Set("X-Id", "raw")
	rec := httptest.NewRecorder()
	p.Handler(&echo{subjects: subjects}).ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var resp ingest.Response
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	msg, err := js.Stream(ctx, subjects.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	got, err := msg.GetMsg(ctx, resp.Seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("seq %d of the answer is not stored", resp.Seq)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Data, body) {
		t.Errorf("stored %q, want %q", got.Data, body)
	}
	if id := got.Header.Get(messages.HeaderID); id != "echo:raw" || resp.ID != id {
		t.Errorf("ce-id %q, answer id %q, want echo:raw", id, resp.ID)
	}
}

// BenchmarkPipeline is the pipeline's own cost around an adapter: method,
// authorization, content type, body read, publish to a real JetStream
// server and answer, for a 1 KiB body.
func BenchmarkPipeline(b *testing.B) {
	// The bounds of the defaults: the benchmark's 16 senders never reach
	// them, so it measures their bookkeeping, not a refusal.
	p, _, subjects := newPipeline(b, ingest.PipelineConfig{MaxBodyBytes: 4 << 10, RetryAfter: time.Second, MaxInFlight: 512, MaxBufferedBytes: 32 << 20})
	h := p.Handler(&echo{subjects: subjects})
	body := []byte(`{"pad":"` + strings.Repeat("x", 1000) + `"}`)
	var seq atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/v1/echo", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "let me in")
			req.Header.Set("X-Id", fmt.Sprint(seq.Add(1)))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusAccepted {
				b.Fatalf("status %d %s", rec.Code, rec.Body)
			}
		}
	})
}

// TestPublisherStoresOnlyInTheEventsStream: a stream of someone else's that
// captures the events' subjects (the events stream deleted, an operator's
// archive on ccrelay.>) refuses the write instead of holding it where no
// processor reads, and the sender is told to retry.
func TestPublisherStoresOnlyInTheEventsStream(t *testing.T) {
	ns := natstest.Embedded(t)
	nc, js := natstest.Connect(t, ns.ClientURL())
	ctx := context.Background()
	subjects := messages.DefaultSubjects()
	archive, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ARCHIVE", Subjects: []string{"ccrelay.>"}})
	if err != nil {
		t.Fatal(err)
	}
	pub := ingest.NewPublisher(ingest.Fixed{JS: js, Conn: nc}, subjects, 2*time.Second, ingest.NewMetrics(prometheus.NewRegistry()))
	ev := &messages.Event{Subject: subjects.ContactLens("inst"), ID: "e-1", Source: "/t", Type: "t", Time: time.Now(), Body: []byte(`{}`)}
	_, err = pub.Publish(ctx, ev)
	// 10060: nats-server's JSStreamNotMatchErr, "expected stream does not
	// match".
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != 10060 {
		t.Errorf("published into another stream: %v", err)
	}
	info, err := archive.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("ARCHIVE holds %d messages", info.State.Msgs)
	}
}
