package auth_test

import (
	"crypto/md5" //nolint:gosec // RFC 7616 MD5 digests are what is tested
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/ingest/auth"
	"github.com/ccrelay/ccrelay/messages/secret"
)

// digestClient answers a challenge the way RFC 7616 §3.4.1 says a client
// does, written apart from the server code.
func digestClient(t *testing.T, challenge, method, uri, user, pass string) string {
	t.Helper()
	get := func(name string) string {
		m := regexp.MustCompile(name + `="?([^",]+)"?`).FindStringSubmatch(challenge)
		if m == nil {
			t.Fatalf("challenge %q has no %s", challenge, name)
		}
		return m[1]
	}
	realm, nonce, opaque, alg := get("realm"), get("nonce"), get("opaque"), get("algorithm")
	var h func() hash.Hash = md5.New
	if alg == "SHA-256" {
		h = sha256.New
	}
	H := func(s string) string { x := h(); x.Write([]byte(s)); return hex.EncodeToString(x.Sum(nil)) }
	cnonce, nc := "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "00000001"
	resp := H(H(user+":"+realm+":"+pass) + ":" + nonce + ":" + nc + ":" + cnonce + ":auth:" + H(method+":"+uri))
	return fmt.Sprintf(`Digest username="%s", realm="%s", uri="%s", algorithm=%s, nonce="%s", nc=%s, cnonce="%s", qop=auth, response="%s", opaque="%s"`,
		user, realm, uri, alg, nonce, nc, cnonce, resp, opaque)
}

func TestDigest(t *testing.T) {
	var users secret.Credentials
	_ = users.UnmarshalText([]byte("Mufasa:Circle of Life,cp:s3cret"))
	a := &auth.Authenticator{APIKeyHeader: "x-api-key", Digest: auth.NewDigest(users, "ccrelay")}
	// A 401 offers both algorithms, SHA-256 first.
	ch := a.Challenges(false)
	if len(ch) != 2 || !strings.Contains(ch[0], "algorithm=SHA-256") || !strings.Contains(ch[1], "algorithm=MD5") || !strings.Contains(ch[0], `qop="auth"`) {
		t.Fatalf("challenges %q", ch)
	}
	uri := "/v1/contactpro/lifecycle/Allocated/5d3b0a4e?x=1"
	for _, c := range []struct {
		name, challenge, method, reqURI, user, pass string
		err                                         error
	}{
		{"sha-256", ch[0], "POST", uri, "Mufasa", "Circle of Life", nil},
		{"md5", ch[1], "GET", uri, "cp", "s3cret", nil},
		{"wrong password", ch[0], "POST", uri, "cp", "nope", auth.ErrBadCredentials},
		{"unknown user", ch[0], "POST", uri, "nobody", "s3cret", auth.ErrBadCredentials},
	} {
		r := httptest.NewRequest(c.method, uri, nil)
		r.Header.Set("Authorization", digestClient(t, c.challenge, c.method, c.reqURI, c.user, c.pass))
		p, err := a.Authenticate(r)
		if !errors.Is(err, c.err) || (c.err == nil && (p.Method != "digest" || p.Name != c.user)) {
			t.Errorf("%s: %+v %v", c.name, p, err)
		}
	}
	// Another method or URI than the one signed, another realm's or a
	// forged nonce: refused.
	good := digestClient(t, ch[0], "POST", uri, "cp", "s3cret")
	for name, tamper := range map[string]func(r *http.Request){
		"other method": func(r *http.Request) { r.Method = "DELETE" },
		"other uri": func(r *http.Request) {
			r.URL.RawQuery = "x=2"
			r.RequestURI = "/v1/contactpro/lifecycle/Allocated/5d3b0a4e?x=2"
		},
		"forged nonce": func(r *http.Request) {
			r.Header.Set("Authorization", regexp.MustCompile(`nonce="[^"]+"`).ReplaceAllString(good, `nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"`))
		},
		"no qop": func(r *http.Request) { r.Header.Set("Authorization", strings.Replace(good, "qop=auth, ", "", 1)) },
	} {
		r := httptest.NewRequest("POST", uri, nil)
		r.Header.Set("Authorization", good)
		tamper(r)
		if _, err := a.Authenticate(r); !errors.Is(err, auth.ErrBadCredentials) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestDigestNonceAcrossReplicas: a nonce issued by one replica is accepted
// by another configured alike (no shared state), and by none configured
// with other users.
func TestDigestNonceAcrossReplicas(t *testing.T) {
	var users, others secret.Credentials
	_ = users.UnmarshalText([]byte("cp:s3cret"))
	_ = others.UnmarshalText([]byte("cp:other"))
	a := &auth.Authenticator{APIKeyHeader: "x-api-key", Digest: auth.NewDigest(users, "ccrelay")}
	b := &auth.Authenticator{APIKeyHeader: "x-api-key", Digest: auth.NewDigest(users, "ccrelay")}
	c := &auth.Authenticator{APIKeyHeader: "x-api-key", Digest: auth.NewDigest(others, "ccrelay")}
	r := httptest.NewRequest("POST", "/v1/contactpro/x", nil)
	r.Header.Set("Authorization", digestClient(t, a.Challenges(false)[0], "POST", "/v1/contactpro/x", "cp", "s3cret"))
	if _, err := b.Authenticate(r); err != nil {
		t.Errorf("replica b refuses replica a's nonce: %v", err)
	}
	r.Header.Set("Authorization", digestClient(t, a.Challenges(false)[0], "POST", "/v1/contactpro/x", "cp", "other"))
	if _, err := c.Authenticate(r); err == nil {
		t.Error("a replica with other users accepts the nonce")
	}
}

func FuzzDigestAuthorization(f *testing.F) {
	f.Add(`username="cp", realm="ccrelay", uri="/x", algorithm=SHA-256, nonce="abc", nc=00000001, cnonce="c", qop=auth, response="00"`)
	f.Add(`username="a\"b", realm=ccrelay,,, nonce=`)
	f.Add(`x`)
	var users secret.Credentials
	_ = users.UnmarshalText([]byte("cp:s3cret"))
	a := &auth.Authenticator{APIKeyHeader: "x-api-key", Digest: auth.NewDigest(users, "ccrelay")}
	f.Fuzz(func(t *testing.T, params string) {
		r := httptest.NewRequest("POST", "/x", nil)
		r.Header.Set("Authorization", "Digest "+params)
		if p, err := a.Authenticate(r); err == nil {
			t.Fatalf("accepted forged digest %q as %+v", params, p)
		}
	})
}
