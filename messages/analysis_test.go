package messages_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccrelay/ccrelay/messages"
	"github.com/ccrelay/ccrelay/test/expect"
)

const contact = "6c0f4a8e-2b1d-4e4b-9d57-0f6a2a1c9e11"

func awsFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "aws", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeConnectEventFromAWS(t *testing.T) {
	for _, c := range []struct {
		file     string
		key      string
		redacted bool
		// unsupported: answered 422 (another detail-type, another key)
		unsupported bool
	}{
		{file: "s3_object_created_analysis.json", key: "Analysis/Voice/2020/02/04/" + contact + "_analysis_2020-02-04T21:14:16Z.json"},
		{file: "s3_object_created_redacted.json", key: "Analysis/Voice/Redacted/2020/02/04/" + contact + "_analysis_redacted_2020-02-04T21:14:16Z.json", redacted: true},
		{file: "s3_object_created_docs.json", unsupported: true},
		{file: "s3_object_created_recording.json", unsupported: true},
		{file: "s3_object_deleted_docs.json", unsupported: true},
	} {
		t.Run(c.file, func(t *testing.T) {
			ev, err := messages.DecodeConnectEvent(awsFixture(t, c.file))
			if c.unsupported {
				if !errors.Is(err, messages.ErrUnsupportedDetailType) {
					t.Fatalf("error %v, want ErrUnsupportedDetailType", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.Analysis == nil || ev.ContactLens != nil {
				t.Fatalf("decoded as %+v, want an S3 analysis event", ev)
			}
			f := ev.Analysis.File
			expect.All(t,
				expect.Check{Name: "bucket", Got: ev.Analysis.Detail.Bucket.Name, Want: "amazon-connect-acme"},
				expect.Check{Name: "key", Got: f.Key, Want: c.key},
				expect.Check{Name: "contact", Got: f.ContactID, Want: contact},
				expect.Check{Name: "day", Got: f.Day, Want: time.Date(2020, 2, 4, 0, 0, 0, 0, time.UTC)},
				expect.Check{Name: "redacted", Got: f.Redacted, Want: c.redacted},
				// Both files of a call are one trigger.
				expect.Check{Name: "dedup id", Got: ev.Analysis.DedupID(), Want: "connect.analysis:amazon-connect-acme:" + contact},
			)
		})
	}
}

func TestParseAnalysisKey(t *testing.T) {
	for _, bad := range []string{
		"",
		"CallRecordings/2020/02/04/" + contact + "_20200204T21:14_UTC.wav",
		"Analysis/Chat/2020/02/04/" + contact + "_analysis_2020-02-04T21:14:16Z.json",
		"Analysis/Voice/2020/02/04/" + contact + "_analysis_2020-02-04T21:14:16Z.wav",
		"Analysis/Voice/2020/02/" + contact + "_analysis_x.json",
		"Analysis/Voice/2020/13/04/" + contact + "_analysis_x.json",
		"Analysis/Voice/2020/02/04/_analysis_x.json",
		"Analysis/Voice/2020/02/04/sub/" + contact + "_analysis_x.json",
		"Analysis/Voice/Redacted/2020/02/04/" + contact + "_analysis_x.json", // a redacted file is _analysis_redacted_
		"analysis/voice/2020/02/04/" + contact + "_analysis_x.json",
	} {
		if f, err := messages.ParseAnalysisKey(bad); !errors.Is(err, messages.ErrNotAnalysisFile) {
			t.Errorf("ParseAnalysisKey(%q) = %+v, %v; want ErrNotAnalysisFile", bad, f, err)
		}
	}
	long := "Analysis/Voice/2020/02/04/" + strings.Repeat("c", 200) + "_analysis_x.json"
	if _, err := messages.ParseAnalysisKey(long); !errors.Is(err, messages.ErrInvalidPayload) {
		t.Errorf("a 200-byte contact id: %v, want ErrInvalidPayload", err)
	}
	for key, want := range map[string]string{
		"Analysis/Voice/2020/02/04/c1_analysis_x_analysis_2020-02-04T21:14:16Z.json":                            "c1_analysis_x",
		"Analysis/Voice/Redacted/2020/02/04/c1_analysis_redacted_x_analysis_redacted_2020-02-04T21:14:16Z.json": "c1_analysis_redacted_x",
	} {
		if f, err := messages.ParseAnalysisKey(key); err != nil || f.ContactID != want {
			t.Errorf("ParseAnalysisKey(%q) = %q, %v; want contact %q (a contact id may hold the marker, the time never does)", key, f.ContactID, err, want)
		}
	}
	ctl := "Analysis/Voice/2020/02/04/c\r\nx_analysis_x.json"
	if _, err := messages.ParseAnalysisKey(ctl); !errors.Is(err, messages.ErrInvalidPayload) {
		t.Errorf("a contact id with CR LF: %v, want ErrInvalidPayload", err)
	}
}

func TestSummaryTrigger(t *testing.T) {
	key := "Analysis/Voice/2020/02/04/" + contact + "_analysis_2020-02-04T21:14:16Z.json"
	good := `{"bucket":"b","key":"` + key + `","contact_id":"` + contact + `","file_time":"2020-02-04T21:14:20Z","found_at":"2020-02-04T23:00:00Z"}`
	tr, err := messages.DecodeSummaryTrigger([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if tr.File().ContactID != contact {
		t.Errorf("file contact %q", tr.File().ContactID)
	}
	for name, body := range map[string]string{
		"not json":        `{`,
		"no bucket":       strings.Replace(good, `"bucket":"b"`, `"bucket":""`, 1),
		"other key":       strings.Replace(good, "Analysis/Voice/", "CallRecordings/", 1),
		"another contact": strings.Replace(good, `"contact_id":"`+contact, `"contact_id":"someone-else`, 1),
		"a bucket with :": strings.Replace(good, `"bucket":"b"`, `"bucket":"b:x"`, 1),
		"bucket twice":    strings.Replace(good, `"bucket":"b"`, `"bucket":"b","Bucket":"c"`, 1),
	} {
		if _, err := messages.DecodeSummaryTrigger([]byte(body)); !errors.Is(err, messages.ErrInvalidPayload) {
			t.Errorf("%s: %v, want ErrInvalidPayload", name, err)
		}
	}
	s := messages.DefaultSubjects()
	id, err := s.EventID(s.SummaryTrigger("b"), nil, []byte(good))
	if err != nil || id != "connect.analysis:b:"+contact {
		t.Errorf("EventID of a bare trigger: %q, %v", id, err)
	}
	id, err = s.EventID(s.AnalysisFile("amazon-connect-acme"), nil, awsFixture(t, "s3_object_created_redacted.json"))
	if err != nil || id != "connect.analysis:amazon-connect-acme:"+contact {
		t.Errorf("EventID of a bare S3 event: %q, %v", id, err)
	}
}

// TestSummaryIDsNameTheBucket: an S3 event naming another bucket does not
// take the id of the configured bucket's event of the same call (it did:
// both were connect.analysis:<contact>), and a bucket name cannot smuggle
// a contact in.
func TestSummaryIDsNameTheBucket(t *testing.T) {
	real := awsFixture(t, "s3_object_created_analysis.json")
	other := []byte(strings.ReplaceAll(string(real), "amazon-connect-acme", "attacker-bucket"))
	a, err := messages.DecodeS3ObjectCreated(real)
	if err != nil {
		t.Fatal(err)
	}
	b, err := messages.DecodeS3ObjectCreated(other)
	if err != nil {
		t.Fatal(err)
	}
	if a.DedupID() == b.DedupID() {
		t.Errorf("two buckets, one id %q", a.DedupID())
	}
	colon := []byte(strings.ReplaceAll(string(real), "amazon-connect-acme", "amazon:connect"))
	if _, err := messages.DecodeS3ObjectCreated(colon); !errors.Is(err, messages.ErrInvalidPayload) {
		t.Errorf("a bucket name with ':': %v, want ErrInvalidPayload", err)
	}
	twice := []byte(strings.Replace(string(real), `"bucket": {`, `"bucket": {"name": "attacker-bucket", `, 1))
	if _, err := messages.DecodeS3ObjectCreated(twice); !errors.Is(err, messages.ErrInvalidPayload) || !strings.Contains(err.Error(), "detail.bucket.name") {
		t.Errorf("bucket.name twice: %v, want ErrInvalidPayload naming detail.bucket.name", err)
	}
}

func FuzzDecodeConnectEvent(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "aws", "*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := messages.DecodeConnectEvent(b)
		if err != nil {
			if !errors.Is(err, messages.ErrInvalidPayload) && !errors.Is(err, messages.ErrUnsupportedDetailType) {
				t.Fatalf("error outside the contract: %v", err)
			}
			return
		}
		if (ev.Analysis == nil) == (ev.ContactLens == nil) {
			t.Fatalf("decoded %+v: want exactly one kind", ev)
		}
		if a := ev.Analysis; a != nil {
			if a.File.ContactID == "" || a.Detail.Bucket.Name == "" {
				t.Fatalf("accepted without contact or bucket: %+v", a)
			}
			if err := messages.CheckToken("bucket", a.Detail.Bucket.Name); err != nil {
				t.Fatalf("bucket %q would not fit a subject token", a.Detail.Bucket.Name)
			}
			for _, v := range []string{a.DedupID(), a.Detail.Bucket.Name} {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("control character in a value that becomes a header: %q", v)
				}
			}
		}
	})
}

// TestAnalysisKeyRoundTrip: the prefix the processor lists and the parser
// that reads keys back agree, for both variants.
func TestAnalysisKeyRoundTrip(t *testing.T) {
	day := time.Date(2026, 11, 23, 23, 59, 0, 0, time.FixedZone("CET", 3600)) // 22:59 UTC
	for _, redacted := range []bool{false, true} {
		key := messages.AnalysisKeyPrefix(contact, day, redacted) + "2026-11-23T22:59:00Z.json"
		if !strings.HasPrefix(key, messages.AnalysisDayPrefix(day, redacted)) {
			t.Errorf("%q is not under its day folder %q", key, messages.AnalysisDayPrefix(day, redacted))
		}
		f, err := messages.ParseAnalysisKey(key)
		if err != nil {
			t.Fatalf("%q: %v", key, err)
		}
		expect.All(t,
			expect.Check{Name: key + ": contact", Got: f.ContactID, Want: contact},
			expect.Check{Name: key + ": day (UTC)", Got: f.Day, Want: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)},
			expect.Check{Name: key + ": redacted", Got: f.Redacted, Want: redacted},
		)
	}
}
