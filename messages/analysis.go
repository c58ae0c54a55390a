package messages

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Amazon Connect writes one Contact Lens analysis file per analysed voice
// contact into the instance's bucket (AWS, "Output file locations for files
// analyzed by Contact Lens conversational analytics"):
//
//	Analysis/Voice/YYYY/MM/DD/<contact>_analysis_<time>.json
//	Analysis/Voice/Redacted/YYYY/MM/DD/<contact>_analysis_redacted_<time>.json
//
// The date is the day the agent connected, so a call across UTC midnight is
// filed under the day before its file was written.
const (
	AnalysisPrefix         = "Analysis/Voice/"
	RedactedAnalysisPrefix = "Analysis/Voice/Redacted/"
)

// Connect kinds besides ConnectContactLens: the subject token after
// "connect".
const (
	// ConnectAnalysis is the kind of S3 Object Created events of analysis
	// files; the subject's last token is the bucket.
	ConnectAnalysis = "analysis"
	// ConnectReconcile is the kind of the triggers the reconciler stores for
	// analysed calls it found without a summary.
	ConnectReconcile = "reconcile"
)

// ce-types of the summary triggers that are not Contact Lens rule events.
const (
	TypeS3ObjectCreated = "aws.s3.ObjectCreated"
	TypeSummaryTrigger  = "com.ccrelay.summaries.reconcile"
)

// EventBridge names of S3's Object Created events.
const (
	SourceAWSS3             = "aws.s3"
	DetailTypeObjectCreated = "Object Created"
)

// Markers between the contact id and the time in an analysis file's name.
const (
	analysisMarker         = "_analysis_"
	redactedAnalysisMarker = "_analysis_redacted_"
)

// dayFolder is the day folder of an analysis key.
const dayFolder = "2006/01/02"

// AnalysisKeyPrefix is the prefix of the keys of a contact's analysis files
// of one day: Analysis/Voice/[Redacted/]YYYY/MM/DD/<contact>_analysis_[redacted_].
// ParseAnalysisKey reads such keys back.
func AnalysisKeyPrefix(contactID string, day time.Time, redacted bool) string {
	root, marker := AnalysisPrefix, analysisMarker
	if redacted {
		root, marker = RedactedAnalysisPrefix, redactedAnalysisMarker
	}
	return root + day.UTC().Format(dayFolder) + "/" + contactID + marker
}

// AnalysisDayPrefix is the prefix of every analysis file of one day of one
// variant.
func AnalysisDayPrefix(day time.Time, redacted bool) string {
	root := AnalysisPrefix
	if redacted {
		root = RedactedAnalysisPrefix
	}
	return root + day.UTC().Format(dayFolder) + "/"
}

// ErrNotAnalysisFile is returned for a key that is not a Contact Lens voice
// analysis file.
var ErrNotAnalysisFile = errors.New("not a Contact Lens voice analysis file")

// AnalysisFile is what a key of an analysis file says.
type AnalysisFile struct {
	Key       string
	ContactID string
	// Day is the date in the key: the day the agent connected.
	Day      time.Time
	Redacted bool
}

// ParseAnalysisKey takes apart the key of an analysis file. Any other key
// (call recordings, chat analysis, the redacted audio) fails with
// ErrNotAnalysisFile; a key of the right shape whose contact id could not
// be a header value fails with ErrInvalidPayload.
func ParseAnalysisKey(key string) (AnalysisFile, error) {
	f := AnalysisFile{Key: key}
	rest, ok := strings.CutPrefix(key, RedactedAnalysisPrefix)
	marker := redactedAnalysisMarker
	if ok {
		f.Redacted = true
	} else if rest, ok = strings.CutPrefix(key, AnalysisPrefix); ok {
		marker = analysisMarker
	} else {
		return f, fmt.Errorf("%w: %q", ErrNotAnalysisFile, key)
	}
	if len(rest) < len("2006/01/02/") || rest[10] != '/' {
		return f, fmt.Errorf("%w: %q", ErrNotAnalysisFile, key)
	}
	day, err := time.Parse(dayFolder, rest[:10])
	if err != nil {
		return f, fmt.Errorf("%w: %q", ErrNotAnalysisFile, key)
	}
	name := rest[11:]
	// The last marker: the time after it never holds one, the contact id
	// before it may, and the first would make "c_analysis_x"'s file pass
	// for one of contact "c".
	i := strings.LastIndex(name, marker)
	if i <= 0 || !strings.HasSuffix(name, ".json") || strings.Contains(name, "/") {
		return f, fmt.Errorf("%w: %q", ErrNotAnalysisFile, key)
	}
	f.Day, f.ContactID = day, name[:i]
	if err := checkID("contact id in the key", f.ContactID); err != nil {
		return f, err
	}
	return f, nil
}

// SummaryDedupID is the dedup id of every trigger of a contact's summary
// that is not a rule event (an S3 event of either analysis file, a
// reconciler trigger), "connect.analysis:<bucket>:<contact>": one per
// contact and bucket, so the dedup window and the ledger keep them to one
// piece of work. A rule event's id is "connect:<account>:..." whatever
// account and id a caller sends, so no rule event can take a contact's
// trigger id and have its real triggers dropped as duplicates; and an
// event naming another bucket (ingest refuses those, a hand-published one
// is not refused there) cannot take the id of the configured bucket's.
func SummaryDedupID(bucket, contactID string) string {
	return SourceConnect + "." + ConnectAnalysis + ":" + bucket + ":" + contactID
}

// checkBucket refuses a bucket name with ':', which S3's naming rules
// never allow: in a dedup id it would let one bucket's contact pass for
// another bucket's.
func checkBucket(field, bucket string) error {
	if strings.ContainsRune(bucket, ':') {
		return &FieldError{Field: field, Problem: "is not an S3 bucket name (it holds ':')"}
	}
	return nil
}

// DedupID is the event's dedup id: SummaryDedupID of its bucket and the
// contact of its key.
func (e *S3ObjectCreatedEvent) DedupID() string {
	return SummaryDedupID(e.Detail.Bucket.Name, e.File.ContactID)
}

// S3ObjectCreatedEvent is the EventBridge event S3 sends when an object is
// created in a bucket with EventBridge notifications on. Its key is not URL
// encoded (unlike S3's own notifications to SQS, SNS and Lambda).
type S3ObjectCreatedEvent struct {
	EventBridgeEnvelope
	Detail struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key  string `json:"key"`
			Size int64  `json:"size"`
			ETag string `json:"etag"`
		} `json:"object"`
		Reason string `json:"reason"`
	} `json:"detail"`
	// File is the analysis file the key names.
	File AnalysisFile `json:"-"`
}

// ConnectEvent is one of the events POST /v1/connect/events takes: exactly
// one field is set.
type ConnectEvent struct {
	ContactLens *ContactLensEvent
	Analysis    *S3ObjectCreatedEvent
}

// DecodeConnectEvent decodes a Contact Lens rule event or an S3 Object
// Created event of an analysis file. Other detail-types, and S3 events of
// other keys, fail with ErrUnsupportedDetailType: a rule sending them is
// misconfigured, and storing them would hide it.
func DecodeConnectEvent(body []byte) (ConnectEvent, error) {
	var h EventBridgeEnvelope
	if err := json.Unmarshal(body, &h); err != nil {
		return ConnectEvent{}, malformed("event", err)
	}
	// The envelope picks the decoder: it must be the one the decoders read.
	if err := repeatedKey(body, everyKey); err != nil {
		return ConnectEvent{}, err
	}
	if h.Source == SourceAWSS3 && h.DetailType == DetailTypeObjectCreated {
		e, err := DecodeS3ObjectCreated(body)
		return ConnectEvent{Analysis: e}, err
	}
	e, err := DecodeContactLensEvent(body)
	if errors.Is(err, ErrUnsupportedDetailType) {
		return ConnectEvent{}, fmt.Errorf("%w: %q from %q (accepted: %q from aws.connect, %q from aws.s3 for %s keys)",
			ErrUnsupportedDetailType, h.DetailType, h.Source, DetailTypeContactLensPostCall, DetailTypeObjectCreated, AnalysisPrefix)
	}
	return ConnectEvent{ContactLens: e}, err
}

// DecodeS3ObjectCreated decodes an S3 Object Created event of an analysis
// file.
func DecodeS3ObjectCreated(body []byte) (*S3ObjectCreatedEvent, error) {
	var e S3ObjectCreatedEvent
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, malformed("event", err)
	}
	if err := repeatedKey(body, everyKey); err != nil {
		return nil, err
	}
	if e.Source != SourceAWSS3 || e.DetailType != DetailTypeObjectCreated {
		return nil, fmt.Errorf("%w: %q from %q", ErrUnsupportedDetailType, e.DetailType, e.Source)
	}
	if e.Detail.Bucket.Name == "" {
		return nil, missing("detail.bucket.name")
	}
	if e.Detail.Object.Key == "" {
		return nil, missing("detail.object.key")
	}
	// The bucket becomes a subject token and part of ce-source.
	if err := checkID("detail.bucket.name", e.Detail.Bucket.Name); err != nil {
		return nil, err
	}
	if err := checkBucket("detail.bucket.name", e.Detail.Bucket.Name); err != nil {
		return nil, err
	}
	if err := CheckToken("detail.bucket.name", e.Detail.Bucket.Name); err != nil {
		return nil, err
	}
	f, err := ParseAnalysisKey(e.Detail.Object.Key)
	if errors.Is(err, ErrNotAnalysisFile) {
		return nil, fmt.Errorf("%w: %w", ErrUnsupportedDetailType, err)
	}
	if err != nil {
		return nil, err
	}
	e.File = f
	return &e, nil
}

// SummaryTrigger is the event the reconciler stores for an analysed call it
// found without a summary. The summaries processor handles it like the
// call's rule event.
type SummaryTrigger struct {
	Bucket    string `json:"bucket"`
	Key       string `json:"key"`
	ContactID string `json:"contact_id"`
	// FileTime is when the analysis file was written.
	FileTime time.Time `json:"file_time"`
	// FoundAt is when the sweep found the summary missing.
	FoundAt time.Time `json:"found_at"`
}

// DecodeSummaryTrigger decodes and checks a reconciler trigger.
func DecodeSummaryTrigger(body []byte) (*SummaryTrigger, error) {
	var t SummaryTrigger
	if err := json.Unmarshal(body, &t); err != nil {
		return nil, malformed("summary trigger", err)
	}
	if err := repeatedKey(body, everyKey); err != nil {
		return nil, err
	}
	if t.Bucket == "" {
		return nil, missing("bucket")
	}
	if err := checkBucket("bucket", t.Bucket); err != nil {
		return nil, err
	}
	f, err := ParseAnalysisKey(t.Key)
	if err != nil {
		return nil, &FieldError{Field: "key", Problem: err.Error()}
	}
	if t.ContactID != f.ContactID {
		return nil, &FieldError{Field: "contact_id", Problem: "is not the contact of key"}
	}
	return &t, nil
}

// File is the analysis file the trigger names.
func (t *SummaryTrigger) File() AnalysisFile {
	f, _ := ParseAnalysisKey(t.Key) // checked by DecodeSummaryTrigger
	return f
}
