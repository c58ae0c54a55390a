package signature_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/ccrelay/ccrelay/messages/signature"
)

// twilioSDKVector is one RequestValidator test of Twilio's SDKs: every SDK
// signs the same parameters (twilioParams) with the token "12345".
type twilioSDKVector struct {
	source, url, sig string
}

// The vectors, copied from the SDKs' tests (each names its file and test):
// the same five parameters, the URL as the SDK's test passes it, and the
// signature that SDK accepts for it.
var twilioSDKVectors = []twilioSDKVector{
	// twilio-node spec/validation.spec.js
	{"twilio-node: should succeed with the correct signature", "https://mycompany.com/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8="},
	{"twilio-node: should validate https urls with ports by stripping them", "https://mycompany.com:1234/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8="},
	{"twilio-node: should validate http urls with ports", "http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="},
	{"twilio-node: should validate https urls without ports by adding standard port 443", "https://mycompany.com/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w="},
	{"twilio-node: should validate http urls without ports by adding standard port 80", "http://mycompany.com/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="},
	{"twilio-node: should validate urls with credentials", "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2", "CukzLTc1tT5dXEDIHm/tKBanW10="},
	{"twilio-node: should validate urls with just username", "https://user@mycompany.com/myapp.php?foo=1&bar=2", "2YRLlVAflCqxaNicjMpJcSTgzSs="},
	{"twilio-node: should validate urls with credentials by adding port", "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2", "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI="},
	// twilio-go client/request_validator_test.go
	{"twilio-go: returns true when https and port is specified but signature is generated without it", "https://mycompany.com:1234/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8="},
	{"twilio-go: returns true when https and port is specified and signature is generated with it", "https://mycompany.com/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w="},
	{"twilio-go: returns true when http and port port is specified but signature is generated without it", "http://mycompany.com/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="},
	{"twilio-go: returns true when http and port is specified and signature is generated with it", "http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="},
	// twilio-java src/test/java/com/twilio/security/RequestValidatorTest.java
	{"twilio-java: testValidateRemovesPortHttps", "https://mycompany.com:1234/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8="},
	{"twilio-java: testValidateRemovesPortHttp", "http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="},
	{"twilio-java: testValidateAddsPortHttps", "https://mycompany.com/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w="},
	{"twilio-java: testValidateAddsPortHttp", "http://mycompany.com/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="},
	// twilio-csharp test/Twilio.Test/Security/RequestValidatorTest.cs
	{"twilio-csharp: TestValidateDictionaryMixedCase", "https://MyCompany.com/myapp.php?foo=1&bar=2", "g9IN/x4Cft2g517EjYvEvM/W7LU="},
	{"twilio-csharp: TestValidateDictionaryMixedCaseWithPort", "https://MyCompany.com:1234/myapp.php?foo=1&bar=2", "PCqOZm8cnu/L6+u5i5fuEd+Iac4="},
	{"twilio-csharp: TestValidateDictionaryMixedCaseAddsPortHttp", "http://MyCompany.com/myapp.php?foo=1&bar=2", "XY7AlKOKL6im4yWyX84gldUrtis="},
	{"twilio-csharp: TestValidateCredentialsArePreserved", "http://username:password@MyCompany.com/myapp.php?foo=1&bar=2", "PJ08CxXr7KLPjEQCTc8LkUSMwSM="},
	{"twilio-csharp: TestValidateCredentialsArePreservedUpperCaseScheme", "HTTP://username:password@MyCompany.com/myapp.php?foo=1&bar=2", "hy/l8pca+LFms4cvRdv8uiP6NGc="},
	{"twilio-csharp: TestValidateCredentialsArePreservedMixedCaseCreds", "http://Username:Password@MyCompany.com/myapp.php?foo=1&bar=2", "SkTSKyDJH9kUlhItI0slbgZ1UsI="},
	{"twilio-csharp: TestValidateRemovesPortHttps", "https://mycompany.com:1234/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8="},
	{"twilio-csharp: TestValidateRemovesPortHttp", "http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="},
	{"twilio-csharp: TestValidateAddsPortHttps", "https://mycompany.com/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w="},
	{"twilio-csharp: TestValidateAddsPortHttp", "http://mycompany.com/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="},
	{"twilio-csharp: TestValidateAddsCustomPortHttps", "https://mycompany.com:1234/myapp.php?foo=1&bar=2", "CYn1h0gLBdNxDGkKJg6hYohgeD8="},
	{"twilio-csharp: TestValidateAddsCustomPortHttp", "http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="},
	// twilio-ruby spec/security/request_validator_spec.rb
	{"twilio-ruby: should validate https urls with ports by stripping them", "https://mycompany.com:1234/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8="},
	{"twilio-ruby: should validate http urls with ports", "http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="},
	{"twilio-ruby: should validate urls with credentials by adding port", "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2", "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI="},
	// twilio-php tests/Twilio/Unit/Security/RequestValidatorTest.php
	{"twilio-php: testValidateRemovesPortHttps", "https://mycompany.com:1234/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8="},
	{"twilio-php: testValidateRemovesPortHttp", "http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="},
	{"twilio-php: testBuildUrlCreds", "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2", "CukzLTc1tT5dXEDIHm/tKBanW10="},
	{"twilio-php: testBuildUrlWithUser", "https://user@mycompany.com/myapp.php?foo=1&bar=2", "2YRLlVAflCqxaNicjMpJcSTgzSs="},
	{"twilio-php: testBuildUrlCredsAddsPort", "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2", "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI="},
}

// TestTwilioSDKVectors: every URL and signature one of Twilio's SDKs
// accepts is accepted here, and the same signature under another token or
// with a parameter changed is not.
func TestTwilioSDKVectors(t *testing.T) {
	for _, v := range twilioSDKVectors {
		if !signature.TwilioVerify(twilioToken, v.url, twilioParams(), v.sig) {
			t.Errorf("%s: %s refused", v.source, v.url)
		}
		if signature.TwilioVerify("54321", v.url, twilioParams(), v.sig) {
			t.Errorf("%s: accepted under another token", v.source)
		}
		p := twilioParams()
		p.Set("Digits", "1235")
		if signature.TwilioVerify(twilioToken, v.url, p, v.sig) {
			t.Errorf("%s: accepted with another parameter value", v.source)
		}
	}
}

// TestTwilioURLVariants: the URLs a signature is checked against are the
// SDKs' (as given, standard port added, any port removed) and nothing
// more, cut from the text as configured.
func TestTwilioURLVariants(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"https://relay.example.com/v1/messaging/twilio/us", []string{"https://relay.example.com/v1/messaging/twilio/us", "https://relay.example.com:443/v1/messaging/twilio/us"}},
		{"https://relay.example.com:8443/v1/x?a=1", []string{"https://relay.example.com:8443/v1/x?a=1", "https://relay.example.com/v1/x?a=1"}},
		{"https://relay.example.com:443/v1/x", []string{"https://relay.example.com:443/v1/x", "https://relay.example.com/v1/x"}},
		{"http://u:p@Relay.Example.com/x", []string{"http://u:p@Relay.Example.com/x", "http://u:p@Relay.Example.com:80/x"}},
		{"https://[2001:db8::1]:8443/x", []string{"https://[2001:db8::1]:8443/x", "https://[2001:db8::1]/x"}},
		{"https://[2001:db8::1]/x", []string{"https://[2001:db8::1]/x", "https://[2001:db8::1]:443/x"}},
		{"https://relay.example.com", []string{"https://relay.example.com", "https://relay.example.com:443"}},
		{"ftp://relay.example.com/x", []string{"ftp://relay.example.com/x"}},
		{"relay.example.com/x", []string{"relay.example.com/x"}},
	} {
		if got := signature.TwilioURLVariants(c.in); !slices.Equal(got, c.want) {
			t.Errorf("%s: %q, want %q", c.in, got, c.want)
		}
	}
}

// hmacSHA256Base64 is the SharedKey signature computed apart from the
// package: no published vector exists for HMAC_SHA256, so the test holds
// the package to the description (the same string, another HMAC).
func hmacSHA256Base64(key, s string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// TestTwilioSharedKey: with X-Twilio-Webhooks-Signature-Settings the
// signature is checked with the configured SharedKey secret and the
// algorithm the header names; without it, with the auth token and
// HMAC-SHA1. The header cannot make the auth token's signature pass for
// a SharedKey, nor a request pass where no SharedKey is configured.
func TestTwilioSharedKey(t *testing.T) {
	const shared = "shared-key-secret"
	u := "https://relay.example.com/v1/messaging/twilio/us"
	form := url.Values{"MessageSid": {"SM0123456789abcdef0123456789abcdef"}, "Body": {"hi"}}
	signed := u + "BodyhiMessageSidSM0123456789abcdef0123456789abcdef"
	sha256Sig := hmacSHA256Base64(shared, signed)
	if got := signature.TwilioSignWith(signature.TwilioHMACSHA256, shared, u, form); got != sha256Sig {
		t.Fatalf("TwilioSignWith = %s, want %s", got, sha256Sig)
	}
	settings := func(v string) http.Header {
		h := http.Header{}
		if v != "" {
			h.Set(signature.HeaderTwilioSignatureSettings, v)
		}
		return h
	}
	for _, c := range []struct {
		name, settings, sig, token, shared string
		want                               bool
	}{
		{"shared key, HMAC_SHA256", "key=KS00000000000000000000000000000000,algorithm=HMAC_SHA256", sha256Sig, "tw-token", shared, true},
		{"shared key, spaces", " algorithm = HMAC_SHA256 , key=KS1", sha256Sig, "tw-token", shared, true},
		{"shared key, HMAC_SHA1", "key=KS1,algorithm=HMAC_SHA1", signature.TwilioSign(shared, u, form), "tw-token", shared, true},
		{"no shared key configured", "key=KS1,algorithm=HMAC_SHA256", sha256Sig, "tw-token", "", false},
		{"auth token's signature sent as a shared key's", "key=KS1,algorithm=HMAC_SHA1", signature.TwilioSign("tw-token", u, form), "tw-token", shared, false},
		{"shared key's signature without the header", "", sha256Sig, "tw-token", shared, false},
		{"SHA-256 of the auth token without the header", "", hmacSHA256Base64("tw-token", signed), "tw-token", shared, false},
		{"unknown algorithm", "key=KS1,algorithm=HMAC_SHA512", sha256Sig, "tw-token", shared, false},
		{"no algorithm", "key=KS1", sha256Sig, "tw-token", shared, false},
		{"algorithm twice", "algorithm=HMAC_SHA256,algorithm=HMAC_SHA256", sha256Sig, "tw-token", shared, false},
		{"malformed", "HMAC_SHA256", sha256Sig, "tw-token", shared, false},
		{"auth token, no header", "", signature.TwilioSign("tw-token", u, form), "tw-token", shared, true},
	} {
		h := settings(c.settings)
		h.Set(signature.HeaderTwilioSignature, c.sig)
		if got := signature.TwilioVerifyRequest(h, c.token, c.shared, u, form); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
		if c.want && !signature.TwilioHeaderWellFormed(h) {
			t.Errorf("%s: verifies but is not well-formed", c.name)
		}
	}
	// Sent twice, the settings header is refused whatever each says.
	h := settings("key=KS1,algorithm=HMAC_SHA256")
	h.Add(signature.HeaderTwilioSignatureSettings, "key=KS1,algorithm=HMAC_SHA256")
	h.Set(signature.HeaderTwilioSignature, sha256Sig)
	if signature.TwilioVerifyRequest(h, "tw-token", shared, u, form) || signature.TwilioHeaderWellFormed(h) {
		t.Error("a repeated settings header is accepted")
	}
}

// FuzzTwilioVerifyRequest: whatever the headers say, a request verifies
// only with the signature of the configured secret its settings header
// chooses, over one of the URL's variants.
func FuzzTwilioVerifyRequest(f *testing.F) {
	f.Add("key=KS1,algorithm=HMAC_SHA256", "MessageSid=SM0123456789abcdef0123456789abcdef&Body=hi", "")
	f.Add("", "MessageSid=SM0123456789abcdef0123456789abcdef", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
	f.Add("algorithm=HMAC_SHA1", "a=b", "")
	const token, shared = "tw-token", "shared-key-secret"
	u := "https://relay.example.com:8443/v1/messaging/twilio/us"
	f.Fuzz(func(t *testing.T, settings, form, sig string) {
		params, err := url.ParseQuery(form)
		if err != nil {
			return
		}
		h := http.Header{}
		if settings != "" {
			h.Set(signature.HeaderTwilioSignatureSettings, settings)
		}
		alg, _, perr := signature.ParseTwilioSettings(settings)
		key := shared
		if settings == "" {
			alg, key, perr = signature.TwilioHMACSHA1, token, nil
		}
		if perr == nil {
			good := signature.TwilioSignWith(alg, key, u, params)
			h.Set(signature.HeaderTwilioSignature, good)
			if !signature.TwilioVerifyRequest(h, token, shared, u, params) {
				t.Fatalf("own signature refused: %q %q", settings, form)
			}
		}
		h.Set(signature.HeaderTwilioSignature, sig)
		if !signature.TwilioVerifyRequest(h, token, shared, u, params) {
			return
		}
		if perr != nil {
			t.Fatalf("verified with unreadable settings %q", settings)
		}
		for _, v := range signature.TwilioURLVariants(u) {
			if sig == signature.TwilioSignWith(alg, key, v, params) {
				return
			}
		}
		t.Fatalf("signature %q verified (settings %q, form %q)", sig, settings, form)
	})
}
