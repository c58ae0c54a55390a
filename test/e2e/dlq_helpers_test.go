package e2e_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/ccrelay/ccrelay/processors"
)

// republishBody stores body again under subject with no headers at all, as
// 'nats pub <subject> --file body.json' does.
func republishBody(t *testing.T, d *deployment, subject string, body []byte) {
	t.Helper()
	if _, err := d.js.PublishMsg(context.Background(), &nats.Msg{Subject: subject, Data: body}); err != nil {
		t.Fatal(err)
	}
}

func listDLQ(t *testing.T, d *deployment) []processors.DeadLetter {
	t.Helper()
	dls, err := processors.NewDeadLetters(d.js, d.subjects).List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return dls
}

func requeue(t *testing.T, d *deployment, seq uint64) {
	t.Helper()
	if _, err := processors.NewDeadLetters(d.js, d.subjects).Requeue(context.Background(), seq); err != nil {
		t.Fatal(err)
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
