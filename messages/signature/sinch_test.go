package signature_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"testing"

	"github.com/ccrelay/ccrelay/messages/signature"
)

// A vector computed independently of Sign: HMAC-SHA256 over
// body.nonce.timestamp, padded standard base64.
func TestSignKnownVector(t *testing.T) {
	body := []byte(`{"app_id":"A"}`)
	mac := hmac.New(sha256.New, []byte("s3cret"))
	mac.Write([]byte(`{"app_id":"A"}.01FJA8B4A7BM43YGWSG9GBV067.1634579353`))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if got := signature.SinchSign("s3cret", body, "01FJA8B4A7BM43YGWSG9GBV067", "1634579353"); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	if !signature.SinchVerify("s3cret", body, "01FJA8B4A7BM43YGWSG9GBV067", "1634579353", want) {
		t.Fatal("Verify refuses a good signature")
	}
}

func TestVerifyRefuses(t *testing.T) {
	body := []byte(`{"x":1}`)
	good := signature.SinchSign("k", body, "n", "1")
	for name, c := range map[string]struct {
		secret, nonce, ts, sig string
		body                   []byte
	}{
		"other secret":    {"k2", "n", "1", good, body},
		"other nonce":     {"k", "m", "1", good, body},
		"other timestamp": {"k", "n", "2", good, body},
		"other body":      {"k", "n", "1", good, []byte(`{"x":2}`)},
		"unpadded":        {"k", "n", "1", good[:len(good)-1], body},
		"url alphabet":    {"k", "n", "1", base64.URLEncoding.EncodeToString(mustDecode(good)), body},
		"empty secret":    {"", "n", "1", signature.SinchSign("", body, "n", "1"), body},
		"empty sig":       {"k", "n", "1", "", body},
		"garbage":         {"k", "n", "1", "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", body},
	} {
		if name == "url alphabet" && c.sig == good {
			continue // no '+' or '/' in this signature: the case says nothing
		}
		if signature.SinchVerify(c.secret, c.body, c.nonce, c.ts, c.sig) {
			t.Errorf("%s: accepted", name)
		}
	}
}

func mustDecode(s string) []byte {
	b, _ := base64.StdEncoding.DecodeString(s)
	return b
}

// FuzzSinchVerify: a signature made by Sign always verifies, and changing any
// input byte makes it fail.
func FuzzSinchVerify(f *testing.F) {
	f.Add("secret", []byte(`{"app_id":"A"}`), "nonce", "1634579353", "")
	f.Add("s", []byte{}, "", "", "AAAA")
	vs, bodies := loadVectors(f)
	for i, v := range vs {
		f.Add(v.Secret, bodies[i], v.Nonce, v.Timestamp, v.Signature)
	}
	f.Fuzz(func(t *testing.T, secret string, body []byte, nonce, ts, sig string) {
		if secret == "" {
			return
		}
		good := signature.SinchSign(secret, body, nonce, ts)
		if !signature.SinchVerify(secret, body, nonce, ts, good) {
			t.Fatal("own signature refused")
		}
		if sig != good && signature.SinchVerify(secret, body, nonce, ts, sig) {
			t.Fatalf("forged signature %q accepted", sig)
		}
		if signature.SinchVerify(secret, append(append([]byte{}, body...), 'x'), nonce, ts, good) {
			t.Fatal("signature accepted for another body")
		}
	})
}

// BenchmarkVerify is the signature check of one 1 KiB callback.
func BenchmarkVerify(b *testing.B) {
	body := make([]byte, 1024)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	sig := signature.SinchSign("bench-secret", body, "01FJA8B4A7BM43YGWSG9GBV067", "1634579353")
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if !signature.SinchVerify("bench-secret", body, "01FJA8B4A7BM43YGWSG9GBV067", "1634579353", sig) {
			b.Fatal("refused")
		}
	}
}
