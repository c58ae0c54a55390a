package provision

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bounded returns ctx with a deadline at most d away: ctx itself when its
// own deadline comes sooner, or when d is not positive.
//
// A JetStream request waits for its answer until its context ends. Work
// that runs on a long context (a processor's handler may run for
// minutes) would wait that long on a node that is paused or partitioned
// rather than dead, and hold its claim and its message all the while;
// with every call bounded, a hung node costs one call's deadline.
func Bounded(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return ctx, func() {}
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// boundedKV bounds every request of a bucket's data operations. Watches and
// key listings live as long as their caller's context and keep it.
type boundedKV struct {
	jetstream.KeyValue
	d time.Duration
}

// BoundKV returns kv with every read, write and status request bounded by
// d (see Bounded).
func BoundKV(kv jetstream.KeyValue, d time.Duration) jetstream.KeyValue {
	if d <= 0 || kv == nil {
		return kv
	}
	if b, ok := kv.(boundedKV); ok {
		kv = b.KeyValue
	}
	return boundedKV{KeyValue: kv, d: d}
}

func (b boundedKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	ctx, cancel := Bounded(ctx, b.d)
	defer cancel()
	return b.KeyValue.Get(ctx, key)
}

func (b boundedKV) GetRevision(ctx context.Context, key string, revision uint64) (jetstream.KeyValueEntry, error) {
	ctx, cancel := Bounded(ctx, b.d)
	defer cancel()
	return b.KeyValue.GetRevision(ctx, key, revision)
}

func (b boundedKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	ctx, cancel := Bounded(ctx, b.d)
	defer cancel()
	return b.KeyValue.Put(ctx, key, value)
}

func (b boundedKV) PutString(ctx context.Context, key string, value string) (uint64, error) {
	ctx, cancel := Bounded(ctx, b.d)
	defer cancel()
	return b.KeyValue.PutString(ctx, key, value)
}

func (b boundedKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	ctx, cancel := Bounded(ctx, b.d)
	defer cancel()
	return b.KeyValue.Create(ctx, key, value, opts...)
}

func (b boundedKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	ctx, cancel := Bounded(ctx, b.d)
	defer cancel()
	return b.KeyValue.Update(ctx, key, value, revision)
}

func (b boundedKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	ctx, cancel := Bounded(ctx, b.d)
	defer cancel()
	return b.KeyValue.Delete(ctx, key, opts...)
}

func (b boundedKV) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	ctx, cancel := Bounded(ctx, b.d)
	defer cancel()
	return b.KeyValue.Purge(ctx, key, opts...)
}

func (b boundedKV) Status(ctx context.Context) (jetstream.KeyValueStatus, error) {
	ctx, cancel := Bounded(ctx, b.d)
	defer cancel()
	return b.KeyValue.Status(ctx)
}

// boundedObjects bounds an object store's metadata requests. Put and Get
// move whole files, whose time grows with their size; their callers bound
// them (the media download's and the sink's timeouts).
type boundedObjects struct {
	jetstream.ObjectStore
	d time.Duration
}

// BoundObjects returns os with its metadata requests (GetInfo, Delete,
// UpdateMeta, Status) bounded by d.
func BoundObjects(os jetstream.ObjectStore, d time.Duration) jetstream.ObjectStore {
	if d <= 0 || os == nil {
		return os
	}
	if b, ok := os.(boundedObjects); ok {
		os = b.ObjectStore
	}
	return boundedObjects{ObjectStore: os, d: d}
}

func (b boundedObjects) GetInfo(ctx context.Context, name string, opts ...jetstream.GetObjectInfoOpt) (*jetstream.ObjectInfo, error) {
	ctx, cancel := Bounded(ctx, b.d)
	defer cancel()
	return b.ObjectStore.GetInfo(ctx, name, opts...)
}

func (b boundedObjects) Delete(ctx context.Context, name string) error {
	ctx, cancel := Bounded(ctx, b.d)
	defer cancel()
	return b.ObjectStore.Delete(ctx, name)
}

func (b boundedObjects) UpdateMeta(ctx context.Context, name string, meta jetstream.ObjectMeta) error {
	ctx, cancel := Bounded(ctx, b.d)
	defer cancel()
	return b.ObjectStore.UpdateMeta(ctx, name, meta)
}

func (b boundedObjects) Status(ctx context.Context) (jetstream.ObjectStoreStatus, error) {
	ctx, cancel := Bounded(ctx, b.d)
	defer cancel()
	return b.ObjectStore.Status(ctx)
}
