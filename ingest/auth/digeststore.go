package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/messages/provision"
)

// DigestStore is what every ingest replica of one deployment shares for
// digest authentication, in JetStream: the deployment's nonce key, made
// once by the first replica (KV Create: only one can win), and the nonce
// counts used, each kept as long as its nonce can be accepted.
//
// The key is random rather than derived from the configuration because
// two deployments are often configured alike (a staging copy of
// production, the default subject prefix, the same Contact Pro user):
// derived keys would then agree, and a nonce of one would open the other.
// A deployment is its JetStream and subject prefix; the key lives there.
type DigestStore struct {
	counts jetstream.KeyValue
	key    []byte
}

// Bucket names, after the subject prefix (CCRELAY_DIGEST_NONCES, ...).
const (
	digestCountsBucket = "DIGEST_NONCES"
	digestKeyBucket    = "DIGEST_KEY"
	digestKeyName      = "nonce-key"
)

// ProvisionDigest creates or binds to the deployment's digest buckets,
// waiting with w while JetStream is not ready: nonce counts live nonceTTL
// plus twice MaxClockSkew (a count must outlive its nonce on every
// replica's clock).
func ProvisionDigest(ctx context.Context, w provision.Waiter, js jetstream.JetStream, subjects messages.Subjects, nonceTTL time.Duration, replicas int) (*DigestStore, error) {
	counts, err := w.KeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      subjects.Bucket(digestCountsBucket),
		Description: "ccrelay: digest nonce counts accepted, each once across replicas",
		TTL:         nonceTTL + 2*MaxClockSkew,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("digest nonce counts: %w", err)
	}
	keys, err := w.KeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      subjects.Bucket(digestKeyBucket),
		Description: "ccrelay: the deployment's digest nonce key",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("digest nonce key: %w", err)
	}
	var key []byte
	err = w.Do(ctx, "digest nonce key", func(ctx context.Context) error {
		fresh := make([]byte, 32)
		_, _ = rand.Read(fresh)
		_, err := keys.Create(ctx, digestKeyName, fresh)
		if err == nil {
			key = fresh
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return err
		}
		// Another replica made it first: use that one.
		e, err := keys.Get(ctx, digestKeyName)
		if err != nil {
			return err
		}
		key = e.Value()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(key) < 16 {
		return nil, fmt.Errorf("the stored digest nonce key has %d bytes; delete key %s of bucket %s to have a new one made", len(key), digestKeyName, subjects.Bucket(digestKeyBucket))
	}
	return &DigestStore{counts: counts, key: key}, nil
}

// Key is the deployment's nonce key (DigestConfig.Key).
func (s *DigestStore) Key() []byte { return s.key }

// Use implements NonceCounter: one KV Create per response, which only the
// first of any number of replicas can make.
func (s *DigestStore) Use(ctx context.Context, nonce, nc string) error {
	sum := sha256.Sum256([]byte(nonce + ":" + nc))
	// nats.go holds its connection's lock through a reconnect attempt,
	// and a request waits for it whatever its context says: the count is
	// asked apart, and given up at ctx's end, so the request's answer is
	// not held past its budget. An abandoned count that is stored later
	// only makes the sender's retry of the same response a replay, which
	// a client answers with a fresh nonce count anyway.
	done := make(chan error, 1)
	go func() {
		_, err := s.counts.Create(ctx, hex.EncodeToString(sum[:16]), nil)
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyExists):
		return ErrNonceCountUsed
	}
	return fmt.Errorf("%w: %w", ErrNonceStore, err)
}
