package helmchart

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/signature"
	"github.com/ccrelay/ccrelay/processors/deliveries"
	"github.com/ccrelay/ccrelay/test/fakes/c4cfake"
	"github.com/ccrelay/ccrelay/test/fakes/cmifake"
	"github.com/ccrelay/ccrelay/test/fakes/cpfake"
	"github.com/ccrelay/ccrelay/test/fakes/s3fake"
	"github.com/ccrelay/ccrelay/test/sinchtest"
)

// What examples/ci-all-sources.yaml names as the sinks' places, which the
// test points at its fakes on loopback.
const (
	ciC4CURL        = "https://my000000.crm.cloud.sap"
	ciCMIURL        = "https://cmi.ci.example/acme/cmi"
	ciContactProURL = "https://contactpro.ci.example"
)

// The CMI credentials a Contact Pro call carries (headers, sealed by
// ingest): the caller's, not the chart's.
const (
	cmiUser     = "transcript.user"
	cmiPassword = "ci-cmi-password"
	cmiAPIKey   = "ci-cmi-api-key"
)

// TestAllSources installs examples/ci-all-sources.yaml on the three-server
// cluster started from the rendered nats.conf: ccrelay ingest and ccrelay
// process run with the rendered environment and arguments of their
// Deployments, changed only for loopback (the NATS address, the listeners,
// the sinks' URLs pointing at the fakes, the S3 endpoint, and private
// networks allowed for the fakes' addresses in a Contact Pro call). One
// event of each source is stored and processed.
func TestAllSources(t *testing.T) {
	helmBin(t)
	r := renderObjects(t, filepath.Join(chartDir(t), "examples", "ci-all-sources.yaml"))
	conf := r.configMap(t, "ccrelay-nats-config").Data["nats.conf"]
	natsSecret := r.secrets["ccrelay-nats"]
	if natsSecret == nil {
		t.Fatal("examples/ci-all-sources.yaml rendered no Secret ccrelay-nats")
	}
	t.Setenv("CCRELAY_PASSWORD", natsSecret.StringData["ccrelay-password"])
	t.Setenv("OPERATOR_PASSWORD", natsSecret.StringData["operator-password"])
	t.Setenv("SYS_PASSWORD", natsSecret.StringData["sys-password"])
	certDir := t.TempDir()
	writeCerts(t, certDir)
	nodes := startCluster(t, conf, certDir, false)
	if _, ok := waitCluster(t, nodes, 30*time.Second); !ok {
		t.Fatal("no cluster within 30s")
	}
	bin := buildCcrelay(t)

	ingestC := r.deployment(t, "ccrelay-ingest").Spec.Template.Spec.Containers[0]
	processC := r.deployment(t, "ccrelay-process").Spec.Template.Spec.Containers[0]
	in := r.containerEnv(t, ingestC)
	pr := r.containerEnv(t, processC)

	// The fakes, with the credentials the chart gives process.
	sap := c4cfake.New(t, pr["CCRELAY_C4C_USER"], pr["CCRELAY_C4C_PASSWORD"])
	bucket := pr["CCRELAY_CONNECT_BUCKET"]
	s3 := s3fake.New(t, bucket)
	if pr["AWS_ACCESS_KEY_ID"] != s3fake.AccessKey || pr["AWS_SECRET_ACCESS_KEY"] != s3fake.SecretKey {
		t.Fatalf("process's AWS credentials are not the S3 fake's")
	}
	cmi := cmifake.New(t, cmiUser, cmiPassword, cmiAPIKey)
	twilioToken := strings.TrimPrefix(in["CCRELAY_MESSAGING_SECRETS"], "twilio/us:")
	extUser, extPassword, ok := strings.Cut(strings.TrimPrefix(pr["CCRELAY_FORWARD_BASIC_USERS"], "twilio/us="), ":")
	if !ok {
		t.Fatalf("CCRELAY_FORWARD_BASIC_USERS = %q", pr["CCRELAY_FORWARD_BASIC_USERS"])
	}
	cp := cpfake.New(t, extUser, extPassword, cpfake.Service{Type: "twilio", Name: "us", Secret: twilioToken})

	// Loopback: the sinks' URLs become the fakes'.
	for k, repl := range map[string][2]string{
		"CCRELAY_C4C_URL":      {ciC4CURL, sap.URL},
		"CCRELAY_CMI_URL":      {ciCMIURL, cmi.CMIURL()},
		"CCRELAY_FORWARD_URLS": {ciContactProURL, cp.URL},
	} {
		if !strings.Contains(pr[k], repl[0]) {
			t.Fatalf("process %s = %q, want %s in it", k, pr[k], repl[0])
		}
		pr[k] = strings.ReplaceAll(pr[k], repl[0], repl[1])
	}
	pr["CCRELAY_S3_ENDPOINT"] = s3.URL
	pr["CCRELAY_ALLOW_PRIVATE_NETWORKS"] = "true"

	httpPort, _, inLogs := runCcrelay(t, bin, ingestC.Args, in, nodes[0].client)
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	_, metricsPort, prLogs := runCcrelay(t, bin, processC.Args, pr, nodes[1].client)
	waitOK(t, base+"/readyz", 60*time.Second, inLogs)
	waitOK(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", metricsPort), 60*time.Second, prLogs)
	logs := func() string { return "ingest:\n" + inLogs.String() + "\nprocess:\n" + prLogs.String() }
	post := func(t *testing.T, path string, h http.Header, body []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = h
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST %s: %s %s\n%s", path, resp.Status, b, logs())
		}
	}
	eventually := func(t *testing.T, what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("not within 20s: %s\n%s", what, logs())
			}
		}
	}

	t.Run("sinch delivery report", func(t *testing.T) {
		secret := strings.TrimPrefix(in["CCRELAY_SINCH_WEBHOOK_SECRETS"], "eu:")
		const msgID = "01CIDELIVERY0000000000001"
		body := deliveryReport(msgID, "DELIVERED")
		h := (&sinchtest.Signer{Secret: secret}).Headers(body, time.Now())
		h.Set("Content-Type", "application/json")
		post(t, "/v1/sinch/eu", h, body)
		nc, err := nats.Connect(pr["CCRELAY_NATS_URL"])
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		var st deliveries.Status
		eventually(t, "the status in "+messages.Subjects{}.DeliveryStatusBucket(), func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			kv, err := js.KeyValue(ctx, messages.Subjects{}.DeliveryStatusBucket())
			if err != nil {
				return false
			}
			e, err := kv.Get(ctx, deliveries.Key(msgID))
			if err != nil {
				return false
			}
			return json.Unmarshal(e.Value(), &st) == nil
		})
		if st.MessageID != msgID || st.Status != "DELIVERED" || st.AppID != sinchtest.AppID {
			t.Errorf("status %+v, want %s DELIVERED of app %s", st, msgID, sinchtest.AppID)
		}
		t.Logf("deliveries: %s is %s in %s", st.MessageID, st.Status, messages.Subjects{}.DeliveryStatusBucket())
	})

	t.Run("contact lens summary", func(t *testing.T) {
		const summary = "Customer asked about order 4711; agent promised a refund."
		id := sap.AddPhoneCall("c1a11001")
		s3.Put(t, bucket, "Analysis/Voice/2026/11/21/c1a11001_analysis_2026-11-21T09:57:00Z.json", analysisFile(summary))
		h := http.Header{}
		h.Set("Content-Type", "application/json")
		h.Set("x-api-key", in["CCRELAY_CONNECT_API_KEYS"])
		post(t, "/v1/connect/events", h, contactLens("ci-ev-1", "c1a11001", "Contact Lens Post Call Rules Matched"))
		eventually(t, "the summary in the phone call", func() bool { return sap.PhoneCall(id).Transcript != "" })
		if got := sap.PhoneCall(id).Transcript; got != summary {
			t.Errorf("transcript %q, want %q", got, summary)
		}
		t.Logf("summaries: phone call %s has the summary (%d PATCH)", id, sap.PhoneCall(id).Patches)
	})

	t.Run("contact pro chat attachments", func(t *testing.T) {
		pdf := []byte("%PDF-1.7 receipt for order 4711")
		cmi.AddChat(cmifake.Chat{ContactID: "ci-guid-1", QueueAddress: sinchtest.AppID + "@whatsapp.sinchconversation.com", Messages: []cmifake.Message{
			{ID: "cm-1", ExternalID: "01CIPDF", Attachments: []cmifake.File{{ID: "a-1", Name: "receipt.pdf", MimeType: "application/pdf", Content: pdf}}},
		}})
		activity := sap.AddChatActivity("ci-guid-1")
		body := fmt.Appendf(nil, `{"cmi_url":%q,"cmi_user":%q,"sap_v1":{"url":%q,"user":%q},"contact_id":%q}`,
			cmi.CMIURL(), cmiUser, sap.URL, pr["CCRELAY_C4C_USER"], "ci-guid-1")
		h := http.Header{}
		h.Set("Content-Type", "application/json")
		h.Set("x-api-key", in["CCRELAY_CONTACTPRO_API_KEYS"])
		h.Set("x-cmi-api-key", cmiAPIKey)
		h.Set("x-cmi-password", cmiPassword)
		// The call's own C4C password, sealed by ingest, opened by process
		// with the same CCRELAY_SEAL_KEYS.
		h.Set("x-sap-v1-password", pr["CCRELAY_C4C_PASSWORD"])
		post(t, "/v1/contactpro/chat-attachments/Ended", h, body)
		eventually(t, "the attachment in C4C", func() bool { return len(sap.Attachments(activity)) == 1 })
		a := sap.Attachments(activity)[0]
		if a.Name != "receipt.pdf" || a.MimeType != "application/pdf" || !bytes.Equal(a.Content, pdf) {
			t.Errorf("attachment %s (%s, %d bytes), want receipt.pdf as CMI holds it", a.Name, a.MimeType, len(a.Content))
		}
		t.Logf("attachments: %s uploaded to activity %s", a.Name, activity)
	})

	t.Run("twilio relayed to contact pro", func(t *testing.T) {
		const path = "/v1/messaging/twilio/us"
		form := url.Values{
			"MessageSid": {"SM0123456789abcdef0123456789abcdef"}, "SmsStatus": {"received"},
			"From": {"+15550001234"}, "To": {"+15550009999"}, "Body": {"hello from CI"},
			"AccountSid": {"ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"}, "NumMedia": {"0"},
		}
		body := []byte(form.Encode())
		h := http.Header{}
		h.Set("Content-Type", "application/x-www-form-urlencoded")
		// Twilio signs the URL it called: the public URL the chart sets.
		h.Set(signature.HeaderTwilioSignature, signature.TwilioSign(twilioToken, in["CCRELAY_PUBLIC_URL"]+path, form))
		post(t, path, h, body)
		eventually(t, "Contact Pro receives the message", func() bool { return len(cp.Received()) == 1 })
		got := cp.Received()[0]
		if got.Service != "twilio/us" || !bytes.Equal(got.Body, body) {
			t.Errorf("Contact Pro received %s %q, want twilio/us %q", got.Service, got.Body, body)
		}
		if refused := cp.Refused(); len(refused) != 0 {
			t.Errorf("Contact Pro refused deliveries: %v", refused)
		}
		t.Logf("forward: Contact Pro took event %s on %s, signature verified", got.EventID, got.Service)
	})
}

// Payloads as their senders post them (test/e2e/fixtures_test.go,
// summaries_test.go).

func deliveryReport(msgID, status string) []byte {
	return fmt.Appendf(nil, `{"app_id":%q,"accepted_time":"2026-11-21T10:00:00.598Z","event_time":"2026-11-21T10:00:09.892757478Z",
"project_id":"c36f3d3d-1513-4edd-ae42-11995557ff61","message_delivery_report":{"message_id":%q,"conversation_id":"01FNV9VKCVZ6S6FVGKF62QBZ75",
"status":%q,"channel_identity":{"channel":"SINCH_CHAT","identity":"46702571492","app_id":%q},"contact_id":"01FNV9VKCVZ6S6FVGKF62QBZ76",
"reason":{"code":"RECIPIENT_NOT_REACHABLE","description":"unreachable","sub_code":"UNSPECIFIED_SUB_CODE"},"metadata":"","processing_mode":"DISPATCH"}}`,
		sinchtest.AppID, msgID, status, sinchtest.AppID)
}

const instanceID = "b1e4f6a2-3c5d-4e7f-8a9b-0c1d2e3f4a5b"

func contactLens(eventID, contactID, detailType string) []byte {
	return fmt.Appendf(nil, `{"version":"0","id":%q,"detail-type":%q,"source":"aws.connect","account":"123456789012",
"time":"2026-11-21T09:58:00Z","region":"eu-central-1","resources":["arn:aws:connect:eu-central-1:123456789012:instance/%s/contact/%s"],
"detail":{"version":"1.0","ruleName":"SAPPostCallAnalytics","actionName":"SAPPostCallAnalytics",
"instanceArn":"arn:aws:connect:eu-central-1:123456789012:instance/%s",
"contactArn":"arn:aws:connect:eu-central-1:123456789012:instance/%s/contact/%s",
"agentArn":"arn:aws:connect:eu-central-1:123456789012:instance/%s/agent/a1","queueArn":"arn:aws:connect:eu-central-1:123456789012:instance/%s/queue/q1"}}`,
		eventID, detailType, instanceID, contactID, instanceID, instanceID, contactID, instanceID, instanceID)
}

func analysisFile(summary string) []byte {
	return fmt.Appendf(nil, `{"Version":"1.1.0","AccountId":"123456789012","Channel":"VOICE",
"ConversationCharacteristics":{"Sentiment":{"OverallSentiment":{"AGENT":1.2,"CUSTOMER":0.4}},
"ContactSummary":{"PostContactSummary":{"Content":%q}}},"Transcript":[]}`, summary)
}
