package process_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/test/natstest"
	"github.com/ccrelay/ccrelay/test/sinchtest"
)

const secret = "process-test-secret"

var signer = &sinchtest.Signer{Secret: secret}

func post(c *http.Client, url string, body []byte) (int, string, error) {
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header = signer.Headers(body, time.Now())
	res, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), nil
}

// TestServeWithoutConfiguration is the README's first command: no settings
// at all, embedded NATS storing under ./data, ingest on :8080, metrics on
// :9090, and a clean stop on SIGINT.
func TestServeWithoutConfiguration(t *testing.T) {
	dir := t.TempDir()
	p := start(t, dir, nil, "serve")
	for _, u := range []string{"http://127.0.0.1:8080/healthz", "http://127.0.0.1:8080/readyz", "http://127.0.0.1:9090/metrics"} {
		res, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("%s: %d %s", u, res.StatusCode, b)
		}
		if strings.HasSuffix(u, "/metrics") {
			for _, m := range []string{"ccrelay_build_info", "go_goroutines", "process_resident_memory_bytes", "ccrelay_ingest_in_flight_requests"} {
				if !bytes.Contains(b, []byte(m)) {
					t.Errorf("metrics lack %s", m)
				}
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "jetstream")); err != nil {
		t.Errorf("no ./data/jetstream: %v", err)
	}
	if err := p.stop(t, syscall.SIGINT); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.log())
	}
	logs := p.log()
	// A first run says which endpoints refuse everything, and what to set.
	for _, want := range []string{"CCRELAY_SINCH_WEBHOOK_SECRETS", "CCRELAY_CONTACTPRO_API_KEYS", "CCRELAY_CONNECT_API_KEYS"} {
		if n := countLines(logs, `"level":"WARN"`, want); n != 1 {
			t.Errorf("%d WARN lines naming %s, want 1:\n%s", n, want, logs)
		}
	}
	// The embedded server's banner stays out of an info-level log.
	if strings.Contains(logs, `"component":"nats-server"`) {
		t.Errorf("embedded server notices at info level:\n%s", logs)
	}
	if lines := strings.Count(logs, "\n"); lines > 15 {
		t.Errorf("%d log lines for a start and a stop:\n%s", lines, logs)
	}
}

// countLines counts the lines of logs that hold every one of parts.
func countLines(logs string, parts ...string) int {
	n := 0
	for _, l := range strings.Split(logs, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			n++
		}
	}
	return n
}

// TestServeDemo runs 'ccrelay serve --demo' and pastes what it prints
// into a shell, as its reader would: every request is stored (202).
func TestServeDemo(t *testing.T) {
	dir := t.TempDir()
	p := start(t, dir, []string{"CCRELAY_HTTP_ADDR=127.0.0.1:0", "CCRELAY_METRICS_ADDR=127.0.0.1:0", "CCRELAY_NATS_LISTEN=127.0.0.1:0"}, "serve", "--demo")
	waitFor(t, "the demo instructions", func() bool { return strings.Contains(p.stdout(), "# Amazon Connect") })
	printed := p.stdout()
	for _, v := range []string{"CCRELAY_SINCH_WEBHOOK_SECRETS=demo:", "CCRELAY_CONTACTPRO_API_KEYS=", "CCRELAY_OAUTH_CLIENTS=demo@contactpro+connect:", "CCRELAY_SEAL_KEYS=demo:"} {
		if !strings.Contains(printed, v) {
			t.Errorf("demo output lacks %s:\n%s", v, printed)
		}
	}
	if strings.Contains(p.log(), `"level":"WARN","msg":"sinch: no webhook secret`) {
		t.Errorf("demo mode still warns that nothing is configured:\n%s", p.log())
	}
	script := printed[strings.Index(printed, "# Sinch"):]
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pasting the demo's requests: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "HTTP/1.1 202 Accepted"); n != 4 {
		t.Errorf("%d requests stored, want 4 (sinch, contact pro twice, connect):\n%s", n, out)
	}
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.log())
	}
}

// TestIngestReplicasAnswerReplaysAsDuplicates runs two 'ccrelay ingest'
// processes on one NATS server: a request stored by one, replayed at the
// other, is answered as the duplicate it is and not stored again.
func TestIngestReplicasAnswerReplaysAsDuplicates(t *testing.T) {
	ns := natstest.Embedded(t)
	env := []string{
		"CCRELAY_NATS_URL=" + ns.ClientURL(),
		"CCRELAY_HTTP_ADDR=127.0.0.1:0", "CCRELAY_METRICS_ADDR=127.0.0.1:0",
		"CCRELAY_SINCH_WEBHOOK_SECRETS=svc:" + secret,
	}
	a, b := start(t, t.TempDir(), env, "ingest"), start(t, t.TempDir(), env, "ingest")
	body := sinchtest.InboundText("01PROCESSREPLICA", time.Now())
	h := signer.Headers(body, time.Now())
	send := func(p *proc) int {
		req, _ := http.NewRequest("POST", p.addr("http")+"/v1/sinch/svc", bytes.NewReader(body))
		req.Header = h.Clone()
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if s := send(a); s != 202 {
		t.Fatalf("replica a: %d\n%s", s, a.log())
	}
	if s := send(b); s != 200 {
		t.Fatalf("replica b answered a replay %d, want 200 (a duplicate)", s)
	}
	for _, p := range []*proc{a, b} {
		if err := p.stop(t, syscall.SIGTERM); err != nil {
			t.Errorf("exit: %v", err)
		}
	}
	if strings.Contains(a.log()+b.log(), secret) {
		t.Error("the webhook secret reached the logs")
	}
}

// TestSIGTERMUnderLoad stops 'ccrelay serve' while 16 clients keep sending,
// then opens its data directory again: every event that was answered 2xx
// is stored.
func TestSIGTERMUnderLoad(t *testing.T) {
	dir := t.TempDir()
	env := []string{
		"CCRELAY_HTTP_ADDR=127.0.0.1:0", "CCRELAY_METRICS_ADDR=127.0.0.1:0", "CCRELAY_NATS_LISTEN=none",
		"CCRELAY_DATA_DIR=" + filepath.Join(dir, "data"),
		"CCRELAY_SINCH_WEBHOOK_SECRETS=svc:" + secret,
		"CCRELAY_SHUTDOWN_TIMEOUT=20s",
	}
	p := start(t, dir, env, "serve")
	url := p.addr("http") + "/v1/sinch/svc"

	var (
		mu       sync.Mutex
		acked    []string
		refused  atomic.Int64
		seq      atomic.Int64
		stopping atomic.Bool
		wg       sync.WaitGroup
	)
	client := &http.Client{Timeout: 30 * time.Second}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				id := fmt.Sprintf("01SIGTERM%08d", seq.Add(1))
				status, _, err := post(client, url, sinchtest.InboundText(id, time.Now()))
				switch {
				case err != nil:
					if stopping.Load() {
						return // the listener is closed: the sender would retry elsewhere
					}
					t.Errorf("request failed before shutdown: %v", err)
					return
				case status == http.StatusAccepted:
					mu.Lock()
					acked = append(acked, "sinch:svc:inbound:"+id)
					mu.Unlock()
				default:
					refused.Add(1)
				}
			}
		}()
	}
	// Let the load run, then stop the server in the middle of it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 500 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopping.Store(true)
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.log())
	}
	wg.Wait()
	if len(acked) < 500 {
		t.Fatalf("only %d events acknowledged before shutdown", len(acked))
	}

	// Open the data directory with a fresh server and read everything back.
	ns := natstest.EmbeddedAt(t, filepath.Join(dir, "data"))
	_, js := natstest.Connect(t, ns.ClientURL())
	ctx := context.Background()
	st, err := js.Stream(ctx, "CCRELAY_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, _ := st.Info(ctx)
	for i := uint64(0); i < info.State.Msgs; i++ {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("read back %d of %d: %v", i, info.State.Msgs, err)
		}
		stored[m.Headers().Get("Nats-Msg-Id")] = true
	}
	var lost []string
	for _, id := range acked {
		if !stored[id] {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged events lost, e.g. %v", len(lost), len(acked), lost[:min(5, len(lost))])
	}
	t.Logf("%d acknowledged, %d stored, %d refused during shutdown", len(acked), len(stored), refused.Load())
	if !strings.Contains(p.log(), `"msg":"ccrelay stopped"`) {
		t.Errorf("no clean stop in the log")
	}
}

// TestQuickstartScript runs test/quickstart.sh, the README's walk through
// every source, the NATS CLI and the operator commands, twice against one
// 'ccrelay serve --demo', as a newcomer does: first with no ccrelay on
// PATH (the script builds one), then with this build on PATH. Each run
// stores its own events, so the second finds two dead letters where the
// first found one. The NATS CLI must be on PATH (.ci/run installs it: go
// install github.com/nats-io/natscli/nats@v0.5.1).
func TestQuickstartScript(t *testing.T) {
	natsCLI, err := exec.LookPath("nats")
	if err != nil {
		t.Fatalf("the NATS CLI is not on PATH (go install github.com/nats-io/natscli/nats@v0.5.1): %v", err)
	}
	for _, tool := range []string{"curl", "openssl", "jq"} {
		needTool(t, tool)
	}
	dir := t.TempDir()
	p := start(t, dir, []string{"CCRELAY_HTTP_ADDR=127.0.0.1:0", "CCRELAY_METRICS_ADDR=127.0.0.1:0", "CCRELAY_NATS_LISTEN=127.0.0.1:0"}, "serve", "--demo")
	envFile := filepath.Join(dir, "data", "demo.env")
	waitFor(t, "demo.env", func() bool { _, err := os.Stat(envFile); return err == nil })
	if fi, _ := os.Stat(envFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("demo.env is %v, want 0600", fi.Mode().Perm())
	}
	// PATH as the machine has it, less any directory holding a ccrelay.
	withoutCcrelay := []string{filepath.Dir(natsCLI)}
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if _, err := os.Stat(filepath.Join(d, "ccrelay")); err != nil {
			withoutCcrelay = append(withoutCcrelay, d)
		}
	}
	for i, c := range []struct {
		path, uses, deadLetters string
	}{
		{strings.Join(withoutCcrelay, string(os.PathListSeparator)), "no ccrelay on PATH; building one from", "1 dead letters"},
		{filepath.Dir(binary) + string(os.PathListSeparator) + strings.Join(withoutCcrelay, string(os.PathListSeparator)), "using " + binary + " (the ccrelay on PATH)", "2 dead letters"},
	} {
		cmd := exec.Command("bash", repoFile("test", "quickstart.sh"), envFile)
		cmd.Env = append(os.Environ(), "PATH="+c.path, "NO_COLOR=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("quickstart.sh, run %d: %v\n%s\nccrelay log:\n%s", i+1, err, out, p.log())
		}
		for _, want := range []string{c.uses, "HTTP 202, stored", "HTTP 200, already stored", c.deadLetters, "done: every step answered as the README says"} {
			if !strings.Contains(string(out), want) {
				t.Fatalf("quickstart.sh, run %d, did not say %q:\n%s", i+1, want, out)
			}
		}
	}
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.log())
	}
}

// TestPprofOnLoopbackOnly: with CCRELAY_PPROF=true the profiler answers on
// its own loopback listener, never on the metrics listener.
func TestPprofOnLoopbackOnly(t *testing.T) {
	dir := t.TempDir()
	pprofAddr := freePort(t)
	p := start(t, dir, []string{"CCRELAY_HTTP_ADDR=127.0.0.1:0", "CCRELAY_METRICS_ADDR=127.0.0.1:0", "CCRELAY_NATS_LISTEN=none",
		"CCRELAY_PPROF=true", "CCRELAY_PPROF_ADDR=" + pprofAddr}, "serve")
	get := func(u string) int {
		res, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := get(p.addr("metrics") + "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("metrics listener serves pprof: %d", code)
	}
	waitFor(t, "profiler", func() bool {
		res, err := http.Get("http://" + pprofAddr + "/debug/pprof/")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
	_ = p.stop(t, syscall.SIGTERM)
}
