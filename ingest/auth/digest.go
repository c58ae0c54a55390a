package auth

import (
	"crypto/hmac"
	"crypto/md5" // #nosec G501 -- RFC 7616 defines MD5 digests, and Contact Pro may offer only them
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/ccrelay/ccrelay/messages/secret"
	"hash"
	"net/http"
	"sort"
	"strings"
	"time"
)

// ErrStaleNonce is returned for a digest response to a nonce that expired:
// the client should answer the new challenge (RFC 7616 stale=true).
var ErrStaleNonce = errors.New("digest nonce expired")

// Digest checks HTTP Digest authentication (RFC 7616) with qop=auth and
// the MD5 and SHA-256 algorithms (and their -sess variants), as Contact
// Pro's event-driven integrations can send it ("digest:<user>").
//
// Nonces are stateless, so that every ingest replica accepts the nonces of
// every other: a nonce is its issue time and an HMAC of it under a key that
// replicas with the same users derive alike. A nonce is accepted until it
// is NonceTTL old. Nothing counts nonce uses, so a captured request can be
// sent again within that time; it carries the same body and so the same
// dedup id, and JetStream stores it once.
type Digest struct {
	users secret.Credentials
	realm string
	key   []byte
	ttl   time.Duration
	now   func() time.Time
}

// NonceTTL is how long a digest nonce is accepted.
const NonceTTL = 5 * time.Minute

// NewDigest returns a Digest for users in realm, or nil when there are no
// users.
func NewDigest(users secret.Credentials, realm string) *Digest {
	if len(users) == 0 {
		return nil
	}
	// The nonce key is derived from the users and their passwords, so
	// replicas configured alike agree on it without another setting, and
	// a password change invalidates outstanding nonces.
	mac := hmac.New(sha256.New, []byte("ccrelay digest nonce key v1"))
	names := users.Names()
	sort.Strings(names)
	for _, n := range names {
		mac.Write([]byte(n))
		mac.Write([]byte{0})
		mac.Write([]byte(users[n].Reveal()))
		mac.Write([]byte{0})
	}
	return &Digest{users: users, realm: realm, key: mac.Sum(nil), ttl: NonceTTL, now: time.Now}
}

// Challenges returns the WWW-Authenticate values to send with a 401: one
// per algorithm, SHA-256 first, as RFC 7616 §3.7 asks. stale marks the
// answer to an expired nonce.
func (d *Digest) Challenges(stale bool) []string {
	nonce := d.nonce(d.now())
	extra := ""
	if stale {
		extra = ", stale=true"
	}
	var out []string
	for _, alg := range []string{"SHA-256", "MD5"} {
		out = append(out, fmt.Sprintf(`Digest realm="%s", qop="auth", algorithm=%s, nonce="%s", opaque="%s"%s`, d.realm, alg, nonce, d.opaque(), extra))
	}
	return out
}

func (d *Digest) nonce(t time.Time) string {
	var b [8 + 16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixNano()))
	mac := hmac.New(sha256.New, d.key)
	mac.Write(b[:8])
	copy(b[8:], mac.Sum(nil))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// opaque is constant per key: clients must echo it, and it tells a
// response meant for another server apart.
func (d *Digest) opaque() string {
	mac := hmac.New(sha256.New, d.key)
	mac.Write([]byte("opaque"))
	return hex.EncodeToString(mac.Sum(nil)[:8])
}

// checkNonce verifies a nonce's HMAC and age.
func (d *Digest) checkNonce(n string) error {
	b, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil || len(b) != 24 {
		return fmt.Errorf("%w: malformed digest nonce", ErrBadCredentials)
	}
	mac := hmac.New(sha256.New, d.key)
	mac.Write(b[:8])
	if !hmac.Equal(mac.Sum(nil)[:16], b[8:]) {
		return fmt.Errorf("%w: digest nonce not issued here", ErrBadCredentials)
	}
	age := d.now().Sub(time.Unix(0, int64(binary.BigEndian.Uint64(b[:8])))) // #nosec G115 -- our own HMAC-verified UnixNano
	if age > d.ttl || age < -time.Minute {
		return ErrStaleNonce
	}
	return nil
}

// Verify checks a Digest Authorization header value (without the scheme)
// for request r, and returns the user.
func (d *Digest) Verify(r *http.Request, params string) (string, error) {
	p, err := parseDigestParams(params)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadCredentials, err)
	}
	user := p["username"]
	switch {
	case p["realm"] != d.realm:
		return "", fmt.Errorf("%w: digest realm", ErrBadCredentials)
	case p["qop"] != "auth":
		return "", fmt.Errorf("%w: digest qop must be auth", ErrBadCredentials)
	case p["nc"] == "" || p["cnonce"] == "" || p["response"] == "":
		return "", fmt.Errorf("%w: digest response incomplete", ErrBadCredentials)
	case strings.EqualFold(p["userhash"], "true"):
		return "", fmt.Errorf("%w: digest userhash is not supported", ErrBadCredentials)
	case p["uri"] != r.URL.RequestURI() && p["uri"] != r.RequestURI:
		return "", fmt.Errorf("%w: digest uri does not match the request", ErrBadCredentials)
	}
	if err := d.checkNonce(p["nonce"]); err != nil {
		return "", err
	}
	alg := p["algorithm"]
	if alg == "" {
		alg = "MD5"
	}
	var newHash func() hash.Hash
	sess := false
	switch strings.ToUpper(alg) {
	case "MD5":
		newHash = md5.New
	case "MD5-SESS":
		newHash, sess = md5.New, true
	case "SHA-256":
		newHash = sha256.New
	case "SHA-256-SESS":
		newHash, sess = sha256.New, true
	default:
		return "", fmt.Errorf("%w: digest algorithm %.16q", ErrBadCredentials, alg)
	}
	h := func(parts ...string) string {
		x := newHash()
		x.Write([]byte(strings.Join(parts, ":")))
		return hex.EncodeToString(x.Sum(nil))
	}
	// An unknown user is checked against a made-up password, so the time
	// taken does not tell which users exist.
	secret, known := d.users[user]
	pass := secret.Reveal()
	if !known {
		pass = "\x00unknown user"
	}
	ha1 := h(user, d.realm, pass)
	if sess {
		ha1 = h(ha1, p["nonce"], p["cnonce"])
	}
	want := h(ha1, p["nonce"], p["nc"], p["cnonce"], p["qop"], h(r.Method, p["uri"]))
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(p["response"]))) != 1 || !known {
		return "", fmt.Errorf("%w: digest", ErrBadCredentials)
	}
	return user, nil
}

// parseDigestParams parses the comma-separated auth-params of a Digest
// credential: name=token or name="quoted string" (RFC 7235 §2.1).
func parseDigestParams(s string) (map[string]string, error) {
	out := map[string]string{}
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			return out, nil
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, errors.New("malformed digest parameters")
		}
		name := strings.ToLower(strings.TrimSpace(s[:eq]))
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated quoted digest parameter")
			}
			val, s = b.String(), s[i+1:]
		} else {
			end := strings.IndexAny(s, ", \t")
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("digest parameter %.16q given twice", name)
		}
		out[name] = val
	}
}
