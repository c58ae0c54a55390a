package e2e_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/signature"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/test/fakes/cpfake"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// TestRelayRoutesFromTheSubject: the relay takes destination, content type
// and signatures from the subject ingest verified. A stored Twilio form and
// a Messenger body republished bare (nats pub, no headers) reach Contact
// Pro as the originals did: form-encoded and signed, Meta's signature made
// again from the app secret. A stored event whose headers disagree with its
// subject (another service's ce-source, a JSON Content-Type on a Twilio
// subject, a ce-id with a control character or over-long) is dead-lettered
// at its first delivery, saying why, and never reaches Contact Pro.
func TestRelayRoutesFromTheSubject(t *testing.T) {
	ns := natstest.Embedded(t)
	cp := cpfake.New(t, cpExtUser, cpExtPassword, relayServices()...)
	d := relayDeployment(t, ns.ClientURL(), cp)
	st := mustStream(t, d)
	ctx := context.Background()

	// store posts msg through ingest and takes the stored message out of
	// the stream again, for the test to store it in another form.
	store := func(msg message) *nats.Msg {
		t.Helper()
		r := d.post(msg.path, msg.header, msg.body)
		if r.status != http.StatusAccepted {
			t.Fatalf("status %d %s", r.status, r.body)
		}
		raw := d.stored(r)
		if err := st.DeleteMsg(ctx, raw.Sequence); err != nil {
			t.Fatal(err)
		}
		return &nats.Msg{Subject: raw.Subject, Header: raw.Header, Data: raw.Data}
	}
	var bare []string
	for _, p := range []string{"twilio", "facebook"} {
		m := store(conversationMessage(t, p, 40, 0))
		bare = append(bare, m.Header.Get(messages.HeaderID))
		republishBody(t, d, m.Subject, m.Data)
	}

	forged := map[string]func(h nats.Header){
		"another service's ce-source": func(h nats.Header) { h.Set(messages.HeaderSource, "/messaging/twilio/other") },
		"a JSON Content-Type":         func(h nats.Header) { h.Set(messages.HeaderContentType, messages.ContentTypeJSON) },
		"a ce-id with an escape":      func(h nats.Header) { h.Set(messages.HeaderID, h.Get(messages.HeaderID)+"\x1b[2J") },
		"an over-long ce-id":          func(h nats.Header) { h.Set(messages.HeaderID, h.Get(messages.HeaderID)+strings.Repeat("x", 2000)) },
	}
	twilio := store(conversationMessage(t, "twilio", 41, 0))
	for name, change := range forged {
		h := nats.Header{}
		for k, v := range twilio.Header {
			h[k] = append([]string(nil), v...)
		}
		change(h)
		h.Set(nats.MsgIdHdr, "forged:"+name)
		if _, err := d.js.PublishMsg(ctx, &nats.Msg{Subject: twilio.Subject, Header: h, Data: twilio.Data}); err != nil {
			t.Fatal(err)
		}
	}
	sinch := store(conversationMessage(t, "sinch", 42, 0))
	sinch.Header.Set(messages.HeaderSource, "/sinch/other")
	sinch.Header.Set(nats.MsgIdHdr, "forged:sinch")
	if _, err := d.js.PublishMsg(ctx, sinch); err != nil {
		t.Fatal(err)
	}

	d.startProcessors("forward")
	eventually(t, "the bare bodies are delivered", func() bool { return len(cp.Received()) >= len(bare) })
	var got []string
	for _, r := range cp.Received() {
		got = append(got, r.EventID)
		if r.Service == "twilio/us" && r.Header.Get("Content-Type") != messages.ContentTypeForm {
			t.Errorf("a bare Twilio body delivered as %q", r.Header.Get("Content-Type"))
		}
		if r.Service == "facebook/page1" && !signature.HubVerify(fbAppSecret, r.Body, r.Header.Get(signature.HeaderHubSignature256)) {
			t.Errorf("a bare Messenger body delivered without Meta's signature: %v", r.Header)
		}
	}
	var dls []processors.DeadLetter
	eventually(t, "every forged event is a dead letter", func() bool {
		dls = listDLQ(t, d)
		return len(dls) >= len(forged)+1
	})
	for _, dl := range dls {
		if dl.Processor != "forward" || dl.Deliveries != 1 || !strings.Contains(dl.Error, "disagree") {
			t.Errorf("dead letter of seq %d (%s) after %d deliveries: %q; want forward's refusal at the first", dl.OrigSeq, dl.Processor, dl.Deliveries, dl.Error)
		}
	}
	slices.Sort(got)
	slices.Sort(bare)
	if !slices.Equal(got, bare) || len(cp.Received()) != len(bare) {
		t.Errorf("Contact Pro received %v (refused %v); want only the bare bodies %v", got, cp.Refused(), bare)
	}
}
