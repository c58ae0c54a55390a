package main

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/processors/forward/parking"
)

// TestRelayHeldAndDrop: 'relay held' lists a parked conversation with
// why, its control characters (Contact Pro's answer in the reason, a
// hand-published ce-id as its head) escaped in the table and in --json;
// 'relay drop' with the id's first characters dead-letters its messages
// as the relay's, and takes the conversation back.
func TestRelayHeldAndDrop(t *testing.T) {
	dataDir := t.TempDir()
	environ := []string{"CCRELAY_DATA_DIR=" + dataDir, "CCRELAY_NATS_LISTEN=" + freeAddr(t)}
	b := startEmbedded(t, environ)
	ctx := context.Background()

	code, out, errOut := runCLI([]string{"relay", "held"}, environ)
	if code != 0 || !strings.Contains(out, "0 parked conversations") {
		t.Fatalf("relay held before the relay ever ran: exit %d\n%s%s", code, out, errOut)
	}

	s := messages.DefaultSubjects()
	st, err := parking.Provision(ctx, provision.Waiter{Budget: 10 * time.Second}, b.JS, parking.Config{Subjects: s, Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	const (
		reason = "3 attempts failed; the last: twilio/us answered 500: \x1b]0;pwned\x07\x1b[2J\u202eevil"
		head   = "messaging:twilio:us:SM\x01\u009b31m"
	)
	id := messages.ConversationID("twilio/us", "twilio/us/+15550001")
	c := &parking.Conversation{ID: id, Destination: "twilio/us", Partition: "0c", Reason: reason, Cause: "attempts"}
	for seq := uint64(5); seq <= 6; seq++ {
		ev := &processors.Event{Subject: s.Messaging("twilio", "us", "0c"), ID: head, Header: nats.Header{messages.HeaderID: {head}}, Body: []byte("Body=hi"), Seq: seq, Deliveries: 3}
		if seq == 5 {
			err = st.Park(ctx, c, ev)
		} else {
			err = st.Behind(ctx, c, ev)
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	code, out, errOut = runCLI([]string{"relay", "held"}, environ)
	if code != 0 {
		t.Fatalf("relay held: exit %d\n%s%s", code, out, errOut)
	}
	if r, bad := nonGraphic(out); bad {
		t.Errorf("relay held prints %U as it is:\n%q", r, out)
	}
	for _, want := range []string{id, "twilio/us", "parked", "attempts", `\x1b]0;pwned\a`, `\u202eevil`, `SM\x01\u009b31m`, "1 parked conversations"} {
		if !strings.Contains(out, want) {
			t.Errorf("relay held does not show %s:\n%s", want, out)
		}
	}
	if fields := strings.Fields(strings.Split(out, "\n")[1]); len(fields) < 5 || fields[4] != "2" {
		t.Errorf("relay held: want 2 messages waiting:\n%s", out)
	}
	code, out, _ = runCLI([]string{"relay", "held", "--json"}, environ)
	if r, bad := nonGraphic(out); bad || code != 0 {
		t.Errorf("relay held --json: exit %d, prints %U as it is:\n%q", code, r, out)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var got struct{ Conversation, Reason, Head string }
		if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, sc.Text())
		}
		if got.Conversation != id || got.Reason != reason || got.Head != head {
			t.Errorf("relay held --json decodes to %+v", got)
		}
	}

	for _, args := range [][]string{{"relay", "drop"}, {"relay", "drop", "--all"}, {"relay", "release", id, "--all", "--destination", "twilio/us"}} {
		if code, _, errOut := runCLI(args, environ); code != 2 || !strings.Contains(errOut, "give conversations, or --all with --destination") {
			t.Errorf("%v: exit %d %s", args, code, errOut)
		}
	}
	code, out, errOut = runCLI([]string{"relay", "drop", id[:8]}, environ)
	if code != 0 || !strings.Contains(out, "dropped "+id+" (twilio/us): 2 messages dead-lettered") {
		t.Fatalf("relay drop: exit %d\n%s%s", code, out, errOut)
	}
	letters, err := processors.NewDeadLetters(b.JS, s).List(ctx, "forward")
	if err != nil || len(letters) != 2 || letters[0].OrigSeq != 5 || letters[1].OrigSeq != 6 {
		t.Fatalf("dead letters after the drop: %+v %v", letters, err)
	}
	if !strings.Contains(letters[0].Error, "dropped by an operator") {
		t.Errorf("dead letter error %q does not say it was dropped", letters[0].Error)
	}
	if code, out, _ := runCLI([]string{"relay", "held"}, environ); code != 0 || !strings.Contains(out, "0 parked conversations") {
		t.Errorf("relay held after the drop: %s", out)
	}
	if code, _, errOut := runCLI([]string{"relay", "release", id}, environ); code != 1 || !strings.Contains(errOut, "no such parked conversation") {
		t.Errorf("relay release of a conversation taken back: exit %d %s", code, errOut)
	}
}
