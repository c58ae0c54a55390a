// Package summaries is the processor of Amazon Connect Contact Lens
// post-call events: it reads the call's analysis file from the Connect
// bucket in S3 and writes its post-contact summary into the call record of
// SAP's phone-service, as the AWS sample Lambda does, but retried, with the
// record's ETag respected and nothing logged of the summary.
package summaries

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
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
}

// Processor writes call summaries.
type Processor struct {
	cfg    Config
	env    processors.Env
	s3     *s3.Client
	c4c    *c4c.Client
	logger *slog.Logger
	chars  prometheus.Counter
	failed *prometheus.CounterVec
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
		if cfg.S3Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.S3Endpoint)
			o.UsePathStyle = true
		}
	})
	p := &Processor{cfg: cfg, env: env, s3: s3c, c4c: env.C4C, logger: env.Logger,
		chars: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ccrelay_summaries_written_characters_total",
			Help: "Characters of call summaries written to SAP.",
		}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ccrelay_summaries_unavailable_total",
			Help: "Calls whose analysis file reports the post-contact summary as FAILED, by Contact Lens failure code: nothing to write, not retried.",
		}, []string{"failure_code"})}
	env.Registry.MustRegister(p.chars, p.failed)
	return p, nil
}

// Provision has nothing to create: the processor keeps nothing in
// JetStream but the runtime's ledger.
func (p *Processor) Provision(context.Context) error { return nil }

// Processor returns the runtime definition of the processor.
func (p *Processor) Processor() processors.Processor {
	return processors.Processor{Name: Name, Filter: []string{p.env.Subjects.ContactLensFilter()}, Handler: p}
}

// errNotYet marks what is expected to appear later (the analysis file, a
// non-empty summary, the call record): transient.
var errNotYet = errors.New("not there yet")

// Handle implements processors.Handler.
func (p *Processor) Handle(ctx context.Context, ev *processors.Event) error {
	e, err := messages.DecodeContactLensEvent(ev.Body)
	if err != nil {
		return processors.Permanent(err)
	}
	if p.cfg.Bucket == "" {
		return processors.Permanentf("CCRELAY_CONNECT_BUCKET is not set")
	}
	contactID := e.ContactID()
	key, err := p.findAnalysis(ctx, contactID, e.Time)
	if err != nil {
		return err
	}
	summary, err := p.readSummary(ctx, key)
	var failed *summaryFailed
	if errors.As(err, &failed) {
		// Contact Lens will not write this summary later: retrying for
		// hours would change nothing. Counted and logged, not dead-lettered,
		// as there is nothing for an operator to fix in ccrelay.
		p.failed.WithLabelValues(failureCodes.Label(failed.code)).Inc()
		p.logger.Info("no summary to write: Contact Lens reports it FAILED", "contact_id", contactID, "failure_code", failed.code, "analysis_key", key)
		return processors.Ignored("the analysis file reports the summary as FAILED (" + failed.code + ")")
	}
	if err != nil {
		return err
	}
	tenant := p.c4c.Config().DefaultTenant()
	// A 412 means the record changed between read and write: read again.
	for attempt := 1; ; attempt++ {
		call, err := p.c4c.FindPhoneCall(ctx, tenant, contactID)
		if errors.Is(err, c4c.ErrNotFound) {
			return fmt.Errorf("call record of contact %s: %w", contactID, errNotYet)
		}
		if err != nil {
			return classify(err)
		}
		if call.Transcript == summary {
			// Written before (a replica died before it could record it):
			// writing again would only bump the record's version.
			p.logger.Debug("summary already in SAP", "contact_id", contactID, "phone_call", call.ID)
			return nil
		}
		err = p.c4c.SetTranscript(ctx, tenant, call, summary)
		var ce *c4c.Error
		if errors.As(err, &ce) && ce.Status == 412 && attempt < 3 {
			continue
		}
		if err != nil {
			return classify(err)
		}
		p.chars.Add(float64(len([]rune(summary))))
		p.logger.Debug("summary written", "contact_id", contactID, "phone_call", call.ID, "analysis_key", key)
		return nil
	}
}

// classify makes a sink error permanent unless retrying can help.
func classify(err error) error {
	if c4c.IsTransient(err) {
		return err
	}
	return processors.Permanent(err)
}

// analysisPrefix is the key prefix of a contact's analysis files of one day.
// Original: Analysis/Voice/YYYY/MM/DD/<contact>_analysis_...json.
// Redacted: Analysis/Voice/Redacted/YYYY/MM/DD/<contact>_analysis_redacted_...json.
func (p *Processor) analysisPrefix(contactID string, day time.Time) string {
	d := day.UTC().Format("2006/01/02")
	if p.cfg.Redacted {
		return "Analysis/Voice/Redacted/" + d + "/" + contactID + "_analysis_redacted_"
	}
	return "Analysis/Voice/" + d + "/" + contactID + "_analysis_"
}

// findAnalysis looks on the event's date and the day before: the file is
// filed under the date the agent connected, which for a call across
// midnight is the day before the event.
func (p *Processor) findAnalysis(ctx context.Context, contactID string, at time.Time) (string, error) {
	for _, day := range []time.Time{at, at.AddDate(0, 0, -1)} {
		out, err := p.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(p.cfg.Bucket), Prefix: aws.String(p.analysisPrefix(contactID, day))})
		if err != nil {
			return "", s3Error("list analysis files", err)
		}
		var keys []string
		for _, o := range out.Contents {
			if k := aws.ToString(o.Key); strings.HasSuffix(k, ".json") {
				keys = append(keys, k)
			}
		}
		if len(keys) > 0 {
			// Keys end in the analysis timestamp: the last is the newest.
			sort.Strings(keys)
			return keys[len(keys)-1], nil
		}
	}
	return "", fmt.Errorf("analysis file of contact %s: %w", contactID, errNotYet)
}

type analysis struct {
	ConversationCharacteristics struct {
		ContactSummary struct {
			PostContactSummary struct {
				Content string `json:"Content"`
				// Status is COMPLETED or FAILED; FailureCode says why.
				Status      string `json:"Status"`
				FailureCode string `json:"FailureCode"`
			} `json:"PostContactSummary"`
		} `json:"ContactSummary"`
	} `json:"ConversationCharacteristics"`
}

// summaryFailed is an analysis file whose summary Contact Lens failed to
// generate.
type summaryFailed struct{ code string }

func (e *summaryFailed) Error() string { return "post-contact summary FAILED: " + e.code }

// failureCodes are Contact Lens' PostContactSummary failure codes.
var failureCodes = messages.NewEnum("QUOTA_EXCEEDED", "INSUFFICIENT_CONVERSATION_CONTENT", "FAILED_SAFETY_GUIDELINES",
	"INVALID_ANALYSIS_CONFIGURATION", "INTERNAL_ERROR")

func (p *Processor) readSummary(ctx context.Context, key string) (string, error) {
	out, err := p.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(p.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		return "", s3Error("read "+key, err)
	}
	defer out.Body.Close()
	var a analysis
	if err := json.NewDecoder(io.LimitReader(out.Body, p.cfg.MaxFileBytes)).Decode(&a); err != nil {
		return "", processors.Permanentf("analysis file %s is not valid JSON: %v", key, err)
	}
	pcs := a.ConversationCharacteristics.ContactSummary.PostContactSummary
	if strings.EqualFold(pcs.Status, "FAILED") {
		return "", &summaryFailed{code: pcs.FailureCode}
	}
	s := pcs.Content
	if strings.TrimSpace(s) == "" {
		// Contact Lens writes the file before the generated summary in some
		// cases (transfers): read it again later.
		return "", fmt.Errorf("summary in %s is empty: %w", key, errNotYet)
	}
	return s, nil
}

// s3Error keeps configuration errors permanent and the rest transient.
func s3Error(op string, err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled":
			return processors.Permanentf("s3 %s: %s", op, ae.ErrorCode())
		}
		return fmt.Errorf("s3 %s: %s", op, ae.ErrorCode())
	}
	return fmt.Errorf("s3 %s: %w", op, err)
}

// Check lists one key of the analysis folder with the SDK's credentials.
func (p *Processor) Check(ctx context.Context) error {
	if p.cfg.Bucket == "" {
		return fmt.Errorf("CCRELAY_CONNECT_BUCKET is %w: every Contact Lens event will be dead-lettered", processors.ErrNotConfigured)
	}
	_, err := p.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(p.cfg.Bucket), Prefix: aws.String("Analysis/Voice/"), MaxKeys: aws.Int32(1)})
	if err != nil {
		return s3Error("list "+p.cfg.Bucket, err)
	}
	return nil
}
