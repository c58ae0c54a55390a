package broker

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ccrelay/ccrelay/test/logtest"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// logLines decodes the JSON log lines of buf.
func logLines(t *testing.T, buf *logtest.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// count counts the lines at level whose message starts with msg ("" for any).
func count(lines []map[string]any, level, msg string) int {
	n := 0
	for _, m := range lines {
		if m["level"] == level && strings.HasPrefix(m["msg"].(string), msg) {
			n++
		}
	}
	return n
}

func waitLog(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOutageLoggedOnce: three connections of one process to a NATS server
// that goes away and comes back log the outage once, not once per
// connection and attempt: one WARN when the first loses the server, one
// INFO when the last has it back, with the attempts that failed between
// and how long it lasted. Each attempt is logged at debug.
func TestOutageLoggedOnce(t *testing.T) {
	dir, port := t.TempDir(), natstest.FreePort(t)
	ns, err := natstest.Start(dir, port)
	if err != nil {
		t.Fatal(err)
	}
	url := ns.ClientURL()
	var buf logtest.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := Open(context.Background(), Config{URL: url, ConnectTimeout: 5 * time.Second}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	for range 2 {
		nc, err := b.NewConn()
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
	}

	natstest.Stop(ns)
	// Every connection has lost the server and failed to reconnect, more
	// than once between them.
	waitLog(t, "failed reconnects", func() bool {
		l := logLines(t, &buf)
		return count(l, "DEBUG", "nats disconnected") == 3 && count(l, "DEBUG", "nats reconnect failed") >= 6
	})
	down := time.Now()
	ns, err = natstest.Start(dir, port)
	if err != nil {
		t.Fatal(err)
	}
	defer natstest.Stop(ns)
	waitLog(t, "every connection back", func() bool { return count(logLines(t, &buf), "INFO", "nats available again") == 1 })

	lines := logLines(t, &buf)
	if n := count(lines, "WARN", ""); n != 1 || count(lines, "WARN", "nats unavailable") != 1 {
		t.Errorf("%d WARN lines, want one saying nats is unavailable:\n%s", n, buf.String())
	}
	if n := count(lines, "INFO", "nats available again"); n != 1 {
		t.Fatalf("%d lines saying nats is back, want 1:\n%s", n, buf.String())
	}
	for _, m := range lines {
		if m["msg"] != "nats available again" {
			continue
		}
		failed, _ := m["failed_attempts"].(float64)
		debugs := count(lines, "DEBUG", "nats disconnected") + count(lines, "DEBUG", "nats reconnect failed") + count(lines, "DEBUG", "nats reconnected, but")
		if int(failed) != debugs {
			t.Errorf("failed_attempts %v, want %d (one per debug line)", m["failed_attempts"], debugs)
		}
		// slog's JSON handler writes a duration in nanoseconds.
		if outage := time.Duration(m["outage"].(float64)); outage < time.Since(down)-time.Second || outage > time.Minute {
			t.Errorf("outage %s, want about as long as the server was down", outage)
		}
	}
}

// TestOutageLastsUntilJetStreamAnswers: connections that reconnect to a
// server without JetStream (a node restarting, a plain server on the same
// address) have not ended the outage: the processors' pulls still fail,
// and a process that said "available again" there said "unavailable"
// again right after. It ends when JetStream answers.
func TestOutageLastsUntilJetStreamAnswers(t *testing.T) {
	dir, port := t.TempDir(), natstest.FreePort(t)
	ns, err := natstest.Start(dir, port)
	if err != nil {
		t.Fatal(err)
	}
	var buf logtest.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := Open(context.Background(), Config{URL: ns.ClientURL(), ConnectTimeout: 5 * time.Second}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	nc, err := b.NewConn()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	natstest.Stop(ns)
	plain, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	plain.Start()
	waitLog(t, "both connections on the plain server", func() bool {
		l := logLines(t, &buf)
		return count(l, "DEBUG", "nats reconnected")-count(l, "DEBUG", "nats reconnected, but") >= 2
	})
	// Long enough for several rounds of asking for JetStream.
	time.Sleep(2 * time.Second)
	if n := count(logLines(t, &buf), "DEBUG", "nats reconnected, but jetstream does not answer yet"); n < 4 {
		t.Errorf("%d debug lines saying JetStream does not answer yet, want one per connection and attempt", n)
	}
	if n := count(logLines(t, &buf), "INFO", "nats available again"); n != 0 {
		t.Fatalf("the outage ended on a server without JetStream:\n%s", buf.String())
	}
	plain.Shutdown()
	plain.WaitForShutdown()
	if ns, err = natstest.Start(dir, port); err != nil {
		t.Fatal(err)
	}
	defer natstest.Stop(ns)
	waitLog(t, "the outage's end", func() bool { return count(logLines(t, &buf), "INFO", "nats available again") == 1 })
	lines := logLines(t, &buf)
	if n := count(lines, "WARN", ""); n != 1 {
		t.Errorf("%d WARN lines, want one:\n%s", n, buf.String())
	}
	if n := count(lines, "INFO", "nats available again"); n != 1 {
		t.Errorf("%d lines saying nats is back, want 1:\n%s", n, buf.String())
	}
}

// TestOutageEndsWithTheLastPart: the outage lasts while any part still
// fails, and counts every failed attempt of every part.
func TestOutageEndsWithTheLastPart(t *testing.T) {
	var buf logtest.Buffer
	o := NewOutage(slog.New(slog.NewJSONHandler(&buf, nil)))
	a, b := o.Part("a"), o.Part("b")
	a.Succeeded() // no outage: nothing to say
	a.Failed(errors.New("gone"))
	b.Failed(errors.New("gone"))
	a.Succeeded()
	b.Failed(errors.New("still gone"))
	if n := count(logLines(t, &buf), "INFO", ""); n != 0 {
		t.Fatalf("outage ended while b still fails:\n%s", buf.String())
	}
	b.Succeeded()
	b.Succeeded()
	lines := logLines(t, &buf)
	if len(lines) != 2 || lines[0]["level"] != "WARN" || lines[0]["noticed_by"] != "a" || lines[0]["error"] != "gone" {
		t.Fatalf("want a WARN naming a, then one INFO:\n%s", buf.String())
	}
	if lines[1]["msg"] != "nats available again" || lines[1]["failed_attempts"] != float64(3) {
		t.Errorf("end of the outage: %v", lines[1])
	}
	// A second outage is told again, with its own count.
	b.Failed(errors.New("gone again"))
	b.Succeeded()
	lines = logLines(t, &buf)
	if len(lines) != 4 || lines[2]["noticed_by"] != "b" || lines[3]["failed_attempts"] != float64(1) {
		t.Errorf("second outage:\n%s", buf.String())
	}
}
