package e2e_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/test/expect"

	"github.com/ccrelay/ccrelay/test/fakes/c4cfake"
	"github.com/ccrelay/ccrelay/test/fakes/s3fake"
	"github.com/ccrelay/ccrelay/test/metricstest"
	"github.com/ccrelay/ccrelay/test/natstest"
)

const (
	c4cUser     = "v1user"
	c4cPassword = "c4c-password-1"
	bucket      = "amazon-connect-acme"
)

func analysisFile(summary string) []byte {
	return fmt.Appendf(nil, `{"Version":"1.1.0","AccountId":"123456789012","Channel":"VOICE",
"ConversationCharacteristics":{"Sentiment":{"OverallSentiment":{"AGENT":1.2,"CUSTOMER":0.4}},
"ContactSummary":{"PostContactSummary":{"Content":%q}}},"Transcript":[]}`, summary)
}

// summariesDeployment is ingest and the summaries processor against a fake
// tenant and a fake S3.
func summariesDeployment(t *testing.T, natsURL string, extra ...string) (*deployment, *c4cfake.Server, *s3fake.Server) {
	return summariesDeploymentAt(t, natsURL, time.Now, extra...)
}

// summariesDeploymentAt is summariesDeployment on the clock now, which S3
// and the processors share, as they share the real one.
func summariesDeploymentAt(t *testing.T, natsURL string, now func() time.Time, extra ...string) (*deployment, *c4cfake.Server, *s3fake.Server) {
	sap := c4cfake.New(t, c4cUser, c4cPassword)
	s3 := s3fake.NewAt(t, now, bucket)
	t.Setenv("AWS_ACCESS_KEY_ID", s3fake.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3fake.SecretKey)
	env := append([]string{
		"CCRELAY_C4C_URL=" + sap.URL, "CCRELAY_C4C_USER=" + c4cUser, "CCRELAY_C4C_PASSWORD=" + c4cPassword,
		"CCRELAY_CONNECT_BUCKET=" + bucket, "CCRELAY_S3_ENDPOINT=" + s3.URL,
		"CCRELAY_PROCESS_BACKOFF=50ms", "CCRELAY_PROCESS_ACK_WAIT=2s", "CCRELAY_PROCESS_MAX_DELIVER=20",
	}, extra...)
	d := deploy(t, natsURL, 1, env...)
	d.now = now
	d.startProcessors("summaries")
	return d, sap, s3
}

func postContactLens(t *testing.T, d *deployment, eventID, contactID string) {
	t.Helper()
	h := jsonHeader()
	h.Set("x-api-key", connectAPIKey)
	if r := d.post("/v1/connect/events", h, contactLens(eventID, contactID, "Contact Lens Post Call Rules Matched")); r.status != 202 {
		t.Fatalf("ingest: %d %s", r.status, r.body)
	}
}

func TestSummaries(t *testing.T) {
	ns := natstest.Embedded(t)
	d, sap, s3 := summariesDeployment(t, ns.ClientURL())

	// The happy path, checked request by request as SAP received them.
	id := sap.AddPhoneCall("c0ffee01")
	s3.Put(t, bucket, "Analysis/Voice/2026/11/21/c0ffee01_analysis_2026-11-21T09:57:00Z.json", analysisFile("Customer asked about order 4711; agent promised a refund."))
	postContactLens(t, d, "ev-1", "c0ffee01")
	eventually(t, "summary written", func() bool { return sap.PhoneCall(id).Transcript != "" })
	if got := sap.PhoneCall(id).Transcript; got != "Customer asked about order 4711; agent promised a refund." {
		t.Errorf("transcript %q", got)
	}
	reqs := sap.Requests()
	if len(reqs) != 2 {
		t.Fatalf("SAP got %d requests, want GET and PATCH: %+v", len(reqs), reqs)
	}
	get, patch := reqs[0], reqs[1]
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte(c4cUser+":"+c4cPassword))
	expect.All(t,
		expect.Check{Name: "GET method", Got: get.Method, Want: "GET"},
		expect.Check{Name: "GET path", Got: get.Path, Want: "/sap/c4c/api/v1/phone-service/phoneCalls"},
		expect.Check{Name: "GET query", Got: get.Query, Want: "%24filter=externalId.displayId+eq+%27c0ffee01%27"},
		expect.Check{Name: "GET authorization", Got: get.Header.Get("Authorization"), Want: wantAuth},
		expect.Check{Name: "PATCH method", Got: patch.Method, Want: "PATCH"},
		expect.Check{Name: "PATCH path", Got: patch.Path, Want: "/sap/c4c/api/v1/phone-service/phoneCalls/" + id},
		expect.Check{Name: "PATCH If-Match", Got: patch.Header.Get("If-Match"), Want: "2026-11-21T10:00:00.001Z"},
		expect.Check{Name: "PATCH body", Got: string(patch.Body), Want: `{"transcript":"Customer asked about order 4711; agent promised a refund."}`},
		expect.Check{Name: "PATCH authorization", Got: patch.Header.Get("Authorization"), Want: wantAuth},
	)
	if strings.Contains(d.logs.String(), "order 4711") {
		t.Error("the summary reached the logs")
	}

	// A call across midnight: the file is under the day before.
	id2 := sap.AddPhoneCall("c0ffee02")
	s3.Put(t, bucket, "Analysis/Voice/2026/11/20/c0ffee02_analysis_2026-11-20T23:59:00Z.json", analysisFile("Late call."))
	postContactLens(t, d, "ev-2", "c0ffee02")
	eventually(t, "day-before file used", func() bool { return sap.PhoneCall(id2).Transcript == "Late call." })

	// Not there yet: no file, then an empty summary, then no call record.
	// Each is retried until it appears.
	postContactLens(t, d, "ev-3", "c0ffee03")
	time.Sleep(200 * time.Millisecond)
	s3.Put(t, bucket, "Analysis/Voice/2026/11/21/c0ffee03_analysis_2026-11-21T09:57:00Z.json", analysisFile(""))
	time.Sleep(200 * time.Millisecond)
	s3.Put(t, bucket, "Analysis/Voice/2026/11/21/c0ffee03_analysis_2026-11-21T09:57:00Z.json", analysisFile("Third call."))
	time.Sleep(200 * time.Millisecond)
	id3 := sap.AddPhoneCall("c0ffee03")
	eventually(t, "late file, summary and record", func() bool { return sap.PhoneCall(id3).Transcript == "Third call." })
	if d.processed("summaries", "retried") == 0 || sap.PhoneCall(id3).Patches != 1 {
		t.Errorf("retried %v times, %d patches", d.processed("summaries", "retried"), sap.PhoneCall(id3).Patches)
	}

	// An agent edits the record between our read and write: 412, re-read.
	id4 := sap.AddPhoneCall("c0ffee04")
	s3.Put(t, bucket, "Analysis/Voice/2026/11/21/c0ffee04_analysis_2026-11-21T09:57:00Z.json", analysisFile("Fourth call."))
	sap.Inject(c4cfake.Fault{Method: "PATCH", Path: "/sap/c4c/api/v1/phone-service/phoneCalls/" + id4, Status: http.StatusPreconditionFailed, Times: 1})
	postContactLens(t, d, "ev-4", "c0ffee04")
	eventually(t, "written after 412", func() bool { return sap.PhoneCall(id4).Transcript == "Fourth call." })

	// SAP rate-limits with Retry-After, then answers.
	id5 := sap.AddPhoneCall("c0ffee05")
	s3.Put(t, bucket, "Analysis/Voice/2026/11/21/c0ffee05_analysis_2026-11-21T09:57:00Z.json", analysisFile("Fifth call."))
	sap.Inject(c4cfake.Fault{Method: "GET", Status: http.StatusTooManyRequests, RetryAfter: "1", Times: 1})
	postContactLens(t, d, "ev-5", "c0ffee05")
	eventually(t, "written after 429", func() bool { return sap.PhoneCall(id5).Transcript == "Fifth call." })

	// Replaying every event (as the NATS CLI would) writes nothing again:
	// summaries is idempotent (no ledger), so each replay is handled, finds
	// its summary in the record and leaves it.
	patches := 0
	for _, id := range []string{id, id2, id3, id4, id5} {
		patches += sap.PhoneCall(id).Patches
	}
	before := d.processed("summaries", "done")
	unchanged := func() float64 {
		return d.procMetric("ccrelay_summaries_written_total", map[string]string{"trigger": "contactlens", "outcome": "unchanged"})
	}
	unchangedBefore := unchanged()
	for i := 1; i <= 5; i++ {
		republishBody(t, d, d.subjects.ContactLens(instanceID), contactLens(fmt.Sprintf("ev-%d", i), fmt.Sprintf("c0ffee0%d", i), "Contact Lens Post Call Rules Matched"))
	}
	eventually(t, "replays handled", func() bool { return d.processed("summaries", "done") == before+5 })
	if n := unchanged() - unchangedBefore; n != 5 {
		t.Errorf("%v replays found their summary in the record, want 5", n)
	}
	if n := d.processed("summaries", "skipped_duplicate"); n != 0 {
		t.Errorf("%v replays skipped by a ledger summaries does not keep", n)
	}
	after := 0
	for _, id := range []string{id, id2, id3, id4, id5} {
		after += sap.PhoneCall(id).Patches
	}
	if after != patches {
		t.Errorf("replay wrote again: %d patches, was %d", after, patches)
	}
}

// TestSummariesPermanentFailure: SAP refuses with 400; the event goes to
// the DLQ with the reason and requeue brings it back.
func TestSummariesPermanentFailure(t *testing.T) {
	ns := natstest.Embedded(t)
	d, sap, s3 := summariesDeployment(t, ns.ClientURL())
	id := sap.AddPhoneCall("bad00001")
	s3.Put(t, bucket, "Analysis/Voice/2026/11/21/bad00001_analysis_2026-11-21T09:57:00Z.json", analysisFile("Refused."))
	sap.Inject(c4cfake.Fault{Method: "PATCH", Status: http.StatusBadRequest, Times: 1})
	postContactLens(t, d, "ev-bad", "bad00001")
	eventually(t, "dead-lettered", func() bool { return d.processed("summaries", "dead_lettered") == 1 })
	dls := listDLQ(t, d)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1: %+v", len(dls), dls)
	}
	if !expect.All(t,
		expect.Check{Name: "error names SAP's answer", Got: strings.Contains(dls[0].Error, "HTTP 400"), Want: true},
		expect.Check{Name: "processor", Got: dls[0].Processor, Want: "summaries"},
		expect.Check{Name: "deliveries", Got: dls[0].Deliveries, Want: uint64(1)},
	) {
		t.FailNow()
	}
	if sap.PhoneCall(id).Transcript != "" {
		t.Fatal("written despite 400")
	}
	requeue(t, d, dls[0].Seq)
	eventually(t, "written after requeue", func() bool { return sap.PhoneCall(id).Transcript == "Refused." })
}

// TestSummaryReportedFailed: an analysis file whose post-contact summary
// Contact Lens reports FAILED (the documented Status and FailureCode) is a
// counted outcome at the first delivery, not hours of retries, and SAP is
// not touched.
func TestSummaryReportedFailed(t *testing.T) {
	ns := natstest.Embedded(t)
	d, sap, s3 := summariesDeployment(t, ns.ClientURL())
	id := sap.AddPhoneCall("fa11ed01")
	s3.Put(t, bucket, "Analysis/Voice/2026/11/21/fa11ed01_analysis_2026-11-21T09:57:00Z.json",
		[]byte(`{"Version":"1.1.0","Channel":"VOICE","ConversationCharacteristics":{"ContactSummary":{"PostContactSummary":{"Status":"FAILED","FailureCode":"INSUFFICIENT_CONVERSATION_CONTENT"}}}}`))
	before := len(sap.Requests())
	postContactLens(t, d, "ev-failed", "fa11ed01")
	eventually(t, "counted as ignored", func() bool { return d.processed("summaries", "ignored") == 1 })
	if n := d.processed("summaries", "retried"); n != 0 {
		t.Errorf("retried %v times", n)
	}
	var v float64
	for _, reg := range d.procRegs {
		v += metricstest.Value(t, reg, "ccrelay_summaries_unavailable_total", map[string]string{"failure_code": "INSUFFICIENT_CONVERSATION_CONTENT"})
	}
	if v != 1 {
		t.Errorf("ccrelay_summaries_unavailable_total = %v", v)
	}
	if after := len(sap.Requests()); after != before || sap.PhoneCall(id).Transcript != "" {
		t.Errorf("SAP was asked %d times", after-before)
	}
}

// TestSummariesBacklogAfterOutage: SAP answers 503 for a while; events
// pile up, and when SAP is back the backlog drains with nothing lost and
// nothing written twice.
func TestSummariesBacklogAfterOutage(t *testing.T) {
	ns := natstest.Embedded(t)
	d, sap, s3 := summariesDeployment(t, ns.ClientURL())
	sap.Inject(c4cfake.Fault{Path: "/sap/c4c/api", Status: http.StatusServiceUnavailable})
	const n = 40
	ids := make([]string, n)
	for i := 0; i < n; i++ {
		ids[i] = sap.AddPhoneCall(fmt.Sprintf("out%03d", i))
		s3.Put(t, bucket, fmt.Sprintf("Analysis/Voice/2026/11/21/out%03d_analysis_x.json", i), analysisFile(fmt.Sprintf("after outage %d", i)))
		postContactLens(t, d, fmt.Sprintf("out-ev-%d", i), fmt.Sprintf("out%03d", i))
	}
	eventually(t, "retries during the outage", func() bool { return d.processed("summaries", "retried") >= n })
	if d.processed("summaries", "done") != 0 {
		t.Fatal("done while SAP was down")
	}
	sap.ClearFaults()
	eventually(t, "backlog drained", func() bool { return d.processed("summaries", "done") == n })
	for i, id := range ids {
		if pc := sap.PhoneCall(id); pc.Transcript != fmt.Sprintf("after outage %d", i) || pc.Patches != 1 {
			t.Errorf("call %d: %q after %d patches", i, pc.Transcript, pc.Patches)
		}
	}
	if dl := listDLQ(t, d); len(dl) != 0 {
		t.Errorf("%d dead letters after a temporary outage", len(dl))
	}
}
