package broker

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"nats://user:pa55@a:4222,nats://b:4222": "nats://[redacted]@a:4222,nats://b:4222",
		"nats://tok@a:4222":                     "nats://[redacted]@a:4222",
		"nats://a:4222":                         "nats://a:4222",
		"":                                      "",
	} {
		if got := redact(in); got != want || strings.Contains(got, "pa55") {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{DataDir: "d", Listen: "127.0.0.1:0", Sync: "always", ConnectTimeout: time.Second}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{
		{DataDir: "", Listen: "none", ConnectTimeout: time.Second},
		{DataDir: "d", Listen: "4222", ConnectTimeout: time.Second},
		{DataDir: "d", Listen: "h:99999", ConnectTimeout: time.Second},
		{DataDir: "d", Listen: "none", Sync: "-1s", ConnectTimeout: time.Second},
		{DataDir: "d", Listen: "none", ConnectTimeout: 0},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// An embedded server with the strictest sync policy, reachable only in
// process, stores and drains cleanly.
func TestEmbeddedInProcess(t *testing.T) {
	cfg := Config{DataDir: t.TempDir(), Listen: "none", Sync: "always", ConnectTimeout: 10 * time.Second}
	b, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !b.Embedded() || b.ClientURL() != "" {
		t.Errorf("embedded %v, client url %q", b.Embedded(), b.ClientURL())
	}
	if jsc := b.server.JetStreamConfig(); !b.server.JetStreamEnabled() || jsc == nil || !jsc.SyncAlways {
		t.Error("jetstream or sync policy not applied")
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !b.Conn.IsClosed() {
		t.Error("connection open after Close")
	}
}
