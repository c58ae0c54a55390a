package attachments

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caarlos0/env/v11"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/seal"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/sinks/c4c"
	"github.com/ccrelay/ccrelay/sinks/egress"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// newProcessor builds the processor from configuration as ccrelay reads it
// (defaults included): a configured C4C tenant and CMI.
func newProcessor(t *testing.T, eg egress.Settings) *Processor {
	t.Helper()
	opts := env.Options{Prefix: "CCRELAY_", Environment: map[string]string{
		"CCRELAY_C4C_URL": "https://my1.crm.ondemand.com", "CCRELAY_C4C_USER": "TECH", "CCRELAY_C4C_PASSWORD": "sap-secret",
		"CCRELAY_CMI_URL": "https://cmi.example.com/cmi", "CCRELAY_CMI_USER": "cmiuser", "CCRELAY_CMI_PASSWORD": "cmi-secret", "CCRELAY_CMI_API_KEY": "cmi-key",
	}}
	sapCfg, err := env.ParseAsWithOptions[c4c.Config](opts)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.ParseAsWithOptions[Config](opts)
	if err != nil {
		t.Fatal(err)
	}
	sap, err := c4c.New(sapCfg, eg.Guard(), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, processors.Env{Subjects: messages.DefaultSubjects(), C4C: sap, Egress: eg, Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func hosts(t *testing.T, list string) egress.HostList {
	t.Helper()
	var l egress.HostList
	if err := l.UnmarshalText([]byte(list)); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestCredentialsGoOnlyWhereConfigured binds a call's URLs to credentials:
// the configured secrets never leave for a URL a caller named.
func TestCredentialsGoOnlyWhereConfigured(t *testing.T) {
	p := newProcessor(t, egress.Settings{CMIAllowedHosts: hosts(t, "*.partner.example"), C4CAllowedHosts: hosts(t, "*.crm.ondemand.com")})
	own := map[string]string{"x-cmi-password": "call-cmi", "x-sap-v1-password": "call-sap"}
	for _, c := range []struct {
		name   string
		call   messages.ChatAttachmentsCall
		fields map[string]string
		// refused names the side refused; "" when bound.
		refused string
		cmiBase string
		cmiPass string
		trusted bool
		sapURL  string
		sapPass string
	}{
		{name: "no URLs: configured everything", call: messages.ChatAttachmentsCall{ContactID: "c"},
			cmiBase: "https://cmi.example.com/cmi", cmiPass: "cmi-secret", trusted: true, sapURL: "https://my1.crm.ondemand.com", sapPass: "sap-secret"},
		{name: "configured URLs named: configured credentials", call: messages.ChatAttachmentsCall{ContactID: "c", CMIURL: "https://cmi.example.com/cmi/", SAP: messages.ContactProSAP{URL: "https://my1.crm.ondemand.com"}},
			cmiBase: "https://cmi.example.com/cmi", cmiPass: "cmi-secret", trusted: true, sapURL: "https://my1.crm.ondemand.com", sapPass: "sap-secret"},
		{name: "foreign CMI without its own credentials", call: messages.ChatAttachmentsCall{ContactID: "c", CMIURL: "https://cmi.partner.example"}, refused: "cmi"},
		{name: "foreign C4C without its own password", call: messages.ChatAttachmentsCall{ContactID: "c", SAP: messages.ContactProSAP{URL: "https://my2.crm.ondemand.com", User: "U"}}, refused: "c4c"},
		{name: "attacker's host, own credentials or not", call: messages.ChatAttachmentsCall{ContactID: "c", CMIURL: "https://attacker.test"}, fields: own, refused: "cmi"},
		{name: "attacker's tenant host", call: messages.ChatAttachmentsCall{ContactID: "c", SAP: messages.ContactProSAP{URL: "https://attacker.test", User: "U"}}, fields: own, refused: "c4c"},
		{name: "plain http to an allowed host", call: messages.ChatAttachmentsCall{ContactID: "c", CMIURL: "http://cmi.partner.example"}, fields: own, refused: "cmi"},
		{name: "allowed hosts with the call's own credentials",
			call:   messages.ChatAttachmentsCall{ContactID: "c", CMIURL: "https://cmi.partner.example/x", CMIUser: "agent", SAP: messages.ContactProSAP{URL: "https://my2.crm.ondemand.com", User: "U"}},
			fields: own, cmiBase: "https://cmi.partner.example/x", cmiPass: "call-cmi", sapURL: "https://my2.crm.ondemand.com", sapPass: "call-sap"},
		{name: "own credentials for the configured systems", call: messages.ChatAttachmentsCall{ContactID: "c", CMIUser: "agent", SAP: messages.ContactProSAP{User: "U"}}, fields: own,
			cmiBase: "https://cmi.example.com/cmi", cmiPass: "call-cmi", trusted: true, sapURL: "https://my1.crm.ondemand.com", sapPass: "call-sap"},
	} {
		t.Run(c.name, func(t *testing.T) {
			call := c.call
			cr, err := p.credentials(&call, c.fields)
			if c.refused != "" {
				if !errors.Is(err, processors.ErrPermanent) {
					t.Fatalf("bound (%s as %s, C4C %s) where the %s side should be refused: err %v", cr.cmi.base, cr.cmi.user, cr.tenant.URL, c.refused, err)
				}
				if !strings.Contains(err.Error(), c.refused+": ") {
					t.Errorf("refused by %q, want the %s side", err, c.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cr.cmi.base != c.cmiBase {
				t.Errorf("CMI base %q, want %q", cr.cmi.base, c.cmiBase)
			}
			if cr.cmi.password != c.cmiPass {
				t.Errorf("CMI password %q, want %q", cr.cmi.password, c.cmiPass)
			}
			if cr.trustedCMI != c.trusted {
				t.Errorf("CMI trusted %v, want %v", cr.trustedCMI, c.trusted)
			}
			if cr.tenant.URL != c.sapURL {
				t.Errorf("C4C %q, want %q", cr.tenant.URL, c.sapURL)
			}
			if got := cr.tenant.Password.Reveal(); got != c.sapPass {
				t.Errorf("C4C password %q, want %q", got, c.sapPass)
			}
		})
	}
}

func TestWants(t *testing.T) {
	p := newProcessor(t, egress.Settings{})
	s := messages.DefaultSubjects()
	text := []byte(`{"app_id":"A","message":{"id":"M","contact_message":{"text_message":{"text":"hi"}}}}`)
	media := []byte(`{"app_id":"A","message":{"id":"M","contact_message":{"media_message":{"url":"https://media.example/x.jpg"}}}}`)
	for _, c := range []struct {
		name    string
		subject string
		body    []byte
		want    bool
	}{
		{"text message", s.Sinch("MESSAGE_INBOUND", "eu", "A", "00"), text, false},
		{"media message", s.Sinch("MESSAGE_INBOUND", "eu", "A", "00"), media, true},
		{"undecodable Sinch body: Handle dead-letters it", s.Sinch("MESSAGE_INBOUND", "eu", "A", "00"), []byte(`{`), true},
		{"media message stored before subjects named the service", "ccrelay.in.sinch.message_inbound.A.00", media, true},
		{"chat ended", s.ContactPro("chat-attachments", "Ended"), nil, true},
		{"chat closed", s.ContactPro("chat-attachments", "closed"), nil, true},
		{"chat still running", s.ContactPro("chat-attachments", "Accepted"), nil, false},
		{"no event named", s.ContactPro("chat-attachments", ""), nil, false},
		{"subject outside the contract: Handle dead-letters it", "other.in.sinch.x.y", text, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, why := p.Wants(&processors.Event{Subject: c.subject, Body: c.body})
			if got != c.want {
				t.Errorf("Wants = %v (%s), want %v", got, why, c.want)
			}
			if !got && why == "" {
				t.Error("skipped without a reason")
			}
		})
	}
}

// TestSealedCredentialsOpenForTheirBodyOnly: credentials sealed into a
// Contact Pro call open for that call's id and body only. The same ce-id on
// an edited body (another chat of the same CMI, tenant and users; one more
// space) or the same body under another id does not open them: the event
// is dead-lettered before anything is fetched.
func TestSealedCredentialsOpenForTheirBodyOnly(t *testing.T) {
	p := newProcessor(t, egress.Settings{})
	keys, err := seal.ParseKeyRing("k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	p.keys = keys
	const id = "contactpro:chat-attachments:ended:chat-1:00112233445566778899aabbccddeeff"
	body := []byte(`{"cmi_url":"https://cmi.example.com/cmi","cmi_user":"agent","sap_v1":{"url":"https://my1.crm.ondemand.com","user":"U"},"contact_id":"chat-1"}`)
	sealed, err := keys.Seal(map[string]string{"x-cmi-password": "call-cmi", "x-sap-v1-password": "call-sap"}, messages.CredentialContext(id, body))
	if err != nil {
		t.Fatal(err)
	}
	event := func(id string, body []byte) *processors.Event {
		return &processors.Event{Subject: messages.DefaultSubjects().ContactPro(messages.IntegrationChatAttachments, "Ended"), ID: id,
			Header: nats.Header{messages.HeaderSealed: {sealed}}, Body: body}
	}
	fields, err := p.openSealed(event(id, body))
	if err != nil || fields["x-cmi-password"] != "call-cmi" {
		t.Fatalf("the call's own credentials: %v %v", fields, err)
	}
	for name, ev := range map[string]*processors.Event{
		"another chat under the same ce-id":   event(id, bytes.Replace(body, []byte(`"chat-1"`), []byte(`"chat-2"`), 1)),
		"one more space under the same ce-id": event(id, bytes.Replace(body, []byte(`,"contact_id"`), []byte(`, "contact_id"`), 1)),
		"the same body under another id":      event(strings.Replace(id, "chat-1", "chat-2", 1), body),
	} {
		t.Run(name, func(t *testing.T) {
			err := p.Handle(context.Background(), ev)
			if !errors.Is(err, processors.ErrPermanent) || !errors.Is(err, seal.ErrTampered) {
				t.Fatalf("Handle = %v, want a permanent refusal to open the sealed credentials", err)
			}
		})
	}
}

// TestEgressRefusalsArePermanent: a download egress refuses at the dial (a
// name on the allow-list that resolves to a loopback address) is refused
// the same way on every attempt: the event is dead-lettered at once, for
// CMI as for a Sinch media host, and nothing reaches the address.
func TestEgressRefusalsArePermanent(t *testing.T) {
	var hits atomic.Int32
	inside := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(inside.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(inside.URL, "https://"))
	at := "https://localhost:" + port
	p := newProcessor(t, egress.Settings{CMIAllowedHosts: hosts(t, "localhost"), MediaAllowedHosts: hosts(t, "*")})
	keys, err := seal.ParseKeyRing("k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	p.keys = keys
	s := messages.DefaultSubjects()

	t.Run("cmi", func(t *testing.T) {
		const id = "contactpro:chat-attachments:ended:chat-1:00112233445566778899aabbccddeeff"
		body := fmt.Appendf(nil, `{"cmi_url":%q,"cmi_user":"agent","contact_id":"chat-1"}`, at+"/cmi")
		sealed, err := keys.Seal(map[string]string{"x-cmi-password": "call-cmi"}, messages.CredentialContext(id, body))
		if err != nil {
			t.Fatal(err)
		}
		err = p.Handle(context.Background(), &processors.Event{Subject: s.ContactPro(messages.IntegrationChatAttachments, "Ended"), ID: id,
			Header: nats.Header{messages.HeaderSealed: {sealed}}, Body: body})
		if !errors.Is(err, egress.ErrRefused) || !errors.Is(err, processors.ErrPermanent) {
			t.Errorf("Handle = %v, want a permanent egress refusal", err)
		}
	})
	t.Run("media", func(t *testing.T) {
		ns := natstest.Embedded(t)
		_, js := natstest.Connect(t, ns.ClientURL())
		p.env.JS, p.env.Replicas = js, 1
		if err := p.Provision(context.Background()); err != nil {
			t.Fatal(err)
		}
		body := fmt.Appendf(nil, `{"app_id":"APP","project_id":"p","event_time":"2026-11-21T10:00:00Z","message":{"id":"01MEDIA","direction":"TO_APP",
"contact_message":{"media_message":{"url":%q}},"channel_identity":{"channel":"WHATSAPP","identity":"46732000000","app_id":"APP"}}}`, at+"/x.jpg")
		err := p.Handle(context.Background(), &processors.Event{Subject: s.Sinch("MESSAGE_INBOUND", "eu", "APP", "00"), Body: body})
		if !errors.Is(err, egress.ErrRefused) || !errors.Is(err, processors.ErrPermanent) {
			t.Errorf("Handle = %v, want a permanent egress refusal", err)
		}
	})
	if n := hits.Load(); n != 0 {
		t.Errorf("the refused address received %d requests", n)
	}
}
