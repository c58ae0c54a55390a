package process_test

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ccrelay/ccrelay/test/natstest"
)

// pullErrors sums ccrelay_processor_pulls_total{result="error"} over the
// processors.
func pullErrors(t *testing.T, p *proc) int {
	n := 0
	for _, l := range strings.Split(metricsText(t, p), "\n") {
		if strings.HasPrefix(l, "ccrelay_processor_pulls_total{") && strings.Contains(l, `result="error"`) {
			v, _ := strconv.Atoi(l[strings.LastIndexByte(l, ' ')+1:])
			n += v
		}
	}
	return n
}

// TestNATSOutageLoggedOnce runs 'ccrelay serve' (ingest and every
// processor, each on its own connection) against a NATS server that goes
// away, comes back without JetStream for a few seconds (every pull fails at
// once, "no responders"), then comes back whole. The process logs the
// outage once, one WARN when it begins and one INFO when it ends with how
// long it lasted and how many attempts failed, not a WARN per connection,
// per processor and per second; and it works again afterwards.
func TestNATSOutageLoggedOnce(t *testing.T) {
	dir, port := t.TempDir(), natstest.FreePort(t)
	store := filepath.Join(dir, "jetstream")
	ns, err := natstest.Start(store, port)
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, dir, []string{
		"CCRELAY_NATS_URL=" + ns.ClientURL(), "CCRELAY_HTTP_ADDR=127.0.0.1:0", "CCRELAY_METRICS_ADDR=127.0.0.1:0",
		"CCRELAY_SINCH_WEBHOOK_SECRETS=svc:" + secret,
	}, "serve")
	waitFor(t, "the processors", func() bool { return strings.Count(p.log(), `"processor started"`) == 3 })
	before := len(p.log())

	natstest.Stop(ns)
	time.Sleep(time.Second)
	plain, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	plain.Start()
	if !plain.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server without JetStream not ready")
	}
	// Three processors, three failed pulls each: three seconds of the
	// old WARN a second per processor.
	base := pullErrors(t, p)
	waitFor(t, "pulls failing", func() bool { return pullErrors(t, p) >= base+9 })
	natstest.Stop(plain)
	if ns, err = natstest.Start(store, port); err != nil {
		t.Fatal(err)
	}
	defer natstest.Stop(ns)
	waitFor(t, "nats available again", func() bool { return strings.Contains(p.log()[before:], `"nats available again"`) })

	logs := p.log()[before:]
	if n := countLines(logs, `"level":"WARN"`); n != 1 || countLines(logs, `"level":"WARN"`, `"msg":"nats unavailable`) != 1 {
		t.Errorf("%d WARN lines during the outage, want one saying nats is unavailable:\n%s", n, logs)
	}
	if n := countLines(logs, `"level":"ERROR"`); n != 0 {
		t.Errorf("%d ERROR lines during the outage:\n%s", n, logs)
	}
	if n := countLines(logs, `"msg":"nats available again"`); n != 1 {
		t.Errorf("%d lines saying nats is back, want 1:\n%s", n, logs)
	}
	for _, l := range strings.Split(logs, "\n") {
		var m struct {
			Msg      string  `json:"msg"`
			Level    string  `json:"level"`
			Outage   string  `json:"outage"`
			Attempts float64 `json:"failed_attempts"`
		}
		if json.Unmarshal([]byte(l), &m) != nil || m.Msg != "nats available again" {
			continue
		}
		d, err := time.ParseDuration(m.Outage)
		if m.Level != "INFO" || err != nil || d < 3*time.Second || m.Attempts < 9 {
			t.Errorf("end of the outage: %s; want INFO, an outage of over 3s and at least 9 failed attempts", l)
		}
	}

	// The outage is over for the processors too: a delivery report is
	// stored and processed.
	body := []byte(`{"app_id":"APP","event_time":"2026-11-21T10:00:00Z","message_delivery_report":{"message_id":"01OUTAGE","status":"DELIVERED","channel_identity":{"channel":"SMS","identity":"46","app_id":"APP"}}}`)
	waitFor(t, "the report stored", func() bool {
		status, _, err := post(http.DefaultClient, p.addr("http")+"/v1/sinch/svc", body)
		return err == nil && (status == http.StatusAccepted || status == http.StatusOK)
	})
	waitFor(t, "the report processed", func() bool {
		return strings.Contains(metricsText(t, p), `ccrelay_processor_messages_total{outcome="done",processor="deliveries"} 1`)
	})
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.log())
	}
}
