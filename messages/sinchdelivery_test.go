package messages_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/ccrelay/ccrelay/messages"
)

// checkDeliveryMatches holds DecodeSinchDelivery to DecodeSinchCallback:
// the same refusal, or the same report, for any body.
func checkDeliveryMatches(t *testing.T, body []byte) {
	t.Helper()
	cb, derr := messages.DecodeSinchCallback(body)
	d, ok, err := messages.DecodeSinchDelivery(body)
	if derr != nil {
		if err == nil || err.Error() != derr.Error() || !errors.Is(err, messages.ErrInvalidPayload) {
			t.Fatalf("%q: DecodeSinchDelivery error %v, DecodeSinchCallback %v", body, err, derr)
		}
		return
	}
	if err != nil {
		t.Fatalf("%q: DecodeSinchDelivery refused (%v) what DecodeSinchCallback accepts", body, err)
	}
	want, wantOK := cb.Delivery()
	if ok != wantOK || !reflect.DeepEqual(d, want) {
		t.Fatalf("%q: DecodeSinchDelivery %+v %v (reason %+v), want %+v %v (reason %+v)", body, d, ok, d.Reason, want, wantOK, want.Reason)
	}
}

// TestDecodeSinchDeliveryAsSinchSendsThem: every delivery report of Sinch's
// SDKs and documentation is read in the one pass, as encoding/json reads
// it; every other callback is what DecodeSinchCallback says.
func TestDecodeSinchDeliveryAsSinchSendsThem(t *testing.T) {
	reports := 0
	for _, fx := range sinchFixtures(t) {
		t.Run(fx.name, func(t *testing.T) {
			checkDeliveryMatches(t, fx.body)
			if d, ok, err := messages.DecodeSinchDelivery(fx.body); err == nil && ok {
				reports++
				if !messages.ScanSinchDelivery(fx.body) {
					t.Errorf("Sinch's own delivery report is left to encoding/json")
				}
				if d.MessageID == "" || d.Status == "" {
					t.Errorf("read as %+v", d)
				}
			}
		})
	}
	if reports < 5 {
		t.Fatalf("%d delivery reports among the fixtures", reports)
	}
}

// TestDecodeSinchDeliveryReasons: the reason in every shape it comes in
// (Sinch's object, the bare string its SMS reports carry, null, and
// anything else) reads as encoding/json reads it, in the one pass.
func TestDecodeSinchDeliveryReasons(t *testing.T) {
	for _, tc := range []struct {
		reason string
		want   *messages.SinchReason
		// onePass: the reason itself is read without encoding/json.
		onePass bool
	}{
		{`{"code":"RECIPIENT_NOT_REACHABLE","description":"gone","sub_code":"UNSPECIFIED_SUB_CODE"}`, &messages.SinchReason{Code: "RECIPIENT_NOT_REACHABLE", Description: "gone", SubCode: "UNSPECIFIED_SUB_CODE"}, true},
		{`{ "code" : null , "description":"d", "extra":{"a":[1,2.5e3,true]} }`, &messages.SinchReason{Description: "d"}, true},
		{`""`, &messages.SinchReason{}, true},
		{`"OUTSIDE_ALLOWED_SENDING_WINDOW"`, &messages.SinchReason{Code: "OUTSIDE_ALLOWED_SENDING_WINDOW"}, true},
		{`null`, nil, false},
		{`"\u0041"`, &messages.SinchReason{Code: "A"}, false},
		{`{"CODE":"X"}`, &messages.SinchReason{Code: "X"}, false},
		{`{"code":"A","code":"B"}`, &messages.SinchReason{Code: "B"}, false},
		{`5`, &messages.SinchReason{}, false},
		{`{"code":5}`, &messages.SinchReason{}, false},
		{`[1,{"a":"b"}]`, &messages.SinchReason{}, false},
	} {
		body := []byte(`{"app_id":"APP","event_time":"2026-01-02T03:04:05.678Z","message_delivery_report":{"message_id":"M1","status":"FAILED","channel_identity":{"channel":"WHATSAPP","identity":"46"},"contact_id":"C1","conversation_id":"V1","reason":` + tc.reason + `}}`)
		checkDeliveryMatches(t, body)
		if !messages.ScanSinchDelivery(body) {
			t.Errorf("reason %s: the report is left to encoding/json", tc.reason)
		}
		if _, ok := messages.ScanReason([]byte(tc.reason)); ok != tc.onePass {
			t.Errorf("reason %s: read in the one pass %v, want %v", tc.reason, ok, tc.onePass)
		}
		d, _, _ := messages.DecodeSinchDelivery(body)
		if !reflect.DeepEqual(d.Reason, tc.want) {
			t.Errorf("reason %s: read %+v, want %+v", tc.reason, d.Reason, tc.want)
		}
	}
}

func FuzzDecodeSinchDelivery(f *testing.F) {
	for _, fx := range sinchFixtures(f) {
		f.Add(fx.body)
	}
	for _, s := range []string{
		`{"app_id":"A","message_delivery_report":{"message_id":"M","status":"READ","conversation_id":"V","channel_identity":{"channel":"WHATSAPP","identity":"1"}}}`,
		`{"app_id":"A","accepted_time":"2026-01-01T00:00:00Z","message_delivery_report":{"message_id":"M","status":"FAILED","reason":"X"}}`,
		`{"app_id":"A","message_delivery_report":{"message_id":"M","status":"FAILED","reason":{"code":"C","code":"D"}}}`,
		`{"app_id":"A","message_delivery_report":{"message_id":"M","status":"FAILED","Reason":{"code":"C"},"reason":null}}`,
		`{"app_id":"A","message_delivery_report":{"message_id":"M","status":"FAILED","reason":"\u0041"}}`,
		`{"app_id":"A","message_delivery_report":{"message_id":"M","status":""}}`,
		`{"app_id":"A","message":{"id":"M"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDeliveryMatches(t, body)
	})
}

// BenchmarkDecodeSinchDelivery is what the deliveries processor pays per
// report, against BenchmarkDecodeSinchCallback on the same report.
func BenchmarkDecodeSinchDelivery(b *testing.B) {
	body := []byte(`{"app_id":"01EB37HMH1M6SV18ABNS3G135H","accepted_time":"2026-11-23T18:00:00.123Z","event_time":"2026-11-23T18:00:01.456Z","project_id":"c36f3d3d-1513-4edd-ae42-11995557ff61","message_delivery_report":{"message_id":"01EQ8235TD19N21XQTH12B145D","conversation_id":"01EQ8172WMDB8008EFT4M30481","status":"DELIVERED","channel_identity":{"channel":"WHATSAPP","identity":"46732000000","app_id":""},"contact_id":"01EQ4174TXGMNX3R6JW2W3S2X4","metadata":"","processing_mode":"CONVERSATION"},"message_metadata":"","correlation_id":""}`)
	for _, tc := range []struct {
		name   string
		decode func([]byte) error
	}{
		{"one_pass", func(b []byte) error { _, _, err := messages.DecodeSinchDelivery(b); return err }},
		{"encoding_json", func(b []byte) error { _, err := messages.DecodeSinchCallback(b); return err }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if err := tc.decode(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
