package server_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/ingest"
	"github.com/ccrelay/ccrelay/messages/signature"
	"github.com/ccrelay/ccrelay/test/sinchtest"
	"github.com/ccrelay/ccrelay/test/stalltest"
)

// from dials from the loopback address ip (127.0.0.0/8 is all loopback on
// Linux), to stand for another client.
func from(ip string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
}

func stallFrom(t *testing.T, s running, d *net.Dialer, path string, h http.Header, length int64) *stalltest.Stall {
	t.Helper()
	st, err := stalltest.OpenWith(d, s.addr, http.MethodPost, path, h, length, 16)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// sendFrom posts one signed Sinch callback dialling with d, with the extra
// headers h, and returns the status.
func sendFrom(t *testing.T, s running, d *net.Dialer, h http.Header, id string) int {
	t.Helper()
	client := &http.Client{Timeout: wait, Transport: &http.Transport{DialContext: d.DialContext}}
	defer client.CloseIdleConnections()
	body := sinchtest.InboundText(id, time.Now())
	req, err := http.NewRequest(http.MethodPost, "http://"+s.addr+"/v1/sinch/svc1", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = (&sinchtest.Signer{Secret: sinchSecret}).Headers(body, time.Now())
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// stalledKinds are stalled requests that pass every check of their
// headers, without a credential of ccrelay's: a token request that
// authenticates in its body, and well-formed signatures of another body
// for a configured Sinch, Sinch SMS, Twilio and Messenger service.
func stalledKinds() []struct {
	path string
	h    http.Header
} {
	hub := "sha256=" + strings.Repeat("ab", 32)
	twilio := signature.TwilioSign("not-the-token", "https://relay.example.com/v1/messaging/twilio/us", nil)
	return []struct {
		path string
		h    http.Header
	}{
		{"/oauth/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}},
		{"/v1/sinch/svc1", sinchHeaders(time.Now())},
		{"/v1/messaging/twilio/us", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, signature.HeaderTwilioSignature: {twilio}}},
		{"/v1/messaging/facebook/page1", http.Header{"Content-Type": {"application/json"}, signature.HeaderHubSignature256: {hub}}},
		{"/v1/messaging/sinchsms/eu", (&sinchtest.Signer{Secret: "not-the-secret"}).Headers([]byte("another body"), time.Now())},
	}
}

// TestOneAddressCannotShutOutOthers: a client address stalling twice as
// many requests as its bound, with no credential, gets its bound's worth
// admitted and the rest answered 503 with Retry-After before their bodies
// are read, and a signed sender at another address is served meanwhile,
// though the stalls alone would fill every request slot. The address is
// the peer's, or the one a trusted proxy appended to X-Forwarded-For.
func TestOneAddressCannotShutOutOthers(t *testing.T) {
	const perAddress = 8
	for _, c := range []struct {
		name string
		env  []string
		// attacker and sender dial with their dialers and send these
		// headers besides.
		attacker, sender   *net.Dialer
		attackerH, senderH http.Header
	}{
		{name: "another peer address", attacker: from("127.0.0.1"), sender: from("127.0.0.2")},
		{name: "behind a trusted proxy", env: []string{"CCRELAY_AUTH_TRUSTED_PROXIES=loopback"},
			attacker: from("127.0.0.1"), sender: from("127.0.0.1"),
			// A forged hop left of the proxy's changes nothing.
			attackerH: http.Header{"X-Forwarded-For": {"203.0.113.1, 198.51.100.66"}},
			senderH:   http.Header{"X-Forwarded-For": {"198.51.100.7"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := start(t, append([]string{
				fmt.Sprintf("CCRELAY_MAX_IN_FLIGHT=%d", 2*perAddress),
				fmt.Sprintf("CCRELAY_MAX_IN_FLIGHT_PER_ADDRESS=%d", perAddress),
			}, c.env...)...)
			kinds := stalledKinds()
			open := func(i int) *stalltest.Stall {
				k := kinds[i%len(kinds)]
				h := k.h.Clone()
				for name, vs := range c.attackerH {
					h[name] = vs
				}
				return stallFrom(t, s, c.attacker, k.path, h, 1000)
			}
			var held []*stalltest.Stall
			for i := 0; i < perAddress; i++ {
				held = append(held, open(i))
				eventually(t, fmt.Sprintf("%d stalls admitted", i+1), func() bool {
					return s.gauge(t, "ccrelay_ingest_in_flight_requests") == float64(i+1)
				})
			}
			for i := perAddress; i < 2*perAddress; i++ {
				resp := answered(t, fmt.Sprintf("stall %d of one address (%s)", i+1, kinds[i%len(kinds)].path), open(i), http.StatusServiceUnavailable, ingest.CodeOverloaded)
				if resp != nil && resp.Header.Get("Retry-After") == "" {
					t.Errorf("stall %d: 503 without Retry-After", i+1)
				}
			}
			if got := s.shed(t, "per_address"); got != perAddress {
				t.Errorf("shed per address: %v, want %d", got, perAddress)
			}
			for i := range 3 {
				if status := sendFrom(t, s, c.sender, c.senderH, fmt.Sprintf("01OTHERADDRESS%d%012d", i, time.Now().UnixNano()%1e12)); status != http.StatusAccepted {
					t.Errorf("a signed sender at another address, during the stalls: %d, want 202", status)
				}
			}
			if got := s.shed(t, "in_flight"); got != 0 {
				t.Errorf("shed for requests in flight: %v, want none (the address's bound comes first)", got)
			}
			// The address's places come back when it hangs up.
			for _, st := range held {
				_ = st.Close()
			}
			eventually(t, "the stalls' places given back", func() bool {
				return s.gauge(t, "ccrelay_ingest_in_flight_requests") == 0
			})
			_ = open(1)
			eventually(t, "the address admitted again", func() bool {
				return s.gauge(t, "ccrelay_ingest_in_flight_requests") == 1
			})
		})
	}
}

// TestConnectionsPerAddress: idle connections from one peer address
// beyond its bound are closed as soon as they are accepted, so they
// cannot take every connection; a trusted proxy, which carries many
// clients, is bounded by the process's bound alone; a sender at another
// address is served.
func TestConnectionsPerAddress(t *testing.T) {
	const perAddress = 8
	s := start(t, "CCRELAY_MAX_CONNECTIONS=32", "CCRELAY_MAX_IN_FLIGHT=16",
		fmt.Sprintf("CCRELAY_MAX_CONNECTIONS_PER_ADDRESS=%d", perAddress), fmt.Sprintf("CCRELAY_MAX_IN_FLIGHT_PER_ADDRESS=%d", perAddress),
		"CCRELAY_AUTH_TRUSTED_PROXIES=127.0.0.3/32")
	dial := func(d *net.Dialer) net.Conn {
		c, err := d.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	var kept []net.Conn
	for i := 0; i < perAddress; i++ {
		kept = append(kept, dial(from("127.0.0.1")))
		eventually(t, fmt.Sprintf("%d connections counted", i+1), func() bool {
			return s.gauge(t, "ccrelay_ingest_open_connections") == float64(i+1)
		})
	}
	for i := 0; i < perAddress; i++ {
		c := dial(from("127.0.0.1"))
		_ = c.SetReadDeadline(time.Now().Add(wait))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("connection %d of one address kept open beyond its bound: %v", perAddress+i+1, err)
		}
	}
	if got := s.shed(t, "connections_per_address"); got != perAddress {
		t.Errorf("connections shed per address: %v, want %d", got, perAddress)
	}
	const proxied = perAddress + 4
	for i := 0; i < proxied; i++ {
		kept = append(kept, dial(from("127.0.0.3")))
	}
	eventually(t, "every connection of the trusted proxy kept", func() bool {
		return s.gauge(t, "ccrelay_ingest_open_connections") == perAddress+proxied
	})
	if status := sendFrom(t, s, from("127.0.0.2"), nil, "01CONNPERADDRESS"); status != http.StatusAccepted {
		t.Errorf("a signed sender at another address: %d, want 202", status)
	}
	for _, c := range kept {
		_ = c.Close()
	}
	eventually(t, "the connections given back", func() bool { return s.gauge(t, "ccrelay_ingest_open_connections") == 0 })
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestBodyReadTimeout: a request admitted on its headers whose body does
// not arrive within CCRELAY_BODY_READ_TIMEOUT is answered 408 and its
// connection closed, long before the read timeout of the whole request,
// and gives its place back; on the pipeline's endpoints and the token
// endpoint alike. A body that arrives in time is taken.
func TestBodyReadTimeout(t *testing.T) {
	s := start(t, "CCRELAY_BODY_READ_TIMEOUT=1s")
	webhook := answered(t, "stalled signed-looking callback", stall(t, s, "/v1/sinch/svc1", sinchHeaders(time.Now()), 1000), http.StatusRequestTimeout, ingest.CodeRequestTimeout)
	if webhook == nil {
		return
	}
	st := stall(t, s, "/oauth/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, 1000)
	resp, err := st.Answer(wait)
	if err != nil {
		t.Fatalf("stalled token request: no answer: %v", err)
	}
	var e struct{ Error, Description string }
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || json.Unmarshal(b, &e) != nil || e.Error != "invalid_request" || !resp.Close {
		t.Errorf("stalled token request: %d %s (close %v), want 408 invalid_request and the connection closed", resp.StatusCode, b, resp.Close)
	}
	eventually(t, "their places given back", func() bool {
		return s.gauge(t, "ccrelay_ingest_in_flight_requests") == 0 && s.gauge(t, "ccrelay_ingest_buffered_bytes") == 0
	})
	if status := sendFrom(t, s, &net.Dialer{}, nil, "01BODYINTIME"); status != http.StatusAccepted {
		t.Errorf("a signed callback whose body arrives at once: %d, want 202", status)
	}
}

// TestTokenEndpointRefusesFromHeaders: the token endpoint answers what its
// headers decide (the method, the content type, client credentials in
// Authorization) before a byte of the body is sent, on a connection it
// then closes.
func TestTokenEndpointRefusesFromHeaders(t *testing.T) {
	s := start(t)
	form := "application/x-www-form-urlencoded"
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	for _, c := range []struct {
		name, method string
		h            http.Header
		status       int
		code         string
	}{
		{"a wrong client secret", http.MethodPost, http.Header{"Content-Type": {form}, "Authorization": {basic("client", "wrong")}}, http.StatusUnauthorized, "invalid_client"},
		{"an unknown client", http.MethodPost, http.Header{"Content-Type": {form}, "Authorization": {basic("nobody", "wrong")}}, http.StatusUnauthorized, "invalid_client"},
		{"another scheme", http.MethodPost, http.Header{"Content-Type": {form}, "Authorization": {"Bearer x"}}, http.StatusUnauthorized, "invalid_client"},
		{"a JSON body", http.MethodPost, http.Header{"Content-Type": {"application/json"}, "Authorization": {basic("client", "client-secret")}}, http.StatusBadRequest, "invalid_request"},
		{"PUT", http.MethodPut, http.Header{"Content-Type": {form}}, http.StatusMethodNotAllowed, "invalid_request"},
	} {
		st, err := stalltest.Open(s.addr, c.method, "/oauth/token", c.h, 1000, 10)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := st.Answer(wait)
		if err != nil {
			t.Errorf("%s: no answer before the body was sent: %v", c.name, err)
			_ = st.Close()
			continue
		}
		var e struct{ Error string }
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || json.Unmarshal(b, &e) != nil || e.Error != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, resp.StatusCode, b, c.status, c.code)
		}
		if !resp.Close || !st.Closed(wait) {
			t.Errorf("%s: the connection is kept open with the body unread", c.name)
		}
		_ = st.Close()
	}
}

// TestUnknownServicesReadTheirBody: a request to a service that is not
// configured, with signature headers of the right shape, is treated as
// one to a configured service with a signature of another body: the body
// is asked for ("100 Continue") and read, and the answer after it is the
// same 401, challenge included. Answered before the body, it would tell a
// caller which services exist.
func TestUnknownServicesReadTheirBody(t *testing.T) {
	s := start(t)
	for _, c := range []struct {
		name, known, unknown string
		h                    func(path string) http.Header
		body                 string
	}{
		{"sinch", "/v1/sinch/svc1", "/v1/sinch/nosuch", func(string) http.Header { return sinchHeaders(time.Now()) }, `{}`},
		{"sinch sms", "/v1/messaging/sinchsms/eu", "/v1/messaging/sinchsms/nosuch", func(string) http.Header {
			return (&sinchtest.Signer{Secret: "not-the-secret"}).Headers([]byte("another body"), time.Now())
		}, `{}`},
		{"twilio", "/v1/messaging/twilio/us", "/v1/messaging/twilio/nosuch", func(path string) http.Header {
			return http.Header{"Content-Type": {"application/x-www-form-urlencoded"},
				signature.HeaderTwilioSignature: {signature.TwilioSign("not-the-token", "https://relay.example.com"+path, nil)}}
		}, "MessageSid=SM0123456789abcdef0123456789abcdef&From=%2B14155550100"},
		{"messenger", "/v1/messaging/facebook/page1", "/v1/messaging/facebook/nosuch", func(string) http.Header {
			return http.Header{"Content-Type": {"application/json"}, signature.HeaderHubSignature256: {"sha256=" + strings.Repeat("ab", 32)}}
		}, `{"object":"page","entry":[]}`},
	} {
		var answers [2]*http.Response
		var bodies [2][]byte
		for i, path := range []string{c.known, c.unknown} {
			resp, b, err := expectContinue(s.addr, path, c.h(path), c.body)
			if err != nil {
				t.Errorf("%s %s: %v", c.name, path, err)
				continue
			}
			answers[i], bodies[i] = resp, b
		}
		k, u := answers[0], answers[1]
		if k == nil || u == nil {
			continue
		}
		if k.StatusCode != http.StatusUnauthorized || u.StatusCode != k.StatusCode || !bytes.Equal(bodies[0], bodies[1]) ||
			!slices.Equal(k.Header.Values("WWW-Authenticate"), u.Header.Values("WWW-Authenticate")) {
			t.Errorf("%s: configured %d %s %q, unknown %d %s %q", c.name, k.StatusCode, bodies[0], k.Header.Values("WWW-Authenticate"),
				u.StatusCode, bodies[1], u.Header.Values("WWW-Authenticate"))
		}
	}
}

// expectContinue sends a request's head with "Expect: 100-continue",
// requires "100 Continue" before it sends the body, and returns the final
// answer.
func expectContinue(addr, path string, h http.Header, body string) (*http.Response, []byte, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	var req bytes.Buffer
	fmt.Fprintf(&req, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n", path, addr, len(body))
	for k, vs := range h {
		for _, v := range vs {
			fmt.Fprintf(&req, "%s: %s\r\n", k, v)
		}
	}
	req.WriteString("\r\n")
	if _, err := c.Write(req.Bytes()); err != nil {
		return nil, nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	br := bufio.NewReader(c)
	first, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("no answer to the head: %w", err)
	}
	if first.StatusCode != http.StatusContinue {
		b, _ := io.ReadAll(first.Body)
		return nil, nil, fmt.Errorf("answered %d %s before the body, want 100 Continue", first.StatusCode, b)
	}
	if _, err := c.Write([]byte(body)); err != nil {
		return nil, nil, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("no answer after the body: %w", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b, err
}

// TestForwardedForIgnoredByDefault: with no trusted proxy configured, an
// X-Forwarded-For names no one: a client rotating it is slowed down as the
// address it is (it would otherwise have unlimited guesses, and could
// blame the addresses it names); another address is not slowed down.
func TestForwardedForIgnoredByDefault(t *testing.T) {
	s := start(t, "CCRELAY_AUTH_FAILURE_BURST=10", "CCRELAY_AUTH_FAILURE_INTERVAL=1h")
	post := func(d *net.Dialer, xff, key string) int {
		client := &http.Client{Timeout: wait, Transport: &http.Transport{DialContext: d.DialContext}}
		defer client.CloseIdleConnections()
		req, err := http.NewRequest(http.MethodPost, "http://"+s.addr+"/v1/connect/events", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Api-Key", key)
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 10 {
		if status := post(from("127.0.0.1"), "198.51.100."+strconv.Itoa(i+1), "wrong"); status != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i+1, status)
		}
	}
	if status := post(from("127.0.0.1"), "198.51.100.200", "wrong"); status != http.StatusTooManyRequests {
		t.Errorf("guess 11 under yet another X-Forwarded-For: %d, want 429", status)
	}
	// Another address has its key checked (the body is no Contact Lens
	// event: 400, neither 401 nor 429).
	if status := post(from("127.0.0.2"), "", "connect-key"); status == http.StatusTooManyRequests || status == http.StatusUnauthorized {
		t.Errorf("another address with the right key: %d", status)
	}
}
