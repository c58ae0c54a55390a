package process_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/messages/signature"
	"github.com/ccrelay/ccrelay/test/fakes/c4cfake"
	"github.com/ccrelay/ccrelay/test/fakes/cpfake"
	"github.com/ccrelay/ccrelay/test/fakes/s3fake"
	"github.com/ccrelay/ccrelay/test/natstest"
	"github.com/ccrelay/ccrelay/test/sinchtest"
)

// traceStep is one line of 'ccrelay trace --json'.
type traceStep struct {
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	Processor string    `json:"processor"`
	Outcome   string    `json:"outcome"`
	DedupID   string    `json:"dedup_id"`
	Seq       uint64    `json:"seq"`
	Subject   string    `json:"subject"`
	Detail    string    `json:"detail"`
	Attempts  uint64    `json:"attempts"`
	Next      string    `json:"next"`
	Body      string    `json:"body"`
}

// TestTraceThroughServe sends, through 'ccrelay serve', a Sinch inbound
// message of a contact and delivery reports of the answer, a Contact Pro
// chat-attachments call that is dead-lettered (no CMI configured), a
// Contact Lens event whose summary is written into the call record, and a
// Twilio message relayed to Contact Pro, then runs 'ccrelay trace' on
// every id of each, in human and JSON form, and checks that each shows
// every step in time order.
func TestTraceThroughServe(t *testing.T) {
	ns := natstest.Embedded(t)
	sap := c4cfake.New(t, "v1user", "c4c-pass")
	s3 := s3fake.New(t, bucket)
	twilioSvc := cpfake.Service{Type: "twilio", Name: "us", Secret: "twilio-token"}
	cp := cpfake.New(t, "ext", "ext-password", twilioSvc)
	env := []string{
		"CCRELAY_NATS_URL=" + ns.ClientURL(), "CCRELAY_HTTP_ADDR=127.0.0.1:0", "CCRELAY_METRICS_ADDR=127.0.0.1:0",
		"CCRELAY_SINCH_WEBHOOK_SECRETS=svc:" + secret, "CCRELAY_CONTACTPRO_API_KEYS=cp-key", "CCRELAY_CONNECT_API_KEYS=cn-key",
		"CCRELAY_C4C_URL=" + sap.URL, "CCRELAY_C4C_USER=v1user", "CCRELAY_C4C_PASSWORD=c4c-pass",
		"CCRELAY_CONNECT_BUCKET=" + bucket, "CCRELAY_S3_ENDPOINT=" + s3.URL,
		"AWS_ACCESS_KEY_ID=" + s3fake.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s3fake.SecretKey,
		"CCRELAY_PROCESS_BACKOFF=200ms",
		"CCRELAY_PUBLIC_URL=https://relay.example.com", "CCRELAY_MESSAGING_SECRETS=twilio/us:twilio-token",
		"CCRELAY_FORWARD_URLS=twilio/us=" + cp.URLOf(twilioSvc), "CCRELAY_FORWARD_BASIC_USERS=twilio/us=ext:ext-password",
		"CCRELAY_FORWARD_BACKOFF=100ms", "CCRELAY_FORWARD_PARK_AFTER=attempts=1",
	}
	p := start(t, t.TempDir(), env, "serve")
	ingest := p.addr("http")
	send := func(path string, h http.Header, body []byte) {
		t.Helper()
		req, _ := http.NewRequest("POST", ingest+path, bytes.NewReader(body))
		req.Header = h
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode/100 != 2 {
			t.Fatalf("POST %s: %d", path, res.StatusCode)
		}
	}
	apiKey := func(k string) http.Header {
		return http.Header{"Content-Type": {"application/json"}, "X-Api-Key": {k}}
	}

	const (
		contact      = "01TRACECONTACT0000000000AA"
		conversation = "01EQ8235TD19N21XQTH12B145D"
		inboundID    = "01TRACEINBOUND000000000001"
		outboundID   = "01TRACEOUTBOUND00000000001"
		chatContact  = "8f2c6a1e-0000-4000-8000-0000000000aa"
		callContact  = "5b7e1c2d-0000-4000-8000-0000000000bb"
		twilioSID    = "SM0123456789abcdef0123456789abcdef"
		parkedSID    = "SM00000000000000000000000000000bad"
	)
	// 1. Sinch: the customer's message, the agent's answer queued, then
	// delivered (the same contact and conversation).
	in := sinchtest.InboundFrom(inboundID, contact, "my parcel", time.Now())
	send("/v1/sinch/svc", signer.Headers(in, time.Now()), in)
	for i, st := range []string{"QUEUED_ON_CHANNEL", "DELIVERED"} {
		at := time.Now().Add(time.Duration(i) * time.Second).UTC().Format(time.RFC3339Nano)
		dr := fmt.Appendf(nil, `{"app_id":%q,"event_time":%q,"message_delivery_report":{"message_id":%q,"conversation_id":%q,"contact_id":%q,"status":%q,"channel_identity":{"channel":"WHATSAPP","identity":"46732000000","app_id":%q}}}`,
			sinchtest.AppID, at, outboundID, conversation, contact, st, sinchtest.AppID)
		send("/v1/sinch/svc", signer.Headers(dr, time.Now()), dr)
	}
	// 2. Contact Pro: a chat ended; no CMI is configured, so the
	// attachments processor dead-letters it.
	send("/v1/contactpro/chat-attachments/ended", apiKey("cp-key"), fmt.Appendf(nil, `{"contact_id":%q}`, chatContact))
	// 3. Contact Lens: the call's summary is written.
	callRecord := sap.AddPhoneCall(callContact)
	s3.Put(t, bucket, "Analysis/Voice/2026/11/21/"+callContact+"_analysis_x.json", analysis("customer asked about parcel 4711"))
	send("/v1/connect/events", apiKey("cn-key"), contactLensEvent("ev-trace-1", callContact))
	// 4. Twilio: relayed to Contact Pro.
	form := url.Values{"MessageSid": {twilioSID}, "From": {"+4915100000042"}, "Body": {"hello"}}
	send("/v1/messaging/twilio/us", http.Header{"Content-Type": {"application/x-www-form-urlencoded"},
		signature.HeaderTwilioSignature: {signature.TwilioSign("twilio-token", "https://relay.example.com/v1/messaging/twilio/us", form)}}, []byte(form.Encode()))

	// 5. Twilio: a message Contact Pro keeps refusing (503) while it
	// answers HEAD: its conversation is parked.
	cp.Reject("messaging:twilio:us:"+parkedSID, http.StatusServiceUnavailable)
	form = url.Values{"MessageSid": {parkedSID}, "From": {"+4915100000099"}, "Body": {"are you there?"}}
	send("/v1/messaging/twilio/us", http.Header{"Content-Type": {"application/x-www-form-urlencoded"},
		signature.HeaderTwilioSignature: {signature.TwilioSign("twilio-token", "https://relay.example.com/v1/messaging/twilio/us", form)}}, []byte(form.Encode()))

	waitFor(t, "the summary written", func() bool { return sap.PhoneCall(callRecord).Transcript != "" })
	waitFor(t, "the Twilio message relayed", func() bool { return len(cp.Received()) == 1 })

	opEnv := []string{"PATH=" + os.Getenv("PATH"), "CCRELAY_NATS_URL=" + ns.ClientURL()}
	trace := func(args ...string) []traceStep {
		t.Helper()
		code, out, errOut := runCmd(t, opEnv, append([]string{"trace", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("trace %v: exit %d: %s", args, code, errOut)
		}
		// Beside the steps, the summary goes to standard error.
		if !strings.Contains(errOut, " events of ") {
			t.Errorf("trace %v: no summary on standard error: %q", args, errOut)
		}
		var steps []traceStep
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line == "" {
				continue
			}
			var s traceStep
			if err := json.Unmarshal([]byte(line), &s); err != nil {
				t.Fatalf("trace %v: %q: %v", args, line, err)
			}
			steps = append(steps, s)
		}
		for i := 1; i < len(steps); i++ {
			if steps[i].Time.Before(steps[i-1].Time) {
				t.Errorf("trace %v: step %d (%s) before step %d (%s)", args, i, steps[i].Time, i-1, steps[i-1].Time)
			}
		}
		return steps
	}
	// has reports whether steps hold one of kind, processor and outcome
	// (empty: any), and returns it.
	has := func(steps []traceStep, kind, processor, outcome string) *traceStep {
		for i := range steps {
			s := &steps[i]
			if s.Kind == kind && (processor == "" || s.Processor == processor) && (outcome == "" || s.Outcome == outcome) {
				return s
			}
		}
		return nil
	}
	count := func(steps []traceStep, kind string) int {
		n := 0
		for _, s := range steps {
			if s.Kind == kind {
				n++
			}
		}
		return n
	}
	dump := func(steps []traceStep) string {
		b, _ := json.MarshalIndent(steps, "", " ")
		return string(b)
	}

	// The deliveries processor acknowledges the reports; the status is
	// written by then.
	waitFor(t, "the delivery status", func() bool {
		return has(trace(outboundID), "status", "deliveries", "DELIVERED") != nil
	})
	for _, c := range []struct {
		name, id       string
		stored         int
		processor      string
		outcome        string
		status, relay  bool
		deadLettered   bool
		dedupIDPrefix  string
		detailContains string
	}{
		{name: "Sinch contact id", id: contact, stored: 3, processor: "deliveries", outcome: "acknowledged", status: true, dedupIDPrefix: "sinch:svc:"},
		{name: "Sinch conversation id", id: conversation, stored: 3, processor: "attachments", outcome: "", status: true, dedupIDPrefix: "sinch:svc:"},
		{name: "Sinch inbound message id", id: inboundID, stored: 1, processor: "attachments", outcome: "", dedupIDPrefix: "sinch:svc:inbound:"},
		{name: "Sinch outbound message id", id: outboundID, stored: 2, processor: "deliveries", outcome: "acknowledged", status: true, dedupIDPrefix: "sinch:svc:delivery:"},
		{name: "Contact Pro contact id", id: chatContact, stored: 1, processor: "attachments", deadLettered: true, dedupIDPrefix: "contactpro:chat-attachments:ended:"},
		{name: "Connect contact id", id: callContact, stored: 1, processor: "summaries", outcome: "acknowledged", status: true, dedupIDPrefix: "connect:", detailContains: "written"},
		{name: "EventBridge event id", id: "ev-trace-1", stored: 1, processor: "summaries", outcome: "acknowledged", status: true, dedupIDPrefix: "connect:"},
		{name: "Twilio MessageSid", id: twilioSID, stored: 1, processor: "forward", relay: true, dedupIDPrefix: "messaging:twilio:us:"},
	} {
		steps := trace(c.id)
		if got := count(steps, "stored"); got != c.stored {
			t.Errorf("%s: %d stored events, want %d\n%s", c.name, got, c.stored, dump(steps))
			continue
		}
		if len(steps) == 0 || steps[0].Kind != "stored" {
			t.Errorf("%s: the first step is not the stored event\n%s", c.name, dump(steps))
		}
		for _, s := range steps {
			if !strings.HasPrefix(s.DedupID, c.dedupIDPrefix) || s.Seq == 0 || s.Subject == "" {
				t.Errorf("%s: step %+v lacks its event's dedup id, seq or subject", c.name, s)
			}
			if s.Body != "" {
				t.Errorf("%s: a body without --body", c.name)
			}
		}
		switch {
		case c.deadLettered:
			dl := has(steps, "dead_lettered", c.processor, "dead_lettered")
			if dl == nil || !strings.HasPrefix(dl.Next, "ccrelay dlq requeue --seq ") || dl.Detail == "" || dl.Attempts == 0 {
				t.Errorf("%s: no dead letter with its reason, attempts and requeue command\n%s", c.name, dump(steps))
			}
		case c.relay:
			if has(steps, "relayed", "forward", "done") == nil {
				t.Errorf("%s: not shown relayed\n%s", c.name, dump(steps))
			}
		default:
			if has(steps, "processed", c.processor, c.outcome) == nil {
				t.Errorf("%s: no %s step of %s\n%s", c.name, c.outcome, c.processor, dump(steps))
			}
		}
		if c.status {
			st := has(steps, "status", "", "")
			if st == nil || c.detailContains != "" && !strings.Contains(st.Detail, c.detailContains) {
				t.Errorf("%s: no sink status\n%s", c.name, dump(steps))
			}
		}
	}
	// The parked Twilio message: parked, with the release command; and the
	// parked conversation's id finds it.
	var parked *traceStep
	waitFor(t, "the conversation parked", func() bool {
		parked = has(trace(parkedSID), "parked", "forward", "parked")
		return parked != nil
	})
	conv, ok := strings.CutPrefix(parked.Next, "ccrelay relay release ")
	if !ok || parked.Attempts == 0 || !strings.Contains(parked.Detail, conv) {
		t.Errorf("parked step: %+v", *parked)
	}
	if steps := trace(conv); count(steps, "stored") != 1 || has(steps, "parked", "forward", "parked") == nil {
		t.Errorf("trace %s (the parked conversation): %s", conv, dump(steps))
	}
	// The Contact Lens event by its dedup id and by its stream sequence.
	byContact := trace(callContact)
	ce := byContact[0]
	for _, id := range []string{ce.DedupID, fmt.Sprint(ce.Seq)} {
		steps := trace(id)
		if count(steps, "stored") != 1 || steps[0].Seq != ce.Seq || has(steps, "status", "summaries", "written") == nil {
			t.Errorf("trace %s: want the Contact Lens event and its summary\n%s", id, dump(steps))
		}
	}
	// An id nothing has.
	if steps := trace("01NOBODY00000000000000000"); len(steps) != 0 {
		t.Errorf("an unknown id: %s", dump(steps))
	}
	// Flags after the id work too; a second id is refused.
	if code, out, errOut := runCmd(t, opEnv, "trace", callContact, "--json", "--since", "1h"); code != 0 || !strings.HasPrefix(out, "{") {
		t.Errorf("trace ID --json: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := runCmd(t, opEnv, "trace", callContact, chatContact); code != 2 || !strings.Contains(errOut, "one ID") {
		t.Errorf("trace with two ids: %d %s", code, errOut)
	}
	// --body shows the body; the human form is a timeline with the next
	// command.
	if steps := trace("--body", chatContact); len(steps) == 0 || !strings.Contains(steps[0].Body, chatContact) {
		t.Errorf("--body: %s", dump(steps))
	}
	for _, id := range []string{contact, chatContact, callContact, twilioSID, parkedSID} {
		code, out, errOut := runCmd(t, opEnv, "trace", id)
		if code != 0 || !strings.Contains(out, "TIME") || !strings.Contains(out, "stored") || !strings.Contains(out, "events of "+id) {
			t.Errorf("trace %s: %d %s %s", id, code, out, errOut)
		}
		if id == chatContact && !strings.Contains(out, "next: ccrelay dlq requeue --seq ") {
			t.Errorf("trace %s names no next command:\n%s", id, out)
		}
		if id == parkedSID && !strings.Contains(out, "next: ccrelay relay release ") {
			t.Errorf("trace %s names no next command:\n%s", id, out)
		}
		t.Logf("ccrelay trace %s\n%s", id, out)
	}
	// No consumer is left behind: the processors' durable ones only.
	_, js := natstest.Connect(t, ns.ClientURL())
	for _, stream := range []string{"CCRELAY_EVENTS", "CCRELAY_DLQ", "CCRELAY_RELAY_HELD"} {
		st, err := js.Stream(context.Background(), stream)
		if err != nil {
			t.Fatal(err)
		}
		for name := range st.ListConsumers(context.Background()).Info() {
			if !strings.HasPrefix(name.Name, "CCRELAY_") {
				t.Errorf("consumer %s left on %s: %s", name.Name, stream, name.Config.Description)
			}
		}
	}
	_ = p.stop(t, syscall.SIGTERM)
}
