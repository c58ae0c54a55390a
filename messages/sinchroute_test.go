package messages_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/messages"
)

// TestRouteSinchCallbackTakesRealCallbacks: every callback of Sinch's SDK
// test resources and documentation is routed by the one-pass reader, not
// by the encoding/json fallback, and gets the route DecodeSinchCallback
// gives. The exceptions are the ones the reader leaves to encoding/json on
// purpose: trigger keys ccrelay does not know.
func TestRouteSinchCallbackTakesRealCallbacks(t *testing.T) {
	fast := 0
	for _, fx := range sinchFixtures(t) {
		cb, err := messages.DecodeSinchCallback(fx.body)
		if err != nil {
			t.Fatalf("%s: %v", fx.name, err)
		}
		want := cb.Route("eu", fx.body)
		got, ok := messages.ScanSinchRoute("eu", fx.body)
		switch {
		case !ok && cb.Known:
			t.Errorf("%s: a %s callback left to encoding/json", fx.name, cb.Trigger)
		case ok && got != want:
			t.Errorf("%s: one pass %+v, encoding/json %+v", fx.name, got, want)
		case ok:
			fast++
		}
		if r, err := messages.RouteSinchCallback("eu", fx.body); err != nil || r != want {
			t.Errorf("%s: RouteSinchCallback %+v, %v; want %+v", fx.name, r, err, want)
		}
	}
	if fast < 40 {
		t.Errorf("only %d fixtures took the one pass", fast)
	}
}

// TestRouteSinchCallbackTellsMediaMessages: the one pass tells a media
// message from every other kind of contact message, as
// SinchInboundMessage.Media does.
func TestRouteSinchCallbackTellsMediaMessages(t *testing.T) {
	for _, c := range []struct {
		msg   string
		media bool
	}{
		{`{"media_message":{"url":"https://m.test/a.jpg","filename_override":"a.jpg"}}`, true},
		{`{"media_message":{}}`, true},
		{`{"text_message":{"text":"hi"}}`, false},
		{`{"media_card_message":{"url":"https://m.test/c.png","caption":"look"}}`, false},
		{`{"media_message":null,"text_message":{"text":"hi"}}`, false},
		{`{"brand_new_kind":{"media_message":{"url":"x"}}}`, false},
		{`null`, false},
	} {
		body := []byte(`{"app_id":"APP","message":{"id":"M1","direction":"TO_APP","contact_message":` + c.msg +
			`,"channel_identity":{"channel":"WHATSAPP","identity":"4670"},"contact_id":"CT"}}`)
		r, ok := messages.ScanSinchRoute("eu", body)
		if !ok || r.Media != c.media {
			t.Errorf("%s: media %v (one pass: %v), want %v", c.msg, r.Media, ok, c.media)
		}
		checkRouteMatches(t, body)
	}
}

// TestRouteSinchCallbackLeavesDoubtToEncodingJSON: bodies where encoding/json's
// rules (case folding, the last of repeated keys, escapes, strict
// accept_time) decide the answer are not read by the one pass, and
// RouteSinchCallback still answers as DecodeSinchCallback does.
func TestRouteSinchCallbackLeavesDoubtToEncodingJSON(t *testing.T) {
	for _, body := range []string{
		`{"app_id":"A","message":{"id":"M1","ID":"M2"}}`,
		`{"app_id":"A","message":{"id":"M1","id":"M2"}}`,
		`{"App_Id":"A","message":{"id":"M1"}}`,
		`{"app_id":"A","message":{"id":"M\u0031"}}`,
		`{"app_id":"A","mess\u0061ge":{"id":"M1"}}`,
		`{"app_id":"A","message":{"id":"M1","accept_time":"yesterday"}}`,
		`{"app_id":"A","message":{"id":"M1"},"message":null}`,
		`{"app_id":"A","message":{"id":"M1","channel_identity":{"channel":"SMS","CHANNEL":"MMS","identity":"1"}}}`,
		`{"app_id":"A","message_delivery_report":{"message_id":"M1","status":"READ","channel_identity":{"channel":"SMS","identity":"1"}},"brand_new":{}}`,
		`{"app_id":"A","message":{"id":1}}`,
		`{"app_id":7,"message":{"id":"M1"}}`,
		`{"app_id":"A","message":{"id":"M1","contact_message":{"Media_Message":{"url":"https://m.test/a.jpg"}}}}`,
		`{"app_id":"A","message":{"id":"M1","contact_message":{"media_message":"https://m.test/a.jpg"}}}`,
	} {
		if _, ok := messages.ScanSinchRoute("eu", []byte(body)); ok {
			t.Errorf("one pass read %s", body)
		}
		checkRouteMatches(t, []byte(body))
	}
}

// checkRouteMatches holds RouteSinchCallback, and the one pass where it
// reads a body, to DecodeSinchCallback's answer.
func checkRouteMatches(t *testing.T, body []byte) {
	t.Helper()
	cb, derr := messages.DecodeSinchCallback(body)
	if r, ok := messages.ScanSinchRoute("eu", body); ok {
		if derr != nil {
			t.Fatalf("one pass accepted what encoding/json refuses (%v): %q -> %+v", derr, body, r)
		}
		if want := cb.Route("eu", body); r != want {
			t.Fatalf("%q: one pass %+v, encoding/json %+v", body, r, want)
		}
	}
	r, err := messages.RouteSinchCallback("eu", body)
	switch {
	case derr != nil:
		if err == nil || err.Error() != derr.Error() || !errors.Is(err, messages.ErrInvalidPayload) {
			t.Fatalf("%q: RouteSinchCallback error %v, DecodeSinchCallback %v", body, err, derr)
		}
	case err != nil:
		t.Fatalf("%q: RouteSinchCallback refused (%v) what DecodeSinchCallback accepts", body, err)
	case r != cb.Route("eu", body):
		t.Fatalf("%q: RouteSinchCallback %+v, want %+v", body, r, cb.Route("eu", body))
	}
}

// TestRouteSinchCallbackRefusesControlCharacters: a raw control character
// anywhere in a string, at any offset of an eight-byte word, is invalid
// JSON, as encoding/json says.
func TestRouteSinchCallbackRefusesControlCharacters(t *testing.T) {
	for _, c := range []byte{0x00, 0x01, 0x0a, 0x1f} {
		for pad := range 17 {
			text := strings.Repeat("é", pad%3) + strings.Repeat("x", pad) + string(c) + "y"
			body := []byte(`{"app_id":"A","message":{"id":"M1","contact_message":{"text_message":{"text":"` + text + `"}}}}`)
			if _, ok := messages.ScanSinchRoute("eu", body); ok {
				t.Fatalf("one pass read a string with byte %#x at offset %d", c, len(text)-2)
			}
			checkRouteMatches(t, body)
		}
	}
	body := []byte(`{"app_id":"A","message":{"id":"M1","contact_message":{"text_message":{"text":"` + strings.Repeat("ä ~\x7f", 9) + `"}}}}`)
	if _, ok := messages.ScanSinchRoute("eu", body); !ok {
		t.Fatal("one pass refused a string without control characters")
	}
}

func FuzzRouteSinchCallback(f *testing.F) {
	for _, fx := range sinchFixtures(f) {
		f.Add(fx.body)
	}
	for _, s := range []string{
		`{"app_id":"A","message":{"id":"M","contact_id":"C","channel_identity":{"channel":"SMS","identity":"46"},"accept_time":"2026-01-01T00:00:00Z"}}`,
		`{"app_id":"","event_time":"2026-01-01T00:00:00.5+01:00","contact_create_notification":{"contact":{"id":"C"}}}`,
		`{"app_id":"A","message_delivery_report":{"message_id":"M","status":"READ","conversation_id":"V","channel_identity":{"channel":"WHATSAPP","identity":"1"}}}`,
		`{"app_id":"A","event":{"x":[1,-0.5e+3,true,false,null,{"y":"\u00e9\n"}]}}`,
		`{"app_id":"A","message":{"id":"M","ſtatus":1,"ıd":"N"}}`, `{"app_id":"A","message":{"id":"M","accept_time":null}}`,
		`{"app_id":"A","message":{"id":"M","contact_message":{"media_message":{"url":"https://m.test/a.jpg"},"text_message":null}}}`,
		`{"app_id":"A","message":{"id":"M","contact_message":{"media_message":null,"text_message":{"text":"hi"}}}}`,
		` {"app_id":"A","opt_in_notification":{}} `, `{"app_id":"A","event":{}}x`, `{"app_id":"A","event":[01]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkRouteMatches(t, body)
		if r, err := messages.RouteSinchCallback("eu", body); err == nil && !strings.HasPrefix(r.ID, "sinch:eu:") {
			t.Fatalf("dedup id %q", r.ID)
		}
	})
}
