package messages

import (
	"crypto/sha256"
	"encoding/hex"
)

// BodyDigest is the dedup id of an event that carries no id of its own: the
// hex SHA-256 of its body, so identical bodies deduplicate and any change in
// them does not.
func BodyDigest(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}
