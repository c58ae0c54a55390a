package retry_test

import (
	"testing"

	"github.com/ccrelay/ccrelay/sinks/retry"
)

func TestTransientStatus(t *testing.T) {
	for code, want := range map[int]bool{
		0: true, 408: true, 425: true, 429: true, 500: true, 502: true, 503: true, 504: true, 599: true,
		200: false, 204: false, 302: false, 400: false, 401: false, 403: false, 404: false, 409: false,
		410: false, 412: false, 413: false, 415: false, 422: false,
	} {
		if got := retry.TransientStatus(code); got != want {
			t.Errorf("TransientStatus(%d) = %v, want %v", code, got, want)
		}
	}
}
