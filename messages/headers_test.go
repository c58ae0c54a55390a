package messages_test

import (
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/messages"
)

func TestEventMsg(t *testing.T) {
	at := time.Date(2026, 11, 21, 10, 0, 0, 5, time.FixedZone("x", 3600))
	ev := messages.Event{Subject: "s", ID: "id-1", Source: "/sinch/a", Type: "t", Time: at, Body: []byte("{}"), Sealed: "v1.k.x"}
	m := ev.Msg()
	want := map[string]string{
		"Nats-Msg-Id":    "id-1",
		"ce-id":          "id-1",
		"ce-specversion": "1.0",
		"ce-source":      "/sinch/a",
		"ce-type":        "t",
		"ce-time":        "2026-11-21T09:00:00.000000005Z",
		"Content-Type":   "application/json",
		"Ccrelay-Sealed": "v1.k.x",
	}
	for k, v := range want {
		if got := m.Header[k]; len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if _, ok := m.Header["traceparent"]; ok {
		t.Error("traceparent set without one")
	}
	if _, ok := m.Header[messages.HeaderReceivedAt]; ok {
		t.Error("received-at set without a time")
	}
	// The values share one array: adding a value to one header must not
	// write over the next header's.
	m.Header.Add("ce-specversion", "2.0")
	m.Header.Add("Nats-Msg-Id", "other")
	added := map[string]bool{"ce-specversion": true, "Nats-Msg-Id": true}
	for k, v := range want {
		got := m.Header[k]
		if got[0] != v || !added[k] && len(got) != 1 || added[k] && len(got) != 2 {
			t.Errorf("after Add: header %s = %q, want %q first", k, got, v)
		}
	}
}

func TestValidTraceparent(t *testing.T) {
	for v, want := range map[string]bool{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":   true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00":   true,
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01":   false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01":   false,
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":   false,
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01":   false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n": false,
		"": false,
	} {
		if got := messages.ValidTraceparent(v); got != want {
			t.Errorf("ValidTraceparent(%q) = %v", v, got)
		}
	}
}
