// Package sinch is the ingest adapter of Sinch Conversation API callbacks:
// POST /v1/sinch/{service}, one webhook secret per messaging service.
package sinch

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
)

// Callback signature headers.
const (
	HeaderSignature = "X-Sinch-Webhook-Signature"
	HeaderNonce     = "X-Sinch-Webhook-Signature-Nonce"
	HeaderTimestamp = "X-Sinch-Webhook-Signature-Timestamp"
	HeaderAlgorithm = "X-Sinch-Webhook-Signature-Algorithm"
)

// strictBase64 is the padded standard alphabet that refuses non-zero
// unused bits. Immutable, like base64.StdEncoding itself.
var strictBase64 = base64.StdEncoding.Strict()

// Algorithm is the only signature algorithm Sinch uses.
const Algorithm = "HmacSHA256"

// Sign returns the signature Sinch sends for body: the padded standard
// base64 of HMAC-SHA256, keyed with the secret's bytes, over
// body + "." + nonce + "." + timestamp.
func Sign(secret string, body []byte, nonce, timestamp string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	writeSigned(mac, body, nonce, timestamp)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Verify reports whether signature is the signature of body, nonce and
// timestamp under secret. It hashes the raw bytes as received and compares
// in constant time.
func Verify(secret string, body []byte, nonce, timestamp, signature string) bool {
	if secret == "" {
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
