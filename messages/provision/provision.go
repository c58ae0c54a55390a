// Package provision creates JetStream streams, key-value buckets, object
// stores and consumers, or binds to them when they already exist as wanted.
//
// Two rules make it safe for many replicas starting at once, and for a
// cluster that is still re-forming:
//
//   - A resource is updated only when its configuration differs from what
//     is wanted. An update of a stream that is unchanged is not free: the
//     server rewrites the stream's configuration while other clients may be
//     creating consumers on it, which nats-server (v2.15.2) does not
//     serialise (the race detector reports fileStore.UpdateConfig against
//     fileStore.ConsumerStore). Reading first and writing only on a real
//     change takes every replica but the first off that path.
//   - Every call is retried with backoff until the Waiter's budget runs out,
//     with one log line per wait saying what it waits for: a JetStream
//     cluster that just lost a node answers with timeouts and "no leader"
//     for a few seconds, and a process that exits then only makes its
//     orchestrator restart it into the same seconds.
package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Waiter retries provisioning calls with backoff within Budget.
type Waiter struct {
	// Budget bounds how long one resource is waited for
	// (CCRELAY_NATS_CONNECT_TIMEOUT).
	Budget time.Duration
	// Logger gets one line per wait; nil logs nothing.
	Logger *slog.Logger
	// CallTimeout, when positive, bounds every data request of the
	// buckets and object stores the Waiter returns (see Bounded), whatever
	// their callers' contexts allow.
	CallTimeout time.Duration
}

// attemptTimeout bounds one request, so that one lost answer during a
// leader election does not use up the whole budget.
const attemptTimeout = 5 * time.Second

// Do runs f until it succeeds, fails permanently, or the budget is spent.
// what names the resource in log lines and errors.
func (w Waiter) Do(ctx context.Context, what string, f func(ctx context.Context) error) error {
	budget := w.Budget
	if budget <= 0 {
		budget = 15 * time.Second
	}
	deadline := time.Now().Add(budget)
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, min(attemptTimeout, time.Until(deadline)))
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if !Transient(err) {
			return fmt.Errorf("%s: %w", what, err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%s: gave up after %d attempts in %s: %w", what, attempt, budget, err)
		}
		wait = min(wait, left)
		if w.Logger != nil {
			w.Logger.Warn("waiting for nats", "for", what, "attempt", attempt, "retry_in", wait.String(), "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// updating says that a resource's configuration is about to change. Two
// replicas configured differently would change it back and forth on every
// start, so it is worth a line each time.
func (w Waiter) updating(what string) {
	if w.Logger != nil {
		w.Logger.Warn("configuration differs from the running one; updating", "resource", what)
	}
}

// Transient reports whether err may go away by itself: timeouts, no
// responders, a cluster without a leader, and the races between replicas
// creating the same resource. A request JetStream refused as invalid is not.
func Transient(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode {
		case jetstream.JSErrCodeStreamNameInUse, jetstream.JSErrCodeConsumerExists,
			jetstream.JSErrCodeConsumerAlreadyExists, jetstream.JSErrCodeConsumerNameExists:
			return true
		}
		return api.Code >= http.StatusInternalServerError || api.Code == http.StatusRequestTimeout
	}
	// A request the client refuses before sending it is as final as one
	// JetStream refuses: waiting would only delay the error.
	for _, invalid := range []error{jetstream.ErrInvalidBucketName, jetstream.ErrInvalidStreamName,
		jetstream.ErrStreamNameRequired, jetstream.ErrInvalidConsumerName, jetstream.ErrHistoryTooLarge} {
		if errors.Is(err, invalid) {
			return false
		}
	}
	// Timeouts, no responders, connection loss: anything that is not an
	// answer from JetStream.
	return true
}

// Stream creates the stream or updates it when its configuration differs
// from want in a field ccrelay sets.
func (w Waiter) Stream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (jetstream.Stream, error) {
	var out jetstream.Stream
	err := w.Do(ctx, "stream "+want.Name, func(ctx context.Context) error {
		s, err := js.Stream(ctx, want.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			s, err = js.CreateStream(ctx, want)
		case err == nil && streamDiffers(want, s.CachedInfo().Config):
			w.updating("stream " + want.Name)
			s, err = js.UpdateStream(ctx, want)
		}
		out = s
		return err
	})
	return out, err
}

// streamDiffers compares the fields ccrelay's stream definitions set; the
// others hold server defaults that want leaves at zero.
func streamDiffers(want, got jetstream.StreamConfig) bool {
	return want.Description != got.Description ||
		!slices.Equal(want.Subjects, got.Subjects) ||
		want.Storage != got.Storage ||
		want.Retention != got.Retention ||
		want.Discard != got.Discard ||
		want.MaxAge != got.MaxAge ||
		orUnlimited(want.MaxBytes) != got.MaxBytes ||
		want.Duplicates != 0 && want.Duplicates != got.Duplicates ||
		max(want.Replicas, 1) != got.Replicas ||
		want.AllowDirect != got.AllowDirect
}

// KeyValue binds to the bucket, creating it or updating its configuration
// when it differs from want.
func (w Waiter) KeyValue(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var out jetstream.KeyValue
	err := w.Do(ctx, "bucket "+want.Bucket, func(ctx context.Context) error {
		kv, err := js.KeyValue(ctx, want.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = js.CreateKeyValue(ctx, want)
			if errors.Is(err, jetstream.ErrBucketExists) {
				return err // another replica won; bind on the next attempt
			}
		} else if err == nil {
			var st jetstream.KeyValueStatus
			if st, err = kv.Status(ctx); err == nil && kvDiffers(want, st.Config()) {
				w.updating("bucket " + want.Bucket)
				kv, err = js.UpdateKeyValue(ctx, want)
			}
		}
		out = kv
		return err
	})
	return BoundKV(out, w.CallTimeout), err
}

func kvDiffers(want, got jetstream.KeyValueConfig) bool {
	return want.Description != got.Description ||
		max(want.History, 1) != got.History ||
		want.TTL != got.TTL ||
		orUnlimited(int64(want.MaxValueSize)) != int64(got.MaxValueSize) ||
		orUnlimited(want.MaxBytes) != got.MaxBytes ||
		want.Storage != got.Storage ||
		max(want.Replicas, 1) != got.Replicas ||
		want.Compression != got.Compression
}

// ObjectStore binds to the object store, creating it or updating its
// configuration when it differs from want.
func (w Waiter) ObjectStore(ctx context.Context, js jetstream.JetStream, want jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	var out jetstream.ObjectStore
	err := w.Do(ctx, "object store "+want.Bucket, func(ctx context.Context) error {
		os, err := js.ObjectStore(ctx, want.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			os, err = js.CreateObjectStore(ctx, want)
			if errors.Is(err, jetstream.ErrBucketExists) {
				return err
			}
		} else if err == nil {
			var st jetstream.ObjectStoreStatus
			if st, err = os.Status(ctx); err == nil && objectStoreDiffers(want, st) {
				w.updating("object store " + want.Bucket)
				os, err = js.UpdateObjectStore(ctx, want)
			}
		}
		out = os
		return err
	})
	return BoundObjects(out, w.CallTimeout), err
}

func objectStoreDiffers(want jetstream.ObjectStoreConfig, got jetstream.ObjectStoreStatus) bool {
	return want.Description != got.Description() ||
		want.TTL != got.TTL() ||
		want.Storage != got.Storage() ||
		max(want.Replicas, 1) != got.Replicas() ||
		want.Compression != got.IsCompressed()
}

// Consumer creates the durable consumer or updates it when its
// configuration differs from want in a field ccrelay sets.
func (w Waiter) Consumer(ctx context.Context, js jetstream.JetStream, stream string, want jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	var out jetstream.Consumer
	err := w.Do(ctx, "consumer "+want.Durable, func(ctx context.Context) error {
		c, err := js.Consumer(ctx, stream, want.Durable)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			c, err = js.CreateConsumer(ctx, stream, want)
		case err == nil && consumerDiffers(want, c.CachedInfo().Config):
			w.updating("consumer " + want.Durable)
			c, err = js.UpdateConsumer(ctx, stream, want)
		}
		out = c
		return err
	})
	return out, err
}

func consumerDiffers(want, got jetstream.ConsumerConfig) bool {
	return want.Description != got.Description ||
		want.DeliverPolicy != got.DeliverPolicy ||
		want.AckPolicy != got.AckPolicy ||
		want.AckWait != got.AckWait ||
		want.MaxDeliver != got.MaxDeliver ||
		!slices.Equal(want.BackOff, got.BackOff) ||
		want.MaxAckPending != got.MaxAckPending ||
		!slices.Equal(want.FilterSubjects, got.FilterSubjects) ||
		want.FilterSubject != got.FilterSubject
}

// orUnlimited maps JetStream's "not set" (0) to the -1 the server reports.
func orUnlimited(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}
