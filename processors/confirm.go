package processors

import (
	"context"
	"errors"
)

// claimKey carries a delivery's claim, and the cancel of its handler's
// context, to Confirm.
type claimKey struct{}

type heldClaim struct {
	claim *Claim
	lose  context.CancelCauseFunc
}

func withClaim(ctx context.Context, c *Claim, lose context.CancelCauseFunc) context.Context {
	return context.WithValue(ctx, claimKey{}, heldClaim{claim: c, lose: lose})
}

// Confirm is called by a handler right before a side effect that must not
// be repeated (a delivery to Contact Pro): it checks that the work's claim
// is still this worker's and marks it as sending, so a worker that takes
// the claim over later knows the side effect may have happened
// (Event.MaybeDone). It fails with an error wrapping ErrClaimLost when
// another worker took the claim over, typically after this one was paused
// or cut off from NATS past the claim's life: the handler must return
// without the side effect, and its context is cancelled. Outside the
// runtime (a handler called directly) it does nothing.
func Confirm(ctx context.Context) error {
	h, ok := ctx.Value(claimKey{}).(heldClaim)
	if !ok {
		return nil
	}
	// A handler that was paused comes back to a context its heartbeat may
	// have ended on finding the claim lost: that is the answer.
	if err := context.Cause(ctx); err != nil {
		return err
	}
	err := h.claim.Confirm(ctx)
	if errors.Is(err, ErrClaimLost) {
		h.lose(err)
	}
	return err
}
