package seal_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/messages/seal"
)

// ctx is the event a value is sealed for.
var ctx = []byte("contactpro:chat-attachments:ended:G:0123")

const (
	k1 = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	k2 = "k2:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA"
)

func TestSealOpenRotate(t *testing.T) {
	old, err := seal.ParseKeyRing(k1)
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]string{"x-cmi-password": "p@ss", "x-sap-v1-password": "s3cret"}
	v, err := old.Seal(in, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, "v2.k1.") || strings.Contains(v, "p@ss") || strings.Contains(v, "s3cret") {
		t.Fatalf("sealed value %q", v)
	}
	v2, _ := old.Seal(in, ctx)
	if v == v2 {
		t.Error("two seals of the same input are equal: nonce reused")
	}
	// After rotation k2 seals, k1 still opens old values.
	rotated, err := seal.ParseKeyRing(k2 + "," + k1)
	if err != nil {
		t.Fatal(err)
	}
	out, err := rotated.Open(v, ctx)
	if err != nil || out["x-cmi-password"] != "p@ss" || out["x-sap-v1-password"] != "s3cret" {
		t.Fatalf("open after rotation: %v %v", out, err)
	}
	nv, _ := rotated.Seal(in, ctx)
	if !strings.HasPrefix(nv, "v2.k2.") {
		t.Errorf("rotated ring seals with %q", nv[:6])
	}
	if _, err := old.Open(nv, ctx); !errors.Is(err, seal.ErrUnknownKey) {
		t.Errorf("old ring opening a k2 value: %v", err)
	}
	// Re-labelling a value with another key id fails authentication.
	relabelled := "v2.k2." + strings.TrimPrefix(v, "v2.k1.")
	if _, err := rotated.Open(relabelled, ctx); !errors.Is(err, seal.ErrTampered) {
		t.Errorf("relabelled: %v", err)
	}
	flipped := []byte(v)
	flipped[len(flipped)-2] ^= 1
	if _, err := rotated.Open(string(flipped), ctx); err == nil {
		t.Error("tampered value opened")
	}
	for _, bad := range []string{"", "v1", "v2.k1.AAAA", "v1.k1", "v2.k1.!!!", "v2.k1.AAAA"} {
		if _, err := rotated.Open(bad, ctx); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
	var none seal.KeyRing
	if _, err := none.Seal(in, ctx); !errors.Is(err, seal.ErrNoKeys) {
		t.Errorf("empty ring: %v", err)
	}
	// A value opens for the context it was sealed for only: copied onto
	// another event it fails authentication.
	for _, other := range [][]byte{nil, []byte("contactpro:chat-attachments:ended:G:0124"), append(ctx, 'x')} {
		if _, err := rotated.Open(v, other); !errors.Is(err, seal.ErrTampered) {
			t.Errorf("opened for context %q: %v", other, err)
		}
	}
}

func TestParseKeyRingErrorsHideKeys(t *testing.T) {
	for _, s := range []string{"k1", ":abc", "k1:short", "k.1:" + strings.Repeat("A", 44), k1 + "," + k1, "k1:" + strings.Repeat("#", 44)} {
		_, err := seal.ParseKeyRing(s)
		if err == nil {
			t.Errorf("%q accepted", s)
			continue
		}
		if strings.Contains(err.Error(), "MDEy") || strings.Contains(err.Error(), "short") || strings.Contains(err.Error(), "###") {
			t.Errorf("error repeats key material: %v", err)
		}
	}
	kr, _ := seal.ParseKeyRing(k1)
	if s := fmt.Sprint(kr); strings.Contains(s, "MDEy") {
		t.Errorf("KeyRing prints its key: %s", s)
	}
}

// FuzzOpen: opening arbitrary input never panics, fails only with the
// declared errors, and whatever opens carries exactly what was sealed: the
// fuzzer cannot forge contents without the key.
func FuzzOpen(f *testing.F) {
	kr, _ := seal.ParseKeyRing(k1)
	good, _ := kr.Seal(map[string]string{"a": "b"}, ctx)
	f.Add(good)
	f.Add("v2.k1.")
	f.Add("v2.k2.AAAA")
	f.Fuzz(func(t *testing.T, v string) {
		out, err := kr.Open(v, ctx)
		if err != nil {
			if !errors.Is(err, seal.ErrMalformed) && !errors.Is(err, seal.ErrUnknownKey) && !errors.Is(err, seal.ErrTampered) {
				t.Fatalf("undeclared error %v", err)
			}
			return
		}
		if len(out) != 1 || out["a"] != "b" {
			t.Fatalf("forged contents opened from %q: %v", v, out)
		}
	})
}

// TestOneSpellingPerSealedValue: a sealed value whose last base64 character
// differs only in its unused bits decodes to the same bytes; it is refused
// as malformed rather than opened.
func TestOneSpellingPerSealedValue(t *testing.T) {
	kr, err := seal.ParseKeyRing(k1)
	if err != nil {
		t.Fatal(err)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	tried := 0
	for _, v := range []string{"b", "bb", "bbb"} {
		sealed, err := kr.Seal(map[string]string{"a": v}, ctx)
		if err != nil {
			t.Fatal(err)
		}
		b64 := sealed[strings.LastIndexByte(sealed, '.')+1:]
		if len(b64)%4 == 0 {
			continue // no unused bits in this length
		}
		tried++
		last := strings.IndexByte(alphabet, sealed[len(sealed)-1])
		other := sealed[:len(sealed)-1] + string(alphabet[last^1])
		if _, err := kr.Open(sealed, ctx); err != nil {
			t.Fatalf("the sealed value itself: %v", err)
		}
		if out, err := kr.Open(other, ctx); !errors.Is(err, seal.ErrMalformed) {
			t.Errorf("a second spelling opened (%v, %v), want ErrMalformed", out, err)
		}
	}
	if tried == 0 {
		t.Fatal("no sealed length had unused bits: the test checked nothing")
	}
}
