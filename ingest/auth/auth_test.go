package auth_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/ingest/auth"
)

func TestSecretNeverPrints(t *testing.T) {
	s := auth.Secret("hunter2")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "secret", s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %#v %q", s, s, s, s), buf.String()} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("secret printed: %s", out)
		}
	}
	if !s.Matches("hunter2") || s.Matches("hunter3") || auth.Secret("").Matches("") {
		t.Error("Matches")
	}
}

func TestCredentialsParse(t *testing.T) {
	var c auth.Credentials
	if err := c.UnmarshalText([]byte("a:x:y, b:z")); err != nil {
		t.Fatal(err)
	}
	if !c.Check("a", "x:y") || !c.Check("b", "z") || c.Check("a", "x") || c.Check("c", "z") {
		t.Errorf("Check: %v", c.Names())
	}
	for _, bad := range []string{"SECRETVALUE", ":SECRETVALUE", "a:", "a:SECRETVALUE,a:SECRETVALUE", "a:SECRETVALUE,,b:SECRETVALUE"} {
		err := c.UnmarshalText([]byte(bad))
		if err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "SECRETVALUE") {
			t.Errorf("%q: error quotes a secret: %v", bad, err)
		}
	}
	var l auth.SecretList
	if err := l.UnmarshalText([]byte("k1, k2")); err != nil || len(l) != 2 {
		t.Fatalf("%v %v", l, err)
	}
	if i, ok := l.Match("k2"); !ok || i != 1 {
		t.Errorf("Match k2: %d %v", i, ok)
	}
	if err := l.UnmarshalText([]byte("k1,,k2")); err == nil {
		t.Error("empty entry accepted")
	}
}

type fakeVerifier struct{}

func (fakeVerifier) Verify(_ context.Context, tok string) (string, error) {
	if tok == "good" {
		return "client-1", nil
	}
	return "", errors.New("bad token")
}
func (fakeVerifier) Enabled() bool { return true }

func TestAuthenticator(t *testing.T) {
	var users auth.Credentials
	_ = users.UnmarshalText([]byte("u:p"))
	a := &auth.Authenticator{APIKeyHeader: "x-api-key", APIKeys: auth.SecretList{"key"}, Basic: users, Bearer: fakeVerifier{}}
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

// FuzzCredentials: parsing never panics, never keeps an empty name or
// secret, and a parse error never quotes a secret.
func FuzzCredentials(f *testing.F) {
	f.Add("a:b,c:d:e")
	f.Add(",")
	f.Add("a:")
	f.Fuzz(func(t *testing.T, s string) {
		var c auth.Credentials
		if err := c.UnmarshalText([]byte(s)); err != nil {
			// Errors may quote names, never secrets: a secret long enough to
			// be recognised, that no name contains, must not appear.
			var names, secrets []string
			for _, part := range strings.Split(s, ",") {
				name, secret, _ := strings.Cut(strings.TrimSpace(part), ":")
				names, secrets = append(names, name), append(secrets, secret)
			}
			for _, secret := range secrets {
				inName := false
				for _, n := range names {
					inName = inName || strings.Contains(n, secret)
				}
				if len(secret) > 3 && !inName && strings.Contains(err.Error(), secret) {
					t.Fatalf("error %q quotes secret %q", err, secret)
				}
			}
			return
		}
		for name, secret := range c {
			if name == "" || secret == "" {
				t.Fatalf("empty name or secret kept from %q", s)
			}
			if !c.Check(name, secret.Reveal()) {
				t.Fatalf("parsed secret of %q does not check", name)
			}
		}
	})
}
