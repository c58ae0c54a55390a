package signature_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/messages/signature"
)

// Twilio's own vectors (twilio-python tests/unit/test_request_validator.py).
const (
	twilioToken = "12345"
	twilioURL   = "https://mycompany.com/myapp.php?foo=1&bar=2"
)

func twilioParams() url.Values {
	return url.Values{
		"CallSid": {"CA1234567890ABCDE"},
		"Digits":  {"1234"},
		"From":    {"+14158675309"},
		"To":      {"+18005551212"},
		"Caller":  {"+14158675309"},
	}
}

func TestTwilioVectors(t *testing.T) {
	if got := signature.TwilioSign(twilioToken, twilioURL, twilioParams()); got != "RSOYDt4T1cUTdK1PDd93/VVr8B8=" {
		t.Errorf("TwilioSign = %s", got)
	}
	dup := url.Values{"Sid": {"CA123"}, "SidAccount": {"AC123"}, "Digits": {"5678", "1234", "1234"}}
	if got := signature.TwilioSign(twilioToken, twilioURL, dup); got != "IK+Dwps556ElfBT0I3Rgjkr1wJU=" {
		t.Errorf("TwilioSign of repeated values = %s", got)
	}
	for _, c := range []struct {
		url, sig string
		want     bool
	}{
		{twilioURL, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", true},
		// The SDKs accept the URL with and without the default port.
		{strings.Replace(twilioURL, ".com", ".com:443", 1), "RSOYDt4T1cUTdK1PDd93/VVr8B8=", true},
		{twilioURL, "kvajT1Ptam85bY51eRf/AJRuM3w=", true},
		{strings.Replace(twilioURL, "https", "http", 1), "0ZXoZLH/DfblKGATFgpif+LLRf4=", true},
		// And with any port removed (TestTwilioSDKVectors has the rest).
		{strings.Replace(twilioURL, ".com", ".com:1234", 1), "RSOYDt4T1cUTdK1PDd93/VVr8B8=", true},
		// Another host is another URL.
		{strings.Replace(twilioURL, "mycompany", "othercompany", 1), "RSOYDt4T1cUTdK1PDd93/VVr8B8=", false},
		{twilioURL, "RSOYDt4T1cUTdK1PDd93/VVr8B8", false},  // unpadded
		{twilioURL, "RSOYDt4T1cUTdK1PDd93/VVr8B9=", false}, // unused bits set: not the canonical spelling
		{twilioURL, "", false},
		{twilioURL + "&baz=3", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", false},
	} {
		if got := signature.TwilioVerify(twilioToken, c.url, twilioParams(), c.sig); got != c.want {
			t.Errorf("TwilioVerify(%s, %s) = %v, want %v", c.url, c.sig, got, c.want)
		}
	}
	if signature.TwilioVerify("", twilioURL, twilioParams(), "RSOYDt4T1cUTdK1PDd93/VVr8B8=") {
		t.Error("an empty token verified a signature")
	}
}

// GitHub's published X-Hub-Signature-256 example: the same scheme as
// Meta's, which publishes none.
func TestHubVector(t *testing.T) {
	const secret, body, sig = "It's a Secret to Everybody", "Hello, World!", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if got := signature.HubSign(secret, []byte(body)); got != sig {
		t.Errorf("HubSign = %s", got)
	}
	for _, c := range []struct {
		secret, body, sig string
		want              bool
	}{
		{secret, body, sig, true},
		{secret, body + " ", sig, false},
		{"other", body, sig, false},
		{"", body, sig, false},
		{secret, body, strings.ToUpper(sig[7:]), false},
		{secret, body, "sha256=" + strings.ToUpper(sig[7:]), false},
		{secret, body, "sha1=" + sig[7:], false},
		{secret, body, sig[:len(sig)-2], false},
	} {
		if got := signature.HubVerify(c.secret, []byte(c.body), c.sig); got != c.want {
			t.Errorf("HubVerify(%q, %q, %q) = %v, want %v", c.secret, c.body, c.sig, got, c.want)
		}
	}
}

func FuzzTwilioVerify(f *testing.F) {
	f.Add(twilioURL, "CallSid=CA1234567890ABCDE&Digits=1234&From=%2B14158675309&To=%2B18005551212&Caller=%2B14158675309", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
	f.Add("https://relay.example.com/v1/messaging/twilio/us", "MessageSid=SM1&Body=hi", "")
	f.Fuzz(func(t *testing.T, u, form, sig string) {
		params, err := url.ParseQuery(form)
		if err != nil {
			return
		}
		good := signature.TwilioSign(twilioToken, u, params)
		if !signature.TwilioVerify(twilioToken, u, params, good) {
			t.Fatalf("own signature refused: %q %q", u, form)
		}
		if sig != good && signature.TwilioVerify(twilioToken, u, params, sig) {
			// Only the signature of another of the URL's port variants
			// may verify as well.
			for _, alt := range signature.TwilioURLVariants(u) {
				if sig == signature.TwilioSign(twilioToken, alt, params) {
					return
				}
			}
			t.Fatalf("signature %q verified for %q", sig, u)
		}
	})
}

func FuzzHubVerify(f *testing.F) {
	f.Add("It's a Secret to Everybody", []byte("Hello, World!"), "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
	f.Fuzz(func(t *testing.T, secret string, body []byte, sig string) {
		good := signature.HubSign(secret, body)
		if secret != "" && !signature.HubVerify(secret, body, good) {
			t.Fatal("own signature refused")
		}
		if sig != good && signature.HubVerify(secret, body, sig) {
			t.Fatalf("signature %q verified; want only %q", sig, good)
		}
	})
}
