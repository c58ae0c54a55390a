package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
	"github.com/ccrelay/ccrelay/ingest"
	"github.com/ccrelay/ccrelay/ingest/server"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/messages/signature"
	"github.com/ccrelay/ccrelay/test/logtest"
	"github.com/ccrelay/ccrelay/test/metricstest"
	"github.com/ccrelay/ccrelay/test/natstest"
	"github.com/ccrelay/ccrelay/test/sinchtest"
	"github.com/ccrelay/ccrelay/test/stalltest"
)

const (
	sinchSecret = "bounds-sinch-secret"
	smsSecret   = "bounds-sms-secret"
	maxBody     = 512 << 10
	// wait is how long a client waits for an answer that must come
	// before its body; the server's read timeout is far longer, so an
	// answer that waited for the body never comes within it.
	wait = 20 * time.Second
)

// running is an ingest server assembled as the binary assembles it, on a
// real NATS server, served over loopback TCP.
type running struct {
	addr string
	reg  *prometheus.Registry
	logs *logtest.Buffer
}

func start(t *testing.T, extra ...string) running {
	t.Helper()
	ns := natstest.Embedded(t)
	env := append([]string{
		"CCRELAY_NATS_URL=" + ns.ClientURL(),
		"CCRELAY_SINCH_WEBHOOK_SECRETS=svc1:" + sinchSecret,
		"CCRELAY_PUBLIC_URL=https://relay.example.com",
		"CCRELAY_MESSAGING_SECRETS=twilio/us:tw-token,facebook/page1:fb-secret,sinchsms/eu:" + smsSecret,
		"CCRELAY_MESSAGING_VERIFY_TOKENS=facebook/page1:verify-me",
		"CCRELAY_CONTACTPRO_API_KEYS=cp-key",
		"CCRELAY_CONNECT_API_KEYS=connect-key",
		"CCRELAY_OAUTH_CLIENTS=client@contactpro:client-secret",
		// Far beyond the test: a stalled upload the server admitted stays
		// stalled until the test hangs up.
		"CCRELAY_HTTP_READ_TIMEOUT=5m",
		"CCRELAY_MAX_BODY_BYTES=" + strconv.Itoa(maxBody),
		// Refusals by the hundred from one address are the test here,
		// not their slowing down (ingest/auth's tests).
		"CCRELAY_AUTH_FAILURE_BURST=1000000",
		// The tests of the process's bounds come from one address, so
		// the per-address bounds are the process's, and stalled bodies
		// are held as long as the test needs them; address_test.go
		// lowers each.
		"CCRELAY_MAX_IN_FLIGHT_PER_ADDRESS=1000000",
		"CCRELAY_MAX_CONNECTIONS_PER_ADDRESS=1000000",
		"CCRELAY_BODY_READ_TIMEOUT=5m",
	}, extra...)
	cfg, err := config.Load(env, nil)
	if err != nil {
		t.Fatal(err)
	}
	nc, js := natstest.Connect(t, ns.ClientURL())
	reg := prometheus.NewRegistry()
	logs := &logtest.Buffer{}
	srv, err := server.Assemble(context.Background(), provision.Waiter{}, cfg.Ingest, ingest.Fixed{JS: js, Conn: nc}, nc.MaxPayload(), reg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return running{addr: ln.Addr().String(), reg: reg, logs: logs}
}

// logged returns the log line of the request with X-Request-Id id.
func (s running) logged(id string) string {
	for _, line := range strings.Split(s.logs.String(), "\n") {
		if strings.Contains(line, `"request_id":"`+id+`"`) {
			return line
		}
	}
	return ""
}

func (s running) gauge(t *testing.T, name string) float64 {
	t.Helper()
	return metricstest.Value(t, s.reg, name, nil)
}

func (s running) shed(t *testing.T, reason string) float64 {
	t.Helper()
	return metricstest.Value(t, s.reg, "ccrelay_ingest_shed_requests_total", map[string]string{"reason": reason})
}

// eventually polls cond until it holds, failing after 30 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// stall opens a stalled POST announcing length body bytes and sending 16.
func stall(t *testing.T, s running, path string, h http.Header, length int64) *stalltest.Stall {
	t.Helper()
	return stallMethod(t, s, http.MethodPost, path, h, length)
}

func stallMethod(t *testing.T, s running, method, path string, h http.Header, length int64) *stalltest.Stall {
	t.Helper()
	st, err := stalltest.Open(s.addr, method, path, h, length, 16)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// answered checks that st was answered status and code (any, when "")
// before its body was sent, on a connection the server then closed.
func answered(t *testing.T, name string, st *stalltest.Stall, status int, code string) *http.Response {
	t.Helper()
	resp, err := st.Answer(wait)
	if err != nil {
		t.Errorf("%s: no answer before the body was sent: %v", name, err)
		return nil
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct{ Code, Message string }
	if resp.StatusCode != status || json.Unmarshal(b, &e) != nil || e.Code == "" || (code != "" && e.Code != code) || e.Message == "" {
		t.Errorf("%s: answered %d %s, want %d %q", name, resp.StatusCode, b, status, code)
	}
	if !resp.Close {
		t.Errorf("%s: the connection is kept open with the body unread", name)
	}
	return resp
}

// sinchHeaders are headers of a Sinch callback that pass every check that
// does not need the body: the signature is of the right shape but of
// another body, which only the body can tell.
func sinchHeaders(at time.Time) http.Header {
	return (&sinchtest.Signer{Secret: sinchSecret}).Headers([]byte("another body"), at)
}

// TestUnauthenticatedUploadsAreNotRead: a request whose credentials can be
// refused from its headers is refused from them, before its body is sent,
// on every endpoint and however many come at once; none of them reserves
// a byte. Every 401 may look alike to the caller; the log says which check
// refused it.
func TestUnauthenticatedUploadsAreNotRead(t *testing.T) {
	s := start(t)
	sinchWith := func(f func(h http.Header)) http.Header {
		h := sinchHeaders(time.Now())
		f(h)
		return h
	}
	smsStale := (&sinchtest.Signer{Secret: smsSecret}).Headers([]byte("x"), time.Now().Add(-time.Hour))
	twilio := func(sig string) http.Header {
		return http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, signature.HeaderTwilioSignature: {sig}}
	}
	hub := func(sig string) http.Header {
		return http.Header{"Content-Type": {"application/json"}, signature.HeaderHubSignature256: {sig}}
	}
	cases := []struct {
		name, path string
		h          http.Header
		code       string
	}{
		{"sinch: no signature headers", "/v1/sinch/svc1", http.Header{"Content-Type": {"application/json"}}, ingest.CodeInvalidSignature},
		{"sinch: no nonce", "/v1/sinch/svc1", sinchWith(func(h http.Header) { h.Del(signature.SinchHeaderNonce) }), ingest.CodeInvalidSignature},
		{"sinch: signature not base64 of 32 bytes", "/v1/sinch/svc1", sinchWith(func(h http.Header) { h.Set(signature.SinchHeaderSignature, "c2lnbmF0dXJl") }), ingest.CodeInvalidSignature},
		{"sinch: other algorithm", "/v1/sinch/svc1", sinchWith(func(h http.Header) { h.Set(signature.SinchHeaderAlgorithm, "HmacSHA1") }), ingest.CodeUnsupportedAlgorithm},
		{"sinch: stale timestamp", "/v1/sinch/svc1", sinchHeaders(time.Now().Add(-time.Hour)), ingest.CodeStaleTimestamp},
		{"sinch: unknown service, no nonce", "/v1/sinch/nosuch", sinchWith(func(h http.Header) { h.Del(signature.SinchHeaderNonce) }), ingest.CodeInvalidSignature},
		{"twilio: no signature", "/v1/messaging/twilio/us", twilio(""), ingest.CodeInvalidSignature},
		{"twilio: signature of a wrong length", "/v1/messaging/twilio/us", twilio("c2lnbmF0dXJl"), ingest.CodeInvalidSignature},
		{"messenger: no signature", "/v1/messaging/facebook/page1", hub(""), ingest.CodeInvalidSignature},
		{"messenger: upper-case hex", "/v1/messaging/facebook/page1", hub("sha256=" + strings.Repeat("A", 64)), ingest.CodeInvalidSignature},
		{"messenger: sha1", "/v1/messaging/facebook/page1", hub("sha1=" + strings.Repeat("a", 40)), ingest.CodeInvalidSignature},
		{"sinch sms: stale timestamp", "/v1/messaging/sinchsms/eu", smsStale, ingest.CodeStaleTimestamp},
		{"contact pro: no credentials", "/v1/contactpro/chat-attachments/Ended", http.Header{"Content-Type": {"application/json"}}, ingest.CodeUnauthorized},
		{"connect: wrong api key", "/v1/connect/events", http.Header{"Content-Type": {"application/json"}, "X-Api-Key": {"nope"}}, ingest.CodeUnauthorized},
	}
	// Many at once, all open before the first answer is read. Each
	// announces the largest body, or one net/http would wait for before
	// answering if it were not told the connection ends (under 256 KiB).
	const each = 10
	type open struct {
		name, code, id string
		st             *stalltest.Stall
	}
	var all []open
	for _, c := range cases {
		for i := 0; i < each; i++ {
			for _, length := range []int64{maxBody, 100 << 10} {
				o := open{name: fmt.Sprintf("%s (%d KiB)", c.name, length>>10), code: c.code, id: fmt.Sprintf("unauth-%d", len(all))}
				h := c.h.Clone()
				h.Set("X-Request-Id", o.id)
				o.st = stall(t, s, c.path, h, length)
				all = append(all, o)
			}
		}
	}
	var wg sync.WaitGroup
	for _, o := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp := answered(t, o.name, o.st, http.StatusUnauthorized, ""); resp != nil && !o.st.Closed(wait) {
				t.Errorf("%s: the server kept the connection open", o.name)
			}
		}()
	}
	wg.Wait()
	for _, o := range all {
		if line := s.logged(o.id); !strings.Contains(line, o.code) {
			t.Errorf("%s: refused, but not for %s: %s", o.name, o.code, line)
		}
	}
	if got := s.gauge(t, "ccrelay_ingest_buffered_bytes"); got != 0 {
		t.Errorf("buffered bytes %v after refusing every request from its headers", got)
	}
	if got := s.gauge(t, "ccrelay_ingest_in_flight_requests"); got != 0 {
		t.Errorf("%v requests in flight after all were answered", got)
	}
	if got := s.shed(t, "in_flight") + s.shed(t, "buffered_bytes"); got != 0 {
		t.Errorf("%v requests shed: none should reach a bound", got)
	}
}

// TestStalledUploadsAreBounded: uploads that pass every header check and
// then stall are admitted up to the bounds; beyond them they are answered
// 503 with Retry-After before their body is read; a signed sender is
// still served meanwhile (the last quarter of the bytes is kept for small
// bodies); and everything reserved is released when they hang up.
func TestStalledUploadsAreBounded(t *testing.T) {
	const (
		inFlight = 24
		budget   = 8 * maxBody
		// Large bodies may take three quarters of the budget.
		admitted = 6
	)
	s := start(t, fmt.Sprintf("CCRELAY_MAX_IN_FLIGHT=%d", inFlight), fmt.Sprintf("CCRELAY_MAX_BUFFERED_BYTES=%d", budget))
	client := &http.Client{Timeout: wait}
	n := 0
	send := func() *http.Response {
		t.Helper()
		n++
		body := sinchtest.InboundText(fmt.Sprintf("01BOUNDS%018d", n), time.Now())
		req, err := http.NewRequest(http.MethodPost, "http://"+s.addr+"/v1/sinch/svc1", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = (&sinchtest.Signer{Secret: sinchSecret}).Headers(body, time.Now())
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	// Large stalled uploads: admitted while they fit, then refused.
	var stalls []*stalltest.Stall
	for i := 0; i < admitted; i++ {
		stalls = append(stalls, stall(t, s, "/v1/sinch/svc1", sinchHeaders(time.Now()), maxBody))
		eventually(t, fmt.Sprintf("%d uploads reserved", i+1), func() bool {
			return s.gauge(t, "ccrelay_ingest_buffered_bytes") == float64((i+1)*maxBody)
		})
	}
	for i := 0; i < 10; i++ {
		resp := answered(t, "large upload beyond the bound", stall(t, s, "/v1/sinch/svc1", sinchHeaders(time.Now()), maxBody), http.StatusServiceUnavailable, ingest.CodeOverloaded)
		if resp != nil && resp.Header.Get("Retry-After") != "5" {
			t.Errorf("Retry-After %q, want the configured 5", resp.Header.Get("Retry-After"))
		}
	}
	// So is one of unknown length: it reserves the body limit.
	answered(t, "chunked upload beyond the bound", stall(t, s, "/v1/sinch/svc1", sinchHeaders(time.Now()), -1), http.StatusServiceUnavailable, ingest.CodeOverloaded)
	if got := s.shed(t, "buffered_bytes"); got != 11 {
		t.Errorf("shed for buffered bytes: %v, want 11", got)
	}
	if resp := send(); resp.StatusCode != http.StatusAccepted {
		t.Errorf("a signed sender among stalled large uploads: %d, want 202", resp.StatusCode)
	}

	// Small stalled uploads fill the requests in flight.
	for i := admitted; i < inFlight; i++ {
		stalls = append(stalls, stall(t, s, "/v1/sinch/svc1", sinchHeaders(time.Now()), 1<<10))
	}
	eventually(t, "every request slot taken", func() bool {
		return s.gauge(t, "ccrelay_ingest_in_flight_requests") == inFlight
	})
	answered(t, "upload beyond the requests in flight", stall(t, s, "/v1/sinch/svc1", sinchHeaders(time.Now()), 1<<10), http.StatusServiceUnavailable, ingest.CodeOverloaded)
	// The endpoints outside the pipeline are bounded by the same count.
	answered(t, "token request beyond the requests in flight", stall(t, s, "/oauth/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, 100), http.StatusServiceUnavailable, ingest.CodeOverloaded)
	if resp, err := client.Get("http://" + s.addr + "/v1/messaging/facebook/page1?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("handshake beyond the requests in flight: %v %v, want 503", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp := send(); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a sender beyond the requests in flight: %d, want 503 with Retry-After", resp.StatusCode)
	}
	if got := s.shed(t, "in_flight"); got != 4 {
		t.Errorf("shed for requests in flight: %v, want 4", got)
	}

	// The attack ends: everything is released, and senders are served.
	for _, st := range stalls {
		_ = st.Close()
	}
	eventually(t, "the gauges back at 0", func() bool {
		return s.gauge(t, "ccrelay_ingest_in_flight_requests") == 0 && s.gauge(t, "ccrelay_ingest_buffered_bytes") == 0
	})
	if resp := send(); resp.StatusCode != http.StatusAccepted {
		t.Errorf("a signed sender after the attack: %d, want 202", resp.StatusCode)
	}
	if got := s.gauge(t, "ccrelay_ingest_in_flight_requests") + s.gauge(t, "ccrelay_ingest_buffered_bytes"); got != 0 {
		t.Errorf("a served request left %v reserved", got)
	}
}

// TestBoundedEndpointsRefuseOversizedBodies: the token endpoint and the
// handshake, outside the pipeline, refuse a body larger than they read
// before it is sent, and so does the answer to an unknown path.
func TestBoundedEndpointsRefuseOversizedBodies(t *testing.T) {
	s := start(t)
	answered(t, "token request over 16 KiB", stall(t, s, "/oauth/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, 16<<10+1), http.StatusRequestEntityTooLarge, ingest.CodePayloadTooLarge)
	answered(t, "handshake with a body", stallMethod(t, s, http.MethodGet, "/v1/messaging/facebook/page1?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1", nil, 100), http.StatusRequestEntityTooLarge, ingest.CodePayloadTooLarge)
	answered(t, "handshake with a chunked body", stallMethod(t, s, http.MethodGet, "/v1/messaging/facebook/page1?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1", nil, -1), http.StatusRequestEntityTooLarge, ingest.CodePayloadTooLarge)
	answered(t, "no such endpoint", stall(t, s, "/v1/nothing", nil, 100<<10), http.StatusNotFound, ingest.CodeNotFound)
	if got := s.gauge(t, "ccrelay_ingest_buffered_bytes"); got != 0 {
		t.Errorf("buffered bytes %v", got)
	}
}

// TestBoundsValidated: the settings cannot make the largest body
// impossible to receive, or admit nothing.
func TestBoundsValidated(t *testing.T) {
	for _, c := range []struct {
		env, want string
	}{
		{"CCRELAY_MAX_BUFFERED_BYTES=1000", "CCRELAY_MAX_BUFFERED_BYTES: 1000 is less than CCRELAY_MAX_BODY_BYTES"},
		{"CCRELAY_MAX_IN_FLIGHT=0", "CCRELAY_MAX_IN_FLIGHT: must be positive"},
		{"CCRELAY_MAX_CONNECTIONS=100", "CCRELAY_MAX_CONNECTIONS: 100 is less than CCRELAY_MAX_IN_FLIGHT"},
		{"CCRELAY_MAX_HEADER_BYTES=100", "CCRELAY_MAX_HEADER_BYTES: must be at least 4096"},
		{"CCRELAY_MAX_IN_FLIGHT_PER_ADDRESS=0", "CCRELAY_MAX_IN_FLIGHT_PER_ADDRESS: must be positive"},
		{"CCRELAY_MAX_CONNECTIONS_PER_ADDRESS=8", "CCRELAY_MAX_CONNECTIONS_PER_ADDRESS: 8 is less than CCRELAY_MAX_IN_FLIGHT_PER_ADDRESS"},
		{"CCRELAY_BODY_READ_TIMEOUT=0s", "CCRELAY_BODY_READ_TIMEOUT: must be positive"},
	} {
		_, err := config.Load([]string{"CCRELAY_NATS_URL=nats://127.0.0.1:1", c.env}, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.env, err, c.want)
		}
	}
}

// TestConnectionsBounded: connections beyond the bound are closed as soon
// as they are accepted, before they can hold a request head; the places
// come back when connections close.
func TestConnectionsBounded(t *testing.T) {
	const open = 8
	s := start(t, fmt.Sprintf("CCRELAY_MAX_CONNECTIONS=%d", open), fmt.Sprintf("CCRELAY_MAX_IN_FLIGHT=%d", open))
	var conns []net.Conn
	for i := 0; i < open; i++ {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		conns = append(conns, c)
	}
	eventually(t, "every connection counted", func() bool { return s.gauge(t, "ccrelay_ingest_open_connections") == open })
	extra := stall(t, s, "/v1/sinch/svc1", sinchHeaders(time.Now()), 100)
	if !extra.Closed(wait) {
		t.Error("a connection beyond the bound was kept open")
	}
	if got := s.shed(t, "connections"); got != 1 {
		t.Errorf("connections shed: %v, want 1", got)
	}
	for _, c := range conns {
		_ = c.Close()
	}
	eventually(t, "the connections given back", func() bool { return s.gauge(t, "ccrelay_ingest_open_connections") == 0 })
	body := sinchtest.InboundText("01CONNECTIONSBACK", time.Now())
	req, err := http.NewRequest(http.MethodPost, "http://"+s.addr+"/v1/sinch/svc1", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = (&sinchtest.Signer{Secret: sinchSecret}).Headers(body, time.Now())
	resp, err := (&http.Client{Timeout: wait}).Do(req)
	if err != nil {
		t.Fatalf("a signed sender once the connections closed: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("a signed sender once the connections closed: %d, want 202", resp.StatusCode)
	}
}

// TestRequestHeadBounded: a request head beyond CCRELAY_MAX_HEADER_BYTES
// is answered 431 as soon as it passes the bound, not held to its end; a
// head within it is served.
func TestRequestHeadBounded(t *testing.T) {
	s := start(t)
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// One header line of 40 KiB that never ends.
	if _, err := c.Write([]byte("POST /v1/sinch/svc1 HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 40<<10))); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer before the head ended: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a 40 KiB head: %d, want 431", resp.StatusCode)
	}

	body := sinchtest.InboundText("01HEADWITHIN", time.Now())
	req, err := http.NewRequest(http.MethodPost, "http://"+s.addr+"/v1/sinch/svc1", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = (&sinchtest.Signer{Secret: sinchSecret}).Headers(body, time.Now())
	req.Header.Set("X-Pad", strings.Repeat("a", 16<<10))
	resp, err = (&http.Client{Timeout: wait}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("a signed callback with a 16 KiB header: %d, want 202", resp.StatusCode)
	}
}
