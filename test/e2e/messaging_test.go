package e2e_test

import (
	"bytes"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/signature"
	"github.com/ccrelay/ccrelay/test/sinchtest"
)

// Credentials of the messaging services of a test deployment.
const (
	twilioToken    = "twilio-auth-token-1"
	fbAppSecret    = "messenger-app-secret-1"
	fbVerifyToken  = "messenger-verify-token-1"
	smsSecret      = "sinch-sms-signing-secret-1"
	wavyPassword   = "wavy-basic-password-1"
	social365Key   = "social365-api-key-1"
	publicURL      = "https://relay.example.com"
	messagingFixes = "../../messages/testdata/messaging"
)

func messagingEnv() []string {
	return []string{
		"CCRELAY_PUBLIC_URL=" + publicURL,
		"CCRELAY_MESSAGING_SECRETS=twilio/us:" + twilioToken + ",facebook/page1:" + fbAppSecret + ",sinchsms/eu:" + smsSecret,
		"CCRELAY_MESSAGING_VERIFY_TOKENS=facebook/page1:" + fbVerifyToken,
		"CCRELAY_MESSAGING_BASIC_USERS=wavy/br=wavyuser:" + wavyPassword + ",sinchsms/basic=smsuser:" + wavyPassword,
		"CCRELAY_MESSAGING_API_KEYS=social365/hub=" + social365Key,
	}
}

func messagingFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(messagingFixes, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// twilioHeaders signs a form body the way Twilio does for a request to
// ccrelay's public URL and path.
func twilioHeaders(t testing.TB, path string, body []byte) http.Header {
	t.Helper()
	form, err := url.ParseQuery(string(body))
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	h.Set(signature.HeaderTwilioSignature, signature.TwilioSign(twilioToken, publicURL+path, form))
	return h
}

func hubHeaders(body []byte) http.Header {
	h := jsonHeader()
	h.Set(signature.HeaderHubSignature256, signature.HubSign(fbAppSecret, body))
	h.Set(signature.HeaderHubSignature, "sha1=0123456789abcdef0123456789abcdef01234567")
	return h
}

func basicJSON(user, password string) http.Header {
	h := jsonHeader()
	h.Set("Authorization", basic(user, password))
	return h
}

func messagingSuite(t *testing.T, natsURL string) {
	d := deploy(t, natsURL, 1, messagingEnv()...)
	before := d.count()
	checkStored := func(t *testing.T, r response, body []byte, typ, service, contentType string, kept map[string]string) {
		t.Helper()
		if r.status != http.StatusAccepted {
			t.Fatalf("status %d %s", r.status, r.body)
		}
		msg := d.stored(r)
		a, err := d.subjects.Parse(msg.Subject)
		if err != nil || a.Source != messages.SourceMessaging || a.Kind != typ || a.Name != service || a.Partition == "" {
			t.Errorf("subject %s: %+v %v", msg.Subject, a, err)
		}
		if !bytes.Equal(msg.Data, body) {
			t.Errorf("body not stored byte for byte")
		}
		if got := msg.Header.Get("Content-Type"); got != contentType {
			t.Errorf("Content-Type %q, want %q", got, contentType)
		}
		for k, v := range kept {
			if got := msg.Header.Get(k); got != v {
				t.Errorf("kept header %s = %q, want %q", k, got, v)
			}
		}
	}

	t.Run("twilio", func(t *testing.T) {
		const path = "/v1/messaging/twilio/us"
		for _, f := range []string{"twilio_inbound.form", "twilio_status_delivered.form", "twilio_whatsapp_media_empty_body.form"} {
			body := messagingFixture(t, f)
			h := twilioHeaders(t, path, body)
			// The Host the request names is not what Twilio signed: the
			// configured public URL is.
			h.Set("X-Forwarded-Host", "evil.example")
			r := d.post(path, h, body)
			checkStored(t, r, body, "twilio", "us", messages.ContentTypeForm, map[string]string{signature.HeaderTwilioSignature: h.Get(signature.HeaderTwilioSignature)})
			if again := d.post(path, h, body); again.status != http.StatusOK || again.header.Get("Ccrelay-Duplicate") != "true" {
				t.Errorf("%s resent: status %d, duplicate %q", f, again.status, again.header.Get("Ccrelay-Duplicate"))
			}
		}
		body := messagingFixture(t, "twilio_inbound.form")
		n := d.count()
		wrongURL := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
		form, _ := url.ParseQuery(string(body))
		wrongURL.Set(signature.HeaderTwilioSignature, signature.TwilioSign(twilioToken, d.urls[0]+path, form))
		asJSON := twilioHeaders(t, path, body)
		asJSON.Set("Content-Type", "application/json")
		for name, c := range map[string]struct {
			h      http.Header
			status int
		}{
			"signed over the request's own URL": {wrongURL, http.StatusUnauthorized},
			"no signature":                      {http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, http.StatusUnauthorized},
			"json content type":                 {asJSON, http.StatusUnsupportedMediaType},
		} {
			if r := d.post(path, c.h, body); r.status != c.status {
				t.Errorf("%s: status %d, want %d: %s", name, r.status, c.status, r.body)
			}
		}
		if d.count() != n {
			t.Errorf("refused requests stored events")
		}
	})

	t.Run("facebook", func(t *testing.T) {
		const path = "/v1/messaging/facebook/page1"
		for _, f := range []string{"messenger_message.json", "messenger_delivery.json", "messenger_read.json", "messenger_echo.json", "messenger_batched.json"} {
			body := messagingFixture(t, f)
			h := hubHeaders(body)
			r := d.post(path, h, body)
			if f == "messenger_echo.json" {
				// The echo carries the message's own mid: one event.
				if r.status != http.StatusOK {
					t.Errorf("echo of a stored mid: status %d", r.status)
				}
				continue
			}
			checkStored(t, r, body, "facebook", "page1", messages.ContentTypeJSON, map[string]string{
				signature.HeaderHubSignature256: h.Get(signature.HeaderHubSignature256),
				signature.HeaderHubSignature:    h.Get(signature.HeaderHubSignature),
			})
		}
		body := messagingFixture(t, "messenger_postback.json")
		h := hubHeaders(body)
		h.Set(signature.HeaderHubSignature256, signature.HubSign("not-the-secret", body))
		if r := d.post(path, h, body); r.status != http.StatusUnauthorized {
			t.Errorf("wrong secret: status %d", r.status)
		}
		// The verification handshake.
		for _, c := range []struct {
			query  string
			status int
			body   string
		}{
			{"hub.mode=subscribe&hub.verify_token=" + fbVerifyToken + "&hub.challenge=1158201444", http.StatusOK, "1158201444"},
			{"hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1158201444", http.StatusForbidden, ""},
			{"hub.mode=unsubscribe&hub.verify_token=" + fbVerifyToken + "&hub.challenge=1", http.StatusForbidden, ""},
			{"hub.mode=subscribe&hub.verify_token=" + fbVerifyToken + "&hub.challenge=%3Cscript%3E%20x", http.StatusBadRequest, ""},
			{"hub.mode=subscribe&hub.verify_token=" + fbVerifyToken + "&hub.challenge=" + strings.Repeat("9", 200), http.StatusBadRequest, ""},
		} {
			r := d.do(0, http.MethodGet, path+"?"+c.query, nil, nil)
			if r.status != c.status || (c.body != "" && string(r.body) != c.body) {
				t.Errorf("GET ?%.60s: status %d %q, want %d %q", c.query, r.status, r.body, c.status, c.body)
			}
		}
		if r := d.do(0, http.MethodGet, "/v1/messaging/twilio/us?hub.mode=subscribe", nil, nil); r.status != http.StatusMethodNotAllowed {
			t.Errorf("GET on twilio: status %d", r.status)
		}
	})

	t.Run("sinchsms", func(t *testing.T) {
		body := messagingFixture(t, "sinchsms_mo_text.json")
		signer := &sinchtest.Signer{Secret: smsSecret}
		checkStored(t, d.post("/v1/messaging/sinchsms/eu", signer.Headers(body, time.Now()), body), body, "sinchsms", "eu", messages.ContentTypeJSON, nil)
		if r := d.post("/v1/messaging/sinchsms/eu", signer.Headers(body, time.Now().Add(-time.Hour)), body); r.status != http.StatusUnauthorized || r.code(t) != "unauthorized" {
			t.Errorf("stale: status %d %s", r.status, r.body)
		}
		dr := messagingFixture(t, "sinchsms_recipient_delivery_report.json")
		checkStored(t, d.post("/v1/messaging/sinchsms/basic", basicJSON("smsuser", wavyPassword), dr), dr, "sinchsms", "basic", messages.ContentTypeJSON, nil)
		if r := d.post("/v1/messaging/sinchsms/basic", basicJSON("smsuser", "wrong"), dr); r.status != http.StatusUnauthorized {
			t.Errorf("wrong basic password: status %d", r.status)
		}
	})

	t.Run("services without a public signature", func(t *testing.T) {
		body := []byte(`{"from":"+5511999999999","text":"oi"}`)
		checkStored(t, d.post("/v1/messaging/wavy/br", basicJSON("wavyuser", wavyPassword), body), body, "wavy", "br", messages.ContentTypeJSON, nil)
		h := jsonHeader()
		h.Set("x-api-key", social365Key)
		checkStored(t, d.post("/v1/messaging/social365/hub", h, body), body, "social365", "hub", messages.ContentTypeJSON, nil)
		for name, c := range map[string]struct {
			path   string
			h      http.Header
			status int
		}{
			"no basic credentials":     {"/v1/messaging/wavy/br", jsonHeader(), http.StatusUnauthorized},
			"another service's user":   {"/v1/messaging/wavy/other", basicJSON("wavyuser", wavyPassword), http.StatusUnauthorized},
			"no api key":               {"/v1/messaging/social365/hub", jsonHeader(), http.StatusUnauthorized},
			"sinch conversation type":  {"/v1/messaging/sinchconversation/eu", jsonHeader(), http.StatusNotFound},
			"unknown type":             {"/v1/messaging/telegram/x", jsonHeader(), http.StatusNotFound},
			"oversized service":        {"/v1/messaging/wavy/" + strings.Repeat("b", 300), basicJSON("wavyuser", wavyPassword), http.StatusUnauthorized},
			"a service on another key": {"/v1/messaging/wavy/hub", basicJSON("wavyuser", wavyPassword), http.StatusUnauthorized},
		} {
			if r := d.post(c.path, c.h, body); r.status != c.status {
				t.Errorf("%s: status %d, want %d: %s", name, r.status, c.status, r.body)
			}
		}
	})

	t.Run("hostile ids are refused and change nothing", func(t *testing.T) {
		n := d.count()
		long := strings.Repeat("S", 5000)
		form := []byte("MessageSid=" + long + "&From=%2B1")
		if r := d.post("/v1/messaging/twilio/us", twilioHeaders(t, "/v1/messaging/twilio/us", form), form); r.status != http.StatusBadRequest {
			t.Errorf("oversized MessageSid: status %d %s", r.status, r.body)
		}
		fb := []byte(`{"object":"page","entry":[{"id":"P","messaging":[{"sender":{"id":"` + long + `"},"recipient":{"id":"P"},"message":{"mid":"m"}}]}]}`)
		if r := d.post("/v1/messaging/facebook/page1", hubHeaders(fb), fb); r.status != http.StatusBadRequest {
			t.Errorf("oversized sender id: status %d %s", r.status, r.body)
		}
		if d.count() != n {
			t.Errorf("refused requests stored events")
		}
		// The replica still takes webhooks.
		body := []byte(`{"type":"mo_text","id":"01AFTERHOSTILE","from":"+1","to":"2","body":"x"}`)
		if r := d.post("/v1/messaging/sinchsms/eu", (&sinchtest.Signer{Secret: smsSecret}).Headers(body, time.Now()), body); r.status != http.StatusAccepted {
			t.Errorf("after hostile requests: status %d %s", r.status, r.body)
		}
	})
	if d.count() <= before {
		t.Error("nothing stored")
	}
}
