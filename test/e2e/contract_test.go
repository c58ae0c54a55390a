package e2e_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/signature"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// The ingest contract: the rules every endpoint keeps, whatever it takes
// and however its sender authenticates (README, Security: "The ingest
// contract"). Each row of contractEndpoints is one endpoint with one way of
// authenticating; every rule runs against every row, as watermill runs one
// suite against every Pub/Sub backend. A route the server registers that no
// row covers, or a messaging service type without a row, fails
// TestContractCoversEveryRoute: a new endpoint is tested by all of it.

// contractEndpoint is one row: how to make a request that stores a new
// event, and how to take its credential away or spoil it.
type contractEndpoint struct {
	name string
	// pattern is the route the request reaches, as the server registers it.
	pattern string
	// path is the request's path; other, a path of another configured
	// service of the same source ("" where the source has no services);
	// unknown, a path naming no configured service ("" likewise).
	path, other, unknown string
	// valid returns the headers and body of a request to path that stores
	// a new event, distinct for each n.
	valid func(t *testing.T, d *deployment, path string, n int) (http.Header, []byte)
	// strip removes the credential from h; spoil makes it wrong.
	strip, spoil func(h http.Header)
	// bodyBound credentials (signatures, digest) cover the body: the same
	// credential with another body must be refused.
	bodyBound bool
	// personal are values of the body that must not reach an id or a
	// subject (phone numbers, e-mail addresses).
	personal []string
}

// contractEnv configures a second service for every source that has
// services, so ids can be checked to be per service.
func contractEnv() []string {
	return append(messagingContractEnv(),
		"CCRELAY_SINCH_WEBHOOK_SECRETS=svc1:"+sinchSecret+",svc2:"+sinchSecret2,
		"CCRELAY_CONTACTPRO_DIGEST_USERS="+cpDigestUser+":"+cpDigestPassword,
	)
}

const (
	sinchSecret2     = "sinch-webhook-secret-2"
	cpDigestUser     = "cpdigest"
	cpDigestPassword = "cp-digest-password-1"
	wavyUser         = "wavyuser"
)

func messagingContractEnv() []string {
	return []string{
		"CCRELAY_PUBLIC_URL=" + publicURL,
		"CCRELAY_MESSAGING_SECRETS=twilio/us:" + twilioToken + ",twilio/eu:" + twilioToken + ",facebook/page1:" + fbAppSecret + ",facebook/page2:" + fbAppSecret +
			",sinchsms/eu:" + smsSecret + ",sinchsms/us:" + smsSecret,
		"CCRELAY_MESSAGING_VERIFY_TOKENS=facebook/page1:" + fbVerifyToken,
		"CCRELAY_MESSAGING_BASIC_USERS=wavy/br=" + wavyUser + ":" + wavyPassword + ",wavy/ar=" + wavyUser + ":" + wavyPassword +
			",sinchsms/basic=smsuser:" + wavyPassword + ",sinchsms/basic2=smsuser:" + wavyPassword +
			",c4semail/mail=" + wavyUser + ":" + wavyPassword + ",c4semail/mail2=" + wavyUser + ":" + wavyPassword,
		"CCRELAY_MESSAGING_API_KEYS=social365/hub=" + social365Key + ",social365/hub2=" + social365Key +
			",sap365/s=" + social365Key + ",sap365/s2=" + social365Key,
	}
}

func dropHeader(names ...string) func(http.Header) {
	return func(h http.Header) {
		for _, n := range names {
			h.Del(n)
		}
	}
}

// spoilLast changes the last character of header name.
func spoilLast(name string) func(http.Header) {
	return func(h http.Header) {
		v := h.Get(name)
		last := byte('A')
		if strings.HasSuffix(v, "A") {
			last = 'B'
		}
		h.Set(name, v[:len(v)-1]+string(last))
	}
}

func withHeader(h http.Header, kv ...string) http.Header {
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// twilioSID is a MessageSid of n, in Twilio's format.
func twilioSID(n int) string { return fmt.Sprintf("SM%032x", n+1) }

func contractEndpoints() []contractEndpoint {
	sinchValid := func(secret string) func(*testing.T, *deployment, string, int) (http.Header, []byte) {
		return func(_ *testing.T, _ *deployment, _ string, n int) (http.Header, []byte) {
			body := inboundText(fmt.Sprintf("01CONTRACT%016d", n), time.Now())
			return signed(secret, body, time.Now()), body
		}
	}
	// sinchValidFor signs with the secret of the service the path names.
	sinchValidFor := func(t *testing.T, d *deployment, path string, n int) (http.Header, []byte) {
		secret := sinchSecret
		if strings.HasSuffix(path, "/svc2") {
			secret = sinchSecret2
		}
		return sinchValid(secret)(t, d, path, n)
	}
	cpBody := func(n int) []byte { return chatAttachments(fmt.Sprintf("contract-guid-%d", n)) }
	lens := func(n int) []byte {
		return contactLens(fmt.Sprintf("contract-ev-%d", n), fmt.Sprintf("contract-contact-%d", n), "Contact Lens Post Call Rules Matched")
	}
	twilio := func(t *testing.T, _ *deployment, path string, n int) (http.Header, []byte) {
		body := []byte(url.Values{
			"MessageSid": {twilioSID(n)}, "SmsSid": {twilioSID(n)}, "AccountSid": {"AC" + strings.Repeat("0", 32)},
			"From": {"+16505551199"}, "To": {"+16505558225"}, "Body": {fmt.Sprintf("hello %d", n)}, "NumMedia": {"0"}, "SmsStatus": {"received"},
		}.Encode())
		return twilioHeaders(t, path, body), body
	}
	messenger := func(_ *testing.T, _ *deployment, _ string, n int) (http.Header, []byte) {
		body := fmt.Appendf(nil, `{"object":"page","entry":[{"id":"PAGE_ID","time":1458692752478,"messaging":[{"sender":{"id":"PSID"},"recipient":{"id":"PAGE_ID"},"timestamp":1458692752478,"message":{"mid":"mid.contract.%d","text":"hello"}}]}]}`, n)
		return hubHeaders(body), body
	}
	sms := func(body []byte) []byte { return body }
	smsBody := func(n int) []byte {
		return sms(fmt.Appendf(nil, `{"body":"a body","from":"+11203494390","id":"01CONTRACTSMS%013d","operator_id":"35000","received_at":"2019-08-24T14:17:22Z","sent_at":"2019-08-24T14:15:22Z","to":"11203453453","type":"mo_text"}`, n))
	}
	smsSigned := func(_ *testing.T, _ *deployment, _ string, n int) (http.Header, []byte) {
		body := smsBody(n)
		return signed(smsSecret, body, time.Now()), body
	}
	basicAs := func(user, pass string, body func(int) []byte) func(*testing.T, *deployment, string, int) (http.Header, []byte) {
		return func(_ *testing.T, _ *deployment, _ string, n int) (http.Header, []byte) {
			return basicJSON(user, pass), body(n)
		}
	}
	keyed := func(header, key string, body func(int) []byte) func(*testing.T, *deployment, string, int) (http.Header, []byte) {
		return func(_ *testing.T, _ *deployment, _ string, n int) (http.Header, []byte) {
			return withHeader(jsonHeader(), header, key), body(n)
		}
	}
	anyJSON := func(n int) []byte { return fmt.Appendf(nil, `{"id":"contract-%d","text":"hello"}`, n) }
	bearer := func(body func(int) []byte) func(*testing.T, *deployment, string, int) (http.Header, []byte) {
		return func(t *testing.T, d *deployment, _ string, n int) (http.Header, []byte) {
			b, h := form(url.Values{"grant_type": {"client_credentials"}})
			h.Set("Authorization", basic(url.QueryEscape(oauthClient), url.QueryEscape(oauthSecret)))
			r := d.post("/oauth/token", h, b)
			if r.status != http.StatusOK {
				t.Fatalf("token: %d %s", r.status, r.body)
			}
			return withHeader(jsonHeader(), "Authorization", "Bearer "+r.json(t)["access_token"].(string)), body(n)
		}
	}
	digest := func(t *testing.T, d *deployment, path string, n int) (http.Header, []byte) {
		body := cpBody(n)
		r := d.post(path, jsonHeader(), body)
		if r.status != http.StatusUnauthorized {
			t.Fatalf("digest challenge: %d %s", r.status, r.body)
		}
		var challenge string
		for _, c := range r.header.Values("WWW-Authenticate") {
			if strings.HasPrefix(c, "Digest ") {
				challenge = c
			}
		}
		// qop=auth-int, which covers the body (qop=auth does not: only
		// its nonce count keeps it from being sent again).
		return withHeader(jsonHeader(), "Authorization", digestAuthInt(t, challenge, http.MethodPost, path, cpDigestUser, cpDigestPassword, body, 1)), body
	}
	const cpPath = "/v1/contactpro/chat-attachments/Ended"
	return []contractEndpoint{
		{name: "sinch", pattern: "/v1/sinch/{service}", path: "/v1/sinch/svc1", other: "/v1/sinch/svc2", unknown: "/v1/sinch/nosuch",
			valid: sinchValidFor, strip: dropHeader(signature.SinchHeaderSignature), spoil: spoilLast(signature.SinchHeaderSignature), bodyBound: true},
		{name: "contactpro api key", pattern: "/v1/contactpro/{integration}/{event}", path: cpPath,
			valid: keyed("x-api-key", cpAPIKey, cpBody), strip: dropHeader("x-api-key"), spoil: spoilLast("x-api-key")},
		{name: "contactpro basic", pattern: "/v1/contactpro/{integration}/{event}", path: cpPath,
			valid: basicAs(cpUser, cpPassword, cpBody), strip: dropHeader("Authorization"), spoil: spoilLast("Authorization")},
		{name: "contactpro digest", pattern: "/v1/contactpro/{integration}/{event}", path: cpPath,
			valid: digest, strip: dropHeader("Authorization"), spoil: func(h http.Header) {
				h.Set("Authorization", strings.Replace(h.Get("Authorization"), `response="`, `response="0`, 1))
			}, bodyBound: true},
		{name: "contactpro bearer", pattern: "/v1/contactpro/{integration}/{event}", path: cpPath,
			valid: bearer(cpBody), strip: dropHeader("Authorization"), spoil: spoilLast("Authorization")},
		{name: "contactpro one segment", pattern: "/v1/contactpro/{integration}", path: "/v1/contactpro/chat-attachments",
			valid: keyed("x-api-key", cpAPIKey, func(n int) []byte {
				return fmt.Appendf(nil, `{"event":"Ended","contact_id":"contract-one-%d","cmi_url":"https://cmi.example.test/acme/cmi"}`, n)
			}), strip: dropHeader("x-api-key"), spoil: spoilLast("x-api-key")},
		{name: "contactpro rest", pattern: "/v1/contactpro/{integration}/{event}/{rest...}", path: "/v1/contactpro/chat-attachments/Ended/extra",
			valid: keyed("x-api-key", cpAPIKey, cpBody), strip: dropHeader("x-api-key"), spoil: spoilLast("x-api-key")},
		{name: "connect api key", pattern: "/v1/connect/events", path: "/v1/connect/events",
			valid: keyed("x-api-key", connectAPIKey, lens), strip: dropHeader("x-api-key"), spoil: spoilLast("x-api-key")},
		{name: "connect basic", pattern: "/v1/connect/events", path: "/v1/connect/events",
			valid: basicAs(ebUser, ebPassword, lens), strip: dropHeader("Authorization"), spoil: spoilLast("Authorization")},
		{name: "connect bearer", pattern: "/v1/connect/events", path: "/v1/connect/events",
			valid: bearer(lens), strip: dropHeader("Authorization"), spoil: spoilLast("Authorization")},
		{name: "messaging twilio", pattern: "/v1/messaging/{type}/{service}", path: "/v1/messaging/twilio/us", other: "/v1/messaging/twilio/eu", unknown: "/v1/messaging/twilio/nosuch",
			valid: twilio, strip: dropHeader(signature.HeaderTwilioSignature), spoil: spoilLast(signature.HeaderTwilioSignature), bodyBound: true,
			personal: []string{"+16505551199", "16505551199"}},
		{name: "messaging facebook", pattern: "/v1/messaging/{type}/{service}", path: "/v1/messaging/facebook/page1", other: "/v1/messaging/facebook/page2", unknown: "/v1/messaging/facebook/nosuch",
			valid: messenger, strip: dropHeader(signature.HeaderHubSignature256), spoil: spoilLast(signature.HeaderHubSignature256), bodyBound: true},
		{name: "messaging sinchsms signed", pattern: "/v1/messaging/{type}/{service}", path: "/v1/messaging/sinchsms/eu", other: "/v1/messaging/sinchsms/us", unknown: "/v1/messaging/sinchsms/nosuch",
			valid: smsSigned, strip: dropHeader(signature.SinchHeaderSignature), spoil: spoilLast(signature.SinchHeaderSignature), bodyBound: true,
			personal: []string{"+11203494390", "11203494390", "11203453453"}},
		{name: "messaging sinchsms basic", pattern: "/v1/messaging/{type}/{service}", path: "/v1/messaging/sinchsms/basic", other: "/v1/messaging/sinchsms/basic2", unknown: "/v1/messaging/sinchsms/nosuch",
			valid: basicAs("smsuser", wavyPassword, smsBody), strip: dropHeader("Authorization"), spoil: spoilLast("Authorization"),
			personal: []string{"+11203494390", "11203494390", "11203453453"}},
		{name: "messaging wavy", pattern: "/v1/messaging/{type}/{service}", path: "/v1/messaging/wavy/br", other: "/v1/messaging/wavy/ar", unknown: "/v1/messaging/wavy/nosuch",
			valid: basicAs(wavyUser, wavyPassword, anyJSON), strip: dropHeader("Authorization"), spoil: spoilLast("Authorization")},
		{name: "messaging c4semail", pattern: "/v1/messaging/{type}/{service}", path: "/v1/messaging/c4semail/mail", other: "/v1/messaging/c4semail/mail2", unknown: "/v1/messaging/c4semail/nosuch",
			valid: basicAs(wavyUser, wavyPassword, anyJSON), strip: dropHeader("Authorization"), spoil: spoilLast("Authorization")},
		{name: "messaging social365", pattern: "/v1/messaging/{type}/{service}", path: "/v1/messaging/social365/hub", other: "/v1/messaging/social365/hub2", unknown: "/v1/messaging/social365/nosuch",
			valid: keyed("x-api-key", social365Key, anyJSON), strip: dropHeader("x-api-key"), spoil: spoilLast("x-api-key")},
		{name: "messaging sap365", pattern: "/v1/messaging/{type}/{service}", path: "/v1/messaging/sap365/s", other: "/v1/messaging/sap365/s2", unknown: "/v1/messaging/sap365/nosuch",
			valid: keyed("x-api-key", social365Key, anyJSON), strip: dropHeader("x-api-key"), spoil: spoilLast("x-api-key")},
	}
}

// TestContract runs every rule against every endpoint.
func TestContract(t *testing.T) {
	ns := natstest.Embedded(t)
	d := deploy(t, ns.ClientURL(), 1, contractEnv()...)
	n := 0
	next := func() int { n++; return n }
	for _, e := range contractEndpoints() {
		t.Run(e.name, func(t *testing.T) {
			t.Run("a valid request is stored once; its replay is a duplicate", func(t *testing.T) {
				h, body := e.valid(t, d, e.path, next())
				before := d.count()
				r := d.post(e.path, h, body)
				if r.status != http.StatusAccepted {
					t.Fatalf("valid request: %d %s", r.status, r.body)
				}
				if !bytes.Equal(d.stored(r).Data, body) {
					t.Error("the stored body is not the request's")
				}
				if e.bodyBound && strings.HasPrefix(h.Get("Authorization"), "Digest ") {
					// A digest answer is good once: its replay is refused
					// (below), not answered as a duplicate.
					return
				}
				again := d.post(e.path, h, body)
				if again.status != http.StatusOK || again.header.Get("Ccrelay-Duplicate") != "true" {
					t.Errorf("replay: %d (duplicate %q) %s, want 200 duplicate", again.status, again.header.Get("Ccrelay-Duplicate"), again.body)
				}
				if got := d.count() - before; got != 1 {
					t.Errorf("%d events stored, want 1", got)
				}
			})
			t.Run("no credential: 401, nothing stored", func(t *testing.T) {
				h, body := e.valid(t, d, e.path, next())
				e.strip(h)
				refused(t, d, e.path, h, body, http.StatusUnauthorized)
			})
			t.Run("a wrong credential: 401 as for no such service, nothing stored", func(t *testing.T) {
				h, body := e.valid(t, d, e.path, next())
				e.spoil(h)
				wrong := refused(t, d, e.path, h, body, http.StatusUnauthorized)
				if e.unknown == "" {
					return
				}
				h, body = e.valid(t, d, e.path, next())
				unknown := refused(t, d, e.unknown, h, body, http.StatusUnauthorized)
				if w, u := wrong.json(t)["message"], unknown.json(t)["message"]; w != u {
					t.Errorf("a wrong credential answers %q, an unknown service %q: a caller can tell configured services apart", w, u)
				}
			})
			if e.bodyBound {
				t.Run("a credential replayed with another body changes nothing", func(t *testing.T) {
					h, _ := e.valid(t, d, e.path, next())
					_, other := e.valid(t, d, e.path, next())
					refused(t, d, e.path, h, other, http.StatusUnauthorized)
				})
			}
			t.Run("a body beyond the limit: 413 before it is read", func(t *testing.T) {
				h, _ := e.valid(t, d, e.path, next())
				status := headersOnly(t, d, e.path, h, d.settings.HTTP.MaxBodyBytes+1)
				if status != http.StatusRequestEntityTooLarge {
					t.Errorf("status %d, want 413 answered before the body was sent", status)
				}
			})
			if e.other != "" {
				t.Run("ids are per service", func(t *testing.T) {
					k := next()
					h, body := e.valid(t, d, e.path, k)
					first := d.post(e.path, h, body)
					h, body = e.valid(t, d, e.other, k)
					second := d.post(e.other, h, body)
					if first.status != http.StatusAccepted || second.status != http.StatusAccepted {
						t.Fatalf("the same event to two services: %d and %d (%s), want both stored", first.status, second.status, second.body)
					}
					if a, b := d.stored(first).Header.Get("Nats-Msg-Id"), d.stored(second).Header.Get("Nats-Msg-Id"); a == b {
						t.Errorf("both services' events have id %q", a)
					}
				})
			}
			if len(e.personal) > 0 {
				t.Run("ids and subjects carry no personal data", func(t *testing.T) {
					h, body := e.valid(t, d, e.path, next())
					r := d.post(e.path, h, body)
					if r.status != http.StatusAccepted {
						t.Fatalf("%d %s", r.status, r.body)
					}
					m := d.stored(r)
					for _, where := range []string{m.Subject, m.Header.Get("Nats-Msg-Id"), m.Header.Get("ce-id"), m.Header.Get("Ccrelay-Ids"), r.header.Get("X-Ccrelay-Event-Id"), string(r.body)} {
						for _, p := range e.personal {
							if strings.Contains(where, p) {
								t.Errorf("%q holds %q", where, p)
							}
						}
					}
				})
			}
		})
	}
}

// refused posts and checks the status, a JSON error, and that nothing was
// stored.
func refused(t *testing.T, d *deployment, path string, h http.Header, body []byte, status int) response {
	t.Helper()
	before := d.count()
	r := d.post(path, h, body)
	if r.status != status {
		t.Errorf("%s: %d %s, want %d", path, r.status, r.body, status)
	}
	if _, ok := r.json(t)["code"].(string); !ok {
		t.Errorf("%s: the refusal has no JSON error code: %s", path, r.body)
	}
	if after := d.count(); after != before {
		t.Errorf("%s: a refused request stored %d events", path, after-before)
	}
	return r
}

// headersOnly sends a request's headers announcing length body bytes and
// none of them, and returns the status answered meanwhile (0 if none came
// within 5 s).
func headersOnly(t *testing.T, d *deployment, path string, h http.Header, length int64) int {
	t.Helper()
	u, err := url.Parse(d.urls[0])
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var req bytes.Buffer
	fmt.Fprintf(&req, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", path, u.Host, length)
	for k, vs := range h {
		for _, v := range vs {
			fmt.Fprintf(&req, "%s: %s\r\n", k, v)
		}
	}
	req.WriteString("\r\n")
	if _, err := c.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestContractCoversEveryRoute: every route the ingest server registers
// has a row in the contract, and so does every messaging service type.
func TestContractCoversEveryRoute(t *testing.T) {
	ns := natstest.Embedded(t)
	d := deploy(t, ns.ClientURL(), 1, contractEnv()...)
	covered := map[string]bool{}
	types := map[string]bool{}
	for _, e := range contractEndpoints() {
		covered[e.pattern] = true
		if typ, ok := strings.CutPrefix(e.path, "/v1/messaging/"); ok {
			types[strings.Split(typ, "/")[0]] = true
		}
	}
	// Routes that take no events: probes and the metrics of other
	// listeners, the token endpoint and Messenger's handshake, which have
	// contracts of their own (oauthSuite, messagingSuite).
	noEvents := []string{"/healthz", "/readyz", "/oauth/token", "GET /v1/messaging/{type}/{service}", "/"}
	for _, p := range d.patterns {
		if !covered[p] && !slices.Contains(noEvents, p) {
			t.Errorf("route %q has no row in the ingest contract", p)
		}
	}
	for _, typ := range messages.MessagingTypes() {
		if !types[typ] {
			t.Errorf("messaging service type %q has no row in the ingest contract", typ)
		}
	}
}
