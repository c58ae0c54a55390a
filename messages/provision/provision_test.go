package provision_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/test/logtest"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// apiLog counts the JetStream API requests of one kind that reach the
// server, as seen by a plain subscriber on the API subjects.
type apiLog struct {
	mu   sync.Mutex
	seen map[string]int
}

func watchAPI(t *testing.T, nc *nats.Conn) *apiLog {
	t.Helper()
	l := &apiLog{seen: map[string]int{}}
	sub, err := nc.Subscribe("$JS.API.>", func(m *nats.Msg) {
		// $JS.API.STREAM.UPDATE.<name> -> STREAM.UPDATE
		parts := strings.Split(m.Subject, ".")
		if len(parts) >= 4 {
			l.mu.Lock()
			l.seen[parts[2]+"."+parts[3]]++
			l.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return l
}

func (l *apiLog) count(t *testing.T, nc *nats.Conn, kind string) int {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[kind]
}

func TestUnchangedResourcesAreNotUpdated(t *testing.T) {
	ns := natstest.Embedded(t)
	nc, js := natstest.Connect(t, ns.ClientURL())
	api := watchAPI(t, nc)
	var logs bytes.Buffer
	w := provision.Waiter{Budget: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx := context.Background()

	stream := jetstream.StreamConfig{Name: "EV", Subjects: []string{"ev.>"}, Storage: jetstream.FileStorage, MaxAge: time.Hour, Duplicates: time.Minute, AllowDirect: true}
	kv := jetstream.KeyValueConfig{Bucket: "KV", Description: "d", TTL: time.Hour, History: 1, Storage: jetstream.FileStorage, MaxValueSize: 1024}
	obj := jetstream.ObjectStoreConfig{Bucket: "OBJ", Description: "o", TTL: time.Hour, Storage: jetstream.FileStorage}
	cons := jetstream.ConsumerConfig{Durable: "C", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second, MaxDeliver: 3,
		BackOff: []time.Duration{time.Second}, MaxAckPending: 10, FilterSubjects: []string{"ev.a.>", "ev.b.>"}}
	all := func() {
		t.Helper()
		if _, err := w.Stream(ctx, js, stream); err != nil {
			t.Fatal(err)
		}
		if _, err := w.KeyValue(ctx, js, kv); err != nil {
			t.Fatal(err)
		}
		if _, err := w.ObjectStore(ctx, js, obj); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Consumer(ctx, js, "EV", cons); err != nil {
			t.Fatal(err)
		}
	}
	all()
	if n := api.count(t, nc, "STREAM.CREATE"); n != 3 {
		t.Errorf("first start: %d stream creates, want 3 (stream, bucket, object store)", n)
	}
	all()
	all()
	if n := api.count(t, nc, "STREAM.UPDATE"); n != 0 {
		t.Errorf("unchanged configuration: %d stream updates, want 0", n)
	}
	if n := api.count(t, nc, "CONSUMER.CREATE") + api.count(t, nc, "CONSUMER.DURABLE"); n != 1 {
		t.Errorf("unchanged consumer: %d create requests, want 1 (the first)", n)
	}
	if strings.Contains(logs.String(), "updating") {
		t.Errorf("logged an update of unchanged resources:\n%s", logs.String())
	}

	stream.MaxAge = 2 * time.Hour
	kv.TTL = 2 * time.Hour
	obj.TTL = 2 * time.Hour
	cons.MaxDeliver = 4
	all()
	if n := api.count(t, nc, "STREAM.UPDATE"); n != 3 {
		t.Errorf("changed configuration: %d stream updates, want 3", n)
	}
	for _, what := range []string{"stream EV", "bucket KV", "object store OBJ", "consumer C"} {
		if !strings.Contains(logs.String(), "resource=\""+what+"\"") {
			t.Errorf("no log line for the update of %s:\n%s", what, logs.String())
		}
	}
	st, err := js.Stream(ctx, "EV")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != 2*time.Hour {
		t.Errorf("stream max age %s after update, want 2h", got)
	}
	c, err := js.Consumer(ctx, "EV", "C")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.CachedInfo().Config.MaxDeliver; got != 4 {
		t.Errorf("consumer max deliver %d after update, want 4", got)
	}
}

// TestWaitsForJetStream starts provisioning against a NATS server without
// JetStream (as a cluster node answers before its JetStream is up): the
// waiter logs each wait and succeeds once JetStream answers.
func TestWaitsForJetStream(t *testing.T) {
	port := natstest.FreePort(t)
	plain, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	plain.Start()
	if !plain.ReadyForConnections(5 * time.Second) {
		t.Fatal("plain server not ready")
	}
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var logs logtest.Buffer
	w := provision.Waiter{Budget: 20 * time.Second, Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	dir := t.TempDir()
	started := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		natstest.Stop(plain)
		ns, err := natstest.Start(dir, port)
		if err == nil {
			t.Cleanup(func() { natstest.Stop(ns) })
		}
		started <- err
	}()
	_, err = w.Stream(context.Background(), js, jetstream.StreamConfig{Name: "EV", Subjects: []string{"ev.>"}})
	if serr := <-started; serr != nil {
		t.Fatal(serr)
	}
	if err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, `"msg":"waiting for nats","for":"stream EV"`) || !strings.Contains(out, `"retry_in":"`) {
		t.Errorf("no wait was logged, or not with its reason and a readable duration:\n%s", out)
	}
}

func TestGivesUpWithinBudget(t *testing.T) {
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natstest.FreePort(t)), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	start := time.Now()
	_, err = provision.Waiter{Budget: 700 * time.Millisecond}.KeyValue(context.Background(), js, jetstream.KeyValueConfig{Bucket: "KV"})
	if err == nil || !strings.Contains(err.Error(), "bucket KV: gave up after") {
		t.Fatalf("err = %v, want a give-up naming the bucket", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s for a 700ms budget", d)
	}
}

func TestInvalidConfigIsNotRetried(t *testing.T) {
	ns := natstest.Embedded(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	// Refused by the client before sending: no wait either.
	start0 := time.Now()
	if _, err := (provision.Waiter{Budget: 10 * time.Second}).KeyValue(context.Background(), js, jetstream.KeyValueConfig{Bucket: "no.dots allowed"}); !errors.Is(err, jetstream.ErrInvalidBucketName) || time.Since(start0) > time.Second {
		t.Errorf("invalid bucket name: %v after %s", err, time.Since(start0))
	}
	w := provision.Waiter{Budget: 10 * time.Second}
	if _, err := w.Stream(context.Background(), js, jetstream.StreamConfig{Name: "A", Subjects: []string{"x.>"}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Overlapping subjects: JetStream refuses, and no wait changes that.
	_, err := w.Stream(context.Background(), js, jetstream.StreamConfig{Name: "B", Subjects: []string{"x.y"}})
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		t.Fatalf("err = %v, want the API error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("an invalid request was retried for %s", d)
	}
}
