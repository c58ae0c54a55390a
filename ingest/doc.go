// Package ingest holds what every ingest adapter shares: the request
// pipeline (method, content type, body limit, authentication, decode,
// publish, answer), JSON errors with stable codes, the JetStream publisher and
// the ingest metrics. The adapters live in sub-packages (sinch, contactpro,
// connect); package server puts them behind one HTTP handler.
package ingest
