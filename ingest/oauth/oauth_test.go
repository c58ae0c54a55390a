package oauth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/ingest/auth"
	"github.com/ccrelay/ccrelay/ingest/oauth"
	"github.com/ccrelay/ccrelay/messages/secret"
	"github.com/ccrelay/ccrelay/test/metricstest"
)

func issuer(t *testing.T, clients string, signingKey secret.Secret) *oauth.Issuer {
	t.Helper()
	var c secret.Credentials
	if err := c.UnmarshalText([]byte(clients)); err != nil {
		t.Fatal(err)
	}
	is, err := oauth.New(context.Background(), oauth.Config{Clients: c, SigningKey: signingKey, TokenTTL: 15 * time.Minute, JWKSRefresh: time.Hour}, nil,
		prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return is
}

// Replicas configured alike derive the same key and accept each other's
// tokens; a replica with other clients does not.
func TestDerivedKeyIsShared(t *testing.T) {
	a, b := issuer(t, "c1@contactpro:s1,c2@connect:s2", ""), issuer(t, "c2@connect:s2,c1@contactpro:s1", "")
	tok, ttl, err := a.Issue("c1")
	if err != nil || ttl != 15*time.Minute {
		t.Fatal(err)
	}
	if sub, err := b.For(oauth.EndpointContactPro).Verify(context.Background(), tok); err != nil || sub != "c1" {
		t.Fatalf("replica b: %q %v", sub, err)
	}
	if _, err := issuer(t, "c1@contactpro:other", "").For(oauth.EndpointContactPro).Verify(context.Background(), tok); err == nil {
		t.Fatal("a replica with another secret accepted the token")
	}
}

// TestTokensAreScoped: a client's token is accepted on the endpoints the
// client names and refused on the others; a client list entry naming no
// endpoint stops start-up.
func TestTokensAreScoped(t *testing.T) {
	is := issuer(t, "eb@connect:s1,cp@contactpro:s2,both@contactpro+connect:s3", "")
	for _, c := range []struct {
		client string
		ok     map[string]bool
	}{
		{"eb", map[string]bool{oauth.EndpointConnect: true, oauth.EndpointContactPro: false}},
		{"cp", map[string]bool{oauth.EndpointConnect: false, oauth.EndpointContactPro: true}},
		{"both", map[string]bool{oauth.EndpointConnect: true, oauth.EndpointContactPro: true}},
	} {
		tok, _, err := is.Issue(c.client)
		if err != nil {
			t.Fatal(err)
		}
		for ep, ok := range c.ok {
			if _, err := is.For(ep).Verify(context.Background(), tok); (err == nil) != ok {
				t.Errorf("%s on %s: %v", c.client, ep, err)
			}
		}
	}
	for _, bad := range []string{"c1:s1", "c1@:s1", "c1@nowhere:s1", "@connect:s1"} {
		var c secret.Credentials
		_ = c.UnmarshalText([]byte(bad))
		if err := (oauth.Config{Clients: c, TokenTTL: 15 * time.Minute, JWKSRefresh: time.Hour}).Validate(); err == nil || !strings.Contains(err.Error(), "CCRELAY_OAUTH_CLIENTS") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	// An external issuer needs an issuer and an audience.
	for _, c := range []oauth.Config{
		{JWKSURL: "https://idp.test/jwks", TokenTTL: 15 * time.Minute, JWKSRefresh: time.Hour},
		{JWKSURL: "https://idp.test/jwks", Issuer: "https://idp.test/", TokenTTL: 15 * time.Minute, JWKSRefresh: time.Hour},
		{JWKSURL: "https://idp.test/jwks", Audience: "api://ccrelay", TokenTTL: 15 * time.Minute, JWKSRefresh: time.Hour},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("JWKS without issuer or audience accepted: %+v", c)
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	key := secret.Secret(strings.Repeat("k", 32))
	is := issuer(t, "c1@contactpro:s1", key)
	sign := func(claims jwt.MapClaims, m jwt.SigningMethod, k any) string {
		s, err := jwt.NewWithClaims(m, claims).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := time.Now()
	good := jwt.MapClaims{"iss": "ccrelay", "aud": "ccrelay:contactpro", "sub": "c1", "exp": now.Add(time.Minute).Unix()}
	cp := is.For(oauth.EndpointContactPro)
	if _, err := cp.Verify(context.Background(), sign(good, jwt.SigningMethodHS256, []byte(key))); err != nil {
		t.Fatalf("good token: %v", err)
	}
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for kk, vv := range good {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	for name, tok := range map[string]string{
		"expired":        sign(with("exp", now.Add(-time.Hour).Unix()), jwt.SigningMethodHS256, []byte(key)),
		"no expiry":      sign(with("exp", nil), jwt.SigningMethodHS256, []byte(key)),
		"other issuer":   sign(with("iss", "someone"), jwt.SigningMethodHS256, []byte(key)),
		"other audience": sign(with("aud", "x"), jwt.SigningMethodHS256, []byte(key)),
		"other endpoint": sign(with("aud", "ccrelay:connect"), jwt.SigningMethodHS256, []byte(key)),
		"old audience":   sign(with("aud", "ccrelay-ingest"), jwt.SigningMethodHS256, []byte(key)),
		"other key":      sign(good, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32))),
		"HS512":          sign(good, jwt.SigningMethodHS512, []byte(key)),
		"removed client": sign(with("sub", "gone"), jwt.SigningMethodHS256, []byte(key)),
		"garbage":        "a.b.c",
	} {
		if _, err := cp.Verify(context.Background(), tok); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// TestOneSpellingPerToken: the last character of an HS256 signature
// carries two unused bits; a token with them set decodes to the same
// signature, and must not verify.
func TestOneSpellingPerToken(t *testing.T) {
	is := issuerF(t)
	good, _, err := is.Issue("c1")
	if err != nil {
		t.Fatal(err)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, good[len(good)-1])
	other := good[:len(good)-1] + string(alphabet[last|1])
	if other == good {
		other = good[:len(good)-1] + string(alphabet[last&^1])
	}
	if _, err := is.For(oauth.EndpointContactPro).Verify(context.Background(), good); err != nil {
		t.Fatalf("the token itself: %v", err)
	}
	if sub, err := is.For(oauth.EndpointContactPro).Verify(context.Background(), other); err == nil {
		t.Errorf("a second spelling of the signature verified (as %q)", sub)
	}
}

// FuzzVerify: no input but a token the issuer signed verifies, and nothing
// panics on the way. The oracle does not compare with the seed's bytes:
// the fuzzing workers are other processes whose issuer signs the same
// claims a second later, so a seed token from the first process is as
// genuine as their own. What verifies must be the issuer's token for c1,
// in the one encoding it writes (a second encoding of the same signed
// bytes that verified would be a malleable token).
func FuzzVerify(f *testing.F) {
	is := issuerF(f)
	good, _, _ := is.Issue("c1")
	f.Add(good)
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJjMSJ9.")
	f.Add(good[:len(good)-2])
	f.Fuzz(func(t *testing.T, tok string) {
		sub, err := is.For(oauth.EndpointContactPro).Verify(context.Background(), tok)
		if err != nil {
			return
		}
		if sub != "c1" {
			t.Fatalf("token %q accepted as %q", tok, sub)
		}
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted %q, not three parts", tok)
		}
		for _, part := range parts {
			b, err := base64.RawURLEncoding.DecodeString(part)
			if err != nil || base64.RawURLEncoding.EncodeToString(b) != part {
				t.Fatalf("accepted %q: %q is not the canonical encoding of what it decodes to", tok, part)
			}
		}
		var claims struct {
			Iss string   `json:"iss"`
			Aud []string `json:"aud"`
		}
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		if json.Unmarshal(payload, &claims) != nil || claims.Iss != "ccrelay" || len(claims.Aud) != 1 || claims.Aud[0] != "ccrelay:contactpro" {
			t.Fatalf("accepted %q with claims %s", tok, payload)
		}
	})
}

func issuerF(f testing.TB) *oauth.Issuer {
	var c secret.Credentials
	_ = c.UnmarshalText([]byte("c1@contactpro:s1"))
	is, err := oauth.New(context.Background(), oauth.Config{Clients: c, TokenTTL: 15 * time.Minute, JWKSRefresh: time.Hour}, nil,
		prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		f.Fatal(err)
	}
	return is
}

// TestTokenEndpointSlowsDownGuessing: over real HTTP, an address that
// sends wrong client secrets is answered 429 slow_down with Retry-After
// after the burst, without its secrets being checked (the right one
// included); another address is not slowed, and an unknown client costs a
// failure like a wrong secret.
func TestTokenEndpointSlowsDownGuessing(t *testing.T) {
	reg := prometheus.NewRegistry()
	var proxies auth.Proxies
	_ = proxies.UnmarshalText([]byte("loopback")) // the test server's peer
	th, err := auth.NewThrottle(auth.ThrottleConfig{Burst: 5, Interval: time.Minute, TrustedProxies: proxies}, reg)
	if err != nil {
		t.Fatal(err)
	}
	var c secret.Credentials
	_ = c.UnmarshalText([]byte("c1@contactpro:s1"))
	is, err := oauth.New(context.Background(), oauth.Config{Clients: c, TokenTTL: 15 * time.Minute, JWKSRefresh: time.Hour}, th,
		reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(is)
	defer srv.Close()
	ask := func(from, id, sec string) *http.Response {
		body := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {sec}}.Encode()
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", from)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp
	}
	for i := range 5 {
		id := "c1"
		if i%2 == 1 {
			id = "nobody"
		}
		if r := ask("198.51.100.1", id, "wrong"); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i+1, r.StatusCode)
		}
	}
	start := time.Now()
	for i := range 1000 {
		r := ask("198.51.100.1", "c1", "wrong")
		if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
			t.Fatalf("guess %d after the burst: %d (Retry-After %q)", i+6, r.StatusCode, r.Header.Get("Retry-After"))
		}
	}
	t.Logf("1,000 guesses after the burst answered 429 in %s, none checked", time.Since(start))
	if r := ask("198.51.100.1", "c1", "s1"); r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("the right secret from the throttled address: %d, want 429 (it is not checked)", r.StatusCode)
	}
	if r := ask("198.51.100.2", "c1", "s1"); r.StatusCode != http.StatusOK {
		t.Errorf("the right secret from another address: %d", r.StatusCode)
	}
	if got := metricstest.Value(t, reg, "ccrelay_auth_throttled_total", map[string]string{"endpoint": "oauth"}); got != 1001 {
		t.Errorf("ccrelay_auth_throttled_total{endpoint=oauth} = %v, want 1001", got)
	}
	if got := metricstest.Value(t, reg, "ccrelay_oauth_token_requests_total", map[string]string{"outcome": "slow_down"}); got != 1001 {
		t.Errorf("ccrelay_oauth_token_requests_total{outcome=slow_down} = %v, want 1001", got)
	}
}
