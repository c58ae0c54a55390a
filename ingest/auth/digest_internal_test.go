package auth

import (
	"context"
	"crypto/md5" //nolint:gosec // RFC 7616's MD5 example is what is tested
	"crypto/sha256"
	"errors"
	"hash"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/messages/secret"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// natsStore provisions the digest buckets of prefix on a real JetStream
// server started for the test.
func natsStore(t *testing.T, js jetstream.JetStream, prefix string, ttl time.Duration) *DigestStore {
	t.Helper()
	var subjects messages.Subjects
	if err := subjects.UnmarshalText([]byte(prefix)); err != nil {
		t.Fatal(err)
	}
	s, err := ProvisionDigest(context.Background(), provision.Waiter{Budget: 10 * time.Second}, js, subjects, ttl, 1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Connect(t, natstest.Embedded(t).ClientURL())
	return js
}

func testDigest(t *testing.T, users secret.Credentials, cfg DigestConfig) *Digest {
	t.Helper()
	if cfg.Nonces == nil {
		st := natsStore(t, testJetStream(t), "digesttest", time.Minute)
		cfg.Nonces, cfg.Key = st, st.Key()
	}
	if cfg.NonceTTL == 0 {
		cfg.NonceTTL = time.Minute
	}
	if cfg.QOP == nil {
		cfg.QOP = []string{QOPAuthInt, QOPAuth}
	}
	d, err := NewDigest(users, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDigestRFC7616Example: the responses of RFC 7616 §3.9.1 (SHA-256 and
// MD5, user Mufasa) verify, computed by the same code requests are checked
// with; the RFC's nonce is not one of ours, so the nonce check is left out.
func TestDigestRFC7616Example(t *testing.T) {
	for _, c := range []struct {
		alg      string
		hash     func() hash.Hash
		response string
	}{
		{"SHA-256", sha256.New, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
		{"MD5", md5.New, "8ca523f5e9506fed4657c9700eebdbec"},
	} {
		d := testDigest(t, secret.Credentials{"Mufasa": "Circle of Life"}, DigestConfig{Realm: "http-auth@example.org", MD5: true})
		p := map[string]string{
			"username": "Mufasa", "realm": "http-auth@example.org", "uri": "/dir/index.html", "algorithm": c.alg,
			"nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "nc": "00000001",
			"cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "qop": "auth", "response": c.response,
		}
		dr := &digestResponse{d: d, p: p, user: "Mufasa", known: true, hash: c.hash, method: http.MethodGet}
		dr.ha1 = dr.h("Mufasa", "http-auth@example.org", "Circle of Life")
		if err := dr.check(context.Background(), dr.h(http.MethodGet, "/dir/index.html")); err != nil {
			t.Errorf("%s: RFC 7616's response refused: %v", c.alg, err)
		}
		// The same response again is a replay.
		if err := dr.check(context.Background(), dr.h(http.MethodGet, "/dir/index.html")); !errors.Is(err, ErrNonceCountUsed) || !errors.Is(err, ErrBadCredentials) {
			t.Errorf("%s: the replayed response: %v", c.alg, err)
		}
	}
}

// TestDigestNonceExpires: a nonce older than its lifetime is answered with
// ErrStaleNonce and a new challenge marked stale, so the client retries;
// the lifetime is the configured one.
func TestDigestNonceExpires(t *testing.T) {
	d := testDigest(t, secret.Credentials{"cp": "s3cret"}, DigestConfig{Realm: "ccrelay", NonceTTL: 60 * time.Second})
	issued := time.Unix(1_800_000_000, 0)
	d.now = func() time.Time { return issued }
	nonce := regexp.MustCompile(`nonce="([^"]+)"`).FindStringSubmatch(d.Challenges(false)[0])[1]
	d.now = func() time.Time { return issued.Add(59 * time.Second) }
	if err := d.checkNonce(nonce); err != nil {
		t.Fatalf("fresh nonce: %v", err)
	}
	d.now = func() time.Time { return issued.Add(61 * time.Second) }
	if err := d.checkNonce(nonce); !errors.Is(err, ErrStaleNonce) {
		t.Fatalf("expired nonce: %v", err)
	}
	a := &Authenticator{APIKeyHeader: "x-api-key", Digest: d}
	r := httptest.NewRequest("POST", "/x", nil)
	r.Header.Set("Authorization", `Digest username="cp", realm="ccrelay", uri="/x", algorithm=SHA-256, nonce="`+nonce+`", nc=00000001, cnonce="c", qop=auth, response="00"`)
	if _, err := a.Authenticate(r); !errors.Is(err, ErrStaleNonce) {
		t.Fatalf("Authenticate: %v", err)
	}
	if ch := a.Challenges(true); !strings.Contains(ch[0], "stale=true") {
		t.Errorf("challenge %q", ch[0])
	}
}

// TestThrottleBoundedMemory: however many addresses fail, the throttle
// remembers at most maxTracked of them, the least recently seen going
// first, and forgets an address as soon as its bucket is full again.
func TestThrottleBoundedMemory(t *testing.T) {
	th, err := NewThrottle(ThrottleConfig{Burst: 2, Interval: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/", nil)
	for i := range maxTracked + 100 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		r.RemoteAddr = netip.AddrPortFrom(a, 1234).String()
		if _, err := th.Take(r, "test"); err != nil {
			t.Fatal(err)
		}
	}
	if n := th.lru.Len(); n != maxTracked || len(th.byKey) != maxTracked {
		t.Fatalf("%d addresses remembered (%d in the map), want %d", n, len(th.byKey), maxTracked)
	}
	// The first ones went first.
	if _, ok := th.byKey[netip.MustParsePrefix("10.0.0.0/32")]; ok {
		t.Error("the least recently seen address is still remembered")
	}
	// A refund that fills the bucket forgets the address.
	r.RemoteAddr = "192.0.2.1:1"
	k, _ := th.Take(r, "test")
	k.Refund()
	if _, ok := th.byKey[netip.MustParsePrefix("192.0.2.1/32")]; ok {
		t.Error("an address whose bucket is full again is remembered")
	}
}
