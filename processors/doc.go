// Package processors runs ccrelay's processors: each is a durable
// JetStream consumer, shared by every replica, read through a watermill
// Router with many messages in flight. The runtime gives every processor the
// same guarantees:
//
//   - at-least-once delivery, with an idempotency ledger (a JetStream KV
//     bucket keyed by processor and dedup id) so that redeliveries and
//     replays never repeat a side effect that completed;
//   - transient errors are redelivered with exponential backoff, permanent
//     ones go to the dead-letter stream at once, and so does a message that
//     used up its deliveries;
//   - long work tells JetStream it is still in progress, panics are
//     recovered, and every outcome is counted.
//
// A processor only implements Handler.
package processors
