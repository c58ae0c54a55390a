package natstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/test/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

// TestContainerJetStream proves the locally built image runs a JetStream
// server the tests can store in.
func TestContainerJetStream(t *testing.T) {
	url, _ := natstest.Container(t)
	_, js := natstest.Connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, "t.x", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Sequence != 1 || ack.Stream != "T" {
		t.Fatalf("ack = %+v, want seq 1 in T", ack)
	}
}
