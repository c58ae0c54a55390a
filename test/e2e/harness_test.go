package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/cmd/ccrelay/config"
	"github.com/ccrelay/ccrelay/ingest"
	"github.com/ccrelay/ccrelay/ingest/server"
	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors/service"
	"github.com/ccrelay/ccrelay/test/logtest"
	"github.com/ccrelay/ccrelay/test/metricstest"
	"github.com/ccrelay/ccrelay/test/natstest"
	"github.com/ccrelay/ccrelay/test/sinchtest"
)

// Credentials every test deployment is configured with. The suite checks
// that none of them ever reaches a log line or a stored message in clear.
const (
	sinchSecret   = "sinch-webhook-secret-1"
	cpAPIKey      = "contactpro-api-key-1"
	cpUser        = "cpuser"
	cpPassword    = "cp-basic-password-1"
	oauthClient   = "contactpro"
	oauthSecret   = "oauth-client-secret-1"
	connectAPIKey = "connect-api-key-1"
	ebUser        = "eventbridge"
	ebPassword    = "eb-basic-password-1"
	sealKey       = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	cmiAPIKey     = "cmi-api-key-in-header"
	cmiPassword   = "cmi-password-in-header"
	sapPassword   = "sap-password-in-header"
)

func secrets() []string {
	return []string{twilioToken, fbAppSecret, fbVerifyToken, smsSecret, wavyPassword, social365Key, cpExtPassword, sinchSecret, cpAPIKey, cpPassword, oauthSecret, connectAPIKey, ebPassword, cmiAPIKey, cmiPassword, sapPassword, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}
}

var prefixSeq atomic.Int64 // distinct subject prefix per deployment in one test binary

// deployment is one ccrelay ingest (or several replicas) on a real NATS
// server, served over real HTTP.
type deployment struct {
	t        testing.TB
	js       jetstream.JetStream
	subjects messages.Subjects
	settings server.Settings
	urls     []string
	regs     []*prometheus.Registry
	logs     *syncBuffer
	client   *http.Client
	handlers []http.Handler
	cfg      *config.Config
	natsURL  string
	logger   *slog.Logger
	procRegs []*prometheus.Registry
	// now is the processors' clock; nil is the machine's.
	now func() time.Time
	// patterns are the routes the ingest server registered.
	patterns []string
}

// startProcessors runs the named processors on the deployment's NATS
// server, in process, until the test ends.
func (d *deployment) startProcessors(names ...string) (stop func()) {
	d.t.Helper()
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	rt, err := service.New(ctx, d.cfg.Processors, names, service.Deps{
		JS: d.js, Connect: func() (*nats.Conn, error) {
			return nats.Connect(d.natsURL, nats.IgnoreDiscoveredServers(), nats.MaxReconnects(-1))
		}, Registry: reg, Logger: d.logger, Now: d.now,
	})
	if err != nil {
		cancel()
		d.t.Fatalf("processors: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				d.t.Errorf("processors stopped: %v", err)
			}
		})
	}
	d.t.Cleanup(stop)
	d.procRegs = append(d.procRegs, reg)
	return stop
}

// processed is the count of a processor's outcome across runtimes.
func (d *deployment) processed(processor, outcome string) float64 {
	var sum float64
	for _, reg := range d.procRegs {
		sum += metricstest.Value(d.t, reg, "ccrelay_processor_messages_total", map[string]string{"processor": processor, "outcome": outcome})
	}
	return sum
}

// procMetric sums a metric of the deployment's processors.
func (d *deployment) procMetric(name string, labels map[string]string) float64 {
	var sum float64
	for _, reg := range d.procRegs {
		sum += metricstest.Value(d.t, reg, name, labels)
	}
	return sum
}

// eventually polls cond until it holds or 30 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deployB is one replica for benchmarks, used through its handler.
func deployB(b *testing.B, natsURL string, extra ...string) http.Handler {
	return deploy(b, natsURL, 1, extra...).handlers[0]
}

// syncBuffer collects a deployment's logs.
type syncBuffer = logtest.Buffer

// deploy starts replicas ingest servers sharing natsURL, configured from
// environment-style settings (defaults plus extra), through the same
// loader and assembly as the binary.
func deploy(t testing.TB, natsURL string, replicas int, extra ...string) *deployment {
	t.Helper()
	prefix := fmt.Sprintf("t%d", prefixSeq.Add(1))
	environ := []string{
		"CCRELAY_NATS_URL=" + natsURL,
		"CCRELAY_SUBJECT_PREFIX=" + prefix,
		"CCRELAY_SINCH_WEBHOOK_SECRETS=svc1:" + sinchSecret,
		"CCRELAY_CONTACTPRO_API_KEYS=" + cpAPIKey,
		"CCRELAY_CONTACTPRO_BASIC_USERS=" + cpUser + ":" + cpPassword,
		"CCRELAY_OAUTH_CLIENTS=" + oauthClient + "@contactpro+connect:" + oauthSecret,
		"CCRELAY_CONNECT_API_KEYS=" + connectAPIKey,
		"CCRELAY_CONNECT_BASIC_USERS=" + ebUser + ":" + ebPassword,
		"CCRELAY_SEAL_KEYS=" + sealKey,
		"CCRELAY_MAX_BODY_BYTES=16384",
		"CCRELAY_LOG_LEVEL=debug",
		// Tests refuse credentials by the hundred from one address; the
		// slowing down of that has tests of its own, which lower it.
		"CCRELAY_AUTH_FAILURE_BURST=1000000",
	}
	environ = append(environ, extra...)
	cfg, err := config.Load(environ, nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	nc, js := natstest.Connect(t, natsURL)
	subjects, err := messages.NewSubjects(prefix)
	if err != nil {
		t.Fatal(err)
	}
	d := &deployment{t: t, js: js, subjects: subjects, settings: cfg.Ingest, logs: &syncBuffer{}, client: &http.Client{Timeout: 20 * time.Second}, cfg: cfg, natsURL: natsURL}
	logger := slog.New(slog.NewJSONHandler(d.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d.logger = logger
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for i := 0; i < replicas; i++ {
		// Each replica has its own connection, as separate processes would.
		rnc, rjs := natstest.Connect(t, natsURL)
		reg := prometheus.NewRegistry()
		srv, err := server.Assemble(ctx, provision.Waiter{}, cfg.Ingest, ingest.Fixed{JS: rjs, Conn: rnc}, nc.MaxPayload(), reg, logger)
		if err != nil {
			t.Fatalf("assemble: %v", err)
		}
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(hs.Close)
		d.urls = append(d.urls, hs.URL)
		d.regs = append(d.regs, reg)
		d.handlers = append(d.handlers, srv.Handler())
		d.patterns = srv.Patterns()
	}
	t.Cleanup(func() {
		logs := d.logs.String()
		if t.Failed() {
			t.Logf("the deployment's last warnings and errors:\n%s", warnings(logs))
		}
		for _, s := range secrets() {
			if strings.Contains(logs, s) {
				t.Errorf("a secret reached the logs: %q", s)
			}
		}
	})
	return d
}

// warnings is the last 200 WARN and ERROR lines of logs: a failure's cause.
func warnings(logs string) string {
	var keep []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
			keep = append(keep, l)
		}
	}
	if len(keep) > 200 {
		keep = keep[len(keep)-200:]
	}
	return strings.Join(keep, "\n")
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, r.body)
	}
	return m
}

// code returns the code of a JSON error answer.
func (r response) code(t testing.TB) string {
	t.Helper()
	c, _ := r.json(t)["code"].(string)
	return c
}

func (d *deployment) do(replica int, method, path string, header http.Header, body []byte) response {
	d.t.Helper()
	req, err := http.NewRequest(method, d.urls[replica]+path, bytes.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	res, err := d.client.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		d.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func (d *deployment) post(path string, header http.Header, body []byte) response {
	d.t.Helper()
	return d.do(0, http.MethodPost, path, header, body)
}

var signer = &sinchtest.Signer{Secret: sinchSecret}

// signed returns the headers Sinch sends with body, signed with secret.
func signed(secret string, body []byte, at time.Time) http.Header {
	if secret == sinchSecret {
		return signer.Headers(body, at)
	}
	return (&sinchtest.Signer{Secret: secret}).Headers(body, at)
}

// stored reads back the message an answer points to.
func (d *deployment) stored(r response) *jetstream.RawStreamMsg {
	d.t.Helper()
	m := r.json(d.t)
	seq, ok := m["seq"].(float64)
	if !ok {
		d.t.Fatalf("answer has no seq: %s", r.body)
	}
	st, err := d.js.Stream(context.Background(), d.subjects.EventsStream())
	if err != nil {
		d.t.Fatal(err)
	}
	msg, err := st.GetMsg(context.Background(), uint64(seq))
	if err != nil {
		d.t.Fatalf("get seq %v: %v", seq, err)
	}
	for _, s := range secrets() {
		if bytes.Contains(msg.Data, []byte(s)) {
			d.t.Errorf("secret %q stored in a body", s)
		}
		for k, vs := range msg.Header {
			for _, v := range vs {
				if strings.Contains(v, s) {
					d.t.Errorf("secret %q stored in header %s", s, k)
				}
			}
		}
	}
	return msg
}

// count is the number of events stored.
func (d *deployment) count() uint64 {
	d.t.Helper()
	st, err := d.js.Stream(context.Background(), d.subjects.EventsStream())
	if err != nil {
		d.t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	return info.State.Msgs
}

// metric returns the value of a series summed over replicas.
func (d *deployment) metric(name string, labels map[string]string) float64 {
	d.t.Helper()
	var sum float64
	for _, reg := range d.regs {
		sum += metricstest.Value(d.t, reg, name, labels)
	}
	return sum
}

func jsonHeader() http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	return h
}

func timeNow() time.Time { return time.Now() }
