package summaries

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Outcomes of a contact, as its status record keeps them.
const (
	// outcomeWritten: the summary was written into the call record.
	outcomeWritten = "written"
	// outcomeUnchanged: the call record already held the summary.
	outcomeUnchanged = "unchanged"
	// outcomeFailed: Contact Lens reports the summary FAILED; nothing to write.
	outcomeFailed = "failed"
	// outcomeTriggered: the reconciler stored a trigger; the work is not
	// done yet.
	outcomeTriggered = "triggered"
)

// statusRecord is what the status bucket keeps per contact.
type statusRecord struct {
	Outcome string    `json:"outcome"`
	At      time.Time `json:"at"`
}

// settled reports whether the contact needs nothing more.
func (r statusRecord) settled() bool { return r.Outcome != outcomeTriggered }

// statusStore keeps each contact's outcome in a KV bucket, for the
// reconciler: the ledger is keyed by event, and a call has several
// events (rule events, S3 events, triggers), so it cannot say whether a
// contact has its summary.
type statusStore struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// statusKey is the KV key of a contact id. Amazon Connect contact ids are
// UUIDs and are their own key; anything else is "=" and its hex, which no
// UUID can be.
func statusKey(contactID string) string {
	for i := 0; i < len(contactID); i++ {
		c := contactID[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "=" + hex.EncodeToString([]byte(contactID))
		}
	}
	return contactID
}

// contactOf reverses statusKey.
func contactOf(key string) (string, bool) {
	if h, ok := strings.CutPrefix(key, "="); ok {
		b, err := hex.DecodeString(h)
		return string(b), err == nil
	}
	return key, true
}

func (s *statusStore) encode(outcome string) []byte {
	b, _ := json.Marshal(statusRecord{Outcome: outcome, At: s.now().UTC()}) // a struct of two plain fields
	return b
}

// done records the contact's final outcome.
func (s *statusStore) done(ctx context.Context, contactID, outcome string) error {
	if _, err := s.kv.Put(ctx, statusKey(contactID), s.encode(outcome)); err != nil {
		return fmt.Errorf("record the summary status of %s: %w", contactID, err)
	}
	return nil
}

// triggered records that the reconciler stored a trigger for the contact,
// unless a record exists (the processor may have finished meanwhile): it
// reports whether it did.
func (s *statusStore) triggered(ctx context.Context, contactID string) (bool, error) {
	_, err := s.kv.Create(ctx, statusKey(contactID), s.encode(outcomeTriggered))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("record the trigger of %s: %w", contactID, err)
	}
	return true, nil
}

// all reads every record: one pass over the bucket, cheaper than a lookup
// per file for a sweep over thousands of files.
func (s *statusStore) all(ctx context.Context) (map[string]statusRecord, error) {
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read summary statuses: %w", err)
	}
	defer func() { _ = w.Stop() }()
	out := map[string]statusRecord{}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("read summary statuses: watcher stopped")
			}
			if e == nil {
				return out, nil // the initial values are all delivered
			}
			var r statusRecord
			if json.Unmarshal(e.Value(), &r) != nil {
				continue // not ours; the contact counts as not done
			}
			if c, ok := contactOf(e.Key()); ok {
				out[c] = r
			}
		}
	}
}

// LookupStatus reads contact's summary outcome from the status bucket, for
// 'ccrelay trace': "written", "unchanged", "failed" or "triggered", and
// when it was recorded; ok is false when the bucket holds none.
func LookupStatus(ctx context.Context, kv jetstream.KeyValue, contactID string) (outcome string, at time.Time, ok bool, err error) {
	e, err := kv.Get(ctx, statusKey(contactID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", time.Time{}, false, nil
	}
	if err != nil {
		return "", time.Time{}, false, fmt.Errorf("summary status of %s: %w", contactID, err)
	}
	var r statusRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return "", time.Time{}, false, fmt.Errorf("summary status of %s: %w", contactID, err)
	}
	return r.Outcome, r.At, true, nil
}
