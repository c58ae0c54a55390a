package auth

import (
	"errors"
	"github.com/ccrelay/ccrelay/messages/secret"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDigestNonceExpires: a nonce older than NonceTTL is answered with
// ErrStaleNonce and a new challenge marked stale, so the client retries.
func TestDigestNonceExpires(t *testing.T) {
	d := NewDigest(secret.Credentials{"cp": "s3cret"}, "ccrelay")
	issued := time.Unix(1_800_000_000, 0)
	d.now = func() time.Time { return issued }
	nonce := regexp.MustCompile(`nonce="([^"]+)"`).FindStringSubmatch(d.Challenges(false)[0])[1]
	d.now = func() time.Time { return issued.Add(NonceTTL - time.Second) }
	if err := d.checkNonce(nonce); err != nil {
		t.Fatalf("fresh nonce: %v", err)
	}
	d.now = func() time.Time { return issued.Add(NonceTTL + time.Second) }
	if err := d.checkNonce(nonce); !errors.Is(err, ErrStaleNonce) {
		t.Fatalf("expired nonce: %v", err)
	}
	a := &Authenticator{APIKeyHeader: "x-api-key", Digest: d}
	r := httptest.NewRequest("POST", "/x", nil)
	r.Header.Set("Authorization", `Digest username="cp", realm="ccrelay", uri="/x", nonce="`+nonce+`", nc=00000001, cnonce="c", qop=auth, response="00"`)
	if _, err := a.Authenticate(r); !errors.Is(err, ErrStaleNonce) {
		t.Fatalf("Authenticate: %v", err)
	}
	if ch := a.Challenges(true); !strings.Contains(ch[0], "stale=true") {
		t.Errorf("challenge %q", ch[0])
	}
}
