package processors

import (
	"errors"
	"fmt"
)

// ErrPermanent marks an error that no retry can fix (a 4xx from SAP that is
// not 408/409/412/429, an undecodable payload, missing configuration). The
// message goes to the dead-letter stream at once.
var ErrPermanent = errors.New("permanent")

// ErrIgnored is returned by a handler for an event it has nothing to do with
// (a text message for the attachments processor). It is acked and counted.
var ErrIgnored = errors.New("ignored")

// Permanent marks err as permanent. It keeps err for errors.Is/As.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}

// Permanentf is Permanent(fmt.Errorf(format, args...)).
func Permanentf(format string, args ...any) error {
	return Permanent(fmt.Errorf(format, args...))
}

// Ignored returns an ErrIgnored saying why.
func Ignored(why string) error { return fmt.Errorf("%w: %s", ErrIgnored, why) }
