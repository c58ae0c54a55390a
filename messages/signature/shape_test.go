package signature_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/ccrelay/ccrelay/messages/signature"
)

// What the WellFormed functions accept without the body is what each
// scheme's signature can look like: a request they refuse could never have
// verified, and every signature a sender makes passes them.
func TestWellFormed(t *testing.T) {
	sinch := signature.SinchSign("s", []byte("{}"), "n", "1")
	hub := signature.HubSign("h", []byte("{}"))
	for _, c := range []struct {
		name string
		ok   func(string) bool
		sig  string
		want bool
	}{
		{"sinch", signature.SinchWellFormed, sinch, true},
		{"sinch unpadded", signature.SinchWellFormed, strings.TrimRight(sinch, "="), false},
		{"sinch unused bits set", signature.SinchWellFormed, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=", false},
		{"sinch url alphabet", signature.SinchWellFormed, "_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", false},
		{"sinch of 33 bytes", signature.SinchWellFormed, base64.StdEncoding.EncodeToString(make([]byte, 33)), false},
		{"sinch empty", signature.SinchWellFormed, "", false},
		{"hub", signature.HubWellFormed, hub, true},
		{"hub upper case", signature.HubWellFormed, "sha256=" + strings.ToUpper(hub[7:]), false},
		{"hub sha1", signature.HubWellFormed, "sha1=" + hub[7:], false},
		{"hub short", signature.HubWellFormed, hub[:len(hub)-1], false},
		{"hub bare hex", signature.HubWellFormed, hub[7:], false},
	} {
		if got := c.ok(c.sig); got != c.want {
			t.Errorf("%s: %q: %v, want %v", c.name, c.sig, got, c.want)
		}
	}
}
