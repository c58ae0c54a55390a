package process_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func metricsText(t *testing.T, p *proc) string {
	t.Helper()
	res, err := http.Get(p.addr("metrics") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServeProcessesDeliveries: a delivery report sent to 'ccrelay serve'
// is processed in the same process, and the dlq command reads the
// embedded server of the running serve.
func TestServeProcessesDeliveries(t *testing.T) {
	dir := t.TempDir()
	p := start(t, dir, []string{
		"CCRELAY_HTTP_ADDR=127.0.0.1:0", "CCRELAY_METRICS_ADDR=127.0.0.1:0", "CCRELAY_NATS_LISTEN=127.0.0.1:0",
		"CCRELAY_DATA_DIR=" + dir + "/data", "CCRELAY_SINCH_WEBHOOK_SECRETS=svc:" + secret,
	}, "serve")
	body := fmt.Appendf(nil, `{"app_id":"APP","event_time":"2026-11-21T10:00:00Z","message_delivery_report":{"message_id":"01OUT","status":"DELIVERED",
"channel_identity":{"channel":"SMS","identity":"46","app_id":"APP"}}}`)
	status, answer, err := post(http.DefaultClient, p.addr("http")+"/v1/sinch/svc", body)
	if err != nil || status != 202 {
		t.Fatalf("%d %s %v", status, answer, err)
	}
	waitFor(t, "the report processed", func() bool {
		m := metricsText(t, p)
		return strings.Contains(m, `ccrelay_processor_messages_total{outcome="done",processor="deliveries"} 1`) &&
			strings.Contains(m, `ccrelay_delivery_reports_total{channel="SMS",reason="none",status="DELIVERED"} 1`)
	})
	m := metricsText(t, p)
	for _, want := range []string{`ccrelay_processor_consumer_pending{processor="deliveries"} 0`, `ccrelay_dlq_messages{processor="deliveries"} 0`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	natsURL := (<-p.ready)["nats_client_url"].(string)
	code, out, errOut := runCmd(t, []string{"CCRELAY_NATS_URL=" + natsURL}, "dlq", "list")
	if code != 0 || !strings.Contains(out, "0 dead letters") {
		t.Errorf("dlq list: %d %s %s", code, out, errOut)
	}
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.log())
	}
}

func TestProcessCommandChecks(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"process"}, nil, "CCRELAY_NATS_URL: required by 'ccrelay process'"},
		{[]string{"process", "--processors", "nope"}, nil, `unknown processor "nope"`},
		{[]string{"dlq"}, nil, "Usage:"},
		{[]string{"dlq", "requeue"}, nil, "give --seq, or --all with --processor"},
		{[]string{"dlq", "requeue", "--all"}, nil, "give --seq, or --all with --processor"},
		{[]string{"dlq", "requeue", "--seq", "x"}, nil, "not a sequence number"},
	} {
		code, out, errOut := runCmd(t, append([]string{"PATH=" + os.Getenv("PATH")}, c.env...), c.args...)
		if code != 2 || !strings.Contains(out+errOut, c.want) {
			t.Errorf("%v: %d %q", c.args, code, out+errOut)
		}
	}
	code, _, errOut := runCmd(t, nil, "process", "--help")
	if code != 0 || !strings.Contains(errOut, "-processors") || !strings.Contains(errOut, "CCRELAY_PROCESS_CONCURRENCY") {
		t.Errorf("process --help: %d %s", code, errOut)
	}
}
