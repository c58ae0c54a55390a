package signature

import (
	"crypto/hmac"
	"crypto/sha1" // #nosec G505 -- Twilio's signature scheme is HMAC-SHA1; ccrelay must speak it
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"sort"
	"strings"
)

// Signature headers of Twilio and Meta.
const (
	HeaderTwilioSignature = "X-Twilio-Signature"
	HeaderHubSignature256 = "X-Hub-Signature-256"
	// HeaderHubSignature is Meta's older SHA-1 signature, sent beside the
	// SHA-256 one; kept for Contact Pro, not checked.
	HeaderHubSignature = "X-Hub-Signature"
)

// TwilioSign returns Twilio's signature of a request to fullURL with the
// form parameters form: the base64 HMAC-SHA1, keyed with the auth token,
// of the URL followed by each parameter name and value, names sorted and
// the values of a repeated name sorted
// (https://www.twilio.com/docs/usage/security#validating-requests).
func TwilioSign(authToken, fullURL string, form url.Values) string {
	mac := hmac.New(sha1.New, []byte(authToken))
	mac.Write([]byte(fullURL))
	names := make([]string, 0, len(form))
	for k := range form {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		vs := append([]string(nil), form[k]...)
		sort.Strings(vs)
		for i, v := range vs {
			if i > 0 && v == vs[i-1] {
				continue // the SDKs sign a repeated pair once
			}
			mac.Write([]byte(k))
			mac.Write([]byte(v))
		}
	}
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// TwilioVerify reports whether signature is Twilio's signature of a
// request to fullURL with form. Like Twilio's SDKs it accepts the URL with
// and without the scheme's default port, which proxies add or drop.
func TwilioVerify(authToken, fullURL string, form url.Values, signature string) bool {
	if authToken == "" || !TwilioWellFormed(signature) {
		return false
	}
	got, err := strictBase64.DecodeString(signature)
	if err != nil {
		return false
	}
	ok := false
	for _, u := range urlVariants(fullURL) {
		want, _ := base64.StdEncoding.DecodeString(TwilioSign(authToken, u, form))
		// Every variant is compared, so the time says nothing of which.
		if hmac.Equal(want, got) {
			ok = true
		}
	}
	return ok
}

// urlVariants returns raw, and raw with its default port added or removed.
func urlVariants(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return []string{raw}
	}
	def := map[string]string{"https": "443", "http": "80"}[u.Scheme]
	if def == "" {
		return []string{raw}
	}
	alt := *u
	switch u.Port() {
	case "":
		alt.Host = u.Host + ":" + def
	case def:
		alt.Host = strings.TrimSuffix(u.Host, ":"+def)
	default:
		return []string{raw}
	}
	return []string{raw, alt.String()}
}

// HubSign returns the X-Hub-Signature-256 value of body: "sha256=" and the
// hex HMAC-SHA256 of the raw body, keyed with the app secret
// (https://developers.facebook.com/docs/messenger-platform/webhooks#validate-payloads).
func HubSign(appSecret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(appSecret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// HubVerify reports whether header is the X-Hub-Signature-256 of body.
func HubVerify(appSecret string, body []byte, header string) bool {
	if !HubWellFormed(header) {
		return false
	}
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if appSecret == "" || !ok || len(hexSig) != 2*sha256.Size {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	// Lower-case only: one spelling per signature.
	if err != nil || hexSig != strings.ToLower(hexSig) {
		return false
	}
	mac := hmac.New(sha256.New, []byte(appSecret))
	mac.Write(body)
	return hmac.Equal(mac.Sum(nil), got)
}
