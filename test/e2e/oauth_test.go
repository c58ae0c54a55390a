package e2e_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func form(v url.Values) ([]byte, http.Header) {
	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	return []byte(v.Encode()), h
}

func oauthSuite(t *testing.T, natsURL string) {
	d := deploy(t, natsURL, 2)

	// Client authentication with HTTP basic (RFC 6749 §2.3.1).
	b, h := form(url.Values{"grant_type": {"client_credentials"}})
	h.Set("Authorization", basic(url.QueryEscape(oauthClient), url.QueryEscape(oauthSecret)))
	r := d.post("/oauth/token", h, b)
	if r.status != 200 {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("token answer is cacheable")
	}
	tok := r.json(t)
	access, _ := tok["access_token"].(string)
	if access == "" || tok["token_type"] != "Bearer" || tok["expires_in"] != float64(900) {
		t.Fatalf("token answer %s", r.body)
	}

	// The token is accepted by every replica, for Contact Pro and Connect.
	ch := jsonHeader()
	ch.Set("Authorization", "Bearer "+access)
	if r := d.do(1, "POST", "/v1/contactpro/chat-attachments/ended", ch, chatAttachments("oauth-guid")); r.status != 202 {
		t.Fatalf("bearer on replica 1: %d %s", r.status, r.body)
	}
	if r := d.do(0, "POST", "/v1/connect/events", ch, contactLens("ev-oauth", "c-oauth", "Contact Lens Post Call Rules Matched")); r.status != 202 {
		t.Fatalf("bearer on connect: %d %s", r.status, r.body)
	}

	// Client authentication with form fields.
	b, h = form(url.Values{"grant_type": {"client_credentials"}, "client_id": {oauthClient}, "client_secret": {oauthSecret}})
	if r := d.post("/oauth/token", h, b); r.status != 200 {
		t.Fatalf("form client auth: %d %s", r.status, r.body)
	}

	tampered := access[:len(access)-4] + "AAAA"
	bad := jsonHeader()
	bad.Set("Authorization", "Bearer "+tampered)
	if r := d.post("/v1/contactpro/chat-attachments/ended", bad, chatAttachments("x")); r.status != 401 {
		t.Fatalf("tampered token: %d", r.status)
	}
	none := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": oauthClient, "iss": "ccrelay", "aud": "ccrelay-ingest", "exp": time.Now().Add(time.Hour).Unix()})
	ns, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	bad.Set("Authorization", "Bearer "+ns)
	if r := d.post("/v1/contactpro/chat-attachments/ended", bad, chatAttachments("x")); r.status != 401 {
		t.Fatalf("alg none token: %d", r.status)
	}

	for _, c := range []struct {
		name   string
		method string
		values url.Values
		auth   string
		ctype  string
		status int
		code   string
	}{
		{"wrong secret", "POST", url.Values{"grant_type": {"client_credentials"}, "client_id": {oauthClient}, "client_secret": {"nope"}}, "", "", 401, "invalid_client"},
		{"unknown client", "POST", url.Values{"grant_type": {"client_credentials"}}, basic("who", "nope"), "", 401, "invalid_client"},
		{"no client auth", "POST", url.Values{"grant_type": {"client_credentials"}}, "", "", 401, "invalid_client"},
		{"other grant", "POST", url.Values{"grant_type": {"password"}, "client_id": {oauthClient}, "client_secret": {oauthSecret}}, "", "", 400, "unsupported_grant_type"},
		{"no grant", "POST", url.Values{"client_id": {oauthClient}, "client_secret": {oauthSecret}}, "", "", 400, "invalid_request"},
		{"two client auth methods", "POST", url.Values{"grant_type": {"client_credentials"}, "client_secret": {oauthSecret}}, basic(oauthClient, oauthSecret), "", 400, "invalid_request"},
		{"json body", "POST", url.Values{"grant_type": {"client_credentials"}}, basic(oauthClient, oauthSecret), "application/json", 400, "invalid_request"},
		{"GET", "GET", nil, "", "", 405, "invalid_request"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, h := form(c.values)
			if c.auth != "" {
				h.Set("Authorization", c.auth)
			}
			if c.ctype != "" {
				h.Set("Content-Type", c.ctype)
			}
			r := d.do(0, c.method, "/oauth/token", h, b)
			var e struct {
				Error string `json:"error"`
			}
			_ = json.Unmarshal(r.body, &e)
			if r.status != c.status || e.Error != c.code {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, c.status, c.code)
			}
		})
	}
	if d.metric("ccrelay_oauth_token_requests_total", map[string]string{"outcome": "issued"}) != 2 {
		t.Error("issued tokens not counted")
	}
}

// jwksSuite accepts tokens of an external issuer whose keys are served as a
// JWKS, and refuses tokens with the wrong issuer, audience or key.
func jwksSuite(t *testing.T, natsURL string) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks := map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}}}
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jwks)
	}))
	t.Cleanup(idp.Close)
	d := deploy(t, natsURL, 1, "CCRELAY_OAUTH_JWKS_URL="+idp.URL, "CCRELAY_OAUTH_ISSUER=https://idp.test", "CCRELAY_OAUTH_AUDIENCE=ccrelay")

	sign := func(k *rsa.PrivateKey, iss, aud string, scope ...string) string {
		if scope == nil {
			scope = []string{"ccrelay.contactpro"}
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": "ext-client", "iss": iss, "aud": aud, "scope": strings.Join(scope, " "), "exp": time.Now().Add(time.Hour).Unix()})
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, c := range []struct {
		name   string
		token  string
		status int
	}{
		{"valid", sign(key, "https://idp.test", "ccrelay"), 202},
		{"wrong issuer", sign(key, "https://evil.test", "ccrelay"), 401},
		{"wrong audience", sign(key, "https://idp.test", "other"), 401},
		{"wrong key", sign(other, "https://idp.test", "ccrelay"), 401},
		{"scope of the other endpoint", sign(key, "https://idp.test", "ccrelay", "ccrelay.connect"), 401},
		{"no scope", sign(key, "https://idp.test", "ccrelay", ""), 401},
		{"several scopes", sign(key, "https://idp.test", "ccrelay", "openid", "ccrelay.contactpro"), 202},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := jsonHeader()
			h.Set("Authorization", "Bearer "+c.token)
			r := d.post("/v1/contactpro/chat-attachments/ended", h, chatAttachments("jwks-"+strings.ReplaceAll(c.name, " ", "-")))
			if r.status != c.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, c.status)
			}
		})
	}
}
