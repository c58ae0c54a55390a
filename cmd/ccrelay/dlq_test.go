package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors"
)

// nonGraphic returns the first rune of out that a terminal would not just
// show (a control character, a format character, a byte that is not
// UTF-8), newlines aside, and whether there is one.
func nonGraphic(out string) (rune, bool) {
	for i, r := range out {
		if r == '\n' {
			continue
		}
		if r == utf8.RuneError {
			return rune(out[i]), true
		}
		if !unicode.IsPrint(r) {
			return r, true
		}
	}
	return 0, false
}

// TestDLQListEscapes: a dead letter whose error (an upstream system's
// answer), original subject and id hold terminal escape sequences, other
// control and format characters and bytes that are not UTF-8 is listed
// without any of them as they are: the table shows their escapes and stays
// one line per dead letter, and --json stays one valid JSON object per
// line that decodes to the stored values.
func TestDLQListEscapes(t *testing.T) {
	dataDir := t.TempDir()
	environ := []string{"CCRELAY_DATA_DIR=" + dataDir, "CCRELAY_NATS_LISTEN=" + freeAddr(t)}
	b := startEmbedded(t, environ)
	const (
		upstream = "cmi chat: HTTP 500: \x1b]0;pwned\x07\x1b[2J\x1b[31mred \u009b31m\u202eevil\u200b\tTAB\x7fDEL \xffbad"
		subject  = "ccrelay.in.contactpro.chat-attachments.ended\x1b[1A"
		id       = "contactpro:chat-attachments:ended:\u202eatk:0011"
	)
	ev := &processors.Event{Subject: subject, Header: nats.Header{messages.HeaderID: {id}}, Body: []byte(`{}`), Seq: 7, Deliveries: 1}
	if _, err := processors.NewDeadLetters(b.JS, messages.DefaultSubjects()).Send(context.Background(), "attachments", ev, errors.New(upstream)); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runCLI([]string{"dlq", "list"}, environ)
	if code != 0 {
		t.Fatalf("dlq list: exit %d\n%s%s", code, out, errOut)
	}
	if r, bad := nonGraphic(out); bad {
		t.Errorf("dlq list prints %U as it is:\n%q", r, out)
	}
	if lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); len(lines) != 3 {
		t.Errorf("dlq list prints %d lines, want a header, one dead letter and the count:\n%s", len(lines), out)
	}
	for _, want := range []string{`\x1b]0;pwned\a`, `\u009b31m`, `\u202eevil\u200b\tTAB\x7fDEL \xffbad`, `ended\x1b[1A`, `:\u202eatk:`} {
		if !strings.Contains(out, want) {
			t.Errorf("dlq list does not show %s:\n%s", want, out)
		}
	}

	code, out, errOut = runCLI([]string{"dlq", "list", "--json"}, environ)
	if code != 0 {
		t.Fatalf("dlq list --json: exit %d\n%s%s", code, out, errOut)
	}
	if r, bad := nonGraphic(out); bad {
		t.Errorf("dlq list --json prints %U as it is:\n%q", r, out)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	n := 0
	for sc.Scan() {
		n++
		var got struct{ Error, Subject, ID string }
		if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", n, err, sc.Text())
		}
		if want := strings.ToValidUTF8(upstream, "\uFFFD"); got.Error != want {
			t.Errorf("error decodes to %q, want %q", got.Error, want)
		}
		if got.Subject != subject || got.ID != id {
			t.Errorf("subject %q and id %q, want %q and %q", got.Subject, got.ID, subject, id)
		}
	}
	if n != 1 {
		t.Errorf("%d JSON lines, want 1", n)
	}
}
