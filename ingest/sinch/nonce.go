package sinch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages/provision"
)

// ErrReplayed is returned by NonceGuard.Claim for a nonce seen before.
var ErrReplayed = errors.New("nonce already used")

// NonceGuard remembers the nonces of accepted callbacks so that a captured
// request cannot be replayed. Claim is atomic across every replica sharing
// the guard.
type NonceGuard interface {
	// Claim records nonce for service. It fails with ErrReplayed if the
	// nonce was claimed before. undo releases the claim again.
	Claim(ctx context.Context, service, nonce string) (undo func(context.Context) error, err error)
}

// KVNonceGuard keeps nonces in a JetStream KV bucket whose TTL is the whole
// window in which a timestamp is accepted, so every replica of ingest sees
// every other's nonces, and old ones expire by themselves.
type KVNonceGuard struct {
	kv jetstream.KeyValue
}

// NewKVNonceGuard creates or updates the bucket and returns a guard on it.
// maxSkew is the accepted clock skew: a nonce must be remembered for as long
// as its timestamp can still be accepted, which is up to 2×maxSkew after it
// was first seen. The bucket is on file, not in memory: it holds every nonce
// of the window (at 5,000 callbacks/s and the default 5m skew, over three
// million), which in memory storage would cost the NATS server hundreds of
// MiB; on file the server keeps only recent blocks cached.
func NewKVNonceGuard(ctx context.Context, w provision.Waiter, js jetstream.JetStream, bucket string, maxSkew time.Duration, replicas int) (*KVNonceGuard, error) {
	kv, err := w.KeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "ccrelay: Sinch webhook nonces seen inside the accepted clock skew",
		TTL:         2*maxSkew + time.Minute,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		// Values are empty; the bound is on value plus headers, and a delete
		// marker carries two headers.
		MaxValueSize: 1024,
	})
	if err != nil {
		return nil, fmt.Errorf("nonce %w", err)
	}
	return &KVNonceGuard{kv: kv}, nil
}

// Claim implements NonceGuard.
func (g *KVNonceGuard) Claim(ctx context.Context, service, nonce string) (func(context.Context) error, error) {
	// Nonces are arbitrary text and KV keys are not: hash them, and
	// include the service so services cannot collide.
	sum := sha256.Sum256([]byte(service + "\x00" + nonce))
	key := hex.EncodeToString(sum[:20])
	rev, err := g.kv.Create(ctx, key, nil)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, ErrReplayed
		}
		return nil, fmt.Errorf("claim nonce: %w", err)
	}
	return func(ctx context.Context) error {
		// Only our own claim is removed; the revision check makes a
		// concurrent re-claim safe.
		if err := g.kv.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
			return fmt.Errorf("release nonce: %w", err)
		}
		return nil
	}, nil
}
