package messages_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/messages"
)

func TestDedupIDParts(t *testing.T) {
	for _, c := range []struct {
		id   string
		want []string
	}{
		{"sinch:eu:inbound:01EB37HMH1M6SV18ABNS3G135H", []string{"01EB37HMH1M6SV18ABNS3G135H"}},
		{"sinch:eu:delivery:01OUT:DELIVERED:WHATSAPP", []string{"01OUT"}},
		{"sinch:inbound:01OLD", []string{"01OLD"}},
		{"sinch:eu:contact_create_notification:" + strings.Repeat("a", 64), nil},
		{"contactpro:chat-attachments:ended:8f2c6a1e-0000-4000-8000-000000000001:0123abcd", []string{"8f2c6a1e-0000-4000-8000-000000000001"}},
		{"contactpro:lifecycle:allocated:-:0123abcd", nil},
		{"connect:123456789012:ev-1", []string{"ev-1"}},
		{"connect.analysis:bucket:contact-1", []string{"contact-1"}},
		{"messaging:twilio:us:SM0123456789abcdef0123456789abcdef", []string{"SM0123456789abcdef0123456789abcdef"}},
		{"messaging:twilio:us:SM0123456789abcdef0123456789abcdef:delivered", []string{"SM0123456789abcdef0123456789abcdef"}},
		{"messaging:facebook:page1:mid:m_abc", []string{"m_abc"}},
		{"messaging:sinchsms:eu:mo:01MO", []string{"01MO"}},
		{"messaging:sinchsms:eu:dr:01BATCH:h-00:Delivered:h-01", []string{"01BATCH"}},
		{"", nil},
		{"echo:1", nil},
	} {
		if got := messages.DedupIDParts(c.id); !slices.Equal(got, c.want) {
			t.Errorf("DedupIDParts(%q) = %q, want %q", c.id, got, c.want)
		}
	}
}

func TestFormatAndParseIDs(t *testing.T) {
	v := messages.FormatIDs(messages.IDContact, "01CONTACT", messages.IDConversation, "", "x", "+49 176 1234")
	if v != "contact=01CONTACT x="+messages.PersonalDigest("+49 176 1234") {
		t.Errorf("FormatIDs = %q", v)
	}
	if got := messages.ParseIDs(v); !slices.Equal(got, []string{"01CONTACT", messages.PersonalDigest("+49 176 1234")}) {
		t.Errorf("ParseIDs = %q", got)
	}
	if v := messages.FormatIDs(messages.IDContact, ""); v != messages.NoIDs {
		t.Errorf("no ids: %q, want %q", v, messages.NoIDs)
	}
	if got := messages.ParseIDs(messages.NoIDs + " =x a= b"); len(got) != 1 || got[0] != "x" {
		t.Errorf("ParseIDs of junk = %q", got)
	}
	long := strings.Repeat("A", 200)
	if v := messages.IDValue(long); v != messages.PersonalDigest(long) {
		t.Errorf("a long id stands as %q", v)
	}
}

// Every value FormatIDs writes is read back by ParseIDs, and no value holds
// a byte that could break the header (space, control, non-ASCII).
func FuzzIDsHeader(f *testing.F) {
	f.Add("01CONTACT", "conv 1")
	f.Add("", "+4917612345678")
	f.Add("a=b", "\r\n")
	f.Fuzz(func(t *testing.T, a, b string) {
		v := messages.FormatIDs(messages.IDContact, a, messages.IDConversation, b)
		for i := 0; i < len(v); i++ {
			if c := v[i]; c <= ' ' && c != ' ' || c >= 0x7f {
				t.Fatalf("FormatIDs(%q, %q) = %q holds byte %#x", a, b, v, c)
			}
		}
		got := messages.ParseIDs(v)
		var want []string
		for _, x := range []string{a, b} {
			if x != "" {
				want = append(want, messages.IDValue(x))
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("ParseIDs(FormatIDs(%q, %q)) = %q, want %q", a, b, got, want)
		}
	})
}

// DedupIDParts returns only parts of the id between ':'s (the last of them
// may hold ':'s: a Messenger mid).
func FuzzDedupIDParts(f *testing.F) {
	for _, s := range []string{"sinch:eu:inbound:01X", "contactpro:a:b:c:d", "messaging:twilio:us:SM0123456789abcdef0123456789abcdef", "messaging:x:y:mid:", "::::", "messaging:facebook:p:mid:mid.1457764197618:41d102a3e1ae206a38"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		for _, p := range messages.DedupIDParts(id) {
			if p == "" || !strings.Contains(":"+id+":", ":"+p+":") {
				t.Fatalf("DedupIDParts(%q) gave %q", id, p)
			}
		}
	})
}

// BenchmarkIDsHeader is what Ccrelay-Ids adds to ingest's work per event:
// formatting the header and the one more header of the stored message.
func BenchmarkIDsHeader(b *testing.B) {
	ev := messages.Event{Subject: "ccrelay.in.sinch.message_inbound.eu.APP.00", ID: "sinch:eu:inbound:01EB37HMH1M6SV18ABNS3G135H", Source: "/sinch/eu", Type: "t", Body: []byte(`{}`)}
	b.Run("without", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = ev.Msg()
		}
	})
	b.Run("with", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e := ev
			e.IDs = messages.FormatIDs(messages.IDContact, "01EQ4174TXFK2FVQTX1MJ4SMGH", messages.IDConversation, "01EQ8235TD19N21XQTH12B145D")
			_ = e.Msg()
		}
	})
}
