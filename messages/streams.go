package messages

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ccrelay/ccrelay/messages/provision"
)

// StreamConfig sets the streams of the contract. Its env tags are read with
// the CCRELAY_ prefix.
type StreamConfig struct {
	// Subjects holds the prefix that starts every subject; stream and
	// bucket names derive from it. Checked when read.
	Subjects Subjects `env:"SUBJECT_PREFIX" envDefault:"ccrelay" help:"first subject token(s); stream and bucket names follow"`
	// Replicas of every stream and bucket: 1 on a single server, 3 on a cluster.
	Replicas int `env:"STREAM_REPLICAS" envDefault:"1" help:"replicas of streams and buckets (3 on a cluster)"`
	// MaxAge is how long events are kept, which is the replay window.
	MaxAge time.Duration `env:"STREAM_MAX_AGE" envDefault:"168h" help:"how long events are kept: the replay window"`
	// DedupWindow is how long JetStream remembers dedup ids.
	DedupWindow time.Duration `env:"DEDUP_WINDOW" envDefault:"10m" help:"JetStream duplicate window; keep it ≥ 2 × the Sinch clock skew"`
	// MaxBytes caps the events stream's size (-1: no cap). At the cap the
	// oldest events are discarded, so keep it well above a day's volume.
	MaxBytes int64 `env:"STREAM_MAX_BYTES" envDefault:"-1" help:"cap on the events stream, oldest discarded ('-1': no cap); keep it well above a day's volume"`
	// DLQMaxAge is how long dead letters are kept.
	DLQMaxAge time.Duration `env:"DLQ_MAX_AGE" envDefault:"720h" help:"how long dead letters are kept"`
}

// Validate checks the rules that span fields or that JetStream would reject
// with a less helpful message. Errors name the environment variable.
func (c StreamConfig) Validate() error {
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("CCRELAY_STREAM_REPLICAS: %d is not between 1 and 5", c.Replicas)
	}
	if c.MaxAge <= 0 {
		return fmt.Errorf("CCRELAY_STREAM_MAX_AGE: must be positive")
	}
	if c.DedupWindow <= 0 {
		return fmt.Errorf("CCRELAY_DEDUP_WINDOW: must be positive")
	}
	if c.DedupWindow > c.MaxAge {
		return fmt.Errorf("CCRELAY_DEDUP_WINDOW: %s is longer than CCRELAY_STREAM_MAX_AGE %s", c.DedupWindow, c.MaxAge)
	}
	if c.DLQMaxAge <= 0 {
		return fmt.Errorf("CCRELAY_DLQ_MAX_AGE: must be positive")
	}
	if c.MaxBytes == 0 || c.MaxBytes < -1 {
		return fmt.Errorf("CCRELAY_STREAM_MAX_BYTES: %d is neither -1 nor positive", c.MaxBytes)
	}
	return nil
}

// Streams returns the definitions of the events and dead-letter streams.
func (c StreamConfig) Streams() []jetstream.StreamConfig {
	s := c.Subjects
	return []jetstream.StreamConfig{
		{
			Name:        s.EventsStream(),
			Description: "ccrelay inbound events (raw bodies, CloudEvents headers)",
			Subjects:    []string{s.Inbound()},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      c.MaxAge,
			MaxBytes:    c.MaxBytes,
			Duplicates:  c.DedupWindow,
			Replicas:    c.Replicas,
			AllowDirect: true,
		},
		{
			Name:        s.DeadLetterStream(),
			Description: "ccrelay dead letters (original body and headers, plus the failure)",
			Subjects:    []string{s.DeadLetters()},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      c.DLQMaxAge,
			Duplicates:  c.DedupWindow,
			Replicas:    c.Replicas,
			AllowDirect: true,
		},
	}
}

// EnsureStreams creates the streams, or updates them where their
// configuration differs, waiting with w while JetStream is not ready. It is
// idempotent and safe when several replicas start at once (see package
// provision for why an unchanged stream is never updated).
func EnsureStreams(ctx context.Context, w provision.Waiter, js jetstream.JetStream, c StreamConfig) error {
	for _, sc := range c.Streams() {
		if _, err := w.Stream(ctx, js, sc); err != nil {
			return fmt.Errorf("ensure %w", err)
		}
	}
	return nil
}

// CheckStreams verifies that the streams exist as configured and have a
// leader. The error says what to fix.
func CheckStreams(ctx context.Context, js jetstream.JetStream, c StreamConfig) error {
	for _, want := range c.Streams() {
		st, err := js.Stream(ctx, want.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("stream %s does not exist (start 'ccrelay serve', 'ingest' or 'process' once to create it)", want.Name)
		}
		if err != nil {
			return fmt.Errorf("stream %s: %w", want.Name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			return fmt.Errorf("stream %s: %w", want.Name, err)
		}
		got := info.Config
		switch {
		case len(got.Subjects) != 1 || got.Subjects[0] != want.Subjects[0]:
			return fmt.Errorf("stream %s holds %v, want %v (another deployment with this prefix?)", want.Name, got.Subjects, want.Subjects)
		case got.Replicas != want.Replicas:
			return fmt.Errorf("stream %s has %d replicas, CCRELAY_STREAM_REPLICAS says %d (restart ccrelay to apply)", want.Name, got.Replicas, want.Replicas)
		case info.Cluster != nil && info.Cluster.Leader == "" && want.Replicas > 1:
			return fmt.Errorf("stream %s has no leader (is a quorum of NATS servers up?)", want.Name)
		}
	}
	return nil
}
