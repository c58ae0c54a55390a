package messaging_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/ingest"
	"github.com/ccrelay/ccrelay/ingest/auth"
	"github.com/ccrelay/ccrelay/ingest/messaging"
	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/messages/secret"
	"github.com/ccrelay/ccrelay/messages/signature"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// relay serves a messaging adapter built straight from cfg (no Validate)
// over real HTTP, storing in a real JetStream.
type relay struct {
	url string
	js  jetstream.JetStream
	sub messages.Subjects
}

func serve(t *testing.T, cfg messaging.Config, throttle *auth.Throttle) *relay {
	t.Helper()
	ns := natstest.Embedded(t)
	nc, js := natstest.Connect(t, ns.ClientURL())
	subjects := messages.DefaultSubjects()
	if err := messages.EnsureStreams(context.Background(), provision.Waiter{}, js, messages.StreamConfig{Subjects: subjects, Replicas: 1, MaxAge: time.Hour, DedupWindow: time.Minute, MaxBytes: -1, DLQMaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if cfg.APIKeyHeader == "" {
		cfg.APIKeyHeader = "x-api-key"
	}
	m := ingest.NewMetrics(prometheus.NewRegistry())
	pub := ingest.NewPublisher(ingest.Fixed{JS: js, Conn: nc}, subjects, 2*time.Second, m)
	p := ingest.NewPipeline(ingest.PipelineConfig{MaxBodyBytes: 64 << 10, RetryAfter: time.Second}, pub, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	mux := http.NewServeMux()
	mux.Handle("/v1/messaging/{type}/{service}", p.Handler(messaging.New(cfg, subjects, m, throttle)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &relay{url: srv.URL, js: js, sub: subjects}
}

// stored is the number of events in the events stream.
func (r *relay) stored(t *testing.T) uint64 {
	t.Helper()
	s, err := r.js.Stream(context.Background(), r.sub.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

type answer struct {
	status    int
	code, msg string
	challenge []string
	header    http.Header
}

func (r *relay) post(t *testing.T, path string, h http.Header, body string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, r.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct{ Code, Message string }
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return answer{status: resp.StatusCode, code: e.Code, msg: e.Message, challenge: resp.Header.Values("WWW-Authenticate"), header: resp.Header}
}

func creds(t *testing.T, s string) secret.Credentials {
	t.Helper()
	var c secret.Credentials
	if err := c.UnmarshalText([]byte(s)); err != nil {
		t.Fatal(err)
	}
	return c
}

func assign(t *testing.T, s string) secret.Assignments {
	t.Helper()
	var a secret.Assignments
	if err := a.UnmarshalText([]byte(s)); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestValidateRefusesUnguarded: a service of a type that signs nothing
// (social365, c4semail, wavy, sap365) with only a secret would take
// requests without credentials: configuration refuses it, naming the
// variables that would guard it. A secret is a guard for the signed types.
func TestValidateRefusesUnguarded(t *testing.T) {
	base := messaging.Config{APIKeyHeader: "x-api-key", PublicURL: "https://relay.example.com"}
	for _, typ := range []string{messages.MessagingSocial365, messages.MessagingC4SEmail, messages.MessagingWavy, messages.MessagingSAP365} {
		c := base
		c.Secrets = creds(t, typ+"/x:some-secret")
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "CCRELAY_MESSAGING_BASIC_USERS") || !strings.Contains(err.Error(), typ+"/x") {
			t.Errorf("%s with a secret only: %v", typ, err)
		}
		c.APIKeys = assign(t, typ+"/x=key")
		if err := c.Validate(); err != nil {
			t.Errorf("%s with a secret and an API key: %v", typ, err)
		}
		c.APIKeys, c.BasicUsers = nil, assign(t, typ+"/x=user:password")
		if err := c.Validate(); err != nil {
			t.Errorf("%s with a secret and basic: %v", typ, err)
		}
	}
	for _, key := range []string{"twilio/us", "facebook/page", "sinchsms/eu"} {
		c := base
		c.Secrets = creds(t, key+":secret")
		if err := c.Validate(); err != nil {
			t.Errorf("%s with its signing secret: %v", key, err)
		}
	}
	c := base
	c.Secrets, c.SharedKeys = creds(t, "facebook/page:secret"), assign(t, "facebook/page=shared")
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "CCRELAY_MESSAGING_TWILIO_SHARED_KEYS") {
		t.Errorf("a SharedKey for a facebook service: %v", err)
	}
	c.Secrets, c.SharedKeys = nil, assign(t, "twilio/us=shared")
	if err := c.Validate(); err == nil {
		t.Error("a twilio SharedKey without the auth token accepted")
	}
}

// TestUnguardedRefusedAtRunTime: an adapter built with such a service
// anyway (no Validate on the way) refuses its requests, with and without
// credentials of any kind, and stores nothing.
func TestUnguardedRefusedAtRunTime(t *testing.T) {
	r := serve(t, messaging.Config{Secrets: creds(t, "social365/x:s1,c4semail/x:s2,wavy/x:s3,sap365/x:s4")}, nil)
	for _, typ := range []string{messages.MessagingSocial365, messages.MessagingC4SEmail, messages.MessagingWavy, messages.MessagingSAP365} {
		for name, h := range map[string]http.Header{
			"no credentials": {"Content-Type": {"application/json"}},
			"an API key":     {"Content-Type": {"application/json"}, "X-Api-Key": {"anything"}},
			"basic":          {"Content-Type": {"application/json"}, "Authorization": {"Basic dTpw"}},
		} {
			if a := r.post(t, "/v1/messaging/"+typ+"/x", h, `{"text":"hello"}`); a.status != http.StatusUnauthorized {
				t.Errorf("%s with %s: %d %s", typ, name, a.status, a.msg)
			}
		}
	}
	if n := r.stored(t); n != 0 {
		t.Errorf("%d events stored for services nothing guards", n)
	}
}

// TestUnguardedRefusedAsConfigured: a request to a service that is not
// configured is answered exactly as a configured one of its type answers
// wrong credentials: status, code, message and challenge, so a caller
// cannot tell which services exist.
func TestUnguardedRefusedAsConfigured(t *testing.T) {
	r := serve(t, messaging.Config{
		PublicURL:  "https://relay.example.com",
		Secrets:    creds(t, "twilio/us:tw-token,facebook/page:fb-secret,sinchsms/signed:sms-secret"),
		BasicUsers: assign(t, "wavy/br=user:password,sinchsms/basic=user:password,c4semail/m=user:password"),
		APIKeys:    assign(t, "social365/hub=key,sap365/s=key"),
	}, nil)
	twilioForm := url.Values{"MessageSid": {"SM0123456789abcdef0123456789abcdef"}, "From": {"+14155550100"}}.Encode()
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "X-Twilio-Signature": {signature.TwilioSign("wrong-token", "https://relay.example.com/v1/messaging/twilio/us", nil)}}
	hub := http.Header{"Content-Type": {"application/json"}, "X-Hub-Signature-256": {signature.HubSign("wrong", []byte(`{}`))}}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	sms := http.Header{"Content-Type": {"application/json"},
		signature.SinchHeaderSignature: {signature.SinchSign("wrong", []byte(`{}`), "n", ts)},
		signature.SinchHeaderNonce:     {"n"}, signature.SinchHeaderTimestamp: {ts}}
	wrongBasic := http.Header{"Content-Type": {"application/json"}, "Authorization": {"Basic dXNlcjp3cm9uZw=="}}
	wrongKey := http.Header{"Content-Type": {"application/json"}, "X-Api-Key": {"wrong"}}
	for _, c := range []struct {
		known, unknown string
		h              http.Header
		body           string
	}{
		{"/v1/messaging/twilio/us", "/v1/messaging/twilio/nosuch", form, twilioForm},
		{"/v1/messaging/facebook/page", "/v1/messaging/facebook/nosuch", hub, `{}`},
		{"/v1/messaging/sinchsms/signed", "/v1/messaging/sinchsms/nosuch", sms, `{}`},
		{"/v1/messaging/sinchsms/basic", "/v1/messaging/sinchsms/nosuch", wrongBasic, `{}`},
		{"/v1/messaging/wavy/br", "/v1/messaging/wavy/nosuch", wrongBasic, `{}`},
		{"/v1/messaging/c4semail/m", "/v1/messaging/c4semail/nosuch", wrongBasic, `{}`},
		{"/v1/messaging/social365/hub", "/v1/messaging/social365/nosuch", wrongKey, `{}`},
		{"/v1/messaging/sap365/s", "/v1/messaging/sap365/nosuch", wrongKey, `{}`},
	} {
		k, u := r.post(t, c.known, c.h, c.body), r.post(t, c.unknown, c.h, c.body)
		if k.status != http.StatusUnauthorized || k.status != u.status || k.code != u.code || k.msg != u.msg || !slices.Equal(k.challenge, u.challenge) {
			t.Errorf("%s answers %d %s %q %q, %s %d %s %q %q", c.known, k.status, k.code, k.msg, k.challenge, c.unknown, u.status, u.code, u.msg, u.challenge)
		}
	}
}

// TestTwilioPorts: Twilio webhooks to ccrelay on a non-default HTTPS port
// verify whichever way CCRELAY_PUBLIC_URL is written, as Twilio's SDKs
// accept them: Twilio signs the URL with or without the port.
func TestTwilioPorts(t *testing.T) {
	const token = "tw-token"
	path := "/v1/messaging/twilio/us"
	for _, c := range []struct{ public, signed string }{
		{"https://relay.example.com:8443", "https://relay.example.com:8443" + path},
		{"https://relay.example.com:8443", "https://relay.example.com" + path},
		{"https://relay.example.com", "https://relay.example.com:443" + path},
		{"https://relay.example.com:443", "https://relay.example.com" + path},
	} {
		r := serve(t, messaging.Config{PublicURL: c.public, Secrets: creds(t, "twilio/us:"+token)}, nil)
		form := url.Values{"MessageSid": {"SM0123456789abcdef0123456789abcdef"}, "From": {"+14155550100"}, "Body": {"hi"}}
		h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "X-Twilio-Signature": {signature.TwilioSign(token, c.signed, form)}}
		if a := r.post(t, path, h, form.Encode()); a.status != http.StatusAccepted {
			t.Errorf("CCRELAY_PUBLIC_URL %s, signed over %s: %d %s", c.public, c.signed, a.status, a.msg)
		}
	}
}

// TestTwilioMergedParametersRefused: a captured webhook whose MessageSid
// is merged with the next parameter keeps its signature; it is refused 400
// naming the field, not stored as a new message.
func TestTwilioMergedParametersRefused(t *testing.T) {
	const token, public = "tw-token", "https://relay.example.com"
	path := "/v1/messaging/twilio/us"
	r := serve(t, messaging.Config{PublicURL: public, Secrets: creds(t, "twilio/us:"+token)}, nil)
	const sid = "SMbe794ce78f6b9fdf853d2acb76c080db"
	original := url.Values{"MessageSid": {sid}, "NumMedia": {"0"}, "From": {"+14155550100"}, "Body": {"hi"}}
	sig := signature.TwilioSign(token, public+path, original)
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "X-Twilio-Signature": {sig}}
	if a := r.post(t, path, h, original.Encode()); a.status != http.StatusAccepted {
		t.Fatalf("the original: %d %s", a.status, a.msg)
	}
	merged := url.Values{"MessageSid": {sid + "NumMedia0"}, "From": {"+14155550100"}, "Body": {"hi"}}
	a := r.post(t, path, h, merged.Encode())
	if a.status != http.StatusBadRequest || a.code != ingest.CodeInvalidPayload || !strings.Contains(a.msg, "MessageSid") {
		t.Errorf("merged: %d %s %q, want 400 invalid_payload naming MessageSid", a.status, a.code, a.msg)
	}
	if n := r.stored(t); n != 1 {
		t.Errorf("%d events stored, want the original only", n)
	}
}

// TestTwilioSharedKeyOverHTTP: a webhook a Twilio Webhook Setting signed
// with a SharedKey (HMAC_SHA256) is taken with the configured secret, and
// refused where none is configured.
func TestTwilioSharedKeyOverHTTP(t *testing.T) {
	const public = "https://relay.example.com"
	r := serve(t, messaging.Config{PublicURL: public, Secrets: creds(t, "twilio/us:tw-token,twilio/eu:tw-token"), SharedKeys: assign(t, "twilio/us=shared-secret")}, nil)
	for _, c := range []struct {
		service string
		want    int
	}{{"us", http.StatusAccepted}, {"eu", http.StatusUnauthorized}} {
		path := "/v1/messaging/twilio/" + c.service
		form := url.Values{"MessageSid": {"SM0123456789abcdef0123456789abcdef"}, "From": {"+14155550100"}}
		h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"},
			signature.HeaderTwilioSignatureSettings: {"key=KS0123456789abcdef0123456789abcdef,algorithm=HMAC_SHA256"},
			"X-Twilio-Signature":                    {signature.TwilioSignWith(signature.TwilioHMACSHA256, "shared-secret", public+path, form)}}
		if a := r.post(t, path, h, form.Encode()); a.status != c.want {
			t.Errorf("%s: %d %s, want %d", c.service, a.status, a.msg, c.want)
		}
	}
}

// TestPasswordsSlowedDown: wrong basic passwords and API keys from one
// address are answered 429 with Retry-After after the burst, unknown
// services alike; another address is not slowed down.
func TestPasswordsSlowedDown(t *testing.T) {
	var proxies auth.Proxies
	_ = proxies.UnmarshalText([]byte("loopback")) // the test client's peer
	th, err := auth.NewThrottle(auth.ThrottleConfig{Burst: 3, Interval: time.Hour, TrustedProxies: proxies}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := serve(t, messaging.Config{BasicUsers: assign(t, "wavy/br=user:password"), APIKeys: assign(t, "social365/hub=key")}, th)
	from := func(addr, authorization string) http.Header {
		return http.Header{"Content-Type": {"application/json"}, "Authorization": {authorization}, "X-Forwarded-For": {addr}}
	}
	const wrong, good = "Basic dXNlcjp3cm9uZw==", "Basic dXNlcjpwYXNzd29yZA=="
	for i, path := range []string{"/v1/messaging/wavy/br", "/v1/messaging/wavy/nosuch", "/v1/messaging/social365/hub"} {
		if a := r.post(t, path, from("198.51.100.1", wrong), `{}`); a.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, a.status)
		}
	}
	for _, path := range []string{"/v1/messaging/wavy/br", "/v1/messaging/wavy/nosuch"} {
		if a := r.post(t, path, from("198.51.100.1", good), `{}`); a.status != http.StatusTooManyRequests || a.code != ingest.CodeTooManyFailures || a.header.Get("Retry-After") == "" {
			t.Errorf("%s after the burst: %d %s (Retry-After %q)", path, a.status, a.code, a.header.Get("Retry-After"))
		}
	}
	if a := r.post(t, "/v1/messaging/wavy/br", from("198.51.100.2", good), `{}`); a.status != http.StatusAccepted {
		t.Errorf("another address: %d %s", a.status, a.msg)
	}
}

// TestChallengeByTypeOnly: the WWW-Authenticate of a 401 depends on the
// service type alone (and the request), never on whether the service
// exists or which credentials it is configured with: every service of a
// type, configured each way or not at all, challenges the same request
// alike.
func TestChallengeByTypeOnly(t *testing.T) {
	r := serve(t, messaging.Config{
		PublicURL:  "https://relay.example.com",
		Secrets:    creds(t, "sinchsms/signed:sms-secret,sinchsms/both:sms-secret,twilio/us:tw-token,twilio/b:tw-token,facebook/page:fb-secret"),
		BasicUsers: assign(t, "sinchsms/basic=user:password,sinchsms/both=user:password,twilio/b=user:password,wavy/br=user:password"),
		APIKeys:    assign(t, "sinchsms/key=key,wavy/k=key"),
	}, nil)
	services := map[string][]string{
		messages.MessagingSinchSMS: {"signed", "basic", "both", "key", "nosuch"},
		messages.MessagingTwilio:   {"us", "b", "nosuch"},
		messages.MessagingFacebook: {"page", "nosuch"},
		messages.MessagingWavy:     {"br", "k", "nosuch"},
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	requests := map[string]http.Header{
		"no credentials": {"Content-Type": {"application/json"}},
		"a sinch signature": {"Content-Type": {"application/json"},
			signature.SinchHeaderSignature: {signature.SinchSign("wrong", []byte(`{}`), "n", ts)},
			signature.SinchHeaderNonce:     {"n"}, signature.SinchHeaderTimestamp: {ts}},
		"a sinch signature without its nonce": {"Content-Type": {"application/json"},
			signature.SinchHeaderSignature: {signature.SinchSign("wrong", []byte(`{}`), "n", ts)}, signature.SinchHeaderTimestamp: {ts}},
		"wrong basic":        {"Content-Type": {"application/json"}, "Authorization": {"Basic dXNlcjp3cm9uZw=="}},
		"a wrong API key":    {"Content-Type": {"application/json"}, "X-Api-Key": {"wrong"}},
		"a hub signature":    {"Content-Type": {"application/json"}, "X-Hub-Signature-256": {signature.HubSign("wrong", []byte(`{}`))}},
		"a twilio signature": {"Content-Type": {"application/x-www-form-urlencoded"}, "X-Twilio-Signature": {signature.TwilioSign("wrong", "https://relay.example.com/x", nil)}},
	}
	for typ, names := range services {
		for what, h := range requests {
			body := `{}`
			if h.Get("Content-Type") != "application/json" {
				body = "MessageSid=SM0123456789abcdef0123456789abcdef&From=%2B14155550100"
			}
			var first []string
			firstName := ""
			for _, name := range names {
				a := r.post(t, "/v1/messaging/"+typ+"/"+name, h, body)
				if a.status != http.StatusUnauthorized {
					continue
				}
				if len(a.challenge) == 0 {
					t.Errorf("%s/%s with %s: a 401 without a challenge", typ, name, what)
				}
				if firstName == "" {
					first, firstName = a.challenge, name
					continue
				}
				if !slices.Equal(a.challenge, first) {
					t.Errorf("%s with %s: %s/%s challenges %q, %s/%s %q", typ, what, typ, firstName, first, typ, name, a.challenge)
				}
			}
		}
	}
}

// TestHandshakeOneAnswer: Messenger's handshake answers a wrong verify
// token, a service without one and a service that does not exist alike,
// and slows down an address that keeps guessing (429 with Retry-After,
// the right token unchecked); other addresses are not slowed down.
func TestHandshakeOneAnswer(t *testing.T) {
	var proxies auth.Proxies
	_ = proxies.UnmarshalText([]byte("loopback")) // the test client's peer
	th, err := auth.NewThrottle(auth.ThrottleConfig{Burst: 3, Interval: time.Hour, TrustedProxies: proxies}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := messaging.New(messaging.Config{
		Secrets:      creds(t, "facebook/page1:fb-secret,facebook/page2:fb-secret"),
		VerifyTokens: creds(t, "facebook/page1:verify-me"),
	}, messages.DefaultSubjects(), ingest.NewMetrics(prometheus.NewRegistry()), th)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/messaging/{type}/{service}", a.Handshake)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	get := func(addr, service, token string) (int, string, http.Header) {
		t.Helper()
		q := url.Values{"hub.mode": {"subscribe"}, "hub.verify_token": {token}, "hub.challenge": {"1158201444"}}
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/v1/messaging/facebook/"+service+"?"+q.Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Forwarded-For", addr)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	ws, wb, _ := get("198.51.100.1", "page1", "wrong")
	for _, service := range []string{"page2", "nosuch"} {
		if s, b, _ := get("198.51.100.1", service, "wrong"); s != ws || b != wb {
			t.Errorf("a wrong token answers %d %s, %s %d %s", ws, wb, service, s, b)
		}
	}
	if ws != http.StatusForbidden {
		t.Errorf("a wrong token: %d, want 403", ws)
	}
	s, _, h := get("198.51.100.1", "page1", "verify-me")
	if s != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Errorf("the right token after 3 wrong ones from the address: %d (Retry-After %q), want 429 unchecked", s, h.Get("Retry-After"))
	}
	if s, b, _ := get("198.51.100.2", "page1", "verify-me"); s != http.StatusOK || b != "1158201444" {
		t.Errorf("the right token from another address: %d %s", s, b)
	}
}
