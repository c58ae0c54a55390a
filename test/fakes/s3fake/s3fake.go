// Package s3fake serves the S3 protocol from memory (gofakes3) for tests,
// with a client to put objects the way Contact Lens does.
package s3fake

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Credentials the fake accepts; set them as AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY for code using the SDK's default chain.
const (
	AccessKey = "AKIACCRELAYTEST"
	SecretKey = "ccrelay-test-secret-key" // #nosec G101 -- the fake S3 server's own test key
	Region    = "us-east-1"
)

// Server is an S3 endpoint with one client.
type Server struct {
	URL    string
	Client *s3.Client

	ignorePrefix atomic.Bool
}

// IgnorePrefix makes listings answer every key of the bucket, whatever
// prefix they ask for, as a broken S3-compatible store (or one that is not
// what it claims) does: code reading a listing must not trust that every
// key in it is under the prefix it asked for.
func (s *Server) IgnorePrefix(on bool) { s.ignorePrefix.Store(on) }

// New starts the fake with the given buckets; it stops when the test ends.
func New(t testing.TB, buckets ...string) *Server {
	t.Helper()
	return start(t, gofakes3.DefaultTimeSource(), buckets)
}

// NewAt is New on the clock now: objects are stamped LastModified by it,
// as S3 stamps them by its own, so a test can put files at any instant
// (midnight, year end) whatever the hour it runs. The request-time skew
// check is off: the SDK signs requests with the machine's clock.
func NewAt(t testing.TB, now func() time.Time, buckets ...string) *Server {
	t.Helper()
	return start(t, clock(now), buckets)
}

// clock is a gofakes3.TimeSource reading now, in S3's GMT.
type clock func() time.Time

func (c clock) Now() time.Time                  { return c().In(time.FixedZone("GMT", 0)) }
func (c clock) Since(t time.Time) time.Duration { return c().Sub(t) }

func start(t testing.TB, ts gofakes3.TimeSource, buckets []string) *Server {
	t.Helper()
	backend := s3mem.New(s3mem.WithTimeSource(ts))
	opts := []gofakes3.Option{gofakes3.WithTimeSource(ts)}
	if _, fixed := ts.(clock); fixed {
		opts = append(opts, gofakes3.WithTimeSkewLimit(0))
	}
	srv := &Server{}
	fake := gofakes3.New(backend, opts...).Server()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if srv.ignorePrefix.Load() && r.Method == http.MethodGet && r.URL.Query().Has("prefix") {
			q := r.URL.Query()
			q.Del("prefix")
			r.URL.RawQuery = q.Encode()
		}
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	c := s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(hs.URL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
	})
	for _, b := range buckets {
		if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatalf("create bucket %s: %v", b, err)
		}
	}
	srv.URL, srv.Client = hs.URL, c
	return srv
}

// Put stores an object.
func (s *Server) Put(t testing.TB, bucket, key string, body []byte) {
	t.Helper()
	if _, err := s.Client.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}
