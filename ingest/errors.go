package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Stable error codes. They appear in JSON error bodies and as the outcome
// label of ccrelay_ingest_requests_total, so the set must stay small.
const (
	CodeInvalidPayload       = "invalid_payload"
	CodeInvalidPath          = "invalid_path"
	CodeUnauthorized         = "unauthorized"
	CodeInvalidSignature     = "invalid_signature"
	CodeStaleTimestamp       = "stale_timestamp"
	CodeUnsupportedAlgorithm = "unsupported_algorithm"
	CodePayloadTooLarge      = "payload_too_large"
	CodeRequestTimeout       = "request_timeout"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeUnsupportedEvent     = "unsupported_event"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeNotFound             = "not_found"
	CodeUnavailable          = "unavailable"
	CodeInternal             = "internal"

	// CodeOverloaded is a 503 of ccrelay's own bounds, kept apart from
	// "unavailable" because alerts take that one to mean JetStream.
	CodeOverloaded = "overloaded"
)

// Error is an answer to a request that was not stored. It is the only error
// type the pipeline turns into an HTTP status; anything else is a 500.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter time.Duration
	// Challenges, when set, are sent as WWW-Authenticate headers, one each.
	Challenges []string
	// Err is the cause, for errors.Is/As; it is never sent to the client.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with a formatted message.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// BadPayload answers 400 for a body that failed decoding; the decoder's
// message says which field is wrong and is safe to show (it never quotes
// values).
func BadPayload(err error) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidPayload, Message: err.Error(), Err: err}
}

// RefusedMessage is the message of every 401.
const RefusedMessage = "the credentials or signature are missing or refused; the ingest log says why under this answer's X-Request-Id"

// Unauthorized answers 401 with the given challenges. Every 401 is the same
// answer, CodeUnauthorized and RefusedMessage, whatever code and message
// say: a caller must not tell a configured service from one that is not,
// nor learn which part of its credentials was wrong. They are kept in Err
// (a *Refusal), for the log.
func Unauthorized(code, message string, challenges []string, cause error) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Message: RefusedMessage, Challenges: challenges,
		Err: &Refusal{Code: code, Reason: message, Err: cause}}
}

// Refusal is why a 401 was answered: logged, never sent.
type Refusal struct {
	// Code is the error code the reason would have had
	// (CodeInvalidSignature, CodeStaleTimestamp, ...).
	Code   string
	Reason string
	Err    error
}

func (r *Refusal) Error() string {
	if r.Err != nil {
		return r.Code + ": " + r.Reason + ": " + r.Err.Error()
	}
	return r.Code + ": " + r.Reason
}

func (r *Refusal) Unwrap() error { return r.Err }

// AsError returns err as an *Error, or an internal error wrapping it.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error", Err: err}
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteError writes e as a JSON error body with its status and headers.
func WriteError(w http.ResponseWriter, e *Error) {
	h := w.Header()
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	for _, c := range e.Challenges {
		h.Add("WWW-Authenticate", c)
	}
	WriteJSON(w, e.Status, errorBody{Code: e.Code, Message: e.Message})
}

// WriteJSON writes v as a JSON body with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":"internal","message":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
