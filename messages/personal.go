package messages

import (
	"crypto/sha256"
	"encoding/hex"
)

// A dedup id travels where its body does not: ingest's and the
// processors' log lines, the answer to the sender, the dead letters'
// listings, X-Ccrelay-Event-Id to Contact Pro, and whatever collects
// those. So an id never holds a phone number or an e-mail address: a value
// that is one, or may be one, stands in it as its digest.
//
// The digest is plain SHA-256, not keyed. Every process derives ids from
// subject and body alone (a body republished with the NATS CLI must get
// its original's id), on every replica, for as long as the stream keeps
// the event; the one per-deployment key there is, CCRELAY_SEAL_KEYS, is
// optional and rotates, which would change the ids of stored events. The
// limitation: phone numbers are few enough (some 10^10 per country code)
// that whoever sets out to can recover one from its digest by trying them
// all. The digest keeps numbers out of sight in logs, tickets and
// dashboards; it does not hide them from someone who can read the stream,
// where the body beside the id holds the number in clear anyway. An
// operator finds a customer's events by computing the digest the same way:
// printf %s '+4917612345678' | sha256sum | cut -c1-16.

// PersonalDigest is how a value that is or may be personal data stands in
// a dedup id: "h-" and the first 16 hex digits (64 bits) of its SHA-256.
func PersonalDigest(v string) string {
	sum := sha256.Sum256([]byte(v))
	return "h-" + hex.EncodeToString(sum[:8])
}

// opaqueOrDigest is v when it has the shape of an opaque id (a GUID, a
// ULID, a token of letters, digits, '-' and '_' without a run of 6 digits
// and with a letter if it has 6 digits),
// else its PersonalDigest: anything with '@', '+', '.', a space or other
// punctuation, and any run of 6 or more digits (a phone number, with or
// without separators or letters around it: "tel4917612345678") may be an
// address, a number or a name. A canonical UUID stays in clear whatever
// digits it holds: it is what Contact Pro's contact ids are.
func opaqueOrDigest(v string) string {
	if v == "" || isUUID(v) {
		return v
	}
	run, digits, letters := 0, 0, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= '0' && c <= '9':
			digits++
			if run++; run >= 6 {
				return PersonalDigest(v)
			}
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			letters++
			run = 0
		case c == '-' || c == '_':
			run = 0
		default:
			return PersonalDigest(v)
		}
	}
	if letters == 0 && digits >= 6 {
		return PersonalDigest(v) // "0176-1234-5678"
	}
	return v
}

// mayBePersonal reports whether v holds what a phone number or an address
// has: '@', '+', a run of 6 or more digits, 6 digits without a letter
// ("0049 176 1234 5678", "4917-6123-4567"), or anything beyond ASCII (a
// number in full-width digits). A name of the events Contact Pro sends has
// none of them.
func mayBePersonal(v string) bool {
	run, digits, letters := 0, 0, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '@' || c == '+' || c >= 0x80:
			return true
		case c >= '0' && c <= '9':
			digits++
			if run++; run >= 6 {
				return true
			}
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			letters++
			run = 0
		default:
			run = 0
		}
	}
	return letters == 0 && digits >= 6
}
