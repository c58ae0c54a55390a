// Package summaries is the processor of Amazon Connect Contact Lens
// post-call events: it reads the call's analysis file from the Connect
// bucket in S3 and writes its post-contact summary into the call record of
// SAP's phone-service, as the AWS sample Lambda does, but retried, with the
// record's ETag respected and nothing logged of the summary.
//
// Guarantee: idempotent (no ledger). Handling a trigger again reads the
// call record and writes only what differs (outcome "unchanged"); two
// copies at once write the same summary, and the record's ETag makes the
// later one read again and find it there. The contact's status is the
// record the reconciler reads, and every copy writes the same one.
package summaries

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
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
// AWS credentials and region come from the SDK's configured sources
// (AWS_ACCESS_KEY_ID, AWS_WEB_IDENTITY_TOKEN_FILE, AWS_PROFILE); metadata
// endpoints only as AWSCredentials allows.
type Config struct {
	// Bucket is the Amazon Connect instance's bucket.
	Bucket string `env:"CONNECT_BUCKET" help:"the Amazon Connect bucket with the Contact Lens analysis files"`
	// AWSCredentials says which metadata endpoints may give credentials:
	// see credentials.go.
	AWSCredentials string `env:"AWS_CREDENTIALS" envDefault:"configured" help:"AWS credentials for S3: 'configured' reads AWS_ACCESS_KEY_ID/_SECRET_ACCESS_KEY, AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, or AWS_PROFILE and never a metadata endpoint; 'container' also the ECS/EKS container endpoint; 'instance' also the EC2 instance role (IMDSv2)"`
	// S3Endpoint points at an S3-compatible store instead of AWS
	// (path-style addressing is used then).
	S3Endpoint string `env:"S3_ENDPOINT" help:"an S3-compatible endpoint instead of AWS (path-style addressing)"`
	// S3Region overrides the SDK's region (default us-east-1 with an endpoint).
	S3Region string `env:"S3_REGION" help:"region override (default the AWS SDK's; 'us-east-1' with an endpoint)"`
	// S3Timeout bounds one S3 request: the SDK sets none, and a request
	// to an endpoint that accepts the connection and never answers would
	// hold its message for the whole handler timeout.
	S3Timeout time.Duration `env:"S3_TIMEOUT" envDefault:"30s" help:"bound of one S3 request (a list page, an analysis file)"`
	// Redacted reads the redacted analysis file instead of the original.
	Redacted bool `env:"SUMMARIES_REDACTED" envDefault:"false" help:"read the redacted analysis file instead of the original"`
	// MaxFileBytes bounds the analysis file read.
	MaxFileBytes int64 `env:"SUMMARIES_MAX_FILE_BYTES" envDefault:"33554432" help:"bound of one analysis file"`
	Reconcile    ReconcileConfig
}

// ReconcileConfig sets the sweep that finds analysed calls without a
// summary. Its env tags are read with the CCRELAY_ prefix.
type ReconcileConfig struct {
	// Every is how often a sweep runs in serve and process (0: never).
	Every time.Duration `env:"SUMMARIES_RECONCILE_EVERY" envDefault:"15m" help:"how often 'serve'/'process' sweep for analysed calls without a summary ('0': never)"`
	// Window is how far back a sweep looks.
	Window time.Duration `env:"SUMMARIES_RECONCILE_WINDOW" envDefault:"24h" help:"how far back a sweep looks"`
	// Grace leaves files younger than this to their own events: a sweep
	// looks up to now minus Grace.
	Grace time.Duration `env:"SUMMARIES_RECONCILE_GRACE" envDefault:"10m" help:"files younger than this are left to their own events"`
	// Lease is how long a replica holds the sweep without renewing it: a
	// replica that dies mid-sweep holds it this long at most.
	Lease time.Duration `env:"SUMMARIES_RECONCILE_LEASE" envDefault:"2m" help:"how long a dead replica can hold the sweep"`
	// StatusTTL is how long a contact's outcome is kept; it must outlast
	// the window, or a sweep would look at the contact again.
	StatusTTL time.Duration `env:"SUMMARIES_STATUS_TTL" envDefault:"168h" help:"how long each contact's summary outcome is kept (more than window + grace + a day)"`
}

// Validate checks the fields. Errors name the environment variable.
func (c Config) Validate() error {
	if err := validCredentialsMode(c.AWSCredentials); err != nil {
		return err
	}
	r := c.Reconcile
	switch {
	case c.S3Timeout <= 0:
		return fmt.Errorf("CCRELAY_S3_TIMEOUT: must be positive")
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
	region := cfg.S3Region
	if region == "" && cfg.S3Endpoint != "" {
		region = "us-east-1"
	}
	mode := cfg.AWSCredentials
	if mode == "" {
		mode = CredentialsConfigured
	}
	awsCfg, err := loadAWS(context.Background(), mode, region)
	if err != nil && cfg.Bucket != "" {
		return nil, err
	}
	if err != nil {
		// Nothing will be read: the processor only dead-letters its
		// events as not configured, and no credential is ever asked for.
		awsCfg = aws.Config{Region: region}
	}
	s3c := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		// The SDK prints a line to stderr, outside ccrelay's logs, for
		// every response without a checksum (every list, and reads of
		// objects written without one).
		o.DisableLogOutputChecksumValidationSkipped = true
		o.HTTPClient = awshttp.NewBuildableClient().WithTimeout(cfg.S3Timeout)
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
	return processors.Processor{Name: Name, Filter: p.env.Subjects.SummaryFilters(), Handler: p, Background: p.reconcileLoop, Guarantee: processors.Idempotent}
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

// CredentialSource says where the S3 client's credentials come from, in
// the words of the settings (for 'ccrelay check'). After a passed Check it
// reads the SDK's cache and calls nothing.
func (p *Processor) CredentialSource(ctx context.Context) (string, error) {
	creds, err := p.s3.Options().Credentials.Retrieve(ctx)
	if err != nil {
		return "", fmt.Errorf("aws credentials: %w", err)
	}
	return credentialSource(creds.Source), nil
}
