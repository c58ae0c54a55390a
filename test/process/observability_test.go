package process_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/messages/signature"
	"github.com/ccrelay/ccrelay/test/fakes/c4cfake"
	"github.com/ccrelay/ccrelay/test/fakes/cmifake"
	"github.com/ccrelay/ccrelay/test/fakes/cpfake"
	"github.com/ccrelay/ccrelay/test/fakes/mediafake"
	"github.com/ccrelay/ccrelay/test/fakes/s3fake"
	"github.com/ccrelay/ccrelay/test/natstest"
	"github.com/ccrelay/ccrelay/test/sinchtest"
)

// repoFile is a path in the repository.
func repoFile(parts ...string) string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(append([]string{filepath.Dir(here), "..", ".."}, parts...)...)
}

func needTool(t *testing.T, name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: apt-get install prometheus (bash .ci/run installs it)", name)
	}
	return p
}

func TestPromtool(t *testing.T) {
	promtool := needTool(t, "promtool")
	for _, args := range [][]string{
		{"check", "config", repoFile("deploy", "prometheus", "prometheus.yml")},
		{"check", "rules", repoFile("deploy", "prometheus", "alerts.yml")},
		{"test", "rules", repoFile("deploy", "prometheus", "alerts_test.yml")},
	} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type promResult struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		Result json.RawMessage `json:"result"`
		Groups []struct {
			Rules []struct {
				Name   string `json:"name"`
				Health string `json:"health"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"data"`
}

func promGet(t *testing.T, base, path string, q url.Values) promResult {
	res, err := http.Get(base + path + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var r promResult
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestDashboardAndAlertsAgainstPrometheus runs ccrelay under load through
// all adapters and processors, scraped by a real Prometheus, and evaluates
// every expression of the dashboard (each must return data) and of the
// alert rules (each must parse and evaluate).
func TestDashboardAndAlertsAgainstPrometheus(t *testing.T) {
	prom := needTool(t, "prometheus")
	ns := natstest.Embedded(t)
	sap := c4cfake.New(t, "v1user", "c4c-pass")
	cmi := cmifake.New(t, "cmi-user", "cmi-pass", "cmi-key")
	media := mediafake.New(t)
	s3 := s3fake.New(t, bucket)
	twilioSvc := cpfake.Service{Type: "twilio", Name: "us", Secret: "twilio-token"}
	cp := cpfake.New(t, "ext", "ext-password", twilioSvc)
	cp.Down(http.StatusServiceUnavailable) // for the first seconds: failed, held, then a backlog that drains
	dir := t.TempDir()
	p := start(t, dir, []string{
		"CCRELAY_NATS_URL=" + ns.ClientURL(), "CCRELAY_HTTP_ADDR=127.0.0.1:0", "CCRELAY_METRICS_ADDR=127.0.0.1:0",
		"CCRELAY_SINCH_WEBHOOK_SECRETS=svc:" + secret, "CCRELAY_CONTACTPRO_API_KEYS=cp-key", "CCRELAY_CONNECT_API_KEYS=cn-key",
		"CCRELAY_C4C_URL=" + sap.URL, "CCRELAY_C4C_USER=v1user", "CCRELAY_C4C_PASSWORD=c4c-pass",
		"CCRELAY_CMI_URL=" + cmi.CMIURL(), "CCRELAY_CMI_USER=cmi-user", "CCRELAY_CMI_PASSWORD=cmi-pass", "CCRELAY_CMI_API_KEY=cmi-key",
		"CCRELAY_CONNECT_BUCKET=" + bucket, "CCRELAY_S3_ENDPOINT=" + s3.URL,
		"AWS_ACCESS_KEY_ID=" + s3fake.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s3fake.SecretKey,
		"CCRELAY_PROCESS_BACKOFF=200ms", "CCRELAY_PROCESS_MAX_DELIVER=3",
		"CCRELAY_SUMMARIES_RECONCILE_EVERY=1s", "CCRELAY_SUMMARIES_RECONCILE_GRACE=0s",
		"CCRELAY_PUBLIC_URL=https://relay.example.com", "CCRELAY_MESSAGING_SECRETS=twilio/us:twilio-token",
		"CCRELAY_FORWARD_URLS=twilio/us=" + cp.URLOf(twilioSvc), "CCRELAY_FORWARD_BASIC_USERS=twilio/us=ext:ext-password",
		"CCRELAY_FORWARD_BACKOFF=200ms",
	}, "serve")
	metricsAddr := strings.TrimPrefix(p.addr("metrics"), "http://")
	ingest := p.addr("http")

	// Prometheus scraping every second, with the real alert rules.
	rules := filepath.Join(dir, "alerts.yml")
	b, _ := os.ReadFile(repoFile("deploy", "prometheus", "alerts.yml"))
	_ = os.WriteFile(rules, b, 0o644)
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [%q]\nscrape_configs:\n  - job_name: ccrelay-serve\n    static_configs:\n      - targets: [%q]\n", rules, metricsAddr)
	_ = os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644)
	promAddr := freePort(t)
	pc := exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	var promLog bytes.Buffer
	pc.Stderr = &promLog
	if err := pc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Process.Signal(syscall.SIGTERM); _ = pc.Wait() })
	base := "http://" + promAddr
	// The load must start after Prometheus scrapes. CI once saw every
	// expression come back empty, the process's own memory included: no
	// scrape had succeeded by the end of a ten-second load on a loaded
	// runner. A Prometheus that scrapes nothing in two minutes fails.
	for deadline := time.Now().Add(2 * time.Minute); promScrapes(base) < 1; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus did not scrape ccrelay within 2 minutes\n%s", promLog.String())
		}
	}

	// Load through all three adapters and all processors, errors included.
	client := &http.Client{Timeout: 10 * time.Second}
	send := func(path string, h http.Header, body []byte) {
		req, _ := http.NewRequest("POST", ingest+path, bytes.NewReader(body))
		req.Header = h
		if res, err := client.Do(req); err == nil {
			res.Body.Close()
		}
	}
	json := func(extra ...string) http.Header {
		h := http.Header{"Content-Type": {"application/json"}}
		for i := 0; i+1 < len(extra); i += 2 {
			h.Set(extra[i], extra[i+1])
		}
		return h
	}
	sap.Inject(c4cfake.Fault{Method: "PATCH", Status: http.StatusServiceUnavailable, Times: 3})
	pdf := media.Put("/m/doc.pdf", mediafake.File{Content: []byte("%PDF"), ContentType: "application/pdf"})
	// A fixed number of rounds, not a time budget: Contact Pro comes back
	// at round 30 and the relay must then deliver more than 40 messages,
	// however slow the machine (a loaded CI runner did fewer than 30
	// rounds in 8 s, so Contact Pro never came back).
	for i := range 50 {
		text := sinchtest.InboundText(fmt.Sprintf("OBS%d", i), time.Now())
		send("/v1/sinch/svc", signer.Headers(text, time.Now()), text)
		send("/v1/sinch/svc", signer.Headers(text, time.Now()), text) // a duplicate
		send("/v1/sinch/svc", json(), text)                           // unsigned: refused
		mediaBody := fmt.Appendf(nil, `{"app_id":"APP","message":{"id":"OBSM%d","contact_message":{"media_message":{"url":%q}}}}`, i, pdf)
		send("/v1/sinch/svc", signer.Headers(mediaBody, time.Now()), mediaBody)
		dr := fmt.Appendf(nil, `{"app_id":"APP","event_time":"2026-11-21T10:00:00Z","message_delivery_report":{"message_id":"OBSD%d","status":"DELIVERED","channel_identity":{"channel":"SMS","identity":"4","app_id":"APP"}}}`, i)
		send("/v1/sinch/svc", signer.Headers(dr, time.Now()), dr)
		contact := fmt.Sprintf("obs-%d", i)
		if i%5 == 0 {
			cmi.AddChat(cmifake.Chat{ContactID: contact, QueueAddress: "APP@whatsapp.sinchconversation.com", Messages: []cmifake.Message{
				{ID: "m", ExternalID: fmt.Sprintf("OBSM%d", i), Attachments: []cmifake.File{{ID: "a", Name: "doc.pdf", MimeType: "application/pdf", Content: []byte("%PDF")}}}}})
			sap.AddChatActivity(contact)
			send("/v1/contactpro/chat-attachments/ended", json("x-api-key", "cp-key"), fmt.Appendf(nil, `{"contact_id":%q}`, contact))
			sap.AddPhoneCall(contact)
			s3.Put(t, bucket, "Analysis/Voice/2026/11/21/"+contact+"_analysis_x.json", analysis("obs"))
			send("/v1/connect/events", json("x-api-key", "cn-key"), contactLensEvent("obs-ev-"+contact, contact))
		}
		form := url.Values{"MessageSid": {fmt.Sprintf("SM%032x", i)}, "From": {fmt.Sprintf("+4915100%d", i%7)}, "Body": {"hi"}}
		fb := []byte(form.Encode())
		send("/v1/messaging/twilio/us", http.Header{"Content-Type": {"application/x-www-form-urlencoded"},
			signature.HeaderTwilioSignature: {signature.TwilioSign("twilio-token", "https://relay.example.com/v1/messaging/twilio/us", form)}}, fb)
		if i == 30 {
			cp.Up()
		}
		if i == 3 { // no call record and no file: retried, then dead-lettered
			send("/v1/connect/events", json("x-api-key", "cn-key"), contactLensEvent("obs-missing", "nobody"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitFor(t, "a dead letter", func() bool {
		return strings.Contains(metricsText(t, p), `ccrelay_dlq_messages{processor="summaries"} `) &&
			!strings.Contains(metricsText(t, p), `ccrelay_dlq_messages{processor="summaries"} 0`)
	})
	waitFor(t, "the relay's backlog delivered", func() bool { return len(cp.Received()) > 40 })
	// A few more scrapes after the last changes, however slow they come.
	scraped := promScrapes(base)
	waitFor(t, "three more scrapes", func() bool { return promScrapes(base) >= scraped+3 })

	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	db, _ := os.ReadFile(repoFile("deploy", "grafana", "dashboards", "ccrelay.json"))
	if err := jsonUnmarshal(db, &dash); err != nil {
		t.Fatal(err)
	}
	grafana := strings.NewReplacer("$instance", ".*", "$processor", ".*", "$__rate_interval", "30s")
	exprs := 0
	for _, panel := range dash.Panels {
		for _, target := range panel.Targets {
			exprs++
			q := grafana.Replace(target.Expr)
			r := promGet(t, base, "/api/v1/query", url.Values{"query": {q}})
			if r.Status != "success" {
				t.Errorf("%s: %s does not evaluate: %s", panel.Title, q, r.Error)
				continue
			}
			if len(r.Data.Result) < 3 || string(r.Data.Result) == "[]" {
				t.Errorf("%s: %s returns no data", panel.Title, q)
			}
		}
	}
	rulesRes := promGet(t, base, "/api/v1/rules", nil)
	loaded := 0
	for _, g := range rulesRes.Data.Groups {
		for _, r := range g.Rules {
			loaded++
			if r.Health != "ok" {
				t.Errorf("alert %s: health %s", r.Name, r.Health)
			}
		}
	}
	if want := strings.Count(string(b), "- alert:"); loaded != want {
		t.Errorf("%d alert rules loaded, want the %d of alerts.yml\n%s", loaded, want, promLog.String())
	}
	t.Logf("%d dashboard expressions returned data; %d alert rules evaluate", exprs, loaded)
	_ = p.stop(t, syscall.SIGTERM)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// promScrapes is how many times Prometheus has scraped ccrelay
// successfully so far; 0 while it cannot tell (not up yet).
func promScrapes(base string) int {
	q := url.Values{"query": {`sum_over_time(up{job="ccrelay-serve"}[1h])`}}
	res, err := http.Get(base + "/api/v1/query?" + q.Encode())
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if json.NewDecoder(res.Body).Decode(&r) != nil || len(r.Data.Result) == 0 {
		return 0
	}
	v, _ := r.Data.Result[0].Value[1].(string)
	n, _ := strconv.ParseFloat(v, 64)
	return int(n)
}
