package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/test/fakes/c4cfake"
	"github.com/ccrelay/ccrelay/test/fakes/cmifake"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// attacker is a listener on loopback that records every request that
// reaches it. Every attack below must leave it with none.
type attacker struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string
}

func newAttacker(t *testing.T) *attacker {
	a := &attacker{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.seen = append(a.seen, fmt.Sprintf("%s %s auth=%q key=%q", r.Method, r.URL, r.Header.Get("Authorization"), r.Header.Get("x-api-key")))
		a.mu.Unlock()
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"id":"x","direct":false,"queueAddress":"APP@whatsapp.sinchconversation.com"}`))
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *attacker) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

func (a *attacker) host() string {
	u, _ := url.Parse(a.URL)
	return u.Hostname()
}

// TestOutboundAttacks: what a caller (with Contact Pro or Sinch
// credentials, or with NATS access alone) names as a destination never
// receives the tenant's configured CMI or C4C credentials, a request to a
// private address, or a redirect with credentials. Each attack runs with
// the production defaults and again with the attacker's host allow-listed
// and private networks allowed, to show the credential binding holds on
// its own; each ends in a dead letter that says why.
func TestOutboundAttacks(t *testing.T) {
	ns := natstest.Embedded(t)
	sap := c4cfake.New(t, c4cUser, c4cPassword)
	cmi := cmifake.New(t, cmiUser, cmiPassword, cmiAPIKey)
	evil := newAttacker(t)

	configured := []string{
		"CCRELAY_C4C_URL=" + sap.URL, "CCRELAY_C4C_USER=" + c4cUser, "CCRELAY_C4C_PASSWORD=" + c4cPassword,
		"CCRELAY_CMI_URL=" + cmi.CMIURL(), "CCRELAY_CMI_USER=" + cmiUser, "CCRELAY_CMI_PASSWORD=" + cmiPassword, "CCRELAY_CMI_API_KEY=" + cmiAPIKey,
		"CCRELAY_PROCESS_BACKOFF=50ms", "CCRELAY_PROCESS_ACK_WAIT=2s", "CCRELAY_PROCESS_MAX_DELIVER=3",
	}
	variants := map[string][]string{
		"defaults": nil,
		"attacker allow-listed, private networks allowed": {"CCRELAY_CMI_ALLOWED_HOSTS=" + evil.host(), "CCRELAY_C4C_ALLOWED_HOSTS=" + evil.host(),
			"CCRELAY_MEDIA_ALLOWED_HOSTS=" + evil.host(), "CCRELAY_ALLOW_PRIVATE_NETWORKS=true"},
	}
	for vname, extra := range variants {
		defaults := extra == nil
		t.Run(vname, func(t *testing.T) {
			d := deploy(t, ns.ClientURL(), 1, append(append([]string{}, configured...), extra...)...)
			d.startProcessors("attachments")
			cp := jsonHeader()
			cp.Set("x-api-key", cpAPIKey)
			attacks := []struct {
				name string
				// send stores the attack; it returns the subject whose
				// dead letter to expect.
				send func(t *testing.T) string
				// reason is what the dead letter must say (any of them).
				reason []string
				// defaultsOnly: with the host allow-listed the request is
				// legitimate (media requests carry no credentials).
				defaultsOnly bool
			}{
				{"a call names its own cmi_url and brings no credentials", func(t *testing.T) string {
					b := fmt.Appendf(nil, `{"cmi_url":%q,"cmi_user":"x","contact_id":"atk-1"}`, evil.URL+"/cmi")
					return mustStore(t, d, "/v1/contactpro/chat-attachments/Ended", cp, b)
				}, []string{"brings no credentials", "not in CCRELAY_CMI_ALLOWED_HOSTS", "must be https"}, false},
				{"a call names its own sap_v1.url and brings no password", func(t *testing.T) string {
					b := fmt.Appendf(nil, `{"sap_v1":{"url":%q,"user":"v1user"},"contact_id":"atk-2"}`, evil.URL)
					return mustStore(t, d, "/v1/contactpro/chat-attachments/Ended", cp, b)
				}, []string{"brings no credentials", "not in CCRELAY_C4C_ALLOWED_HOSTS", "must be https"}, false},
				{"NATS access alone: a bare body naming the attacker, published by hand", func(t *testing.T) string {
					b := fmt.Appendf(nil, `{"cmi_url":%q,"sap_v1":{"url":%q,"user":"u"},"contact_id":"atk-3"}`, evil.URL, evil.URL)
					subject := d.subjects.ContactPro("chat-attachments", "closed")
					republishBody(t, d, subject, b)
					return subject
				}, []string{"brings no credentials", "not in CCRELAY_CMI_ALLOWED_HOSTS", "must be https"}, false},
				{"sealed credentials copied onto a forged body naming the attacker", func(t *testing.T) string {
					// A genuine call with the customer's own credentials...
					real := chatAttachments("atk-4")
					h := jsonHeader()
					h.Set("x-api-key", cpAPIKey)
					h.Set("x-cmi-password", cmiPassword)
					h.Set("x-cmi-api-key", cmiAPIKey)
					h.Set("x-sap-v1-password", c4cPassword)
					r := d.post("/v1/contactpro/chat-attachments/Received", h, real)
					if r.status != http.StatusAccepted {
						t.Fatalf("genuine call: %d %s", r.status, r.body)
					}
					sealed := d.stored(r).Header.Get(messages.HeaderSealed)
					// ...its sealed header on a body of the attacker's.
					forged := fmt.Appendf(nil, `{"cmi_url":%q,"cmi_user":%q,"sap_v1":{"url":%q,"user":%q},"contact_id":"atk-4"}`, evil.URL, cmiUser, evil.URL, c4cUser)
					subject := d.subjects.ContactPro("chat-attachments", "ended")
					msg := &nats.Msg{Subject: subject, Data: forged, Header: nats.Header{}}
					msg.Header.Set(messages.HeaderSealed, sealed)
					msg.Header.Set(messages.HeaderID, "forged-atk-4")
					if _, err := d.js.PublishMsg(context.Background(), msg); err != nil {
						t.Fatal(err)
					}
					return subject
				}, []string{"open sealed credentials"}, false},
				{"sealed credentials and ce-id of a genuine call on its body edited to name another chat", func(t *testing.T) string {
					// A genuine call with the customer's own credentials for
					// the configured CMI and C4C...
					real := fmt.Appendf(nil, `{"cmi_url":%q,"cmi_user":%q,"sap_v1":{"url":%q,"user":%q},"contact_id":"atk-6"}`, cmi.CMIURL(), cmiUser, sap.URL, c4cUser)
					h := jsonHeader()
					h.Set("x-api-key", cpAPIKey)
					h.Set("x-cmi-password", cmiPassword)
					h.Set("x-cmi-api-key", cmiAPIKey)
					h.Set("x-sap-v1-password", c4cPassword)
					r := d.post("/v1/contactpro/chat-attachments/Received", h, real)
					if r.status != http.StatusAccepted {
						t.Fatalf("genuine call: %d %s", r.status, r.body)
					}
					stored := d.stored(r)
					// ...its ce-id and sealed header on the same body naming
					// another customer's chat: same URLs, same users.
					forged := bytes.Replace(real, []byte(`"atk-6"`), []byte(`"victim-6"`), 1)
					subject := d.subjects.ContactPro("chat-attachments", "ended")
					msg := &nats.Msg{Subject: subject, Data: forged, Header: nats.Header{}}
					msg.Header.Set(messages.HeaderSealed, stored.Header.Get(messages.HeaderSealed))
					msg.Header.Set(messages.HeaderID, stored.Header.Get(messages.HeaderID))
					if _, err := d.js.PublishMsg(context.Background(), msg); err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() {
						for _, req := range cmi.Requests() {
							if strings.Contains(req.Path+"?"+req.Query, "victim-6") {
								t.Errorf("CMI was asked for the other chat with the call's credentials: %s?%s", req.Path, req.Query)
							}
						}
					})
					return subject
				}, []string{"open sealed credentials"}, false},
				{"a Sinch media URL on a private address", func(t *testing.T) string {
					b := mediaInboundAt("01ATTACKMEDIA1", evil.URL+"/x.jpg")
					if r := d.post("/v1/sinch/svc1", signed(sinchSecret, b, timeNow()), b); r.status != http.StatusAccepted {
						t.Fatalf("inbound: %d %s", r.status, r.body)
					}
					return d.subjects.Sinch("MESSAGE_INBOUND", "svc1", appID, "00")
				}, []string{"must be https", "not a public address"}, true},
				{"a Sinch media URL at the cloud metadata address", func(t *testing.T) string {
					b := mediaInboundAt("01ATTACKMEDIA2", "https://169.254.169.254/latest/meta-data/iam/x.jpg")
					if r := d.post("/v1/sinch/svc1", signed(sinchSecret, b, timeNow()), b); r.status != http.StatusAccepted {
						t.Fatalf("inbound: %d %s", r.status, r.body)
					}
					return d.subjects.Sinch("MESSAGE_INBOUND", "svc1", appID, "00")
				}, []string{"not a public address", "not in CCRELAY_MEDIA_ALLOWED_HOSTS"}, true},
			}
			for _, a := range attacks {
				if a.defaultsOnly && !defaults {
					continue
				}
				t.Run(a.name, func(t *testing.T) {
					before := d.processed("attachments", "dead_lettered")
					a.send(t)
					eventually(t, "a dead letter", func() bool { return d.processed("attachments", "dead_lettered") > before })
					dls := listDLQ(t, d)
					dl := dls[len(dls)-1]
					ok := false
					for _, r := range a.reason {
						ok = ok || strings.Contains(dl.Error, r)
					}
					if !ok {
						t.Errorf("dead letter says %q, want one of %q", dl.Error, a.reason)
					}
					if got := evil.requests(); len(got) != 0 {
						t.Fatalf("the attacker received %v", got)
					}
				})
			}
		})
	}

	// A configured CMI that redirects to another host: the redirect is not
	// followed, so the configured CMI password and API key stay home.
	t.Run("the configured CMI redirects elsewhere", func(t *testing.T) {
		away := newAttacker(t)
		redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, away.URL+"/steal"+r.URL.Path, http.StatusFound)
		}))
		t.Cleanup(redirecting.Close)
		d := deploy(t, ns.ClientURL(), 1, "CCRELAY_C4C_URL="+sap.URL, "CCRELAY_C4C_USER="+c4cUser, "CCRELAY_C4C_PASSWORD="+c4cPassword,
			"CCRELAY_CMI_URL="+redirecting.URL+"/cmi", "CCRELAY_CMI_USER="+cmiUser, "CCRELAY_CMI_PASSWORD="+cmiPassword, "CCRELAY_CMI_API_KEY="+cmiAPIKey,
			"CCRELAY_ALLOW_PRIVATE_NETWORKS=true", "CCRELAY_PROCESS_BACKOFF=50ms", "CCRELAY_PROCESS_MAX_DELIVER=2")
		d.startProcessors("attachments")
		cp := jsonHeader()
		cp.Set("x-api-key", cpAPIKey)
		mustStore(t, d, "/v1/contactpro/chat-attachments/Ended", cp, []byte(`{"contact_id":"atk-5"}`))
		eventually(t, "given up", func() bool { return d.processed("attachments", "dead_lettered") >= 1 })
		if got := away.requests(); len(got) != 0 {
			t.Fatalf("the redirect was followed: %v", got)
		}
	})
}

func mustStore(t *testing.T, d *deployment, path string, h http.Header, body []byte) string {
	t.Helper()
	r := d.post(path, h, body)
	if r.status != http.StatusAccepted {
		t.Fatalf("%s: %d %s", path, r.status, r.body)
	}
	return d.stored(r).Subject
}

func mediaInboundAt(msgID, mediaURL string) []byte {
	return fmt.Appendf(nil, `{"app_id":%q,"project_id":"p","event_time":"2026-11-21T10:00:00Z","message":{"id":%q,"direction":"TO_APP",
"contact_message":{"media_message":{"url":%q}},"channel_identity":{"channel":"WHATSAPP","identity":"46732000000","app_id":%q}}}`,
		appID, msgID, mediaURL, appID)
}
