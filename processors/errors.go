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

// ErrMaybeDone marks a failure after which the side effect may have
// happened all the same (a request sent and no answer read: a timeout, a
// connection cut): the runtime leaves the work's claim marked, so that the
// retry, on whichever worker, is told (Event.MaybeDone).
var ErrMaybeDone = errors.New("the side effect may have happened")

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
