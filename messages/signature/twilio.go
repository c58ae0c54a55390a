package signature

import (
	"crypto/sha1" // #nosec G505 -- only the size of Twilio's HMAC-SHA1
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// HeaderTwilioSignatureSettings is sent by Twilio when a Webhook Rule
// matched the webhook's URL and its Setting signs with a SharedKey instead
// of the account's auth token: "key=<the SharedKey>,algorithm=HMAC_SHA256".
// The signature is still in X-Twilio-Signature, over the same string (the
// URL and the sorted parameters); only the key and the HMAC change
// (https://www.twilio.com/docs/usage/webhooks/webhook-shared-keys, and
// twilio-node's examples/WebhookSignatureValidation.md).
const HeaderTwilioSignatureSettings = "X-Twilio-Webhooks-Signature-Settings"

// TwilioAlgorithm is a signing algorithm as Twilio names it in
// HeaderTwilioSignatureSettings.
type TwilioAlgorithm string

// The algorithms Twilio signs with: HMAC-SHA1 with the auth token when no
// settings header is sent, else the one the header names.
const (
	TwilioHMACSHA1   TwilioAlgorithm = "HMAC_SHA1"
	TwilioHMACSHA256 TwilioAlgorithm = "HMAC_SHA256"
)

// size is the length of the algorithm's MAC; 0 for an unknown one.
func (a TwilioAlgorithm) size() int {
	switch a {
	case TwilioHMACSHA1:
		return sha1.Size
	case TwilioHMACSHA256:
		return sha256.Size
	}
	return 0
}

// ErrTwilioSettings is wrapped by the errors of ParseTwilioSettings.
var ErrTwilioSettings = errors.New("malformed " + HeaderTwilioSignatureSettings + " header")

// ParseTwilioSettings reads the value of HeaderTwilioSignatureSettings:
// comma-separated name=value pairs of which "algorithm" is required and
// must be one ccrelay knows. "key" names the SharedKey; it is returned for
// logs, the secret is configured.
func ParseTwilioSettings(v string) (alg TwilioAlgorithm, key string, err error) {
	seen := map[string]bool{}
	for _, part := range strings.Split(v, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok || name == "" || seen[name] {
			return "", "", fmt.Errorf("%w: want key=<SharedKey>,algorithm=<algorithm>", ErrTwilioSettings)
		}
		seen[name] = true
		switch name {
		case "algorithm":
			alg = TwilioAlgorithm(strings.TrimSpace(value))
		case "key":
			key = strings.TrimSpace(value)
		}
	}
	if alg.size() == 0 {
		return "", "", fmt.Errorf("%w: algorithm must be %s or %s", ErrTwilioSettings, TwilioHMACSHA1, TwilioHMACSHA256)
	}
	return alg, key, nil
}

// twilioScheme returns the algorithm a request's signature was made with
// and whether with a SharedKey; ok is false when the settings header is
// there but unreadable, or sent more than once.
func twilioScheme(h http.Header) (alg TwilioAlgorithm, shared, ok bool) {
	vs := h.Values(HeaderTwilioSignatureSettings)
	switch len(vs) {
	case 0:
		return TwilioHMACSHA1, false, true
	case 1:
		alg, _, err := ParseTwilioSettings(vs[0])
		return alg, true, err == nil
	}
	return "", false, false
}

// TwilioHeaderWellFormed reports whether a request's X-Twilio-Signature
// can be a signature of the scheme its headers name: the strict base64 of
// an HMAC-SHA1 without a settings header, else of the HMAC the settings
// header names. Ingest runs it before reading the body; TwilioVerifyRequest
// runs it first, so the two cannot disagree.
func TwilioHeaderWellFormed(h http.Header) bool {
	alg, _, ok := twilioScheme(h)
	return ok && strictLen(h.Get(HeaderTwilioSignature), alg.size())
}

// TwilioVerifyRequest reports whether the X-Twilio-Signature of a request
// with headers h, to fullURL with the form parameters form, is Twilio's:
// made with the auth token and HMAC-SHA1 when no settings header is sent,
// else with sharedKey (the SharedKey's secret, "" when none is configured,
// which refuses) and the algorithm the header names. The header chooses
// only between configured secrets: a request naming a SharedKey where
// none is configured is refused, never checked with the auth token.
func TwilioVerifyRequest(h http.Header, authToken, sharedKey, fullURL string, form url.Values) bool {
	if !TwilioHeaderWellFormed(h) {
		return false
	}
	alg, shared, _ := twilioScheme(h)
	key := authToken
	if shared {
		key = sharedKey
	}
	return TwilioVerifyWith(alg, key, fullURL, form, h.Get(HeaderTwilioSignature))
}
