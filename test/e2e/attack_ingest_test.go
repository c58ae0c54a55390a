package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
	"github.com/ccrelay/ccrelay/ingest"
	"github.com/ccrelay/ccrelay/ingest/server"
	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/broker"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// TestIngestAttacks: what a caller sends is hostile until checked. Each
// attack is refused with a clear 4xx and changes nothing, and ingest keeps
// serving everyone else.
func TestIngestAttacks(t *testing.T) {
	ns := natstest.Embedded(t)
	d := deploy(t, ns.ClientURL(), 1)
	big := strings.Repeat("x", 5<<10)
	cp := jsonHeader()
	cp.Set("x-api-key", cpAPIKey)
	cn := jsonHeader()
	cn.Set("x-api-key", connectAPIKey)
	sinchBody := func(b string) (http.Header, []byte) { return signed(sinchSecret, []byte(b), timeNow()), []byte(b) }

	for _, c := range []struct {
		name   string
		path   string
		header func() (http.Header, []byte)
		status int
		code   string
	}{
		{"a 5 KiB Sinch app_id (a subject token)", "/v1/sinch/svc1", func() (http.Header, []byte) {
			return sinchBody(`{"app_id":"` + big + `","message":{"id":"M1"}}`)
		}, 400, "invalid_payload"},
		{"a 5 KiB unknown trigger key", "/v1/sinch/svc1", func() (http.Header, []byte) {
			return sinchBody(`{"app_id":"A","` + big + `":{}}`)
		}, 400, "invalid_payload"},
		{"a 5 KiB Sinch message id", "/v1/sinch/svc1", func() (http.Header, []byte) {
			return sinchBody(`{"app_id":"A","message":{"id":"` + big + `"}}`)
		}, 400, "invalid_payload"},
		{"subject-token injection in a Sinch app_id", "/v1/sinch/svc1", func() (http.Header, []byte) {
			return sinchBody(`{"app_id":"A.>","message":{"id":"M-inject"}}`)
		}, 202, ""},
		{"a CRLF in an unknown Sinch trigger key (header injection)", "/v1/sinch/svc1", func() (http.Header, []byte) {
			return sinchBody(`{"app_id":"A","new\r\nNats-Msg-Id: other":{}}`)
		}, 400, "invalid_payload"},
		{"a CRLF in a Sinch message id (header injection)", "/v1/sinch/svc1", func() (http.Header, []byte) {
			return sinchBody(`{"app_id":"A","message":{"id":"M\r\nNats-Msg-Id: other"}}`)
		}, 400, "invalid_payload"},
		{"a 2 KiB Connect instance id", "/v1/connect/events", func() (http.Header, []byte) {
			b := strings.ReplaceAll(string(contactLens("ev-big", "c-big", messages.DetailTypeContactLensPostCall)), instanceID, big[:2<<10])
			return cn, []byte(b)
		}, 400, "invalid_payload"},
		{"a Connect instance id that is not a UUID", "/v1/connect/events", func() (http.Header, []byte) {
			b := strings.ReplaceAll(string(contactLens("ev-x", "c-x", messages.DetailTypeContactLensPostCall)), instanceID, "inst.>")
			return cn, []byte(b)
		}, 400, "invalid_payload"},
		{"a 5 KiB contact_id", "/v1/contactpro/chat-attachments/ended", func() (http.Header, []byte) {
			return cp, chatAttachments(big)
		}, 400, "invalid_payload"},
		{"a 5 KiB event name in the body", "/v1/contactpro/lifecycle", func() (http.Header, []byte) {
			return cp, []byte(`{"event":"` + big + `"}`)
		}, 400, "invalid_payload"},
		{"a 5 KiB integration name", "/v1/contactpro/" + big, func() (http.Header, []byte) { return cp, []byte(`{}`) }, 400, "invalid_path"},
		{"a control character in a path placeholder", "/v1/contactpro/x/queued/a%0d%0aNats-Msg-Id:%20y", func() (http.Header, []byte) { return cp, nil }, 400, "invalid_payload"},
		{"invalid UTF-8", "/v1/contactpro/lifecycle", func() (http.Header, []byte) { return cp, []byte("{\"event\":\"\xff\xfe\"}") }, 400, "invalid_payload"},
		{"a body over the limit", "/v1/contactpro/lifecycle", func() (http.Header, []byte) {
			return cp, []byte(`{"a":"` + strings.Repeat("y", 20000) + `"}`)
		}, 413, "payload_too_large"},
		{"a signature replayed with the same nonce", "/v1/sinch/svc1", func() func() (http.Header, []byte) {
			b := []byte(`{"app_id":"A","message":{"id":"M-replay"}}`)
			h := signed(sinchSecret, b, timeNow())
			if r := d.post("/v1/sinch/svc1", h, b); r.status != 202 {
				t.Fatalf("original: %d", r.status)
			}
			return func() (http.Header, []byte) { return h, b }
		}(), 200, ""}, // the original's dedup id: a duplicate, nothing stored
		{"a signature of another service's secret", "/v1/sinch/other", func() (http.Header, []byte) {
			return sinchBody(`{"app_id":"A","message":{"id":"M-cross"}}`)
		}, 401, "unauthorized"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, b := c.header()
			before := d.count()
			r := d.post(c.path, h, b)
			if r.status != c.status || (c.code != "" && r.code(t) != c.code) {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, c.status, c.code)
			}
			if (c.status >= 400 || c.status == 200) && d.count() != before {
				t.Fatal("a refused or duplicate request changed the stream")
			}
			if c.status == 202 {
				subject := d.stored(r).Subject
				if a, err := d.subjects.Parse(subject); err != nil || a.Name != "A.>" || !strings.Contains(subject, ".A%2E%3E.") {
					t.Errorf("app id %q escaped to subject %q", "A.>", subject)
				}
			}
		})
	}

	// JSON nested deeper than encoding/json's limit (10,000) is refused,
	// within a body limit large enough to hold it.
	deep := deploy(t, ns.ClientURL(), 1, "CCRELAY_MAX_BODY_BYTES=65536")
	nested := []byte(`{"app_id":"A","x":` + strings.Repeat("[", 12000) + strings.Repeat("]", 12000) + `}`)
	if r := deep.post("/v1/sinch/svc1", signed(sinchSecret, nested, timeNow()), nested); r.status != 400 || r.code(t) != "invalid_payload" {
		t.Errorf("deeply nested JSON: %d %s", r.status, r.body)
	}
	if r := deep.post("/v1/contactpro/lifecycle", cp, nested); r.status != 400 {
		t.Errorf("deeply nested JSON to Contact Pro: %d %s", r.status, r.body)
	}

	// After all of that, everyone else is served: 200 ordinary callbacks,
	// all stored.
	before := d.count()
	for i := range 200 {
		b := inboundText(fmt.Sprintf("01ORDINARY%05d", i), timeNow())
		if r := d.post("/v1/sinch/svc1", signed(sinchSecret, b, timeNow()), b); r.status != 202 {
			t.Fatalf("ordinary request %d: %d %s", i, r.status, r.body)
		}
	}
	if n := d.count() - before; n != 200 {
		t.Fatalf("%d of 200 ordinary requests stored", n)
	}

	// Forged forwarding headers change nothing ccrelay records.
	b := inboundText("01FORWARDED", timeNow())
	h := signed(sinchSecret, b, timeNow())
	h.Set("X-Forwarded-For", "203.0.113.66")
	h.Set("X-Real-Ip", "203.0.113.66")
	h.Set("X-Forwarded-Host", "evil.test")
	if r := d.post("/v1/sinch/svc1", h, b); r.status != 202 {
		t.Fatalf("forwarded: %d", r.status)
	}
	if strings.Contains(d.logs.String(), "203.0.113.66") || strings.Contains(d.logs.String(), "evil.test") {
		t.Error("a forged forwarding header reached the logs")
	}

	// No metric label takes a caller's value, and no secret is in the
	// metrics: scrape every series.
	var text bytes.Buffer
	for _, reg := range d.regs {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			_, _ = expfmt.MetricFamilyToText(&text, mf)
		}
	}
	for _, s := range append(secrets(), "A.>", "M-inject", big[:100], "203.0.113.66") {
		if strings.Contains(text.String(), s) {
			t.Errorf("metrics hold %q", s)
		}
	}
}

// TestCrossSourceIDs: an EventBridge event whose id is the dedup id the
// next Contact Pro call will get cannot make that call a duplicate, and a
// Sinch message with that id neither.
func TestCrossSourceIDs(t *testing.T) {
	ns := natstest.Embedded(t)
	d := deploy(t, ns.ClientURL(), 1)
	call := chatAttachments("0a1b2c3d-predictable")
	predicted := cpDedupID(t, "chat-attachments", "ended", "", call)
	cn := jsonHeader()
	cn.Set("x-api-key", connectAPIKey)
	if r := d.post("/v1/connect/events", cn, contactLens(predicted, "c-1", messages.DetailTypeContactLensPostCall)); r.status != 202 {
		t.Fatalf("connect: %d %s", r.status, r.body)
	}
	sb := []byte(`{"app_id":"A","message":{"id":"` + predicted + `"}}`)
	if r := d.post("/v1/sinch/svc1", signed(sinchSecret, sb, timeNow()), sb); r.status != 202 {
		t.Fatalf("sinch: %d %s", r.status, r.body)
	}
	cp := jsonHeader()
	cp.Set("x-api-key", cpAPIKey)
	r := d.post("/v1/contactpro/chat-attachments/ended", cp, call)
	if r.status != 202 || r.header.Get("Ccrelay-Duplicate") != "false" {
		t.Fatalf("the real call: %d %s", r.status, r.body)
	}
}

// TestOAuthTokensScoped: the client whose secret sits in an EventBridge
// connection gets tokens the Contact Pro route refuses, and the other way
// round.
func TestOAuthTokensScoped(t *testing.T) {
	ns := natstest.Embedded(t)
	d := deploy(t, ns.ClientURL(), 1, "CCRELAY_OAUTH_CLIENTS=eb@connect:eb-secret-1,cp@contactpro:cp-secret-1")
	token := func(id, secret string) string {
		b, h := form(map[string][]string{"grant_type": {"client_credentials"}})
		h.Set("Authorization", basic(id, secret))
		r := d.post("/oauth/token", h, b)
		if r.status != 200 {
			t.Fatalf("token for %s: %d %s", id, r.status, r.body)
		}
		return r.json(t)["access_token"].(string)
	}
	eb, cpTok := token("eb", "eb-secret-1"), token("cp", "cp-secret-1")
	for _, c := range []struct {
		name, tok, path string
		body            []byte
		status          int
	}{
		{"eventbridge token on connect", eb, "/v1/connect/events", contactLens("ev-s1", "c-s1", messages.DetailTypeContactLensPostCall), 202},
		{"eventbridge token on contact pro", eb, "/v1/contactpro/chat-attachments/ended", chatAttachments("s2"), 401},
		{"contact pro token on contact pro", cpTok, "/v1/contactpro/chat-attachments/ended", chatAttachments("s3"), 202},
		{"contact pro token on connect", cpTok, "/v1/connect/events", contactLens("ev-s4", "c-s4", messages.DetailTypeContactLensPostCall), 401},
	} {
		h := jsonHeader()
		h.Set("Authorization", "Bearer "+c.tok)
		if r := d.post(c.path, h, c.body); r.status != c.status {
			t.Errorf("%s: %d %s", c.name, r.status, r.body)
		}
	}
}

// TestClosedConnectionReopened: when the NATS connection is closed under
// ingest (a server that closes it for a protocol violation, or an
// in-process connection that cannot reconnect), /healthz fails until it is
// reopened, so an orchestrator restarts a process that cannot reopen it;
// once reopened, requests are stored again.
func TestClosedConnectionReopened(t *testing.T) {
	dir := t.TempDir()
	port := natstest.FreePort(t)
	ns, err := natstest.Start(dir, port)
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	cfg, err := config.Load([]string{"CCRELAY_NATS_URL=" + url, "CCRELAY_SINCH_WEBHOOK_SECRETS=svc1:" + sinchSecret, "CCRELAY_SINCH_MAX_CLOCK_SKEW=0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	b, err := broker.Open(context.Background(), cfg.Broker, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	srv, err := server.Assemble(context.Background(), provision.Waiter{}, cfg.Ingest, b, b.Conn.MaxPayload(), prometheus.NewRegistry(), logger)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + runServer(t, srv)
	health := func() int {
		res, err := http.Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	post := func(id string) int {
		body := inboundText(id, timeNow())
		req, _ := http.NewRequest("POST", base+"/v1/sinch/svc1", bytes.NewReader(body))
		req.Header = signed(sinchSecret, body, timeNow())
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	if health() != 200 || post("01BEFORE") != 202 {
		t.Fatal("not serving at first")
	}
	// The server goes away and the connection is closed under ingest.
	natstest.Stop(ns)
	b.Conn.Close()
	eventually(t, "/healthz failing", func() bool { return health() == http.StatusServiceUnavailable })
	if post("01WHILECLOSED") != http.StatusServiceUnavailable {
		t.Error("a request was answered other than 503 while no connection existed")
	}
	// The server comes back: the broker reopens the connection.
	ns2, err := natstest.Start(dir, port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natstest.Stop(ns2) })
	eventually(t, "/healthz back", func() bool { return health() == 200 })
	eventually(t, "requests stored again", func() bool { return post(fmt.Sprintf("01AFTER%d", time.Now().UnixNano())) == 202 })
	if b.Reopens() < 1 || !strings.Contains(logs.String(), "nats connection reopened") {
		t.Errorf("reopens %d; logs:\n%s", b.Reopens(), logs.String())
	}
}

// TestSlowClient: a client that sends its headers a byte at a time is cut
// off at CCRELAY_HTTP_READ_TIMEOUT, not held for ever.
func TestSlowClient(t *testing.T) {
	ns := natstest.Embedded(t)
	cfg, err := config.Load([]string{"CCRELAY_NATS_URL=" + ns.ClientURL(), "CCRELAY_HTTP_READ_TIMEOUT=1s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	nc, js := natstest.Connect(t, ns.ClientURL())
	srv, err := server.Assemble(context.Background(), provision.Waiter{}, cfg.Ingest, fixedBroker(nc, js), nc.MaxPayload(), prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", runServer(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := conn.Write([]byte("POST /v1/sinch/svc1 HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	for time.Since(start) < 10*time.Second {
		if _, err := conn.Write([]byte("X")); err != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := bufio.NewReader(conn).ReadByte(); err != nil && !isTimeout(err) {
			break
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a slow client held its connection for %s", d)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errorsAs(err, &ne) && ne.Timeout()
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

func fixedBroker(nc *nats.Conn, js jetstream.JetStream) ingest.Fixed {
	return ingest.Fixed{JS: js, Conn: nc}
}

// runServer runs srv as ccrelay does (its timeouts included) on a loopback
// listener until the test ends, and returns the address.
func runServer(t *testing.T, srv *server.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}
