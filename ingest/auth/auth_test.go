package auth_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/ingest/auth"
	"github.com/ccrelay/ccrelay/messages/secret"
	"github.com/ccrelay/ccrelay/test/metricstest"
)

// fakeVerifier stands for the OAuth issuer, which has tests of its own.
type fakeVerifier struct{}

func (fakeVerifier) Verify(_ context.Context, tok string) (string, error) {
	if tok == "good" {
		return "client-1", nil
	}
	return "", errors.New("bad token")
}
func (fakeVerifier) Enabled() bool { return true }

func TestAuthenticator(t *testing.T) {
	var users secret.Credentials
	_ = users.UnmarshalText([]byte("u:p"))
	a := &auth.Authenticator{APIKeyHeader: "x-api-key", APIKeys: secret.SecretList{"key"}, Basic: users, Bearer: fakeVerifier{}}
	for _, c := range []struct {
		name   string
		set    func(h map[string]string)
		method string
		err    error
	}{
		{"api key", func(h map[string]string) { h["x-api-key"] = "key" }, "api_key", nil},
		{"wrong api key", func(h map[string]string) { h["x-api-key"] = "nope" }, "", auth.ErrBadCredentials},
		{"basic", func(h map[string]string) { h["Authorization"] = "Basic dTpw" }, "basic", nil},
		{"basic wrong", func(h map[string]string) { h["Authorization"] = "Basic dTpx" }, "", auth.ErrBadCredentials},
		{"basic malformed", func(h map[string]string) { h["Authorization"] = "Basic !!" }, "", auth.ErrBadCredentials},
		{"bearer", func(h map[string]string) { h["Authorization"] = "Bearer good" }, "bearer", nil},
		{"bearer lower-case scheme", func(h map[string]string) { h["Authorization"] = "bearer good" }, "bearer", nil},
		{"bearer bad", func(h map[string]string) { h["Authorization"] = "Bearer bad" }, "", auth.ErrBadCredentials},
		{"digest not configured", func(h map[string]string) { h["Authorization"] = "Digest x" }, "", auth.ErrBadCredentials},
		{"nothing", func(map[string]string) {}, "", auth.ErrNoCredentials},
		// Any configured credential the request carries is enough: Sinch's
		// documented Contact Pro example sends an Authorization header of its
		// own beside the API key.
		{"api key beside a foreign basic", func(h map[string]string) { h["Authorization"] = "Basic b3RoZXI6eA=="; h["x-api-key"] = "key" }, "api_key", nil},
		{"api key beside an unknown scheme", func(h map[string]string) { h["Authorization"] = "AWS4-HMAC-SHA256 x"; h["x-api-key"] = "key" }, "api_key", nil},
		{"basic beside a wrong api key", func(h map[string]string) { h["Authorization"] = "Basic dTpw"; h["x-api-key"] = "nope" }, "basic", nil},
		{"both wrong", func(h map[string]string) { h["Authorization"] = "Basic dTpx"; h["x-api-key"] = "nope" }, "", auth.ErrBadCredentials},
	} {
		r := httptest.NewRequest("POST", "/", nil)
		h := map[string]string{}
		c.set(h)
		for k, v := range h {
			r.Header.Set(k, v)
		}
		p, err := a.Authenticate(r)
		if !errors.Is(err, c.err) || (c.err == nil && p.Method != c.method) {
			t.Errorf("%s: %+v %v", c.name, p, err)
		}
	}
	if _, err := (&auth.Authenticator{APIKeyHeader: "x-api-key"}).Authenticate(httptest.NewRequest("POST", "/", nil)); !errors.Is(err, auth.ErrNotConfigured) {
		t.Errorf("unconfigured: %v", err)
	}
	if ch := strings.Join(a.Challenges(false), "\n"); !strings.Contains(ch, "Basic") || !strings.Contains(ch, "Bearer") {
		t.Errorf("challenge %q", ch)
	}
}

// TestThrottle: an address that fails Burst checks gets ErrThrottled, with
// a Retry-After, without its credentials being checked (the right ones
// included), until an Interval earned it another check; failures of one
// address do not slow another, a success costs nothing, and requests
// without credentials (a handshake's first) do not count.
func TestThrottle(t *testing.T) {
	reg := prometheus.NewRegistry()
	th, err := auth.NewThrottle(auth.ThrottleConfig{Burst: 3, Interval: 10 * time.Second}, reg)
	if err != nil {
		t.Fatal(err)
	}
	var users secret.Credentials
	_ = users.UnmarshalText([]byte("u:p"))
	a := &auth.Authenticator{APIKeyHeader: "x-api-key", APIKeys: secret.SecretList{"key"}, Basic: users, Throttle: th, Endpoint: "test"}
	try := func(addr, key string) error {
		r := httptest.NewRequest("POST", "/", nil)
		r.RemoteAddr = addr + ":40000"
		if key != "" {
			r.Header.Set("x-api-key", key)
		}
		_, err := a.Authenticate(r)
		return err
	}
	// Successes and requests without credentials cost nothing.
	for range 10 {
		if err := try("192.0.2.1", "key"); err != nil {
			t.Fatalf("success: %v", err)
		}
		if err := try("192.0.2.1", ""); !errors.Is(err, auth.ErrNoCredentials) {
			t.Fatalf("no credentials: %v", err)
		}
	}
	for i := range 3 {
		if err := try("192.0.2.1", "wrong"); !errors.Is(err, auth.ErrBadCredentials) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	var te *auth.ThrottledError
	for _, key := range []string{"wrong", "key", ""} {
		if err := try("192.0.2.1", key); !errors.As(err, &te) || !errors.Is(err, auth.ErrThrottled) || te.RetryAfter <= 0 || te.RetryAfter > 10*time.Second {
			t.Fatalf("throttled address with %q: %v", key, err)
		}
	}
	// Another address is not slowed, and succeeds at once.
	if err := try("192.0.2.2", "key"); err != nil {
		t.Errorf("another address: %v", err)
	}
	for range 3 {
		if err := try("192.0.2.2", "wrong"); !errors.Is(err, auth.ErrBadCredentials) {
			t.Errorf("another address's failures are slowed by the first's: %v", err)
		}
	}
	// IPv6 addresses count by /64.
	for range 3 {
		_ = try("[2001:db8::1]", "wrong")
	}
	if err := try("[2001:db8::2]", "key"); !errors.Is(err, auth.ErrThrottled) {
		t.Errorf("another address of the same /64: %v", err)
	}
	if err := try("[2001:db8:0:1::1]", "key"); err != nil {
		t.Errorf("another /64: %v", err)
	}
	if got := metricstest.Value(t, reg, "ccrelay_auth_throttled_total", map[string]string{"endpoint": "test"}); got != 4 {
		t.Errorf("ccrelay_auth_throttled_total = %v, want 4", got)
	}
}

// TestThrottleRefills: a throttled address gets one more check per
// Interval, and a success then does not wait.
func TestThrottleRefills(t *testing.T) {
	th, err := auth.NewThrottle(auth.ThrottleConfig{Burst: 2, Interval: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &auth.Authenticator{APIKeyHeader: "x-api-key", APIKeys: secret.SecretList{"key"}, Throttle: th}
	try := func(key string) error {
		r := httptest.NewRequest("POST", "/", nil)
		r.Header.Set("x-api-key", key)
		_, err := a.Authenticate(r)
		return err
	}
	_, _ = try("wrong"), try("wrong")
	if err := try("key"); !errors.Is(err, auth.ErrThrottled) {
		t.Fatalf("after the burst: %v", err)
	}
	time.Sleep(250 * time.Millisecond)
	if err := try("key"); err != nil {
		t.Errorf("after an interval: %v", err)
	}
}

// TestThrottleForwardedFor: behind a trusted proxy the client is the last
// address of X-Forwarded-For the proxies did not add; from anyone else the
// header is ignored, so it cannot be used to dodge or to blame.
func TestThrottleForwardedFor(t *testing.T) {
	var proxies auth.Proxies
	if err := proxies.UnmarshalText([]byte("10.0.0.0/8,loopback")); err != nil {
		t.Fatal(err)
	}
	th, err := auth.NewThrottle(auth.ThrottleConfig{Burst: 1, Interval: time.Hour, TrustedProxies: proxies}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &auth.Authenticator{APIKeyHeader: "x-api-key", APIKeys: secret.SecretList{"key"}, Throttle: th}
	try := func(peer, xff, key string) error {
		r := httptest.NewRequest("POST", "/", nil)
		r.RemoteAddr = peer + ":1"
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		r.Header.Set("x-api-key", key)
		_, err := a.Authenticate(r)
		return err
	}
	_ = try("10.1.1.1", "198.51.100.7", "wrong")
	if err := try("10.1.1.1", "203.0.113.9, 198.51.100.7, 10.2.2.2", "key"); !errors.Is(err, auth.ErrThrottled) {
		t.Errorf("the same client through two proxies, a forged hop on the left: %v", err)
	}
	if err := try("10.1.1.1", "198.51.100.8", "key"); err != nil {
		t.Errorf("another client behind the same proxy: %v", err)
	}
	// An untrusted peer's header is not believed: it is its own client.
	_ = try("192.0.2.50", "198.51.100.9", "wrong")
	if err := try("10.1.1.1", "198.51.100.9", "key"); err != nil {
		t.Errorf("a client blamed by another's forged header: %v", err)
	}
	if err := try("192.0.2.50", "198.51.100.10", "key"); !errors.Is(err, auth.ErrThrottled) {
		t.Errorf("an untrusted peer dodges with a forged header: %v", err)
	}
	for _, bad := range []string{"10.0.0.0/33", "private,x"} {
		if err := new(auth.Proxies).UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
