package auth_test

import (
	"bytes"
	"context"
	"crypto/md5" //nolint:gosec // RFC 7616 MD5 digests are what is tested
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/ingest/auth"
	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
	"github.com/ccrelay/ccrelay/messages/secret"
	"github.com/ccrelay/ccrelay/test/natstest"
)

// digestAnswer is one response to a challenge, made the way RFC 7616 §3.4
// says a client makes it, written apart from the server code.
type digestAnswer struct {
	method, uri, user, pass string
	qop                     string // "auth" or "auth-int"
	nc                      string // "00000001" when empty
	body                    []byte // covered with auth-int
	alg                     string // the challenge's when empty
}

func (a digestAnswer) header(t *testing.T, challenge string) string {
	t.Helper()
	get := func(name string) string {
		m := regexp.MustCompile(name + `="?([^",]+)"?`).FindStringSubmatch(challenge)
		if m == nil {
			t.Fatalf("challenge %q has no %s", challenge, name)
		}
		return m[1]
	}
	realm, nonce, opaque := get("realm"), get("nonce"), get("opaque")
	alg := a.alg
	if alg == "" {
		alg = get("algorithm")
	}
	var h func() hash.Hash = md5.New
	if strings.HasPrefix(alg, "SHA-256") {
		h = sha256.New
	}
	H := func(s string) string { x := h(); x.Write([]byte(s)); return hex.EncodeToString(x.Sum(nil)) }
	nc := a.nc
	if nc == "" {
		nc = "00000001"
	}
	qop := a.qop
	if qop == "" {
		qop = "auth"
	}
	cnonce := "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
	ha2 := H(a.method + ":" + a.uri)
	if qop == "auth-int" {
		x := h()
		x.Write(a.body)
		ha2 = H(a.method + ":" + a.uri + ":" + hex.EncodeToString(x.Sum(nil)))
	}
	ha1 := H(a.user + ":" + realm + ":" + a.pass)
	if strings.HasSuffix(strings.ToLower(alg), "-sess") {
		ha1 = H(ha1 + ":" + nonce + ":" + cnonce)
	}
	resp := H(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":" + qop + ":" + ha2)
	return fmt.Sprintf(`Digest username="%s", realm="%s", uri="%s", algorithm=%s, nonce="%s", nc=%s, cnonce="%s", qop=%s, response="%s", opaque="%s"`,
		a.user, realm, a.uri, alg, nonce, nc, cnonce, qop, resp, opaque)
}

// deployment provisions the digest buckets of one deployment (a subject
// prefix) on js, as every ingest replica of it does at start.
func deployment(t testing.TB, js jetstream.JetStream, prefix string) *auth.DigestStore {
	t.Helper()
	var subjects messages.Subjects
	if err := subjects.UnmarshalText([]byte(prefix)); err != nil {
		t.Fatal(err)
	}
	s, err := auth.ProvisionDigest(context.Background(), provision.Waiter{Budget: 10 * time.Second}, js, subjects, time.Minute, 1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// replica is one ingest replica's authenticator of a deployment's store.
func replica(t testing.TB, s *auth.DigestStore, users string, mut func(*auth.DigestConfig)) *auth.Authenticator {
	t.Helper()
	var creds secret.Credentials
	if err := creds.UnmarshalText([]byte(users)); err != nil {
		t.Fatal(err)
	}
	cfg := auth.DigestConfig{Realm: "ccrelay", NonceTTL: time.Minute, QOP: []string{auth.QOPAuthInt, auth.QOPAuth}, Key: s.Key(), Nonces: s}
	if mut != nil {
		mut(&cfg)
	}
	d, err := auth.NewDigest(creds, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &auth.Authenticator{APIKeyHeader: "x-api-key", Digest: d}
}

func jetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Connect(t, natstest.Embedded(t).ClientURL())
	return js
}

// authenticate runs a request with header h and body through a as the
// ingest pipeline does: Authenticate before the body is read, VerifyBody
// once it is.
func authenticate(a *auth.Authenticator, method, uri, h string, body []byte) (auth.Principal, error) {
	r := httptest.NewRequest(method, uri, bytes.NewReader(body))
	r.Header.Set("Authorization", h)
	p, err := a.Authenticate(r)
	if err != nil {
		return p, err
	}
	read, err := io.ReadAll(r.Body)
	if err != nil {
		return p, err
	}
	return p, auth.VerifyBody(r, read)
}

func TestDigest(t *testing.T) {
	js := jetStream(t)
	a := replica(t, deployment(t, js, "ccrelay"), "Mufasa:Circle of Life,cp:s3cret", nil)
	// A 401 offers SHA-256 only (MD5 is not configured), auth-int first.
	ch := a.Challenges(false)
	if len(ch) != 1 || !strings.Contains(ch[0], "algorithm=SHA-256") || !strings.Contains(ch[0], `qop="auth-int, auth"`) {
		t.Fatalf("challenges %q", ch)
	}
	uri := "/v1/contactpro/lifecycle/Allocated/5d3b0a4e?x=1"
	body := []byte(`{"contact_id":"1"}`)
	for _, c := range []struct {
		name string
		ans  digestAnswer
		err  error
	}{
		{"sha-256 auth", digestAnswer{method: "POST", uri: uri, user: "Mufasa", pass: "Circle of Life"}, nil},
		{"sha-256 auth-int", digestAnswer{method: "POST", uri: uri, user: "cp", pass: "s3cret", qop: "auth-int", body: body}, nil},
		{"sha-256-sess", digestAnswer{method: "GET", uri: uri, user: "cp", pass: "s3cret", alg: "SHA-256-sess"}, nil},
		{"md5 not configured", digestAnswer{method: "GET", uri: uri, user: "cp", pass: "s3cret", alg: "MD5"}, auth.ErrBadCredentials},
		{"md5-sess not configured", digestAnswer{method: "GET", uri: uri, user: "cp", pass: "s3cret", alg: "MD5-sess"}, auth.ErrBadCredentials},
		{"wrong password", digestAnswer{method: "POST", uri: uri, user: "cp", pass: "nope"}, auth.ErrBadCredentials},
		{"unknown user", digestAnswer{method: "POST", uri: uri, user: "nobody", pass: "s3cret"}, auth.ErrBadCredentials},
		{"auth-int over another body", digestAnswer{method: "POST", uri: uri, user: "cp", pass: "s3cret", qop: "auth-int", body: []byte(`{"contact_id":"2"}`)}, auth.ErrBadCredentials},
		{"nc not 8 hex digits", digestAnswer{method: "POST", uri: uri, user: "cp", pass: "s3cret", nc: "1"}, auth.ErrBadCredentials},
	} {
		p, err := authenticate(a, c.ans.method, uri, c.ans.header(t, a.Challenges(false)[0]), body)
		if !errors.Is(err, c.err) || (c.err == nil && (p.Method != "digest" || p.Name != c.ans.user)) {
			t.Errorf("%s: %+v %v", c.name, p, err)
		}
	}
	// RFC 7616 §3.4: a response without algorithm is MD5, refused too.
	h := digestAnswer{method: "POST", uri: uri, user: "cp", pass: "s3cret", alg: "MD5"}.header(t, a.Challenges(false)[0])
	h = strings.Replace(h, "algorithm=MD5, ", "", 1)
	if _, err := authenticate(a, "POST", uri, h, nil); !errors.Is(err, auth.ErrBadCredentials) {
		t.Errorf("no algorithm (MD5): %v", err)
	}
	// Another method or URI than the one signed, another realm's or a
	// forged nonce, no qop: refused.
	good := digestAnswer{method: "POST", uri: uri, user: "cp", pass: "s3cret"}.header(t, a.Challenges(false)[0])
	for name, tamper := range map[string]func(r *http.Request){
		"other method": func(r *http.Request) { r.Method = "DELETE" },
		"other uri": func(r *http.Request) {
			r.URL.RawQuery = "x=2"
			r.RequestURI = "/v1/contactpro/lifecycle/Allocated/5d3b0a4e?x=2"
		},
		"forged nonce": func(r *http.Request) {
			r.Header.Set("Authorization", regexp.MustCompile(`nonce="[^"]+"`).ReplaceAllString(good, `nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"`))
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

// TestDigestMD5WhenConfigured: MD5 is offered after SHA-256, and accepted,
// only with DigestConfig.MD5.
func TestDigestMD5WhenConfigured(t *testing.T) {
	a := replica(t, deployment(t, jetStream(t), "ccrelay"), "cp:s3cret", func(c *auth.DigestConfig) { c.MD5 = true })
	ch := a.Challenges(false)
	if len(ch) != 2 || !strings.Contains(ch[0], "algorithm=SHA-256") || !strings.Contains(ch[1], "algorithm=MD5") {
		t.Fatalf("challenges %q", ch)
	}
	if _, err := authenticate(a, "GET", "/x", digestAnswer{method: "GET", uri: "/x", user: "cp", pass: "s3cret"}.header(t, ch[1]), nil); err != nil {
		t.Errorf("md5: %v", err)
	}
}

// TestDigestAnsweredOnce: a response (nonce and nonce count) is accepted
// once, on whichever replica of the deployment it reaches first, with its
// body or another; the next count of the same nonce is a new response.
// Replicas share nothing but JetStream.
func TestDigestAnsweredOnce(t *testing.T) {
	js := jetStream(t)
	r1 := replica(t, deployment(t, js, "ccrelay"), "cp:s3cret", nil)
	r2 := replica(t, deployment(t, js, "ccrelay"), "cp:s3cret", nil)
	uri := "/v1/contactpro/lifecycle"
	challenge := r1.Challenges(false)[0]
	first := digestAnswer{method: "POST", uri: uri, user: "cp", pass: "s3cret"}.header(t, challenge)
	if _, err := authenticate(r1, "POST", uri, first, []byte(`{"a":1}`)); err != nil {
		t.Fatalf("first use: %v", err)
	}
	for i, body := range []string{`{"a":1}`, `{"a":2}`, `{"a":3}`} {
		for _, r := range []*auth.Authenticator{r1, r2} {
			if _, err := authenticate(r, "POST", uri, first, []byte(body)); !errors.Is(err, auth.ErrNonceCountUsed) || !errors.Is(err, auth.ErrBadCredentials) {
				t.Errorf("replay %d: %v, want ErrNonceCountUsed", i, err)
			}
		}
	}
	second := digestAnswer{method: "POST", uri: uri, user: "cp", pass: "s3cret", nc: "00000002"}.header(t, challenge)
	if _, err := authenticate(r2, "POST", uri, second, nil); err != nil {
		t.Errorf("the next nonce count on the other replica: %v", err)
	}
	// Sent at once to both replicas, one response is accepted once.
	third := digestAnswer{method: "POST", uri: uri, user: "cp", pass: "s3cret", qop: "auth-int", nc: "00000003"}.header(t, challenge)
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := authenticate([]*auth.Authenticator{r1, r2}[i%2], "POST", uri, third, nil); err == nil {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if accepted != 1 {
		t.Errorf("one response sent 8 times at once was accepted %d times", accepted)
	}
}

// TestDigestNoncePerDeployment: a nonce of one deployment does not open
// another, even with the same users and realm: on another JetStream, or
// under another subject prefix on the same one. Replicas of one
// deployment agree on the key whichever started first.
func TestDigestNoncePerDeployment(t *testing.T) {
	js := jetStream(t)
	prod := replica(t, deployment(t, js, "ccrelay"), "cp:s3cret", nil)
	prod2 := replica(t, deployment(t, js, "ccrelay"), "cp:s3cret", nil)
	staging := replica(t, deployment(t, js, "staging"), "cp:s3cret", nil)
	elsewhere := replica(t, deployment(t, jetStream(t), "ccrelay"), "cp:s3cret", nil)
	for _, c := range []struct {
		name string
		a    *auth.Authenticator
		want error
	}{
		{"another replica", prod2, nil},
		{"another prefix", staging, auth.ErrBadCredentials},
		{"another JetStream", elsewhere, auth.ErrBadCredentials},
	} {
		h := digestAnswer{method: "POST", uri: "/x", user: "cp", pass: "s3cret"}.header(t, prod.Challenges(false)[0])
		if _, err := authenticate(c.a, "POST", "/x", h, nil); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// TestVerifyBodyWithoutPending: a request authenticated by a complete
// credential leaves nothing for the body, and an API key beside a digest
// auth-int response is preferred to it.
func TestVerifyBodyWithoutPending(t *testing.T) {
	a := replica(t, deployment(t, jetStream(t), "ccrelay"), "cp:s3cret", nil)
	a.APIKeys = secret.SecretList{"key"}
	h := digestAnswer{method: "POST", uri: "/x", user: "cp", pass: "s3cret", qop: "auth-int", body: []byte("a")}.header(t, a.Challenges(false)[0])
	r := httptest.NewRequest("POST", "/x", strings.NewReader("b"))
	r.Header.Set("Authorization", h)
	r.Header.Set("x-api-key", "key")
	p, err := a.Authenticate(r)
	if err != nil || p.Method != "api_key" {
		t.Fatalf("%+v %v", p, err)
	}
	if err := auth.VerifyBody(r, []byte("b")); err != nil {
		t.Errorf("VerifyBody: %v", err)
	}
}

func FuzzDigestAuthorization(f *testing.F) {
	f.Add(`username="cp", realm="ccrelay", uri="/x", algorithm=SHA-256, nonce="abc", nc=00000001, cnonce="c", qop=auth, response="00"`)
	f.Add(`username="cp", realm="ccrelay", uri="/x", algorithm=SHA-256, nonce="abc", nc=00000001, cnonce="c", qop=auth-int, response="00"`)
	f.Add(`username="a\"b", realm=ccrelay,,, nonce=`)
	f.Add(`x`)
	a := replica(f, deployment(f, jetStream(f), "ccrelay"), "cp:s3cret", func(c *auth.DigestConfig) { c.MD5 = true })
	f.Fuzz(func(t *testing.T, params string) {
		if p, err := authenticate(a, "POST", "/x", "Digest "+params, []byte("{}")); err == nil {
			t.Fatalf("accepted forged digest %q as %+v", params, p)
		}
	})
}
