package auth

import (
	"context"
	"crypto/hmac"
	"crypto/md5" // #nosec G501 -- RFC 7616 defines MD5 digests; offered only when CCRELAY_CONTACTPRO_DIGEST_MD5 asks for it
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ccrelay/ccrelay/messages/secret"
)

// ErrStaleNonce is returned for a digest response to a nonce that expired:
// the client should answer the new challenge (RFC 7616 stale=true).
var ErrStaleNonce = errors.New("digest nonce expired")

// ErrNonceCountUsed is wrapped (with ErrBadCredentials) by the refusal of
// a digest response whose nonce and nonce count were accepted before: a
// replay (RFC 7616 §3.4, nc).
var ErrNonceCountUsed = errors.New("digest nonce count used before")

// ErrNonceStore is wrapped by failures to record a nonce count: whether
// the request is a replay cannot be told, so it is neither accepted nor
// refused as unauthorized (ingest answers 503).
var ErrNonceStore = errors.New("digest nonce counts cannot be recorded")

// NonceCounter records the nonce counts digest responses used, for every
// replica at once.
type NonceCounter interface {
	// Use records nc of nonce and fails with ErrNonceCountUsed when it was
	// recorded before, or with ErrNonceStore when it cannot tell.
	Use(ctx context.Context, nonce, nc string) error
}

// Quality-of-protection values of RFC 7616.
const (
	// QOPAuth covers the method and URI.
	QOPAuth = "auth"
	// QOPAuthInt covers the body as well.
	QOPAuthInt = "auth-int"
)

// MaxClockSkew is how far replicas' clocks may be apart: a nonce is
// accepted that much before its issue time, and its counts are kept that
// much longer than its lifetime (see DigestStore).
const MaxClockSkew = time.Minute

// DigestConfig sets a Digest.
type DigestConfig struct {
	// Realm is sent in challenges and must come back in responses.
	Realm string
	// NonceTTL is how long a nonce is accepted.
	NonceTTL time.Duration
	// MD5 offers and accepts MD5 and MD5-sess besides SHA-256.
	MD5 bool
	// QOP are the qop values offered and accepted, in order of preference.
	QOP []string
	// Key is the deployment's secret nonces are made with (DigestStore.Key).
	Key []byte
	// Nonces records the nonce counts used; required.
	Nonces NonceCounter
}

// Digest checks HTTP Digest authentication (RFC 7616), as Contact Pro's
// event-driven integrations send it ("digest:<user>"): SHA-256 (and MD5
// only when configured), qop=auth and, covering the body, qop=auth-int.
//
// Nonces are stateless, so that every ingest replica accepts the nonces of
// every other: a nonce is its issue time, random bytes and an HMAC of both
// under a key derived from the deployment's secret, so a nonce of another
// deployment (another JetStream, or another subject prefix on the same
// one) does not open this one even with the same users. Each nonce and
// nonce count is accepted once, across replicas (NonceCounter), and only
// for NonceTTL: a captured response cannot be sent again, with its body or
// another one.
type Digest struct {
	users  secret.Credentials
	cfg    DigestConfig
	key    []byte
	algs   []string
	now    func() time.Time
	opaque string
}

// NewDigest returns a Digest for users, or nil when there are none. It
// fails when cfg has no key or no nonce counter: without them a nonce
// would open any deployment, or open this one any number of times.
func NewDigest(users secret.Credentials, cfg DigestConfig) (*Digest, error) {
	if len(users) == 0 {
		return nil, nil
	}
	switch {
	case len(cfg.Key) < 16:
		return nil, errors.New("digest: no deployment key")
	case cfg.Nonces == nil:
		return nil, errors.New("digest: no nonce counter")
	case cfg.NonceTTL <= 0:
		return nil, errors.New("digest: the nonce lifetime must be positive")
	case len(cfg.QOP) == 0:
		return nil, errors.New("digest: no qop")
	}
	for _, q := range cfg.QOP {
		if q != QOPAuth && q != QOPAuthInt {
			return nil, fmt.Errorf("digest: qop %q is neither %s nor %s", q, QOPAuth, QOPAuthInt)
		}
	}
	mac := hmac.New(sha256.New, cfg.Key)
	mac.Write([]byte("ccrelay digest nonce key v2\x00"))
	mac.Write([]byte(cfg.Realm))
	d := &Digest{users: users, cfg: cfg, key: mac.Sum(nil), algs: []string{"SHA-256"}, now: time.Now}
	if cfg.MD5 {
		d.algs = append(d.algs, "MD5")
	}
	o := hmac.New(sha256.New, d.key)
	o.Write([]byte("opaque"))
	d.opaque = hex.EncodeToString(o.Sum(nil)[:8])
	return d, nil
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
	qop := strings.Join(d.cfg.QOP, ", ")
	out := make([]string, 0, len(d.algs))
	for _, alg := range d.algs {
		out = append(out, fmt.Sprintf(`Digest realm="%s", qop="%s", algorithm=%s, nonce="%s", opaque="%s"%s`, d.cfg.Realm, qop, alg, nonce, d.opaque, extra))
	}
	return out
}

// A nonce is 8 bytes of issue time, 8 random bytes (two challenges in the
// same nanosecond differ, so their counts do too) and 16 bytes of HMAC.
const nonceLen = 8 + 8 + 16

func (d *Digest) nonce(t time.Time) string {
	var b [nonceLen]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixNano())) // #nosec G115 -- a time after 1970
	_, _ = rand.Read(b[8:16])
	mac := hmac.New(sha256.New, d.key)
	mac.Write(b[:16])
	copy(b[16:], mac.Sum(nil))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// checkNonce verifies a nonce's HMAC and age.
func (d *Digest) checkNonce(n string) error {
	b, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil || len(b) != nonceLen {
		return fmt.Errorf("%w: malformed digest nonce", ErrBadCredentials)
	}
	mac := hmac.New(sha256.New, d.key)
	mac.Write(b[:16])
	if !hmac.Equal(mac.Sum(nil)[:16], b[16:]) {
		return fmt.Errorf("%w: digest nonce not issued here", ErrBadCredentials)
	}
	age := d.now().Sub(time.Unix(0, int64(binary.BigEndian.Uint64(b[:8])))) // #nosec G115 -- our own HMAC-verified UnixNano
	if age > d.cfg.NonceTTL || age < -MaxClockSkew {
		return ErrStaleNonce
	}
	return nil
}

// digestResponse is a response that passed every check that needs no
// body; check finishes it.
type digestResponse struct {
	d      *Digest
	p      map[string]string
	user   string
	known  bool
	ha1    string
	hash   func() hash.Hash
	method string
}

// Verify checks a Digest Authorization header value (without the scheme)
// for request r, and returns the user. A qop=auth-int response covers the
// body, which is not read yet: Verify then returns the check to run on it
// (nil for qop=auth, already checked).
func (d *Digest) Verify(r *http.Request, params string) (user string, body func(ctx context.Context, body []byte) error, err error) {
	dr, err := d.parse(r, params)
	if err != nil {
		return "", nil, err
	}
	if dr.p["qop"] == QOPAuthInt {
		return dr.user, dr.checkBody, nil
	}
	if err := dr.check(r.Context(), dr.h(r.Method, dr.p["uri"])); err != nil {
		return "", nil, err
	}
	return dr.user, nil, nil
}

// parse runs the checks that need neither the password nor the body.
func (d *Digest) parse(r *http.Request, params string) (*digestResponse, error) {
	p, err := parseDigestParams(params)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCredentials, err)
	}
	switch {
	case p["realm"] != d.cfg.Realm:
		return nil, fmt.Errorf("%w: digest realm", ErrBadCredentials)
	case !slices.Contains(d.cfg.QOP, p["qop"]):
		return nil, fmt.Errorf("%w: digest qop must be one of %s", ErrBadCredentials, strings.Join(d.cfg.QOP, ", "))
	case !isNonceCount(p["nc"]) || p["cnonce"] == "" || p["response"] == "":
		return nil, fmt.Errorf("%w: digest response incomplete", ErrBadCredentials)
	case strings.EqualFold(p["userhash"], "true"):
		return nil, fmt.Errorf("%w: digest userhash is not supported", ErrBadCredentials)
	case p["uri"] != r.URL.RequestURI() && p["uri"] != r.RequestURI:
		return nil, fmt.Errorf("%w: digest uri does not match the request", ErrBadCredentials)
	}
	// RFC 7616 §3.4: no algorithm means MD5.
	alg := strings.ToUpper(p["algorithm"])
	if alg == "" {
		alg = "MD5"
	}
	base, sess := strings.CutSuffix(alg, "-SESS")
	var newHash func() hash.Hash
	switch {
	case base == "SHA-256":
		newHash = sha256.New
	case base == "MD5" && d.cfg.MD5:
		newHash = md5.New
	default:
		return nil, fmt.Errorf("%w: digest algorithm %.16q is not accepted", ErrBadCredentials, p["algorithm"])
	}
	if err := d.checkNonce(p["nonce"]); err != nil {
		return nil, err
	}
	dr := &digestResponse{d: d, p: p, user: p["username"], hash: newHash, method: r.Method}
	// An unknown user is checked against a made-up password, so the time
	// taken does not tell which users exist.
	pass, known := d.users[dr.user]
	dr.known = known
	pw := pass.Reveal()
	if !known {
		pw = "\x00unknown user"
	}
	dr.ha1 = dr.h(dr.user, d.cfg.Realm, pw)
	if sess {
		dr.ha1 = dr.h(dr.ha1, p["nonce"], p["cnonce"])
	}
	return dr, nil
}

func (dr *digestResponse) h(parts ...string) string {
	x := dr.hash()
	x.Write([]byte(strings.Join(parts, ":")))
	return hex.EncodeToString(x.Sum(nil))
}

// checkBody finishes a qop=auth-int response with the body it covers.
func (dr *digestResponse) checkBody(ctx context.Context, body []byte) error {
	x := dr.hash()
	x.Write(body)
	return dr.check(ctx, dr.h(dr.method, dr.p["uri"], hex.EncodeToString(x.Sum(nil))))
}

// check compares the response with ha2, then records the nonce count, so
// a response is accepted once.
func (dr *digestResponse) check(ctx context.Context, ha2 string) error {
	p := dr.p
	want := dr.h(dr.ha1, p["nonce"], p["nc"], p["cnonce"], p["qop"], ha2)
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(p["response"]))) != 1 || !dr.known {
		return fmt.Errorf("%w: digest", ErrBadCredentials)
	}
	err := dr.d.cfg.Nonces.Use(ctx, p["nonce"], strings.ToLower(p["nc"]))
	if errors.Is(err, ErrNonceCountUsed) {
		return fmt.Errorf("%w: %w", ErrBadCredentials, err)
	}
	return err
}

// isNonceCount reports whether nc is RFC 7616's 8 hex digits.
func isNonceCount(nc string) bool {
	if len(nc) != 8 {
		return false
	}
	_, err := hex.DecodeString(nc)
	return err == nil
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
