package messages

import (
	"errors"
	"fmt"
)

// ErrInvalidPayload is wrapped by every decoder error caused by the payload
// itself (not JSON, wrong shape, a required field missing). Callers answer
// such errors with 400 and never retry them.
var ErrInvalidPayload = errors.New("invalid payload")

// FieldError says which field of a payload is missing or wrong. It wraps
// ErrInvalidPayload.
type FieldError struct {
	// Field is the JSON path of the field, e.g. "message.contact_message".
	Field string
	// Problem says what is wrong, e.g. "is required".
	Problem string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s %s", e.Field, e.Problem) }

// Unwrap makes errors.Is(err, ErrInvalidPayload) true.
func (e *FieldError) Unwrap() error { return ErrInvalidPayload }

func missing(field string) error { return &FieldError{Field: field, Problem: "is required"} }

func malformed(what string, err error) error {
	return fmt.Errorf("%w: %s is not valid JSON: %w", ErrInvalidPayload, what, err)
}
