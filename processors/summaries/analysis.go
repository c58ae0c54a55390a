package summaries

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/processors"
)

// analysisPrefix is the key prefix of a contact's analysis files of one
// day, of the variant the processor reads.
func (p *Processor) analysisPrefix(contactID string, day time.Time) string {
	return messages.AnalysisKeyPrefix(contactID, day, p.cfg.Redacted)
}

// findAnalysis looks on the event's date and the day before: the file is
// filed under the date the agent connected, which for a call across
// midnight is the day before the event. Of the keys listed it takes only
// the contact's own analysis files of that day and variant: a listing is
// not trusted to hold only keys under its prefix, and the prefix of
// contact "c" is also the start of the files of contact "c_analysis_x".
func (p *Processor) findAnalysis(ctx context.Context, contactID string, at time.Time) (string, error) {
	for _, day := range []time.Time{at, at.AddDate(0, 0, -1)} {
		prefix := p.analysisPrefix(contactID, day)
		newest := ""
		in := &s3.ListObjectsV2Input{Bucket: aws.String(p.cfg.Bucket), Prefix: aws.String(prefix)}
		for {
			out, err := p.s3.ListObjectsV2(ctx, in)
			if err != nil {
				return "", s3Error("list analysis files", err)
			}
			for _, o := range out.Contents {
				k := aws.ToString(o.Key)
				if !strings.HasPrefix(k, prefix) {
					continue
				}
				// Keys of one contact, day and variant differ only in the
				// analysis time that ends them: the greatest is the newest.
				if f, err := messages.ParseAnalysisKey(k); err == nil && f.ContactID == contactID && k > newest {
					newest = k
				}
			}
			if !aws.ToBool(out.IsTruncated) || out.NextContinuationToken == nil {
				break
			}
			in.ContinuationToken = out.NextContinuationToken
		}
		if newest != "" {
			return newest, nil
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
