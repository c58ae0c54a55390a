// Package messages is ccrelay's wire contract: the subjects events are stored
// under, the streams that hold them, the headers every message carries, the
// dedup ids that make redelivery harmless, and the typed payloads of every
// source together with their decoders.
//
// Ingest and the processors import this package; it imports neither, so the
// contract can be read (and changed) in one place.
package messages
