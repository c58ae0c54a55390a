package process_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
	"github.com/ccrelay/ccrelay/messages"
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

// binaryStreams is the stream configuration the ccrelay binary runs with
// when the test does not set one. A test that creates the streams itself
// while a binary runs must use it: two clients that disagree update the
// stream back and forth, and nats-server races when a stream's
// configuration changes while a consumer is created on it.
func binaryStreams(t *testing.T) messages.StreamConfig {
	t.Helper()
	cfg, err := config.Load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Processors.Streams
}

// embeddedURL is the client URL of a serve's embedded server with the
// password it generated into its data directory (dir/data).
func embeddedURL(t *testing.T, dir string, ready map[string]any) string {
	t.Helper()
	pw, err := os.ReadFile(dir + "/data/nats-password")
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir + "/data/nats-password"); fi.Mode().Perm() != 0o600 {
		t.Errorf("nats-password is %v, want 0600", fi.Mode().Perm())
	}
	u := ready["nats_client_url"].(string)
	return "nats://ccrelay:" + strings.TrimSpace(string(pw)) + "@" + strings.TrimPrefix(u, "nats://")
}

// waitForCount waits until count() reaches want. Bulk work on a shared CI
// machine takes as long as it takes, so it fails only when the count has
// not moved for 30 s: work that stalled, not work that is slow.
func waitForCount(t *testing.T, what string, count func() int, want int) {
	t.Helper()
	last, moved := count(), time.Now()
	for last < want {
		if time.Since(moved) > 30*time.Second {
			t.Fatalf("waiting for %s: stuck at %d of %d for 30 s", what, last, want)
		}
		time.Sleep(50 * time.Millisecond)
		if c := count(); c != last {
			last, moved = c, time.Now()
		}
	}
	if last > want {
		t.Fatalf("waiting for %s: %d, more than the %d there are", what, last, want)
	}
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
	ready := <-p.ready
	p.ready <- ready
	natsURL := embeddedURL(t, dir, ready)
	// Without the password the embedded server refuses the operator.
	if code, _, errOut := runCmd(t, []string{"CCRELAY_NATS_URL=" + ready["nats_client_url"].(string), "CCRELAY_NATS_CONNECT_TIMEOUT=1s"}, "dlq", "list"); code == 0 {
		t.Errorf("dlq list without the password: %d %s", code, errOut)
	}
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
	// Asked-for help goes to stdout.
	code, out, _ := runCmd(t, nil, "process", "--help")
	if code != 0 || !strings.Contains(out, "--processors") || !strings.Contains(out, "CCRELAY_PROCESS_CONCURRENCY") {
		t.Errorf("process --help: %d %s", code, out)
	}
}

func TestReplayCommand(t *testing.T) {
	dir := t.TempDir()
	p := start(t, dir, []string{
		"CCRELAY_HTTP_ADDR=127.0.0.1:0", "CCRELAY_METRICS_ADDR=127.0.0.1:0", "CCRELAY_NATS_LISTEN=127.0.0.1:0",
		"CCRELAY_DATA_DIR=" + dir + "/data", "CCRELAY_SINCH_WEBHOOK_SECRETS=svc:" + secret,
	}, "serve", "--processors", "deliveries")
	body := []byte(`{"app_id":"APP","event_time":"2026-11-21T10:00:00Z","message_delivery_report":{"message_id":"01R","status":"READ","channel_identity":{"channel":"SMS","identity":"46","app_id":"APP"}}}`)
	if status, answer, err := post(http.DefaultClient, p.addr("http")+"/v1/sinch/svc", body); err != nil || status != 202 {
		t.Fatalf("%d %s %v", status, answer, err)
	}
	count := func(outcome string) string {
		for _, l := range strings.Split(metricsText(t, p), "\n") {
			if strings.HasPrefix(l, `ccrelay_processor_messages_total{outcome="`+outcome+`",processor="deliveries"}`) {
				return l[strings.LastIndexByte(l, ' ')+1:]
			}
		}
		return "0"
	}
	waitFor(t, "processed", func() bool { return count("done") == "1" })
	ready := <-p.ready
	p.ready <- ready
	env := []string{"PATH=" + os.Getenv("PATH"), "CCRELAY_NATS_URL=" + embeddedURL(t, dir, ready)}

	code, out, errOut := runCmd(t, env, "replay", "--subject", "ccrelay.in.sinch.>", "--since", "1h", "--dry-run")
	if code != 0 || !strings.Contains(out, "would replay 1 events") || !strings.Contains(out, "ccrelay.in.sinch.message_delivery.svc.APP") {
		t.Fatalf("dry run: %d %s %s", code, out, errOut)
	}
	code, out, _ = runCmd(t, env, "replay", "--subject", "ccrelay.in.sinch.>", "--since", "1h")
	if code != 0 || !strings.Contains(out, "replayed 1 events") {
		t.Fatalf("replay: %d %s", code, out)
	}
	// deliveries keeps no ledger (it is idempotent): the copy is applied
	// again, to the same status.
	waitFor(t, "replay applied again", func() bool { return count("done") == "2" })
	if n := count("skipped_duplicate"); n != "0" {
		t.Errorf("%s replays skipped by a ledger deliveries does not keep", n)
	}
	code, out, _ = runCmd(t, env, "replay", "--subject", "ccrelay.in.sinch.>", "--since", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), "--force", "--processors", "deliveries")
	if code != 0 || !strings.Contains(out, "ledger entries removed for 2 events") {
		t.Fatalf("forced replay: %d %s", code, out)
	}
	// The window holds the original and the first replay's copy: both are
	// forced, so the work is done at least once more.
	waitFor(t, "forced replay done again", func() bool { n, _ := strconv.Atoi(count("done")); return n >= 4 })
	if code, out, _ := runCmd(t, env, "replay", "--subject", "ccrelay.in.connect.>", "--since", "1h"); code != 0 || !strings.Contains(out, "nothing stored") {
		t.Errorf("empty window: %d %s", code, out)
	}
	for _, bad := range [][]string{{"replay"}, {"replay", "--subject", "x.>", "--since", "1h"}, {"replay", "--subject", "ccrelay.in.>", "--since", "yesterday"}} {
		if code, _, _ := runCmd(t, env, bad...); code != 2 {
			t.Errorf("%v: exit %d", bad, code)
		}
	}
	_ = p.stop(t, syscall.SIGTERM)
}
