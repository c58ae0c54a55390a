// Package summaries is the processor of Amazon Connect Contact Lens
// post-call events: it reads the call's analysis file from the Connect
// bucket in S3 and writes its post-contact summary into the call record of
// SAP's phone-service, as the AWS sample Lambda does, but retried, with the
// record's ETag respected and nothing logged of the summary.
package summaries

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors"
	"github.com/ccrelay/ccrelay/sinks/c4c"
)

// Name is the processor's name.
const Name = "summaries"

// Config sets the processor. Its env tags are read with the CCRELAY_ prefix.
// AWS credentials and region come from the SDK's usual chain
// (AWS_ACCESS_KEY_ID, AWS_PROFILE, instance roles, ...).
type Config struct {
	// Bucket is the Amazon Connect instance's bucket.
	Bucket string `env:"CONNECT_BUCKET"`
	// S3Endpoint points at an S3-compatible store instead of AWS
	// (path-style addressing is used then).
	S3Endpoint string `env:"S3_ENDPOINT"`
	// S3Region overrides the SDK's region (default us-east-1 with an endpoint).
	S3Region string `env:"S3_REGION"`
	// Redacted reads the redacted analysis file instead of the original.
	Redacted bool `env:"SUMMARIES_REDACTED" envDefault:"false"`
	// MaxFileBytes bounds the analysis file read.
	MaxFileBytes int64 `env:"SUMMARIES_MAX_FILE_BYTES" envDefault:"33554432"`
	Reconcile    ReconcileConfig
}

// ReconcileConfig sets the sweep that finds analysed calls without a
// summary. Its env tags are read with the CCRELAY_ prefix.
type ReconcileConfig struct {
	// Every is how often a sweep runs in serve and process (0: never).
	Every time.Duration `env:"SUMMARIES_RECONCILE_EVERY" envDefault:"15m"`
	// Window is how far back a sweep looks.
	Window time.Duration `env:"SUMMARIES_RECONCILE_WINDOW" envDefault:"24h"`
	// Grace leaves files younger than this to their own events: a sweep
	// looks up to now minus Grace.
	Grace time.Duration `env:"SUMMARIES_RECONCILE_GRACE" envDefault:"10m"`
	// Lease is how long a replica holds the sweep without renewing it: a
	// replica that dies mid-sweep holds it this long at most.
	Lease time.Duration `env:"SUMMARIES_RECONCILE_LEASE" envDefault:"2m"`
	// StatusTTL is how long a contact's outcome is kept; it must outlast
	// the window, or a sweep would look at the contact again.
	StatusTTL time.Duration `env:"SUMMARIES_STATUS_TTL" envDefault:"168h"`
}

// Validate checks the fields. Errors name the environment variable.
func (c Config) Validate() error {
	r := c.Reconcile
	switch {
	case r.Every < 0:
		return fmt.Errorf("CCRELAY_SUMMARIES_RECONCILE_EVERY: %s is negative", r.Every)
	case r.Window <= 0:
		return fmt.Errorf("CCRELAY_SUMMARIES_RECONCILE_WINDOW: must be positive")
	case r.Grace < 0:
		return fmt.Errorf("CCRELAY_SUMMARIES_RECONCILE_GRACE: %s is negative", r.Grace)
	case r.Lease < time.Second:
		return fmt.Errorf("CCRELAY_SUMMARIES_RECONCILE_LEASE: %s is under a second", r.Lease)
	case r.StatusTTL < r.Window+r.Grace+24*time.Hour:
		return fmt.Errorf("CCRELAY_SUMMARIES_STATUS_TTL: %s must exceed the window plus the grace by a day (%s)", r.StatusTTL, r.Window+r.Grace+24*time.Hour)
	}
	return nil
}

// Processor writes call summaries.
type Processor struct {
	cfg     Config
	env     processors.Env
	s3      *s3.Client
	c4c     *c4c.Client
	logger  *slog.Logger
	status  *statusStore
	lease   jetstream.KeyValue
	chars   prometheus.Counter
	written *prometheus.CounterVec
	failed  *prometheus.CounterVec
	sweeps  sweepMetrics
	// now dates what the sweep looks at and stores (windows, leases,
	// outcomes): env.Now, so tests pin it.
	now func() time.Time
}

// New returns the processor. It loads the AWS configuration now, so a
// broken credential chain stops start-up rather than every message. That
// reads the environment and the shared config files, and asks no service
// (credentials are resolved at the first request), so New creates nothing.
func New(cfg Config, env processors.Env) (*Processor, error) {
	var opts []func(*awsconfig.LoadOptions) error
	region := cfg.S3Region
	if region == "" && cfg.S3Endpoint != "" {
		region = "us-east-1"
	}
	if region != "" {
		opts = append(opts, awsconfig.WithRegion(region))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("aws configuration: %w", err)
	}
	s3c := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		// The SDK prints a line to stderr, outside ccrelay's logs, for
		// every response without a checksum (every list, and reads of
		// objects written without one).
		o.DisableLogOutputChecksumValidationSkipped = true
		if cfg.S3Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.S3Endpoint)
			o.UsePathStyle = true
		}
	})
	p := &Processor{cfg: cfg, env: env, s3: s3c, c4c: env.C4C, logger: env.Logger, now: env.Clock(),
		chars: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ccrelay_summaries_written_characters_total",
			Help: "Characters of call summaries written to SAP.",
		}),
		written: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_summaries_written_total",
			Help: "Calls whose summary is in SAP, by the event that got it there (contactlens, analysis, reconcile) and outcome (written, unchanged: it was there already).",
		}, []string{"trigger", "outcome"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_summaries_unavailable_total",
			Help: "Calls whose analysis file reports the post-contact summary as FAILED, by Contact Lens failure code: nothing to write, not retried.",
		}, []string{"failure_code"}),
		sweeps: newSweepMetrics(),
	}
	env.Registry.MustRegister(p.chars, p.written, p.failed)
	p.sweeps.register(env.Registry)
	env.Registry.MustRegister(newPendingCollector(p))
	return p, nil
}

// Provision creates or binds the status bucket (each contact's outcome)
// and the reconciler's bucket (its lease and where an interrupted sweep
// resumes).
func (p *Processor) Provision(ctx context.Context) error {
	kv, err := p.env.Waiter.KeyValue(ctx, p.env.JS, jetstream.KeyValueConfig{
		Bucket:      p.env.Subjects.SummaryStatusBucket(),
		Description: "ccrelay: call summary outcome per Amazon Connect contact",
		TTL:         p.cfg.Reconcile.StatusTTL,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    p.env.Replicas,
	})
	if err != nil {
		return fmt.Errorf("summary status %w", err)
	}
	lease, err := p.env.Waiter.KeyValue(ctx, p.env.JS, jetstream.KeyValueConfig{
		Bucket:      p.env.Subjects.ReconcileBucket(),
		Description: "ccrelay: reconciliation leases and progress",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    p.env.Replicas,
	})
	if err != nil {
		return fmt.Errorf("reconcile %w", err)
	}
	p.status, p.lease = &statusStore{kv: kv, now: p.now}, lease
	return nil
}

// Processor returns the runtime definition of the processor: it consumes
// every trigger of a summary, and sweeps for calls without one every
// CCRELAY_SUMMARIES_RECONCILE_EVERY.
func (p *Processor) Processor() processors.Processor {
	return processors.Processor{Name: Name, Filter: p.env.Subjects.SummaryFilters(), Handler: p, Background: p.reconcileLoop}
}

// Check lists one key of the analysis folder with the SDK's credentials.
func (p *Processor) Check(ctx context.Context) error {
	if p.cfg.Bucket == "" {
		return fmt.Errorf("CCRELAY_CONNECT_BUCKET is %w: every Contact Lens event will be dead-lettered", processors.ErrNotConfigured)
	}
	_, err := p.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(p.cfg.Bucket), Prefix: aws.String(messages.AnalysisPrefix), MaxKeys: aws.Int32(1)})
	if err != nil {
		return s3Error("list "+p.cfg.Bucket, err)
	}
	return nil
}
