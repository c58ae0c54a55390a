package e2e_test

// The findings of issue 22's attack on the binary ("closed by
// construction"), each as a test over real HTTP and a real NATS server:
// a messaging service nothing guards, digest replays, Twilio's ports and
// merged parameters, and refusals that tell configured services apart or
// let guessing run at full speed.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
	"github.com/ccrelay/ccrelay/messages/signature"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// digestAuthInt answers a SHA-256 Digest challenge with qop=auth-int, the
// body covered, as an RFC 7616 client does (§3.4.3), with nonce count nc.
func digestAuthInt(t *testing.T, challenge, method, uri, user, pass string, body []byte, nc int) string {
	t.Helper()
	get := func(name string) string {
		m := regexp.MustCompile(name + `="?([^",]+)"?`).FindStringSubmatch(challenge)
		if m == nil {
			t.Fatalf("challenge %q has no %s", challenge, name)
		}
		return m[1]
	}
	if get("algorithm") != "SHA-256" || !strings.Contains(get("qop"), "auth-int") {
		t.Fatalf("challenge %q offers no SHA-256 auth-int", challenge)
	}
	H := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	realm, nonce := get("realm"), get("nonce")
	count := fmt.Sprintf("%08x", nc)
	ha2 := H([]byte(method + ":" + uri + ":" + H(body)))
	resp := H([]byte(H([]byte(user+":"+realm+":"+pass)) + ":" + nonce + ":" + count + ":0a4f113b:auth-int:" + ha2))
	return fmt.Sprintf(`Digest username="%s", realm="%s", uri="%s", algorithm=SHA-256, nonce="%s", nc=%s, cnonce="0a4f113b", qop=auth-int, response="%s", opaque="%s"`,
		user, realm, uri, nonce, count, resp, get("opaque"))
}

// digestChallenge asks path for a challenge and returns its SHA-256 one.
func digestChallenge(t *testing.T, d *deployment, path string) string {
	t.Helper()
	r := d.post(path, jsonHeader(), []byte("{}"))
	for _, c := range r.header.Values("WWW-Authenticate") {
		if strings.HasPrefix(c, "Digest ") && strings.Contains(c, "SHA-256") {
			return c
		}
	}
	t.Fatalf("no SHA-256 digest challenge: %d %q", r.status, r.header.Values("WWW-Authenticate"))
	return ""
}

// TestClosedConfigurationRefusesOpenService: CCRELAY_MESSAGING_SECRETS
// alone for a type that signs nothing would run the service open; start-up
// refuses it.
func TestClosedConfigurationRefusesOpenService(t *testing.T) {
	for _, key := range []string{"social365/x", "c4semail/x", "wavy/x", "sap365/x"} {
		_, err := config.Load([]string{"CCRELAY_MESSAGING_SECRETS=" + key + ":secret"}, nil)
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s with a secret only: %v", key, err)
		}
	}
}

// TestClosedDigestReplay: one captured Authorization: Digest header is
// accepted once, whatever body it comes with, on any replica: a qop=auth
// one sent again with 3 bodies stores nothing more, and a qop=auth-int one
// is refused with any other body than its own. MD5 is not offered unless
// configured.
func TestClosedDigestReplay(t *testing.T) {
	ns := natstest.Embedded(t)
	d := deploy(t, ns.ClientURL(), 2, "CCRELAY_CONTACTPRO_DIGEST_USERS=cpdigest:digest-password-1")
	const path = "/v1/contactpro/lifecycle/Ended"
	body := func(n int) []byte { return fmt.Appendf(nil, `{"contact_id":"replay-%d"}`, n) }
	ch := digestChallenge(t, d, path)
	if strings.Contains(strings.Join(d.post(path, jsonHeader(), nil).header.Values("WWW-Authenticate"), "\n"), "MD5") {
		t.Error("MD5 is offered without CCRELAY_CONTACTPRO_DIGEST_MD5")
	}
	captured := withHeader(jsonHeader(), "Authorization", digestAnswer(t, ch, http.MethodPost, path, "cpdigest", "digest-password-1"))
	if r := d.post(path, captured, body(0)); r.status != http.StatusAccepted {
		t.Fatalf("the original: %d %s", r.status, r.body)
	}
	before := d.count()
	for i := 1; i <= 3; i++ {
		if r := d.do(i%2, http.MethodPost, path, captured, body(i)); r.status != http.StatusUnauthorized {
			t.Errorf("the captured header with body %d on replica %d: %d %s", i, i%2, r.status, r.body)
		}
	}
	if got := d.count() - before; got != 0 {
		t.Errorf("the replays stored %d events", got)
	}
	// auth-int covers the body: another body is refused even on first use.
	intH := withHeader(jsonHeader(), "Authorization", digestAuthInt(t, ch, http.MethodPost, path, "cpdigest", "digest-password-1", body(10), 2))
	if r := d.post(path, intH, body(11)); r.status != http.StatusUnauthorized {
		t.Errorf("auth-int with another body: %d %s", r.status, r.body)
	}
	intH = withHeader(jsonHeader(), "Authorization", digestAuthInt(t, ch, http.MethodPost, path, "cpdigest", "digest-password-1", body(12), 3))
	if r := d.post(path, intH, body(12)); r.status != http.StatusAccepted {
		t.Errorf("auth-int with its body: %d %s", r.status, r.body)
	}
	if r := d.do(1, http.MethodPost, path, intH, body(12)); r.status != http.StatusUnauthorized {
		t.Errorf("auth-int replayed on the other replica: %d %s", r.status, r.body)
	}
}

// TestClosedDigestPerDeployment: a nonce of one deployment does not open
// another configured with the same digest users.
func TestClosedDigestPerDeployment(t *testing.T) {
	ns := natstest.Embedded(t)
	prod := deploy(t, ns.ClientURL(), 1, "CCRELAY_CONTACTPRO_DIGEST_USERS=cpdigest:digest-password-1")
	staging := deploy(t, natstest.Embedded(t).ClientURL(), 1, "CCRELAY_CONTACTPRO_DIGEST_USERS=cpdigest:digest-password-1")
	const path = "/v1/contactpro/lifecycle/Ended"
	h := withHeader(jsonHeader(), "Authorization", digestAnswer(t, digestChallenge(t, prod, path), http.MethodPost, path, "cpdigest", "digest-password-1"))
	if r := staging.post(path, h, []byte(`{"contact_id":"x"}`)); r.status != http.StatusUnauthorized {
		t.Errorf("prod's nonce on staging: %d %s", r.status, r.body)
	}
}

// TestClosedRefusalsAlike: on every endpoint, a request to a service that
// is not configured and a wrong credential get the same answer: status,
// code, message and challenge; and so do a request without the credential
// to a configured service and to one that is not.
func TestClosedRefusalsAlike(t *testing.T) {
	ns := natstest.Embedded(t)
	d := deploy(t, ns.ClientURL(), 1, contractEnv()...)
	n := 1000
	for _, e := range contractEndpoints() {
		if e.unknown == "" {
			continue
		}
		for _, c := range []struct {
			what   string
			change func(http.Header)
		}{{"a wrong credential", e.spoil}, {"no credential", e.strip}} {
			n++
			h, body := e.valid(t, d, e.path, n)
			c.change(h)
			known := d.post(e.path, h, body)
			h, body = e.valid(t, d, e.path, n+500)
			if c.what == "no credential" {
				c.change(h)
			}
			unknown := d.post(e.unknown, h, body)
			if known.status != http.StatusUnauthorized || known.status != unknown.status || known.code(t) != unknown.code(t) ||
				known.json(t)["message"] != unknown.json(t)["message"] ||
				!slices.Equal(known.header.Values("WWW-Authenticate"), unknown.header.Values("WWW-Authenticate")) {
				t.Errorf("%s: %s answers %d %s %q, an unknown service %d %s %q", e.name, c.what,
					known.status, known.body, known.header.Values("WWW-Authenticate"), unknown.status, unknown.body, unknown.header.Values("WWW-Authenticate"))
			}
		}
	}
}

// TestClosedGuessingSlowedDown: wrong OAuth client secrets, and wrong
// passwords on every endpoint, from one address are answered 429 with
// Retry-After after the burst, unchecked; another address is not slowed
// down, and the metric counts the refusals.
func TestClosedGuessingSlowedDown(t *testing.T) {
	ns := natstest.Embedded(t)
	// The test's client stands for a proxy in front of many addresses.
	d := deploy(t, ns.ClientURL(), 1, "CCRELAY_AUTH_FAILURE_BURST=10", "CCRELAY_AUTH_FAILURE_INTERVAL=1h", "CCRELAY_AUTH_TRUSTED_PROXIES=loopback")
	token := func(from, sec string) response {
		b, h := form(url.Values{"grant_type": {"client_credentials"}, "client_id": {oauthClient}, "client_secret": {sec}})
		h.Set("X-Forwarded-For", from)
		return d.post("/oauth/token", h, b)
	}
	throttled := 0
	for i := range 1000 {
		switch r := token("198.51.100.1", fmt.Sprintf("guess-%d", i)); {
		case i < 10 && r.status != http.StatusUnauthorized:
			t.Fatalf("guess %d: %d %s", i+1, r.status, r.body)
		case i >= 10 && (r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == ""):
			t.Fatalf("guess %d: %d %s", i+1, r.status, r.body)
		case r.status == http.StatusTooManyRequests:
			throttled++
		}
	}
	if r := token("198.51.100.2", oauthSecret); r.status != http.StatusOK {
		t.Errorf("the right secret from another address: %d %s", r.status, r.body)
	}
	// The same address is slowed down on the other endpoints too.
	h := withHeader(jsonHeader(), "X-Forwarded-For", "198.51.100.1")
	h.Set("x-api-key", cpAPIKey)
	if r := d.post("/v1/contactpro/chat-attachments/Ended", h, chatAttachments("slowed")); r.status != http.StatusTooManyRequests || r.code(t) != "too_many_failures" {
		t.Errorf("contact pro from the throttled address: %d %s", r.status, r.body)
	}
	if got := d.metric("ccrelay_auth_throttled_total", map[string]string{"endpoint": "oauth"}); got != float64(throttled) {
		t.Errorf("ccrelay_auth_throttled_total{endpoint=oauth} = %v, want %d", got, throttled)
	}
}

// TestClosedTwilioPortAndMerge: a Twilio webhook to a non-default HTTPS
// port verifies when Twilio signed the URL without the port (as its SDKs
// accept), and a captured one with MessageSid merged into the next
// parameter is refused 400 naming the field, not relayed twice.
func TestClosedTwilioPortAndMerge(t *testing.T) {
	ns := natstest.Embedded(t)
	const public = "https://relay.example.com:8443"
	d := deploy(t, ns.ClientURL(), 1, "CCRELAY_PUBLIC_URL="+public, "CCRELAY_MESSAGING_SECRETS=twilio/us:"+twilioToken)
	const path = "/v1/messaging/twilio/us"
	const sid = "SMbe794ce78f6b9fdf853d2acb76c080db"
	original := url.Values{"MessageSid": {sid}, "NumMedia": {"0"}, "From": {"+14155550100"}, "Body": {"hi"}}
	b, h := form(original)
	h.Set(signature.HeaderTwilioSignature, signature.TwilioSign(twilioToken, "https://relay.example.com"+path, original))
	if r := d.post(path, h, b); r.status != http.StatusAccepted {
		t.Fatalf("signed without the port: %d %s", r.status, r.body)
	}
	merged := url.Values{"MessageSid": {sid + "NumMedia0"}, "From": {"+14155550100"}, "Body": {"hi"}}
	mb, _ := form(merged)
	before := d.count()
	if r := d.post(path, h, mb); r.status != http.StatusBadRequest || !strings.Contains(r.json(t)["message"].(string), "MessageSid") {
		t.Errorf("merged parameters: %d %s, want 400 naming MessageSid", r.status, r.body)
	}
	if d.count() != before {
		t.Error("the merged webhook was stored")
	}
}
