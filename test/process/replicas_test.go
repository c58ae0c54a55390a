package process_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/test/expect"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/test/fakes/c4cfake"
	"github.com/ccrelay/ccrelay/test/fakes/s3fake"
	"github.com/ccrelay/ccrelay/test/natstest"
)

const bucket = "amazon-connect-test"

func analysis(summary string) []byte {
	return fmt.Appendf(nil, `{"ConversationCharacteristics":{"ContactSummary":{"PostContactSummary":{"Content":%q}}}}`, summary)
}

func contactLensEvent(id, contact string) []byte {
	return fmt.Appendf(nil, `{"version":"0","id":%q,"detail-type":"Contact Lens Post Call Rules Matched","source":"aws.connect","time":"2026-11-21T09:58:00Z",
"detail":{"instanceArn":"arn:aws:connect:eu-central-1:1:instance/b1e4f6a2-0000-4000-8000-000000000001","contactArn":"arn:aws:connect:eu-central-1:1:instance/b1e4f6a2-0000-4000-8000-000000000001/contact/%s"}}`, id, contact)
}

type summariesWorld struct {
	natsURL string
	sap     *c4cfake.Server
	s3      *s3fake.Server
	env     []string
}

func newSummariesWorld(t *testing.T) *summariesWorld {
	ns := natstest.Embedded(t)
	w := &summariesWorld{natsURL: ns.ClientURL(), sap: c4cfake.New(t, "v1user", "c4c-pass"), s3: s3fake.New(t, bucket)}
	w.env = []string{
		"CCRELAY_NATS_URL=" + w.natsURL, "CCRELAY_METRICS_ADDR=127.0.0.1:0",
		"CCRELAY_C4C_URL=" + w.sap.URL, "CCRELAY_C4C_USER=v1user", "CCRELAY_C4C_PASSWORD=c4c-pass",
		"CCRELAY_CONNECT_BUCKET=" + bucket, "CCRELAY_S3_ENDPOINT=" + w.s3.URL,
		"AWS_ACCESS_KEY_ID=" + s3fake.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s3fake.SecretKey,
		"CCRELAY_PROCESS_ACK_WAIT=2s", "CCRELAY_PROCESS_BACKOFF=100ms", "CCRELAY_PROCESS_CONCURRENCY=8",
	}
	return w
}

// written counts the call records of ids that hold a summary.
func (w *summariesWorld) written(ids []string) int {
	c := 0
	for _, id := range ids {
		if w.sap.PhoneCall(id).Transcript != "" {
			c++
		}
	}
	return c
}

// writtenOnce checks that call record i holds "summary i", PATCHed once.
func (w *summariesWorld) writtenOnce(t *testing.T, ids []string) {
	t.Helper()
	patches := 0
	for i, id := range ids {
		pc := w.sap.PhoneCall(id)
		if pc.Transcript != fmt.Sprintf("summary %d", i) {
			t.Errorf("call %d: transcript %q", i, pc.Transcript)
		}
		patches += pc.Patches
	}
	if patches != len(ids) {
		t.Errorf("%d PATCHes for %d calls: a side effect was repeated", patches, len(ids))
	}
}

// publish stores events as ingest does.
func (w *summariesWorld) publish(t *testing.T, n int, from int) {
	_, js := natstest.Connect(t, w.natsURL)
	s, _ := messages.NewSubjects("ccrelay")
	ctx := context.Background()
	if err := messages.EnsureStreams(ctx, provision.Waiter{}, js, binaryStreams(t)); err != nil {
		t.Fatal(err)
	}
	for i := from; i < from+n; i++ {
		ev := messages.Event{Subject: s.ContactLens("inst-1"), ID: fmt.Sprintf("ev-%d", i), Source: "/test", Type: messages.TypeContactLensPostCall, Time: time.Now(),
			Body: contactLensEvent(fmt.Sprintf("ev-%d", i), fmt.Sprintf("contact-%d", i))}
		if _, err := js.PublishMsg(ctx, ev.Msg()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestProcessReplicas runs three 'ccrelay process' replicas on one consumer
// against an SAP that takes 100 ms per call, SIGKILLs one in the middle,
// and checks that every call record got its summary exactly once.
func TestProcessReplicas(t *testing.T) {
	w := newSummariesWorld(t)
	const n = 150
	ids := make([]string, n)
	for i := 0; i < n; i++ {
		ids[i] = w.sap.AddPhoneCall(fmt.Sprintf("contact-%d", i))
		w.s3.Put(t, bucket, fmt.Sprintf("Analysis/Voice/2026/11/21/contact-%d_analysis_2026-11-21T09:57:00Z.json", i), analysis(fmt.Sprintf("summary %d", i)))
	}
	w.sap.Inject(c4cfake.Fault{Path: "/sap/c4c/api", Delay: 100 * time.Millisecond})
	var reps []*proc
	for i := 0; i < 3; i++ {
		reps = append(reps, start(t, t.TempDir(), w.env, "process", "--processors", "summaries"))
	}
	w.publish(t, n, 0)

	waitFor(t, "a third written", func() bool { return w.written(ids) >= n/3 })
	for i, p := range reps {
		if !strings.Contains(metricsText(t, p), `ccrelay_processor_messages_total{outcome="done",processor="summaries"}`) {
			t.Errorf("replica %d has done no work", i)
		}
	}
	if err := reps[1].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitForCount(t, "all written after the kill", func() int { return w.written(ids) }, n)
	w.writtenOnce(t, ids)
	for _, i := range []int{0, 2} {
		if err := reps[i].stop(t, syscall.SIGTERM); err != nil {
			t.Errorf("replica %d exit: %v", i, err)
		}
	}
}

// TestDeadLetterCLI: SAP refuses one record with 400; 'ccrelay dlq list'
// shows it with the reason and 'ccrelay dlq requeue' brings it back.
func TestDeadLetterCLI(t *testing.T) {
	w := newSummariesWorld(t)
	id := w.sap.AddPhoneCall("contact-0")
	w.s3.Put(t, bucket, "Analysis/Voice/2026/11/21/contact-0_analysis_x.json", analysis("needs a fix"))
	w.sap.Inject(c4cfake.Fault{Method: "PATCH", Status: http.StatusBadRequest, Times: 1})
	p := start(t, t.TempDir(), w.env, "process")
	w.publish(t, 1, 0)
	env := append([]string{"PATH=" + os.Getenv("PATH")}, "CCRELAY_NATS_URL="+w.natsURL)
	var line map[string]any
	waitFor(t, "a dead letter", func() bool {
		code, out, _ := runCmd(t, env, "dlq", "list", "--json")
		return code == 0 && json.Unmarshal([]byte(out), &line) == nil
	})
	errText, _ := line["error"].(string)
	if !expect.All(t,
		expect.Check{Name: "dead letter processor", Got: line["processor"], Want: "summaries"},
		expect.Check{Name: "dead letter names SAP's 400", Got: strings.Contains(errText, "HTTP 400"), Want: true},
		expect.Check{Name: "dead letter id", Got: line["id"], Want: "ev-0"},
	) {
		t.FailNow()
	}
	code, out, errOut := runCmd(t, env, "dlq", "requeue", "--seq", fmt.Sprint(line["seq"]))
	if code != 0 || !strings.Contains(out, "1 requeued, 0 failed") {
		t.Fatalf("requeue: %d %s %s", code, out, errOut)
	}
	waitFor(t, "written after requeue", func() bool { return w.sap.PhoneCall(id).Transcript == "needs a fix" })
	if code, out, _ := runCmd(t, env, "dlq", "list"); code != 0 || !strings.Contains(out, "0 dead letters") {
		t.Errorf("dlq after requeue: %s", out)
	}
	_ = p.stop(t, syscall.SIGTERM)
}
