package signature

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// The WellFormed functions (and TwilioHeaderWellFormed) tell whether a
// header can be a signature of the scheme at all, without the body or the
// secret. Ingest runs them before it reads a body, so a request that can
// never verify costs no buffer; each Verify runs its own first, so the two
// can never disagree on what may verify.

// SinchWellFormed reports whether sig is the padded standard base64 of 32
// bytes, in its one canonical spelling.
func SinchWellFormed(sig string) bool { return strictLen(sig, sha256.Size) }

// HubWellFormed reports whether header is "sha256=" and 64 lower-case hex
// digits.
func HubWellFormed(header string) bool {
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok || len(hexSig) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(hexSig); i++ {
		if c := hexSig[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// strictLen reports whether s is the strict padded base64 of n bytes:
// what strictBase64 decodes to n bytes, checked without an allocation.
func strictLen(s string, n int) bool {
	if strings.ContainsAny(s, "\r\n") {
		// encoding/base64 skips CR and LF, strict or not, so the
		// verification this stands for does too. No HTTP header value
		// holds them; the rare path may allocate.
		s = strings.NewReplacer("\r", "", "\n", "").Replace(s)
	}
	if len(s) != base64.StdEncoding.EncodedLen(n) {
		return false
	}
	data := (8*n + 5) / 6
	for i := 0; i < len(s); i++ {
		v := strings.IndexByte(alphabet, s[i])
		switch {
		case i >= data:
			if s[i] != '=' {
				return false
			}
		case v < 0:
			return false
		case i == data-1 && v&(1<<(6*data-8*n)-1) != 0:
			// Unused low bits set: another spelling of the same bytes.
			return false
		}
	}
	return true
}

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
