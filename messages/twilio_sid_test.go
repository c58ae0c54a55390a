package messages_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/signature"
)

// TestTwilioMergedParameters: Twilio signs the URL and each parameter's
// name and value run together, so a captured webhook whose MessageSid is
// merged with the next parameter ("MessageSid=<sid>NumMedia0", NumMedia
// dropped) keeps its signature. Decoded, it would be a new id, stored and
// relayed a second time; it is refused as a payload naming the field.
func TestTwilioMergedParameters(t *testing.T) {
	const sid = "SMbe794ce78f6b9fdf853d2acb76c080db"
	const u = "https://relay.example.com/v1/messaging/twilio/us"
	original := url.Values{"MessageSid": {sid}, "NumMedia": {"0"}, "From": {"+14155550100"}, "Body": {"hi"}}
	for _, c := range []struct {
		name, field string
		merged      url.Values
	}{
		{"MessageSid", "MessageSid", url.Values{"MessageSid": {sid + "NumMedia0"}, "From": {"+14155550100"}, "Body": {"hi"}}},
		{"SmsSid", "SmsSid", url.Values{"SmsSid": {sid + "To+14155550101"}, "From": {"+14155550100"}}},
		{"MessageStatus", "MessageStatus", url.Values{"MessageSid": {sid}, "MessageStatus": {"deliveredMessagingServiceSidMG1"}}},
	} {
		if c.name == "MessageSid" {
			// The premise: the merged body signs as the original.
			if signature.TwilioSign("tw-token", u, original) != signature.TwilioSign("tw-token", u, c.merged) {
				t.Fatal("the merged parameters do not sign as the original; the test's premise is wrong")
			}
		}
		_, err := messages.DecodeWebhook(messages.MessagingTwilio, "us", []byte(c.merged.Encode()))
		var fe *messages.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !errors.Is(err, messages.ErrInvalidPayload) {
			t.Errorf("%s merged: %v, want a FieldError naming %s", c.name, err, c.field)
		}
	}
	if w, err := messages.DecodeWebhook(messages.MessagingTwilio, "us", []byte(original.Encode())); err != nil || !strings.Contains(w.ID, sid) {
		t.Errorf("the original: %+v %v", w, err)
	}
}

// TestTwilioSIDFormat: message SIDs are SM or MM and 32 hexadecimal
// digits, as in Twilio's published webhooks (messages/testdata/messaging).
func TestTwilioSIDFormat(t *testing.T) {
	for sid, ok := range map[string]bool{
		"SMbe794ce78f6b9fdf853d2acb76c080db":    true,
		"MMc26223853f8c46b4ab7dfaa6abba0a26":    true,
		"SM0123456789ABCDEF0123456789abcdef":    true,
		"SM1":                                   false,
		"SMbe794ce78f6b9fdf853d2acb76c080dbx":   false,
		"SMbe794ce78f6b9fdf853d2acb76c080d":     false,
		"CAbe794ce78f6b9fdf853d2acb76c080db":    false,
		"smbe794ce78f6b9fdf853d2acb76c080db":    false,
		"SMbe794ce78f6b9fdf853d2acb76c080dg":    false,
		"SMbe794ce78f6b9fdf853d2acb76c080d\x00": false,
	} {
		_, err := messages.DecodeWebhook(messages.MessagingTwilio, "us", []byte(url.Values{"MessageSid": {sid}}.Encode()))
		if (err == nil) != ok {
			t.Errorf("%q: %v, want ok=%v", sid, err, ok)
		}
	}
}

// TestTwilioResplitCallback: a captured status callback whose
// "MessageStatus=delivered&SmsSid=<sid>" is resent as one parameter
// "MessageStatusdeliveredSmsSid=<sid>" signs as the original but would read
// as an inbound message with a new id. Found by attacking the binary.
func TestTwilioResplitCallback(t *testing.T) {
	const sid = "SM1342fe1b2c904d1ab04f0fc7a58abca9"
	const u = "https://relay.example.com/v1/messaging/twilio/us"
	original := url.Values{"AccountSid": {"AC" + strings.Repeat("0", 32)}, "From": {"+15017250604"}, "MessageSid": {sid},
		"MessageStatus": {"delivered"}, "SmsSid": {sid}, "SmsStatus": {"delivered"}, "To": {"+15558675310"}}
	resplit := url.Values{"AccountSid": original["AccountSid"], "From": original["From"], "MessageSid": {sid},
		"MessageStatusdeliveredSmsSid": {sid}, "SmsStatus": {"delivered"}, "To": original["To"]}
	if signature.TwilioSign("tw-token", u, original) != signature.TwilioSign("tw-token", u, resplit) {
		t.Fatal("the re-split parameters do not sign as the original; the test's premise is wrong")
	}
	for name, body := range map[string]url.Values{
		"re-split":            resplit,
		"status without it":   {"MessageSid": {sid}, "SmsStatus": {"delivered"}},
		"SIDs that differ":    {"MessageSid": {sid}, "SmsSid": {"SM" + strings.Repeat("0", 32)}, "SmsStatus": {"received"}},
		"SmsMessageSid stuck": {"MessageSid": {sid}, "SmsMessageSidX": {"1"}},
	} {
		if _, err := messages.DecodeWebhook(messages.MessagingTwilio, "us", []byte(body.Encode())); !errors.Is(err, messages.ErrInvalidPayload) {
			t.Errorf("%s: %v, want invalid payload", name, err)
		}
	}
	if w, err := messages.DecodeWebhook(messages.MessagingTwilio, "us", []byte(original.Encode())); err != nil || w.Kind != messages.KindStatus {
		t.Errorf("the original: %+v %v, want a status callback", w, err)
	}
}

// TestTwilioResplitAgain: the re-attack's re-splits of the same captured
// callback, each signing as the original: a name cut short, a boundary
// moved into a status, the rest taken by a last name.
func TestTwilioResplitAgain(t *testing.T) {
	const sid = "SM0123456789abcdef0123456789abcdef"
	const u = "https://relay.example.com/v1/messaging/twilio/us"
	original := url.Values{"AccountSid": {"AC" + strings.Repeat("0", 32)}, "ApiVersion": {"2010-04-01"}, "From": {"+4930000000"},
		"MessageSid": {sid}, "MessageStatus": {"delivered"}, "SmsSid": {sid}, "SmsStatus": {"delivered"}, "To": {"+4915100000001"}}
	head := func(kv ...string) url.Values {
		v := url.Values{"AccountSid": original["AccountSid"], "ApiVersion": original["ApiVersion"], "From": original["From"], "MessageSid": {sid}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	for name, v := range map[string]url.Values{
		"names cut short":        head("MessageStatu", "sdelivered", "SmsSid", sid, "SmsStatu", "sdelivered", "To", "+4915100000001"),
		"two parameters":         head("MessageStatu", "sdeliveredSmsSid"+sid+"SmsStatusdeliveredTo+4915100000001"),
		"status cut, name rest":  head("MessageStatus", "deliv", "eredSmsSid"+sid+"SmsStatusdeliveredTo", "+4915100000001"),
		"status cut, value rest": head("MessageStatus", "deliv", "ered", "SmsSid"+sid+"SmsStatusdeliveredTo+4915100000001"),
	} {
		if signature.TwilioSign("tw-token", u, original) != signature.TwilioSign("tw-token", u, v) {
			t.Fatalf("%s: does not sign as the original; the test's premise is wrong", name)
		}
		if _, err := messages.DecodeWebhook(messages.MessagingTwilio, "us", []byte(v.Encode())); !errors.Is(err, messages.ErrInvalidPayload) {
			t.Errorf("%s: %v, want invalid payload", name, err)
		}
	}
	reply := url.Values{"MessageSid": {sid}, "SmsSid": {sid}, "SmsStatus": {"received"}, "OriginalRepliedMessageSid": {"SM" + strings.Repeat("1", 32)}}
	if _, err := messages.DecodeWebhook(messages.MessagingTwilio, "us", []byte(reply.Encode())); err != nil {
		t.Errorf("a WhatsApp reply: %v", err)
	}
}
