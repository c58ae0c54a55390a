package forward

import (
	"errors"
	"net/http"
	"testing"
)

// TestSendable: a header value net/http would refuse on every attempt is
// refused before the first, as permanent, whatever the header; a tab is
// not a control character to HTTP.
func TestSendable(t *testing.T) {
	for _, c := range []struct {
		value string
		ok    bool
	}{
		{"sha256=0123", true},
		{"a\tb", true},
		{"caf\u00e9", true},
		{"a\r\nX-Injected: 1", false},
		{"a\x00b", false},
		{"a\x7f", false},
	} {
		err := sendable(http.Header{"X-Hub-Signature": {c.value}})
		if (err == nil) != c.ok || err != nil && !errors.Is(err, ErrDisagrees) {
			t.Errorf("%q: %v, want ok %v", c.value, err, c.ok)
		}
	}
}
