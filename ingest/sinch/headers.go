package sinch

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ccrelay/ccrelay/ingest"
	"github.com/ccrelay/ccrelay/messages/signature"
)

// msgNoMatch is the one message of a refused signature, and of a service
// with no secret: a caller cannot tell configured services apart.
const msgNoMatch = "the signature does not match"

// CheckHeaders checks what of a request signed the way Sinch signs can be
// checked without its body: the algorithm, the signature, nonce and
// timestamp headers present, the signature of the right shape, and the
// timestamp within maxSkew of now (0 skips that check). Authorize runs it
// before the body is read and VerifyRequest again with the body, so the
// two cannot disagree. Errors are 401 answers.
func CheckHeaders(h http.Header, now time.Time, maxSkew time.Duration) error {
	if alg := h.Get(signature.SinchHeaderAlgorithm); alg != "" && !strings.EqualFold(alg, signature.SinchAlgorithm) {
		return ingest.Unauthorized(ingest.CodeUnsupportedAlgorithm, "signature algorithm must be "+signature.SinchAlgorithm, challenge, nil)
	}
	sig, nonce, ts := h.Get(signature.SinchHeaderSignature), h.Get(signature.SinchHeaderNonce), h.Get(signature.SinchHeaderTimestamp)
	if sig == "" || nonce == "" || ts == "" {
		return ingest.Unauthorized(ingest.CodeInvalidSignature, "the signature, nonce and timestamp headers are required", challenge, nil)
	}
	if !signature.SinchWellFormed(sig) {
		// Worded as a signature that does not match: a caller learns no
		// more from a malformed one.
		return ingest.Unauthorized(ingest.CodeInvalidSignature, msgNoMatch, challenge, nil)
	}
	if maxSkew > 0 {
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			return ingest.Unauthorized(ingest.CodeStaleTimestamp, "the timestamp is not Unix seconds", challenge, nil)
		}
		if skew := now.Sub(time.Unix(sec, 0)); skew > maxSkew || -skew > maxSkew {
			return ingest.Unauthorized(ingest.CodeStaleTimestamp,
				fmt.Sprintf("the timestamp is %s away from now; at most %s is accepted", skew.Round(time.Second), maxSkew), challenge, nil)
		}
	}
	return nil
}
