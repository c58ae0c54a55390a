package ingest_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/ccrelay/ccrelay/ingest"
)

// FuzzResponseJSON: the hand-written answer is byte for byte what
// encoding/json writes, for any strings, valid UTF-8 or not.
func FuzzResponseJSON(f *testing.F) {
	f.Add("sinch:01EQBC1A3BEK731GY4YXEN0C2R:MESSAGE_INBOUND", "ccrelay.in.sinch.app.message_inbound", "CCRELAY_EVENTS", uint64(42), false)
	f.Add("", "", "", uint64(0), true)
	f.Add("<script>&\"\\'\x00\x1f\x7f", "\b\f\n\r\t", "\u2028\u2029\ufffd", uint64(1<<63), true)
	f.Add("\xff\xfe\xc3", "é漢字😀", "a\xe2\x80", ^uint64(0), false)
	f.Fuzz(func(t *testing.T, id, subject, stream string, seq uint64, dup bool) {
		r := ingest.Response{ID: id, Subject: subject, Stream: stream, Seq: seq, Duplicate: dup}
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, '\n')
		if got := r.AppendJSON(nil); !bytes.Equal(got, want) {
			t.Errorf("AppendJSON(%q, %q, %q)\n got %s\nwant %s", id, subject, stream, got, want)
		}
	})
}

func BenchmarkResponseJSON(b *testing.B) {
	r := ingest.Response{ID: "sinch:01EQBC1A3BEK731GY4YXEN0C2R:MESSAGE_INBOUND", Subject: "ccrelay.in.sinch.app.message_inbound", Stream: "CCRELAY_EVENTS", Seq: 123456}
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 256)
		for b.Loop() {
			buf = r.AppendJSON(buf[:0])
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
