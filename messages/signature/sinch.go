// Package signature holds the webhook signature schemes of the providers
// ccrelay takes webhooks from and relays them to Contact Pro for: Sinch
// (Conversation API and SMS), Twilio and Meta (X-Hub-Signature-256). Ingest
// verifies with them; the relay signs again with them where a signature
// binds a time or a URL. It is a leaf of the contract.
package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
)

// Sinch callback signature headers.
const (
	SinchHeaderSignature = "X-Sinch-Webhook-Signature"
	SinchHeaderNonce     = "X-Sinch-Webhook-Signature-Nonce"
	SinchHeaderTimestamp = "X-Sinch-Webhook-Signature-Timestamp"
	SinchHeaderAlgorithm = "X-Sinch-Webhook-Signature-Algorithm"
)

// strictBase64 is the padded standard alphabet that refuses non-zero
// unused bits. Immutable, like base64.StdEncoding itself.
var strictBase64 = base64.StdEncoding.Strict()

// SinchAlgorithm is the only signature algorithm Sinch uses.
const SinchAlgorithm = "HmacSHA256"

// SinchSign returns the signature Sinch sends for body: the padded standard
// base64 of HMAC-SHA256, keyed with the secret's bytes, over
// body + "." + nonce + "." + timestamp.
func SinchSign(secret string, body []byte, nonce, timestamp string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	writeSigned(mac, body, nonce, timestamp)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// SinchVerify reports whether signature is the signature of body, nonce and
// timestamp under secret. It hashes the raw bytes as received and compares
// in constant time.
func SinchVerify(secret string, body []byte, nonce, timestamp, signature string) bool {
	if secret == "" || !SinchWellFormed(signature) {
		return false
	}
	var want [sha256.Size]byte
	// A valid signature decodes to exactly 32 bytes; anything else is wrong,
	// and decoding into a fixed array avoids an allocation per request.
	if len(signature) != base64.StdEncoding.EncodedLen(sha256.Size) {
		return false
	}
	var got [sha256.Size + 2]byte
	// Strict: the last character carries two unused bits, and a lenient
	// decoder would accept four spellings of one signature.
	n, err := strictBase64.Decode(got[:], []byte(signature))
	if err != nil || n != sha256.Size {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	writeSigned(mac, body, nonce, timestamp)
	return hmac.Equal(mac.Sum(want[:0]), got[:n])
}

func writeSigned(h hash.Hash, body []byte, nonce, timestamp string) {
	h.Write(body)
	h.Write([]byte{'.'})
	h.Write([]byte(nonce))
	h.Write([]byte{'.'})
	h.Write([]byte(timestamp))
}
