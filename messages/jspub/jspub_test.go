package jspub_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages/jspub"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// startServer starts a JetStream server in domain (none when empty) with
// stream EVENTS on ev.>, and connects to it.
func startServer(t *testing.T, domain string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		JetStreamDomain: domain, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, js := natstest.Connect(t, ns.ClientURL())
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"ev.>"}, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func msg(subject string, hdr ...string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = []byte("x")
	for i := 0; i+1 < len(hdr); i += 2 {
		m.Header.Set(hdr[i], hdr[i+1])
	}
	return m
}

// scenario is a publish with what the server answers it, on a fresh server.
type scenario struct {
	name   string
	domain string
	before []*nats.Msg // published first
	m      *nats.Msg
}

func scenarios() []scenario {
	return []scenario{
		{name: "stored", m: msg("ev.a", jetstream.MsgIDHeader, "id-1")},
		{name: "duplicate", before: []*nats.Msg{msg("ev.a", jetstream.MsgIDHeader, "id-1")}, m: msg("ev.a", jetstream.MsgIDHeader, "id-1")},
		{name: "domain", domain: "hub", m: msg("ev.a")},
		{name: "domain_duplicate", domain: "hub", before: []*nats.Msg{msg("ev.a", jetstream.MsgIDHeader, "id-1")}, m: msg("ev.a", jetstream.MsgIDHeader, "id-1")},
		{name: "expected_stream", m: msg("ev.a", jetstream.ExpectedStreamHeader, "EVENTS")},
		{name: "wrong_stream", m: msg("ev.a", jetstream.ExpectedStreamHeader, "OTHER")},
		{name: "wrong_last_subject_sequence", before: []*nats.Msg{msg("ev.a")}, m: msg("ev.a", jetstream.ExpectedLastSubjSeqHeader, "0")},
		{name: "first_on_subject", before: []*nats.Msg{msg("ev.b")}, m: msg("ev.a", jetstream.ExpectedLastSubjSeqHeader, "0")},
	}
}

// run publishes the scenario's messages on a fresh server with publish.
func (s scenario) run(t *testing.T, publish func(context.Context, *nats.Conn, jetstream.JetStream, *nats.Msg) (*jetstream.PubAck, error)) (*jetstream.PubAck, error) {
	t.Helper()
	nc, js := startServer(t, s.domain)
	ctx := context.Background()
	for _, b := range s.before {
		if _, err := js.PublishMsg(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	m := *s.m
	return publish(ctx, nc, js, &m)
}

// TestAcksAreTheServers: testdata/acks holds what nats-server answers each
// scenario, byte for byte, so the fuzz seeds and the one-pass reading are
// checked against the server this module builds with.
func TestAcksAreTheServers(t *testing.T) {
	for _, s := range scenarios() {
		t.Run(s.name, func(t *testing.T) {
			var got []byte
			_, _ = s.run(t, func(ctx context.Context, nc *nats.Conn, _ jetstream.JetStream, m *nats.Msg) (*jetstream.PubAck, error) {
				resp, err := nc.RequestMsgWithContext(ctx, m)
				if err != nil {
					t.Fatal(err)
				}
				got = resp.Data
				return nil, nil
			})
			file := filepath.Join("testdata", "acks", s.name+".json")
			if os.Getenv("JSPUB_WRITE_ACKS") != "" {
				if err := os.WriteFile(file, got, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("the server answers\n%s\ntestdata has\n%s", got, want)
			}
		})
	}
}

// TestPublishAnswersAsNatsGo: every scenario on a real server gives
// jspub.Publish nats.go's answer: the same ack, or the same error, that
// errors.Is tells apart the same way.
func TestPublishAnswersAsNatsGo(t *testing.T) {
	for _, s := range scenarios() {
		t.Run(s.name, func(t *testing.T) {
			wantAck, wantErr := s.run(t, func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream, m *nats.Msg) (*jetstream.PubAck, error) {
				return js.PublishMsg(ctx, m)
			})
			gotAck, gotErr := s.run(t, func(ctx context.Context, nc *nats.Conn, _ jetstream.JetStream, m *nats.Msg) (*jetstream.PubAck, error) {
				return jspub.Publish(ctx, nc, m)
			})
			if !reflect.DeepEqual(gotAck, wantAck) {
				t.Errorf("ack %+v, nats.go's %+v", gotAck, wantAck)
			}
			if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
				t.Errorf("error %v, nats.go's %v", gotErr, wantErr)
			}
			var want *jetstream.APIError
			if errors.As(wantErr, &want) && !errors.Is(gotErr, want) {
				t.Errorf("errors.Is(%v, %v) is false", gotErr, want)
			}
		})
	}
	t.Run("wrong last sequence is ErrKeyExists", func(t *testing.T) {
		_, err := scenarios()[6].run(t, func(ctx context.Context, nc *nats.Conn, _ jetstream.JetStream, m *nats.Msg) (*jetstream.PubAck, error) {
			return jspub.Publish(ctx, nc, m)
		})
		if !errors.Is(err, jetstream.ErrKeyExists) {
			t.Errorf("%v is not jetstream.ErrKeyExists", err)
		}
	})
}

// TestPublishWithoutStream: a subject no stream captures is retried as
// nats.go retries it and ends in ErrNoStreamResponse; a context that ends
// first ends the wait.
func TestPublishWithoutStream(t *testing.T) {
	nc, _ := startServer(t, "")
	start := time.Now()
	_, err := jspub.Publish(context.Background(), nc, msg("nowhere.a"))
	if !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("%v, want ErrNoStreamResponse", err)
	}
	if took := time.Since(start); took < 2*jetstream.DefaultPubRetryWait {
		t.Errorf("gave up after %v: not retried", took)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := jspub.Publish(ctx, nc, msg("nowhere.a")); err == nil {
		t.Fatal("stored without a stream")
	}
	if took := time.Since(start); took > 2*jetstream.DefaultPubRetryWait {
		t.Errorf("a 100 ms context waited %v", took)
	}
}

// TestRealAcksTakeTheOnePass: every success the server sends is read
// without encoding/json (or the package gains nothing), with encoding/json's
// result.
func TestRealAcksTakeTheOnePass(t *testing.T) {
	for _, s := range scenarios() {
		b, err := os.ReadFile(filepath.Join("testdata", "acks", s.name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		want, wantErr := natsGoParse(b)
		got, ok := jspub.ScanAck(b)
		if (wantErr == nil) != ok {
			t.Errorf("%s: one pass %v, but nats.go's error is %v", s.name, ok, wantErr)
		}
		if ok && !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v, encoding/json reads %+v", s.name, got, want)
		}
	}
}

// natsGoParse is nats.go's reading of an ack (jetstream.publishMsg).
func natsGoParse(b []byte) (*jetstream.PubAck, error) {
	var r struct {
		Type  string              `json:"type"`
		Error *jetstream.APIError `json:"error,omitempty"`
		*jetstream.PubAck
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, jetstream.ErrInvalidJSAck
	}
	if r.Error != nil {
		return nil, errors.Join(r.Error)
	}
	if r.PubAck == nil || r.Stream == "" {
		return nil, jetstream.ErrInvalidJSAck
	}
	return r.PubAck, nil
}

// FuzzParseAck holds ParseAck to nats.go's reading for any bytes: the
// one pass, when it reads an ack, reads what encoding/json reads.
func FuzzParseAck(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "acks", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no acks in testdata: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`{"stream":"S","seq":01}`, `{"stream":"S","seq":18446744073709551616}`, `{"stream":"S","seq":1} `,
		`{"stream":"S\u0041","seq":1}`, `{"stream":"","seq":1}`, `{"stream":"S","seq":1,"duplicate":false}`,
		`{"stream":"S","seq":1,"duplicate":true}`, `{"stream":"é","seq":1}`, `{"stream":"S","domain":"","seq":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, gotErr := jspub.ParseAck(b)
		want, wantErr := natsGoParse(b)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: %+v, nats.go %+v", b, got, want)
		}
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%q: error %v, nats.go %v", b, gotErr, wantErr)
		}
		if gotErr != nil && !strings.HasSuffix(gotErr.Error(), wantErr.Error()) {
			t.Fatalf("%q: error %q, nats.go %q", b, gotErr, wantErr)
		}
		if a, ok := jspub.ScanAck(b); ok && !reflect.DeepEqual(a, want) {
			t.Fatalf("%q: one pass %+v, encoding/json %+v", b, a, want)
		}
	})
}

// BenchmarkParseAck: an ack as the server sends it, read by ParseAck and
// as nats.go reads it.
func BenchmarkParseAck(b *testing.B) {
	ack := []byte(`{"stream":"CCRELAY_EVENTS","seq":1234567}`)
	b.Run("jspub", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := jspub.ParseAck(ack); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := natsGoParse(ack); err != nil {
				b.Fatal(err)
			}
		}
	})
}
