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
	return TwilioSignWith(TwilioHMACSHA1, authToken, fullURL, form)
}

// TwilioSignWith is TwilioSign with the algorithm a Webhook Setting names:
// with a SharedKey only the HMAC changes, the signed string is the same.
func TwilioSignWith(alg TwilioAlgorithm, key, fullURL string, form url.Values) string {
	return base64.StdEncoding.EncodeToString(twilioMAC(alg, key, fullURL, form))
}

func twilioMAC(alg TwilioAlgorithm, key, fullURL string, form url.Values) []byte {
	h := sha1.New
	if alg == TwilioHMACSHA256 {
		h = sha256.New
	}
	mac := hmac.New(h, []byte(key))
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
	return mac.Sum(nil)
}

// TwilioVerify reports whether signature is Twilio's HMAC-SHA1 signature,
// under the auth token, of a request to fullURL with form. Like Twilio's
// SDKs (RequestValidator of twilio-go, twilio-node, twilio-java, ...) it
// accepts the signature of the URL as given, of the URL with the scheme's
// standard port added when it has none, and of the URL with its port
// removed: Twilio's own signing is inconsistent about ports, and proxies
// add or drop them.
func TwilioVerify(authToken, fullURL string, form url.Values, signature string) bool {
	return TwilioVerifyWith(TwilioHMACSHA1, authToken, fullURL, form, signature)
}

// TwilioVerifyWith is TwilioVerify with the algorithm a Webhook Setting
// names and its SharedKey secret as key.
func TwilioVerifyWith(alg TwilioAlgorithm, key, fullURL string, form url.Values, signature string) bool {
	size := alg.size()
	if key == "" || size == 0 || !strictLen(signature, size) {
		return false
	}
	got, err := strictBase64.DecodeString(signature)
	if err != nil {
		return false
	}
	ok := false
	for _, u := range TwilioURLVariants(fullURL) {
		// Every variant is compared, so the time says nothing of which.
		if hmac.Equal(twilioMAC(alg, key, u, form), got) {
			ok = true
		}
	}
	return ok
}

// TwilioURLVariants returns the URLs Twilio's SDKs check a signature
// against: raw, and raw with its port removed when it has one or with the
// scheme's standard port (443, 80) added when it has none. The variants
// are cut from raw's text, not re-encoded, so the case of the host, any
// user info, the path and the query stay exactly as configured.
func TwilioURLVariants(raw string) []string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return []string{raw}
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hostport := "", authority
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		userinfo, hostport = authority[:at+1], authority[at+1:]
	}
	host, port := hostport, ""
	// The last ':' starts the port unless it is inside an IPv6 literal.
	if c := strings.LastIndexByte(hostport, ':'); c >= 0 && c > strings.LastIndexByte(hostport, ']') {
		host, port = hostport[:c], hostport[c+1:]
	}
	prefix := scheme + "://" + userinfo + host
	if port != "" {
		return []string{raw, prefix + tail}
	}
	std := map[string]string{"https": "443", "http": "80"}[strings.ToLower(scheme)]
	if std == "" {
		return []string{raw}
	}
	return []string{raw, prefix + ":" + std + tail}
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
