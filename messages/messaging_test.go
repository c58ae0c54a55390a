package messages_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/messages"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "messaging", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeWebhookFixtures(t *testing.T) {
	for _, c := range []struct {
		typ, file string
		want      messages.Webhook
	}{
		{"twilio", "twilio_inbound.form", messages.Webhook{Kind: "inbound", ID: "messaging:twilio:us:SMbe794ce78f6b9fdf853d2acb76c080db", Conversation: "twilio/us/+16505551199"}},
		{"twilio", "twilio_status_delivered.form", messages.Webhook{Kind: "status", ID: "messaging:twilio:us:SM1342fe1b2c904d1ab04f0fc7a58abca9:delivered", Conversation: "twilio/us/+15558675310"}},
		{"twilio", "twilio_whatsapp_media_empty_body.form", messages.Webhook{Kind: "inbound", ID: "messaging:twilio:us:MMc26223853f8c46b4ab7dfaa6abba0a26", Conversation: "twilio/us/whatsapp:+15005550006"}},
		{"facebook", "messenger_message.json", messages.Webhook{Kind: "inbound", ID: "messaging:facebook:us:mid:mid.1457764197618:41d102a3e1ae206a38", Conversation: "facebook/us/PSID"}},
		{"facebook", "messenger_echo.json", messages.Webhook{Kind: "other", ID: "messaging:facebook:us:mid:mid.1457764197618:41d102a3e1ae206a38", Conversation: "facebook/us/PSID"}},
		{"facebook", "messenger_postback.json", messages.Webhook{Kind: "inbound", ID: "messaging:facebook:us:mid:m_MESSAGE-ID", Conversation: "facebook/us/PSID"}},
		{"sinchsms", "sinchsms_mo_text.json", messages.Webhook{Kind: "inbound", ID: "messaging:sinchsms:us:mo:01FC66621XXXXX119Z8PMV1QPA", Conversation: "sinchsms/us/+11203494390"}},
		{"sinchsms", "sinchsms_mo_binary.json", messages.Webhook{Kind: "inbound", ID: "messaging:sinchsms:us:mo:01FC66621XXXXX119Z8PMV1QPA", Conversation: "sinchsms/us/+11203494390"}},
	} {
		t.Run(c.file, func(t *testing.T) {
			got, err := messages.DecodeWebhook(c.typ, "us", fixture(t, c.file))
			if err != nil {
				t.Fatal(err)
			}
			if *got != c.want {
				t.Errorf("got %+v\nwant %+v", *got, c.want)
			}
		})
	}
	// Reports and batches carry no id of their own: they are identified by
	// their digest, and ordered with their customer (or batch).
	for _, c := range []struct{ typ, file, kind, conv string }{
		{"facebook", "messenger_delivery.json", "status", "facebook/us/PSID"},
		{"facebook", "messenger_read.json", "status", "facebook/us/PSID"},
		{"facebook", "messenger_batched.json", "other", "facebook/us/PSID"},
		{"sinchsms", "sinchsms_recipient_delivery_report.json", "status", "sinchsms/us/+44231235674"},
		{"sinchsms", "sinchsms_batch_delivery_report.json", "status", "sinchsms/us/batch:01FC66621XXXXX119Z8PMV1QPQ"},
		{"wavy", "sinchsms_mo_text.json", "other", "wavy/us/us"},
	} {
		t.Run(c.typ+"/"+c.file, func(t *testing.T) {
			body := fixture(t, c.file)
			got, err := messages.DecodeWebhook(c.typ, "us", body)
			if err != nil {
				t.Fatal(err)
			}
			if got.Kind != c.kind || got.Conversation != c.conv || !strings.HasPrefix(got.ID, "messaging:"+c.typ+":us:") {
				t.Errorf("got %+v, want kind %s, conversation %s", *got, c.kind, c.conv)
			}
			other, _ := messages.DecodeWebhook(c.typ, "us", append(body, ' '))
			if digest := c.file != "sinchsms_recipient_delivery_report.json"; digest && other != nil && other.ID == got.ID {
				t.Errorf("two bodies, one id %s", got.ID)
			}
		})
	}
}

func TestDecodeWebhookRefuses(t *testing.T) {
	long := strings.Repeat("x", messages.MaxIDBytes+1)
	for _, c := range []struct{ typ, body string }{
		{"twilio", "Body=hi&From=%2B1"},              // no MessageSid
		{"twilio", "MessageSid=" + long},             // oversized id
		{"twilio", "MessageSid=SM1&From=%2B1%0A"},    // control character
		{"twilio", "MessageSid=%zz"},                 // not form-encoded
		{"facebook", `{"entry":[]}`},                 // no object
		{"facebook", `{"object":"page","entry":[]}`}, // no entry
		{"facebook", `{"object":"page","entry":[{"messaging":[{"sender":{"id":"` + long + `"}}]}]}`},
		{"facebook", `[]`},
		{"sinchsms", `{"id":"x"}`},         // no type
		{"sinchsms", `{"type":"mo_text"}`}, // an inbound SMS without id
		{"sinchsms", `{"type":"recipient_delivery_report_sms","batch_id":"b"}`},
		{"sinchsms", `{"type":"mo_text","id":"` + long + `"}`},
		{"telegram", `{}`}, // not a messaging service type
	} {
		if _, err := messages.DecodeWebhook(c.typ, "s", []byte(c.body)); !errors.Is(err, messages.ErrInvalidPayload) {
			t.Errorf("%s %.60q: error %v, want ErrInvalidPayload", c.typ, c.body, err)
		}
	}
}

func TestPartition(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 5000; i++ {
		p := messages.Partition(strings.Repeat("c", i%97) + string(rune('a'+i%26)) + strings.Repeat("x", i/26))
		if len(p) != 2 || strings.Trim(p, "0123456789abcdef") != "" {
			t.Fatalf("Partition = %q", p)
		}
		seen[p] = true
	}
	if len(seen) < 250 {
		t.Errorf("5000 keys fell in %d of 256 partitions", len(seen))
	}
	// Every token belongs to exactly one partition of a split.
	for _, count := range []int{1, 4, 16, 256} {
		owner := map[string]int{}
		for n := 0; n < count; n++ {
			for _, tok := range messages.PartitionTokens(n, count) {
				if _, dup := owner[tok]; dup {
					t.Fatalf("count %d: token %s twice", count, tok)
				}
				owner[tok] = n
			}
		}
		if len(owner) != messages.Partitions {
			t.Errorf("count %d: %d tokens covered", count, len(owner))
		}
	}
}

func FuzzDecodeWebhook(f *testing.F) {
	entries, err := os.ReadDir(filepath.Join("testdata", "messaging"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		typ, _, _ := strings.Cut(e.Name(), "_")
		if typ == "messenger" {
			typ = "facebook"
		}
		if messages.IsMessagingType(typ) {
			f.Add(typ, fixture(f, e.Name()))
		}
	}
	f.Fuzz(func(t *testing.T, typ string, body []byte) {
		w, err := messages.DecodeWebhook(typ, "svc", body)
		if err != nil {
			if !errors.Is(err, messages.ErrInvalidPayload) {
				t.Fatalf("error %v does not wrap ErrInvalidPayload", err)
			}
			return
		}
		// What becomes a header must be bounded and single-line.
		if len(w.ID) > 3*messages.MaxIDBytes+64 || strings.ContainsAny(w.ID, "\r\n\x00") {
			t.Fatalf("dedup id %q", w.ID)
		}
		again, err := messages.DecodeWebhook(typ, "svc", body)
		if err != nil || *again != *w {
			t.Fatalf("not deterministic: %+v %v", again, err)
		}
	})
}
