package auth_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/ingest/auth"
	"github.com/ccrelay/ccrelay/messages/secret"
)

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
