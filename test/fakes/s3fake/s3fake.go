// Package s3fake serves the S3 protocol from memory (gofakes3) for tests,
// with a client to put objects the way Contact Lens does.
package s3fake

import (
	"bytes"
	"context"
	"net/http/httptest"
	"testing"

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
}

// New starts the fake with the given buckets; it stops when the test ends.
func New(t testing.TB, buckets ...string) *Server {
	t.Helper()
	backend := s3mem.New()
	hs := httptest.NewServer(gofakes3.New(backend).Server())
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
	return &Server{URL: hs.URL, Client: c}
}

// Put stores an object.
func (s *Server) Put(t testing.TB, bucket, key string, body []byte) {
	t.Helper()
	if _, err := s.Client.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}
