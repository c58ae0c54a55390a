// Package retry holds the one rule of which HTTP answers are worth trying
// again: every client of an external system (C4C, CMI, media hosts) asks it,
// so they cannot disagree.
package retry

// TransientStatus reports whether a request answered with code may succeed
// when tried again later: 0 (no answer: a network error or timeout), 408
// Request Timeout, 425 Too Early, 429 Too Many Requests and every 5xx. Any
// other 4xx will be answered the same way again, and 2xx/3xx are not
// failures to retry.
func TransientStatus(code int) bool {
	switch {
	case code == 0, code >= 500:
		return true
	case code == 408, code == 425, code == 429:
		return true
	}
	return false
}
